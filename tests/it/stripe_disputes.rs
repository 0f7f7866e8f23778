//! Stripe webhooks that act, end to end over HTTP against the sandbox: a payment that waited for
//! 3-D Secure settles on `payment_intent.succeeded`, a refund made in Stripe's dashboard arrives
//! as a provider-initiated refund, and a dispute refuses refunds while open and, once lost,
//! posts the withdrawal and Stripe's fee — with the trial balance still balanced.

use payledger_tests::{
    account_balance, balanced_trial_balance, spawn_app_with, SpawnOptions, TestApp,
};
use payledger_webhook_relay::{InboundConfig, Provider, RetryPolicy, WebhookSettings};
use payledger_webhooks::WebhookSecret;
use serde_json::{json, Value};
use std::time::Duration;

const STRIPE_WEBHOOK_SECRET: &str = "whsec_payledger_e2e_stripe";

async fn spawn() -> TestApp {
    let app = spawn_app_with(SpawnOptions {
        webhooks: WebhookSettings {
            inbound: InboundConfig::default()
                .with_secrets(
                    Provider::Stripe,
                    vec![WebhookSecret::new(STRIPE_WEBHOOK_SECRET)],
                )
                .expect("a usable Stripe secret"),
            retry: RetryPolicy {
                delay_divisor: 100_000,
            },
            poll_interval_ms: 50,
            ..WebhookSettings::default()
        },
        ..SpawnOptions::default()
    })
    .await;
    app.sandbox
        .add_stripe_webhook_endpoint(&app.url("/v1/webhooks/stripe"), STRIPE_WEBHOOK_SECRET)
        .expect("the sandbox sends Stripe events to payledger");
    app
}

/// A call to the sandbox's Stripe API (or its controls) with the sandbox's secret key.
async fn stripe(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    form: &[(&str, &str)],
) -> Value {
    let response = app
        .client
        .request(method, format!("{}{path}", app.sandbox.stripe_base_url()))
        .bearer_auth(payledger_sandbox::DEFAULT_STRIPE_SECRET_KEY)
        .form(form)
        .send()
        .await
        .expect("reach the sandbox");
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.json().await.expect("a JSON answer")
}

async fn intent_of(app: &TestApp, order_id: &str) -> String {
    let found = stripe(
        app,
        reqwest::Method::GET,
        &format!(
            "/v1/payment_intents/search?query=metadata%5B%27order_id%27%5D%3A%27{order_id}%27"
        ),
        &[],
    )
    .await;
    found["data"][0]["id"]
        .as_str()
        .expect("an intent")
        .to_owned()
}

/// Waits (at most 15 s) until the order's read model satisfies `done`.
async fn order_when(app: &TestApp, order_id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..300 {
        last = app
            .get(&format!("/v1/orders/{order_id}"))
            .await
            .json()
            .await
            .unwrap();
        if done(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the order never got there: {last}");
}

async fn timeline(app: &TestApp, order_id: &str) -> String {
    let body: Value = app
        .get(&format!("/v1/orders/{order_id}/timeline"))
        .await
        .json()
        .await
        .unwrap();
    body.to_string()
}

async fn timeline_when(app: &TestApp, order_id: &str, needle: &str) -> String {
    for _ in 0..300 {
        let text = timeline(app, order_id).await;
        if text.contains(needle) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the timeline never showed {needle:?}: {}\nthe sandbox's Stripe deliveries: {:#?}",
        timeline(app, order_id).await,
        app.sandbox.stripe_deliveries()
    );
}

/// Waits until the sandbox delivered every Stripe event and payledger applied every delivery.
async fn webhooks_quiet(app: &TestApp) {
    for _ in 0..300 {
        let delivered = app.sandbox.stripe_deliveries().iter().all(|d| d.delivered);
        let pending: i64 =
            sqlx::query_scalar("SELECT count(*) FROM webhook_inbox WHERE status = 'pending'")
                .fetch_one(&app.app_pool)
                .await
                .unwrap();
        if delivered && pending == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the Stripe webhooks never settled: {:#?}",
        app.sandbox.stripe_deliveries()
    );
}

async fn confirm_with_key(app: &TestApp, key: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url("/v1/payments/confirm"))
        .bearer_auth(&app.client_key)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_stripe_order_is_confirmed_with_3ds_refunded_at_the_dashboard_disputed_and_lost() {
    let app = spawn().await;
    let order_id = "order-stripe-dispute";
    let placed = app
        .post(
            "/v1/orders",
            &json!({"orderId": order_id, "amount": 10_000, "currency": "USD",
                    "customerId": "cust_1", "payeeId": "payee_1", "orderName": "Yoga course",
                    "provider": "stripe"}),
        )
        .await;
    assert_eq!(placed.status().as_u16(), 201);

    // 3-D Secure: 202 with what Stripe.js needs, the client secret included — once.
    let confirm = json!({"orderId": order_id, "paymentKey": "pm_card_authenticationRequired",
                         "amount": 10_000});
    let first = confirm_with_key(&app, "confirm-3ds-1", &confirm).await;
    assert_eq!(first.status().as_u16(), 202);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["clientAction"]["type"], "use_stripe_sdk", "{first}");
    let secret = first["clientAction"]["clientSecret"]
        .as_str()
        .expect("the client secret reaches the client")
        .to_owned();
    assert!(secret.contains("_secret_"), "{secret}");
    // The idempotent replay answers the same 202 without the secret: it was never stored.
    let replayed = confirm_with_key(&app, "confirm-3ds-1", &confirm).await;
    assert_eq!(replayed.status().as_u16(), 202);
    assert_eq!(replayed.headers()["idempotency-replayed"], "true");
    let replayed: Value = replayed.json().await.unwrap();
    assert_eq!(
        replayed["clientAction"]["type"], "use_stripe_sdk",
        "{replayed}"
    );
    assert!(
        replayed["clientAction"].get("clientSecret").is_none(),
        "{replayed}"
    );
    // A confirm again (new key) asks Stripe for the action again: the secret is back.
    let again = confirm_with_key(&app, "confirm-3ds-2", &confirm).await;
    assert_eq!(again.status().as_u16(), 202);
    let again: Value = again.json().await.unwrap();
    assert_eq!(
        again["clientAction"]["clientSecret"],
        secret.as_str(),
        "{again}"
    );
    let stored: String = sqlx::query_scalar(
        "SELECT coalesce(string_agg(convert_from(response_body, 'UTF8'), ''), '') FROM idempotency_keys",
    )
    .fetch_one(&app.app_pool)
    .await
    .unwrap_or_default();
    assert!(
        !stored.contains(&secret),
        "the idempotency table holds no client secret"
    );
    let log: Value = app
        .get(&format!("/v1/streams/order-{order_id}"))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        !log.to_string().contains(&secret),
        "no event holds the client secret"
    );

    // The customer completes 3-D Secure: payment_intent.succeeded, re-checked, settles it.
    let intent = intent_of(&app, order_id).await;
    stripe(
        &app,
        reqwest::Method::POST,
        &format!("/sandbox/payment_intents/{intent}/authenticate"),
        &[("outcome", "succeed")],
    )
    .await;
    let paid = order_when(&app, order_id, |o| o["status"] == "PAID").await;
    assert_eq!(paid["capturedAmount"], 10_000, "{paid}");
    assert_eq!(paid["paymentKey"], intent.as_str(), "{paid}");

    // A partial refund through payledger, then one made in Stripe's dashboard.
    let refund = app
        .post(
            &format!("/v1/orders/{order_id}/refunds"),
            &json!({"amount": 3_000, "reason": "one class missed"}),
        )
        .await;
    assert_eq!(refund.status().as_u16(), 201);
    stripe(
        &app,
        reqwest::Method::POST,
        &format!("/sandbox/payment_intents/{intent}/refunds"),
        &[("amount", "2000")],
    )
    .await;
    let refunded = order_when(&app, order_id, |o| o["refundedAmount"] == 5_000).await;
    assert_eq!(refunded["status"], "PARTIALLY_REFUNDED", "{refunded}");
    timeline_when(&app, order_id, "not asked by payledger").await;

    // The cardholder disputes what is left: refunds are refused while it is open.
    stripe(
        &app,
        reqwest::Method::POST,
        &format!("/sandbox/payment_intents/{intent}/disputes"),
        &[],
    )
    .await;
    timeline_when(&app, order_id, "opened at stripe").await;
    let refused = app
        .post(
            &format!("/v1/orders/{order_id}/refunds"),
            &json!({"amount": 1_000, "reason": "goodwill"}),
        )
        .await;
    assert_eq!(refused.status().as_u16(), 409);
    let refused: Value = refused.json().await.unwrap();
    assert_eq!(refused["code"], "E_DISPUTE_OPEN", "{refused}");

    // The merchant accepts the dispute: lost.
    let disputes = stripe(
        &app,
        reqwest::Method::GET,
        &format!("/v1/disputes?payment_intent={intent}"),
        &[],
    )
    .await;
    let dispute_id = disputes["data"][0]["id"].as_str().unwrap().to_owned();
    stripe(
        &app,
        reqwest::Method::POST,
        &format!("/v1/disputes/{dispute_id}/close"),
        &[],
    )
    .await;
    let text = timeline_when(&app, order_id, &format!("dispute {dispute_id} lost")).await;
    assert_eq!(
        text.matches(&format!("dispute {dispute_id} opened"))
            .count(),
        1,
        "redeliveries and updates open it once: {text}"
    );
    let lost = order_when(&app, order_id, |o| o["refundableAmount"] == 0).await;
    assert_eq!(lost["refundedAmount"], 5_000, "{lost}");
    assert_eq!(lost["capturedAmount"], 10_000, "{lost}");

    // The journal: the lost 5 000 and Stripe's $15 fee left provider_clearing; still balanced.
    let trial = balanced_trial_balance(&app).await;
    assert_eq!(
        account_balance(&trial, "provider_clearing"),
        10_000 - 3_000 - 2_000 - 5_000 - 1_500,
        "{trial}"
    );
    assert_eq!(account_balance(&trial, "payee_payable"), 0, "{trial}");
    assert_eq!(account_balance(&trial, "dispute_fees"), 1_500, "{trial}");
    assert_eq!(
        app.sandbox.stripe_stats()["chargesByOrderId"][order_id],
        1,
        "one charge for the order"
    );
    // Every event Stripe sent (a dozen for this order) was applied, none found a difference.
    webhooks_quiet(&app).await;
    let text = timeline(&app, order_id).await;
    assert!(!text.contains("ATTENTION"), "{text}");
    assert!(!text.contains("dead-lettered"), "{text}");
    assert!(text.contains("NoLedgerEffect"), "{text}");

    // What Stripe owes for the order by age (`agedClearing`) is the journal's provider_clearing:
    // the lost 5 000 and the $15 fee are out of it before any settlement line arrives.
    app.wait_for_projections().await;
    let report: Value = app
        .get_as(
            &app.auditor_key,
            "/v1/reconciliation?from=2026-01-01&to=2026-12-31",
        )
        .await
        .json()
        .await
        .unwrap();
    let aged: i64 = report["agedClearing"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["provider"] == "stripe" && a["currency"] == "USD")
        .map(|a| a["totalMinor"].as_i64().unwrap())
        .sum();
    assert_eq!(
        aged,
        account_balance(&trial, "provider_clearing"),
        "{report}"
    );
    assert_eq!(aged, -1_500, "{report}");
}

#[tokio::test]
async fn a_late_event_about_an_earlier_declined_attempt_changes_nothing() {
    let app = spawn().await;
    let order_id = "order-stripe-retry";
    let placed = app
        .post(
            "/v1/orders",
            &json!({"orderId": order_id, "amount": 41_000, "currency": "KRW",
                    "customerId": "cust_1", "payeeId": "payee_1", "orderName": "Yoga class",
                    "provider": "stripe"}),
        )
        .await;
    assert_eq!(placed.status().as_u16(), 201);
    let declined = app
        .confirm(order_id, "pm_card_chargeDeclinedInsufficientFunds", 41_000)
        .await;
    assert_eq!(declined.status().as_u16(), 402);
    let paid = app.confirm(order_id, "pm_card_visa", 41_000).await;
    assert_eq!(paid.status().as_u16(), 200);
    // The first attempt's payment_intent.payment_failed arrives after the second one's capture.
    webhooks_quiet(&app).await;
    let order = order_when(&app, order_id, |o| o["status"] == "PAID").await;
    assert_eq!(order["capturedAmount"], 41_000, "{order}");
    let text = timeline(&app, order_id).await;
    assert!(
        text.contains("payment_intent.payment_failed") || text.contains("no longer waits on"),
        "{text}"
    );
    assert!(!text.contains("ATTENTION"), "{text}");
    assert_eq!(
        app.charges_at_provider(payledger_tests::TestProvider::Stripe, order_id),
        1
    );
}
