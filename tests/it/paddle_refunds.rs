//! A refund asked through payledger for an order paid with Paddle (issue 15): payledger submits
//! a `refund` adjustment through Paddle's adjustments API; the ledger shows the refund pending
//! until Paddle's `adjustment.updated` says approved (refunded as asked, credits clawed back,
//! journal posted) or rejected (nothing moves).

use crate::paddle::{
    account_balance, buy_credits, deliveries_settled, paddle, paid_credit_order, spawn,
    subscribed_member, timeline, wallet_balance,
};
use payledger_tests::TestApp;
use serde_json::{json, Value};
use std::time::Duration;

async fn ask_refund(app: &TestApp, order_id: &str, key: &str, body: Value) -> (u16, Value) {
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

async fn paddle_adjustments(app: &TestApp, txn: &str) -> Vec<Value> {
    let listed: Value = reqwest::Client::new()
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
    listed["data"].as_array().cloned().unwrap_or_default()
}

async fn order(app: &TestApp, order_id: &str) -> Value {
    app.get(&format!("/v1/orders/{order_id}"))
        .await
        .json()
        .await
        .unwrap()
}

/// Polls the timeline until it holds `text`.
async fn timeline_until(app: &TestApp, order_id: &str, text: &str) -> String {
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

#[tokio::test]
async fn a_refund_through_payledger_is_a_paddle_adjustment_pending_until_paddle_decides() {
    let app = spawn().await;
    subscribed_member(&app).await;
    let order_id = "order-paddle-asked-refund";
    let txn = paid_credit_order(&app, order_id).await;
    let (status, body) = buy_credits(&app, "buy-asked", order_id).await;
    assert_eq!(status, 201, "{body}");

    // Asked: Paddle holds a refund adjustment for approval; nothing is refunded yet.
    let (status, asked) = ask_refund(
        &app,
        order_id,
        "refund-key-1",
        json!({"reason": "changed my mind"}),
    )
    .await;
    assert_eq!(status, 202, "{asked}");
    assert_eq!(asked["status"], "AWAITING_PROVIDER", "{asked}");
    let first = asked["providerRefundId"].as_str().unwrap().to_owned();
    assert!(first.starts_with("adj_"), "{asked}");
    let at_paddle = paddle_adjustments(&app, &txn).await;
    assert_eq!(at_paddle.len(), 1, "{at_paddle:?}");
    assert_eq!(at_paddle[0]["id"], first.as_str());
    assert_eq!(at_paddle[0]["action"], "refund");
    assert_eq!(at_paddle[0]["status"], "pending_approval");
    assert_eq!(at_paddle[0]["totals"]["total"], "1000");

    // The same Idempotency-Key: the original answer, and still one adjustment at Paddle.
    let (status, again) = ask_refund(
        &app,
        order_id,
        "refund-key-1",
        json!({"reason": "changed my mind"}),
    )
    .await;
    assert!(status == 200 || status == 202, "{status} {again}");
    assert_eq!(again["providerRefundId"], first.as_str(), "{again}");
    assert_eq!(paddle_adjustments(&app, &txn).await.len(), 1);
    // Paddle itself refuses a second refund request while one is open.
    let duplicate = reqwest::Client::new()
        .post(format!("{}/adjustments", app.sandbox.paddle_base_url()))
        .bearer_auth(payledger_sandbox::DEFAULT_PADDLE_API_KEY)
        .json(
            &json!({"action": "refund", "transaction_id": txn, "reason": "again", "type": "full"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(duplicate.status().as_u16(), 400);
    let duplicate: Value = duplicate.json().await.unwrap();
    assert_eq!(
        duplicate["error"]["code"], "adjustment_pending_refund_request",
        "{duplicate}"
    );
    deliveries_settled(&app).await;
    let pending = order(&app, order_id).await;
    assert_eq!(pending["status"], "PAID", "{pending}");
    assert_eq!(pending["refundedAmount"], 0, "{pending}");
    assert_eq!(
        pending["refundableAmount"], 0,
        "held while pending: {pending}"
    );
    assert_eq!(wallet_balance(&app, "cust_1").await, 100);
    let text = timeline(&app, order_id).await;
    assert!(
        text.contains(&format!("submitted to paddle as {first}")),
        "{text}"
    );

    // Rejected by Paddle: the refund fails, the held amount is free again, nothing moves.
    paddle(
        &app,
        &format!("/sandbox/adjustments/{first}/reject"),
        json!({}),
    )
    .await;
    timeline_until(&app, order_id, "failed: PADDLE_REFUND_REJECTED").await;
    deliveries_settled(&app).await;
    let after_reject = order(&app, order_id).await;
    assert_eq!(after_reject["refundedAmount"], 0, "{after_reject}");
    assert_eq!(after_reject["refundableAmount"], 1000, "{after_reject}");
    assert_eq!(wallet_balance(&app, "cust_1").await, 100);

    // Asked again and approved: refunded as asked, the credits clawed back.
    let (status, second) = ask_refund(
        &app,
        order_id,
        "refund-key-2",
        json!({"reason": "duplicate purchase"}),
    )
    .await;
    assert_eq!(status, 202, "{second}");
    let second_id = second["providerRefundId"].as_str().unwrap().to_owned();
    assert_ne!(second_id, first);
    paddle(
        &app,
        &format!("/sandbox/adjustments/{second_id}/approve"),
        json!({}),
    )
    .await;
    let completed = timeline_until(
        &app,
        order_id,
        &format!("refund {} completed", second["refundId"].as_str().unwrap()),
    )
    .await;
    assert!(
        !completed.contains("not asked by payledger"),
        "payledger's own refund, not a dashboard one: {completed}"
    );
    let mut balance = -1;
    for _ in 0..100 {
        balance = wallet_balance(&app, "cust_1").await;
        if balance == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(balance, 0, "the credits are clawed back");
    let refunded = order(&app, order_id).await;
    assert_eq!(refunded["status"], "REFUNDED", "{refunded}");
    assert_eq!(refunded["refundedAmount"], 1000, "{refunded}");

    // Paddle's decisions delivered again record nothing new.
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
    let decisions: Vec<String> = notifications["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["type"] == "adjustment.updated")
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(decisions.len(), 2, "{notifications}");
    for id in decisions.iter().chain(decisions.iter()) {
        paddle(&app, &format!("/notifications/{id}/replay"), json!({})).await;
    }
    deliveries_settled(&app).await;
    let after = timeline(&app, order_id).await;
    assert_eq!(after.matches(" completed: ").count(), 1, "{after}");
    assert_eq!(
        after.matches("failed: PADDLE_REFUND_REJECTED").count(),
        1,
        "{after}"
    );
    let again = order(&app, order_id).await;
    assert_eq!(again["refundedAmount"], 1000, "refunded once: {again}");
    assert_eq!(wallet_balance(&app, "cust_1").await, 0);

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
    assert_eq!(account_balance(&trial, "payee_payable"), 0, "{trial}");
}

#[tokio::test]
async fn a_refund_while_paddle_is_down_is_a_clear_error_and_refunds_nothing() {
    let app = spawn().await;
    let order_id = "order-paddle-refund-down";
    let txn = paid_credit_order(&app, order_id).await;
    paddle(&app, "/sandbox/outage", json!({"requests": 20})).await;
    let (status, failed) = ask_refund(&app, order_id, "down-1", json!({"reason": "r"})).await;
    assert!(
        (400..600).contains(&status) && status != 500,
        "{status} {failed}"
    );
    assert_eq!(failed["code"], "E_REFUND_REFUSED", "{failed}");
    paddle(&app, "/sandbox/outage", json!({"requests": 0})).await;
    let mut unchanged = Value::Null;
    for _ in 0..100 {
        unchanged = order(&app, order_id).await;
        if unchanged["refundPendingAmount"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(unchanged["refundedAmount"], 0, "{unchanged}");
    assert_eq!(unchanged["refundableAmount"], 1000, "{unchanged}");
    assert!(paddle_adjustments(&app, &txn).await.is_empty());

    // Paddle up again (the connector's circuit may still be open: retried, as a client would).
    let mut last = (0, Value::Null);
    for attempt in 0..60 {
        last = ask_refund(
            &app,
            order_id,
            &format!("up-{attempt}"),
            json!({"reason": "r"}),
        )
        .await;
        if last.0 == 202 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(last.0, 202, "{}", last.1);
    assert_eq!(paddle_adjustments(&app, &txn).await.len(), 1);
}

#[tokio::test]
async fn an_approval_whose_notification_never_arrives_is_found_by_the_reconciler() {
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
    // Paddle signs with another secret than payledger knows: every notification is refused.
    app.sandbox
        .add_paddle_webhook_destination(
            &format!("{}/v1/webhooks/paddle", app.address),
            "pdl_ntfset_not_the_one_payledger_has",
        )
        .unwrap();
    let order_id = "order-paddle-lost-approval";
    paid_credit_order(&app, order_id).await;
    let (status, asked) = ask_refund(&app, order_id, "lost-1", json!({"reason": "r"})).await;
    assert_eq!(status, 202, "{asked}");
    let adjustment = asked["providerRefundId"].as_str().unwrap().to_owned();
    paddle(
        &app,
        &format!("/sandbox/adjustments/{adjustment}/approve"),
        json!({}),
    )
    .await;
    let text = timeline_until(
        &app,
        order_id,
        &format!("refund {} completed", asked["refundId"].as_str().unwrap()),
    )
    .await;
    assert!(!text.contains("not asked by payledger"), "{text}");
    let mut refunded = Value::Null;
    for _ in 0..100 {
        refunded = order(&app, order_id).await;
        if refunded["refundedAmount"] == 1000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(refunded["refundedAmount"], 1000, "{refunded}");
    assert_eq!(refunded["refundPendingAmount"], 0, "{refunded}");
    let completed: Vec<(String,)> = sqlx::query_as(
        "SELECT payload::text FROM events WHERE stream_id = $1 AND event_type = 'RefundCompleted'",
    )
    .bind(format!("order-{order_id}"))
    .fetch_all(&app.app_pool)
    .await
    .unwrap();
    assert_eq!(completed.len(), 1);
    assert!(
        completed[0].0.contains("\"source\": \"reconciler\""),
        "{completed:?}"
    );
}

#[tokio::test]
async fn a_rejection_whose_notification_never_arrives_is_found_by_the_reconciler() {
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
    // Paddle signs with another secret than payledger knows: every notification is refused.
    app.sandbox
        .add_paddle_webhook_destination(
            &format!("{}/v1/webhooks/paddle", app.address),
            "pdl_ntfset_not_the_one_payledger_has",
        )
        .unwrap();
    let order_id = "order-paddle-lost-rejection";
    paid_credit_order(&app, order_id).await;
    let (status, asked) = ask_refund(&app, order_id, "lost-rej-1", json!({"reason": "r"})).await;
    assert_eq!(status, 202, "{asked}");
    let adjustment = asked["providerRefundId"].as_str().unwrap().to_owned();
    let refund_id = asked["refundId"].as_str().unwrap().to_owned();
    paddle(
        &app,
        &format!("/sandbox/adjustments/{adjustment}/reject"),
        json!({}),
    )
    .await;
    timeline_until(&app, order_id, "failed: PADDLE_REFUND_REJECTED").await;
    let mut released = Value::Null;
    for _ in 0..100 {
        released = order(&app, order_id).await;
        if released["refundPendingAmount"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(released["refundPendingAmount"], 0, "{released}");
    assert_eq!(released["refundedAmount"], 0, "nothing moved: {released}");
    assert_eq!(released["refundableAmount"], 1000, "{released}");
    let failed_events = || async {
        let failed: Vec<(String,)> = sqlx::query_as(
            "SELECT payload::text FROM events WHERE stream_id = $1 AND event_type = 'RefundFailed'",
        )
        .bind(format!("order-{order_id}"))
        .fetch_all(&app.app_pool)
        .await
        .unwrap();
        failed
    };
    let failed = failed_events().await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].0.contains(&refund_id), "{failed:?}");
    assert!(
        failed[0].0.contains("\"source\": \"reconciler\""),
        "{failed:?}"
    );
    assert!(failed[0].0.contains("PADDLE_REFUND_REJECTED"), "{failed:?}");

    // The lost notification arrives after all (sent again to a destination payledger
    // verifies): applied, it records nothing new.
    app.sandbox
        .add_paddle_webhook_destination(
            &format!("{}/v1/webhooks/paddle", app.address),
            crate::paddle::SECRET,
        )
        .unwrap();
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
    let decisions: Vec<String> = notifications["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["type"] == "adjustment.updated")
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(decisions.len(), 1, "{notifications}");
    paddle(
        &app,
        &format!("/notifications/{}/replay", decisions[0]),
        json!({}),
    )
    .await;
    let mut applied = 0i64;
    for _ in 0..150 {
        applied = sqlx::query_scalar(
            "SELECT count(*) FROM webhook_inbox WHERE provider = 'paddle' \
             AND event_type = 'adjustment.updated' AND status = 'applied'",
        )
        .fetch_one(&app.app_pool)
        .await
        .unwrap();
        if applied > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(applied, 1, "the late notification is applied");
    assert_eq!(failed_events().await.len(), 1, "recorded once");
    let after = timeline(&app, order_id).await;
    assert_eq!(
        after.matches("failed: PADDLE_REFUND_REJECTED").count(),
        1,
        "{after}"
    );
}
