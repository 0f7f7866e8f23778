-- Issue 19: a copy of `events` partitioned by RANGE (global_position), for measurement only
-- (docs/performance.md, "Issue 19: partitioning `events` by position range, measured").
-- Run as the schema owner on a store filled by `payledger bench fill`; `:part_size` positions per
-- partition (psql -v part_size=1000000). Nothing here is a migration.
\set ON_ERROR_STOP on
\timing on

DROP TABLE IF EXISTS events_part, event_sequencer_part, bench_streams CASCADE;

CREATE TABLE events_part (
    global_position bigint      NOT NULL CHECK (global_position >= 1),
    stream_id       text        NOT NULL CHECK (length(stream_id) BETWEEN 1 AND 200),
    stream_version  bigint      NOT NULL CHECK (stream_version >= 1),
    event_id        uuid        NOT NULL,
    event_type      text        NOT NULL CHECK (length(event_type) BETWEEN 1 AND 100),
    schema_version  integer     NOT NULL CHECK (schema_version >= 1),
    payload         jsonb       NOT NULL,
    metadata        jsonb       NOT NULL,
    recorded_at     timestamptz NOT NULL,
    prev_hash       bytea       NOT NULL CHECK (length(prev_hash) = 32),
    hash            bytea       NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (global_position)
) PARTITION BY RANGE (global_position);
CREATE INDEX events_part_recorded_at_brin ON events_part USING brin (recorded_at);

-- Partitions up to the head plus room for the append runs. UNIQUE (stream_id, stream_version)
-- and UNIQUE (event_id) cannot be declared on the parent (PostgreSQL requires the partition key
-- in a partitioned table's unique keys), so each partition gets its own: uniqueness within a
-- partition only, the same per-insert index work as the unpartitioned table's constraints.
SET bench.part_size = :'part_size';
DO $$
DECLARE
    v_size bigint := current_setting('bench.part_size')::bigint;
    v_head bigint := (SELECT last_position FROM event_sequencer);
    v_from bigint := 1;
    v_n    integer := 0;
BEGIN
    WHILE v_from <= v_head + 2 * v_size LOOP
        EXECUTE format('CREATE TABLE events_part_%s PARTITION OF events_part FOR VALUES FROM (%s) TO (%s)',
                       lpad(v_n::text, 4, '0'), v_from, v_from + v_size);
        EXECUTE format('ALTER TABLE events_part_%s ADD UNIQUE (stream_id, stream_version), ADD UNIQUE (event_id)',
                       lpad(v_n::text, 4, '0'));
        EXECUTE format('ALTER TABLE events_part_%s SET (autovacuum_freeze_min_age = 0)', lpad(v_n::text, 4, '0'));
        v_from := v_from + v_size;
        v_n := v_n + 1;
    END LOOP;
END
$$;

CREATE TRIGGER events_part_reject_update_delete BEFORE UPDATE OR DELETE ON events_part
    FOR EACH ROW EXECUTE FUNCTION events_are_immutable();

-- Same history as `events`: rows inserted in position order with the indexes in place (the
-- COPY loader fills `events` the same way).
INSERT INTO events_part SELECT * FROM events ORDER BY global_position;

CREATE TABLE event_sequencer_part (LIKE event_sequencer INCLUDING ALL);
INSERT INTO event_sequencer_part SELECT * FROM event_sequencer;

-- append_events on the partitioned copy: the same function text with the table names swapped.
DO $$
DECLARE
    v_def text := pg_get_functiondef('append_events'::regproc);
BEGIN
    v_def := replace(v_def, 'public.append_events(', 'public.append_events_part(');
    v_def := regexp_replace(v_def, '\mevents e\M', 'events_part e', 'g');
    v_def := replace(v_def, 'INSERT INTO events (', 'INSERT INTO events_part (');
    v_def := replace(v_def, 'event_sequencer', 'event_sequencer_part');
    EXECUTE v_def;
END
$$;

-- Streams to read: the streams met in a 1 % sample of the table's pages, numbered at random
-- for pgbench (-D nstreams=the row count).
CREATE TABLE bench_streams AS
SELECT row_number() OVER (ORDER BY random()) AS n, s.stream_id,
       (SELECT min(e.global_position) FROM events e WHERE e.stream_id = s.stream_id) AS first_position,
       (SELECT max(e.global_position) FROM events e WHERE e.stream_id = s.stream_id) AS last_position
  FROM (SELECT DISTINCT stream_id FROM events TABLESAMPLE SYSTEM (1)) s;
CREATE UNIQUE INDEX ON bench_streams (n);

VACUUM (ANALYZE) events_part;
VACUUM (ANALYZE) events;
VACUUM (ANALYZE) bench_streams;
