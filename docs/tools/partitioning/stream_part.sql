-- What a command (and the orders projection's fold) does: read one stream by id, all of it.
\set n random(1, :nstreams)
SELECT stream_id AS sid FROM bench_streams WHERE n = :n \gset
SELECT global_position, stream_id, stream_version, event_id, event_type, schema_version, payload, metadata, recorded_at, prev_hash, hash FROM events_part WHERE stream_id = :sid::text AND stream_version > 0 ORDER BY stream_version LIMIT 1000;
