//! The steps the Paddle end-to-end tests are written in, so that each test reads as
//! given / when / then:
//! - given: a payledger whose sandbox Paddle notifies it ([`spawn`]), a member
//!   ([`subscribe`]), an order paid in Paddle's checkout ([`paid_credit_order`]);
//! - when: the customer or Paddle acts through the sandbox's controls and API ([`paddle`],
//!   [`checkout`], [`paddle_refund_asked`], [`paddle_approves`], [`paddle_rejects`],
//!   [`paddle_charges_back`], [`replay_notification`]) or a client asks payledger
//!   ([`ask_refund`]);
//! - then: what the ledger shows (the order, its events and timeline, the subscription, the
//!   wallet, the books), read as it settles ([`order_until`], [`subscription_until`],
//!   [`eventually`], [`deliveries_settled`]).

use payledger_tests::{spawn_app_with, SpawnOptions, TestApp};
use payledger_webhook_relay::{InboundConfig, Provider, RetryPolicy, WebhookSettings};
use payledger_webhooks::WebhookSecret;
use serde_json::{json, Value};
use std::future::Future;
use std::time::Duration;

pub(crate) const SECRET: &str = "pdl_ntfset_e2e_secret";

// ---- given: the application ----

pub(crate) async fn spawn() -> TestApp {
    spawn_with_clock(None).await
}

/// With `test_clock_start`, the application and the sandbox's Paddle run on the scenario clock.
pub(crate) async fn spawn_with_clock(
    test_clock_start: Option<chrono::DateTime<chrono::Utc>>,
) -> TestApp {
    spawn_configured(test_clock_start, None).await
}

/// With another timestamp tolerance for Paddle's notifications than Paddle's 5 s.
pub(crate) async fn spawn_with_tolerance(paddle_tolerance: Duration) -> TestApp {
    spawn_configured(None, Some(paddle_tolerance)).await
}

async fn spawn_configured(
    test_clock_start: Option<chrono::DateTime<chrono::Utc>>,
    paddle_tolerance: Option<Duration>,
) -> TestApp {
    let mut inbound = InboundConfig::default()
        .with_secrets(Provider::Paddle, vec![WebhookSecret::new(SECRET)])
        .unwrap();
    if let Some(tolerance) = paddle_tolerance {
        inbound.paddle_tolerance = tolerance;
    }
    let app = spawn_app_with(SpawnOptions {
        test_clock_start,
        webhooks: WebhookSettings {
            inbound,
            retry: RetryPolicy {
                delay_divisor: 1_000,
            },
            ..WebhookSettings::default()
        },
        ..SpawnOptions::default()
    })
    .await;
    app.sandbox
        .add_paddle_webhook_destination(&format!("{}/v1/webhooks/paddle", app.address), SECRET)
        .unwrap();
    app
}

/// A payledger whose reconciler looks unknown outcomes up every 200 ms, and that never hears
/// Paddle's notifications: Paddle signs them with another secret than payledger knows, so every
/// one is refused and only the reconciler's lookups learn Paddle's decisions.
pub(crate) async fn spawn_with_lost_notifications() -> TestApp {
    let app = spawn_app_with(SpawnOptions {
        reconcile_interval_ms: 200,
        reconcile_after_ms: 0,
        webhooks: WebhookSettings {
            inbound: InboundConfig::default()
                .with_secrets(Provider::Paddle, vec![WebhookSecret::new(SECRET)])
                .unwrap(),
            ..WebhookSettings::default()
        },
        ..SpawnOptions::default()
    })
    .await;
    app.sandbox
        .add_paddle_webhook_destination(
            &format!("{}/v1/webhooks/paddle", app.address),
            "pdl_ntfset_not_the_one_payledger_has",
        )
        .unwrap();
    app
}

/// Points the sandbox's Paddle at payledger again with the secret payledger verifies (after
/// [`spawn_with_lost_notifications`]): what it sends from now on arrives.
pub(crate) fn notifications_arrive_again(app: &TestApp) {
    app.sandbox
        .add_paddle_webhook_destination(&format!("{}/v1/webhooks/paddle", app.address), SECRET)
        .unwrap();
}

// ---- when: the customer or Paddle acts ----

/// What the customer or Paddle itself does, through the sandbox's controls and API: POSTs
/// `body` to `path` and answers the `data` of Paddle's answer.
pub(crate) async fn paddle(app: &TestApp, path: &str, body: Value) -> Value {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", app.sandbox.paddle_base_url()))
        .bearer_auth(payledger_sandbox::DEFAULT_PADDLE_API_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.json::<Value>().await.unwrap()["data"].clone()
}

/// What Paddle's API answers a GET of `path` (the whole answer).
pub(crate) async fn paddle_get(app: &TestApp, path: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{}{path}", app.sandbox.paddle_base_url()))
        .bearer_auth(payledger_sandbox::DEFAULT_PADDLE_API_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A checkout for `custom_data`'s customer; as a client's checkout page would, it names the
/// API client the customer belongs to (`client:e2e`, [`TestApp::client_key`]) unless the caller
/// says otherwise.
pub(crate) async fn checkout(app: &TestApp, price_id: &str, mut custom_data: Value) -> Value {
    if custom_data.get("customerId").is_some() && custom_data.get("apiClient").is_none() {
        custom_data["apiClient"] = json!("e2e");
    }
    paddle(
        app,
        "/sandbox/checkout",
        json!({"items": [{"price_id": price_id, "quantity": 1}],
               "customer_email": "member@example.com", "custom_data": custom_data}),
    )
    .await
}

/// A subscription bought in Paddle's checkout, once the ledger recorded its first period paid.
pub(crate) struct Subscribed {
    /// Paddle's subscription id, payledger's too.
    pub id: String,
    /// The Paddle transaction that paid the first period.
    pub transaction_id: String,
    /// What Paddle's checkout answered.
    pub checkout: Value,
    /// The ledger's subscription once the first period is paid.
    pub started: Value,
}

/// `customer` subscribes to the basic monthly plan in Paddle's checkout; waits until the ledger
/// recorded the first period paid.
pub(crate) async fn subscribe(app: &TestApp, customer: &str) -> Subscribed {
    let checkout = checkout(
        app,
        payledger_sandbox::SANDBOX_PRICE_BASIC_MONTHLY,
        json!({"customerId": customer}),
    )
    .await;
    let id = checkout["subscription"]["id"].as_str().unwrap().to_owned();
    let transaction_id = checkout["transaction"]["id"].as_str().unwrap().to_owned();
    let started = subscription_until(app, &id, "first period paid", |s| s["paidCycles"] == 1).await;
    Subscribed {
        id,
        transaction_id,
        checkout,
        started,
    }
}

/// `cust_1` subscribed through Paddle, and a member for it.
pub(crate) async fn subscribed_member(app: &TestApp) {
    subscribe(app, "cust_1").await;
    assert_eq!(membership(app, "cust_1").await, 1);
}

/// Paddle's billing moves the subscription to its next period: it bills the renewal (or, once
/// a cancel is scheduled, ends the subscription).
pub(crate) async fn paddle_advances_the_period(app: &TestApp, subscription_id: &str) {
    paddle(
        app,
        &format!("/sandbox/subscriptions/{subscription_id}/advance"),
        json!({}),
    )
    .await;
}

/// A credit pack paid through Paddle: an order placed with `provider: paddle`, paid in Paddle's
/// checkout, confirmed by its transaction id (payledger looks the transaction up and judges it).
/// Answers the transaction id.
pub(crate) async fn paid_credit_order(app: &TestApp, order_id: &str) -> String {
    let placed = app
        .post(
            "/v1/orders",
            &json!({"orderId": order_id, "amount": 1000, "currency": "USD",
                    "customerId": "cust_1", "payeeId": "payee_1", "orderName": "100 credits",
                    "provider": "paddle"}),
        )
        .await;
    assert_eq!(placed.status().as_u16(), 201, "a Paddle order is placed");
    let paid = checkout(
        app,
        payledger_sandbox::SANDBOX_PRICE_CREDITS_100,
        json!({"customerId": "cust_1", "orderId": order_id}),
    )
    .await;
    let txn = paid["transaction"]["id"].as_str().unwrap();
    let confirmed = app.confirm(order_id, txn, 1000).await;
    let status = confirmed.status().as_u16();
    let body: Value = confirmed.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "PAID", "{body}");
    txn.to_owned()
}

pub(crate) async fn buy_credits(app: &TestApp, purchase: &str, order: &str) -> (u16, Value) {
    // As an admin (an admin acts for every customer); the owning client may too, see
    // `paddle_membership`.
    let response = app
        .post_as(
            &app.admin_key,
            "/v1/wallets/cust_1/credits",
            &json!({"purchaseId": purchase, "credits": 100, "orderId": order}),
        )
        .await;
    (response.status().as_u16(), response.json().await.unwrap())
}

/// The customer asks Paddle (not payledger) to refund the transaction: Paddle holds the refund
/// adjustment for its approval. Answers the adjustment.
pub(crate) async fn paddle_refund_asked(app: &TestApp, txn: &str, reason: &str) -> Value {
    paddle(
        app,
        "/adjustments",
        json!({"action": "refund", "transaction_id": txn, "reason": reason}),
    )
    .await
}

/// Paddle approves the refund adjustment; `changes` is what Paddle decides other than was asked
/// (`{"total": "999"}`, a planted fault), `{}` for none. Answers the adjustment.
pub(crate) async fn paddle_approves(app: &TestApp, adjustment_id: &str, changes: Value) -> Value {
    paddle(
        app,
        &format!("/sandbox/adjustments/{adjustment_id}/approve"),
        changes,
    )
    .await
}

/// Paddle rejects the refund adjustment; `changes` as for [`paddle_approves`].
pub(crate) async fn paddle_rejects(app: &TestApp, adjustment_id: &str, changes: Value) -> Value {
    paddle(
        app,
        &format!("/sandbox/adjustments/{adjustment_id}/reject"),
        changes,
    )
    .await
}

/// The customer's bank takes the transaction back. Answers Paddle's chargeback adjustment.
pub(crate) async fn paddle_charges_back(app: &TestApp, txn: &str) -> Value {
    paddle(
        app,
        &format!("/sandbox/transactions/{txn}/chargeback"),
        json!({}),
    )
    .await
}

/// Paddle's API answers the next `requests` requests with an outage (0 ends it).
pub(crate) async fn paddle_down_for(app: &TestApp, requests: u32) {
    paddle(app, "/sandbox/outage", json!({ "requests": requests })).await;
}

/// The ids of the notifications Paddle sent of `event_type`, in the order it sent them.
pub(crate) async fn notification_ids(app: &TestApp, event_type: &str) -> Vec<String> {
    let notifications = paddle_get(app, "/sandbox/notifications").await;
    notifications["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["type"] == event_type)
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Paddle delivers the notification again (as its dashboard's replay does).
pub(crate) async fn replay_notification(app: &TestApp, notification_id: &str) {
    paddle(
        app,
        &format!("/notifications/{notification_id}/replay"),
        json!({}),
    )
    .await;
}

/// The adjustments Paddle holds for the transaction.
pub(crate) async fn paddle_adjustments(app: &TestApp, txn: &str) -> Vec<Value> {
    let listed = paddle_get(app, &format!("/adjustments?transaction_id={txn}")).await;
    listed["data"].as_array().cloned().unwrap_or_default()
}

/// A client asks payledger to refund the order, with `key` as its Idempotency-Key.
pub(crate) async fn ask_refund(
    app: &TestApp,
    order_id: &str,
    key: &str,
    body: Value,
) -> (u16, Value) {
    let response = app
        .client
        .post(format!("{}/v1/orders/{order_id}/refunds", app.address))
        .bearer_auth(&app.client_key)
        .header("Idempotency-Key", key)
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// A client asks payledger to refund the whole order and payledger submits it to Paddle (202).
/// Answers payledger's answer.
pub(crate) async fn refund_asked(app: &TestApp, order_id: &str, key: &str) -> Value {
    let (status, asked) =
        ask_refund(app, order_id, key, json!({"reason": "changed my mind"})).await;
    assert_eq!(status, 202, "{asked}");
    asked
}

// ---- then: what the ledger shows ----

/// Reads `read` until `done` holds of its answer, up to 150 times 100 ms apart (the ledger
/// applies Paddle's notifications and the reconciler's lookups in the background); answers the
/// last reading, for the test to assert on.
pub(crate) async fn eventually<T, F, R>(mut read: F, done: impl Fn(&T) -> bool) -> T
where
    F: FnMut() -> R,
    R: Future<Output = T>,
{
    let mut last = read().await;
    for _ in 1..150 {
        if done(&last) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        last = read().await;
    }
    last
}

pub(crate) async fn subscription(app: &TestApp, id: &str) -> Value {
    // Read as support: the subscription was started by Paddle's notification, not by this
    // client, and clients see only what they created.
    app.get_as(&app.support_key, &format!("/v1/subscriptions/{id}"))
        .await
        .json()
        .await
        .unwrap()
}

/// Polls the subscription until `check` holds (the worker applies notifications in the
/// background).
pub(crate) async fn subscription_until(
    app: &TestApp,
    id: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let last = eventually(|| subscription(app, id), &check).await;
    if check(&last) {
        return last;
    }
    let applied: Vec<(String,)> = sqlx::query_as(
        "SELECT payload::text FROM events WHERE stream_id LIKE 'webhook-paddle%' \
         AND event_type = 'WebhookApplied' ORDER BY global_position",
    )
    .fetch_all(&app.app_pool)
    .await
    .unwrap_or_default();
    panic!(
        "{what}: the subscription stayed {last}; Paddle deliveries: {:?}; applied: {applied:?}",
        paddle_inbox(app).await
    );
}

/// What payledger's inbox holds of Paddle's notifications (event type, status, last error):
/// what a test that waited in vain says.
async fn paddle_inbox(app: &TestApp) -> Vec<(Option<String>, String, Option<String>)> {
    sqlx::query_as(
        "SELECT event_type, status, last_error FROM webhook_inbox WHERE provider = 'paddle' ORDER BY id",
    )
    .fetch_all(&app.app_pool)
    .await
    .unwrap_or_default()
}

pub(crate) async fn membership(app: &TestApp, customer: &str) -> i64 {
    let wallet: Value = app
        .get_as(&app.support_key, &format!("/v1/wallets/{customer}"))
        .await
        .json()
        .await
        .unwrap();
    wallet["membershipLevel"].as_i64().unwrap_or(-1)
}

pub(crate) async fn wallet_balance(app: &TestApp, customer: &str) -> i64 {
    let wallet: Value = app
        .get_as(&app.support_key, &format!("/v1/wallets/{customer}"))
        .await
        .json()
        .await
        .unwrap();
    wallet["balance"].as_i64().unwrap_or(-1)
}

/// Waits until the sandbox has delivered every Paddle notification and payledger has applied
/// them. Up to 30 s: a delivery whose processing failed once (a provider lookup timing out on a
/// loaded machine) is retried 5 s later by the inbox's schedule, and one the receiver refused
/// while busy is sent again by the sandbox within 3.5 s; both must still count.
pub(crate) async fn deliveries_settled(app: &TestApp) {
    for _ in 0..300 {
        let records = app.sandbox.paddle_deliveries();
        let pending: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM webhook_inbox WHERE provider = 'paddle' AND status = 'pending'",
        )
        .fetch_one(&app.app_pool)
        .await
        .unwrap();
        if pending == 0 && records.iter().all(|r| r.delivered) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let still_pending: Vec<(Option<String>, i32, Option<String>)> = sqlx::query_as(
        "SELECT event_type, attempts, last_error FROM webhook_inbox \
          WHERE provider = 'paddle' AND status = 'pending' ORDER BY id",
    )
    .fetch_all(&app.app_pool)
    .await
    .unwrap();
    let undelivered: Vec<_> = app
        .sandbox
        .paddle_deliveries()
        .into_iter()
        .filter(|r| !r.delivered)
        .map(|r| (r.event_type, r.attempts, r.last_status, r.last_error))
        .collect();
    panic!(
        "Paddle deliveries are still pending: not delivered by the sandbox (event type, attempts, \
         last status, last error): {undelivered:?}; pending in the inbox (event type, attempts, \
         last error): {still_pending:?}"
    );
}

/// The order as its client reads it.
pub(crate) async fn order(app: &TestApp, order_id: &str) -> Value {
    app.get(&format!("/v1/orders/{order_id}"))
        .await
        .json()
        .await
        .unwrap()
}

/// Polls the order (as its client) until `check` holds.
pub(crate) async fn order_until(
    app: &TestApp,
    order_id: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let last = eventually(|| order(app, order_id), &check).await;
    if check(&last) {
        return last;
    }
    panic!(
        "{what}: the order stayed {last}; Paddle deliveries: {:?}",
        paddle_inbox(app).await
    );
}

pub(crate) async fn timeline(app: &TestApp, order_id: &str) -> String {
    let body: Value = app
        .get(&format!("/v1/orders/{order_id}/timeline"))
        .await
        .json()
        .await
        .unwrap();
    body.to_string()
}

/// Polls the timeline until it holds `text`.
pub(crate) async fn timeline_until(app: &TestApp, order_id: &str, text: &str) -> String {
    let last = eventually(|| timeline(app, order_id), |t| t.contains(text)).await;
    assert!(
        last.contains(text),
        "the timeline of {order_id} never said {text:?}: {last}"
    );
    last
}

/// The payloads of the stream's events of `event_type`, from the log, in log order.
pub(crate) async fn stream_events(app: &TestApp, stream_id: &str, event_type: &str) -> Vec<Value> {
    let rows: Vec<(Value,)> = sqlx::query_as(
        "SELECT payload FROM events WHERE stream_id = $1 AND event_type = $2 ORDER BY global_position",
    )
    .bind(stream_id)
    .bind(event_type)
    .fetch_all(&app.app_pool)
    .await
    .unwrap();
    rows.into_iter().map(|(payload,)| payload).collect()
}

/// The payloads of the order's events of `event_type`, from the log.
pub(crate) async fn order_events(app: &TestApp, order_id: &str, event_type: &str) -> Vec<Value> {
    stream_events(app, &format!("order-{order_id}"), event_type).await
}

pub(crate) use payledger_tests::{account_balance, balanced_trial_balance};
