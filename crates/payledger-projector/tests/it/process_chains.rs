//! Catching up on a long log: larger batches while behind, and a batch's decisions in chains
//! handled at once, each chain in log order, each event once.

use crate::process::{handled, process_checkpoint, setup, Picky};
use async_trait::async_trait;
use payledger_projector::process::{
    self, CatchUp, ProcessConfig, ProcessError, ProcessManager, Unhandled,
};
use payledger_store::RecordedEvent;
use sqlx::PgConnection;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Keys of the log's events: `thing-{i}` belongs to group `i % GROUPS`.
const GROUPS: usize = 7;

/// Handles its batches in chains by group, recording who was handled, in which order, and how
/// many handlers were waiting at once.
struct Chained {
    retry_once: Mutex<HashSet<i64>>,
    calls: Mutex<Vec<i64>>,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
    batches: Mutex<Vec<usize>>,
}

impl Chained {
    fn new(retry_once: &[i64]) -> Chained {
        Chained {
            retry_once: Mutex::new(retry_once.iter().copied().collect()),
            calls: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            most_in_flight: AtomicUsize::new(0),
            batches: Mutex::new(Vec::new()),
        }
    }

    fn group(event: &RecordedEvent) -> String {
        let i = event.payload["i"].as_u64().unwrap() as usize;
        format!("group-{}", i % GROUPS)
    }

    /// A decision that waits (as a command waits for its commit) before it is done.
    async fn decide(&self, event: &RecordedEvent) -> Result<(), ProcessError> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_flight.fetch_max(now, Ordering::SeqCst);
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        if self
            .retry_once
            .lock()
            .unwrap()
            .remove(&event.global_position)
        {
            return Err(ProcessError::Retry("not yet".into()));
        }
        self.calls.lock().unwrap().push(event.global_position);
        Ok(())
    }

    /// Every position handled successfully, by group, in the order handled.
    fn by_group(&self) -> BTreeMap<usize, Vec<i64>> {
        let mut groups: BTreeMap<usize, Vec<i64>> = BTreeMap::new();
        for &position in self.calls.lock().unwrap().iter() {
            // `thing-{i}` was appended as position i + 1.
            let i = (position - 1) as usize;
            groups.entry(i % GROUPS).or_default().push(position);
        }
        groups
    }
}

#[async_trait]
impl ProcessManager for Chained {
    fn name(&self) -> &'static str {
        "chained"
    }

    async fn handle(
        &self,
        _state: &mut PgConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProcessError> {
        self.decide(event).await
    }

    async fn handle_many(
        &self,
        _state: &mut PgConnection,
        events: &[&RecordedEvent],
    ) -> Result<(), Unhandled> {
        self.batches.lock().unwrap().push(events.len());
        let keys: Vec<Vec<String>> = events.iter().map(|e| vec![Chained::group(e)]).collect();
        process::handle_in_chains(events, &keys, 4, |event| self.decide(event)).await
    }
}

#[tokio::test]
async fn a_batch_is_handled_in_chains_at_once_each_chain_in_log_order_each_event_once() {
    let (_db, connect) = setup(200).await;
    let chained = Chained::new(&[]);
    let config = ProcessConfig {
        batch_size: 200,
        ..ProcessConfig::default()
    };
    let reached = process::catch_up(&connect, &chained, &config)
        .await
        .unwrap();
    assert_eq!(reached, CatchUp::Reached(200));
    let mut calls = chained.calls.lock().unwrap().clone();
    calls.sort_unstable();
    assert_eq!(calls, (1..=200).collect::<Vec<_>>(), "each event once");
    for (group, positions) in chained.by_group() {
        assert!(
            positions.windows(2).all(|pair| pair[0] < pair[1]),
            "group {group} was handled out of log order: {positions:?}"
        );
    }
    assert_eq!(
        chained.most_in_flight.load(Ordering::SeqCst),
        4,
        "four chains (the limit given) were waiting at once"
    );
}

#[tokio::test]
async fn a_retry_in_one_chain_keeps_every_event_before_it_and_loses_none_after_it() {
    let (db, connect) = setup(120).await;
    // Position 50 is of group 0 ((50 - 1) % 7 == 0); other chains run past it meanwhile.
    let chained = Chained::new(&[50]);
    let config = ProcessConfig {
        batch_size: 120,
        ..ProcessConfig::default()
    };
    let first = process::catch_up(&connect, &chained, &config).await;
    assert!(
        matches!(first, Err(ProcessError::Retry(_))),
        "the failing event stops the catch-up: {first:?}"
    );
    assert_eq!(process_checkpoint(&db, "chained").await, 49);
    assert_eq!(
        process::catch_up(&connect, &chained, &config)
            .await
            .unwrap(),
        CatchUp::Reached(120)
    );
    let calls = chained.calls.lock().unwrap().clone();
    let handled_once: HashSet<i64> = calls.iter().copied().collect();
    assert_eq!(
        handled_once,
        (1..=120).collect::<HashSet<_>>(),
        "nothing skipped"
    );
    // Group 0 never ran past its failing event: in log order, without a gap.
    let group_zero = chained.by_group().remove(&0).unwrap();
    let mut expected: Vec<i64> = (1..=120).filter(|p| (p - 1) % 7 == 0).collect();
    // Events before 50 of group 0 were handled, then handled again after the retry.
    let before: Vec<i64> = expected.iter().copied().filter(|&p| p < 50).collect();
    expected = before.iter().copied().chain(expected).collect();
    assert_eq!(group_zero, expected);
}

#[tokio::test]
async fn a_process_behind_reads_larger_batches_than_at_the_head() {
    let (db, connect) = setup(30).await;
    let picky = Picky::wanting(&[12, 25]);
    let config = ProcessConfig {
        batch_size: 5,
        catch_up_batch_size: 100,
        ..ProcessConfig::default()
    };
    assert_eq!(
        process::catch_up(&connect, &picky, &config).await.unwrap(),
        CatchUp::Reached(30)
    );
    assert_eq!(handled(&db).await, vec![12, 25]);
    // The first read (5 events) was full: the next took the other 25 at once, both wanted
    // events in one batch.
    assert_eq!(*picky.runs.lock().unwrap(), vec![2]);
}
