-- Read model "orders": one row per order, and every event of the order in its timeline.
-- Run with search_path set to the target schema (live `rm`, or a rebuild schema).

-- The projector folds each order's events with the same rules as the command side (the order
-- aggregate) and derives the columns from that fold. The fold itself is not stored: the next
-- event of a recent order continues from the projector's memory, any other from the order's
-- stream in the log. (Stores made before 2026-11-22 kept it in a `state` jsonb column; see the end.)
CREATE TABLE IF NOT EXISTS orders (
    order_id              text        PRIMARY KEY,
    status                text        NOT NULL,
    amount_minor          bigint      NOT NULL,
    currency              text        NOT NULL,
    customer_id           text        NOT NULL,
    payee_id              text        NOT NULL,
    order_name            text        NOT NULL,
    provider              text        NOT NULL,
    payment_key           text,
    captured_minor        bigint      NOT NULL,
    refunded_minor        bigint      NOT NULL,
    refund_pending_minor  bigint      NOT NULL,
    refundable_minor      bigint      NOT NULL,
    last_failure_code     text,
    amount_mismatch_count integer     NOT NULL,
    service_starts_at     timestamptz,
    placed_at             timestamptz NOT NULL,
    paid_at               timestamptz,
    fulfilled_at          timestamptz,
    stream_version        bigint      NOT NULL,
    last_position         bigint      NOT NULL,
    updated_at            timestamptz NOT NULL,
    CHECK (refunded_minor + refund_pending_minor <= captured_minor)
);
CREATE INDEX IF NOT EXISTS orders_by_customer ON orders (customer_id, placed_at DESC);
CREATE INDEX IF NOT EXISTS orders_by_payment_key ON orders (payment_key) WHERE payment_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS orders_by_status ON orders (status, placed_at);
-- The reconciler's and the session reminders' candidates. Partial indexes, so that each pass
-- costs what it finds, not the years of closed orders: without them both scanned the whole table
-- every pass (2.6 M rows, ~1 s each, at 10 M events; issue 19, docs/performance.md).
CREATE INDEX IF NOT EXISTS orders_awaiting_outcome ON orders (updated_at)
    WHERE status IN ('CONFIRMING', 'OUTCOME_UNKNOWN') OR refund_pending_minor > 0;
CREATE INDEX IF NOT EXISTS orders_refundable_by_service_start ON orders (service_starts_at)
    WHERE refundable_minor > 0;

-- Refunds awaiting the provider whose request differs from them (`RefundDiscrepancyRecorded`),
-- for support. Added 2026-12-06; rows folded before then cannot have one (the event is new),
-- so the default is their true value and no rebuild is needed.
ALTER TABLE orders ADD COLUMN IF NOT EXISTS refunds_under_review integer NOT NULL DEFAULT 0;

-- The timeline: which events make up an order's history (its own stream's, and provider webhook
-- deliveries that name it) and how to say each in one line. Everything else about an entry (type,
-- time, actor, payload) is the event itself: the timeline API reads it from the log by position,
-- which keeps this table, and a rebuild of it, small.
CREATE TABLE IF NOT EXISTS order_timeline (
    order_id        text        NOT NULL,
    global_position bigint      NOT NULL,
    summary         text        NOT NULL,
    PRIMARY KEY (order_id, global_position)
);

-- Tables made before 2026-11-22 lose, in place, the columns that copied what the log holds: the
-- fold of the order as jsonb, and the timeline's copies of each event's stream, version, type,
-- time and actor. The remaining columns hold the same values either way, and dropping a column
-- only changes the catalog. Checked first so that a start on up-to-date tables takes no lock.
DO $$
BEGIN
    IF EXISTS (SELECT FROM information_schema.columns
                WHERE table_schema = current_schema() AND table_name = 'orders'
                  AND column_name = 'state') THEN
        ALTER TABLE orders DROP COLUMN state;
    END IF;
    IF EXISTS (SELECT FROM information_schema.columns
                WHERE table_schema = current_schema() AND table_name = 'order_timeline'
                  AND column_name = 'stream_id') THEN
        ALTER TABLE order_timeline DROP COLUMN stream_id, DROP COLUMN stream_version,
            DROP COLUMN event_type, DROP COLUMN recorded_at, DROP COLUMN actor;
    END IF;
END
$$;
