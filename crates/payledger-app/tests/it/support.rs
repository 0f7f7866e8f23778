//! What the billing tests run on: a fresh database, a real sandbox provider, a clock moved by
//! hand, the subscriptions read model kept current by the real projection runner, and services
//! built the way `serve` builds them. `Harness::services()` is one "process": calling it twice
//! gives two processes sharing only the database and the provider.

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use payledger_app::billing_key_cipher::{generate_key, BillingKeyCipher};
use payledger_app::clock::{Clock, ManualClock};
use payledger_app::context::RequestContext;
use payledger_app::executor::{AggregateCache, Executor};
use payledger_app::payments::{Payments, PaymentsConfig};
use payledger_app::subscriptions::{
    BillingIndex, RunDueReport, StartSubscriptionInput, Subscriptions, SubscriptionsConfig,
};
use payledger_connector_toss::{TossConfig, TossGateway};
use payledger_domain::billing::{
    BillingInterval, BillingKeyId, CreditOperationId, PlanId, SubscriptionId,
};
use payledger_domain::customer::{self, Customer};
use payledger_domain::ids::CustomerId;
use payledger_domain::money::{Currency, Money};
use payledger_gateway::circuit::CircuitConfig;
use payledger_gateway::PaymentGateway;
use payledger_projector::{Projection, RunnerConfig, Wakeup};
use payledger_sandbox::{RunningSandbox, SandboxConfig};
use payledger_store::{EventStore, RecordedEvent, WriterConfig};
use payledger_testdb::TestDatabase;
use sqlx::postgres::PgConnectOptions;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Midnight, 31 January 2026: a month-end anchor makes February's clamping visible.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 31, 0, 0, 0).unwrap()
}

pub fn context() -> RequestContext {
    RequestContext::new("client:test", None)
}

pub fn customer(id: &str) -> CustomerId {
    CustomerId::parse(id).unwrap()
}

/// The read models as the scheduler's index, waiting for the projection to catch up with the
/// log before each question (in `serve` the lag is a second at most; tests want determinism).
pub struct ReadModelIndex {
    pool: PgPool,
    positions: Vec<watch::Receiver<i64>>,
}

impl ReadModelIndex {
    pub async fn caught_up(&self) {
        let head = payledger_store::head_position(&self.pool).await.unwrap();
        for positions in &self.positions {
            let mut positions = positions.clone();
            tokio::time::timeout(
                Duration::from_secs(20),
                positions.wait_for(|position| *position >= head),
            )
            .await
            .expect("the projection caught up within 20 s")
            .expect("the projection runner is alive");
        }
    }
}

#[async_trait]
impl BillingIndex for ReadModelIndex {
    async fn due_subscriptions(
        &self,
        as_of: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<SubscriptionId>, String> {
        self.caught_up().await;
        let ids = payledger_read_models::subscriptions::due_subscriptions(&self.pool, as_of, limit)
            .await
            .map_err(|e| e.to_string())?;
        Ok(ids
            .into_iter()
            .filter_map(|id| SubscriptionId::parse(id).ok())
            .collect())
    }

    async fn purchases_with_unapplied_refunds(
        &self,
        limit: i64,
    ) -> Result<Vec<(CustomerId, CreditOperationId)>, String> {
        self.caught_up().await;
        let rows = payledger_read_models::subscriptions::purchases_with_unapplied_refunds(
            &self.pool, limit,
        )
        .await
        .map_err(|e| e.to_string())?;
        Ok(rows
            .into_iter()
            .filter_map(|(c, p)| {
                Some((
                    CustomerId::parse(c).ok()?,
                    CreditOperationId::parse(p).ok()?,
                ))
            })
            .collect())
    }
}

pub struct Harness {
    pub db: TestDatabase,
    pub sandbox: RunningSandbox,
    pub clock: Arc<ManualClock>,
    pub cipher: Arc<BillingKeyCipher>,
    pub store: EventStore,
    pub index: ReadModelIndex,
    /// How long one provider call may take (short: tests wait for timeouts on purpose).
    pub gateway_timeout_ms: u64,
    runners: Vec<JoinHandle<()>>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        for runner in &self.runners {
            runner.abort();
        }
    }
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::start_with(SandboxConfig::default()).await
    }

    pub async fn start_with(sandbox_config: SandboxConfig) -> Harness {
        let db = TestDatabase::fresh().await;
        let sandbox = payledger_sandbox::start("127.0.0.1:0".parse().unwrap(), sandbox_config)
            .await
            .expect("the sandbox starts");
        let connect: PgConnectOptions = db.app_url.parse().expect("the app URL parses");
        let mut positions = Vec::new();
        let mut runners = Vec::new();
        let projections: Vec<Arc<dyn Projection>> = vec![
            Arc::new(payledger_read_models::orders::OrdersProjection::default()),
            Arc::new(payledger_read_models::subscriptions::SubscriptionsProjection),
        ];
        for projection in projections {
            payledger_projector::ensure_live(&db.app_pool, projection.as_ref())
                .await
                .expect("the read model's tables exist");
            let (sender, receiver) = watch::channel(0);
            positions.push(receiver);
            runners.push(tokio::spawn(payledger_projector::run_projection(
                connect.clone(),
                projection,
                RunnerConfig {
                    poll_interval_ms: 10,
                    ..RunnerConfig::default()
                },
                Wakeup::default(),
                Arc::new(sender),
            )));
        }
        Harness {
            store: EventStore::new(db.app_pool.clone(), WriterConfig::default()),
            index: ReadModelIndex {
                pool: db.app_pool.clone(),
                positions,
            },
            clock: Arc::new(ManualClock::new(t0())),
            cipher: Arc::new(BillingKeyCipher::new(&generate_key())),
            gateway_timeout_ms: 2_000,
            db,
            sandbox,
            runners,
        }
    }

    /// A provider client of its own. One attempt per call and a circuit that never opens, so the
    /// sandbox's counters show exactly what payledger asked for.
    pub fn gateway(&self) -> Arc<dyn PaymentGateway> {
        let mut config = TossConfig::sandbox(self.sandbox.base_url());
        config.transport.max_attempts = 1;
        config.transport.timeout_ms = self.gateway_timeout_ms;
        config.transport.lookup_timeout_ms = self.gateway_timeout_ms;
        config.transport.circuit = CircuitConfig {
            failure_threshold: 1_000,
            open_ms: 1,
        };
        Arc::new(TossGateway::new(config).expect("the sandbox configuration is valid"))
    }

    /// One process's billing service: its own executor, caches and provider client.
    pub fn services(&self) -> Subscriptions {
        Subscriptions::new(
            Arc::new(Executor::new(self.store.clone())),
            self.gateway(),
            self.cipher.clone(),
            self.clock.clone(),
            SubscriptionsConfig::default(),
        )
    }

    pub fn services_with(&self, config: SubscriptionsConfig) -> Subscriptions {
        Subscriptions::new(
            Arc::new(Executor::new(self.store.clone())),
            self.gateway(),
            self.cipher.clone(),
            self.clock.clone(),
            config,
        )
    }

    /// One process's billing service talking through `gateway` (whose counters a test reads).
    pub fn services_on(&self, gateway: Arc<dyn PaymentGateway>) -> Subscriptions {
        Subscriptions::new(
            Arc::new(Executor::new(self.store.clone())),
            gateway,
            self.cipher.clone(),
            self.clock.clone(),
            SubscriptionsConfig::default(),
        )
    }

    pub fn payments(&self) -> Payments {
        Payments::new(
            Arc::new(Executor::new(self.store.clone())),
            self.gateway(),
            self.clock.clone(),
            PaymentsConfig::default(),
        )
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Moves the clock to `at` and runs one scheduler pass there.
    pub async fn run_due_at(&self, services: &Subscriptions, at: DateTime<Utc>) -> RunDueReport {
        self.clock.set(at);
        services
            .run_due(&self.index, at)
            .await
            .expect("the scheduler pass runs")
    }

    /// Registers a billing key issued from `auth_key` (whose `sandbox_` prefix scripts its
    /// charges) and starts a monthly 9 900 KRW "standard" subscription on it, anchored now.
    pub async fn subscribe(
        &self,
        services: &Subscriptions,
        customer_id: &str,
        subscription_id: &str,
        auth_key: &str,
    ) -> (SubscriptionId, BillingKeyId) {
        let key = services
            .register_billing_key(&customer(customer_id), auth_key, &context())
            .await
            .expect("the billing key is issued");
        let subscription_id = SubscriptionId::parse(subscription_id).unwrap();
        services
            .start(
                StartSubscriptionInput {
                    subscription_id: Some(subscription_id.clone()),
                    customer_id: customer(customer_id),
                    plan_id: PlanId::parse("standard").unwrap(),
                    amount: Money::new(9_900, Currency::KRW).unwrap(),
                    interval: BillingInterval::monthly(),
                    billing_key_id: key.billing_key_id.clone(),
                    anchor: None,
                    order_name: Some("Standard membership".into()),
                },
                &context(),
            )
            .await
            .expect("the subscription starts");
        (subscription_id, key.billing_key_id)
    }

    /// The provider's billing key behind `billing_key_id`, decrypted the way a charge does: tests
    /// need it to script the sandbox and to prove it never appears in clear anywhere.
    pub async fn provider_key(&self, customer_id: &str, billing_key_id: &BillingKeyId) -> String {
        let executor = Executor::new(self.store.clone());
        let (_, state) = executor
            .load(
                &AggregateCache::<Customer>::new(1),
                &customer::stream_id(&customer(customer_id)),
            )
            .await
            .unwrap();
        let key = &state.billing_keys[billing_key_id];
        self.cipher
            .decrypt(&key.secret, &customer(customer_id), billing_key_id)
            .expect("the key decrypts")
            .expose()
            .to_string()
    }

    pub async fn events(&self, stream_id: &str) -> Vec<RecordedEvent> {
        self.store.read_whole_stream(stream_id).await.unwrap()
    }

    pub async fn event_types(&self, stream_id: &str) -> Vec<String> {
        self.events(stream_id)
            .await
            .into_iter()
            .map(|e| e.event_type)
            .collect()
    }

    /// Provider attempts and charges of one cycle's order id.
    pub fn provider_counts(&self, order_id: &str) -> (u64, u64) {
        let stats = self.sandbox.stats();
        (
            stats
                .attempts_by_order_id
                .get(order_id)
                .copied()
                .unwrap_or(0),
            stats
                .charges_by_order_id
                .get(order_id)
                .copied()
                .unwrap_or(0),
        )
    }
}
