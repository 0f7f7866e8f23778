//! A refund asked through payledger for a Paddle order, whose adjustment Paddle decides with
//! another amount or currency than asked: the ledger records the difference once as a
//! `RefundDiscrepancyRecorded` on the order (from the reconciler's lookup, or from the
//! notification, approval or rejection alike), never completes or fails the refund with it, and
//! no money moves.

use crate::paddle::{deliveries_settled, paddle, paid_credit_order, spawn, timeline};
use payledger_tests::TestApp;
use serde_json::{json, Value};
use std::time::Duration;

pub(crate) async fn ask_refund(app: &TestApp, order_id: &str, key: &str) -> Value {
    let response = app
        .client
        .post(format!("{}/v1/orders/{order_id}/refunds", app.address))
        .bearer_auth(&app.client_key)
        .header("Idempotency-Key", key)
        .json(&json!({"reason": "changed my mind"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    response.json().await.unwrap()
}

async fn order(app: &TestApp, order_id: &str) -> Value {
    app.get(&format!("/v1/orders/{order_id}"))
        .await
        .json()
        .await
        .unwrap()
}

/// The payloads of the order's events of `event_type`, from the log.
pub(crate) async fn events_of(app: &TestApp, order_id: &str, event_type: &str) -> Vec<Value> {
    let rows: Vec<(Value,)> = sqlx::query_as(
        "SELECT payload FROM events WHERE stream_id = $1 AND event_type = $2 ORDER BY global_position",
    )
    .bind(format!("order-{order_id}"))
    .bind(event_type)
    .fetch_all(&app.app_pool)
    .await
    .unwrap();
    rows.into_iter().map(|(payload,)| payload).collect()
}

/// Polls the timeline until it holds `text`.
pub(crate) async fn timeline_until(app: &TestApp, order_id: &str, text: &str) -> String {
    let mut last = String::new();
    for _ in 0..150 {
        last = timeline(app, order_id).await;
        if last.contains(text) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the timeline of {order_id} never said {text:?}: {last}");
}

/// Polls the order (its read model) until `check` holds.
pub(crate) async fn order_until(
    app: &TestApp,
    order_id: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let mut last = Value::Null;
    for _ in 0..150 {
        last = order(app, order_id).await;
        if check(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the order stayed {last}");
}

/// The trial balance's accounts once the journal has caught up with everything recorded.
async fn trial_accounts(app: &TestApp) -> Value {
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
    trial["accounts"].clone()
}

#[tokio::test]
async fn an_approval_of_another_amount_found_by_the_reconciler_is_recorded_once_and_refunds_nothing(
) {
    use payledger_webhook_relay::{InboundConfig, Provider, WebhookSettings};
    use payledger_webhooks::WebhookSecret;
    let app = payledger_tests::spawn_app_with(payledger_tests::SpawnOptions {
        reconcile_interval_ms: 200,
        reconcile_after_ms: 0,
        webhooks: WebhookSettings {
            inbound: InboundConfig::default()
                .with_secrets(
                    Provider::Paddle,
                    vec![WebhookSecret::new(crate::paddle::SECRET)],
                )
                .unwrap(),
            ..WebhookSettings::default()
        },
        ..payledger_tests::SpawnOptions::default()
    })
    .await;
    // Paddle signs with another secret than payledger knows: every notification is refused, so
    // only the reconciler's lookup (`GET /adjustments?id=…`) learns Paddle's decision.
    app.sandbox
        .add_paddle_webhook_destination(
            &format!("{}/v1/webhooks/paddle", app.address),
            "pdl_ntfset_not_the_one_payledger_has",
        )
        .unwrap();
    let order_id = "order-paddle-refund-differs";
    paid_credit_order(&app, order_id).await;
    let asked = ask_refund(&app, order_id, "differs-1").await;
    let adjustment = asked["providerRefundId"].as_str().unwrap().to_owned();
    let refund_id = asked["refundId"].as_str().unwrap().to_owned();
    order_until(&app, order_id, |o| o["refundPendingAmount"] == 1000).await;
    let before = trial_accounts(&app).await;

    // Paddle approves the adjustment for 999, not the 1 000 asked (a planted fault).
    let reviewed = paddle(
        &app,
        &format!("/sandbox/adjustments/{adjustment}/approve"),
        json!({"total": "999"}),
    )
    .await;
    assert_eq!(reviewed["status"], "approved", "{reviewed}");
    let text = timeline_until(
        &app,
        order_id,
        &format!("ATTENTION: paddle reports refund request {adjustment} (approved)"),
    )
    .await;
    assert!(text.contains("amount 999 (payledger 1000)"), "{text}");
    // Let the reconciler pass again and again (every 200 ms): it looks the adjustment up each
    // time and finds the same mismatch, which records nothing new.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let recorded = events_of(&app, order_id, "RefundDiscrepancyRecorded").await;
    assert_eq!(recorded.len(), 1, "recorded once: {recorded:?}");
    let differs = &recorded[0];
    assert_eq!(differs["refundId"], refund_id.as_str(), "{differs}");
    assert_eq!(
        differs["providerRefundId"],
        adjustment.as_str(),
        "{differs}"
    );
    assert_eq!(differs["providerStatus"], "approved", "{differs}");
    assert_eq!(differs["source"], "reconciler", "{differs}");
    assert_eq!(
        differs["differences"],
        json!([{"fact": "amount", "expected": "1000", "provider": "999"}]),
        "{differs}"
    );

    // The refund is not completed: nothing refunded, the amount still held, the order flags it.
    assert!(events_of(&app, order_id, "RefundCompleted")
        .await
        .is_empty());
    assert!(events_of(&app, order_id, "RefundFailed").await.is_empty());
    let shown = order_until(&app, order_id, |o| o["refundsUnderReview"] == 1).await;
    assert_eq!(shown["status"], "PAID", "{shown}");
    assert_eq!(shown["refundedAmount"], 0, "{shown}");
    assert_eq!(shown["refundPendingAmount"], 1000, "{shown}");
    assert_eq!(shown["refundableAmount"], 0, "{shown}");
    // The books did not move.
    assert_eq!(trial_accounts(&app).await, before);
}

#[tokio::test]
async fn a_rejection_in_another_currency_is_recorded_once_and_does_not_fail_the_refund() {
    let app = spawn().await;
    let order_id = "order-paddle-reject-differs";
    paid_credit_order(&app, order_id).await;
    let asked = ask_refund(&app, order_id, "reject-differs-1").await;
    let adjustment = asked["providerRefundId"].as_str().unwrap().to_owned();
    deliveries_settled(&app).await;
    let before = trial_accounts(&app).await;

    paddle(
        &app,
        &format!("/sandbox/adjustments/{adjustment}/reject"),
        json!({"currency_code": "EUR"}),
    )
    .await;
    let text = timeline_until(
        &app,
        order_id,
        &format!("ATTENTION: paddle reports refund request {adjustment} (rejected)"),
    )
    .await;
    assert!(text.contains("currency EUR (payledger USD)"), "{text}");
    deliveries_settled(&app).await;

    // The same notification delivered again (twice): nothing new.
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
    let decision = notifications["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["type"] == "adjustment.updated")
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .expect("the rejection was notified");
    for _ in 0..2 {
        paddle(
            &app,
            &format!("/notifications/{decision}/replay"),
            json!({}),
        )
        .await;
    }
    deliveries_settled(&app).await;
    let recorded = events_of(&app, order_id, "RefundDiscrepancyRecorded").await;
    assert_eq!(recorded.len(), 1, "recorded once: {recorded:?}");
    assert_eq!(recorded[0]["source"], "webhook", "{recorded:?}");
    assert_eq!(
        recorded[0]["differences"],
        json!([{"fact": "currency", "expected": "USD", "provider": "EUR"}]),
        "{recorded:?}"
    );
    // Not a failed refund: the amount stays held, nothing is released or refunded.
    assert!(events_of(&app, order_id, "RefundFailed").await.is_empty());
    let shown = order_until(&app, order_id, |o| o["refundsUnderReview"] == 1).await;
    assert_eq!(shown["refundPendingAmount"], 1000, "{shown}");
    assert_eq!(shown["refundedAmount"], 0, "{shown}");
    assert_eq!(trial_accounts(&app).await, before);
}

/// Each account's net (debit − credit) in the trial balance, the ones that are not zero.
fn net_balances(accounts: &Value) -> Vec<(String, String, i64)> {
    let mut net: Vec<(String, String, i64)> = accounts
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["account"].as_str().unwrap_or_default().to_owned(),
                row["currency"].as_str().unwrap_or_default().to_owned(),
                row["debit"].as_i64().unwrap() - row["credit"].as_i64().unwrap(),
            )
        })
        .filter(|(_, _, net)| *net != 0)
        .collect();
    net.sort();
    net
}

#[tokio::test]
async fn a_refund_paddle_refuses_for_a_wrong_api_key_is_a_clear_error_and_refunds_nothing() {
    let app = spawn().await;
    let order_id = "order-paddle-refund-key";
    let txn = paid_credit_order(&app, order_id).await;
    deliveries_settled(&app).await;
    let before = net_balances(&trial_accounts(&app).await);

    // Paddle refuses payledger's API key from now on (wrong, revoked, or lacking a permission).
    paddle(&app, "/sandbox/api-key-refused", json!({"requests": 50})).await;
    let response = app
        .client
        .post(format!("{}/v1/orders/{order_id}/refunds", app.address))
        .bearer_auth(&app.client_key)
        .header("Idempotency-Key", "key-refused-1")
        .json(&json!({"reason": "changed my mind"}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let refused: Value = response.json().await.unwrap();
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["code"], "E_REFUND_REFUSED", "{refused}");
    assert_eq!(refused["providerCode"], "forbidden", "{refused}");
    let text = refused.to_string();
    assert!(
        !text.contains(payledger_sandbox::DEFAULT_PADDLE_API_KEY),
        "the key never reaches an answer: {text}"
    );
    paddle(&app, "/sandbox/api-key-refused", json!({"requests": 0})).await;

    // Nothing was refunded or held, Paddle holds no adjustment, and the books net to where
    // they were (the intent and its failure are on the order's record, for support).
    let unchanged = order_until(&app, order_id, |o| o["refundPendingAmount"] == 0).await;
    assert_eq!(unchanged["refundedAmount"], 0, "{unchanged}");
    assert_eq!(unchanged["refundableAmount"], 1000, "{unchanged}");
    assert_eq!(unchanged["status"], "PAID", "{unchanged}");
    let adjustments: Value = reqwest::Client::new()
        .get(format!(
            "{}/adjustments?transaction_id={txn}",
            app.sandbox.paddle_base_url()
        ))
        .bearer_auth(payledger_sandbox::DEFAULT_PADDLE_API_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(adjustments["data"], json!([]), "{adjustments}");
    assert!(events_of(&app, order_id, "RefundCompleted")
        .await
        .is_empty());
    assert!(events_of(&app, order_id, "RefundAwaitingProvider")
        .await
        .is_empty());
    let failed = events_of(&app, order_id, "RefundFailed").await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(
        failed[0]["failure"]["providerCode"], "forbidden",
        "{failed:?}"
    );
    assert_eq!(net_balances(&trial_accounts(&app).await), before);
}

/// POST the resolution of `refund_id`'s discrepancy as the holder of `key`.
async fn resolve_as(
    app: &TestApp,
    key: &str,
    order_id: &str,
    refund_id: &str,
    idempotency_key: Option<&str>,
    body: &Value,
) -> (u16, Value) {
    let mut request = app
        .client
        .post(format!(
            "{}/v1/orders/{order_id}/refunds/{refund_id}/discrepancy/resolve",
            app.address
        ))
        .bearer_auth(key)
        .json(body);
    if let Some(idempotency_key) = idempotency_key {
        request = request.header("Idempotency-Key", idempotency_key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_admin_resolves_a_refund_discrepancy_with_a_note_and_nothing_moves() {
    let app = spawn().await;
    let order_id = "order-paddle-discrepancy-resolved";
    paid_credit_order(&app, order_id).await;
    let asked = ask_refund(&app, order_id, "resolve-differs-1").await;
    let adjustment = asked["providerRefundId"].as_str().unwrap().to_owned();
    let refund_id = asked["refundId"].as_str().unwrap().to_owned();
    deliveries_settled(&app).await;
    // Nothing recorded yet: nothing to resolve.
    let note =
        json!({"resolution": "acknowledged", "note": "raised with Paddle support, ticket 42"});
    let (status, early) = resolve_as(&app, &app.admin_key, order_id, &refund_id, None, &note).await;
    assert_eq!(status, 409, "{early}");
    assert_eq!(early["code"], "E_REFUND_DISCREPANCY_NOT_OPEN", "{early}");

    // Paddle rejects the adjustment in EUR, not USD (a planted fault).
    paddle(
        &app,
        &format!("/sandbox/adjustments/{adjustment}/reject"),
        json!({"currency_code": "EUR"}),
    )
    .await;
    timeline_until(
        &app,
        order_id,
        &format!("ATTENTION: paddle reports refund request {adjustment} (rejected)"),
    )
    .await;
    deliveries_settled(&app).await;
    order_until(&app, order_id, |o| o["refundsUnderReview"] == 1).await;
    let before = trial_accounts(&app).await;
    let path = format!("/v1/orders/{order_id}/refunds/{refund_id}/discrepancy/resolve");

    // Not an admin's to resolve: a client key and a support key are refused.
    for key in [&app.client_key, &app.support_key] {
        let refused = app.post_as(key, &path, &note).await;
        assert_eq!(refused.status().as_u16(), 403);
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["code"], "E_FORBIDDEN", "{body}");
    }
    // Bad bodies: 400 with a stable code, nothing recorded.
    for (body, code, field) in [
        (
            json!({"resolution": "completed", "note": "x"}),
            "E_INVALID_FIELD",
            Some("resolution"),
        ),
        (
            json!({"resolution": "acknowledged", "note": "  "}),
            "E_INVALID_FIELD",
            Some("note"),
        ),
        (
            json!({"resolution": "acknowledged", "note": "x".repeat(501)}),
            "E_INVALID_FIELD",
            Some("note"),
        ),
        (
            json!({"resolution": "acknowledged", "note": "x", "refundId": "r"}),
            "E_INVALID_JSON",
            None,
        ),
        (
            json!({"resolution": "acknowledged"}),
            "E_INVALID_JSON",
            None,
        ),
    ] {
        let (status, answer) =
            resolve_as(&app, &app.admin_key, order_id, &refund_id, None, &body).await;
        assert_eq!(status, 400, "{body} → {answer}");
        assert_eq!(answer["code"], code, "{body} → {answer}");
        if let Some(field) = field {
            assert_eq!(answer["field"], field, "{body} → {answer}");
        }
    }
    assert!(events_of(&app, order_id, "RefundDiscrepancyResolved")
        .await
        .is_empty());

    // The admin resolves it: 200, no longer under review, the refund still awaiting Paddle.
    let (status, resolved) = resolve_as(
        &app,
        &app.admin_key,
        order_id,
        &refund_id,
        Some("resolve-1"),
        &note,
    )
    .await;
    assert_eq!(status, 200, "{resolved}");
    assert!(resolved.get("refundsUnderReview").is_none(), "{resolved}");
    assert_eq!(resolved["refundPendingAmount"], 1000, "{resolved}");
    let recorded = events_of(&app, order_id, "RefundDiscrepancyResolved").await;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0]["refundId"], refund_id.as_str(), "{recorded:?}");
    assert_eq!(recorded[0]["providerRefundId"], adjustment.as_str());
    assert_eq!(recorded[0]["resolution"], "acknowledged");
    assert_eq!(recorded[0]["note"], "raised with Paddle support, ticket 42");
    assert!(
        recorded[0]["resolvedBy"]
            .as_str()
            .is_some_and(|a| a.starts_with("admin:")),
        "{recorded:?}"
    );
    let shown = order_until(&app, order_id, |o| o.get("refundsUnderReview").is_none()).await;
    assert_eq!(shown["status"], "PAID", "{shown}");
    assert_eq!(shown["refundedAmount"], 0, "{shown}");
    assert_eq!(shown["refundPendingAmount"], 1000, "{shown}");
    assert_eq!(shown["refundableAmount"], 0, "{shown}");
    let text = timeline_until(
        &app,
        order_id,
        &format!("discrepancy of refund {refund_id} (request {adjustment}) resolved by admin:"),
    )
    .await;
    assert!(
        text.contains("acknowledged: raised with Paddle support, ticket 42"),
        "{text}"
    );
    assert!(events_of(&app, order_id, "RefundCompleted")
        .await
        .is_empty());
    assert!(events_of(&app, order_id, "RefundFailed").await.is_empty());
    // The books did not move.
    assert_eq!(trial_accounts(&app).await, before);

    // The same request retried with its Idempotency-Key: the first answer again.
    let (status, replayed) = resolve_as(
        &app,
        &app.admin_key,
        order_id,
        &refund_id,
        Some("resolve-1"),
        &note,
    )
    .await;
    assert_eq!(status, 200, "{replayed}");
    // Resolving again: refused, nothing recorded.
    let (status, again) = resolve_as(
        &app,
        &app.admin_key,
        order_id,
        &refund_id,
        Some("resolve-2"),
        &note,
    )
    .await;
    assert_eq!(status, 409, "{again}");
    assert_eq!(again["code"], "E_REFUND_DISCREPANCY_NOT_OPEN", "{again}");
    assert_eq!(
        events_of(&app, order_id, "RefundDiscrepancyResolved")
            .await
            .len(),
        1
    );
    // An unknown refund of the order: 409, nothing recorded.
    let (status, unknown) =
        resolve_as(&app, &app.admin_key, order_id, "rf-unknown", None, &note).await;
    assert_eq!(status, 409, "{unknown}");
    assert_eq!(unknown["code"], "E_ORDER_STATE_CONFLICT", "{unknown}");
}
