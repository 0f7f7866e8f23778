//! Stripe disputes in the settlement import (issue 18): the dispute's balance transaction
//! (the disputed amount withdrawn plus Stripe's dispute fee) is matched to the order's lost
//! dispute, not flagged, and posted so that `provider_clearing` closes and the books balance.

use crate::reconciliation_steps::{
    balance_in, balanced_books, import_settlements, json_of, spawn_with_provider_clock_and,
};
use chrono::{Days, Duration, Utc};
use payledger_tests::{SpawnOptions, TestApp};
use payledger_webhook_relay::{InboundConfig, Provider, RetryPolicy, WebhookSettings};
use payledger_webhooks::WebhookSecret;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

const STRIPE_WEBHOOK_SECRET: &str = "whsec_payledger_e2e_recon_disputes";

/// An app whose Stripe webhooks reach payledger and whose sandbox runs `offset` ahead.
async fn spawn() -> (TestApp, Arc<Mutex<Duration>>) {
    let (app, offset) = spawn_with_provider_clock_and(SpawnOptions {
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
    (app, offset)
}

async fn sandbox_stripe(app: &TestApp, method: reqwest::Method, path: &str) -> Value {
    let response = app
        .client
        .request(method, format!("{}{path}", app.sandbox.stripe_base_url()))
        .bearer_auth(payledger_sandbox::DEFAULT_STRIPE_SECRET_KEY)
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

async fn timeline_when(app: &TestApp, order_id: &str, needle: &str) -> String {
    let mut text = String::new();
    for _ in 0..300 {
        let body: Value = app
            .get(&format!("/v1/orders/{order_id}/timeline"))
            .await
            .json()
            .await
            .unwrap();
        text = body.to_string();
        if text.contains(needle) {
            return text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the timeline never showed {needle:?}: {text}");
}

#[tokio::test]
async fn a_lost_stripe_dispute_settles_without_a_flag_and_clearing_closes() {
    let (app, offset) = spawn().await;
    let order_id = "recon-dispute-1";
    let placed = app
        .post(
            "/v1/orders",
            &json!({"orderId": order_id, "amount": 10_000, "currency": "USD",
                    "customerId": "cust_1", "payeeId": "payee_1", "orderName": "Yoga class",
                    "provider": "stripe"}),
        )
        .await;
    assert_eq!(placed.status().as_u16(), 201);
    let (status, body) = json_of(app.confirm(order_id, "pm_card_visa", 10_000).await).await;
    assert_eq!(status, 200, "{body}");
    let intent = body["paymentKey"].as_str().unwrap().to_string();

    // The cardholder disputes the payment and the merchant accepts it: lost.
    sandbox_stripe(
        &app,
        reqwest::Method::POST,
        &format!("/sandbox/payment_intents/{intent}/disputes"),
    )
    .await;
    timeline_when(&app, order_id, "opened at stripe").await;
    let disputes = sandbox_stripe(
        &app,
        reqwest::Method::GET,
        &format!("/v1/disputes?payment_intent={intent}"),
    )
    .await;
    let dispute_id = disputes["data"][0]["id"].as_str().unwrap().to_owned();
    sandbox_stripe(
        &app,
        reqwest::Method::POST,
        &format!("/v1/disputes/{dispute_id}/close"),
    )
    .await;
    timeline_when(&app, order_id, &format!("dispute {dispute_id} lost")).await;

    // Two days on, Stripe pays out the charge and the dispute's withdrawal in one payout.
    *offset.lock().unwrap() = Duration::days(2);
    let today = Utc::now().date_naive();
    let (status, imported) = import_settlements(
        &app,
        &json!({"provider": "stripe", "from": today, "to": today + Days::new(10)}),
    )
    .await;
    assert_eq!(status, 200, "{imported}");
    assert_eq!(imported["lines"], 2, "{imported}");
    assert_eq!(imported["matched"], 2, "{imported}");
    assert_eq!(imported["flags"], json!({}), "no false flag: {imported}");

    app.wait_for_projections().await;
    let (status, open) = json_of(
        app.get_as(&app.support_key, "/v1/reconciliation/exceptions")
            .await,
    )
    .await;
    assert_eq!(status, 200, "{open}");
    assert_eq!(open["exceptions"], json!([]), "{open}");
    let books = balanced_books(&app).await;
    assert_eq!(balance_in(&books, "provider_clearing", "USD"), 0, "{books}");
    // 2.9 % + 30 on the charge; Stripe's $15 dispute fee expensed once, by the lost dispute.
    assert_eq!(balance_in(&books, "provider_fees", "USD"), 320, "{books}");
    assert_eq!(balance_in(&books, "dispute_fees", "USD"), 1_500, "{books}");
    assert_eq!(
        balance_in(&books, "bank", "USD"),
        (10_000 - 320) - (10_000 + 1_500),
        "{books}"
    );
    let text = timeline_when(&app, order_id, "stripe settled dispute -10000").await;
    assert!(!text.contains("reconciliation flag"), "{text}");
}

/// A Stripe payout that arrives short of the sum of its balance transactions (each of which is
/// right) is flagged once, at the payout level, and resolved by an admin with a note.
#[tokio::test]
async fn a_stripe_payout_short_of_its_balance_transactions_is_flagged_once() {
    let (app, offset) = spawn().await;
    let placed = app
        .post(
            "/v1/orders",
            &json!({"orderId": "recon-payout-1", "amount": 10_000, "currency": "USD",
                    "customerId": "cust_1", "payeeId": "payee_1", "orderName": "Yoga class",
                    "provider": "stripe"}),
        )
        .await;
    assert_eq!(placed.status().as_u16(), 201);
    let (status, body) = json_of(app.confirm("recon-payout-1", "pm_card_visa", 10_000).await).await;
    assert_eq!(status, 200, "{body}");
    let intent = body["paymentKey"].as_str().unwrap().to_string();
    assert!(app.sandbox.set_settlement_fault(
        &intent,
        payledger_sandbox::SettlementFault {
            payout_short_minor: 125,
            ..Default::default()
        }
    ));

    *offset.lock().unwrap() = Duration::days(2);
    let today = Utc::now().date_naive();
    let body = json!({"provider": "stripe", "from": today, "to": today + Days::new(10)});
    let (status, imported) = import_settlements(&app, &body).await;
    assert_eq!(status, 200, "{imported}");
    assert_eq!(imported["matched"], 1, "{imported}");
    assert_eq!(
        imported["flags"],
        json!({"payout_mismatch": 1}),
        "{imported}"
    );
    let (_, again) = import_settlements(&app, &body).await;
    assert_eq!(again["flags"], json!({}), "flagged once: {again}");

    app.wait_for_projections().await;
    let (_, open) = json_of(
        app.get_as(&app.support_key, "/v1/reconciliation/exceptions")
            .await,
    )
    .await;
    let exceptions = open["exceptions"].as_array().unwrap();
    assert_eq!(exceptions.len(), 1, "{open}");
    let exception = &exceptions[0];
    assert_eq!(exception["kind"], "payout_mismatch", "{exception}");
    assert_eq!(exception["expectedMinor"], 10_000 - 320, "{exception}");
    assert_eq!(exception["actualMinor"], 10_000 - 320 - 125, "{exception}");
    let stream = exception["streamId"].as_str().unwrap().to_owned();
    assert!(stream.contains("-payout-po_"), "{stream}");
    let (status, resolved) = json_of(
        app.post_as(
            &app.admin_key,
            &format!("/v1/reconciliation/exceptions/{stream}/payout_mismatch/resolve"),
            &json!({"resolution": "claim_against_provider", "note": "ticket 4411 with Stripe"}),
        )
        .await,
    )
    .await;
    assert!(status < 300, "{status} {resolved}");
    let books = balanced_books(&app).await;
    assert_eq!(balance_in(&books, "provider_clearing", "USD"), 0, "{books}");
}
