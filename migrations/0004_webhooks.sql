-- Webhooks in and out. See crates/payledger-webhook-relay.

-- Inbound deliveries, stored raw as received once their signature verified, then processed by a
-- worker inside `serve`. UNIQUE (provider, event_id) is the de-duplication: a redelivery of an
-- event finds its row and has no second effect. `next_attempt_at` doubles as the lease of the
-- worker holding a row, so a crashed worker's row is taken up again when the lease ends.
CREATE TABLE webhook_inbox (
    id               bigserial   PRIMARY KEY,
    provider         text        NOT NULL CHECK (provider IN ('toss', 'stripe', 'paddle', 'standard')),
    event_id         text        NOT NULL CHECK (length(event_id) BETWEEN 1 AND 128),
    event_type       text        CHECK (length(event_type) <= 200),
    delivery_id      text        CHECK (length(delivery_id) <= 256),
    scheme           text        NOT NULL,
    secret_index     smallint,
    must_refetch     boolean     NOT NULL,
    raw_body         bytea       NOT NULL CHECK (length(raw_body) <= 262144),
    -- The few headers processing may need (content type, delivery id); never signatures.
    headers          jsonb       NOT NULL,
    status           text        NOT NULL CHECK (status IN ('pending', 'applied', 'dead')),
    attempts         integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at  timestamptz NOT NULL,
    last_error       text        CHECK (length(last_error) <= 1000),
    -- How often the sender delivered this event again after the first (answered 2xx, no effect).
    redeliveries     integer     NOT NULL DEFAULT 0,
    received_at      timestamptz NOT NULL,
    processed_at     timestamptz,
    dead_lettered_at timestamptz,
    UNIQUE (provider, event_id)
);
CREATE INDEX webhook_inbox_due ON webhook_inbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_inbox_dead ON webhook_inbox (dead_lettered_at, id) WHERE status = 'dead';

-- Refused deliveries (forged, stale, malformed), counted per provider, code and minute: a flood
-- of forgeries adds at most one row per code and minute, never one per request.
CREATE TABLE webhook_rejections (
    provider         text        NOT NULL,
    code             text        NOT NULL,
    minute           timestamptz NOT NULL,
    count            bigint      NOT NULL CHECK (count >= 1),
    last_reason      text        NOT NULL CHECK (length(last_reason) <= 300),
    last_remote_addr text,
    last_seen_at     timestamptz NOT NULL,
    PRIMARY KEY (provider, code, minute)
);

-- Outbound notifications (Standard Webhooks), one row per event and endpoint, written by the
-- `webhook_outbox` follower of the global log in the same transaction as its checkpoint, so each
-- event is put in exactly once. `message_id` (the event id) is the `webhook-id` of every attempt.
-- `body` is the exact text signed and sent, fixed when the row is written.
CREATE TABLE webhook_outbox (
    id                bigserial   PRIMARY KEY,
    message_id        text        NOT NULL,
    endpoint_url      text        NOT NULL CHECK (length(endpoint_url) <= 2048),
    notification_type text        NOT NULL,
    priority          text        NOT NULL CHECK (priority IN ('urgent', 'important', 'normal', 'info')),
    source_position   bigint      NOT NULL,
    body              text        NOT NULL,
    status            text        NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts          integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at   timestamptz NOT NULL,
    last_error        text        CHECK (length(last_error) <= 1000),
    last_status_code  integer,
    created_at        timestamptz NOT NULL,
    delivered_at      timestamptz,
    dead_lettered_at  timestamptz,
    UNIQUE (message_id, endpoint_url)
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_outbox_dead ON webhook_outbox (dead_lettered_at, id) WHERE status = 'dead';

-- The outbox follower starts at the log's head when this migration runs: notifying products of
-- everything that happened before webhooks existed would be noise, not news.
INSERT INTO projection_checkpoints (name, position)
SELECT 'webhook_outbox', last_position FROM event_sequencer
ON CONFLICT (name) DO NOTHING;

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'payledger_app') THEN
        REVOKE ALL ON webhook_inbox, webhook_rejections, webhook_outbox FROM PUBLIC;
        -- Rows are kept (applied, delivered, dead): the service inserts and updates, never deletes.
        GRANT SELECT, INSERT, UPDATE ON webhook_inbox, webhook_rejections, webhook_outbox TO payledger_app;
        GRANT USAGE ON SEQUENCE webhook_inbox_id_seq, webhook_outbox_id_seq TO payledger_app;
    END IF;
END
$$;
