-- Read model "reconciliation": the provider settlement lines payledger imported and the flags
-- (discrepancies) reconciliation raised, open until an admin resolves them. Run with search_path
-- set to the target schema.

CREATE TABLE IF NOT EXISTS reconciliation_lines (
    stream_id       text    PRIMARY KEY,
    provider        text    NOT NULL,
    line_id         text    NOT NULL,
    kind            text    NOT NULL,
    payment_key     text    NOT NULL,
    order_id        text,
    matched         boolean NOT NULL,
    amount_minor    bigint  NOT NULL,
    fee_minor       bigint  NOT NULL,
    payout_minor    bigint  NOT NULL,
    currency        text    NOT NULL,
    sold_on         date    NOT NULL,
    paid_out_on     date    NOT NULL,
    global_position bigint  NOT NULL
);
-- The report reads by provider and payout day; the unsettled check by order.
CREATE INDEX IF NOT EXISTS reconciliation_lines_by_day ON reconciliation_lines (provider, paid_out_on);
CREATE INDEX IF NOT EXISTS reconciliation_lines_by_order ON reconciliation_lines (order_id) WHERE matched;

CREATE TABLE IF NOT EXISTS reconciliation_flags (
    stream_id         text        NOT NULL,
    kind              text        NOT NULL,
    provider          text        NOT NULL,
    order_id          text,
    line_id           text,
    currency          text        NOT NULL,
    expected_minor    bigint      NOT NULL,
    actual_minor      bigint      NOT NULL,
    detail            text        NOT NULL,
    flagged_at        timestamptz NOT NULL,
    flagged_position  bigint      NOT NULL,
    resolution        text,
    note              text,
    resolved_by       text,
    resolved_at       timestamptz,
    resolved_position bigint,
    PRIMARY KEY (stream_id, kind)
);
CREATE INDEX IF NOT EXISTS reconciliation_flags_open ON reconciliation_flags (flagged_position) WHERE resolved_at IS NULL;

-- The subscription charges a provider owes the platform for, for the aged `provider_clearing`
-- balance: each paid period (`ChargeSucceeded`) by payment key, less what the provider took back
-- (`ProviderChargeReversed`); its settlement line is in reconciliation_lines (order_id NULL).
-- `billed_by` is the provider of a provider-billed subscription (Paddle); NULL when payledger
-- charges the subscription's billing key (its provider is the billing key's).
CREATE TABLE IF NOT EXISTS reconciliation_subscriptions (
    subscription_id text PRIMARY KEY,
    billing_key_id  text NOT NULL,
    billed_by       text
);
CREATE TABLE IF NOT EXISTS reconciliation_subscription_charges (
    subscription_id    text        NOT NULL,
    payment_key        text        NOT NULL,
    currency           text        NOT NULL,
    charged_minor      bigint      NOT NULL,
    recorded_fee_minor bigint      NOT NULL,
    reversed_minor     bigint      NOT NULL,
    charged_at         timestamptz NOT NULL,
    global_position    bigint      NOT NULL,
    PRIMARY KEY (subscription_id, payment_key)
);
CREATE INDEX IF NOT EXISTS reconciliation_lines_by_payment_key ON reconciliation_lines (payment_key) WHERE matched AND order_id IS NULL;

-- What left `provider_clearing` for an order or a flag other than its capture, refunds and
-- settlement lines, as the journal posts it, for the aged `provider_clearing` balance: a lost
-- dispute's withdrawn amount and fee, a won dispute's fee (`DisputeLost`, `DisputeWon`), and a
-- write-off (`ReconciliationResolved`, `writtenOffMinor`). One row per event (its position);
-- `order_id` NULL for a write-off of a flag that names no order (a subscription payment's line).
CREATE TABLE IF NOT EXISTS reconciliation_clearing_taken (
    global_position bigint      PRIMARY KEY,
    provider        text        NOT NULL,
    currency        text        NOT NULL,
    order_id        text,
    taken_minor     bigint      NOT NULL,
    at              timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS reconciliation_clearing_taken_by_order ON reconciliation_clearing_taken (order_id);
