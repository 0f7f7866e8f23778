//! The scenario clock of a test deployment (`payledger serve --test-clock`): a frozen time that
//! an admin sets forward or advances, read by every time-based rule (order expiry, claim windows
//! and deadlines, the refund policy, dunning, settlement weeks, webhook and notification retries,
//! reminders). Like Stripe's test clocks it does not tick by itself; unlike them it moves the
//! whole ledger at once.
//!
//! The time is a row of `scenario_clock` (migration 0017), so every `serve` process of one
//! database reads the same time: each keeps it in memory for [`Clock::now`] (which cannot wait
//! on the database) and follows moves made by the others through `NOTIFY payledger_clock`, with
//! a poll as fallback. A process that has not seen a move yet is behind by at most
//! [`FOLLOW_POLL_MS`]; the process that moved it sees the new time before it answers.
//!
//! Time never moves backwards: the update only applies when the stored time is not later, a
//! trigger refuses it again, and the in-memory value only ever grows.

use crate::clock::Clock;
use async_trait::async_trait;
use chrono::{DateTime, Duration, TimeZone, Timelike, Utc};
use sqlx::PgPool;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// How often a process re-reads the clock when no notification arrived.
pub const FOLLOW_POLL_MS: u64 = 1_000;
/// The longest single move: a little more than a year (a subscription's yearly renewal).
pub const MAX_MOVE_SECONDS: i64 = 400 * 24 * 3600;

#[derive(Debug, thiserror::Error)]
pub enum ScenarioClockError {
    #[error("the scenario clock never moves backwards: it is {now}, {requested} is earlier")]
    Backwards {
        now: DateTime<Utc>,
        requested: DateTime<Utc>,
    },
    #[error("a move must be from 0 to {MAX_MOVE_SECONDS} seconds")]
    OutOfRange,
    #[error("the database failed: {0}")]
    Database(#[from] sqlx::Error),
}

pub struct ScenarioClock {
    pool: PgPool,
    /// Microseconds since the epoch (PostgreSQL's precision); only ever grows.
    now_micros: AtomicI64,
    changed: tokio::sync::watch::Sender<DateTime<Utc>>,
}

fn to_micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

fn from_micros(micros: i64) -> DateTime<Utc> {
    Utc.timestamp_micros(micros).single().unwrap_or_default()
}

fn truncate(at: DateTime<Utc>) -> DateTime<Utc> {
    at.with_nanosecond(at.nanosecond() / 1_000 * 1_000)
        .unwrap_or(at)
}

impl ScenarioClock {
    /// The database's scenario clock, started at `start` if this database has none yet (a
    /// database keeps its scenario time across restarts).
    pub async fn open(
        pool: PgPool,
        start: DateTime<Utc>,
    ) -> Result<Arc<ScenarioClock>, ScenarioClockError> {
        sqlx::query(
            "INSERT INTO scenario_clock (id, scenario_time) VALUES (1, $1) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(truncate(start))
        .execute(&pool)
        .await?;
        let now: DateTime<Utc> =
            sqlx::query_scalar("SELECT scenario_time FROM scenario_clock WHERE id = 1")
                .fetch_one(&pool)
                .await?;
        let (changed, _) = tokio::sync::watch::channel(now);
        Ok(Arc::new(ScenarioClock {
            pool,
            now_micros: AtomicI64::new(to_micros(now)),
            changed,
        }))
    }

    /// Is there a scenario clock in this database (a test deployment's)?
    pub async fn exists(pool: &PgPool) -> Result<bool, sqlx::Error> {
        sqlx::query_scalar("SELECT EXISTS (SELECT FROM scenario_clock WHERE id = 1)")
            .fetch_one(pool)
            .await
    }

    /// Wakes whenever the time moves (here or, once followed, in another process).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<DateTime<Utc>> {
        self.changed.subscribe()
    }

    /// Takes a time read from the database; never moves the in-memory time back.
    fn observe(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        let previous = self.now_micros.fetch_max(to_micros(at), Ordering::SeqCst);
        let now = from_micros(previous.max(to_micros(at)));
        if to_micros(at) > previous {
            self.changed.send_replace(now);
        }
        now
    }

    /// Sets the time to `to`, which must not be earlier than now.
    pub async fn set_forward(
        &self,
        to: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, ScenarioClockError> {
        let to = truncate(to);
        let current = self.refresh().await?;
        if to < current {
            return Err(ScenarioClockError::Backwards {
                now: current,
                requested: to,
            });
        }
        if (to - current).num_seconds() > MAX_MOVE_SECONDS {
            return Err(ScenarioClockError::OutOfRange);
        }
        let moved: Option<DateTime<Utc>> = sqlx::query_scalar(
            "UPDATE scenario_clock SET scenario_time = $1, moves = moves + 1, updated_at = now() \
             WHERE id = 1 AND scenario_time <= $1 RETURNING scenario_time",
        )
        .bind(to)
        .fetch_optional(&self.pool)
        .await?;
        match moved {
            Some(now) => Ok(self.observe(now)),
            // Another process moved it further in the meantime.
            None => Err(ScenarioClockError::Backwards {
                now: self.refresh().await?,
                requested: to,
            }),
        }
    }

    /// Moves the time forward by `by` (0 allowed: runs what is due without moving).
    pub async fn advance(&self, by: Duration) -> Result<DateTime<Utc>, ScenarioClockError> {
        if by < Duration::zero() || by.num_seconds() > MAX_MOVE_SECONDS {
            return Err(ScenarioClockError::OutOfRange);
        }
        let now: DateTime<Utc> = sqlx::query_scalar(
            "UPDATE scenario_clock SET scenario_time = scenario_time + $1, moves = moves + 1, \
                updated_at = now() WHERE id = 1 RETURNING scenario_time",
        )
        .bind(by)
        .fetch_one(&self.pool)
        .await?;
        Ok(self.observe(now))
    }

    /// Re-reads the time from the database.
    pub async fn refresh(&self) -> Result<DateTime<Utc>, ScenarioClockError> {
        let now: DateTime<Utc> =
            sqlx::query_scalar("SELECT scenario_time FROM scenario_clock WHERE id = 1")
                .fetch_one(&self.pool)
                .await?;
        Ok(self.observe(now))
    }

    /// How many times the clock was moved in this database.
    pub async fn moves(&self) -> Result<i64, ScenarioClockError> {
        Ok(
            sqlx::query_scalar("SELECT moves FROM scenario_clock WHERE id = 1")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Follows moves made by other processes: `LISTEN payledger_clock`, and a poll every
    /// [`FOLLOW_POLL_MS`] in case a notification was missed (a reconnect). Runs until aborted.
    pub async fn follow(self: Arc<Self>) {
        let mut listener = None;
        loop {
            if listener.is_none() {
                match sqlx::postgres::PgListener::connect_with(&self.pool).await {
                    Ok(mut l) => match l.listen("payledger_clock").await {
                        Ok(()) => listener = Some(l),
                        Err(error) => tracing::warn!(%error, "failed to listen for clock moves"),
                    },
                    Err(error) => tracing::warn!(%error, "failed to listen for clock moves"),
                }
            }
            let wait = tokio::time::sleep(std::time::Duration::from_millis(FOLLOW_POLL_MS));
            match listener.as_mut() {
                Some(l) => {
                    tokio::select! {
                        received = l.recv() => if received.is_err() { listener = None; },
                        _ = wait => {}
                    }
                }
                None => wait.await,
            }
            if let Err(error) = self.refresh().await {
                tracing::warn!(%error, "failed to read the scenario clock");
            }
        }
    }
}

impl Clock for ScenarioClock {
    fn now(&self) -> DateTime<Utc> {
        from_micros(self.now_micros.load(Ordering::SeqCst))
    }
}

/// A job that does what is due at the clock's time: one pass of a background job (expiry,
/// the claim deadline sweep, billing, settlement confirmation and payout, reminders, webhook
/// retries). `serve` runs each on its own schedule; moving the scenario clock runs each once at
/// the new time, in the order given, so a test sees the effects of the move in its answer.
#[async_trait]
pub trait DueJob: Send + Sync + 'static {
    /// A short, stable name (`orders.expiry`, `settlement.confirm`, …).
    fn name(&self) -> &'static str;
    /// One pass; what it did, for the caller to show.
    async fn run_due(&self) -> Result<serde_json::Value, String>;
}
