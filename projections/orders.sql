-- Read model "orders": one row per order, and every event of the order in its timeline.
-- Run with search_path set to the target schema (live `rm`, or a rebuild schema).

-- `state` is the order aggregate's own state after the row's last event: the projector folds
-- events with the same rules as the command side, and the columns are derived from it.
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
    state                 jsonb       NOT NULL,
    CHECK (refunded_minor + refund_pending_minor <= captured_minor)
);
CREATE INDEX IF NOT EXISTS orders_by_customer ON orders (customer_id, placed_at DESC);
CREATE INDEX IF NOT EXISTS orders_by_payment_key ON orders (payment_key) WHERE payment_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS orders_by_status ON orders (status, placed_at);

-- The event's payload is not copied here: the timeline API reads it from the log by position,
-- which keeps this table (and a rebuild of it) small.
CREATE TABLE IF NOT EXISTS order_timeline (
    order_id        text        NOT NULL,
    global_position bigint      NOT NULL,
    stream_id       text        NOT NULL,
    stream_version  bigint      NOT NULL,
    event_type      text        NOT NULL,
    recorded_at     timestamptz NOT NULL,
    actor           text,
    summary         text        NOT NULL,
    PRIMARY KEY (order_id, global_position)
);
