//! The live runner: follows the log and keeps a group of projections current.
//!
//! A `serve` process projects every batch of new events into all of its read models in **one
//! transaction**, with one fenced statement moving all their checkpoints. It used to run a
//! transaction per projection per batch (BEGIN, `SET LOCAL`, writes, checkpoint, COMMIT): five
//! times the round trips and commits, most of them by projections that had nothing to write.
//!
//! What each projection had on its own is kept:
//! - **Its checkpoint.** Each member has its own row and position; a batch applies to a member
//!   only the events after its position, so members that are apart (one was just rebuilt, one was
//!   paused) converge without any event applied twice or skipped.
//! - **Its lock.** The runner holds every member's session advisory lock (taken in name order, so
//!   two processes racing for a group cannot each end up with part of it), so a runner of some of
//!   the projections elsewhere (the billing scheduler's catch-up of orders and subscriptions)
//!   excludes the group and the group excludes it.
//! - **Its fence.** A rebuild that swapped a member's tables in moved that member's checkpoint:
//!   the group's checkpoint update then moves fewer rows than it should, the whole batch rolls
//!   back and the positions are read again.
//! - **Its isolation from the others' faults.** When a member fails to apply a batch, the batch
//!   rolls back, that member alone is paused with a growing backoff, and the others go on without
//!   it; when it is due again it is caught up from its own position.

use crate::{
    read_checkpoint, set_search_path, wait_for_events, PositionSender, Projection, ProjectionError,
    RunnerConfig, Wakeup, LIVE_SCHEMA,
};
use payledger_store::RecordedEvent;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The longest pause of a member whose batches keep failing.
pub const MAX_MEMBER_BACKOFF_MS: u64 = 30_000;

/// Runs `projections` forever, together: waits for all their locks, then follows the log and
/// projects each batch into every member in one transaction. Each member's committed position
/// is published on its sender.
pub async fn run_projections(
    connect: PgConnectOptions,
    projections: Vec<(Arc<dyn Projection>, Arc<PositionSender>)>,
    config: RunnerConfig,
    wakeup: Wakeup,
) {
    let mut members: Vec<Member> = projections
        .into_iter()
        .map(|(projection, positions)| Member {
            projection,
            positions,
            position: 0,
            paused_until: None,
            backoff_ms: 0,
        })
        .collect();
    // One order for taking locks everywhere: whoever gets the first gets them all.
    members.sort_by_key(|member| member.projection.name());
    let names = names(&members);
    loop {
        match follow_holding_locks(&connect, &mut members, &config, &wakeup).await {
            Ok(()) => {
                tokio::time::sleep(Duration::from_millis(config.standby_retry_ms)).await;
            }
            Err(error) => {
                tracing::warn!(projections = names, %error, "projection runner failed; restarting");
                tokio::time::sleep(Duration::from_millis(config.error_backoff_ms)).await;
            }
        }
    }
}

/// Runs one projection forever: a group of one.
pub async fn run_projection(
    connect: PgConnectOptions,
    projection: Arc<dyn Projection>,
    config: RunnerConfig,
    wakeup: Wakeup,
    positions: Arc<PositionSender>,
) {
    run_projections(connect, vec![(projection, positions)], config, wakeup).await
}

/// The members' names, for the log.
fn names(members: &[Member]) -> String {
    let names: Vec<&str> = members.iter().map(|m| m.projection.name()).collect();
    names.join(",")
}

struct Member {
    projection: Arc<dyn Projection>,
    positions: Arc<PositionSender>,
    /// The member's checkpoint, followed in memory while the runner holds the locks.
    position: i64,
    /// Set while the member's last batch failed: it is left out of batches until then.
    paused_until: Option<Instant>,
    /// The pause after the member's next failure; 0 after a success.
    backoff_ms: u64,
}

impl Member {
    fn is_due(&self, now: Instant) -> bool {
        self.paused_until.is_none_or(|until| until <= now)
    }

    /// The events of `events` this member has not applied yet.
    fn unapplied<'e>(&self, events: &'e [RecordedEvent]) -> &'e [RecordedEvent] {
        let applied = events.partition_point(|e| e.global_position <= self.position);
        &events[applied..]
    }

    fn pause(&mut self, config: &RunnerConfig) {
        self.backoff_ms = if self.backoff_ms == 0 {
            config.error_backoff_ms.max(1)
        } else {
            (self.backoff_ms * 2).min(MAX_MEMBER_BACKOFF_MS)
        };
        self.paused_until = Some(Instant::now() + Duration::from_millis(self.backoff_ms));
    }

    fn committed(&mut self, position: i64) {
        self.position = position;
        self.paused_until = None;
        self.backoff_ms = 0;
        self.positions.send_replace(position);
    }
}

/// Returns `Ok(())` when another process holds one of the locks (standby), and errors when the
/// connection failed. Both end with the connection dropped, which releases the locks.
async fn follow_holding_locks(
    connect: &PgConnectOptions,
    members: &mut [Member],
    config: &RunnerConfig,
    wakeup: &Wakeup,
) -> Result<(), ProjectionError> {
    let mut conn = PgConnection::connect_with(connect).await?;
    for member in members.iter() {
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(crate::lock_key(member.projection.name()))
            .fetch_one(&mut conn)
            .await?;
        if !locked {
            return Ok(());
        }
    }
    tracing::info!(projections = names(members), "projection runner active");
    let session = crate::session::session_of(&mut conn).await?;
    tokio::select! {
        result = follow_locked(&mut conn, members, config, wakeup) => result,
        () = crate::session::session_ended(connect, session) => Err(ProjectionError::SessionEnded),
    }
}

/// The runner's loop while it holds every member's lock on `conn`; returns only with an error.
async fn follow_locked(
    conn: &mut PgConnection,
    members: &mut [Member],
    config: &RunnerConfig,
    wakeup: &Wakeup,
) -> Result<(), ProjectionError> {
    let mut woken = wakeup.subscribe();
    // Only this runner moves these checkpoints while it holds the locks (a rebuild's swap is
    // caught by the fence), so they are read once here and again only after a fence.
    read_positions(&mut *conn, members).await?;
    let mut at_head = false;
    loop {
        let now = Instant::now();
        let Some(from) = members
            .iter()
            .filter(|m| m.is_due(now))
            .map(|m| m.position)
            .min()
        else {
            // Every member is paused.
            let first_due = members.iter().filter_map(|m| m.paused_until).min();
            tokio::time::sleep_until(first_due.unwrap_or(now)).await;
            continue;
        };
        if at_head {
            let _ = wait_for_events(
                &mut woken,
                from,
                config.coalesce_ms,
                config.poll_interval_ms,
            )
            .await;
        }
        let events = wakeup
            .tail()
            .read_joined_after(&mut *conn, from, config.batch_size)
            .await?
            .into_one_slice();
        at_head = (events.len() as i64) < config.batch_size;
        let Some(last) = events.last().map(|e| e.global_position) else {
            continue;
        };
        let now = Instant::now();
        let due: Vec<usize> = (0..members.len())
            .filter(|&i| members[i].is_due(now) && members[i].position < last)
            .collect();
        match project_together(&mut *conn, members, &due, &events, last).await {
            Ok(Together::Committed) => {
                for &i in &due {
                    members[i].committed(last);
                }
            }
            Ok(Together::Fenced) => {
                // A rebuild swapped a member in at another position: drop the batch.
                read_positions(&mut *conn, members).await?;
            }
            Err(Failure::Member(i, error)) => {
                // A connection that broke mid-batch is not the member's fault: start over.
                conn.ping().await?;
                let member = &mut members[i];
                member.pause(config);
                tracing::warn!(
                    projection = member.projection.name(),
                    %error,
                    pause_ms = member.backoff_ms,
                    "projection failed to apply a batch; the others go on without it"
                );
            }
            Err(Failure::Group(error)) => return Err(error),
        }
    }
}

enum Together {
    Committed,
    /// Another writer moved a checkpoint: nothing was committed.
    Fenced,
}

enum Failure {
    /// Applying the batch failed for this member (index into the members).
    Member(usize, ProjectionError),
    /// The transaction itself failed.
    Group(ProjectionError),
}

impl From<sqlx::Error> for Failure {
    fn from(error: sqlx::Error) -> Failure {
        Failure::Group(error.into())
    }
}

impl From<ProjectionError> for Failure {
    fn from(error: ProjectionError) -> Failure {
        Failure::Group(error)
    }
}

/// Applies `events` to each member in `due` (each from its own position) and moves their
/// checkpoints to `last`, all in one transaction.
async fn project_together(
    conn: &mut PgConnection,
    members: &[Member],
    due: &[usize],
    events: &[RecordedEvent],
    last: i64,
) -> Result<Together, Failure> {
    if due.is_empty() {
        return Ok(Together::Committed);
    }
    let mut tx = conn.begin().await?;
    set_search_path(&mut tx, LIVE_SCHEMA).await?;
    let mut names = Vec::with_capacity(due.len());
    let mut froms = Vec::with_capacity(due.len());
    for &i in due {
        let member = &members[i];
        if let Err(error) = member
            .projection
            .apply(&mut tx, member.unapplied(events))
            .await
        {
            // Dropping the transaction would roll it back lazily; do it now, so that a ping
            // right after really tests the connection.
            let _ = tx.rollback().await;
            return Err(Failure::Member(i, error));
        }
        names.push(member.projection.name());
        froms.push(member.position);
    }
    let moved = sqlx::query(
        "UPDATE projection_checkpoints AS c SET position = $3, updated_at = now() \
         FROM unnest($1::text[], $2::bigint[]) AS m(name, from_position) \
         WHERE c.name = m.name AND c.position = m.from_position",
    )
    .bind(&names)
    .bind(&froms)
    .bind(last)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if moved != names.len() as u64 {
        tx.rollback().await?;
        return Ok(Together::Fenced);
    }
    tx.commit().await?;
    Ok(Together::Committed)
}

async fn read_positions(
    conn: &mut PgConnection,
    members: &mut [Member],
) -> Result<(), ProjectionError> {
    for member in members.iter_mut() {
        member.position = read_checkpoint(conn, member.projection.name()).await?;
        member.positions.send_replace(member.position);
    }
    Ok(())
}
