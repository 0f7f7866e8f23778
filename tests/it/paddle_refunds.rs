//! A refund asked through payledger for an order paid with Paddle (issue 15): payledger submits
//! a `refund` adjustment through Paddle's adjustments API; the ledger shows the refund pending
//! until Paddle's `adjustment.updated` says approved (refunded as asked, credits clawed back,
//! journal posted) or rejected (nothing moves).

use crate::paddle_steps::{
    account_balance, ask_refund, balanced_trial_balance, buy_credits, deliveries_settled,
    eventually, notification_ids, notifications_arrive_again, order, order_events,
    paddle_adjustments, paddle_approves, paddle_down_for, paddle_rejects, paid_credit_order,
    refund_asked, replay_notification, spawn, spawn_with_lost_notifications, subscribed_member,
    timeline, timeline_until, wallet_balance,
};
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test]
async fn a_refund_through_payledger_is_a_paddle_adjustment_pending_until_paddle_decides() {
    let app = spawn().await;
    subscribed_member(&app).await;
    let order_id = "order-paddle-asked-refund";
    let txn = paid_credit_order(&app, order_id).await;
    let (status, body) = buy_credits(&app, "buy-asked", order_id).await;
    assert_eq!(status, 201, "{body}");

    // Asked: Paddle holds a refund adjustment for approval; nothing is refunded yet.
    let asked = refund_asked(&app, order_id, "refund-key-1").await;
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
    paddle_rejects(&app, &first, json!({})).await;
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
    paddle_approves(&app, &second_id, json!({})).await;
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
    let balance = eventually(|| wallet_balance(&app, "cust_1"), |b| *b == 0).await;
    assert_eq!(balance, 0, "the credits are clawed back");
    let refunded = order(&app, order_id).await;
    assert_eq!(refunded["status"], "REFUNDED", "{refunded}");
    assert_eq!(refunded["refundedAmount"], 1000, "{refunded}");

    // Paddle's decisions delivered again record nothing new.
    deliveries_settled(&app).await;
    let decisions = notification_ids(&app, "adjustment.updated").await;
    assert_eq!(decisions.len(), 2, "{decisions:?}");
    for id in decisions.iter().chain(decisions.iter()) {
        replay_notification(&app, id).await;
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

    let trial = balanced_trial_balance(&app).await;
    assert_eq!(account_balance(&trial, "payee_payable"), 0, "{trial}");
}

#[tokio::test]
async fn a_refund_while_paddle_is_down_is_a_clear_error_and_refunds_nothing() {
    let app = spawn().await;
    let order_id = "order-paddle-refund-down";
    let txn = paid_credit_order(&app, order_id).await;
    paddle_down_for(&app, 20).await;
    let (status, failed) = ask_refund(&app, order_id, "down-1", json!({"reason": "r"})).await;
    assert!(
        (400..600).contains(&status) && status != 500,
        "{status} {failed}"
    );
    assert_eq!(failed["code"], "E_REFUND_REFUSED", "{failed}");
    paddle_down_for(&app, 0).await;
    let unchanged = eventually(|| order(&app, order_id), |o| o["refundPendingAmount"] == 0).await;
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
    let app = spawn_with_lost_notifications().await;
    let order_id = "order-paddle-lost-approval";
    paid_credit_order(&app, order_id).await;
    let (status, asked) = ask_refund(&app, order_id, "lost-1", json!({"reason": "r"})).await;
    assert_eq!(status, 202, "{asked}");
    let adjustment = asked["providerRefundId"].as_str().unwrap().to_owned();
    paddle_approves(&app, &adjustment, json!({})).await;
    let text = timeline_until(
        &app,
        order_id,
        &format!("refund {} completed", asked["refundId"].as_str().unwrap()),
    )
    .await;
    assert!(!text.contains("not asked by payledger"), "{text}");
    let refunded = eventually(|| order(&app, order_id), |o| o["refundedAmount"] == 1000).await;
    assert_eq!(refunded["refundedAmount"], 1000, "{refunded}");
    assert_eq!(refunded["refundPendingAmount"], 0, "{refunded}");
    let completed = order_events(&app, order_id, "RefundCompleted").await;
    assert_eq!(completed.len(), 1);
    assert_eq!(completed[0]["source"], "reconciler", "{completed:?}");
}

#[tokio::test]
async fn a_rejection_whose_notification_never_arrives_is_found_by_the_reconciler() {
    let app = spawn_with_lost_notifications().await;
    let order_id = "order-paddle-lost-rejection";
    paid_credit_order(&app, order_id).await;
    let (status, asked) = ask_refund(&app, order_id, "lost-rej-1", json!({"reason": "r"})).await;
    assert_eq!(status, 202, "{asked}");
    let adjustment = asked["providerRefundId"].as_str().unwrap().to_owned();
    let refund_id = asked["refundId"].as_str().unwrap().to_owned();
    paddle_rejects(&app, &adjustment, json!({})).await;
    timeline_until(&app, order_id, "failed: PADDLE_REFUND_REJECTED").await;
    let released = eventually(|| order(&app, order_id), |o| o["refundPendingAmount"] == 0).await;
    assert_eq!(released["refundPendingAmount"], 0, "{released}");
    assert_eq!(released["refundedAmount"], 0, "nothing moved: {released}");
    assert_eq!(released["refundableAmount"], 1000, "{released}");
    let failed = order_events(&app, order_id, "RefundFailed").await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["refundId"], refund_id.as_str(), "{failed:?}");
    assert_eq!(failed[0]["source"], "reconciler", "{failed:?}");
    assert_eq!(
        failed[0]["failure"]["providerCode"], "PADDLE_REFUND_REJECTED",
        "{failed:?}"
    );

    // The lost notification arrives after all (sent again to a destination payledger
    // verifies): applied, it records nothing new.
    notifications_arrive_again(&app);
    let decisions = notification_ids(&app, "adjustment.updated").await;
    assert_eq!(decisions.len(), 1, "{decisions:?}");
    replay_notification(&app, &decisions[0]).await;
    let applied: i64 = eventually(
        || async {
            sqlx::query_scalar(
                "SELECT count(*) FROM webhook_inbox WHERE provider = 'paddle' \
                 AND event_type = 'adjustment.updated' AND status = 'applied'",
            )
            .fetch_one(&app.app_pool)
            .await
            .unwrap()
        },
        |applied| *applied > 0,
    )
    .await;
    assert_eq!(applied, 1, "the late notification is applied");
    assert_eq!(
        order_events(&app, order_id, "RefundFailed").await.len(),
        1,
        "recorded once"
    );
    let after = timeline(&app, order_id).await;
    assert_eq!(
        after.matches("failed: PADDLE_REFUND_REJECTED").count(),
        1,
        "{after}"
    );
}
