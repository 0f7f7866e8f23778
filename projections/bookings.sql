-- Read model "bookings": each booking's confirmation (source document 5, §5.1 and §6.1) and
-- cancellation, for the confirmation job (what is due) and the admins' queue of bookings still
-- unconfirmed after 24 hours. Run with search_path set to the target schema (live `rm`, or a
-- rebuild schema).

-- `state` is the booking aggregate's own state after the row's last event; the columns are
-- derived from it with the same rules as the command side.
CREATE TABLE IF NOT EXISTS bookings (
    order_id              text        PRIMARY KEY,
    customer_id           text,
    payee_id              text,
    service_starts_at     timestamptz,
    -- awaiting, overdue, confirmed, cancelled; NULL: no confirmation was asked for.
    confirmation_status   text,
    requested_at          timestamptz,
    remind_at             timestamptz,
    confirm_by            timestamptz,
    reminded_at           timestamptz,
    overdue_at            timestamptz,
    confirmed_at          timestamptz,
    confirmed_by          text,
    cancelled_at          timestamptz,
    -- Schedule changes; service_starts_at is the start after the last one.
    reschedule_count      integer     NOT NULL,
    stream_version        bigint      NOT NULL,
    last_position         bigint      NOT NULL,
    updated_at            timestamptz NOT NULL,
    state                 jsonb       NOT NULL
);
CREATE INDEX IF NOT EXISTS bookings_by_confirmation
    ON bookings (confirmation_status, confirm_by, order_id);
CREATE INDEX IF NOT EXISTS bookings_rescheduled
    ON bookings (service_starts_at) WHERE reschedule_count > 0;
