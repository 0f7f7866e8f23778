//! Bookings, claims, settlement and the journal, end to end: a live payledger over HTTP on a real
//! PostgreSQL and the sandbox provider, with a clock the tests move (so a cancellation can be
//! exactly 48 hours before its service) and the process managers running as in `serve`.

mod claims;
mod disputes;
mod policy;
mod privacy;
mod rebuild;
mod settlement;
mod slots;

use chrono::{DateTime, Duration, TimeZone, Utc};
use payledger::startup::{Application, ClockSetting, ProviderSettings, Settings};
use payledger_app::api_keys::{self, Role};
use payledger_app::clock::{Clock, ManualClock};
use payledger_app::payments::Payments;
use payledger_sandbox::{RunningSandbox, SandboxConfig};
use payledger_testdb::TestDatabase;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;

/// The provider (the payee) whose slots the tests book.
pub const THERAPIST: &str = "therapist-kim";

pub struct BookingApp {
    pub address: String,
    pub client: reqwest::Client,
    pub db: TestDatabase,
    pub sandbox: RunningSandbox,
    pub clock: Arc<ManualClock>,
    /// The running service's payments, for what only a process does (the reconciler).
    pub payments: Arc<Payments>,
    pub client_key: String,
    pub admin_key: String,
    pub auditor_key: String,
    pub support_key: String,
}

/// Monday 2026-10-05 09:00 KST: the start of a settlement week in Seoul plus nine hours.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 10, 5, 0, 0, 0).unwrap()
}

pub async fn spawn() -> BookingApp {
    let db = TestDatabase::fresh().await;
    let sandbox = payledger_sandbox::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        SandboxConfig::default(),
    )
    .await
    .expect("start the sandbox");
    let clock = Arc::new(ManualClock::new(t0()));
    let mut settings = Settings::embedded(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        std::env::temp_dir().join("payledger-tests-unused"),
    );
    settings.database_url = Some(db.app_url.clone());
    settings.migrate_database_url = Some(db.owner_url.clone());
    settings.provider = ProviderSettings::Sandbox {
        base_url: sandbox.base_url(),
    };
    settings.db_max_connections = 24;
    settings.http_workers = 2;
    settings.reconcile_interval_ms = 0;
    settings.reconcile_after_ms = 0;
    settings.runner.poll_interval_ms = 100;
    settings.gateway_timeout_ms = Some(5_000);
    settings.clock = Some(ClockSetting(clock.clone()));
    // These tests confirm and pay statements by hand; the automatic passes have their own tests.
    settings.settlement_interval_ms = 0;
    let keys: Vec<String> = api_keys::seed_if_empty(
        &db.app_pool,
        &[
            ("shop", Role::Client),
            ("ops", Role::Admin),
            ("books", Role::Auditor),
            ("help", Role::Support),
        ],
        "system:tests",
    )
    .await
    .expect("create the test API keys")
    .into_iter()
    .map(|k| k.secret.expose().to_string())
    .collect();
    let app = Application::build(settings)
        .await
        .expect("build the application");
    let address = format!("http://127.0.0.1:{}", app.port());
    let payments = app.state.payments.clone();
    tokio::spawn(app.run_until_stopped());
    BookingApp {
        address,
        client: reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            // Under the server's keep-alive: see `payledger_tests::KEEP_ALIVE_REUSE_S`.
            .pool_idle_timeout(std::time::Duration::from_secs(
                payledger_tests::KEEP_ALIVE_REUSE_S,
            ))
            .build()
            .expect("build the HTTP client"),
        db,
        sandbox,
        clock,
        payments,
        client_key: keys[0].clone(),
        admin_key: keys[1].clone(),
        auditor_key: keys[2].clone(),
        support_key: keys[3].clone(),
    }
}

/// An answer: status and JSON body.
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl BookingApp {
    pub async fn post_as(&self, key: &str, path: &str, body: &Value) -> Answer {
        let response = self
            .client
            .post(format!("{}{path}", self.address))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .expect("send the request");
        let status = response.status().as_u16();
        Answer {
            status,
            body: response.json().await.unwrap_or(Value::Null),
        }
    }

    pub async fn get_as(&self, key: &str, path: &str) -> Answer {
        let response = self
            .client
            .get(format!("{}{path}", self.address))
            .bearer_auth(key)
            .send()
            .await
            .expect("send the request");
        let status = response.status().as_u16();
        Answer {
            status,
            body: response.json().await.unwrap_or(Value::Null),
        }
    }

    pub async fn post(&self, path: &str, body: &Value) -> Answer {
        self.post_as(&self.client_key, path, body).await
    }

    pub async fn admin(&self, path: &str, body: &Value) -> Answer {
        self.post_as(&self.admin_key, path, body).await
    }

    /// Places a booking of `amount` KRW with the therapist at `starts_at` for `customer`.
    pub async fn place_booking(
        &self,
        order_id: &str,
        customer: &str,
        amount: i64,
        starts_at: DateTime<Utc>,
    ) {
        let answer = self
            .post(
                "/v1/orders",
                &json!({
                    "orderId": order_id,
                    "amount": amount,
                    "currency": "KRW",
                    "customerId": customer,
                    "payeeId": THERAPIST,
                    "orderName": "Speech therapy session",
                    "serviceStartsAt": starts_at.to_rfc3339(),
                }),
            )
            .await;
        assert_eq!(answer.status, 201, "place {order_id}: {}", answer.body);
    }

    pub async fn confirm(&self, order_id: &str, amount: i64) -> Answer {
        self.post(
            "/v1/payments/confirm",
            &json!({"paymentKey": format!("pk_{order_id}"), "orderId": order_id, "amount": amount}),
        )
        .await
    }

    /// Places and pays a booking.
    pub async fn paid_booking(&self, order_id: &str, amount: i64, starts_at: DateTime<Utc>) {
        self.place_booking(order_id, "parent-lee", amount, starts_at)
            .await;
        let answer = self.confirm(order_id, amount).await;
        assert_eq!(answer.status, 200, "confirm {order_id}: {}", answer.body);
    }

    /// Waits until the process managers and the read models have handled everything, including
    /// what the process managers appended themselves.
    pub async fn settle(&self) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(90);
        let mut quiet_rounds = 0;
        loop {
            let processes = payledger_projector::process::status(&self.db.app_pool)
                .await
                .expect("process status");
            let projections = payledger_projector::status(&self.db.app_pool)
                .await
                .expect("projection status");
            let idle = processes.len() >= 3
                && processes.iter().all(|p| p.lag_events == 0)
                && projections.iter().all(|p| p.lag_events == 0);
            quiet_rounds = if idle { quiet_rounds + 1 } else { 0 };
            if quiet_rounds >= 3 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the process managers did not settle: {processes:?} {projections:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    pub async fn order(&self, order_id: &str) -> Value {
        let answer = self
            .get_as(&self.client_key, &format!("/v1/orders/{order_id}"))
            .await;
        assert_eq!(answer.status, 200, "get {order_id}: {}", answer.body);
        answer.body
    }

    /// The order as the command side knows it (refund reasons included).
    pub async fn order_state(&self, order_id: &str) -> payledger_domain::order::Order {
        let order_id = payledger_domain::ids::OrderId::parse(order_id).unwrap();
        self.payments
            .load_order(&order_id)
            .await
            .expect("load the order")
            .expect("the order exists")
            .state
    }

    pub async fn statements(&self, week: &str) -> Vec<Value> {
        let answer = self
            .get_as(
                &self.support_key,
                &format!("/v1/settlements?payeeId={THERAPIST}&week={week}"),
            )
            .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.body["statements"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub async fn trial_balance(&self) -> Value {
        let answer = self
            .get_as(&self.auditor_key, "/v1/journal/trial-balance")
            .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.body
    }

    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }
}

/// The balance of `account` in KRW from a trial-balance answer.
pub fn balance(trial_balance: &Value, account: &str) -> i64 {
    trial_balance["accounts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["account"] == account && a["currency"] == "KRW")
        .map_or(0, |a| a["balance"].as_i64().unwrap_or(0))
}
