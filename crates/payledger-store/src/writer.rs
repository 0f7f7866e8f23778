//! Group commit: one task writes the appends of many concurrent commands in one transaction.
//!
//! Callers each send one append and wait for its own answer. The task takes whatever is queued
//! when the previous transaction finishes (no artificial delay: under light load a batch is one
//! command), at most one command per stream per batch, and calls `append_events`, which checks
//! every command's expected version separately. A conflict fails only its own command.

use crate::chain::{self, HashedFields, GENESIS_HASH};
use crate::{AppendError, AppendOutcome, ExpectedVersion, NewEvent, RecordedEvent};
use chrono::{DateTime, Utc};
use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, PgPool, Postgres, Row};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Commands per transaction at most.
    pub max_batch_commands: usize,
    /// Events per transaction at most.
    pub max_batch_events: usize,
    /// Appends waiting for the writer at most; more wait at the door (backpressure).
    pub queue_capacity: usize,
    /// Stream heads remembered, so a stream the process holds current is not looked up again.
    pub head_cache_capacity: usize,
    /// Longest wait for one database call (the heads' lookup, the append). Past it the call's
    /// connection is given up and its commands are answered "unavailable, outcome unknown".
    /// Without it, a connection whose answer was lost in a network partition holds the writer,
    /// and with it every command of the process, until the kernel's retransmissions end — a
    /// minute or more after the network is back.
    pub call_timeout_ms: u64,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            max_batch_commands: 512,
            max_batch_events: 4_096,
            queue_capacity: 16_384,
            head_cache_capacity: 200_000,
            call_timeout_ms: 10_000,
        }
    }
}

/// An `Any` append that lost a race is retried this many times before it is reported.
const MAX_ANY_RETRIES: u32 = 5;

struct Request {
    stream_id: String,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
    check_ids: bool,
    any_retries: u32,
    reply: oneshot::Sender<Result<AppendOutcome, AppendError>>,
}

/// Last known (version, hash) of streams. Only ever behind the database, never ahead: it is
/// filled from committed appends and reads, and the database re-checks every append anyway.
#[derive(Default)]
struct HeadCache {
    heads: HashMap<String, (i64, [u8; 32])>,
    capacity: usize,
}

impl HeadCache {
    fn remember(&mut self, stream_id: &str, version: i64, hash: [u8; 32]) {
        if self.heads.len() >= self.capacity && !self.heads.contains_key(stream_id) {
            // Crude but bounded: forgetting costs one lookup per stream, never correctness.
            self.heads.clear();
        }
        let entry = self
            .heads
            .entry(stream_id.to_string())
            .or_insert((version, hash));
        if version >= entry.0 {
            *entry = (version, hash);
        }
    }
}

pub(crate) struct Writer {
    queue: mpsc::Sender<Request>,
    heads: Arc<Mutex<HeadCache>>,
}

impl Writer {
    pub(crate) fn spawn(pool: PgPool, config: WriterConfig) -> Writer {
        let (queue, receiver) = mpsc::channel(config.queue_capacity.max(1));
        let heads = Arc::new(Mutex::new(HeadCache {
            heads: HashMap::new(),
            capacity: config.head_cache_capacity.max(1),
        }));
        let task = WriterTask {
            pool,
            config,
            receiver,
            deferred: VecDeque::new(),
            heads: heads.clone(),
        };
        tokio::spawn(task.run());
        Writer { queue, heads }
    }

    pub(crate) async fn append(
        &self,
        stream_id: String,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        check_ids: bool,
    ) -> Result<AppendOutcome, AppendError> {
        let (reply, answer) = oneshot::channel();
        let request = Request {
            stream_id,
            expected,
            events,
            check_ids,
            any_retries: 0,
            reply,
        };
        self.queue
            .send(request)
            .await
            .map_err(|_| AppendError::WriterStopped)?;
        answer.await.map_err(|_| AppendError::WriterStopped)?
    }

    pub(crate) fn remember_heads(&self, events: &[RecordedEvent]) {
        if let Some(last) = events.last() {
            if let Ok(mut heads) = self.heads.lock() {
                heads.remember(&last.stream_id, last.stream_version, last.hash);
            }
        }
    }
}

struct WriterTask {
    pool: PgPool,
    config: WriterConfig,
    receiver: mpsc::Receiver<Request>,
    /// Appends to a stream that already had one in the batch being built wait here, in order.
    deferred: VecDeque<Request>,
    heads: Arc<Mutex<HeadCache>>,
}

/// One command of a batch, with its resolved head and computed hashes.
struct Prepared {
    request: Request,
    expected_version: i64,
    prev_hash: [u8; 32],
    hashes: Vec<[u8; 32]>,
}

impl WriterTask {
    async fn run(mut self) {
        loop {
            let batch = match self.gather().await {
                Some(batch) => batch,
                None => return,
            };
            self.write(batch).await;
        }
    }

    /// Takes what is waiting: deferred appends first, then the queue, one command per stream.
    async fn gather(&mut self) -> Option<Vec<Request>> {
        let mut batch: Vec<Request> = Vec::new();
        let mut streams: HashSet<String> = HashSet::new();
        let mut event_count = 0usize;
        let mut still_deferred = VecDeque::new();
        while let Some(request) = self.deferred.pop_front() {
            if self.fits(&batch, event_count, &request) && !streams.contains(&request.stream_id) {
                event_count += request.events.len();
                streams.insert(request.stream_id.clone());
                batch.push(request);
            } else {
                still_deferred.push_back(request);
            }
        }
        self.deferred = still_deferred;
        if batch.is_empty() {
            let request = self.receiver.recv().await?;
            event_count += request.events.len();
            streams.insert(request.stream_id.clone());
            batch.push(request);
        }
        while batch.len() < self.config.max_batch_commands
            && event_count < self.config.max_batch_events
        {
            let Ok(request) = self.receiver.try_recv() else {
                break;
            };
            if streams.contains(&request.stream_id) || !self.fits(&batch, event_count, &request) {
                self.deferred.push_back(request);
                continue;
            }
            event_count += request.events.len();
            streams.insert(request.stream_id.clone());
            batch.push(request);
        }
        Some(batch)
    }

    fn fits(&self, batch: &[Request], event_count: usize, request: &Request) -> bool {
        batch.is_empty()
            || (batch.len() < self.config.max_batch_commands
                && event_count + request.events.len() <= self.config.max_batch_events)
    }

    async fn write(&mut self, batch: Vec<Request>) {
        let prepared = match self.resolve_heads(batch).await {
            Ok(prepared) => prepared,
            Err((requests, error)) => {
                let message = error.to_string();
                for request in requests {
                    let _ = request
                        .reply
                        .send(Err(AppendError::Database(sqlx::Error::Protocol(format!(
                            "failed to read stream heads: {message}"
                        )))));
                }
                return;
            }
        };
        if prepared.is_empty() {
            return;
        }
        match self.call_append(&prepared).await {
            Ok(rows) => self.answer(prepared, rows),
            Err(error) if prepared.len() > 1 && matches!(error, sqlx::Error::Database(_)) => {
                // A data error fails the whole transaction; isolate it so that only the command
                // that caused it fails and the others are written.
                tracing::warn!(%error, commands = prepared.len(), "batch append failed; retrying commands one by one");
                for one in prepared {
                    let result = self.call_append(std::slice::from_ref(&one)).await;
                    match result {
                        Ok(rows) => self.answer(vec![one], rows),
                        Err(error) => {
                            let _ = one.request.reply.send(Err(AppendError::Database(error)));
                        }
                    }
                }
            }
            Err(error) => {
                let message = error.to_string();
                tracing::error!(error = %message, commands = prepared.len(), "failed to append a batch of events");
                let mut error = Some(error);
                for one in prepared {
                    let error = error
                        .take()
                        .unwrap_or_else(|| sqlx::Error::Protocol(message.clone()));
                    let _ = one.request.reply.send(Err(AppendError::Database(error)));
                }
            }
        }
    }

    /// Finds each command's expected head (version and hash) and computes its events' hashes.
    /// Commands already known to conflict are answered here.
    async fn resolve_heads(
        &mut self,
        batch: Vec<Request>,
    ) -> Result<Vec<Prepared>, (Vec<Request>, sqlx::Error)> {
        let cached = |stream_id: &str| -> Option<(i64, [u8; 32])> {
            self.heads
                .lock()
                .ok()
                .and_then(|heads| heads.heads.get(stream_id).copied())
        };
        let mut to_look_up: Vec<String> = Vec::new();
        for request in &batch {
            let needs_lookup = match request.expected {
                ExpectedVersion::NoStream | ExpectedVersion::Exact(0) => false,
                ExpectedVersion::Exact(n) => cached(&request.stream_id).is_none_or(|(v, _)| v < n),
                ExpectedVersion::Any => true,
            };
            if needs_lookup {
                to_look_up.push(request.stream_id.clone());
            }
        }
        let looked_up: HashMap<String, (i64, [u8; 32])> = if to_look_up.is_empty() {
            HashMap::new()
        } else {
            let mut connection = match self.pool.acquire().await {
                Ok(connection) => connection,
                Err(error) => return Err((batch, error)),
            };
            let outcome = tokio::time::timeout(
                self.call_timeout(),
                look_up_heads(&mut connection, &to_look_up),
            )
            .await;
            match outcome {
                Ok(Ok(found)) => found,
                Ok(Err(error)) => return Err((batch, error)),
                Err(_) => return Err((batch, self.give_up(connection, "reading stream heads"))),
            }
        };

        let mut prepared = Vec::with_capacity(batch.len());
        for request in batch {
            let head = looked_up
                .get(&request.stream_id)
                .copied()
                .or_else(|| cached(&request.stream_id));
            let (expected_version, prev_hash) = match request.expected {
                ExpectedVersion::NoStream | ExpectedVersion::Exact(0) => (0, GENESIS_HASH),
                ExpectedVersion::Any => head.unwrap_or((0, GENESIS_HASH)),
                ExpectedVersion::Exact(n) => match head {
                    Some((version, hash)) if version == n => (n, hash),
                    Some((version, _)) => {
                        let _ = request.reply.send(Err(AppendError::WrongExpectedVersion {
                            stream_id: request.stream_id.clone(),
                            expected: request.expected,
                            actual: version,
                        }));
                        continue;
                    }
                    None => {
                        let _ = request.reply.send(Err(AppendError::WrongExpectedVersion {
                            stream_id: request.stream_id.clone(),
                            expected: request.expected,
                            actual: 0,
                        }));
                        continue;
                    }
                },
            };
            let hashes = compute_hashes(&request, expected_version, prev_hash);
            prepared.push(Prepared {
                request,
                expected_version,
                prev_hash,
                hashes,
            });
        }
        Ok(prepared)
    }

    fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.config.call_timeout_ms.max(1))
    }

    /// Ends a call that outlived `call_timeout_ms`. Its answer may still come, or never (a
    /// network partition): the append may or may not have committed, so its commands are told
    /// "unavailable" — never success — and the head cache learns nothing from it. The
    /// connection is detached, so the pool neither reuses it nor waits on it when it returns;
    /// dropping it closes the socket here, and the server ends its side with the keepalive
    /// settings every connection carries.
    fn give_up(&self, connection: PoolConnection<Postgres>, what: &str) -> sqlx::Error {
        drop(connection.detach());
        tracing::warn!(
            what,
            timeout_ms = self.config.call_timeout_ms,
            "the database did not answer the writer in time; its connection is given up"
        );
        sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "{what} took longer than {} ms; the outcome is unknown",
                self.config.call_timeout_ms
            ),
        ))
    }

    async fn call_append(&self, prepared: &[Prepared]) -> Result<Vec<AppendRow>, sqlx::Error> {
        let mut streams = Vec::with_capacity(prepared.len());
        let mut expected_versions = Vec::with_capacity(prepared.len());
        let mut prev_hashes: Vec<Vec<u8>> = Vec::with_capacity(prepared.len());
        let mut check_ids = Vec::with_capacity(prepared.len());
        let mut event_commands: Vec<i32> = Vec::new();
        let mut event_ids: Vec<Uuid> = Vec::new();
        let mut event_types: Vec<String> = Vec::new();
        let mut schema_versions: Vec<i32> = Vec::new();
        let mut payloads: Vec<serde_json::Value> = Vec::new();
        let mut metadata: Vec<serde_json::Value> = Vec::new();
        let mut hashes: Vec<Vec<u8>> = Vec::new();
        for (index, one) in prepared.iter().enumerate() {
            let command_index = i32::try_from(index + 1).unwrap_or(i32::MAX);
            streams.push(one.request.stream_id.clone());
            expected_versions.push(one.expected_version);
            prev_hashes.push(one.prev_hash.to_vec());
            check_ids.push(one.request.check_ids);
            for (event, hash) in one.request.events.iter().zip(&one.hashes) {
                event_commands.push(command_index);
                event_ids.push(event.event_id);
                event_types.push(event.event_type.clone());
                schema_versions.push(event.schema_version);
                payloads.push(event.payload.clone());
                metadata.push(metadata_value(event));
                hashes.push(hash.to_vec());
            }
        }
        let query = sqlx::query(
            "SELECT command_index, outcome, actual_version, first_position, recorded_at \
             FROM append_events($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&streams)
        .bind(&expected_versions)
        .bind(&prev_hashes)
        .bind(&check_ids)
        .bind(&event_commands)
        .bind(&event_ids)
        .bind(&event_types)
        .bind(&schema_versions)
        .bind(&payloads)
        .bind(&metadata)
        .bind(&hashes);
        let mut connection = self.pool.acquire().await?;
        let outcome =
            tokio::time::timeout(self.call_timeout(), query.fetch_all(&mut *connection)).await;
        let rows = match outcome {
            Ok(rows) => rows?,
            Err(_) => return Err(self.give_up(connection, "appending events")),
        };
        rows.iter()
            .map(|row| {
                Ok(AppendRow {
                    outcome: row.try_get("outcome")?,
                    actual_version: row.try_get("actual_version")?,
                    first_position: row.try_get("first_position")?,
                    recorded_at: row.try_get("recorded_at")?,
                })
            })
            .collect()
    }

    fn answer(&mut self, prepared: Vec<Prepared>, rows: Vec<AppendRow>) {
        for (one, row) in prepared.into_iter().zip(rows) {
            let count = one.request.events.len() as i64;
            match row.outcome.as_str() {
                "appended" => {
                    let head_hash = one.hashes.last().copied().unwrap_or(one.prev_hash);
                    if let Ok(mut heads) = self.heads.lock() {
                        heads.remember(&one.request.stream_id, row.actual_version, head_hash);
                    }
                    let first_position = row.first_position.unwrap_or_default();
                    // The database numbered these events; the pair assertion of TIGER_STYLE:
                    // what we hashed is what it stored.
                    debug_assert_eq!(row.actual_version, one.expected_version + count);
                    let _ = one.request.reply.send(Ok(AppendOutcome {
                        stream_version: row.actual_version,
                        first_position,
                        last_position: first_position + count - 1,
                        recorded_at: row.recorded_at,
                        duplicate: false,
                        head_hash,
                    }));
                }
                "duplicate" => {
                    let first_position = row.first_position.unwrap_or_default();
                    let _ = one.request.reply.send(Ok(AppendOutcome {
                        stream_version: row.actual_version,
                        first_position,
                        last_position: first_position + count - 1,
                        recorded_at: row.recorded_at,
                        duplicate: true,
                        head_hash: one.prev_hash,
                    }));
                }
                "id_conflict" => {
                    let _ = one.request.reply.send(Err(AppendError::EventIdConflict));
                }
                _ => {
                    if let Ok(mut heads) = self.heads.lock() {
                        heads.heads.remove(&one.request.stream_id);
                    }
                    let mut request = one.request;
                    if request.expected == ExpectedVersion::Any
                        && request.any_retries < MAX_ANY_RETRIES
                    {
                        request.any_retries += 1;
                        self.deferred.push_back(request);
                        continue;
                    }
                    let _ = request.reply.send(Err(AppendError::WrongExpectedVersion {
                        stream_id: request.stream_id.clone(),
                        expected: request.expected,
                        actual: row.actual_version,
                    }));
                }
            }
        }
    }
}

struct AppendRow {
    outcome: String,
    actual_version: i64,
    first_position: Option<i64>,
    recorded_at: DateTime<Utc>,
}

fn metadata_value(event: &NewEvent) -> serde_json::Value {
    // Validated to serialise before the append was queued.
    serde_json::to_value(&event.metadata).unwrap_or(serde_json::Value::Null)
}

fn compute_hashes(request: &Request, expected_version: i64, prev_hash: [u8; 32]) -> Vec<[u8; 32]> {
    let mut previous = prev_hash;
    let mut hashes = Vec::with_capacity(request.events.len());
    for (offset, event) in request.events.iter().enumerate() {
        let metadata = metadata_value(event);
        let hash = chain::event_hash(&HashedFields {
            prev_hash: &previous,
            stream_id: &request.stream_id,
            stream_version: expected_version + offset as i64 + 1,
            event_id: &event.event_id,
            event_type: &event.event_type,
            schema_version: event.schema_version,
            payload: &event.payload,
            metadata: &metadata,
        });
        hashes.push(hash);
        previous = hash;
    }
    hashes
}

async fn look_up_heads(
    connection: &mut PgConnection,
    stream_ids: &[String],
) -> Result<HashMap<String, (i64, [u8; 32])>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT DISTINCT ON (stream_id) stream_id, stream_version, hash FROM events \
         WHERE stream_id = ANY($1) ORDER BY stream_id, stream_version DESC",
    )
    // Planned per call: docs/architecture.md, "Lookups by many keys".
    .persistent(false)
    .bind(stream_ids)
    .fetch_all(connection)
    .await?;
    let mut heads = HashMap::with_capacity(rows.len());
    for row in rows {
        let hash: Vec<u8> = row.try_get("hash")?;
        let hash: [u8; 32] = hash
            .try_into()
            .map_err(|_| sqlx::Error::Protocol("stored hash is not 32 bytes".into()))?;
        heads.insert(
            row.try_get("stream_id")?,
            (row.try_get("stream_version")?, hash),
        );
    }
    Ok(heads)
}
