//! Process managers: followers of the global log that *do* something for each event — refund an
//! order whose slot was taken, refund what a claim decided, put a payment on a settlement
//! statement — by running commands through the application.
//!
//! Guarantees, and what they rest on:
//! - **Every event is handled at least once.** The process's checkpoint (table
//!   `process_checkpoints`) moves past an event only after its handler returned; a crash in
//!   between replays the event.
//! - **Every effect happens once.** Handlers only run idempotent commands whose ids derive from
//!   the triggering event (refund id `slot-taken`, `claim-{id}-{round}`, line id
//!   `payment:{order}`, …): replaying an event finds its commands done and does nothing new.
//!   At-least-once plus idempotent is effectively once.
//! - **One active instance across processes.** The runner holds a session advisory lock on its own
//!   connection, like [`crate::run_projections`]; another process takes over when that connection
//!   dies, and every checkpoint update is fenced on the previous position so a runner that lost
//!   its lock unknowingly cannot move it.
//! - **Handlers may keep state** in their own tables through the connection they are given: it is
//!   inside the transaction that also moves the checkpoint, so the state is always the fold of the
//!   log up to the checkpoint, however often a batch is replayed.
//!
//! A handler answers [`ProcessError::Retry`] for what may work later (the provider is down, a
//! refund is still in flight): the runner keeps what the batch did up to that event, waits with a
//! growing backoff and tries the same event again, forever — stopping would lose a refund.
//! [`ProcessError::GiveUp`] is for what retrying cannot fix: the event is recorded in
//! `process_dead_letters` for an admin and the process moves on.

/// After a wake-up, how long a process manager waits for more events to batch.
const COALESCE_MS: u64 = 5;

mod chains;
pub use chains::{chains_of, handle_in_chains, MAX_CHAINS_IN_FLIGHT};

use crate::{JoinedBatch, PositionSender, Wakeup};
use async_trait::async_trait;
use payledger_store::{read_all, RecordedEvent};
use serde::Serialize;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest wait between two tries of an event that asked to be retried.
pub const MAX_RETRY_BACKOFF_MS: u64 = 60_000;
/// A process that passed over events it does not want writes its checkpoint once the log has
/// been quiet this long...
const IDLE_CHECKPOINT_AFTER_MS: u64 = 50;
/// ...or, under steady traffic it passes over, this often.
const SKIPPED_CHECKPOINT_MAX_MS: u64 = 1_000;
/// How much of an error message a dead letter keeps.
const MAX_ERROR_CHARS: usize = 2_000;

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// Might work later: the event is tried again after a backoff.
    #[error("will retry: {0}")]
    Retry(String),
    /// Cannot work: the event is dead-lettered and the process moves on.
    #[error("gave up: {0}")]
    GiveUp(String),
    #[error("process state: {0}")]
    Database(#[from] sqlx::Error),
    #[error("failed to read the log: {0}")]
    Read(#[from] payledger_store::ReadError),
}

/// Reacts to events of the global log with idempotent commands.
#[async_trait]
pub trait ProcessManager: Send + Sync + 'static {
    /// Stable name: the checkpoint row and the advisory lock are keyed by it.
    fn name(&self) -> &'static str;

    /// Whether [`ProcessManager::handle`] could do anything for `event`, judged from its stream
    /// and type alone. Events it answers `false` for are passed over without a savepoint, a
    /// decode or a round trip (the checkpoint still moves past them): most process managers
    /// ignore most of the log, and the savepoints alone cost two round trips per event.
    fn wants(&self, _event: &RecordedEvent) -> bool {
        true
    }

    /// Handles one event. Called at least once per event, in log order; must be idempotent.
    /// `state` is inside the transaction that moves the checkpoint past this event.
    async fn handle(
        &self,
        state: &mut PgConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProcessError>;

    /// Handles `events` (those it [`wants`](ProcessManager::wants) of one batch, in log order)
    /// with the same effect as [`handle`](ProcessManager::handle) on each in turn, which is
    /// what the default does. A process manager whose state writes batch well overrides it to
    /// write many events' state in one statement, and one whose decisions wait on commands to
    /// have many in flight with [`handle_in_chains`]. On failure it names the first event not
    /// handled: everything before it must be done, in `state`'s transaction.
    async fn handle_many(
        &self,
        state: &mut PgConnection,
        events: &[&RecordedEvent],
    ) -> Result<(), Unhandled> {
        for (index, event) in events.iter().enumerate() {
            self.handle(state, event)
                .await
                .map_err(|error| Unhandled { index, error })?;
        }
        Ok(())
    }
}

/// Where [`ProcessManager::handle_many`] stopped: the index of the first event it did not
/// handle, and why.
#[derive(Debug)]
pub struct Unhandled {
    pub index: usize,
    pub error: ProcessError,
}

#[derive(Debug, Clone)]
pub struct ProcessConfig {
    /// Events per transaction at the head of the log. Small: handlers call the provider, and a
    /// retry replays the batch only from the failing event.
    pub batch_size: i64,
    /// Events per transaction while the process is behind (its last read was a full batch): a
    /// process catching up on history hands [`ProcessManager::handle_many`] enough decisions at
    /// once to have many in flight, and moves its checkpoint once per batch.
    pub catch_up_batch_size: i64,
    pub poll_interval_ms: u64,
    pub standby_retry_ms: u64,
    /// First wait after an error; doubles up to [`MAX_RETRY_BACKOFF_MS`].
    pub error_backoff_ms: u64,
}

impl Default for ProcessConfig {
    fn default() -> Self {
        ProcessConfig {
            batch_size: 100,
            catch_up_batch_size: 2_000,
            poll_interval_ms: 1_000,
            standby_retry_ms: 2_000,
            error_backoff_ms: 250,
        }
    }
}

/// Where a process manager stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessStatus {
    pub name: String,
    pub position: i64,
    pub head_position: i64,
    pub lag_events: i64,
    pub dead_letters: i64,
}

fn lock_key(name: &str) -> i64 {
    // FNV-1a, as for projections, under another prefix: a process and a projection of the same
    // name never share a lock.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in format!("payledger-process:{name}").bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// Creates the checkpoint row of `name` at `start_position` if it is missing. A new process
/// manager added to a running ledger decides here whether it reacts to history (0) or only to
/// what happens from now on (the head).
pub async fn ensure_checkpoint(
    pool: &PgPool,
    name: &str,
    start_position: i64,
) -> Result<(), ProcessError> {
    sqlx::query(
        "INSERT INTO process_checkpoints (name, position) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(start_position.max(0))
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn status(pool: &PgPool) -> Result<Vec<ProcessStatus>, ProcessError> {
    let head = payledger_store::head_position(pool).await?;
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT c.name, c.position, \
                (SELECT count(*) FROM process_dead_letters d WHERE d.name = c.name) \
         FROM process_checkpoints c ORDER BY c.name",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(name, position, dead_letters)| ProcessStatus {
            name,
            position,
            head_position: head,
            lag_events: (head - position).max(0),
            dead_letters,
        })
        .collect())
}

/// A dead-lettered event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    pub name: String,
    pub global_position: i64,
    pub stream_id: String,
    pub event_type: String,
    pub error: String,
}

pub async fn dead_letters(pool: &PgPool, name: &str) -> Result<Vec<DeadLetter>, ProcessError> {
    let rows: Vec<(String, i64, String, String, String)> = sqlx::query_as(
        "SELECT name, global_position, stream_id, event_type, error FROM process_dead_letters \
         WHERE name = $1 ORDER BY global_position LIMIT 1000",
    )
    .bind(name)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(name, global_position, stream_id, event_type, error)| DeadLetter {
                name,
                global_position,
                stream_id,
                event_type,
                error,
            },
        )
        .collect())
}

/// Runs one process manager forever: waits for its lock, then follows the log.
pub async fn run_process(
    connect: PgConnectOptions,
    process: Arc<dyn ProcessManager>,
    config: ProcessConfig,
    wakeup: Wakeup,
    positions: Arc<PositionSender>,
) {
    let mut backoff_ms = config.error_backoff_ms.max(1);
    loop {
        match follow(
            &connect,
            process.as_ref(),
            &config,
            Some(&wakeup),
            &positions,
        )
        .await
        {
            Ok(_) => {
                backoff_ms = config.error_backoff_ms.max(1);
                tokio::time::sleep(Duration::from_millis(config.standby_retry_ms)).await;
            }
            Err(error) => {
                tracing::warn!(process = process.name(), %error, backoff_ms, "process manager paused; retrying");
                tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
                backoff_ms = (backoff_ms * 2).min(MAX_RETRY_BACKOFF_MS);
            }
        }
    }
}

/// What [`catch_up`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUp {
    /// Handled everything up to this position (the head when it was reached).
    Reached(i64),
    /// Another process holds the lock: it is the active instance.
    Standby,
}

/// Handles every event up to the head once, then returns (tests, and a CLI that finishes what a
/// stopped `serve` left). Returns an error for an event that asked to be retried.
pub async fn catch_up(
    connect: &PgConnectOptions,
    process: &dyn ProcessManager,
    config: &ProcessConfig,
) -> Result<CatchUp, ProcessError> {
    let (sender, _receiver) = tokio::sync::watch::channel(0);
    follow(connect, process, config, None, &sender).await
}

/// Follows the log while holding the lock. With `wakeup` it waits for new events forever; without
/// it returns once the head is reached. `Ok(Standby)` when another process holds the lock.
async fn follow(
    connect: &PgConnectOptions,
    process: &dyn ProcessManager,
    config: &ProcessConfig,
    wakeup: Option<&Wakeup>,
    positions: &PositionSender,
) -> Result<CatchUp, ProcessError> {
    let mut conn = PgConnection::connect_with(connect).await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(lock_key(process.name()))
        .fetch_one(&mut conn)
        .await?;
    if !locked {
        return Ok(CatchUp::Standby);
    }
    sqlx::query(
        "INSERT INTO process_checkpoints (name, position) VALUES ($1, 0) ON CONFLICT (name) DO NOTHING",
    )
    .bind(process.name())
    .execute(&mut conn)
    .await?;
    tracing::info!(process = process.name(), "process manager active");
    let session = crate::session::session_of(&mut conn).await?;
    tokio::select! {
        result = follow_locked(&mut conn, process, config, wakeup, positions) => result,
        () = crate::session::session_ended(connect, session) => Err(ProcessError::Retry(
            "the server ended the runner's session".into(),
        )),
    }
}

/// The process manager's loop while it holds its lock on `conn`.
async fn follow_locked(
    conn: &mut PgConnection,
    process: &dyn ProcessManager,
    config: &ProcessConfig,
    wakeup: Option<&Wakeup>,
    positions: &PositionSender,
) -> Result<CatchUp, ProcessError> {
    let mut woken = wakeup.map(Wakeup::subscribe);
    // Only this runner moves the checkpoint while it holds the lock, and every move is fenced on
    // the previous position: it is followed in memory, and read again only when the runner has
    // been idle for a poll interval (an operator may have moved it back to replay history).
    //
    // `position` is how far the process has handled the log; `saved` is its checkpoint row.
    // A batch without an event the process wants needs no transaction: `position` moves on and
    // the row catches up with the next batch that does something, once the log has been quiet
    // for IDLE_CHECKPOINT_AFTER_MS, or after SKIPPED_CHECKPOINT_MAX_MS. A restart in between
    // passes over those events again and does nothing with them.
    let mut position = read_checkpoint(&mut *conn, process.name()).await?;
    let mut saved = position;
    let mut saved_at = Instant::now();
    let head_limit = config.batch_size.clamp(1, 10_000);
    let catch_up_limit = config.catch_up_batch_size.clamp(head_limit, 10_000);
    let mut at_head = false;
    // Whether the last read was a full batch: more is waiting, so read more at once.
    let mut behind = false;
    loop {
        let limit = if behind { catch_up_limit } else { head_limit };
        positions.send_replace(position);
        if let (true, Some(woken)) = (at_head, woken.as_mut()) {
            let wait_ms = if saved < position {
                IDLE_CHECKPOINT_AFTER_MS
            } else {
                config.poll_interval_ms
            };
            let why = crate::wait_for_events(woken, position, COALESCE_MS, wait_ms).await;
            if why == crate::Woken::Polled {
                if saved < position
                    && advance_checkpoint(&mut *conn, process.name(), saved, position).await?
                {
                    saved = position;
                    saved_at = Instant::now();
                } else {
                    position = read_checkpoint(&mut *conn, process.name()).await?;
                    saved = position;
                }
            }
        }
        let events = match wakeup {
            Some(wakeup) => {
                wakeup
                    .tail()
                    .read_joined_after(&mut *conn, position, limit)
                    .await?
            }
            None => JoinedBatch::from(read_all(&mut *conn, position, limit).await?),
        };
        let Some(last) = events.last().map(|e| e.global_position) else {
            if woken.is_none() {
                if saved < position
                    && !advance_checkpoint(&mut *conn, process.name(), saved, position).await?
                {
                    return Err(moved_under_this_runner());
                }
                return Ok(CatchUp::Reached(position));
            }
            at_head = true;
            continue;
        };
        at_head = (events.len() as i64) < limit;
        behind = !at_head;
        // Where in `events` the events the process wants are.
        let wanted_at: Vec<usize> = events
            .iter()
            .enumerate()
            .filter(|(_, event)| process.wants(event))
            .map(|(at, _)| at)
            .collect();
        if wanted_at.is_empty() {
            position = last;
            if saved_at.elapsed() >= Duration::from_millis(SKIPPED_CHECKPOINT_MAX_MS) {
                if !advance_checkpoint(&mut *conn, process.name(), saved, position).await? {
                    return Err(moved_under_this_runner());
                }
                saved = position;
                saved_at = Instant::now();
            }
            continue;
        }
        let outcome =
            handle_batch(&mut *conn, process, saved, position, &events, &wanted_at).await?;
        if outcome.committed_to > saved {
            saved = outcome.committed_to;
            saved_at = Instant::now();
        }
        position = outcome.committed_to;
        // At the head only if the read was short and the whole of it was handled (an event given
        // up on ends a batch early).
        at_head = at_head && position == last;
        positions.send_replace(position);
        if let Some(error) = outcome.retry {
            // What came before the failing event is committed; the event itself is tried again.
            return Err(error);
        }
    }
}

fn moved_under_this_runner() -> ProcessError {
    ProcessError::Retry("the checkpoint moved under this runner".into())
}

struct BatchOutcome {
    committed_to: i64,
    retry: Option<ProcessError>,
}

/// Handles the events at `wanted_at` in `events` (which follow `position`) in one transaction
/// and moves the checkpoint from `saved` (the row, at or before `position`) past `events`. On a
/// retryable failure the events before it are committed with the checkpoint just before it; an
/// event given up on is dead-lettered and the checkpoint moves past it.
///
/// No savepoints (two round trips per event): a failing handler aborts the whole attempt, and
/// the events before it are then handled again in a new transaction — handlers are idempotent,
/// so that is harmless — before the failure is dealt with. The failing handler itself is not
/// called twice for one attempt. Events after an event given up on are left for the next batch.
async fn handle_batch(
    conn: &mut PgConnection,
    process: &dyn ProcessManager,
    saved: i64,
    position: i64,
    events: &JoinedBatch,
    wanted_at: &[usize],
) -> Result<BatchOutcome, ProcessError> {
    let wanted: Vec<&RecordedEvent> = wanted_at.iter().map(|&at| &events[at]).collect();
    let mut tx = conn.begin().await?;
    let Err(Unhandled { index, error }) = process.handle_many(&mut tx, &wanted).await else {
        let done_to = events.last().map_or(position, |e| e.global_position);
        return commit_batch(tx, process, saved, done_to, None).await;
    };
    let Some(&failed_at) = wanted_at.get(index) else {
        // An index past the events is a bug of the override: retry the whole batch.
        return Err(error);
    };
    // The failed handler may have left the transaction aborted: start again without it.
    tx.rollback().await?;
    let mut tx = conn.begin().await?;
    // They succeeded a moment ago; if they fail now, the next round starts over from the checkpoint.
    if let Err(again) = process.handle_many(&mut tx, &wanted[..index]).await {
        return Err(again.error);
    }
    let done_before = failed_at
        .checked_sub(1)
        .map_or(position, |before| events[before].global_position);
    let failed = &events[failed_at];
    match error {
        ProcessError::GiveUp(reason) => {
            tracing::error!(
                process = process.name(),
                position = failed.global_position,
                stream_id = failed.stream_id,
                event_type = failed.event_type,
                %reason,
                "process manager gave up on an event; dead-lettered"
            );
            record_dead_letter(&mut tx, process.name(), failed, &reason).await?;
            commit_batch(tx, process, saved, failed.global_position, None).await
        }
        retry => commit_batch(tx, process, saved, done_before, Some(retry)).await,
    }
}

/// Moves the checkpoint from `from` to `done_to` (fenced) and commits; rolls back when nothing
/// was done.
async fn commit_batch(
    mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    process: &dyn ProcessManager,
    from: i64,
    done_to: i64,
    retry: Option<ProcessError>,
) -> Result<BatchOutcome, ProcessError> {
    if done_to > from {
        if !advance_checkpoint(&mut tx, process.name(), from, done_to).await? {
            // Another runner moved the checkpoint: this one lost its lock. Drop the batch; its
            // commands were idempotent and the other runner does them too.
            tx.rollback().await?;
            return Err(moved_under_this_runner());
        }
        tx.commit().await?;
    } else {
        tx.rollback().await?;
    }
    Ok(BatchOutcome {
        committed_to: done_to,
        retry,
    })
}

async fn record_dead_letter(
    conn: &mut PgConnection,
    name: &str,
    event: &RecordedEvent,
    reason: &str,
) -> Result<(), ProcessError> {
    let error: String = reason.chars().take(MAX_ERROR_CHARS).collect();
    sqlx::query(
        "INSERT INTO process_dead_letters (name, global_position, stream_id, event_type, error) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name, global_position) DO UPDATE SET error = EXCLUDED.error",
    )
    .bind(name)
    .bind(event.global_position)
    .bind(&event.stream_id)
    .bind(&event.event_type)
    .bind(error)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn read_checkpoint(conn: &mut PgConnection, name: &str) -> Result<i64, ProcessError> {
    let position: Option<i64> =
        sqlx::query_scalar("SELECT position FROM process_checkpoints WHERE name = $1")
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
) -> Result<bool, ProcessError> {
    let updated = sqlx::query(
        "UPDATE process_checkpoints SET position = $3, updated_at = now() \
         WHERE name = $1 AND position = $2",
    )
    .bind(name)
    .bind(from)
    .bind(to)
    .execute(&mut *conn)
    .await?;
    Ok(updated.rows_affected() == 1)
}
