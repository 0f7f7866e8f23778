-- Read model "claims": the claim queue (status, type, age), each claim's detail (evidence
-- references, both statements, the decision) and what the statistics are computed from.
-- Run with search_path set to the target schema (live `rm`, or a rebuild schema).

-- `state` is the claim aggregate's own state after the row's last event; the columns are derived
-- from it with the same rules as the command side.
CREATE TABLE IF NOT EXISTS claims (
    claim_id              text        PRIMARY KEY,
    order_id              text        NOT NULL,
    customer_id           text        NOT NULL,
    payee_id              text        NOT NULL,
    currency              text        NOT NULL,
    claim_type            text        NOT NULL,
    filed_by              text        NOT NULL,
    status                text        NOT NULL,
    description           text        NOT NULL,
    evidence              jsonb       NOT NULL,
    amount_at_stake_minor bigint      NOT NULL CHECK (amount_at_stake_minor >= 0),
    service_starts_at     timestamptz,
    filed_at              timestamptz NOT NULL,
    respond_by            timestamptz NOT NULL,
    claimant_statement    jsonb,
    respondent_statement  jsonb,
    deadline_missed_at    timestamptz,
    assigned_to           text,
    -- The latest resolution (after an appeal, the second one).
    outcome               text,
    decision              jsonb,
    resolution_round      integer     NOT NULL,
    resolved_at           timestamptz,
    -- Filing to the first resolution: the statistics' time to resolve.
    seconds_to_resolve    bigint,
    appealed_at           timestamptz,
    stream_version        bigint      NOT NULL,
    last_position         bigint      NOT NULL,
    updated_at            timestamptz NOT NULL,
    state                 jsonb       NOT NULL
);
CREATE INDEX IF NOT EXISTS claims_queue ON claims (status, filed_at, claim_id);
CREATE INDEX IF NOT EXISTS claims_by_type ON claims (claim_type, status, filed_at);
CREATE INDEX IF NOT EXISTS claims_by_order ON claims (order_id);
