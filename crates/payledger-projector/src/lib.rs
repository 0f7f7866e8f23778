//! Projections: read models derived from the global log.
//!
//! - A [`Projection`] folds a batch of events into its tables inside a transaction the runtime
//!   gives it. The runtime commits the batch's writes **and** the checkpoint in that transaction,
//!   so a crash never applies an event twice or skips one.
//! - [`run_projection`] is the live runner: it holds a session advisory lock per projection on its
//!   own connection, so exactly one runner per projection is active across all processes; another
//!   takes over when the holder's connection dies. Every checkpoint update is fenced on the
//!   previous position, so even a runner that lost its lock unknowingly cannot commit.
//! - [`rebuild`] builds a projection from position 0 into a fresh schema while the live tables
//!   keep serving, then swaps them in one transaction.
//!
//! Tables live in schema `rm`. Projections use unqualified table names: the runtime sets
//! `search_path` to the live or the build schema.

pub mod process;
pub mod tail;
pub mod verify;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use payledger_store::{read_all, RecordedEvent};
use serde::Serialize;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, Executor, PgConnection, PgPool};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub use tail::{EventBatch, LogTail};
pub use verify::{verify, TableDifference, VerifyReport};

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

/// Events per transaction while rebuilding: large batches for bulk writes.
pub const REBUILD_BATCH_SIZE: i64 = 5_000;

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
pub(crate) async fn set_search_path(
    conn: &mut PgConnection,
    schema: &str,
) -> Result<(), ProjectionError> {
    conn.execute(
        format!("SET LOCAL search_path TO {schema}, public; SET LOCAL synchronous_commit TO off")
            .as_str(),
    )
    .await?;
    Ok(())
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

/// Runs one projection forever: waits for its lock, then follows the log.
pub async fn run_projection(
    connect: PgConnectOptions,
    projection: Arc<dyn Projection>,
    config: RunnerConfig,
    wakeup: Wakeup,
    positions: Arc<PositionSender>,
) {
    loop {
        match run_while_holding_lock(&connect, projection.as_ref(), &config, &wakeup, &positions)
            .await
        {
            Ok(()) => {
                tokio::time::sleep(Duration::from_millis(config.standby_retry_ms)).await;
            }
            Err(error) => {
                tracing::warn!(projection = projection.name(), %error, "projection runner failed; restarting");
                tokio::time::sleep(Duration::from_millis(config.error_backoff_ms)).await;
            }
        }
    }
}

/// Returns `Ok(())` when another process holds the lock (standby), and errors when the
/// connection or a batch failed. Both end with the connection dropped, which releases the lock.
async fn run_while_holding_lock(
    connect: &PgConnectOptions,
    projection: &dyn Projection,
    config: &RunnerConfig,
    wakeup: &Wakeup,
    positions: &PositionSender,
) -> Result<(), ProjectionError> {
    let mut conn = PgConnection::connect_with(connect).await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(lock_key(projection.name()))
        .fetch_one(&mut conn)
        .await?;
    if !locked {
        return Ok(());
    }
    tracing::info!(projection = projection.name(), "projection runner active");
    let mut woken = wakeup.subscribe();
    // This runner is the only writer of its checkpoint while it holds the lock (a rebuild's swap
    // is caught by the fenced update below), so the position is read once, not per batch.
    let mut position = read_checkpoint(&mut conn, projection.name()).await?;
    let mut at_head = false;
    loop {
        positions.send_replace(position);
        if at_head {
            let _ = wait_for_events(
                &mut woken,
                position,
                config.coalesce_ms,
                config.poll_interval_ms,
            )
            .await;
        }
        let events = wakeup
            .tail()
            .read_after(&mut conn, position, config.batch_size)
            .await?;
        at_head = (events.len() as i64) < config.batch_size;
        if events.is_empty() {
            continue;
        }
        let mut tx = conn.begin().await?;
        set_search_path(&mut tx, LIVE_SCHEMA).await?;
        projection.apply(&mut tx, &events).await?;
        let last = events.last().map_or(position, |e| e.global_position);
        if !advance_checkpoint(&mut tx, projection.name(), position, last).await? {
            // Someone else moved the checkpoint (a rebuild swapped tables): drop this batch.
            tx.rollback().await?;
            position = read_checkpoint(&mut conn, projection.name()).await?;
            continue;
        }
        tx.commit().await?;
        position = last;
        positions.send_replace(last);
    }
}

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

async fn advance_checkpoint(
    conn: &mut PgConnection,
    name: &str,
    from: i64,
    to: i64,
) -> Result<bool, ProjectionError> {
    let updated = sqlx::query(
        "UPDATE projection_checkpoints SET position = $3, updated_at = now() \
         WHERE name = $1 AND position = $2",
    )
    .bind(name)
    .bind(from)
    .bind(to)
    .execute(&mut *conn)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Rebuilds `projection` from position 0 into a fresh schema while the live tables keep serving,
/// then swaps the new tables in. `progress(position, head)` is called after each batch.
pub async fn rebuild(
    pool: &PgPool,
    projection: &dyn Projection,
    progress: &(dyn Fn(i64, i64) + Send + Sync),
) -> Result<i64, ProjectionError> {
    rebuild_many(pool, &[projection], progress).await
}

/// Rebuilds several projections in one pass over the log: each batch is read once and applied
/// to every projection's build schema, then each is swapped in.
pub async fn rebuild_many(
    pool: &PgPool,
    projections: &[&dyn Projection],
    progress: &(dyn Fn(i64, i64) + Send + Sync),
) -> Result<i64, ProjectionError> {
    let mut builds = Vec::with_capacity(projections.len());
    for projection in projections {
        ensure_live(pool, *projection).await?;
        let build_schema = format!("rm_build_{}", projection.name());
        let mut tx = pool.begin().await?;
        tx.execute(format!("DROP SCHEMA IF EXISTS {build_schema} CASCADE").as_str())
            .await?;
        create_tables(&mut tx, &build_schema, *projection).await?;
        // Bulk-load without WAL; made logged (one sequential write) before the swap.
        for table in projection.tables() {
            tx.execute(format!("ALTER TABLE {build_schema}.{table} SET UNLOGGED").as_str())
                .await?;
        }
        tx.commit().await?;
        builds.push((*projection, build_schema));
    }
    let mut position = 0i64;
    // The next batch is read while the current one is applied: reading and writing overlap.
    let mut next = tokio::spawn(read_batch(pool.clone(), position));
    loop {
        let events = (&mut next).await.map_err(|e| ProjectionError::BadEvent {
            position,
            reason: format!("the log reader failed: {e}"),
        })??;
        let Some(last) = events.last() else { break };
        let last_position = last.global_position;
        let full = events.len() as i64 == REBUILD_BATCH_SIZE;
        next = tokio::spawn(read_batch(pool.clone(), last_position));
        let mut tx = pool.begin().await?;
        for (projection, build_schema) in &builds {
            set_search_path(&mut tx, build_schema).await?;
            projection.apply(&mut tx, &events).await?;
        }
        tx.commit().await?;
        position = last_position;
        let head = payledger_store::head_position(pool).await?;
        progress(position, head.max(position));
        if !full {
            break;
        }
    }
    next.abort();
    // While the live tables still serve: make the built tables crash-safe before they go live.
    for (projection, build_schema) in &builds {
        for table in projection.tables().iter().rev() {
            pool.execute(format!("ALTER TABLE {build_schema}.{table} SET LOGGED").as_str())
                .await?;
        }
    }
    let mut swapped_at = position;
    for (projection, build_schema) in &builds {
        swapped_at = swap_in(pool, *projection, build_schema, position).await?;
    }
    Ok(swapped_at)
}

async fn read_batch(pool: PgPool, after: i64) -> Result<Vec<RecordedEvent>, ProjectionError> {
    Ok(read_all(&pool, after, REBUILD_BATCH_SIZE).await?)
}

/// Catches the build up to the head and replaces the live tables, in one transaction.
async fn swap_in(
    pool: &PgPool,
    projection: &dyn Projection,
    build_schema: &str,
    mut position: i64,
) -> Result<i64, ProjectionError> {
    let mut tx = pool.begin().await?;
    // Tables first: waits for a live batch in flight to commit (it writes tables, then the
    // checkpoint), so the two never wait on each other.
    let live_tables: Vec<String> = projection
        .tables()
        .iter()
        .map(|t| format!("{LIVE_SCHEMA}.{t}"))
        .collect();
    tx.execute(
        format!(
            "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
            live_tables.join(", ")
        )
        .as_str(),
    )
    .await?;
    sqlx::query("SELECT position FROM projection_checkpoints WHERE name = $1 FOR UPDATE")
        .bind(projection.name())
        .fetch_one(&mut *tx)
        .await?;
    set_search_path(&mut tx, build_schema).await?;
    loop {
        let events = read_all(&mut *tx, position, REBUILD_BATCH_SIZE).await?;
        let Some(last) = events.last() else { break };
        let last_position = last.global_position;
        projection.apply(&mut tx, &events).await?;
        position = last_position;
    }
    for table in projection.tables() {
        tx.execute(format!("DROP TABLE {LIVE_SCHEMA}.{table} CASCADE").as_str())
            .await?;
        tx.execute(format!("ALTER TABLE {build_schema}.{table} SET SCHEMA {LIVE_SCHEMA}").as_str())
            .await?;
    }
    tx.execute(format!("DROP SCHEMA {build_schema} CASCADE").as_str())
        .await?;
    sqlx::query(
        "UPDATE projection_checkpoints SET position = $2, updated_at = now() WHERE name = $1",
    )
    .bind(projection.name())
    .bind(position)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(position)
}
