-- Operator console sessions (issue 16). A browser signs in with an API key of the support, auditor
-- or admin role and gets a random session token in an HttpOnly cookie; only the token's SHA-256 is
-- stored, so a leaked table opens no session. The session names the key it was opened with: a
-- revoked key ends its sessions at the next request (the lookup joins `api_keys`).
CREATE TABLE console_sessions (
    session_hash bytea       PRIMARY KEY CHECK (length(session_hash) = 32),
    key_id       text        NOT NULL REFERENCES api_keys (key_id),
    -- Double-submit protection: every console form carries this token; it never leaves the server
    -- except inside the pages of this session.
    csrf_token   text        NOT NULL CHECK (length(csrf_token) = 64),
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    ended_at     timestamptz,
    CHECK (expires_at > created_at)
);
CREATE INDEX console_sessions_by_expiry ON console_sessions (expires_at);

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'payledger_app') THEN
        REVOKE ALL ON console_sessions FROM PUBLIC;
        -- Sign-in inserts, sign-out sets ended_at, and `serve` deletes long-expired rows.
        GRANT SELECT, INSERT, UPDATE (ended_at), DELETE ON console_sessions TO payledger_app;
    END IF;
END
$$;
