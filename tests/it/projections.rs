//! The projector runtime: crashes mid-batch never apply an event twice or skip one, and a
//! rebuild from zero gives the same rows.

use async_trait::async_trait;
use payledger_app::clock::SystemClock;
use payledger_app::context::RequestContext;
use payledger_app::executor::Executor;
use payledger_app::payments::{Payments, PaymentsConfig, PlaceOrderInput};
use payledger_connector_toss::{TossConfig, TossGateway};
use payledger_domain::ids::{CustomerId, OrderId, PayeeId, PaymentKey};
use payledger_domain::money::{Currency, Money};
use payledger_projector::{Projection, ProjectionError, RunnerConfig, Wakeup};
use payledger_read_models::journal::JournalProjection;
use payledger_read_models::orders::OrdersProjection;
use payledger_store::{EventStore, RecordedEvent, WriterConfig};
use payledger_testdb::TestDatabase;
use sqlx::{PgConnection, PgPool};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Writes a realistic history: orders placed, paid, partly refunded.
async fn fill(db: &TestDatabase, orders: usize) -> payledger_sandbox::RunningSandbox {
    let sandbox =
        payledger_sandbox::start(SocketAddr::from(([127, 0, 0, 1], 0)), Default::default())
            .await
            .unwrap();
    let gateway = TossGateway::new(TossConfig::sandbox(sandbox.base_url())).unwrap();
    let store = EventStore::new(db.app_pool.clone(), WriterConfig::default());
    let payments = Payments::new(
        Arc::new(Executor::new(store)),
        Arc::new(gateway),
        Arc::new(SystemClock),
        PaymentsConfig::default(),
    );
    let context = RequestContext::new("client:test", None);
    for n in 0..orders {
        let order_id = OrderId::parse(format!("order-proj-{n}")).unwrap();
        payments
            .place_order(
                PlaceOrderInput {
                    order_id: Some(order_id.clone()),
                    amount: Money::new(10_000 + n as i64, Currency::KRW).unwrap(),
                    customer_id: CustomerId::parse(format!("cust_{}", n % 7)).unwrap(),
                    payee_id: PayeeId::parse("payee_1").unwrap(),
                    order_name: "Pilates".into(),
                    service_starts_at: None,
                    provider: None,
                },
                &context,
            )
            .await
            .unwrap();
        if n % 3 != 0 {
            let key = PaymentKey::parse(format!("pk_proj_{n}")).unwrap();
            payments
                .confirm(&order_id, key, 10_000 + n as i64, &context)
                .await
                .unwrap();
        }
        if n % 5 == 1 && n % 3 != 0 {
            payments
                .refund(&order_id, None, Some(1_000), "partial".into(), &context)
                .await
                .unwrap();
        }
    }
    sandbox
}

#[derive(Clone)]
enum Fault {
    /// Writes the batch, then fails before the checkpoint moves.
    ErrorAfterWriting,
    /// Fails every batch, from `fault_on_batch` on, until the flag is cleared.
    ErrorWhileSet(Arc<AtomicBool>),
    /// Writes the batch, then hangs until the test kills the runner.
    HangAfterWriting,
}

/// The orders projection with a fault. It keeps one inner projection across batches, so the
/// batch replayed after a fault meets recent orders its failed attempt already folded further.
struct FaultyOrders {
    inner: OrdersProjection,
    batches: AtomicU32,
    fault_on_batch: u32,
    fault: Fault,
}

#[async_trait]
impl Projection for FaultyOrders {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn schema_sql(&self) -> &'static str {
        self.inner.schema_sql()
    }
    fn tables(&self) -> &'static [&'static str] {
        self.inner.tables()
    }
    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        self.inner.apply(conn, events).await?;
        let batch = self.batches.fetch_add(1, Ordering::SeqCst);
        if let Fault::ErrorWhileSet(failing) = &self.fault {
            if batch >= self.fault_on_batch && failing.load(Ordering::SeqCst) {
                return Err(ProjectionError::BadEvent {
                    position: events[0].global_position,
                    reason: "simulated broken projection".into(),
                });
            }
        }
        if batch == self.fault_on_batch {
            match self.fault {
                Fault::ErrorAfterWriting => {
                    return Err(ProjectionError::BadEvent {
                        position: events[0].global_position,
                        reason: "simulated crash after writing the batch".into(),
                    })
                }
                Fault::HangAfterWriting => tokio::time::sleep(Duration::from_secs(3600)).await,
                Fault::ErrorWhileSet(_) => {}
            }
        }
        Ok(())
    }
}

fn small_batches() -> RunnerConfig {
    RunnerConfig {
        batch_size: 7,
        poll_interval_ms: 50,
        standby_retry_ms: 50,
        error_backoff_ms: 50,
        coalesce_ms: 0,
    }
}

fn start_runner(db: &TestDatabase, projection: Arc<dyn Projection>) -> tokio::task::JoinHandle<()> {
    let connect = db.app_url.parse().unwrap();
    tokio::spawn(payledger_projector::run_projection(
        connect,
        projection,
        small_batches(),
        Wakeup::default(),
        Arc::new(tokio::sync::watch::channel(0).0),
    ))
}

/// One runner for `projections`, projecting each batch into all of them in one transaction.
fn start_group(
    db: &TestDatabase,
    projections: Vec<Arc<dyn Projection>>,
) -> tokio::task::JoinHandle<()> {
    let connect = db.app_url.parse().unwrap();
    let members = projections
        .into_iter()
        .map(|p| (p, Arc::new(tokio::sync::watch::channel(0).0)))
        .collect();
    tokio::spawn(payledger_projector::run_projections(
        connect,
        members,
        small_batches(),
        Wakeup::default(),
    ))
}

/// Creates the orders and journal read models and starts one group runner for both.
async fn start_orders_and_journal(db: &TestDatabase) -> tokio::task::JoinHandle<()> {
    ensure_orders_and_journal(db).await;
    start_group(
        db,
        vec![
            Arc::new(OrdersProjection::default()),
            Arc::new(JournalProjection),
        ],
    )
}

/// Session advisory locks held in the test's database: one per active runner's projection.
async fn advisory_locks(db: &TestDatabase) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = \
         (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_one(&db.owner_pool)
    .await
    .unwrap()
}

async fn checkpoint(pool: &PgPool, name: &str) -> i64 {
    sqlx::query_scalar("SELECT position FROM projection_checkpoints WHERE name = $1")
        .bind(name)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn wait_until_caught_up(pool: &PgPool) {
    for _ in 0..400 {
        let statuses = payledger_projector::status(pool).await.unwrap();
        if statuses
            .iter()
            .any(|s| s.name == "orders" && s.lag_events == 0)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("projection did not catch up");
}

/// Every row of the orders read model, as text, in a stable order.
async fn snapshot(pool: &PgPool) -> (Vec<String>, Vec<String>) {
    let orders: Vec<String> =
        sqlx::query_scalar("SELECT o::text FROM rm.orders o ORDER BY order_id")
            .fetch_all(pool)
            .await
            .unwrap();
    let timeline: Vec<String> = sqlx::query_scalar(
        "SELECT t::text FROM rm.order_timeline t ORDER BY order_id, global_position",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    (orders, timeline)
}

async fn assert_equals_a_rebuild(db: &TestDatabase) {
    let live = snapshot(&db.app_pool).await;
    assert!(!live.0.is_empty());
    payledger_projector::rebuild(&db.app_pool, &OrdersProjection::default(), &|_, _| {})
        .await
        .unwrap();
    let rebuilt = snapshot(&db.app_pool).await;
    assert_eq!(
        live, rebuilt,
        "the live read model differs from a rebuild from zero"
    );
}

async fn event_count(pool: &PgPool) -> i64 {
    payledger_store::head_position(pool).await.unwrap()
}

#[tokio::test]
async fn a_batch_that_fails_after_writing_is_rolled_back_and_replayed_once() {
    let db = TestDatabase::fresh().await;
    let _sandbox = fill(&db, 30).await;
    payledger_projector::ensure_live(&db.app_pool, &OrdersProjection::default())
        .await
        .unwrap();
    let runner = start_runner(
        &db,
        Arc::new(FaultyOrders {
            inner: OrdersProjection::default(),
            batches: AtomicU32::new(0),
            fault_on_batch: 3,
            fault: Fault::ErrorAfterWriting,
        }),
    );
    wait_until_caught_up(&db.app_pool).await;
    runner.abort();
    // Each event once in the timeline (a double apply would also violate its primary key).
    let timeline_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM rm.order_timeline")
        .fetch_one(&db.app_pool)
        .await
        .unwrap();
    assert_eq!(timeline_rows, event_count(&db.app_pool).await);
    assert_equals_a_rebuild(&db).await;
}

#[tokio::test]
async fn live_orders_tables_from_before_lose_their_copied_columns_in_place() {
    let db = TestDatabase::fresh().await;
    let _sandbox = fill(&db, 6).await;
    payledger_projector::ensure_live(&db.app_pool, &OrdersProjection::default())
        .await
        .unwrap();
    // Tables made before 2026-11-22 had the fold as a required jsonb column, and timeline
    // rows with required copies of each event's stream, version, type and time.
    sqlx::raw_sql(
        "ALTER TABLE rm.orders ADD COLUMN state jsonb NOT NULL; \
         ALTER TABLE rm.order_timeline ADD COLUMN stream_id text NOT NULL, \
            ADD COLUMN stream_version bigint NOT NULL, ADD COLUMN event_type text NOT NULL, \
            ADD COLUMN recorded_at timestamptz NOT NULL, ADD COLUMN actor text",
    )
    .execute(&db.app_pool)
    .await
    .unwrap();
    payledger_projector::ensure_live(&db.app_pool, &OrdersProjection::default())
        .await
        .unwrap();
    let columns: Vec<String> = sqlx::query_scalar(
        "SELECT table_name || '.' || column_name FROM information_schema.columns \
         WHERE table_schema = 'rm' \
           AND ((table_name = 'orders' AND column_name = 'state') \
             OR (table_name = 'order_timeline' AND column_name IN ('stream_id', \
                 'stream_version', 'event_type', 'recorded_at', 'actor')))",
    )
    .fetch_all(&db.app_pool)
    .await
    .unwrap();
    assert!(
        columns.is_empty(),
        "the start left old columns in place: {columns:?}"
    );
    let runner = start_runner(&db, Arc::new(OrdersProjection::default()));
    wait_until_caught_up(&db.app_pool).await;
    runner.abort();
    assert_equals_a_rebuild(&db).await;
}

#[tokio::test]
async fn a_runner_killed_mid_batch_leaves_nothing_half_applied() {
    let db = TestDatabase::fresh().await;
    let _sandbox = fill(&db, 30).await;
    payledger_projector::ensure_live(&db.app_pool, &OrdersProjection::default())
        .await
        .unwrap();
    let doomed = start_runner(
        &db,
        Arc::new(FaultyOrders {
            inner: OrdersProjection::default(),
            batches: AtomicU32::new(0),
            fault_on_batch: 4,
            fault: Fault::HangAfterWriting,
        }),
    );
    // Let it get stuck inside batch 5 with its writes done but not committed, then kill it.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let checkpoint: i64 =
        sqlx::query_scalar("SELECT position FROM projection_checkpoints WHERE name = 'orders'")
            .fetch_one(&db.app_pool)
            .await
            .unwrap();
    assert_eq!(
        checkpoint, 28,
        "four batches of 7 committed before the hang"
    );
    let visible: i64 = sqlx::query_scalar("SELECT count(*) FROM rm.order_timeline")
        .fetch_one(&db.app_pool)
        .await
        .unwrap();
    assert_eq!(visible, 28, "the hanging batch's writes are not visible");
    doomed.abort();
    let _ = doomed.await;

    let replacement = start_runner(&db, Arc::new(OrdersProjection::default()));
    wait_until_caught_up(&db.app_pool).await;
    replacement.abort();
    let timeline_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM rm.order_timeline")
        .fetch_one(&db.app_pool)
        .await
        .unwrap();
    assert_eq!(timeline_rows, event_count(&db.app_pool).await);
    assert_equals_a_rebuild(&db).await;
}

#[tokio::test]
async fn only_one_runner_per_projection_is_active_and_another_takes_over() {
    let db = TestDatabase::fresh().await;
    let _sandbox = fill(&db, 10).await;
    payledger_projector::ensure_live(&db.app_pool, &OrdersProjection::default())
        .await
        .unwrap();
    let first = start_runner(&db, Arc::new(OrdersProjection::default()));
    wait_until_caught_up(&db.app_pool).await;
    let second = start_runner(&db, Arc::new(OrdersProjection::default()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        advisory_locks(&db).await,
        1,
        "exactly one runner holds the orders lock"
    );
    // The active runner dies; the standby takes over and keeps projecting new events.
    first.abort();
    let _ = first.await;
    let _more = fill_more(&db).await;
    wait_until_caught_up(&db.app_pool).await;
    second.abort();
    assert_equals_a_rebuild(&db).await;
}

async fn fill_more(db: &TestDatabase) -> payledger_sandbox::RunningSandbox {
    let sandbox =
        payledger_sandbox::start(SocketAddr::from(([127, 0, 0, 1], 0)), Default::default())
            .await
            .unwrap();
    let gateway = TossGateway::new(TossConfig::sandbox(sandbox.base_url())).unwrap();
    let payments = Payments::new(
        Arc::new(Executor::new(EventStore::new(
            db.app_pool.clone(),
            WriterConfig::default(),
        ))),
        Arc::new(gateway),
        Arc::new(SystemClock),
        PaymentsConfig::default(),
    );
    let context = RequestContext::new("client:test", None);
    for n in 0..5 {
        let order_id = OrderId::parse(format!("order-more-{n}")).unwrap();
        payments
            .place_order(
                PlaceOrderInput {
                    order_id: Some(order_id),
                    amount: Money::new(500, Currency::KRW).unwrap(),
                    customer_id: CustomerId::parse("cust_more").unwrap(),
                    payee_id: PayeeId::parse("payee_1").unwrap(),
                    order_name: "Extra".into(),
                    service_starts_at: None,
                    provider: None,
                },
                &context,
            )
            .await
            .unwrap();
    }
    sandbox
}

#[tokio::test]
async fn a_rebuild_while_the_live_runner_serves_ends_with_the_same_rows() {
    let db = TestDatabase::fresh().await;
    let _sandbox = fill(&db, 25).await;
    payledger_projector::ensure_live(&db.app_pool, &OrdersProjection::default())
        .await
        .unwrap();
    let runner = start_runner(&db, Arc::new(OrdersProjection::default()));
    wait_until_caught_up(&db.app_pool).await;
    let before = snapshot(&db.app_pool).await;
    let position =
        payledger_projector::rebuild(&db.app_pool, &OrdersProjection::default(), &|_, _| {})
            .await
            .unwrap();
    assert_eq!(position, event_count(&db.app_pool).await);
    // New events after the swap are projected by the live runner into the new tables.
    let _more = fill_more(&db).await;
    wait_until_caught_up(&db.app_pool).await;
    runner.abort();
    let after = snapshot(&db.app_pool).await;
    assert!(after.0.len() == before.0.len() + 5);
    assert_equals_a_rebuild(&db).await;
}

#[tokio::test]
async fn verify_finds_a_live_read_model_equal_to_its_rebuild_and_names_a_tampered_table() {
    let db = TestDatabase::fresh().await;
    let _sandbox = fill(&db, 20).await;
    payledger_projector::ensure_live(&db.app_pool, &OrdersProjection::default())
        .await
        .unwrap();
    let runner = start_runner(&db, Arc::new(OrdersProjection::default()));
    wait_until_caught_up(&db.app_pool).await;

    // Verified while the live runner is still running.
    let report = payledger_projector::verify(&db.app_pool, &OrdersProjection::default())
        .await
        .unwrap();
    assert!(report.matches(), "{report:?}");
    assert_eq!(report.position, event_count(&db.app_pool).await);
    runner.abort();

    // A read model that drifted from the log (here: edited by hand) is caught, per table.
    sqlx::query(
        "UPDATE rm.orders SET order_name = order_name || ' (edited)' \
         WHERE order_id = (SELECT min(order_id) FROM rm.orders)",
    )
    .execute(&db.owner_pool)
    .await
    .unwrap();
    let report = payledger_projector::verify(&db.app_pool, &OrdersProjection::default())
        .await
        .unwrap();
    assert!(!report.matches(), "a tampered row went unnoticed");
    assert_eq!(
        report.differences,
        vec![payledger_projector::TableDifference {
            table: "orders".into(),
            missing_rows: 1,
            unexpected_rows: 1,
        }]
    );
    // Verifying changed nothing: no scratch schema is left behind.
    let scratch: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.schemata WHERE schema_name LIKE 'rm_verify_%'",
    )
    .fetch_one(&db.owner_pool)
    .await
    .unwrap();
    assert_eq!(scratch, 0);
}

/// Every row of the journal read model, as text, in a stable order.
async fn journal_snapshot(pool: &PgPool) -> Vec<String> {
    let mut rows = Vec::new();
    for table in ["journal_entries", "journal_lines", "journal_order_facts"] {
        let table_rows: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT to_jsonb(t)::text FROM rm.{table} t ORDER BY 1"
        ))
        .fetch_all(pool)
        .await
        .unwrap();
        rows.extend(table_rows);
    }
    rows
}

#[tokio::test]
async fn a_bulk_rebuild_that_flushes_many_times_gives_the_live_rows() {
    let db = TestDatabase::fresh().await;
    let _sandbox = fill(&db, 30).await;
    let journal = JournalProjection;
    for projection in [&OrdersProjection::default() as &dyn Projection, &journal] {
        payledger_projector::ensure_live(&db.app_pool, projection)
            .await
            .unwrap();
    }
    let orders_runner = start_runner(&db, Arc::new(OrdersProjection::default()));
    let journal_runner = start_runner(&db, Arc::new(JournalProjection));
    wait_until_caught_up(&db.app_pool).await;
    wait_until_projected(&db.app_pool, "journal").await;
    orders_runner.abort();
    journal_runner.abort();
    let live = (
        snapshot(&db.app_pool).await,
        journal_snapshot(&db.app_pool).await,
    );
    assert!(!live.1.is_empty());
    // Batches of 7 events, flushed every 10: most orders span several flushes, so their rows
    // are written, read back, folded further and upserted, and journal facts are read back.
    let config = payledger_projector::RebuildConfig {
        batch_events: 7,
        flush_events: 10,
    };
    let position = payledger_projector::rebuild_with(
        &db.app_pool,
        &[&OrdersProjection::default(), &journal],
        &config,
        &|_, _| {},
    )
    .await
    .unwrap();
    assert_eq!(position, event_count(&db.app_pool).await);
    let rebuilt = (
        snapshot(&db.app_pool).await,
        journal_snapshot(&db.app_pool).await,
    );
    assert_eq!(
        live, rebuilt,
        "a rebuild with many flushes differs from the live rows"
    );
}

async fn wait_until_projected(pool: &PgPool, name: &str) {
    for _ in 0..400 {
        let statuses = payledger_projector::status(pool).await.unwrap();
        if statuses.iter().any(|s| s.name == name && s.lag_events == 0) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("projection {name} did not catch up");
}

async fn ensure_orders_and_journal(db: &TestDatabase) {
    for projection in [
        &OrdersProjection::default() as &dyn Projection,
        &JournalProjection,
    ] {
        payledger_projector::ensure_live(&db.app_pool, projection)
            .await
            .unwrap();
    }
}

async fn assert_journal_equals_a_rebuild(db: &TestDatabase) {
    let live = journal_snapshot(&db.app_pool).await;
    assert!(!live.is_empty());
    payledger_projector::rebuild(&db.app_pool, &JournalProjection, &|_, _| {})
        .await
        .unwrap();
    assert_eq!(
        live,
        journal_snapshot(&db.app_pool).await,
        "the live journal differs from a rebuild from zero"
    );
}

#[tokio::test]
async fn a_group_moves_every_checkpoint_in_the_transaction_that_wrote_the_batch() {
    let db = TestDatabase::fresh().await;
    let _sandbox = fill(&db, 20).await;
    let group = start_orders_and_journal(&db).await;
    wait_until_caught_up(&db.app_pool).await;
    wait_until_projected(&db.app_pool, "journal").await;
    // Both rows were last updated by one transaction: the group's last batch.
    let writers: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT xmin::text) FROM projection_checkpoints \
         WHERE name IN ('orders', 'journal')",
    )
    .fetch_one(&db.app_pool)
    .await
    .unwrap();
    assert_eq!(writers, 1, "the checkpoints moved in separate transactions");
    assert_eq!(
        advisory_locks(&db).await,
        2,
        "the group holds each member's lock"
    );
    group.abort();
    assert_equals_a_rebuild(&db).await;
    assert_journal_equals_a_rebuild(&db).await;
}

#[tokio::test]
async fn a_member_that_keeps_failing_is_paused_while_the_others_go_on_and_catches_up_later() {
    let db = TestDatabase::fresh().await;
    let _sandbox = fill(&db, 20).await;
    ensure_orders_and_journal(&db).await;
    let failing = Arc::new(AtomicBool::new(true));
    let group = start_group(
        &db,
        vec![
            Arc::new(FaultyOrders {
                inner: OrdersProjection::default(),
                batches: AtomicU32::new(0),
                fault_on_batch: 2,
                fault: Fault::ErrorWhileSet(failing.clone()),
            }),
            Arc::new(JournalProjection),
        ],
    );
    wait_until_projected(&db.app_pool, "journal").await;
    let head = event_count(&db.app_pool).await;
    assert_eq!(
        checkpoint(&db.app_pool, "orders").await,
        14,
        "orders committed its first two batches of 7, then failed every batch"
    );
    assert_eq!(checkpoint(&db.app_pool, "journal").await, head);
    // The journal keeps following new events while orders is still broken.
    let _more = fill_more(&db).await;
    wait_until_projected(&db.app_pool, "journal").await;
    assert_eq!(checkpoint(&db.app_pool, "orders").await, 14);

    failing.store(false, Ordering::SeqCst);
    wait_until_caught_up(&db.app_pool).await;
    group.abort();
    let timeline_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM rm.order_timeline")
        .fetch_one(&db.app_pool)
        .await
        .unwrap();
    assert_eq!(timeline_rows, event_count(&db.app_pool).await);
    assert_equals_a_rebuild(&db).await;
    assert_journal_equals_a_rebuild(&db).await;
}

#[tokio::test]
async fn a_group_waits_for_a_lone_runner_of_a_member_and_holds_no_lock_meanwhile() {
    let db = TestDatabase::fresh().await;
    let _sandbox = fill(&db, 10).await;
    ensure_orders_and_journal(&db).await;
    let lone = start_runner(&db, Arc::new(OrdersProjection::default()));
    wait_until_caught_up(&db.app_pool).await;
    let group = start_orders_and_journal(&db).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        advisory_locks(&db).await,
        1,
        "only the lone runner holds a lock"
    );
    assert_eq!(checkpoint(&db.app_pool, "journal").await, 0);

    lone.abort();
    let _ = lone.await;
    let _more = fill_more(&db).await;
    wait_until_caught_up(&db.app_pool).await;
    wait_until_projected(&db.app_pool, "journal").await;
    assert_eq!(advisory_locks(&db).await, 2);
    group.abort();
    assert_equals_a_rebuild(&db).await;
    assert_journal_equals_a_rebuild(&db).await;
}

#[tokio::test]
async fn a_rebuild_of_one_member_while_its_group_runs_ends_with_the_same_rows() {
    let db = TestDatabase::fresh().await;
    let _sandbox = fill(&db, 20).await;
    let group = start_orders_and_journal(&db).await;
    wait_until_caught_up(&db.app_pool).await;
    let position =
        payledger_projector::rebuild(&db.app_pool, &OrdersProjection::default(), &|_, _| {})
            .await
            .unwrap();
    assert_eq!(position, event_count(&db.app_pool).await);
    // After the swap the group goes on projecting both, each from its own checkpoint.
    let _more = fill_more(&db).await;
    wait_until_caught_up(&db.app_pool).await;
    wait_until_projected(&db.app_pool, "journal").await;
    group.abort();
    assert_equals_a_rebuild(&db).await;
    assert_journal_equals_a_rebuild(&db).await;
}

/// `audit verify` recomputes the books from the log keeping at most a capped number of orders'
/// facts; past the cap an order's facts are read back from its `OrderPlaced`. A schema-1
/// `RefundFailed` names neither payee nor currency: without the order's facts it would post
/// nothing and the customer-refunds account would not come back to zero.
#[tokio::test]
async fn the_books_recomputed_with_order_facts_read_back_from_the_log_are_the_same() {
    use chrono::Utc;
    use payledger_domain::ids::RefundId;
    use payledger_domain::journal::Account;
    use payledger_domain::order::{
        OrderEvent, OutcomeSource, PaymentCaptured, PlaceOrder, RefundFailed, RefundRequested,
    };
    use payledger_domain::provider_failure::{FailureClass, ProviderFailure};
    use payledger_store::{EventMetadata, ExpectedVersion, NewEvent};

    let db = TestDatabase::fresh().await;
    let store = EventStore::new(db.app_pool.clone(), WriterConfig::default());
    let new_event = |event: &OrderEvent| {
        let (event_type, payload) = payledger_domain::codec::encode(event).unwrap();
        NewEvent::new(event_type, payload, EventMetadata::default())
    };
    let payee = PayeeId::parse("payee_1").unwrap();
    let orders = 6;
    // Every order placed first, so that later pages need facts of orders placed pages before.
    for n in 0..orders {
        let placed = OrderEvent::OrderPlaced(PlaceOrder {
            order_id: OrderId::parse(format!("order-facts-{n}")).unwrap(),
            amount: Money::new(10_000, Currency::USD).unwrap(),
            customer_id: CustomerId::parse("cust_1").unwrap(),
            payee_id: payee.clone(),
            order_name: "Pilates".into(),
            provider: "toss".into(),
            service_starts_at: None,
            placed_at: Utc::now(),
        });
        store
            .append(
                &format!("order-order-facts-{n}"),
                ExpectedVersion::NoStream,
                vec![new_event(&placed)],
                false,
            )
            .await
            .unwrap();
    }
    for n in 0..orders {
        let events = [
            OrderEvent::PaymentCaptured(PaymentCaptured {
                payment_key: PaymentKey::parse(format!("pk_facts_{n}")).unwrap(),
                amount_minor: 10_000,
                currency: Currency::USD,
                payee_id: payee.clone(),
                approved_at: Utc::now(),
                method: None,
                source: OutcomeSource::Request,
            }),
            OrderEvent::RefundRequested(RefundRequested {
                refund_id: RefundId::parse("r1").unwrap(),
                amount_minor: 1_000 + n,
                currency: Currency::USD,
                reason: "x".into(),
                idempotency_key: "k".into(),
                at: Utc::now(),
                customer_id: None,
                reason_digest: None,
            }),
            OrderEvent::RefundFailed(RefundFailed {
                refund_id: RefundId::parse("r1").unwrap(),
                amount_minor: 1_000 + n,
                currency: None,
                failure: ProviderFailure {
                    class: FailureClass::ProviderError,
                    provider_code: "PROVIDER_ERROR".into(),
                    provider_message: "down".into(),
                },
                source: OutcomeSource::Request,
                at: Utc::now(),
            }),
        ];
        store
            .append(
                &format!("order-order-facts-{n}"),
                ExpectedVersion::Exact(1),
                events.iter().map(new_event).collect(),
                false,
            )
            .await
            .unwrap();
    }
    let head = payledger_store::head_position(&db.app_pool).await.unwrap();
    let recompute = |page_events, max_cached_orders| {
        payledger_read_models::journal::recompute_paged(
            &db.app_pool,
            head,
            head,
            page_events,
            max_cached_orders,
            |_, _| {},
        )
    };
    let (kept, _) = recompute(10_000, usize::MAX).await.unwrap();
    // Each failed refund was undone: the refunds account is back to zero, having moved.
    let refunds = kept
        .rows
        .iter()
        .find(|((account, _), _)| *account == Account::CustomerRefunds)
        .map(|(_, totals)| *totals)
        .unwrap();
    assert!(refunds.0 > 0 && refunds.0 == refunds.1, "{refunds:?}");
    for (page_events, max_cached_orders) in [(2, 0), (3, 1), (4, 2)] {
        let (read_back, _) = recompute(page_events, max_cached_orders).await.unwrap();
        assert_eq!(
            read_back, kept,
            "pages of {page_events}, {max_cached_orders} cached"
        );
    }
}
