//! The sandbox driven over HTTP, as any Toss client would.

mod stripe;

use payledger_sandbox::{start, RunningSandbox, SandboxConfig, SandboxStats, DEFAULT_SECRET_KEY};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

struct Harness {
    sandbox: RunningSandbox,
    http: reqwest::Client,
}

impl Harness {
    async fn start(config: SandboxConfig) -> Harness {
        let sandbox = start("127.0.0.1:0".parse().unwrap(), config).await.unwrap();
        Harness {
            sandbox,
            http: reqwest::Client::new(),
        }
    }

    async fn default() -> Harness {
        Harness::start(SandboxConfig::default()).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sandbox.base_url())
    }

    async fn post(
        &self,
        path: &str,
        idempotency_key: Option<&str>,
        body: Value,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .post(self.url(path))
            .basic_auth(DEFAULT_SECRET_KEY, Some(""))
            .json(&body);
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await.unwrap();
        (response.status(), response.json().await.unwrap())
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .get(self.url(path))
            .basic_auth(DEFAULT_SECRET_KEY, Some(""))
            .send()
            .await
            .unwrap();
        (response.status(), response.json().await.unwrap())
    }

    async fn stats(&self) -> SandboxStats {
        let (status, body) = self.get("/sandbox/stats").await;
        assert_eq!(status, StatusCode::OK);
        serde_json::from_value(body).unwrap()
    }
}

fn confirm_body(payment_key: &str, order_id: &str, amount: i64) -> Value {
    json!({ "paymentKey": payment_key, "orderId": order_id, "amount": amount })
}

#[tokio::test]
async fn every_route_requires_the_secret_key() {
    let harness = Harness::default().await;
    for credentials in [None, Some("live_sk_wrong")] {
        let mut request = harness
            .http
            .post(harness.url("/v1/payments/confirm"))
            .json(&confirm_body("pk_auth", "order-auth-1", 1000));
        if let Some(key) = credentials {
            request = request.basic_auth(key, Some(""));
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "UNAUTHORIZED_KEY");
    }
    let stats = harness
        .http
        .get(harness.url("/sandbox/stats"))
        .send()
        .await
        .unwrap();
    assert_eq!(stats.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(harness.sandbox.stats().total_charges, 0);
}

#[tokio::test]
async fn a_confirmed_payment_can_be_read_back_by_key_and_by_order() {
    let harness = Harness::default().await;
    let (status, payment) = harness
        .post(
            "/v1/payments/confirm",
            None,
            confirm_body("pk_read_1", "order-read-1", 15_000),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(payment["status"], "DONE");
    assert_eq!(payment["totalAmount"], 15_000);
    assert_eq!(payment["balanceAmount"], 15_000);
    assert_eq!(payment["currency"], "KRW");
    assert_eq!(payment["cancels"], Value::Null);
    let number = payment["card"]["number"].as_str().unwrap();
    assert!(
        number.contains("****"),
        "card number must be masked: {number}"
    );

    let (status, by_key) = harness.get("/v1/payments/pk_read_1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(by_key, payment);
    let (status, by_order) = harness.get("/v1/payments/orders/order-read-1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(by_order, payment);

    let (status, missing) = harness.get("/v1/payments/orders/order-never").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(missing["code"], "NOT_FOUND_PAYMENT");
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_answer_and_rejects_a_different_body() {
    let harness = Harness::default().await;
    let body = confirm_body("pk_idem_1", "order-idem-1", 5_000);
    let (first_status, first) = harness
        .post("/v1/payments/confirm", Some("key-1"), body.clone())
        .await;
    let (second_status, second) = harness
        .post("/v1/payments/confirm", Some("key-1"), body)
        .await;
    assert_eq!(first_status, StatusCode::OK);
    assert_eq!(second_status, StatusCode::OK);
    assert_eq!(first, second);

    let (status, conflict) = harness
        .post(
            "/v1/payments/confirm",
            Some("key-1"),
            confirm_body("pk_idem_1", "order-idem-1", 5_001),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(conflict["code"], "IDEMPOTENT_REQUEST_MISMATCH");

    // Without the key, a second confirm of the same order is refused, not charged.
    let (status, refused) = harness
        .post(
            "/v1/payments/confirm",
            None,
            confirm_body("pk_idem_2", "order-idem-1", 5_000),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(refused["code"], "ALREADY_PROCESSED_PAYMENT");

    let stats = harness.stats().await;
    assert_eq!(stats.charges_by_order_id.get("order-idem-1"), Some(&1));
    assert_eq!(stats.total_charges, 1);
}

#[tokio::test]
async fn an_answer_held_back_after_charging_is_in_progress_for_replays() {
    let harness = Harness::start(SandboxConfig {
        timeout_after_charge_delay_ms: 5_000,
        ..SandboxConfig::default()
    })
    .await;
    let body = confirm_body("sandbox_timeout_after_charge_1", "order-late-1", 9_900);
    let impatient = harness
        .http
        .post(harness.url("/v1/payments/confirm"))
        .basic_auth(DEFAULT_SECRET_KEY, Some(""))
        .header("Idempotency-Key", "late-1")
        .timeout(Duration::from_millis(200))
        .json(&body)
        .send()
        .await;
    assert!(impatient.unwrap_err().is_timeout());

    assert_eq!(
        harness
            .sandbox
            .stats()
            .charges_by_order_id
            .get("order-late-1"),
        Some(&1)
    );
    let (status, busy) = harness
        .post("/v1/payments/confirm", Some("late-1"), body)
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(busy["code"], "IDEMPOTENT_REQUEST_PROCESSING");
    let (status, payment) = harness.get("/v1/payments/orders/order-late-1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(payment["status"], "DONE");
}

#[tokio::test]
async fn an_outage_fails_provider_routes_until_it_ends() {
    let harness = Harness::default().await;
    let (status, _) = harness
        .post("/sandbox/outage", None, json!({ "durationMs": 60_000 }))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, failed) = harness
        .post(
            "/v1/payments/confirm",
            None,
            confirm_body("pk_out_1", "order-out-1", 1_000),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(failed["code"], "FAILED_INTERNAL_SYSTEM_PROCESSING");
    assert_eq!(
        harness.get("/v1/payments/pk_out_1").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );

    harness
        .post("/sandbox/outage", None, json!({ "durationMs": 0 }))
        .await;
    let (status, _) = harness
        .post(
            "/v1/payments/confirm",
            None,
            confirm_body("pk_out_1", "order-out-1", 1_000),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        harness
            .stats()
            .await
            .attempts_by_order_id
            .get("order-out-1"),
        Some(&1)
    );
}

#[tokio::test]
async fn a_billing_key_inherits_its_auth_key_behaviour_until_told_otherwise() {
    let harness = Harness::default().await;
    let (status, issued) = harness
        .post(
            "/v1/billing/authorizations/issue",
            None,
            json!({ "authKey": "sandbox_insufficient_auth_1", "customerKey": "customer-1" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let billing_key = issued["billingKey"].as_str().unwrap().to_owned();
    assert_eq!(issued["customerKey"], "customer-1");
    assert!(issued["card"]["number"].as_str().unwrap().contains("****"));

    let charge = |order_id: &str| json!({ "customerKey": "customer-1", "amount": 9_900, "orderId": order_id, "orderName": "plan" });
    let path = format!("/v1/billing/{billing_key}");
    let (status, declined) = harness.post(&path, None, charge("sub-1-cycle-1-a1")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(declined["code"], "REJECT_CARD_COMPANY");

    let (status, _) = harness
        .post(
            &format!("/sandbox/billing-keys/{billing_key}/behaviour"),
            None,
            json!({ "behaviour": "approve" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, paid) = harness.post(&path, None, charge("sub-1-cycle-1-a1")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(paid["status"], "DONE");
    assert_eq!(paid["type"], "BILLING");

    let (status, wrong_customer) = harness
        .post(
            &path,
            None,
            json!({ "customerKey": "customer-2", "amount": 1, "orderId": "sub-1-cycle-2", "orderName": "plan" }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(wrong_customer["code"], "NOT_MATCHES_CUSTOMER_KEY");

    let (status, unknown) = harness
        .post("/v1/billing/sbx_bk_nope", None, charge("sub-9-cycle-1"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(unknown["code"], "NOT_FOUND_BILLING");

    harness.post("/sandbox/reset", None, json!({})).await;
    assert_eq!(harness.stats().await.billing_keys, 0);
}

#[tokio::test]
async fn limits_are_answered_not_ignored() {
    let harness = Harness::start(SandboxConfig {
        max_records: 1,
        max_body_bytes: 256,
        ..SandboxConfig::default()
    })
    .await;
    let huge = json!({ "paymentKey": "x".repeat(1_000), "orderId": "order-big-1", "amount": 1 });
    let (status, too_big) = harness.post("/v1/payments/confirm", None, huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(too_big["code"], "INVALID_REQUEST");

    let (status, _) = harness
        .post(
            "/v1/payments/confirm",
            None,
            confirm_body("pk_cap_1", "order-cap-1", 1),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, full) = harness
        .post(
            "/v1/payments/confirm",
            None,
            confirm_body("pk_cap_2", "order-cap-2", 1),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(full["code"], "SANDBOX_CAPACITY_EXCEEDED");

    let (status, unknown_route) = harness.get("/v1/nothing/here").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(unknown_route["code"], "NOT_FOUND");

    let (status, misspelt) = harness
        .post(
            "/v1/payments/confirm",
            None,
            confirm_body("sandbox_declined_1", "order-typo-1", 1),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(misspelt["code"], "INVALID_REQUEST");
}
