-- The same read with the stream's first and last positions known (a stream-head table can keep
-- both): run-time pruning keeps only the partitions between them.
\set n random(1, :nstreams)
SELECT stream_id AS sid, first_position AS fp, last_position AS lp FROM bench_streams WHERE n = :n \gset
SELECT global_position, stream_id, stream_version, event_id, event_type, schema_version, payload, metadata, recorded_at, prev_hash, hash FROM events_part WHERE stream_id = :sid::text AND stream_version > 0 AND global_position BETWEEN :fp AND :lp ORDER BY stream_version LIMIT 1000;
