-- The event store: one append-only table, a sequencer that hands out global positions in commit
-- order, and the only function through which the application may write. See docs/architecture.md.

-- A single row holds the last global position handed out. The append function locks it for the
-- rest of its transaction, so positions are gapless and commit in order: a reader that follows
-- `global_position > checkpoint` can never skip an event that commits late (the defect of
-- Marten #3321, SQLStreamStore #121, Eventuous #222). The lock serialises writers; group commit
-- in the application amortises it over many commands per transaction.
CREATE TABLE event_sequencer (
    id            smallint PRIMARY KEY CHECK (id = 1),
    last_position bigint   NOT NULL CHECK (last_position >= 0)
);
INSERT INTO event_sequencer (id, last_position) VALUES (1, 0);

CREATE TABLE events (
    global_position bigint      PRIMARY KEY CHECK (global_position >= 1),
    stream_id       text        NOT NULL CHECK (length(stream_id) BETWEEN 1 AND 200),
    stream_version  bigint      NOT NULL CHECK (stream_version >= 1),
    event_id        uuid        NOT NULL UNIQUE,
    event_type      text        NOT NULL CHECK (length(event_type) BETWEEN 1 AND 100),
    schema_version  integer     NOT NULL CHECK (schema_version >= 1),
    payload         jsonb       NOT NULL,
    metadata        jsonb       NOT NULL,
    -- Taken by the database after the sequencer lock, so it never decreases along global_position.
    recorded_at     timestamptz NOT NULL,
    prev_hash       bytea       NOT NULL CHECK (length(prev_hash) = 32),
    hash            bytea       NOT NULL CHECK (length(hash) = 32),
    UNIQUE (stream_id, stream_version)
);

-- Events are never updated or deleted, whoever asks: mistakes are corrected by new events.
CREATE FUNCTION events_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are immutable: % on events is not allowed', TG_OP
        USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER events_reject_update_delete BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_are_immutable();
CREATE TRIGGER events_reject_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_are_immutable();

-- Appends the events of a batch of commands (group commit) in one transaction.
--
-- Each command carries the stream head it expects (version and hash); a command whose stream
-- moved on is answered 'conflict' without affecting the others. Callers send at most one command
-- per stream per batch. Hashes are computed by the caller with the recipe of docs/auditing.md;
-- `audit verify` recomputes them independently.
--
-- Outcomes per command: 'appended', 'conflict' (actual_version says where the stream is),
-- 'duplicate' (every event id exists with the same content: the original positions are returned)
-- and 'id_conflict' (an event id exists with different content).
CREATE FUNCTION append_events(
    p_streams           text[],
    p_expected_versions bigint[],
    p_prev_hashes       bytea[],
    p_check_ids         boolean[],
    p_event_commands    integer[],
    p_event_ids         uuid[],
    p_event_types       text[],
    p_schema_versions   integer[],
    p_payloads          jsonb[],
    p_metadata          jsonb[],
    p_hashes            bytea[]
) RETURNS TABLE (command_index integer, outcome text, actual_version bigint, first_position bigint, recorded_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_commands integer := coalesce(array_length(p_streams, 1), 0);
    v_events   integer := coalesce(array_length(p_event_commands, 1), 0);
    v_outcomes text[]   := array_fill('appended'::text, ARRAY[v_commands]);
    v_actual   bigint[] := array_fill(0::bigint, ARRAY[v_commands]);
    v_first    bigint[] := array_fill(NULL::bigint, ARRAY[v_commands]);
    v_counts   integer[] := array_fill(0, ARRAY[v_commands]);
    v_last     bigint;
    v_next     bigint;
    v_now      timestamptz;
    v_head_version bigint;
    v_head_hash    bytea;
    v_known    integer;
    v_same     integer;
    v_min_position bigint;
    v_max_version  bigint;
BEGIN
    -- Events arrive grouped by command, commands in order: global positions follow that order.
    FOR k IN 1 .. v_events LOOP
        IF k > 1 AND p_event_commands[k] < p_event_commands[k - 1] THEN
            RAISE EXCEPTION 'append_events: events must be grouped by command in order';
        END IF;
        v_counts[p_event_commands[k]] := v_counts[p_event_commands[k]] + 1;
    END LOOP;

    SELECT s.last_position INTO v_last FROM event_sequencer s WHERE s.id = 1 FOR UPDATE;
    v_now := clock_timestamp();

    FOR i IN 1 .. v_commands LOOP
        IF v_counts[i] = 0 THEN
            RAISE EXCEPTION 'append_events: command % has no events', i;
        END IF;
        IF p_check_ids[i] THEN
            SELECT count(*), count(*) FILTER (WHERE e.stream_id = p_streams[i]
                                                AND e.event_type = u.event_type
                                                AND e.schema_version = u.schema_version
                                                AND e.payload = u.payload
                                                AND e.metadata = u.metadata),
                   min(e.global_position), max(e.stream_version)
              INTO v_known, v_same, v_min_position, v_max_version
              FROM unnest(p_event_commands, p_event_ids, p_event_types, p_schema_versions,
                          p_payloads, p_metadata)
                   AS u(command_index, event_id, event_type, schema_version, payload, metadata)
              JOIN events e ON e.event_id = u.event_id
             WHERE u.command_index = i;
            IF v_known > 0 THEN
                v_outcomes[i] := CASE WHEN v_same = v_counts[i] THEN 'duplicate' ELSE 'id_conflict' END;
                v_first[i] := v_min_position;
                v_actual[i] := v_max_version;
                CONTINUE;
            END IF;
        END IF;

        v_head_version := NULL;
        v_head_hash := NULL;
        SELECT e.stream_version, e.hash INTO v_head_version, v_head_hash
          FROM events e WHERE e.stream_id = p_streams[i]
         ORDER BY e.stream_version DESC LIMIT 1;
        v_actual[i] := coalesce(v_head_version, 0);
        IF v_actual[i] <> p_expected_versions[i]
           OR coalesce(v_head_hash, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea)
              <> p_prev_hashes[i] THEN
            v_outcomes[i] := 'conflict';
        END IF;
    END LOOP;

    v_next := v_last + 1;
    FOR i IN 1 .. v_commands LOOP
        IF v_outcomes[i] = 'appended' THEN
            v_first[i] := v_next;
            v_next := v_next + v_counts[i];
            v_actual[i] := p_expected_versions[i] + v_counts[i];
        END IF;
    END LOOP;

    IF v_next > v_last + 1 THEN
        INSERT INTO events (global_position, stream_id, stream_version, event_id, event_type,
                            schema_version, payload, metadata, recorded_at, prev_hash, hash)
        SELECT v_first[a.command_index] + a.in_command - 1,
               p_streams[a.command_index],
               p_expected_versions[a.command_index] + a.in_command,
               a.event_id, a.event_type, a.schema_version, a.payload, a.metadata, v_now,
               coalesce(lag(a.hash) OVER (PARTITION BY a.command_index ORDER BY a.ordinal),
                        p_prev_hashes[a.command_index]),
               a.hash
          FROM (SELECT u.*, row_number() OVER (PARTITION BY u.command_index ORDER BY u.ordinal) AS in_command
                  FROM unnest(p_event_commands, p_event_ids, p_event_types, p_schema_versions,
                              p_payloads, p_metadata, p_hashes)
                       WITH ORDINALITY AS u(command_index, event_id, event_type, schema_version,
                                            payload, metadata, hash, ordinal)
                 WHERE v_outcomes[u.command_index] = 'appended') a;

        UPDATE event_sequencer SET last_position = v_next - 1 WHERE id = 1;
        -- Delivered at commit: wakes projectors without polling.
        PERFORM pg_notify('payledger_events', (v_next - 1)::text);
    END IF;

    RETURN QUERY
    SELECT g.i::integer, v_outcomes[g.i], v_actual[g.i], v_first[g.i], v_now
      FROM generate_series(1, v_commands) AS g(i)
     ORDER BY g.i;
END
$$;

-- The application role may read events and append through append_events, nothing else: no
-- INSERT, UPDATE, DELETE or TRUNCATE on events, no write to the sequencer.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'payledger_app') THEN
        CREATE ROLE payledger_app NOLOGIN;
    END IF;
EXCEPTION
    WHEN insufficient_privilege THEN
        RAISE NOTICE 'cannot create role payledger_app: create it and rerun the grants below';
    -- Roles are cluster-wide: another database's migration may have created it just now.
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'payledger_app') THEN
        REVOKE ALL ON events, event_sequencer FROM PUBLIC;
        REVOKE ALL ON FUNCTION append_events FROM PUBLIC;
        GRANT SELECT ON events, event_sequencer TO payledger_app;
        GRANT EXECUTE ON FUNCTION append_events TO payledger_app;
        EXECUTE format('GRANT CONNECT, CREATE ON DATABASE %I TO payledger_app', current_database());
    END IF;
END
$$;
