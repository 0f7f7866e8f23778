//! Paddle Billing end to end over HTTP (issue 15): the sandbox's Paddle plays the checkout and
//! Paddle's own billing, and sends signed notifications to `POST /v1/webhooks/paddle`; payledger
//! confirms each against Paddle's API and moves the one subscription model and the membership.

use payledger_tests::{spawn_app_with, SpawnOptions, TestApp};
use payledger_webhook_relay::{InboundConfig, Provider, RetryPolicy, WebhookSettings};
use payledger_webhooks::WebhookSecret;
use serde_json::{json, Value};
use std::time::Duration;

pub(crate) const SECRET: &str = "pdl_ntfset_e2e_secret";

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

/// What the customer or Paddle itself does, through the sandbox's controls and API.
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
pub(crate) async fn until(
    app: &TestApp,
    id: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let mut last = Value::Null;
    for _ in 0..150 {
        last = subscription(app, id).await;
        if check(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let inbox: Vec<(Option<String>, String, Option<String>)> = sqlx::query_as(
        "SELECT event_type, status, last_error FROM webhook_inbox WHERE provider = 'paddle' ORDER BY id",
    )
    .fetch_all(&app.app_pool)
    .await
    .unwrap_or_default();
    let applied: Vec<(String,)> = sqlx::query_as(
        "SELECT payload::text FROM events WHERE stream_id LIKE 'webhook-paddle%' \
         AND event_type = 'WebhookApplied' ORDER BY global_position",
    )
    .fetch_all(&app.app_pool)
    .await
    .unwrap_or_default();
    panic!("{what}: the subscription stayed {last}; Paddle deliveries: {inbox:?}; applied: {applied:?}");
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

/// A credit pack paid through Paddle: an order placed with `provider: paddle`, paid in Paddle's
/// checkout, confirmed by its transaction id (payledger looks the transaction up and judges it).
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

#[tokio::test]
async fn paddle_subscribe_renew_past_due_and_a_dashboard_cancel_move_the_membership() {
    let app = spawn().await;
    // Credits need a membership, whoever sells them.
    paid_credit_order(&app, "order-paddle-credits-1").await;
    let (status, body) = buy_credits(&app, "buy-1", "order-paddle-credits-1").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("E_MEMBERSHIP_REQUIRED"))
    );

    // S1: subscribe in Paddle's checkout.
    let subscribed = checkout(
        &app,
        payledger_sandbox::SANDBOX_PRICE_BASIC_MONTHLY,
        json!({"customerId": "cust_1"}),
    )
    .await;
    let sub_id = subscribed["subscription"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let period_end = subscribed["subscription"]["current_billing_period"]["ends_at"]
        .as_str()
        .unwrap()
        .to_owned();
    let started = until(&app, &sub_id, "first period paid", |s| s["paidCycles"] == 1).await;
    assert_eq!(started["status"], "active");
    assert_eq!(started["planId"], "basic");
    assert_eq!(
        (started["amount"].as_i64(), started["currency"].as_str()),
        (Some(990), Some("USD"))
    );
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(started["paidThrough"].as_str().unwrap()).unwrap(),
        chrono::DateTime::parse_from_rfc3339(&period_end).unwrap(),
        "Paddle's billing period"
    );
    assert_eq!(membership(&app, "cust_1").await, 1);
    let (status, body) = buy_credits(&app, "buy-1", "order-paddle-credits-1").await;
    assert_eq!(status, 201, "{body}");

    // A renewal Paddle billed.
    paddle(
        &app,
        &format!("/sandbox/subscriptions/{sub_id}/advance"),
        json!({}),
    )
    .await;
    until(&app, &sub_id, "renewal recorded", |s| s["paidCycles"] == 2).await;

    // A failed renewal: past due, benefits kept; Paddle's dunning recovers it.
    paddle(
        &app,
        &format!("/sandbox/subscriptions/{sub_id}/advance"),
        json!({"card": payledger_sandbox::SANDBOX_DECLINE_CARD}),
    )
    .await;
    until(&app, &sub_id, "past due", |s| s["status"] == "past_due").await;
    assert_eq!(membership(&app, "cust_1").await, 1);
    paddle(
        &app,
        &format!("/sandbox/subscriptions/{sub_id}/dunning"),
        json!({"outcome": "recovered"}),
    )
    .await;
    // The paid transaction and Paddle's `subscription.updated` (active again) are two
    // deliveries: the ledger shows each as it arrives, so wait for both.
    let recovered = until(&app, &sub_id, "recovered", |s| {
        s["paidCycles"] == 3 && s["status"] == "active"
    })
    .await;
    assert_eq!(recovered["status"], "active");

    // A delivery replayed twice has one effect.
    deliveries_settled(&app).await;
    let before = subscription(&app, &sub_id).await["version"].clone();
    let notifications: Value = reqwest::Client::new()
        .get(format!(
            "{}/sandbox/notifications",
            app.sandbox.paddle_base_url()
        ))
        .bearer_auth(payledger_sandbox::DEFAULT_PADDLE_API_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let completed = notifications["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["type"] == "transaction.completed")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..2 {
        paddle(
            &app,
            &format!("/notifications/{completed}/replay"),
            json!({}),
        )
        .await;
    }
    deliveries_settled(&app).await;
    assert_eq!(subscription(&app, &sub_id).await["version"], before);

    // S2: a cancel in Paddle's dashboard: benefits stay until the period ends, then Paddle
    // cancels, and the membership goes.
    paddle(
        &app,
        &format!("/subscriptions/{sub_id}/cancel"),
        json!({"effective_from": "next_billing_period"}),
    )
    .await;
    let scheduled = until(&app, &sub_id, "cancel scheduled", |s| {
        s["cancelAtPeriodEnd"] == true
    })
    .await;
    assert_eq!(scheduled["cancelEffectiveAt"], scheduled["paidThrough"]);
    assert_eq!(membership(&app, "cust_1").await, 1);
    paddle(
        &app,
        &format!("/sandbox/subscriptions/{sub_id}/advance"),
        json!({}),
    )
    .await;
    until(&app, &sub_id, "ended", |s| s["status"] == "ended").await;
    assert_eq!(membership(&app, "cust_1").await, 0);
    paid_credit_order(&app, "order-paddle-credits-2").await;
    let (status, body) = buy_credits(&app, "buy-2", "order-paddle-credits-2").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("E_MEMBERSHIP_REQUIRED"))
    );
}

#[tokio::test]
async fn a_paddle_price_payledger_does_not_know_is_held_for_review_not_dropped() {
    let app = spawn().await;
    let price = paddle(
        &app,
        "/prices",
        json!({"product_id": payledger_sandbox::SANDBOX_PRODUCT_CREDITS,
               "description": "Renamed plan",
               "unit_price": {"amount": "1990", "currency_code": "USD"},
               "billing_cycle": {"interval": "month", "frequency": 1}}),
    )
    .await;
    let price_id = price["id"].as_str().unwrap();
    checkout(&app, price_id, json!({"customerId": "cust_2"})).await;
    let mut dead = Value::Null;
    for _ in 0..100 {
        dead = app
            .get_as(&app.admin_key, "/v1/admin/webhooks/dead-letters")
            .await
            .json()
            .await
            .unwrap();
        if dead["deadLetters"]
            .as_array()
            .is_some_and(|d| !d.is_empty())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = dead.to_string();
    assert!(text.contains("unknown Paddle price"), "{text}");
    assert!(text.contains(price_id), "{text}");
    assert_eq!(membership(&app, "cust_2").await, 0);
}

#[tokio::test]
async fn a_cancel_through_payledger_asks_paddle_first_and_a_failed_call_records_nothing() {
    let app = spawn().await;
    let subscribed = checkout(
        &app,
        payledger_sandbox::SANDBOX_PRICE_BASIC_MONTHLY,
        json!({"customerId": "cust_1"}),
    )
    .await;
    let sub_id = subscribed["subscription"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let started = until(&app, &sub_id, "started", |s| s["paidCycles"] == 1).await;

    // Paddle down: the caller gets a clear error and the ledger is unchanged.
    paddle(&app, "/sandbox/outage", json!({"requests": 10})).await;
    let failed = app
        .post_as(
            &app.admin_key,
            &format!("/v1/subscriptions/{sub_id}/cancel"),
            &json!({}),
        )
        .await;
    let status = failed.status().as_u16();
    let body: Value = failed.json().await.unwrap();
    assert!(status >= 400 && status != 500, "{status} {body}");
    paddle(&app, "/sandbox/outage", json!({"requests": 0})).await;
    let unchanged = subscription(&app, &sub_id).await;
    assert_eq!(unchanged["version"], started["version"]);
    assert_eq!(unchanged["cancelAtPeriodEnd"], false);

    // Paddle up: Paddle schedules the cancel for the end of its period, and the ledger records
    // what Paddle answered; asking again records nothing new.
    // The outage may have opened the connector's circuit breaker (the webhook worker's reads
    // failed too): the caller gets 503 with Retry-After and retries, as a client would.
    let mut tries = 0;
    let cancelled = loop {
        let response = app
            .post_as(
                &app.admin_key,
                &format!("/v1/subscriptions/{sub_id}/cancel"),
                &json!({}),
            )
            .await;
        tries += 1;
        if response.status().as_u16() != 503 || tries >= 60 {
            break response;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let status = cancelled.status().as_u16();
    let body: Value = cancelled.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cancelAtPeriodEnd"], true, "{body}");
    assert_eq!(body["cancelEffectiveAt"], started["paidThrough"]);
    let at_paddle: Value = reqwest::Client::new()
        .get(format!(
            "{}/subscriptions/{sub_id}",
            app.sandbox.paddle_base_url()
        ))
        .bearer_auth(payledger_sandbox::DEFAULT_PADDLE_API_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(at_paddle["data"]["scheduled_change"]["action"], "cancel");
    let again = app
        .post_as(
            &app.admin_key,
            &format!("/v1/subscriptions/{sub_id}/cancel"),
            &json!({}),
        )
        .await;
    assert_eq!(again.status().as_u16(), 200);
    assert_eq!(
        membership(&app, "cust_1").await,
        1,
        "benefits until the period ends"
    );
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

/// Polls the order (as its client) until `check` holds.
pub(crate) async fn order_until(
    app: &TestApp,
    order_id: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let mut last = Value::Null;
    for _ in 0..150 {
        last = app
            .get(&format!("/v1/orders/{order_id}"))
            .await
            .json()
            .await
            .unwrap();
        if check(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let inbox: Vec<(Option<String>, String, Option<String>)> = sqlx::query_as(
        "SELECT event_type, status, last_error FROM webhook_inbox WHERE provider = 'paddle' ORDER BY id",
    )
    .fetch_all(&app.app_pool)
    .await
    .unwrap_or_default();
    panic!("{what}: the order stayed {last}; Paddle deliveries: {inbox:?}");
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

pub(crate) async fn subscribed_member(app: &TestApp) {
    let subscribed = checkout(
        app,
        payledger_sandbox::SANDBOX_PRICE_BASIC_MONTHLY,
        json!({"customerId": "cust_1"}),
    )
    .await;
    let sub_id = subscribed["subscription"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    until(app, &sub_id, "first period paid", |s| s["paidCycles"] == 1).await;
    assert_eq!(membership(app, "cust_1").await, 1);
}

#[tokio::test]
async fn a_paddle_refund_is_recorded_once_paddle_approves_it_and_claws_the_credits_back() {
    let app = spawn().await;
    subscribed_member(&app).await;
    let order_id = "order-paddle-refund";
    let txn = paid_credit_order(&app, order_id).await;
    let (status, body) = buy_credits(&app, "buy-refund", order_id).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(wallet_balance(&app, "cust_1").await, 100);

    // S3: a refund asked in Paddle waits for Paddle's approval; rejected, it changes nothing.
    let rejected = paddle(
        &app,
        "/adjustments",
        json!({"action": "refund", "transaction_id": txn, "reason": "changed my mind"}),
    )
    .await;
    assert_eq!(rejected["status"], "pending_approval");
    let rejected_id = rejected["id"].as_str().unwrap().to_owned();
    paddle(
        &app,
        &format!("/sandbox/adjustments/{rejected_id}/reject"),
        json!({}),
    )
    .await;
    deliveries_settled(&app).await;
    let order = order_until(&app, order_id, "paid", |o| o["status"] == "PAID").await;
    assert_eq!(order["refundedAmount"], 0, "{order}");
    assert_eq!(wallet_balance(&app, "cust_1").await, 100);

    // Pending, then approved: recorded against the order's payment, the credits clawed back.
    let asked = paddle(
        &app,
        "/adjustments",
        json!({"action": "refund", "transaction_id": txn, "reason": "duplicate purchase"}),
    )
    .await;
    let adjustment_id = asked["id"].as_str().unwrap().to_owned();
    deliveries_settled(&app).await;
    let order = order_until(&app, order_id, "still paid", |o| o["status"] == "PAID").await;
    assert_eq!(
        order["refundedAmount"], 0,
        "pending is not refunded: {order}"
    );
    assert_eq!(wallet_balance(&app, "cust_1").await, 100);
    paddle(
        &app,
        &format!("/sandbox/adjustments/{adjustment_id}/approve"),
        json!({}),
    )
    .await;
    let refunded = order_until(&app, order_id, "refunded", |o| o["status"] == "REFUNDED").await;
    assert_eq!(refunded["refundedAmount"], 1000, "{refunded}");
    let mut balance = -1;
    for _ in 0..100 {
        balance = wallet_balance(&app, "cust_1").await;
        if balance == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(balance, 0, "the credits are clawed back");

    // The approval replayed twice records nothing new.
    deliveries_settled(&app).await;
    let notifications: Value = reqwest::Client::new()
        .get(format!(
            "{}/sandbox/notifications",
            app.sandbox.paddle_base_url()
        ))
        .bearer_auth(payledger_sandbox::DEFAULT_PADDLE_API_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let approved: Vec<String> = notifications["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["type"] == "adjustment.updated")
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(approved.len(), 2, "{notifications}");
    for id in approved.iter().chain(approved.iter()) {
        paddle(&app, &format!("/notifications/{id}/replay"), json!({})).await;
    }
    deliveries_settled(&app).await;
    let again = order_until(&app, order_id, "refunded", |o| o["status"] == "REFUNDED").await;
    assert_eq!(again["refundedAmount"], 1000, "refunded once: {again}");
    assert_eq!(wallet_balance(&app, "cust_1").await, 0);
    let text = timeline(&app, order_id).await;
    assert!(text.contains(&adjustment_id), "{text}");
    assert!(
        !text.contains(&rejected_id),
        "a rejected refund is not on the order: {text}"
    );

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
    // Paddle is the merchant of record: it kept its fee (sandbox: 5 % + 50 of 990) out of the
    // membership payment; the credit pack was captured and refunded in full.
    assert_eq!(
        account_balance(&trial, "subscription_revenue"),
        -990,
        "{trial}"
    );
    assert_eq!(account_balance(&trial, "provider_fees"), 99, "{trial}");
    assert_eq!(
        account_balance(&trial, "provider_clearing"),
        990 - 99,
        "{trial}"
    );
    assert_eq!(account_balance(&trial, "payee_payable"), 0, "{trial}");
}

pub(crate) fn account_balance(trial: &Value, account: &str) -> i64 {
    trial["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|row| row["account"] == account && row["currency"] == "USD")
        .map(|row| row["debit"].as_i64().unwrap() - row["credit"].as_i64().unwrap())
        .sum()
}

#[tokio::test]
async fn a_paddle_chargeback_is_recorded_as_a_lost_dispute_on_the_order() {
    let app = spawn().await;
    let order_id = "order-paddle-chargeback";
    let txn = paid_credit_order(&app, order_id).await;
    let chargeback = paddle(
        &app,
        &format!("/sandbox/transactions/{txn}/chargeback"),
        json!({}),
    )
    .await;
    let adjustment_id = chargeback["id"].as_str().unwrap().to_owned();
    let lost = order_until(&app, order_id, "charged back", |o| {
        o["capturedAmount"] == 1000 && o["refundableAmount"] == 0
    })
    .await;
    assert_eq!(lost["capturedAmount"], 1000, "{lost}");
    deliveries_settled(&app).await;
    let text = timeline(&app, order_id).await;
    assert!(
        text.contains(&format!("dispute {adjustment_id} lost")),
        "{text}"
    );
    assert_eq!(
        text.matches(&format!("dispute {adjustment_id} opened"))
            .count(),
        1,
        "{text}"
    );
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
    // The payee bore the chargeback as it bears a refund; the platform bears Paddle's
    // chargeback fee (its payout_totals.chargeback_fee, 1 500 in the sandbox), which Paddle
    // takes from the next payout: until that payout's line is imported, clearing owes it.
    assert_eq!(account_balance(&trial, "payee_payable"), 0, "{trial}");
    assert_eq!(account_balance(&trial, "dispute_fees"), 1_500, "{trial}");
    assert_eq!(
        account_balance(&trial, "provider_clearing"),
        -1_500,
        "{trial}"
    );
}

#[tokio::test]
async fn an_approved_paddle_refund_of_a_membership_payment_is_recorded_on_the_subscription() {
    let app = spawn().await;
    let subscribed = checkout(
        &app,
        payledger_sandbox::SANDBOX_PRICE_BASIC_MONTHLY,
        json!({"customerId": "cust_1"}),
    )
    .await;
    let sub_id = subscribed["subscription"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let txn = subscribed["transaction"]["id"].as_str().unwrap().to_owned();
    until(&app, &sub_id, "first period paid", |s| s["paidCycles"] == 1).await;
    let asked = paddle(
        &app,
        "/adjustments",
        json!({"action": "refund", "transaction_id": txn, "reason": "not what I expected"}),
    )
    .await;
    let adjustment_id = asked["id"].as_str().unwrap().to_owned();
    paddle(
        &app,
        &format!("/sandbox/adjustments/{adjustment_id}/approve"),
        json!({}),
    )
    .await;
    let reversed = || async {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT payload::text FROM events WHERE stream_id = $1 \
             AND event_type = 'ProviderChargeReversed' ORDER BY global_position",
        )
        .bind(format!("subscription-{sub_id}"))
        .fetch_all(&app.app_pool)
        .await
        .unwrap();
        rows
    };
    let mut rows = Vec::new();
    for _ in 0..100 {
        rows = reversed().await;
        if !rows.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(rows.len(), 1, "the refund is recorded on the subscription");
    assert!(rows[0].0.contains(&adjustment_id), "{rows:?}");
    assert!(rows[0].0.contains("990"), "{rows:?}");

    // Replayed, it records nothing new.
    deliveries_settled(&app).await;
    let notifications: Value = reqwest::Client::new()
        .get(format!(
            "{}/sandbox/notifications",
            app.sandbox.paddle_base_url()
        ))
        .bearer_auth(payledger_sandbox::DEFAULT_PADDLE_API_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for n in notifications["data"].as_array().unwrap() {
        if n["type"] == "adjustment.updated" {
            let id = n["id"].as_str().unwrap();
            paddle(&app, &format!("/notifications/{id}/replay"), json!({})).await;
        }
    }
    deliveries_settled(&app).await;
    assert_eq!(reversed().await.len(), 1, "recorded once");

    // The journal: the membership revenue given back out of what Paddle holds; Paddle's fee on
    // the charge stays posted.
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
    assert_eq!(
        account_balance(&trial, "subscription_revenue"),
        0,
        "{trial}"
    );
    assert_eq!(account_balance(&trial, "provider_clearing"), -99, "{trial}");

    // The source document: a membership refund downgrades the membership at once (the
    // subscription itself stays; Paddle's next paid period gives the benefits back).
    let mut level = -1;
    for _ in 0..100 {
        level = membership(&app, "cust_1").await;
        if level == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(level, 0, "a refunded membership payment downgrades");
    paddle(
        &app,
        &format!("/sandbox/subscriptions/{sub_id}/advance"),
        json!({}),
    )
    .await;
    until(&app, &sub_id, "renewal recorded", |s| s["paidCycles"] == 2).await;
    assert_eq!(
        membership(&app, "cust_1").await,
        1,
        "paid again: benefits back"
    );
}

#[tokio::test]
async fn a_chargeback_of_a_membership_payment_downgrades_the_membership_at_once() {
    let app = spawn().await;
    let subscribed = checkout(
        &app,
        payledger_sandbox::SANDBOX_PRICE_BASIC_MONTHLY,
        json!({"customerId": "cust_1"}),
    )
    .await;
    let sub_id = subscribed["subscription"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let txn = subscribed["transaction"]["id"].as_str().unwrap().to_owned();
    until(&app, &sub_id, "first period paid", |s| s["paidCycles"] == 1).await;
    assert_eq!(membership(&app, "cust_1").await, 1);
    paddle(
        &app,
        &format!("/sandbox/transactions/{txn}/chargeback"),
        json!({}),
    )
    .await;
    let mut level = -1;
    for _ in 0..100 {
        level = membership(&app, "cust_1").await;
        if level == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(level, 0, "a charged-back membership payment downgrades");
    // The membership is read from the subscriptions read model: read it at the log's head.
    let head = app.head_position().await;
    let status: Value = app
        .get_as(
            &app.support_key,
            &format!("/v1/customers/cust_1/membership?minPosition={head}"),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["membershipLevel"], 0, "{status}");
    deliveries_settled(&app).await;
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
}

#[tokio::test]
async fn paddle_bills_the_next_period_by_itself_when_the_scenario_clock_passes_it() {
    use chrono::TimeZone;
    let start = chrono::Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap();
    let app = spawn_with_clock(Some(start)).await;
    let subscribed = checkout(
        &app,
        payledger_sandbox::SANDBOX_PRICE_BASIC_MONTHLY,
        json!({"customerId": "cust_1"}),
    )
    .await;
    let sub_id = subscribed["subscription"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    until(&app, &sub_id, "started", |s| s["paidCycles"] == 1).await;

    // A month and a day later on the scenario clock, with no call to the sandbox's controls:
    // Paddle's billing renews the subscription and notifies, and the ledger records the period.
    let moved = app
        .post_as(
            &app.admin_key,
            "/v1/admin/test-clock/advance",
            &json!({"days": 32}),
        )
        .await;
    assert_eq!(
        moved.status().as_u16(),
        200,
        "{}",
        moved.text().await.unwrap()
    );
    until(&app, &sub_id, "renewed by Paddle", |s| {
        s["paidCycles"] == 2 && s["status"] == "active"
    })
    .await;
    assert_eq!(membership(&app, "cust_1").await, 1);
}
