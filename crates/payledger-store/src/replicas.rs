//! Read replicas: which database may answer a read, and how stale each replica can be.
//!
//! A replica is a streaming-replication hot standby of the primary. It replays the primary's WAL
//! in commit order, one whole transaction at a time, so what it shows is always a state the
//! primary had: a prefix of the global log, with each read model at a checkpoint committed with
//! its rows. What it cannot promise on its own is *how old* that state is. [`ReplicaSet`] bounds
//! that from WAL positions, never from clocks:
//!
//! - every `poll_interval` it samples the primary's WAL insert position `L` at instant `T`;
//! - it asks each replica how far it has replayed (`pg_last_wal_replay_lsn()`);
//! - a replica that has replayed past `L` holds every transaction the primary had committed at
//!   `T`, so its staleness is at most `now - T` for the latest such sample.
//!
//! A replica is *usable* while that bound, plus the time since it was computed, is within
//! `max_lag`; a replica that does not answer, was promoted (no longer in recovery), or trails
//! every kept sample is not. Reads never go to an unusable replica: they go to the primary, and
//! the caller says so (metric `payledger_routed_reads`, header `X-Payledger-Read-Source`).
//! When the primary itself cannot be sampled, every bound keeps growing, so replicas stop
//! answering within `max_lag`: a replica never serves old data silently because the primary
//! is gone.

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How many primary samples are kept: at the default 100 ms interval, 100 s of history. A
/// replica further behind than the oldest sample is unusable anyway (max lag is far lower).
const MAX_SAMPLES: usize = 1000;
/// Connections per replica pool; reads are short.
const REPLICA_POOL_CONNECTIONS: u32 = 16;
/// A replica that cannot hand out a connection this fast is treated as lost for that read.
const REPLICA_ACQUIRE_TIMEOUT: Duration = Duration::from_millis(500);
/// How long one probe of the primary or a replica may take.
const PROBE_TIMEOUT: Duration = Duration::from_millis(1000);

/// How replicas are used (settings `PAYLEDGER_REPLICA_*`, docs/operations.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaConfig {
    /// A replica further behind than this answers no read without `minPosition`.
    pub max_lag: Duration,
    /// How long a read with `minPosition` waits for a replica to replay it before the primary
    /// answers instead.
    pub wait: Duration,
    /// How often the primary's and the replicas' WAL positions are sampled.
    pub poll_interval: Duration,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        ReplicaConfig {
            max_lag: Duration::from_millis(1000),
            wait: Duration::from_millis(500),
            poll_interval: Duration::from_millis(100),
        }
    }
}

/// What the monitor last learnt about one replica.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplicaHealth {
    /// The staleness bound when it was computed; `None` when it could not be computed (the
    /// replica or the primary did not answer, or it is not a standby).
    pub lag: Option<Duration>,
    /// When `lag` was computed.
    pub checked_at: Instant,
}

impl ReplicaHealth {
    /// The bound now: it grows with the time since the last check.
    pub fn lag_now(&self) -> Option<Duration> {
        self.lag.map(|lag| lag + self.checked_at.elapsed())
    }
}

pub struct Replica {
    /// `replica-0`, `replica-1`, … in configuration order (metric labels, headers; no URL).
    pub name: String,
    pub pool: PgPool,
    health: Mutex<ReplicaHealth>,
}

impl Replica {
    pub fn health(&self) -> ReplicaHealth {
        *self.health.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The primary and its read replicas.
pub struct ReplicaSet {
    primary: PgPool,
    replicas: Vec<Arc<Replica>>,
    config: ReplicaConfig,
    samples: Mutex<VecDeque<(Instant, i64)>>,
    next: AtomicUsize,
}

impl ReplicaSet {
    /// Pools to each replica are made lazily: a replica that is down at start is simply not
    /// usable until it answers.
    pub fn new(
        primary: PgPool,
        replicas: Vec<PgConnectOptions>,
        config: ReplicaConfig,
    ) -> Arc<ReplicaSet> {
        let now = Instant::now();
        let replicas = replicas
            .into_iter()
            .enumerate()
            .map(|(index, options)| {
                Arc::new(Replica {
                    name: format!("replica-{index}"),
                    pool: crate::call_bounds::drain_or_close_on_release(
                        PgPoolOptions::new()
                            .max_connections(REPLICA_POOL_CONNECTIONS)
                            .acquire_timeout(REPLICA_ACQUIRE_TIMEOUT),
                    )
                    .connect_lazy_with(options),
                    health: Mutex::new(ReplicaHealth {
                        lag: None,
                        checked_at: now,
                    }),
                })
            })
            .collect();
        Arc::new(ReplicaSet {
            primary,
            replicas,
            config,
            samples: Mutex::new(VecDeque::new()),
            next: AtomicUsize::new(0),
        })
    }

    pub fn config(&self) -> ReplicaConfig {
        self.config
    }

    pub fn primary(&self) -> &PgPool {
        &self.primary
    }

    pub fn replicas(&self) -> &[Arc<Replica>] {
        &self.replicas
    }

    pub fn is_empty(&self) -> bool {
        self.replicas.is_empty()
    }

    /// A replica whose staleness bound is within `max_lag` now, taken in turn; `None` when
    /// there is none.
    pub fn fresh_replica(&self) -> Option<Arc<Replica>> {
        let count = self.replicas.len();
        if count == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..count)
            .map(|offset| &self.replicas[(start + offset) % count])
            .find(|replica| self.is_fresh(replica))
            .cloned()
    }

    pub fn is_fresh(&self, replica: &Replica) -> bool {
        replica
            .health()
            .lag_now()
            .is_some_and(|lag| lag <= self.config.max_lag)
    }

    /// Samples the primary, then every replica, once. The monitor task calls it every
    /// `poll_interval`; tests call it directly.
    pub async fn probe(&self) {
        let sampled = tokio::time::timeout(PROBE_TIMEOUT, wal_insert_position(&self.primary)).await;
        if let Ok(Ok(position)) = sampled {
            let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
            samples.push_back((Instant::now(), position));
            while samples.len() > MAX_SAMPLES {
                samples.pop_front();
            }
        }
        for replica in &self.replicas {
            let replayed =
                tokio::time::timeout(PROBE_TIMEOUT, replayed_position(&replica.pool)).await;
            let now = Instant::now();
            let lag = match replayed {
                Ok(Ok(Some(replayed))) => self.staleness_bound(replayed, now),
                _ => None,
            };
            *replica.health.lock().unwrap_or_else(|p| p.into_inner()) = ReplicaHealth {
                lag,
                checked_at: now,
            };
        }
    }

    /// `now - T` for the latest sample `(T, L)` with `L <= replayed`.
    fn staleness_bound(&self, replayed: i64, now: Instant) -> Option<Duration> {
        let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        samples
            .iter()
            .rev()
            .find(|(_, position)| *position <= replayed)
            .map(|(at, _)| now.saturating_duration_since(*at))
    }

    /// Probes forever, every `poll_interval`.
    pub async fn monitor(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(self.config.poll_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.probe().await;
        }
    }
}

/// The primary's WAL insert position, in bytes: every transaction committed so far ends before it.
async fn wal_insert_position(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint")
        .fetch_one(pool)
        .await
}

/// How far a standby has replayed, in bytes; `None` when the server is not a standby (it was
/// promoted, or the URL names a primary): its data may then differ from the primary's.
async fn replayed_position(pool: &PgPool) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT CASE WHEN pg_is_in_recovery() \
                THEN (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint END",
    )
    .fetch_one(pool)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_with_samples(samples: &[(Instant, i64)]) -> ReplicaSet {
        ReplicaSet {
            primary: PgPoolOptions::new().connect_lazy_with(PgConnectOptions::new()),
            replicas: Vec::new(),
            config: ReplicaConfig::default(),
            samples: Mutex::new(samples.iter().copied().collect()),
            next: AtomicUsize::new(0),
        }
    }

    #[tokio::test]
    async fn the_bound_is_the_age_of_the_latest_sample_the_replica_has_passed() {
        let now = Instant::now();
        let set = set_with_samples(&[
            (now - Duration::from_millis(300), 100),
            (now - Duration::from_millis(200), 200),
            (now - Duration::from_millis(100), 300),
        ]);
        assert_eq!(
            set.staleness_bound(250, now),
            Some(Duration::from_millis(200))
        );
        assert_eq!(
            set.staleness_bound(300, now),
            Some(Duration::from_millis(100))
        );
        assert_eq!(set.staleness_bound(99, now), None, "behind every sample");
    }

    #[tokio::test]
    async fn a_server_that_is_not_a_standby_or_does_not_answer_is_never_used() {
        let db = payledger_testdb::TestDatabase::fresh().await;
        let not_a_standby: PgConnectOptions = db.app_url.parse().unwrap();
        let nobody_listens = PgConnectOptions::new()
            .host("127.0.0.1")
            .port(1)
            .username("payledger_app");
        let set = ReplicaSet::new(
            db.app_pool.clone(),
            vec![not_a_standby, nobody_listens],
            ReplicaConfig::default(),
        );
        for _ in 0..3 {
            set.probe().await;
        }
        for replica in set.replicas() {
            assert_eq!(replica.health().lag, None, "{}", replica.name);
            assert!(!set.is_fresh(replica));
        }
        assert!(set.fresh_replica().is_none());
    }

    #[test]
    fn the_bound_grows_while_nobody_checks() {
        let health = ReplicaHealth {
            lag: Some(Duration::from_millis(10)),
            checked_at: Instant::now() - Duration::from_millis(500),
        };
        assert!(health.lag_now().unwrap() >= Duration::from_millis(510));
        let lost = ReplicaHealth {
            lag: None,
            checked_at: Instant::now(),
        };
        assert_eq!(lost.lag_now(), None);
    }
}
