-- Who may call the API (API keys with roles) and what they already asked (idempotency keys).
-- Neither table is part of the ledger: events stay the only record of money. Key creation and
-- revocation are also recorded as events in the `audit-admin` stream.

-- API keys. Only a SHA-256 of the key is stored: keys are 32 random bytes (256 bits), so a fast
-- hash is as safe as a slow one here (nobody can guess a preimage) and lets every request be
-- authenticated with one indexed lookup. Slow password hashes protect low-entropy secrets.
CREATE TABLE api_keys (
    key_id     text        PRIMARY KEY CHECK (key_id ~ '^key_[0-9a-f]{32}$'),
    -- The principal: `client:NAME`, `admin:NAME`, … in event metadata. Several keys may share a
    -- name (rotation: the new key works before the old one is revoked).
    name       text        NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    role       text        NOT NULL CHECK (role IN ('client', 'support', 'auditor', 'admin')),
    key_hash   bytea       NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    -- The first characters of the key, so an operator can tell keys apart in `keys list`.
    key_prefix text        NOT NULL CHECK (length(key_prefix) BETWEEN 1 AND 16),
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by text        NOT NULL CHECK (length(created_by) BETWEEN 1 AND 200),
    revoked_at timestamptz
);
CREATE INDEX api_keys_by_name ON api_keys (name);

-- Idempotency keys of command requests, scoped to the API client (the key's name). A row is
-- inserted 'in_progress' before the command runs (the INSERT's row count says who owns it) and
-- completed with the response after; a lease (`locked_until`) lets a retry take over a row whose
-- owner died. Rows live at least 24 hours, then `serve` purges them.
CREATE TABLE idempotency_keys (
    client          text        NOT NULL CHECK (length(client) BETWEEN 1 AND 100),
    idempotency_key text        NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    -- SHA-256 over method, path, query and body: the same key with another request is refused.
    fingerprint     bytea       NOT NULL CHECK (length(fingerprint) = 32),
    method          text        NOT NULL,
    path            text        NOT NULL,
    state           text        NOT NULL CHECK (state IN ('in_progress', 'completed')),
    locked_until    timestamptz NOT NULL,
    response_status smallint,
    response_headers jsonb,
    response_body   bytea,
    created_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz,
    PRIMARY KEY (client, idempotency_key),
    CHECK (state = 'in_progress' OR (response_status IS NOT NULL AND response_body IS NOT NULL))
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'payledger_app') THEN
        REVOKE ALL ON api_keys, idempotency_keys FROM PUBLIC;
        -- The service authenticates (SELECT); `serve` creates the first keys of an empty table
        -- and the CLI (which runs as the same role on a managed cluster) creates and revokes keys
        -- (INSERT, UPDATE of revoked_at). Keys are never deleted: revocation is kept.
        GRANT SELECT, INSERT ON api_keys TO payledger_app;
        GRANT UPDATE (revoked_at) ON api_keys TO payledger_app;
        GRANT SELECT, INSERT, UPDATE, DELETE ON idempotency_keys TO payledger_app;
    END IF;
END
$$;
