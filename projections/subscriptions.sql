-- Read model "subscriptions": subscriptions with their dunning state, credit wallets, credit
-- purchases and billing keys (card facts only: the encrypted key stays in the event log).
-- Run with search_path set to the target schema (live `rm`, or a rebuild schema).

-- `state` is the subscription aggregate's own state after the row's last event; the columns are
-- derived from it. Membership depends on the time of asking, so queries compute it from `state`.
CREATE TABLE IF NOT EXISTS subscriptions (
    subscription_id      text        PRIMARY KEY,
    customer_id          text        NOT NULL,
    plan_id              text        NOT NULL,
    plan_level           smallint    NOT NULL,
    status               text        NOT NULL,
    amount_minor         bigint      NOT NULL CHECK (amount_minor > 0),
    currency             text        NOT NULL,
    interval_unit        text        NOT NULL,
    interval_count       integer     NOT NULL,
    billing_key_id       text        NOT NULL,
    anchor               timestamptz NOT NULL,
    cycle                integer     NOT NULL,
    paid_cycles          integer     NOT NULL,
    paid_through         timestamptz,
    next_charge_at       timestamptz,
    retry_count          integer     NOT NULL,
    next_retry_at        timestamptz,
    last_failure_code    text,
    grace_ends_at        timestamptz,
    cancel_effective_at  timestamptz,
    suspended_reason     text,
    attempt_in_flight    boolean     NOT NULL,
    -- When the scheduler next has something to do here (charge, retry, resolve, end, suspend).
    next_due_at          timestamptz,
    started_at           timestamptz NOT NULL,
    stream_version       bigint      NOT NULL,
    last_position        bigint      NOT NULL,
    updated_at           timestamptz NOT NULL,
    state                jsonb       NOT NULL
);
CREATE INDEX IF NOT EXISTS subscriptions_by_status ON subscriptions (status, subscription_id);
CREATE INDEX IF NOT EXISTS subscriptions_by_customer ON subscriptions (customer_id, subscription_id);
CREATE INDEX IF NOT EXISTS subscriptions_due ON subscriptions (next_due_at) WHERE next_due_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS wallets (
    customer_id        text        PRIMARY KEY,
    balance            bigint      NOT NULL CHECK (balance >= 0),
    purchased_total    bigint      NOT NULL,
    spent_total        bigint      NOT NULL,
    clawed_back_total  bigint      NOT NULL,
    shortfall_total    bigint      NOT NULL,
    stream_version     bigint      NOT NULL,
    last_position      bigint      NOT NULL,
    updated_at         timestamptz NOT NULL,
    state              jsonb       NOT NULL,
    CHECK (balance = purchased_total - spent_total - clawed_back_total)
);

-- One row per credit purchase: which order paid for it and how much of that order's refunds the
-- wallet has clawed back already (the refund process compares it with rm.orders).
CREATE TABLE IF NOT EXISTS credit_purchases (
    customer_id            text        NOT NULL,
    purchase_id            text        NOT NULL,
    order_id               text        NOT NULL,
    credits                bigint      NOT NULL,
    paid_minor             bigint      NOT NULL,
    currency               text        NOT NULL,
    refunded_minor_applied bigint      NOT NULL,
    purchased_at           timestamptz NOT NULL,
    PRIMARY KEY (customer_id, purchase_id)
);
CREATE INDEX IF NOT EXISTS credit_purchases_by_order ON credit_purchases (order_id);

CREATE TABLE IF NOT EXISTS billing_keys (
    billing_key_id  text        PRIMARY KEY,
    customer_id     text        NOT NULL,
    status          text        NOT NULL,
    provider        text        NOT NULL,
    issuer_code     text        NOT NULL,
    last4           text        NOT NULL,
    card_type       text        NOT NULL,
    expiry          text,
    registered_at   timestamptz NOT NULL,
    changed_at      timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS billing_keys_by_customer ON billing_keys (customer_id);

-- How far each customer stream has been projected (the contiguity check of billing_keys).
CREATE TABLE IF NOT EXISTS billing_customers (
    customer_id     text   PRIMARY KEY,
    stream_version  bigint NOT NULL,
    last_position   bigint NOT NULL
);
