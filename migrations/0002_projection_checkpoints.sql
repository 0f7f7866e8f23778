-- Where each projection has read the global log up to. A projection's read-model writes and its
-- checkpoint commit in the same transaction, so a crash replays at most an uncommitted batch and
-- nothing is applied twice (the lesson of Marten's mt_event_progression).
CREATE TABLE projection_checkpoints (
    name       text        PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 100),
    position   bigint      NOT NULL CHECK (position >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Read models live in their own schema; the application owns them (it creates and swaps tables
-- when rebuilding), while it only reads events.
CREATE SCHEMA IF NOT EXISTS rm;

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'payledger_app') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON projection_checkpoints TO payledger_app;
        GRANT ALL ON SCHEMA rm TO payledger_app;
    END IF;
END
$$;
