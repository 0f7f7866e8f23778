//! The Postgres event store. This crate owns every SQL statement that touches `events`.
//!
//! - Appends go through [`EventStore::append`]: one call per command, each with its own expected
//!   version and its own answer. Behind it a single writer task gathers the appends that arrive
//!   while the previous transaction is committing and writes them in one transaction (group
//!   commit), so the cost of a WAL flush is shared by many commands.
//! - Every event gets a gapless global position in commit order (see `migrations/0001`), so a
//!   reader following `global_position > checkpoint` never skips a late commit.
//! - Each stream is a SHA-256 hash chain ([`chain`]); [`audit::verify_all`] recomputes them.
//! - Signed checkpoints ([`checkpoint`]) commit to the whole log in global order.

pub mod audit;
pub mod bulk;
pub mod call_bounds;
pub mod chain;
pub mod checkpoint;
pub mod merkle;
pub mod recent;
pub mod replicas;
mod writer;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use std::sync::Arc;
use uuid::Uuid;

pub use writer::WriterConfig;

/// Upper bound of one read of the global log or a stream: pages keep memory flat.
pub const MAX_READ_LIMIT: i64 = 10_000;
/// How many events one command may append at once.
pub const MAX_EVENTS_PER_APPEND: usize = 1_000;
/// How large one event's payload plus metadata may be once serialised.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;

/// The migrations under `/migrations`, embedded at compile time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// Applies pending migrations. Safe to call from several processes at once (sqlx takes an
/// advisory lock while migrating).
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// What the caller expects the stream's version to be before its events are appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// Append whatever the stream's version is.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last event must have this version (1-based).
    Exact(i64),
}

/// Who and why, attached to every event. Covered by the hash chain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventMetadata {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// `client:NAME`, `admin:NAME`, `system:reconciler`, …
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
}

/// An event to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: i32,
    pub payload: Value,
    pub metadata: EventMetadata,
}

impl NewEvent {
    /// A new event with a fresh time-ordered id.
    pub fn new(event_type: impl Into<String>, payload: Value, metadata: EventMetadata) -> Self {
        NewEvent {
            event_id: Uuid::now_v7(),
            event_type: event_type.into(),
            schema_version: 1,
            payload,
            metadata,
        }
    }
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordedEvent {
    pub global_position: i64,
    pub stream_id: String,
    pub stream_version: i64,
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: i32,
    pub payload: Value,
    pub metadata: Value,
    /// Always served as `YYYY-MM-DDTHH:MM:SS.ffffffZ` (microseconds, PostgreSQL's precision).
    #[serde(with = "recorded_at_format")]
    pub recorded_at: DateTime<Utc>,
    #[serde(with = "hex_bytes")]
    pub prev_hash: [u8; 32],
    #[serde(with = "hex_bytes")]
    pub hash: [u8; 32],
}

impl RecordedEvent {
    /// The hash recomputed from the stored fields (not the stored hash).
    pub fn recompute_hash(&self) -> [u8; 32] {
        chain::event_hash(&chain::HashedFields {
            prev_hash: &self.prev_hash,
            stream_id: &self.stream_id,
            stream_version: self.stream_version,
            event_id: &self.event_id,
            event_type: &self.event_type,
            schema_version: self.schema_version,
            payload: &self.payload,
            metadata: &self.metadata,
        })
    }
}

/// `recordedAt` in one fixed format, so that times compare as text and a zero fraction is not
/// dropped (chrono's default writes `…:18Z` when the microseconds are 0).
pub mod recorded_at_format {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    /// `2026-12-06T03:48:18.000000Z`: always six fraction digits and `Z`.
    pub fn format(at: &DateTime<Utc>) -> String {
        at.to_rfc3339_opts(SecondsFormat::Micros, true)
    }

    pub fn serialize<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(at))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|at| at.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

/// What an append did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendOutcome {
    /// The stream's version after the append (for a duplicate: where the stream is now).
    pub stream_version: i64,
    pub first_position: i64,
    pub last_position: i64,
    pub recorded_at: DateTime<Utc>,
    /// Every event id already existed with the same content: nothing new was written and the
    /// positions are the original ones.
    pub duplicate: bool,
    /// Hash of the stream's new last event (for the caller's stream cache).
    pub head_hash: [u8; 32],
}

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("stream {stream_id} is at version {actual}, expected {expected:?}")]
    WrongExpectedVersion {
        stream_id: String,
        expected: ExpectedVersion,
        actual: i64,
    },
    #[error("an event id of this append already exists with different content")]
    EventIdConflict,
    #[error("invalid append: {0}")]
    Invalid(String),
    #[error("failed to append events: {0}")]
    Database(#[from] sqlx::Error),
    #[error("the event writer has stopped")]
    WriterStopped,
}

impl AppendError {
    /// Whether the database (not the request) is at fault, so the client should retry later.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, AppendError::Database(_) | AppendError::WriterStopped)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("failed to read events: {0}")]
    Database(#[from] sqlx::Error),
    #[error("stored event at position {position} is corrupt: {reason}")]
    Corrupt { position: i64, reason: String },
}

/// The event store handle; cheap to clone.
#[derive(Clone)]
pub struct EventStore {
    pool: PgPool,
    writer: Arc<writer::Writer>,
    /// The writer's per-call bound, for the store's own reads too ([`call_bounds`]).
    call_timeout_ms: u64,
}

impl EventStore {
    /// Starts the group-commit writer on `pool`. Must be called inside a tokio runtime.
    pub fn new(pool: PgPool, config: WriterConfig) -> EventStore {
        EventStore {
            call_timeout_ms: config.call_timeout_ms,
            writer: Arc::new(writer::Writer::spawn(pool.clone(), config)),
            pool,
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The bound of one database call (`PAYLEDGER_DATABASE_CALL_TIMEOUT_MS`), for the app
    /// services' own calls on [`EventStore::pool`] ([`call_bounds::bounded`]).
    pub fn call_timeout_ms(&self) -> u64 {
        self.call_timeout_ms
    }

    /// Appends `events` to `stream_id` atomically if the stream is where `expected` says.
    ///
    /// With `check_event_ids`, re-appending events whose ids already exist with the same content
    /// returns the original outcome (`duplicate: true`); the same id with other content is
    /// [`AppendError::EventIdConflict`]. Leave it off for freshly generated ids: it costs a lookup.
    pub async fn append(
        &self,
        stream_id: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        check_event_ids: bool,
    ) -> Result<AppendOutcome, AppendError> {
        validate_append(stream_id, &events)?;
        self.writer
            .append(stream_id.to_string(), expected, events, check_event_ids)
            .await
    }

    /// Events of one stream with `stream_version > after_version`, oldest first.
    pub async fn read_stream(
        &self,
        stream_id: &str,
        after_version: i64,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, ReadError> {
        // A command's stream load: bounded like the writer's calls, so a command cannot wait on
        // a dead connection for minutes before it even reaches the writer.
        let query = format!(
            "SELECT {COLUMNS} FROM events WHERE stream_id = $1 AND stream_version > $2 \
             ORDER BY stream_version LIMIT $3"
        );
        let rows = call_bounds::bounded(
            "loading a stream",
            self.call_timeout_ms,
            sqlx::query(&query)
                .bind(stream_id)
                .bind(after_version)
                .bind(limit.clamp(1, MAX_READ_LIMIT))
                .fetch_all(&self.pool),
        )
        .await?;
        let events = rows.iter().map(decode_row).collect::<Result<Vec<_>, _>>()?;
        self.writer.remember_heads(&events);
        Ok(events)
    }

    /// Every event of one stream, oldest first, read page by page.
    pub async fn read_whole_stream(
        &self,
        stream_id: &str,
    ) -> Result<Vec<RecordedEvent>, ReadError> {
        let mut all = Vec::new();
        loop {
            let after = all.last().map_or(0, |e: &RecordedEvent| e.stream_version);
            let page = self.read_stream(stream_id, after, MAX_READ_LIMIT).await?;
            let done = (page.len() as i64) < MAX_READ_LIMIT;
            all.extend(page);
            if done {
                return Ok(all);
            }
        }
    }

    /// The global log after `after_position`, in order. Positions are gapless and in commit
    /// order, so the last position returned is a safe checkpoint.
    pub async fn read_all(
        &self,
        after_position: i64,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, ReadError> {
        call_bounds::bounded(
            "reading the log",
            self.call_timeout_ms,
            read_all(&self.pool, after_position, limit),
        )
        .await
    }

    /// The position of the last committed event (0 for an empty store).
    pub async fn head_position(&self) -> Result<i64, ReadError> {
        call_bounds::bounded(
            "reading the head position",
            self.call_timeout_ms,
            head_position(&self.pool),
        )
        .await
    }
}

/// Events of one stream on any executor (a read replica's pool), oldest first.
pub async fn read_stream<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    stream_id: &str,
    after_version: i64,
    limit: i64,
) -> Result<Vec<RecordedEvent>, ReadError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM events WHERE stream_id = $1 AND stream_version > $2 \
         ORDER BY stream_version LIMIT $3"
    ))
    .bind(stream_id)
    .bind(after_version)
    .bind(limit.clamp(1, MAX_READ_LIMIT))
    .fetch_all(executor)
    .await?;
    rows.iter().map(decode_row).collect()
}

/// The first event (version 1) of each of `stream_ids` that has one, in no particular order;
/// read [`MAX_READ_LIMIT`] streams per query.
pub async fn read_first_events(
    pool: &PgPool,
    stream_ids: &[String],
) -> Result<Vec<RecordedEvent>, ReadError> {
    let mut events = Vec::new();
    for chunk in stream_ids.chunks(MAX_READ_LIMIT as usize) {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM events WHERE stream_id = ANY($1) AND stream_version = 1"
        ))
        .bind(chunk)
        .fetch_all(pool)
        .await?;
        for row in &rows {
            events.push(decode_row(row)?);
        }
    }
    Ok(events)
}

/// Reads the global log on any executor (projectors read inside their own transactions).
pub async fn read_all<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    after_position: i64,
    limit: i64,
) -> Result<Vec<RecordedEvent>, ReadError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM events WHERE global_position > $1 ORDER BY global_position LIMIT $2"
    ))
    .bind(after_position)
    .bind(limit.clamp(1, MAX_READ_LIMIT))
    .fetch_all(executor)
    .await?;
    rows.iter().map(decode_row).collect()
}

/// How many positions one filtered read of the global log looks at, at most: a filter that
/// matches rarely still answers in bounded time, and the page's `scanned_to` says where to go on.
pub const MAX_FILTER_SCAN_POSITIONS: i64 = 50_000;
/// Event types one filter may name.
pub const MAX_FILTER_TYPES: usize = 50;

/// What a filtered read of the global log keeps. Every part is optional; all given parts must
/// match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Stored event types (`PaymentCaptured`, …); an event matches one of them.
    pub event_types: Vec<String>,
    /// `recorded_at >= from` (the database's commit-side time, not the scenario time).
    pub recorded_from: Option<DateTime<Utc>>,
    /// `recorded_at < to`.
    pub recorded_to: Option<DateTime<Utc>>,
    /// The payload's `status` field, compared as text.
    pub status: Option<String>,
}

/// A page of a filtered read: the matching events and the last position looked at (the next
/// page starts after it, whether or not it matched).
#[derive(Debug, Clone)]
pub struct FilteredPage {
    pub events: Vec<RecordedEvent>,
    pub scanned_to: i64,
    /// The log's head when the page was read: `scanned_to < head` means there is more to read.
    pub head: i64,
}

/// The global log after `after_position` filtered by `filter`, in order, looking at no more than
/// [`MAX_FILTER_SCAN_POSITIONS`] positions. Positions are gapless, so a window of positions is a
/// window of events.
pub async fn read_all_filtered<'e>(
    executor: impl sqlx::PgExecutor<'e> + Copy,
    after_position: i64,
    limit: i64,
    filter: &EventFilter,
) -> Result<FilteredPage, ReadError> {
    let limit = limit.clamp(1, MAX_READ_LIMIT);
    let head = head_position(executor).await?;
    let window_end = after_position
        .saturating_add(MAX_FILTER_SCAN_POSITIONS)
        .min(head);
    let types: Option<Vec<String>> =
        (!filter.event_types.is_empty()).then(|| filter.event_types.clone());
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM events WHERE global_position > $1 AND global_position <= $2 \
           AND ($3::text[] IS NULL OR event_type = ANY($3)) \
           AND ($4::timestamptz IS NULL OR recorded_at >= $4) \
           AND ($5::timestamptz IS NULL OR recorded_at < $5) \
           AND ($6::text IS NULL OR payload->>'status' = $6) \
         ORDER BY global_position LIMIT $7"
    ))
    .bind(after_position)
    .bind(window_end)
    .bind(types)
    .bind(filter.recorded_from)
    .bind(filter.recorded_to)
    .bind(filter.status.as_deref())
    .bind(limit)
    .fetch_all(executor)
    .await?;
    let events = rows.iter().map(decode_row).collect::<Result<Vec<_>, _>>()?;
    let scanned_to = if events.len() as i64 == limit {
        events.last().map_or(window_end, |e| e.global_position)
    } else {
        window_end.max(after_position)
    };
    Ok(FilteredPage {
        events,
        scanned_to,
        head,
    })
}

pub async fn head_position<'e>(executor: impl sqlx::PgExecutor<'e>) -> Result<i64, ReadError> {
    let position: i64 =
        sqlx::query_scalar("SELECT last_position FROM event_sequencer WHERE id = 1")
            .fetch_one(executor)
            .await?;
    Ok(position)
}

/// The first events of several streams on any executor: for each `(stream_id, before_version)`,
/// the stream's events with `stream_version < before_version`, grouped by stream and oldest
/// first within each. A reader that meets a stream mid-way folds what it missed from this.
///
/// Unbounded by design, like [`EventStore::read_whole_stream`]: a fold needs all of a prefix.
/// Callers pass streams whose prefixes are short (one order is a handful of events).
pub async fn read_stream_prefixes<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    prefixes: &[(String, i64)],
) -> Result<Vec<RecordedEvent>, ReadError> {
    if prefixes.is_empty() {
        return Ok(Vec::new());
    }
    let (streams, before_versions): (Vec<&str>, Vec<i64>) = prefixes
        .iter()
        .map(|(stream_id, before)| (stream_id.as_str(), *before))
        .unzip();
    // The prefix columns are named apart from the events' own, so `COLUMNS` reads unqualified.
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM unnest($1::text[], $2::bigint[]) AS p(prefix_stream, before_version) \
         JOIN events ON stream_id = p.prefix_stream AND stream_version < p.before_version \
         ORDER BY stream_id, stream_version"
    ))
    // Planned per call: docs/architecture.md, "Lookups by many keys".
    .persistent(false)
    .bind(&streams)
    .bind(&before_versions)
    .fetch_all(executor)
    .await?;
    rows.iter().map(decode_row).collect()
}

/// The events at `positions` (at most [`MAX_READ_LIMIT`]), by position.
pub async fn events_at<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    positions: &[i64],
) -> Result<std::collections::HashMap<i64, RecordedEvent>, ReadError> {
    let positions = &positions[..positions.len().min(MAX_READ_LIMIT as usize)];
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM events WHERE global_position = ANY($1)"
    ))
    // Planned per call: docs/architecture.md, "Lookups by many keys".
    .persistent(false)
    .bind(positions)
    .fetch_all(executor)
    .await?;
    rows.iter()
        .map(|row| decode_row(row).map(|event| (event.global_position, event)))
        .collect()
}

/// When the event at `position` was recorded (`None` when it does not exist yet).
pub async fn recorded_at<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    position: i64,
) -> Result<Option<DateTime<Utc>>, ReadError> {
    let at = sqlx::query_scalar("SELECT recorded_at FROM events WHERE global_position = $1")
        .bind(position)
        .fetch_optional(executor)
        .await?;
    Ok(at)
}

/// How long ago, by the database's own clock, the event at `position` was recorded, in
/// milliseconds; `None` when there is no such event. Measures lag without comparing two clocks.
pub async fn age_ms_of<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    position: i64,
) -> Result<Option<f64>, ReadError> {
    let age_ms = sqlx::query_scalar(
        "SELECT (extract(epoch FROM clock_timestamp() - recorded_at) * 1000)::float8 \
         FROM events WHERE global_position = $1",
    )
    .bind(position)
    .fetch_optional(executor)
    .await?;
    Ok(age_ms)
}

/// How many streams whose name starts with `prefix` exist (counted by their first event).
pub async fn count_streams_with_prefix<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    prefix: &str,
) -> Result<i64, ReadError> {
    let count = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE stream_id LIKE $1 || '%' AND stream_version = 1",
    )
    .bind(
        prefix
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_"),
    )
    .fetch_one(executor)
    .await?;
    Ok(count)
}

const COLUMNS: &str = "global_position, stream_id, stream_version, event_id, event_type, \
    schema_version, payload, metadata, recorded_at, prev_hash, hash";

fn decode_row(row: &PgRow) -> Result<RecordedEvent, ReadError> {
    let position: i64 = row.try_get("global_position")?;
    let to_hash = |name: &str| -> Result<[u8; 32], ReadError> {
        let bytes: Vec<u8> = row.try_get(name)?;
        bytes.try_into().map_err(|_| ReadError::Corrupt {
            position,
            reason: format!("{name} is not 32 bytes"),
        })
    };
    Ok(RecordedEvent {
        global_position: position,
        stream_id: row.try_get("stream_id")?,
        stream_version: row.try_get("stream_version")?,
        event_id: row.try_get("event_id")?,
        event_type: row.try_get("event_type")?,
        schema_version: row.try_get("schema_version")?,
        payload: row.try_get("payload")?,
        metadata: row.try_get("metadata")?,
        recorded_at: row.try_get("recorded_at")?,
        prev_hash: to_hash("prev_hash")?,
        hash: to_hash("hash")?,
    })
}

fn validate_append(stream_id: &str, events: &[NewEvent]) -> Result<(), AppendError> {
    let invalid = |reason: String| Err(AppendError::Invalid(reason));
    if stream_id.is_empty() || stream_id.len() > 200 || stream_id.chars().any(char::is_control) {
        return invalid("stream id must be 1 to 200 characters without control characters".into());
    }
    if events.is_empty() || events.len() > MAX_EVENTS_PER_APPEND {
        return invalid(format!(
            "an append carries 1 to {MAX_EVENTS_PER_APPEND} events, got {}",
            events.len()
        ));
    }
    for event in events {
        if event.event_type.is_empty()
            || event.event_type.len() > 100
            || event.event_type.chars().any(char::is_control)
        {
            return invalid(
                "event type must be 1 to 100 characters without control characters".into(),
            );
        }
        if event.schema_version < 1 {
            return invalid("schema version starts at 1".into());
        }
        let metadata = serde_json::to_value(&event.metadata)
            .map_err(|e| AppendError::Invalid(format!("metadata does not serialise: {e}")))?;
        for value in [&event.payload, &metadata] {
            if chain::contains_non_integer_number(value) {
                return invalid("event payloads hold integers only: no floats near money".into());
            }
            if chain::contains_nul(value) {
                return invalid("event payloads cannot contain NUL characters".into());
            }
        }
        let size = event.payload.to_string().len() + metadata.to_string().len();
        if size > MAX_EVENT_BYTES {
            return invalid(format!("event of {size} bytes exceeds {MAX_EVENT_BYTES}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn recorded_at_always_has_six_fraction_digits() {
        let whole = Utc.with_ymd_and_hms(2026, 12, 6, 3, 48, 18).unwrap();
        assert_eq!(
            recorded_at_format::format(&whole),
            "2026-12-06T03:48:18.000000Z"
        );
        let event = RecordedEvent {
            global_position: 1,
            stream_id: "s".into(),
            stream_version: 1,
            event_id: Uuid::nil(),
            event_type: "T".into(),
            schema_version: 1,
            payload: serde_json::json!({}),
            metadata: serde_json::json!({}),
            recorded_at: whole + chrono::Duration::microseconds(1_200),
            prev_hash: chain::GENESIS_HASH,
            hash: chain::GENESIS_HASH,
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["recordedAt"], "2026-12-06T03:48:18.001200Z");
        let back: RecordedEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
    }
}
