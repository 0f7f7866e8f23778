//! Projections: read models derived from the global log.
//!
//! - A [`Projection`] folds a batch of events into its tables inside a transaction the runtime
//!   gives it. The runtime commits the batch's writes **and** the checkpoint in that transaction,
//!   so a crash never applies an event twice or skips one.
//! - [`run_projections`] is the live runner: it projects each batch into a group of projections in
//!   one transaction (module `live`). It holds a session advisory lock per projection on
//!   its own connection, so exactly one runner per projection is active across all processes;
//!   another takes over when the holder's connection dies. Every checkpoint update is fenced on
//!   the previous position, so even a runner that lost its lock unknowingly cannot commit.
//! - [`rebuild`] builds a projection from position 0 into a fresh schema while the live tables
//!   keep serving, then swaps them in one transaction.
//!
//! Tables live in schema `rm`. Projections use unqualified table names: the runtime sets
//! `search_path` to the live or the build schema.

pub mod copy;
mod live;
pub mod process;
mod rebuild;
pub mod rebuild_jobs;
mod session;
pub mod tail;
pub mod verify;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use payledger_store::{read_all, RecordedEvent};
use serde::Serialize;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, Executor, PgConnection, PgPool};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use live::{run_projection, run_projections, MAX_MEMBER_BACKOFF_MS};
pub use rebuild::{
    rebuild, rebuild_many, rebuild_with, RebuildConfig, REBUILD_BATCH_SIZE, REBUILD_FLUSH_EVENTS,
};
pub use session::SESSION_CHECK_INTERVAL_MS;
pub use tail::{EventBatch, JoinedBatch, LogTail};
pub use verify::{verify, verify_with_progress, TableDifference, VerifyReport};

/// The schema live read models are served from.
pub const LIVE_SCHEMA: &str = "rm";

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("failed to update the read model: {0}")]
    Database(#[from] sqlx::Error),
    #[error("failed to read the log: {0}")]
    Read(#[from] payledger_store::ReadError),
    #[error("event at position {position} cannot be projected: {reason}")]
    BadEvent { position: i64, reason: String },
    #[error("projection {0} is not known")]
    Unknown(String),
    #[error("failed to encode rows for COPY: {0}")]
    Encode(String),
    #[error("a rebuild task failed: {0}")]
    Task(String),
    #[error("the server ended the runner's session")]
    SessionEnded,
}

/// A read model built from the global log.
#[async_trait]
pub trait Projection: Send + Sync + 'static {
    /// Stable name: the checkpoint row and the advisory lock are keyed by it.
    fn name(&self) -> &'static str;

    /// DDL creating the projection's tables and indexes, with unqualified names and
    /// `IF NOT EXISTS`, run with `search_path` set to the target schema.
    fn schema_sql(&self) -> &'static str;

    /// The tables it owns (unqualified), in an order in which they can be dropped.
    fn tables(&self) -> &'static [&'static str];

    /// Applies `events` (consecutive positions, oldest first) in `tx`. Events the projection does
    /// not care about are skipped. Must be deterministic: a rebuild gives the same rows.
    /// `conn` is inside the transaction that will also move the checkpoint.
    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError>;

    /// A bulk path for rebuilds, or `None` (the default) to rebuild with [`Projection::apply`],
    /// one transaction per batch. The live runner and a rebuild's final catch-up never use it.
    fn bulk_builder(&self) -> Option<Box<dyn BulkBuild>> {
        None
    }
}

/// A projection's bulk path for rebuilds (see [`Projection::bulk_builder`]).
///
/// Nothing reads a build schema while it loads, so a builder may hold many batches' rows in memory
/// and write each table with `COPY` ([`copy::CopyRows`]). The runtime calls `fold` for every batch
/// in log order and `flush` once [`REBUILD_FLUSH_EVENTS`] events (rounded up to whole batches)
/// are held, and at the end; after a flush the builder holds nothing. The rows written must be
/// exactly the ones `apply` writes.
#[async_trait]
pub trait BulkBuild: Send {
    /// Folds `events` (consecutive positions, oldest first) in memory. `conn` has `search_path`
    /// set to the build schema, to read rows of streams whose earlier events were flushed.
    async fn fold(
        &mut self,
        conn: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError>;

    /// Writes everything folded since the last flush into the build tables, inside the
    /// transaction `conn` is in.
    async fn flush(&mut self, conn: &mut PgConnection) -> Result<(), ProjectionError>;

    /// Tables whose primary key and unique constraints the builder needs while it loads (it
    /// reads rows back by key or upserts into them). The projection's other tables get theirs
    /// after loading, like the secondary indexes.
    fn keyed_tables(&self) -> &'static [&'static str];
}

#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Events per transaction while live.
    pub batch_size: i64,
    /// How long a runner waits for a wake-up before polling anyway (missed notifications, other
    /// processes' appends when LISTEN is unavailable).
    pub poll_interval_ms: u64,
    /// How long a process that does not hold a projection's lock waits before trying again.
    pub standby_retry_ms: u64,
    /// Pause after an error before reconnecting.
    pub error_backoff_ms: u64,
    /// After a wake-up, wait this long so that events committing meanwhile are projected in the
    /// same batch: under load a runner then does a few transactions per second instead of one
    /// per commit. Bounds the added lag.
    pub coalesce_ms: u64,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            batch_size: 1_000,
            poll_interval_ms: 1_000,
            standby_retry_ms: 2_000,
            error_backoff_ms: 500,
            coalesce_ms: 5,
        }
    }
}

/// Where a projection stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectionStatus {
    pub name: String,
    pub position: i64,
    pub head_position: i64,
    pub lag_events: i64,
    /// Age of the oldest event not yet projected; 0 when caught up.
    pub lag_ms: i64,
    pub updated_at: Option<DateTime<Utc>>,
}

fn lock_key(name: &str) -> i64 {
    // FNV-1a: stable across processes and Rust versions, unlike DefaultHasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in format!("payledger-projection:{name}").bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// Creates the live tables and the checkpoint row of `projection` if they are missing.
pub async fn ensure_live(
    pool: &PgPool,
    projection: &dyn Projection,
) -> Result<(), ProjectionError> {
    let mut tx = pool.begin().await?;
    create_tables(&mut tx, LIVE_SCHEMA, projection).await?;
    sqlx::query("INSERT INTO projection_checkpoints (name, position) VALUES ($1, 0) ON CONFLICT (name) DO NOTHING")
        .bind(projection.name())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

pub(crate) async fn create_tables(
    conn: &mut PgConnection,
    schema: &str,
    projection: &dyn Projection,
) -> Result<(), ProjectionError> {
    conn.execute(format!("CREATE SCHEMA IF NOT EXISTS {schema}").as_str())
        .await?;
    set_search_path(conn, schema).await?;
    conn.execute(projection.schema_sql()).await?;
    Ok(())
}

/// Points unqualified table names at `schema` for the rest of the current transaction, and lets
/// it commit without waiting for the WAL flush.
///
/// Asynchronous commit is safe here, and only here: a projection's rows and its checkpoint
/// commit together, so a server crash loses both at once and the batch is simply projected
/// again. Events themselves are always committed synchronously.
async fn set_search_path(conn: &mut PgConnection, schema: &str) -> Result<(), ProjectionError> {
    conn.execute(
        format!("SET LOCAL search_path TO {schema}, public; SET LOCAL synchronous_commit TO off")
            .as_str(),
    )
    .await?;
    Ok(())
}

/// The lowest checkpoint of any projection: every event after it is still to be projected by
/// at least one of them. `None` when no projection has a checkpoint yet.
pub async fn lowest_checkpoint(pool: &PgPool) -> Result<Option<i64>, ProjectionError> {
    let lowest = sqlx::query_scalar("SELECT min(position) FROM projection_checkpoints")
        .fetch_one(pool)
        .await?;
    Ok(lowest)
}

/// Reports every projection's position and lag.
pub async fn status(pool: &PgPool) -> Result<Vec<ProjectionStatus>, ProjectionError> {
    let head = payledger_store::head_position(pool).await?;
    let rows: Vec<(String, i64, DateTime<Utc>)> = sqlx::query_as(
        "SELECT name, position, updated_at FROM projection_checkpoints ORDER BY name",
    )
    .fetch_all(pool)
    .await?;
    let now = Utc::now();
    let mut statuses = Vec::with_capacity(rows.len());
    for (name, position, updated_at) in rows {
        // Lag in time: how long ago the oldest event not yet projected was recorded.
        let oldest_pending = if position < head {
            payledger_store::recorded_at(pool, position + 1).await?
        } else {
            None
        };
        statuses.push(ProjectionStatus {
            name,
            position,
            head_position: head,
            lag_events: (head - position).max(0),
            lag_ms: oldest_pending.map_or(0, |at| (now - at).num_milliseconds().max(0)),
            updated_at: Some(updated_at),
        });
    }
    Ok(statuses)
}

/// What the followers of the log in one process share: the signal that new events committed
/// (fed by a LISTEN task, see [`listen_for_events`]) and the [`LogTail`] they read them from.
#[derive(Clone)]
pub struct Wakeup {
    sender: Arc<watch::Sender<i64>>,
    tail: LogTail,
}

impl Default for Wakeup {
    fn default() -> Self {
        Wakeup {
            sender: Arc::new(watch::channel(0).0),
            tail: LogTail::default(),
        }
    }
}

impl Wakeup {
    /// The shared tail of the log the followers woken by this read from.
    pub fn tail(&self) -> &LogTail {
        &self.tail
    }

    pub fn notify(&self, position: i64) {
        self.tail.announce(position);
        self.sender.send_replace(position);
    }

    fn subscribe(&self) -> watch::Receiver<i64> {
        self.sender.subscribe()
    }
}

/// Listens on the `payledger_events` channel and wakes runners; reconnects by itself.
pub async fn listen_for_events(pool: PgPool, wakeup: Wakeup) {
    loop {
        match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(mut listener) => {
                if let Err(error) = listener.listen("payledger_events").await {
                    tracing::warn!(%error, "failed to listen for new events; retrying");
                } else {
                    loop {
                        match listener.recv().await {
                            Ok(notification) => {
                                let position = notification.payload().parse().unwrap_or(0);
                                wakeup.notify(position);
                            }
                            Err(error) => {
                                tracing::warn!(%error, "lost the event notification channel; reconnecting");
                                break;
                            }
                        }
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "failed to connect the event listener; retrying"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Publishes each runner's committed position (for metrics and tests).
pub type PositionSender = watch::Sender<i64>;

/// Waits until there may be events after `position`, which the last read found to be the head.
///
/// Returns at once when a notification already announced a later position; otherwise on the
/// next notification (after `coalesce_ms`, so that events committing meanwhile join the batch)
/// or after `poll_interval_ms`, the fallback for notifications that never arrive. Under load
/// this saves every follower the read that used to find nothing after each batch.
pub(crate) async fn wait_for_events(
    woken: &mut watch::Receiver<i64>,
    position: i64,
    coalesce_ms: u64,
    poll_interval_ms: u64,
) -> Woken {
    if *woken.borrow_and_update() > position {
        return Woken::Notified;
    }
    tokio::select! {
        changed = woken.changed() => {
            if changed.is_ok() {
                tokio::time::sleep(Duration::from_millis(coalesce_ms)).await;
                return Woken::Notified;
            }
            tokio::time::sleep(Duration::from_millis(poll_interval_ms)).await;
            Woken::Polled
        }
        _ = tokio::time::sleep(Duration::from_millis(poll_interval_ms)) => Woken::Polled,
    }
}

/// Why [`wait_for_events`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Woken {
    /// A notification announced events after the follower's position.
    Notified,
    /// The poll interval passed without one: the follower has been idle.
    Polled,
}

async fn read_checkpoint(conn: &mut PgConnection, name: &str) -> Result<i64, ProjectionError> {
    let position: Option<i64> =
        sqlx::query_scalar("SELECT position FROM projection_checkpoints WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(position.unwrap_or(0))
}

/// Applies the events after `after` up to `up_to` (inclusive) to `projection`, batch by batch,
/// inside `conn`'s transaction, where `search_path` already points at the target schema.
/// Returns the position of the last event applied (`after` when there was none).
pub(crate) async fn apply_log(
    conn: &mut PgConnection,
    projection: &dyn Projection,
    after: i64,
    up_to: i64,
    progress: &(dyn Fn(i64, i64) + Send + Sync),
) -> Result<i64, ProjectionError> {
    let mut position = after;
    while position < up_to {
        let mut events = read_all(&mut *conn, position, REBUILD_BATCH_SIZE).await?;
        events.retain(|e| e.global_position <= up_to);
        let Some(last) = events.last().map(|e| e.global_position) else {
            break;
        };
        projection.apply(&mut *conn, &events).await?;
        position = last;
        progress(position, up_to);
    }
    Ok(position)
}
