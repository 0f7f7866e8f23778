-- What a projector (or a rebuild) does: a page of the log after a position, here anywhere in it.
\set p random(0, :head - 1000)
SELECT global_position, stream_id, stream_version, event_id, event_type, schema_version, payload, metadata, recorded_at, prev_hash, hash FROM events_part WHERE global_position > :p ORDER BY global_position LIMIT 1000;
