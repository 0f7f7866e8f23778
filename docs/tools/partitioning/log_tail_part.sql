-- What a caught-up projector does: the page after a position near the head.
SELECT last_position - 1000 AS p FROM event_sequencer_part \gset
SELECT global_position, stream_id, stream_version, event_id, event_type, schema_version, payload, metadata, recorded_at, prev_hash, hash FROM events_part WHERE global_position > :p ORDER BY global_position LIMIT 1000;
