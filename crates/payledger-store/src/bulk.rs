//! A bulk loader for new streams: years of events in minutes, for benchmarks and capacity tests
//! (issue 19, docs/performance.md). Not for the service: commands append through
//! `append_events` with their version checks; this writes rows with `COPY`.
//!
//! Each call is one transaction that takes the sequencer row's lock first, exactly as
//! `append_events` does, so positions stay gapless and in commit order and the loader may run
//! beside a live writer. Every stream must be new (version 1 on): an existing one makes the COPY
//! fail on the `(stream_id, stream_version)` key and nothing of the call is stored. Hashes follow
//! the chain recipe (`chain`), so `audit verify` checks what was loaded like any other event.
//!
//! It needs `INSERT` on `events` and `UPDATE` on `event_sequencer`: the schema owner's
//! connection, not `payledger_app`'s.

use crate::chain::{self, HashedFields, GENESIS_HASH};
use crate::{validate_append, AppendError, NewEvent};
use sqlx::PgPool;
use std::fmt::Write as _;

/// Rows sent to the server per `send` call.
const COPY_CHUNK_BYTES: usize = 1 << 20;
/// The largest load in one call (one transaction): bounded memory, bounded lock time.
pub const MAX_EVENTS_PER_LOAD: usize = 200_000;

/// A stream to create with its events.
#[derive(Debug, Clone)]
pub struct NewStream {
    pub stream_id: String,
    pub events: Vec<NewEvent>,
}

/// Where a load landed in the global log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOutcome {
    pub first_position: i64,
    pub last_position: i64,
}

/// Appends `streams` (all new) in one transaction with COPY. Returns the positions used.
pub async fn load_new_streams(
    pool: &PgPool,
    streams: &[NewStream],
) -> Result<Option<LoadOutcome>, AppendError> {
    let total: usize = streams.iter().map(|s| s.events.len()).sum();
    if total == 0 {
        return Ok(None);
    }
    if total > MAX_EVENTS_PER_LOAD {
        return Err(AppendError::Invalid(format!(
            "a load carries at most {MAX_EVENTS_PER_LOAD} events, got {total}"
        )));
    }
    for stream in streams {
        validate_append(&stream.stream_id, &stream.events)?;
    }
    let mut transaction = pool.begin().await?;
    let last: i64 =
        sqlx::query_scalar("SELECT last_position FROM event_sequencer WHERE id = 1 FOR UPDATE")
            .fetch_one(&mut *transaction)
            .await?;
    // Taken after the lock, as append_events does: recorded_at never decreases along the log.
    let recorded_at: String = sqlx::query_scalar("SELECT clock_timestamp()::text")
        .fetch_one(&mut *transaction)
        .await?;
    let mut rows = String::with_capacity(total * 700);
    let mut position = last;
    for stream in streams {
        let mut prev_hash = GENESIS_HASH;
        for (index, event) in stream.events.iter().enumerate() {
            position += 1;
            let stream_version = index as i64 + 1;
            let metadata = serde_json::to_value(&event.metadata)
                .map_err(|e| AppendError::Invalid(format!("metadata does not serialise: {e}")))?;
            let hash = chain::event_hash(&HashedFields {
                prev_hash: &prev_hash,
                stream_id: &stream.stream_id,
                stream_version,
                event_id: &event.event_id,
                event_type: &event.event_type,
                schema_version: event.schema_version,
                payload: &event.payload,
                metadata: &metadata,
            });
            let _ = write!(rows, "{position}\t");
            push_text_field(&mut rows, &stream.stream_id);
            let _ = write!(
                rows,
                "\t{stream_version}\t{}\t",
                event.event_id.hyphenated()
            );
            push_text_field(&mut rows, &event.event_type);
            let _ = write!(rows, "\t{}\t", event.schema_version);
            push_text_field(&mut rows, &chain::canonical_json(&event.payload));
            rows.push('\t');
            push_text_field(&mut rows, &chain::canonical_json(&metadata));
            let _ = writeln!(
                rows,
                "\t{recorded_at}\t\\\\x{}\t\\\\x{}",
                hex::encode(prev_hash),
                hex::encode(hash)
            );
            prev_hash = hash;
        }
    }
    let mut copy = (*transaction)
        .copy_in_raw(
            "COPY events (global_position, stream_id, stream_version, event_id, event_type, \
             schema_version, payload, metadata, recorded_at, prev_hash, hash) FROM STDIN",
        )
        .await?;
    for chunk in rows.as_bytes().chunks(COPY_CHUNK_BYTES) {
        if let Err(error) = copy.send(chunk).await {
            copy.abort(error.to_string()).await?;
            return Err(error.into());
        }
    }
    let loaded = copy.finish().await?;
    if loaded != total as u64 {
        return Err(AppendError::Invalid(format!(
            "COPY loaded {loaded} of {total} events"
        )));
    }
    sqlx::query("UPDATE event_sequencer SET last_position = $1 WHERE id = 1")
        .bind(position)
        .execute(&mut *transaction)
        .await?;
    sqlx::query("SELECT pg_notify('payledger_events', $1)")
        .bind(position.to_string())
        .execute(&mut *transaction)
        .await?;
    transaction.commit().await?;
    Ok(Some(LoadOutcome {
        first_position: last + 1,
        last_position: position,
    }))
}

/// COPY's text format: backslash, tab, newline and carriage return are escaped (chunks of a
/// multi-byte character never split because the escape only touches ASCII).
fn push_text_field(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            other => out.push(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EventMetadata, EventStore, ExpectedVersion, WriterConfig};
    use payledger_testdb::TestDatabase;
    use serde_json::json;

    #[test]
    fn copy_text_escapes_what_copy_would_misread() {
        let mut out = String::new();
        push_text_field(&mut out, "a\\b\tc\nd\re\"ü");
        assert_eq!(out, "a\\\\b\\tc\\nd\\re\"ü");
    }

    #[tokio::test]
    async fn loaded_streams_chain_verify_and_interleave_with_appends() {
        let db = TestDatabase::fresh().await;
        let store = EventStore::new(db.app_pool.clone(), WriterConfig::default());
        let metadata = EventMetadata {
            actor: Some("system:test".into()),
            ..EventMetadata::default()
        };
        let event = |n: i64| {
            NewEvent::new(
                "Tested",
                json!({"n": n, "text": "tab\there \\ \"quoted\" newline\n ünïcode"}),
                metadata.clone(),
            )
        };
        store
            .append("before-1", ExpectedVersion::NoStream, vec![event(0)], false)
            .await
            .unwrap();
        let streams: Vec<NewStream> = (0..50)
            .map(|s| NewStream {
                stream_id: format!("loaded-{s}"),
                events: (0..3).map(event).collect(),
            })
            .collect();
        let outcome = load_new_streams(&db.owner_pool, &streams)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((outcome.first_position, outcome.last_position), (2, 151));
        store
            .append("after-1", ExpectedVersion::NoStream, vec![event(9)], false)
            .await
            .unwrap();
        let report = crate::audit::verify_all(&db.app_pool).await.unwrap();
        assert_eq!(report.first_problem, None, "{report:?}");
        assert_eq!(report.events_checked, 152);
        // The loaded stream is an ordinary stream: the next append continues its chain.
        store
            .append("loaded-7", ExpectedVersion::Exact(3), vec![event(4)], false)
            .await
            .unwrap();
        let report = crate::audit::verify_all(&db.app_pool).await.unwrap();
        assert_eq!(report.first_problem, None, "{report:?}");
        // An existing stream makes the whole load fail; nothing of it is stored.
        let clash = vec![
            NewStream {
                stream_id: "fresh-1".into(),
                events: vec![event(1)],
            },
            NewStream {
                stream_id: "loaded-3".into(),
                events: vec![event(1)],
            },
        ];
        assert!(load_new_streams(&db.owner_pool, &clash).await.is_err());
        let head = crate::head_position(&db.app_pool).await.unwrap();
        assert_eq!(head, 153);
        // The application role may not load: only append_events writes for it.
        assert!(load_new_streams(&db.app_pool, &streams[..1]).await.is_err());
    }
}
