-- Session-notes holds (issue 17; source document 5 §5.1 상담일지 미작성): the settlements process
-- holds a fulfilled booking's payment while its session notes are missing and releases it when
-- they are recorded. Orders recorded before this migration are not bookings to it (no hold).
ALTER TABLE pm_settlement_orders
    ADD COLUMN is_booking       boolean NOT NULL DEFAULT false,
    ADD COLUMN notes_recorded   boolean NOT NULL DEFAULT false,
    ADD COLUMN notes_held_minor bigint  NOT NULL DEFAULT 0 CHECK (notes_held_minor >= 0),
    ADD COLUMN notes_hold_week  date;
