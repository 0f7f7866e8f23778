-- Disputes in the settlement process's memory of orders (issue 12): while a provider dispute is
-- open on a payable order, the payee's settlement line for it is held; the hold is released when
-- the dispute is decided. Numbered from issue 12's range (0030-0039).
ALTER TABLE pm_settlement_orders
    ADD COLUMN dispute_id          text,
    ADD COLUMN dispute_open        boolean NOT NULL DEFAULT false,
    ADD COLUMN dispute_minor       bigint  NOT NULL DEFAULT 0 CHECK (dispute_minor >= 0),
    -- What the hold line took, and the week of its statement; 0 / NULL while nothing is held.
    ADD COLUMN dispute_held_minor  bigint  NOT NULL DEFAULT 0 CHECK (dispute_held_minor >= 0),
    ADD COLUMN dispute_hold_week   date;
