-- Process managers: followers of the global log that run commands (refunds, slot reservations,
-- settlement lines, warnings) in reaction to events. See crates/payledger-projector/src/process.rs.
--
-- A process manager's commands are idempotent (their ids derive from the triggering event), and
-- its checkpoint only moves after they succeeded: at-least-once delivery of each event plus
-- idempotent commands is one effect per event, across crashes and restarts.

CREATE TABLE process_checkpoints (
    name       text        PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 100),
    position   bigint      NOT NULL CHECK (position >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Events a process manager could not act on for a reason that retrying cannot fix (a refund the
-- provider refused every time, an order that no longer allows the command). Kept for an admin;
-- the process moves on so one bad event does not stop every booking behind it.
CREATE TABLE process_dead_letters (
    name            text        NOT NULL,
    global_position bigint      NOT NULL,
    stream_id       text        NOT NULL,
    event_type      text        NOT NULL,
    error           text        NOT NULL CHECK (length(error) <= 2000),
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, global_position)
);

-- The settlement process's memory of orders and claims: which order's payment is on a statement
-- (and from which week), what was refunded before, which claims hold it. Written in the same
-- transaction as the process's checkpoint, so it is always the fold of the log up to there.
CREATE TABLE pm_settlement_orders (
    order_id       text    PRIMARY KEY,
    payee_id       text    NOT NULL,
    currency       text    NOT NULL,
    captured_minor bigint  NOT NULL DEFAULT 0 CHECK (captured_minor >= 0),
    refunded_minor bigint  NOT NULL DEFAULT 0 CHECK (refunded_minor >= 0),
    -- The week whose statement the payment line went to (after carrying); NULL until payable.
    payable_week   date
);

CREATE TABLE pm_settlement_claims (
    claim_id   text    PRIMARY KEY,
    order_id   text    NOT NULL,
    round      integer NOT NULL CHECK (round >= 1),
    is_open    boolean NOT NULL,
    -- The hold now on a statement for this claim (0: none) and the week it went to.
    held_minor bigint  NOT NULL DEFAULT 0 CHECK (held_minor >= 0),
    hold_week  date
);
CREATE INDEX pm_settlement_claims_by_order ON pm_settlement_claims (order_id) WHERE is_open;

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'payledger_app') THEN
        REVOKE ALL ON process_checkpoints, process_dead_letters, pm_settlement_orders,
            pm_settlement_claims FROM PUBLIC;
        GRANT SELECT, INSERT, UPDATE ON process_checkpoints, process_dead_letters TO payledger_app;
        GRANT SELECT, INSERT, UPDATE, DELETE ON pm_settlement_orders, pm_settlement_claims
            TO payledger_app;
    END IF;
END
$$;
