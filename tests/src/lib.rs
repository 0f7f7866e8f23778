//! Helpers shared by the end-to-end tests: a live payledger on a throw-away database.
//!
//! `spawn_app` builds the service exactly as `payledger serve` does (`Application::build`) on
//! port 0, against a fresh database and its own sandbox provider, and drives it over HTTP.

use payledger::startup::{Application, ProviderSettings, Settings};
use payledger_app::api_keys::{self, Role};
use payledger_sandbox::{RunningSandbox, SandboxConfig};
use payledger_testdb::TestDatabase;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub mod server_log;

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub db: TestDatabase,
    pub sandbox: RunningSandbox,
    pub app_pool: sqlx::PgPool,
    /// API keys created before the server starts, one per role (`client:e2e`, `client:other`,
    /// `support:help`, `auditor:books`, `admin:ops`). `post` and `get` send `client_key`
    /// (`auditor_key` for the raw log); `post_as` / `get_as` send the one given.
    pub client_key: String,
    pub other_client_key: String,
    pub support_key: String,
    pub auditor_key: String,
    pub admin_key: String,
}

/// Where a test's server keeps its checkpoint key and export file: one directory per test
/// database, because the default directory is shared.
pub fn checkpoint_directory(database_name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("payledger-tests-audit-{database_name}"))
}

impl Drop for TestApp {
    /// Removes the test's checkpoint directory: a full run makes about two hundred of them.
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(checkpoint_directory(&self.db.name));
    }
}

/// The keys `spawn_app` creates, in the order of [`TestApp`]'s key fields.
pub const TEST_KEYS: &[(&str, Role)] = &[
    ("e2e", Role::Client),
    ("other", Role::Client),
    ("help", Role::Support),
    ("books", Role::Auditor),
    ("ops", Role::Admin),
];

pub struct SpawnOptions {
    /// The provider call timeout (short, so timeout-after-charge tests stay fast).
    pub gateway_timeout_ms: u64,
    /// Reconciler interval; 0 turns it off so tests drive it by hand.
    pub reconcile_interval_ms: u64,
    /// Webhook secrets, notification endpoints and retry pacing (none configured by default).
    pub webhooks: payledger_webhook_relay::WebhookSettings,
    /// How long the provider circuit stays open (short in tests).
    pub circuit_open_ms: u64,
    /// How old an unknown outcome must be before the reconciler asks the provider.
    pub reconcile_after_ms: u64,
    /// `Some(start)`: `serve --test-clock` with a scenario clock starting there, moved through
    /// `/v1/admin/test-clock`; background jobs then run only when the clock moves.
    pub test_clock_start: Option<chrono::DateTime<chrono::Utc>>,
    /// The sandbox provider's clock (its payments' times, its settlement report's today);
    /// the system clock when `None`.
    pub sandbox_clock: Option<payledger_sandbox::SandboxClock>,
    /// `PAYLEDGER_RECONCILIATION_INTERVAL_S`: 0 (off) unless a test imports settlements on a
    /// schedule or on moves of the scenario clock.
    pub reconciliation_interval_s: u64,
    /// `PAYLEDGER_PADDLE_PRICE_MAP`: the sandbox's catalogue by default.
    pub paddle_price_map: &'static str,
    /// `PAYLEDGER_DATABASE_CALL_TIMEOUT_MS`: the longest read request and database call.
    pub database_call_timeout_ms: u64,
}

impl Default for SpawnOptions {
    fn default() -> Self {
        SpawnOptions {
            gateway_timeout_ms: 2_000,
            reconcile_interval_ms: 0,
            webhooks: payledger_webhook_relay::WebhookSettings::default(),
            circuit_open_ms: 500,
            reconcile_after_ms: 0,
            test_clock_start: None,
            sandbox_clock: None,
            reconciliation_interval_s: 0,
            paddle_price_map: "pri_sandbox_basic_monthly=plan:basic,\
                pri_sandbox_pro_monthly=plan:premium,pri_sandbox_credits_100=credits:100",
            database_call_timeout_ms:
                payledger_store::call_bounds::DEFAULT_DATABASE_CALL_TIMEOUT_MS,
        }
    }
}

/// How long the tests' client reuses an idle connection: well under the server's keep-alive
/// (actix's default, 5 s), so the server never closes one the client is about to send on.
pub const KEEP_ALIVE_REUSE_S: u64 = 2;

pub async fn spawn_app() -> TestApp {
    spawn_app_with(SpawnOptions::default()).await
}

pub async fn spawn_app_with(options: SpawnOptions) -> TestApp {
    server_log::capture();
    let db = TestDatabase::fresh().await;
    // On the scenario clock the test's sandbox follows the application's clock, as the sandbox
    // `serve --test-clock` embeds does: a Toss payment expires when the scenario's time says so.
    // The clock exists once the application is built; until then the scenario's start.
    let scenario_clock: Arc<std::sync::OnceLock<Arc<dyn payledger_app::clock::Clock>>> =
        Arc::new(std::sync::OnceLock::new());
    let sandbox_clock = match (&options.sandbox_clock, options.test_clock_start) {
        (Some(clock), _) => Some(clock.clone()),
        (None, Some(start)) => {
            let follow = scenario_clock.clone();
            let clock: payledger_sandbox::SandboxClock =
                Arc::new(move || follow.get().map_or(start, |clock| clock.now()));
            Some(clock)
        }
        (None, None) => None,
    };
    let sandbox = payledger_sandbox::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        SandboxConfig {
            timeout_after_charge_delay_ms: options.gateway_timeout_ms * 3,
            clock: sandbox_clock,
            ..SandboxConfig::default()
        },
    )
    .await
    .expect("start the sandbox");
    let mut settings = Settings::embedded(SocketAddr::from(([127, 0, 0, 1], 0)), data_dir());
    settings.database_url = Some(db.app_url.clone());
    settings.migrate_database_url = Some(db.owner_url.clone());
    settings.provider = ProviderSettings::Sandbox {
        base_url: sandbox.base_url(),
    };
    settings.db_max_connections = 16;
    settings.http_workers = 2;
    settings.reconcile_interval_ms = options.reconcile_interval_ms;
    settings.billing.paddle_price_map =
        payledger_domain::provider_billed::ProviderPriceMap::parse(options.paddle_price_map)
            .expect("a valid Paddle price map");
    settings.webhooks = options.webhooks;
    settings.reconcile_after_ms = options.reconcile_after_ms;
    // Tests import settlements when they mean to.
    settings.reconciliation.interval_s = options.reconciliation_interval_s;
    settings.runner.poll_interval_ms = 100;
    settings.gateway_timeout_ms = Some(options.gateway_timeout_ms);
    settings.gateway_circuit_open_ms = Some(options.circuit_open_ms);
    settings.checkpoints.directory = Some(checkpoint_directory(&db.name));
    settings.database_call_timeout_ms = options.database_call_timeout_ms;
    if let Some(start) = options.test_clock_start {
        settings.test_clock = true;
        settings.test_clock_start = Some(start);
        // Moves of the clock run the jobs; their wall-clock schedules would only add noise.
        settings.settlement_interval_ms = 0;
        settings.billing.scheduler_interval_ms = 0;
    }
    // Created before the server starts, so it finds keys and creates none of its own; seeding
    // records no events, so positions in tests start at 1 as before.
    let keys: Vec<String> = api_keys::seed_if_empty(&db.app_pool, TEST_KEYS, "system:tests")
        .await
        .expect("create the test API keys")
        .into_iter()
        .map(|k| k.secret.expose().to_string())
        .collect();
    let app = Application::build(settings)
        .await
        .expect("build the application");
    let _ = scenario_clock.set(app.state.payments.clock().clone());
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let app_pool = db.app_pool.clone();
    TestApp {
        address,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            // The server closes a connection idle for 5 s (actix's keep-alive); a request sent
            // on a pooled connection just as it closes fails with `IncompleteMessage` (seen in
            // loaded full runs, while a browser test kept the client idle). Never reuse one that
            // old.
            .pool_idle_timeout(Duration::from_secs(KEEP_ALIVE_REUSE_S))
            .build()
            .expect("build the HTTP client"),
        db,
        sandbox,
        app_pool,
        client_key: keys[0].clone(),
        other_client_key: keys[1].clone(),
        support_key: keys[2].clone(),
        auditor_key: keys[3].clone(),
        admin_key: keys[4].clone(),
    }
}

/// The data directory the test servers are given (their privacy master key lives there): a
/// command-line operation run beside a test server passes the same one.
pub fn data_dir() -> std::path::PathBuf {
    std::env::temp_dir().join("payledger-tests-unused")
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// The key a test sends by default: the auditor's for the raw log, else the client's.
    pub fn default_key(&self, path: &str) -> &str {
        if path.starts_with("/v1/streams/") || path.starts_with("/v1/events") {
            &self.auditor_key
        } else {
            &self.client_key
        }
    }

    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.post_as(self.default_key(path), path, body).await
    }

    /// POST as the holder of `key`.
    pub async fn post_as(&self, key: &str, path: &str, body: &Value) -> reqwest::Response {
        self.send_as(key, self.client.post(self.url(path)).json(body))
            .await
    }

    /// DELETE as the holder of `key`.
    pub async fn delete_as(&self, key: &str, path: &str) -> reqwest::Response {
        self.send_as(key, self.client.delete(self.url(path))).await
    }

    /// GET as the holder of `key`.
    pub async fn get_as(&self, key: &str, path: &str) -> reqwest::Response {
        self.send_as(key, self.client.get(self.url(path))).await
    }

    /// Sends `request` with `key` as its bearer token.
    async fn send_as(&self, key: &str, request: reqwest::RequestBuilder) -> reqwest::Response {
        request
            .bearer_auth(key)
            .send()
            .await
            .expect("send the request")
    }

    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(self.default_key(path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("send the request")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.get_as(self.default_key(path), path).await
    }

    /// Places an order of `amount` KRW and returns its id.
    pub async fn place_order(&self, order_id: &str, amount: i64) -> Value {
        let response = self
            .post(
                "/v1/orders",
                &json!({
                    "orderId": order_id,
                    "amount": amount,
                    "currency": "KRW",
                    "customerId": "cust_1",
                    "payeeId": "payee_1",
                    "orderName": "Yoga class"
                }),
            )
            .await;
        assert_eq!(response.status().as_u16(), 201, "place order");
        response.json().await.expect("order body")
    }

    pub async fn confirm(
        &self,
        order_id: &str,
        payment_key: &str,
        amount: i64,
    ) -> reqwest::Response {
        self.post(
            "/v1/payments/confirm",
            &json!({"paymentKey": payment_key, "orderId": order_id, "amount": amount}),
        )
        .await
    }

    /// The store's last position: proves whether a request stored anything.
    pub async fn head_position(&self) -> i64 {
        payledger_store::head_position(&self.app_pool)
            .await
            .expect("read the head position")
    }

    /// Waits until every projection has caught up with the store.
    pub async fn wait_for_projections(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let statuses = payledger_projector::status(&self.app_pool)
                .await
                .expect("projection status");
            if !statuses.is_empty() && statuses.iter().all(|s| s.lag_events == 0) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "projections did not catch up: {statuses:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The `eventType` of each item of a stream's `events` or a timeline's `entries`, in log order.
pub fn event_types(items: &Value) -> Vec<String> {
    items
        .as_array()
        .expect("a list of events")
        .iter()
        .map(|e| e["eventType"].as_str().expect("an eventType").to_string())
        .collect()
}

/// The connectors the end-to-end tests pay through, so that a money guarantee is checked for
/// each provider's orders (both against the test's own sandbox).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestProvider {
    Toss,
    Stripe,
}

impl TestProvider {
    pub const ALL: [TestProvider; 2] = [TestProvider::Toss, TestProvider::Stripe];

    pub fn name(self) -> &'static str {
        match self {
            TestProvider::Toss => "toss",
            TestProvider::Stripe => "stripe",
        }
    }

    /// A payment key the provider's sandbox approves: Toss takes any key, Stripe a test
    /// PaymentMethod (`tag` keeps Toss keys apart per test).
    pub fn approved_payment_key(self, tag: &str) -> String {
        match self {
            TestProvider::Toss => format!("pk_{tag}"),
            TestProvider::Stripe => "pm_card_visa".to_string(),
        }
    }
}

impl TestApp {
    /// Places a KRW order paid through `provider`.
    pub async fn place_order_with(
        &self,
        provider: TestProvider,
        order_id: &str,
        amount: i64,
    ) -> Value {
        let response = self
            .post(
                "/v1/orders",
                &json!({
                    "orderId": order_id,
                    "amount": amount,
                    "currency": "KRW",
                    "customerId": "cust_1",
                    "payeeId": "payee_1",
                    "orderName": "Yoga class",
                    "provider": provider.name(),
                }),
            )
            .await;
        assert_eq!(
            response.status().as_u16(),
            201,
            "place a {provider:?} order"
        );
        response.json().await.expect("the order")
    }

    /// How many times the provider's sandbox charged the order.
    pub fn charges_at_provider(&self, provider: TestProvider, order_id: &str) -> u64 {
        match provider {
            TestProvider::Toss => self
                .sandbox
                .stats()
                .charges_by_order_id
                .get(order_id)
                .copied()
                .unwrap_or(0),
            TestProvider::Stripe => self.sandbox.stripe_stats()["chargesByOrderId"][order_id]
                .as_u64()
                .unwrap_or(0),
        }
    }

    /// What the provider's sandbox has refunded of the payment it knows by `payment_key` (the
    /// order's `paymentKey` once captured).
    pub async fn refunded_at_provider(&self, provider: TestProvider, payment_key: &str) -> i64 {
        match provider {
            TestProvider::Toss => self
                .sandbox
                .stats()
                .canceled_amount_by_payment_key
                .get(payment_key)
                .copied()
                .unwrap_or(0),
            TestProvider::Stripe => {
                let intent: Value = self
                    .client
                    .get(format!(
                        "{}/v1/payment_intents/{payment_key}?expand[]=latest_charge",
                        self.sandbox.stripe_base_url()
                    ))
                    .bearer_auth(payledger_sandbox::DEFAULT_STRIPE_SECRET_KEY)
                    .send()
                    .await
                    .expect("ask the Stripe sandbox")
                    .json()
                    .await
                    .expect("a PaymentIntent");
                intent["latest_charge"]["amount_refunded"]
                    .as_i64()
                    .expect("the charge's refunded amount")
            }
        }
    }
}

/// The trial balance at the log's head (the journal caught up with everything recorded),
/// checked to balance.
pub async fn balanced_trial_balance(app: &TestApp) -> Value {
    let head = app.head_position().await;
    let trial: Value = app
        .get_as(
            &app.auditor_key,
            &format!("/v1/journal/trial-balance?at={head}"),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(trial["balanced"], true, "{trial}");
    trial
}

/// The account's net (debit − credit) in USD in the trial balance.
pub fn account_balance(trial: &Value, account: &str) -> i64 {
    trial["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|row| row["account"] == account && row["currency"] == "USD")
        .map(|row| row["debit"].as_i64().unwrap() - row["credit"].as_i64().unwrap())
        .sum()
}
