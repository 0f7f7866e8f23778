-- Signed checkpoints of the global log (docs/auditing.md, "Signed checkpoints"). Numbered 0020
-- after the issue that introduced it, apart from the 000N series other work adds to.
--
-- The signing key is not here: only the public key and the signature are. A copy of every row is
-- also written outside the database (an append-only file) as it is sealed, so that a later
-- rewrite of the events *and* of this table is caught against the copy.
CREATE TABLE audit_checkpoints (
    sequence         bigint      PRIMARY KEY CHECK (sequence >= 1),
    global_position  bigint      NOT NULL CHECK (global_position >= 1),
    log_digest       bytea       NOT NULL CHECK (length(log_digest) = 32),
    previous_digest  bytea       NOT NULL CHECK (length(previous_digest) = 32),
    sealed_at        timestamptz NOT NULL,
    public_key       bytea       NOT NULL CHECK (length(public_key) = 32),
    signature        bytea       NOT NULL CHECK (length(signature) = 64),
    digest           bytea       NOT NULL CHECK (length(digest) = 32),
    UNIQUE (global_position)
);

-- Checkpoints, like events, are never updated or deleted.
CREATE TRIGGER audit_checkpoints_reject_update_delete BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION events_are_immutable();
CREATE TRIGGER audit_checkpoints_reject_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION events_are_immutable();

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'payledger_app') THEN
        REVOKE ALL ON audit_checkpoints FROM PUBLIC;
        GRANT SELECT, INSERT ON audit_checkpoints TO payledger_app;
    END IF;
END
$$;
