-- The scenario clock of a test deployment (`payledger serve --test-clock`): one row, the time
-- every time-based rule reads, shared by all `serve` processes of the database. A process keeps
-- the value in memory and re-reads it when another process moves it (NOTIFY
-- payledger_clock, and a poll as fallback). Time never moves backwards: the CHECK below and the
-- UPDATE's `WHERE scenario_time <= $new` both refuse it. Production databases never get a row.

CREATE TABLE scenario_clock (
    id            smallint    PRIMARY KEY CHECK (id = 1),
    scenario_time timestamptz NOT NULL,
    moves         bigint      NOT NULL DEFAULT 0 CHECK (moves >= 0),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION scenario_clock_forward_only() RETURNS trigger AS $$
BEGIN
    IF NEW.scenario_time < OLD.scenario_time THEN
        RAISE EXCEPTION 'the scenario clock never moves backwards (% < %)',
            NEW.scenario_time, OLD.scenario_time;
    END IF;
    PERFORM pg_notify('payledger_clock', NEW.scenario_time::text);
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER scenario_clock_forward_only BEFORE UPDATE ON scenario_clock
    FOR EACH ROW EXECUTE FUNCTION scenario_clock_forward_only();

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'payledger_app') THEN
        REVOKE ALL ON scenario_clock FROM PUBLIC;
        -- Never deleted: the row is the scenario's time for as long as the database lives.
        GRANT SELECT, INSERT, UPDATE ON scenario_clock TO payledger_app;
    END IF;
END
$$;
