//! Webhooks in through HTTP: signed deliveries answered at once and shown in the order's
//! timeline, refusals with stable codes, unsigned Toss events settled from the provider's answer,
//! and the admin dead-letter routes.

use payledger_tests::{spawn_app_with, SpawnOptions, TestApp};
use payledger_webhook_relay::{InboundConfig, Provider, RetryPolicy, WebhookSettings};
use payledger_webhooks::{sign_standard_webhook, StandardWebhookKey, WebhookSecret};
use serde_json::{json, Value};
use std::time::Duration;

const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn webhook_settings() -> WebhookSettings {
    WebhookSettings {
        inbound: InboundConfig::default()
            .with_secrets(
                Provider::Standard,
                vec![WebhookSecret::new(STANDARD_SECRET)],
            )
            .expect("a valid whsec_ secret"),
        retry: RetryPolicy {
            delay_divisor: 100_000,
        },
        poll_interval_ms: 50,
        ..WebhookSettings::default()
    }
}

async fn spawn(gateway_timeout_ms: u64) -> TestApp {
    spawn_app_with(SpawnOptions {
        gateway_timeout_ms,
        webhooks: webhook_settings(),
        ..SpawnOptions::default()
    })
    .await
}

/// A Standard Webhooks delivery signed as the official libraries sign it; no API key.
async fn send_standard(
    app: &TestApp,
    id: &str,
    timestamp: i64,
    body: &str,
    secret: &str,
) -> reqwest::Response {
    let key = StandardWebhookKey::from_secret(&WebhookSecret::new(secret)).unwrap();
    let signature = sign_standard_webhook(&key, id, timestamp, body.as_bytes());
    app.client
        .post(app.url("/v1/webhooks/standard"))
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

/// Polls the order's timeline until it holds `event_type`.
async fn timeline_with(app: &TestApp, order_id: &str, event_type: &str) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let body: Value = app
            .get_as(&app.support_key, &format!("/v1/orders/{order_id}/timeline"))
            .await
            .json()
            .await
            .unwrap();
        let entries = body["entries"].as_array().cloned().unwrap_or_default();
        if entries.iter().any(|e| e["eventType"] == event_type) {
            return entries;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {event_type} in {entries:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn error_code(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (
        status,
        body["code"].as_str().unwrap_or_default().to_string(),
    )
}

#[tokio::test]
async fn a_signed_webhook_is_answered_at_once_and_shows_in_the_orders_timeline() {
    let app = spawn(2_000).await;
    app.place_order("order-wh-e2e-1", 12_000).await;
    let body =
        json!({"type": "shipment.delivered", "data": {"orderId": "order-wh-e2e-1"}}).to_string();
    let now = unix_now();

    let first = send_standard(&app, "msg_e2e_1", now, &body, STANDARD_SECRET).await;
    assert_eq!(first.status().as_u16(), 200);
    let first: Value = first.json().await.unwrap();
    assert_eq!(
        first,
        json!({"received": true, "eventId": "msg_e2e_1", "duplicate": false})
    );
    let again = send_standard(&app, "msg_e2e_1", now, &body, STANDARD_SECRET).await;
    assert_eq!(again.status().as_u16(), 200, "a redelivery is acknowledged");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["duplicate"], true);

    let entries = timeline_with(&app, "order-wh-e2e-1", "WebhookApplied").await;
    let types: Vec<&str> = entries
        .iter()
        .map(|e| e["eventType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        vec![
            "OrderPlaced",
            "WebhookReceived",
            "WebhookVerified",
            "WebhookApplied"
        ],
        "the redelivery had no second effect"
    );
    assert_eq!(entries[1]["streamId"], "webhook-standard-msg_e2e_1");
    assert!(entries[2]["summary"]
        .as_str()
        .unwrap()
        .contains("standard_webhooks signature"));
}

#[tokio::test]
async fn forged_stale_oversized_and_unknown_deliveries_get_stable_4xx_codes() {
    let app = spawn(2_000).await;
    let body = json!({"type": "x.y", "data": {}}).to_string();
    let now = unix_now();
    let forged = send_standard(
        &app,
        "msg_forged",
        now,
        &body,
        "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    )
    .await;
    assert_eq!(
        error_code(forged).await,
        (400, "E_WEBHOOK_SIGNATURE_MISMATCH".into())
    );
    let stale = send_standard(&app, "msg_stale", now - 600, &body, STANDARD_SECRET).await;
    assert_eq!(
        error_code(stale).await,
        (400, "E_WEBHOOK_TIMESTAMP_OUT_OF_TOLERANCE".into())
    );
    let unsigned = app
        .client
        .post(app.url("/v1/webhooks/standard"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(unsigned).await,
        (400, "E_WEBHOOK_SIGNATURE_MISSING".into())
    );
    let unknown = app
        .client
        .post(app.url("/v1/webhooks/nope"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(unknown).await,
        (404, "E_WEBHOOK_PROVIDER_UNKNOWN".into())
    );
    let huge = app
        .client
        .post(app.url("/v1/webhooks/standard"))
        .body(vec![b' '; 300 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(huge).await, (413, "E_BODY_TOO_LARGE".into()));
    // No Stripe secret is configured: refused as payledger's problem, so Stripe retries later.
    let stripe = app
        .client
        .post(app.url("/v1/webhooks/stripe"))
        .header(
            "stripe-signature",
            format!("t={now},v1={}", "ab".repeat(32)),
        )
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(stripe).await,
        (503, "E_WEBHOOK_VERIFIER_MISCONFIGURED".into())
    );

    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_inbox")
        .fetch_one(&app.app_pool)
        .await
        .unwrap();
    assert_eq!(stored, 0);
    let recorded: i64 =
        sqlx::query_scalar("SELECT coalesce(sum(count), 0)::bigint FROM webhook_rejections")
            .fetch_one(&app.app_pool)
            .await
            .unwrap();
    assert_eq!(recorded, 5, "every refusal of a known provider is recorded");
}

#[tokio::test]
async fn an_unsigned_toss_webhook_settles_an_unknown_outcome_from_the_providers_answer() {
    let app = spawn(300).await;
    app.place_order("order-wh-e2e-toss", 25_000).await;
    let confirm = app
        .confirm(
            "order-wh-e2e-toss",
            "sandbox_timeout_after_charge_e2e",
            25_000,
        )
        .await;
    assert_eq!(confirm.status().as_u16(), 202, "outcome unknown");

    let body =
        json!({"eventType": "PAYMENT_STATUS_CHANGED", "createdAt": "2026-01-01T00:00:00.000000",
        "data": {"paymentKey": "sandbox_timeout_after_charge_e2e", "orderId": "order-wh-e2e-toss",
                 "status": "ABORTED"}})
        .to_string();
    let response = app
        .client
        .post(app.url("/v1/webhooks/toss"))
        .header("content-type", "application/json")
        .header("tosspayments-webhook-transmission-id", "wh_e2e_toss_1")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);

    let entries = timeline_with(&app, "order-wh-e2e-toss", "WebhookApplied").await;
    let order: Value = app
        .get("/v1/orders/order-wh-e2e-toss")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        order["status"], "PAID",
        "the provider's answer, not the body's ABORTED"
    );
    let applied = entries
        .iter()
        .find(|e| e["eventType"] == "WebhookApplied")
        .unwrap();
    assert!(
        applied["summary"].as_str().unwrap().contains("Settled"),
        "{applied}"
    );
    assert!(entries
        .iter()
        .any(|e| e["eventType"] == "PaymentCaptured" && e["data"]["source"] == "reconciler"));
}

#[tokio::test]
async fn dead_letters_are_listed_and_replayed_by_admins_only() {
    let app = spawn(2_000).await;
    let list = app
        .get_as(&app.admin_key, "/v1/admin/webhooks/dead-letters")
        .await;
    assert_eq!(list.status().as_u16(), 200);
    let list: Value = list.json().await.unwrap();
    assert_eq!(list["deadLetters"], json!([]));
    let outbound = app
        .get_as(
            &app.admin_key,
            "/v1/admin/notifications/dead-letters?limit=10",
        )
        .await;
    assert_eq!(outbound.status().as_u16(), 200);
    let by_client = app
        .get_as(&app.client_key, "/v1/admin/webhooks/dead-letters")
        .await;
    assert_eq!(by_client.status().as_u16(), 403);
    let missing = app
        .post_as(
            &app.admin_key,
            "/v1/admin/webhooks/dead-letters/999/replay",
            &json!({}),
        )
        .await;
    assert_eq!(
        error_code(missing).await,
        (404, "E_DEAD_LETTER_NOT_FOUND".into())
    );
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
