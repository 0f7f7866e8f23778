-- Variant of setup.sql: the partitioned copy with a stream-head table. The head lookup of every
-- append becomes one primary-key probe instead of one probe per partition, and the table's
-- primary key is the database's cross-partition guard against two commands writing the same
-- stream version (which a per-partition UNIQUE (stream_id, stream_version) no longer is).
\set ON_ERROR_STOP on
\timing on

DROP TABLE IF EXISTS stream_heads_part CASCADE;
CREATE TABLE stream_heads_part (
    stream_id       text   PRIMARY KEY,
    stream_version  bigint NOT NULL,
    hash            bytea  NOT NULL,
    first_position  bigint NOT NULL
);
INSERT INTO stream_heads_part
SELECT DISTINCT ON (stream_id) stream_id, stream_version, hash,
       -- a `bench fill` stream is contiguous in the log: its first position follows from its head
       global_position - stream_version + 1
  FROM events ORDER BY stream_id, stream_version DESC;

DO $$
DECLARE
    v_def text := pg_get_functiondef('append_events_part'::regproc);
    v_lookup text := $l$SELECT e.stream_version, e.hash INTO v_head_version, v_head_hash
          FROM events_part e WHERE e.stream_id = p_streams[i]
         ORDER BY e.stream_version DESC LIMIT 1;$l$;
    v_notify text := $n$UPDATE event_sequencer_part SET last_position = v_next - 1 WHERE id = 1;$n$;
BEGIN
    IF position(v_lookup IN v_def) = 0 OR position(v_notify IN v_def) = 0 THEN
        RAISE EXCEPTION 'append_events_part does not have the expected text';
    END IF;
    v_def := replace(v_def, 'public.append_events_part(', 'public.append_events_heads(');
    v_def := replace(v_def, v_lookup,
        $r$SELECT h.stream_version, h.hash INTO v_head_version, v_head_hash
          FROM stream_heads_part h WHERE h.stream_id = p_streams[i];$r$);
    -- After the insert: each appended command moves its stream's head, guarded by the version it
    -- expected (a new stream's INSERT fails on the primary key if the stream exists).
    v_def := replace(v_def, v_notify, v_notify || $r$
        v_end := 0;
        FOR i IN 1 .. v_commands LOOP
            v_end := v_end + v_counts[i];
            CONTINUE WHEN v_outcomes[i] <> 'appended';
            IF p_expected_versions[i] = 0 THEN
                INSERT INTO stream_heads_part (stream_id, stream_version, hash, first_position)
                VALUES (p_streams[i], v_actual[i], p_hashes[v_end], v_first[i]);
            ELSE
                UPDATE stream_heads_part SET stream_version = v_actual[i], hash = p_hashes[v_end]
                 WHERE stream_id = p_streams[i] AND stream_version = p_expected_versions[i];
                IF NOT FOUND THEN
                    RAISE EXCEPTION 'append_events_heads: stream % moved', p_streams[i];
                END IF;
            END IF;
        END LOOP;$r$);
    v_def := replace(v_def, '    v_max_version  bigint;', '    v_max_version  bigint;
    v_end          integer;');
    EXECUTE v_def;
END
$$;
VACUUM (ANALYZE) stream_heads_part;
