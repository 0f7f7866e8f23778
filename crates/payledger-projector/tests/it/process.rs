//! Process managers: each event handled to completion once, across failures, with one runner.

use async_trait::async_trait;
use payledger_projector::process::{self, CatchUp, ProcessConfig, ProcessError, ProcessManager};
use payledger_store::{EventStore, ExpectedVersion, NewEvent, RecordedEvent, WriterConfig};
use payledger_testdb::TestDatabase;
use sqlx::postgres::PgConnectOptions;
use sqlx::PgConnection;
use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Mutex;

/// Records every event it handles in a table inside the process transaction, and fails as told.
struct Recorder {
    /// Positions that fail with `Retry` the first time they are seen.
    retry_once: Mutex<HashSet<i64>>,
    /// Positions that always fail with `GiveUp`.
    give_up: HashSet<i64>,
    /// Every call, committed or not: shows what was replayed.
    calls: Mutex<Vec<i64>>,
}

impl Recorder {
    fn new(retry_once: &[i64], give_up: &[i64]) -> Recorder {
        Recorder {
            retry_once: Mutex::new(retry_once.iter().copied().collect()),
            give_up: give_up.iter().copied().collect(),
            calls: Mutex::new(Vec::new()),
        }
    }
}

#[async_trait]
impl ProcessManager for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }

    async fn handle(
        &self,
        state: &mut PgConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProcessError> {
        self.calls.lock().unwrap().push(event.global_position);
        // Written before failing: a failed event's writes must not survive.
        sqlx::query("INSERT INTO handled (position) VALUES ($1)")
            .bind(event.global_position)
            .execute(&mut *state)
            .await?;
        if self
            .retry_once
            .lock()
            .unwrap()
            .remove(&event.global_position)
        {
            return Err(ProcessError::Retry("not yet".into()));
        }
        if self.give_up.contains(&event.global_position) {
            return Err(ProcessError::GiveUp("never".into()));
        }
        Ok(())
    }
}

pub(crate) async fn setup(events: usize) -> (TestDatabase, PgConnectOptions) {
    let db = TestDatabase::fresh().await;
    sqlx::query("CREATE TABLE handled (position bigint PRIMARY KEY)")
        .execute(&db.owner_pool)
        .await
        .unwrap();
    sqlx::query("GRANT ALL ON handled TO payledger_app")
        .execute(&db.owner_pool)
        .await
        .unwrap();
    let store = EventStore::new(db.app_pool.clone(), WriterConfig::default());
    for i in 0..events {
        store
            .append(
                &format!("thing-{i}"),
                ExpectedVersion::NoStream,
                vec![NewEvent::new(
                    "ThingHappened",
                    serde_json::json!({ "i": i }),
                    Default::default(),
                )],
                false,
            )
            .await
            .unwrap();
    }
    let connect = PgConnectOptions::from_str(&db.app_url).unwrap();
    (db, connect)
}

pub(crate) async fn handled(db: &TestDatabase) -> Vec<i64> {
    sqlx::query_scalar("SELECT position FROM handled ORDER BY position")
        .fetch_all(&db.owner_pool)
        .await
        .unwrap()
}

/// Batches of `batch_size` events, behind or not: these tests are about batch boundaries.
fn config(batch_size: i64) -> ProcessConfig {
    ProcessConfig {
        batch_size,
        catch_up_batch_size: batch_size,
        ..ProcessConfig::default()
    }
}

#[tokio::test]
async fn every_event_is_handled_once_and_the_checkpoint_reaches_the_head() {
    let (db, connect) = setup(25).await;
    let recorder = Recorder::new(&[], &[]);
    let reached = process::catch_up(&connect, &recorder, &config(10))
        .await
        .unwrap();
    assert_eq!(reached, CatchUp::Reached(25));
    assert_eq!(handled(&db).await, (1..=25).collect::<Vec<_>>());
    // Nothing new: nothing handled again.
    process::catch_up(&connect, &recorder, &config(10))
        .await
        .unwrap();
    assert_eq!(recorder.calls.lock().unwrap().len(), 25);
}

#[tokio::test]
async fn a_retry_keeps_the_work_before_it_and_replays_only_the_failing_event() {
    let (db, connect) = setup(10).await;
    let recorder = Recorder::new(&[7], &[]);
    let first = process::catch_up(&connect, &recorder, &config(100)).await;
    assert!(matches!(first, Err(ProcessError::Retry(_))), "{first:?}");
    // 1..=6 committed with their checkpoint; 7's write rolled back.
    assert_eq!(handled(&db).await, (1..=6).collect::<Vec<_>>());
    let status = process::status(&db.app_pool).await.unwrap();
    assert_eq!(status[0].position, 6);
    let second = process::catch_up(&connect, &recorder, &config(100))
        .await
        .unwrap();
    assert_eq!(second, CatchUp::Reached(10));
    assert_eq!(handled(&db).await, (1..=10).collect::<Vec<_>>());
    // The events before the failure were handled again when the batch was redone (handlers are
    // idempotent); the failing one was tried once per attempt; the rest once.
    let calls = recorder.calls.lock().unwrap().clone();
    assert_eq!(
        calls,
        vec![1, 2, 3, 4, 5, 6, 7, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    );
}

#[tokio::test]
async fn an_event_that_cannot_be_handled_is_dead_lettered_and_the_process_moves_on() {
    let (db, connect) = setup(5).await;
    let recorder = Recorder::new(&[], &[3]);
    let reached = process::catch_up(&connect, &recorder, &config(100))
        .await
        .unwrap();
    assert_eq!(reached, CatchUp::Reached(5));
    assert_eq!(handled(&db).await, vec![1, 2, 4, 5]);
    let dead = process::dead_letters(&db.app_pool, "recorder")
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].global_position, dead[0].stream_id.as_str()),
        (3, "thing-2")
    );
    assert_eq!(
        process::status(&db.app_pool).await.unwrap()[0].dead_letters,
        1
    );
}

/// Blocks in its first event until released, after saying it got there (so it holds the lock).
struct Slow {
    arrived: std::sync::Arc<tokio::sync::Notify>,
    release: std::sync::Arc<tokio::sync::Semaphore>,
}

#[async_trait]
impl ProcessManager for Slow {
    fn name(&self) -> &'static str {
        "recorder"
    }

    async fn handle(
        &self,
        state: &mut PgConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProcessError> {
        self.arrived.notify_one();
        let _permit = self
            .release
            .acquire()
            .await
            .map_err(|e| ProcessError::Retry(e.to_string()))?;
        sqlx::query("INSERT INTO handled (position) VALUES ($1)")
            .bind(event.global_position)
            .execute(&mut *state)
            .await?;
        Ok(())
    }
}

#[tokio::test]
async fn only_one_runner_is_active_at_a_time() {
    let (db, connect) = setup(3).await;
    let arrived = std::sync::Arc::new(tokio::sync::Notify::new());
    let release = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let slow = Slow {
        arrived: arrived.clone(),
        release: release.clone(),
    };
    let connect_a = connect.clone();
    let active =
        tokio::spawn(async move { process::catch_up(&connect_a, &slow, &config(100)).await });
    arrived.notified().await;
    // The first runner is inside an event, holding the lock: a second one stands by.
    let second = Recorder::new(&[], &[]);
    assert_eq!(
        process::catch_up(&connect, &second, &config(100))
            .await
            .unwrap(),
        CatchUp::Standby
    );
    assert!(second.calls.lock().unwrap().is_empty());
    release.add_permits(100);
    assert_eq!(active.await.unwrap().unwrap(), CatchUp::Reached(3));
    assert_eq!(handled(&db).await, vec![1, 2, 3]);
    // Its lock went with its connection: the second runner can take over now.
    assert_eq!(
        process::catch_up(&connect, &second, &config(100))
            .await
            .unwrap(),
        CatchUp::Reached(3)
    );
}

/// Wants two events of the log and records the size of every run it is handed.
pub(crate) struct Picky {
    wanted: HashSet<i64>,
    pub(crate) runs: Mutex<Vec<usize>>,
}

impl Picky {
    pub(crate) fn wanting(positions: &[i64]) -> Picky {
        Picky {
            wanted: positions.iter().copied().collect(),
            runs: Mutex::new(Vec::new()),
        }
    }
}

#[async_trait]
impl ProcessManager for Picky {
    fn name(&self) -> &'static str {
        "picky"
    }

    fn wants(&self, event: &RecordedEvent) -> bool {
        self.wanted.contains(&event.global_position)
    }

    async fn handle(
        &self,
        state: &mut PgConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProcessError> {
        sqlx::query("INSERT INTO handled (position) VALUES ($1)")
            .bind(event.global_position)
            .execute(&mut *state)
            .await?;
        Ok(())
    }

    async fn handle_many(
        &self,
        state: &mut PgConnection,
        events: &[&RecordedEvent],
    ) -> Result<(), process::Unhandled> {
        self.runs.lock().unwrap().push(events.len());
        for (index, event) in events.iter().enumerate() {
            self.handle(state, event)
                .await
                .map_err(|error| process::Unhandled { index, error })?;
        }
        Ok(())
    }
}

/// The checkpoint row's position; 0 before the runner created the row.
pub(crate) async fn process_checkpoint(db: &TestDatabase, name: &str) -> i64 {
    sqlx::query_scalar("SELECT position FROM process_checkpoints WHERE name = $1")
        .bind(name)
        .fetch_optional(&db.owner_pool)
        .await
        .unwrap()
        .unwrap_or(0)
}

#[tokio::test]
async fn batches_without_a_wanted_event_open_no_transaction_and_the_checkpoint_follows_when_quiet()
{
    let (db, connect) = setup(30).await;
    let picky = std::sync::Arc::new(Picky::wanting(&[12, 25]));
    let runner = tokio::spawn(process::run_process(
        connect.clone(),
        picky.clone(),
        config(5),
        payledger_projector::Wakeup::default(),
        std::sync::Arc::new(tokio::sync::watch::channel(0).0),
    ));
    let mut checkpoint = 0;
    for _ in 0..200 {
        checkpoint = process_checkpoint(&db, "picky").await;
        if checkpoint == 30 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    runner.abort();
    let _ = runner.await;
    assert_eq!(
        checkpoint, 30,
        "the checkpoint catches up over the events passed over"
    );
    assert_eq!(handled(&db).await, vec![12, 25]);
    // Handed only the two batches that hold a wanted event, never an empty run.
    assert_eq!(*picky.runs.lock().unwrap(), vec![1, 1]);

    // A catch-up from the saved checkpoint finds nothing left to do.
    let again = Picky::wanting(&[12, 25]);
    assert_eq!(
        process::catch_up(&connect, &again, &config(5))
            .await
            .unwrap(),
        CatchUp::Reached(30)
    );
    assert!(again.runs.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_catch_up_that_passed_over_everything_saves_its_checkpoint_before_it_returns() {
    let (db, connect) = setup(12).await;
    let picky = Picky::wanting(&[]);
    assert_eq!(
        process::catch_up(&connect, &picky, &config(5))
            .await
            .unwrap(),
        CatchUp::Reached(12)
    );
    assert_eq!(process_checkpoint(&db, "picky").await, 12);
    assert!(picky.runs.lock().unwrap().is_empty());
}
