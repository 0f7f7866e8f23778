-- Read model "settlements": weekly statements per payee and currency, with their lines, totals
-- and net payable. Run with search_path set to the target schema (live `rm`, or a rebuild schema).

-- Totals are live (computed from the line sums) until the statement is confirmed, then the ones
-- the confirmation froze.
CREATE TABLE IF NOT EXISTS settlement_statements (
    statement_id          text        PRIMARY KEY,
    payee_id              text        NOT NULL,
    week_start            date        NOT NULL,
    currency              text        NOT NULL,
    period_start          timestamptz NOT NULL,
    period_end            timestamptz NOT NULL,
    time_zone             text        NOT NULL,
    platform_fee_bps      integer     NOT NULL,
    status                text        NOT NULL,
    line_count            integer     NOT NULL,
    payments_minor        bigint      NOT NULL,
    refunds_minor         bigint      NOT NULL,
    compensations_minor   bigint      NOT NULL,
    held_minor            bigint      NOT NULL,
    released_minor        bigint      NOT NULL,
    carried_minor         bigint      NOT NULL,
    net_sales_minor       bigint      NOT NULL,
    platform_fee_minor    bigint      NOT NULL,
    net_minor             bigint      NOT NULL,
    net_payable_minor     bigint      NOT NULL CHECK (net_payable_minor >= 0),
    carry_forward_minor   bigint      NOT NULL CHECK (carry_forward_minor <= 0),
    confirmed_at          timestamptz,
    paid_out_at           timestamptz,
    payout_reference      text,
    stream_version        bigint      NOT NULL,
    last_position         bigint      NOT NULL,
    updated_at            timestamptz NOT NULL,
    CHECK (net_payable_minor + carry_forward_minor = net_minor)
);
CREATE INDEX IF NOT EXISTS settlement_statements_by_payee ON settlement_statements (payee_id, week_start);
CREATE INDEX IF NOT EXISTS settlement_statements_by_week ON settlement_statements (week_start, status);

CREATE TABLE IF NOT EXISTS settlement_lines (
    statement_id    text        NOT NULL,
    line_no         integer     NOT NULL,
    line_id         text        NOT NULL,
    kind            text        NOT NULL,
    order_id        text,
    claim_id        text,
    amount_minor    bigint      NOT NULL,
    occurred_at     timestamptz NOT NULL,
    carried_from    date,
    memo            text        NOT NULL,
    global_position bigint      NOT NULL,
    PRIMARY KEY (statement_id, line_no),
    UNIQUE (statement_id, line_id)
);
