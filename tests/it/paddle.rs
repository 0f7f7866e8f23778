//! Paddle Billing end to end over HTTP (issue 15): the sandbox's Paddle plays the checkout and
//! Paddle's own billing, and sends signed notifications to `POST /v1/webhooks/paddle`; payledger
//! confirms each against Paddle's API and moves the one subscription model and the membership.
//! The steps are in `paddle_steps`.

use crate::paddle_steps::{
    account_balance, balanced_trial_balance, buy_credits, checkout, deliveries_settled, eventually,
    membership, notification_ids, order_until, paddle, paddle_advances_the_period, paddle_approves,
    paddle_charges_back, paddle_down_for, paddle_get, paddle_refund_asked, paddle_rejects,
    paid_credit_order, replay_notification, spawn, spawn_with_clock, stream_events, subscribe,
    subscribed_member, subscription, subscription_until, timeline, wallet_balance,
};
use serde_json::{json, Value};
use std::time::Duration;

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
    let subscribed = subscribe(&app, "cust_1").await;
    let sub_id = subscribed.id;
    let period_end = subscribed.checkout["subscription"]["current_billing_period"]["ends_at"]
        .as_str()
        .unwrap()
        .to_owned();
    let started = subscribed.started;
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
    paddle_advances_the_period(&app, &sub_id).await;
    subscription_until(&app, &sub_id, "renewal recorded", |s| s["paidCycles"] == 2).await;

    // A failed renewal: past due, benefits kept; Paddle's dunning recovers it.
    paddle(
        &app,
        &format!("/sandbox/subscriptions/{sub_id}/advance"),
        json!({"card": payledger_sandbox::SANDBOX_DECLINE_CARD}),
    )
    .await;
    subscription_until(&app, &sub_id, "past due", |s| s["status"] == "past_due").await;
    assert_eq!(membership(&app, "cust_1").await, 1);
    paddle(
        &app,
        &format!("/sandbox/subscriptions/{sub_id}/dunning"),
        json!({"outcome": "recovered"}),
    )
    .await;
    // The paid transaction and Paddle's `subscription.updated` (active again) are two
    // deliveries: the ledger shows each as it arrives, so wait for both.
    let recovered = subscription_until(&app, &sub_id, "recovered", |s| {
        s["paidCycles"] == 3 && s["status"] == "active"
    })
    .await;
    assert_eq!(recovered["status"], "active");

    // A delivery replayed twice has one effect.
    deliveries_settled(&app).await;
    let before = subscription(&app, &sub_id).await["version"].clone();
    let completed = notification_ids(&app, "transaction.completed").await[0].clone();
    for _ in 0..2 {
        replay_notification(&app, &completed).await;
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
    let scheduled = subscription_until(&app, &sub_id, "cancel scheduled", |s| {
        s["cancelAtPeriodEnd"] == true
    })
    .await;
    assert_eq!(scheduled["cancelEffectiveAt"], scheduled["paidThrough"]);
    assert_eq!(membership(&app, "cust_1").await, 1);
    paddle_advances_the_period(&app, &sub_id).await;
    subscription_until(&app, &sub_id, "ended", |s| s["status"] == "ended").await;
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
    let dead = eventually(
        || async {
            app.get_as(&app.admin_key, "/v1/admin/webhooks/dead-letters")
                .await
                .json::<Value>()
                .await
                .unwrap()
        },
        |dead| {
            dead["deadLetters"]
                .as_array()
                .is_some_and(|d| !d.is_empty())
        },
    )
    .await;
    let text = dead.to_string();
    assert!(text.contains("unknown Paddle price"), "{text}");
    assert!(text.contains(price_id), "{text}");
    assert_eq!(membership(&app, "cust_2").await, 0);
}

#[tokio::test]
async fn a_cancel_through_payledger_asks_paddle_first_and_a_failed_call_records_nothing() {
    let app = spawn().await;
    let subscribed = subscribe(&app, "cust_1").await;
    let sub_id = subscribed.id;
    let started = subscribed.started;

    // Paddle down: the caller gets a clear error and the ledger is unchanged.
    paddle_down_for(&app, 10).await;
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
    paddle_down_for(&app, 0).await;
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
    let at_paddle = paddle_get(&app, &format!("/subscriptions/{sub_id}")).await;
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
    let rejected = paddle_refund_asked(&app, &txn, "changed my mind").await;
    assert_eq!(rejected["status"], "pending_approval");
    let rejected_id = rejected["id"].as_str().unwrap().to_owned();
    paddle_rejects(&app, &rejected_id, json!({})).await;
    deliveries_settled(&app).await;
    let order = order_until(&app, order_id, "paid", |o| o["status"] == "PAID").await;
    assert_eq!(order["refundedAmount"], 0, "{order}");
    assert_eq!(wallet_balance(&app, "cust_1").await, 100);

    // Pending, then approved: recorded against the order's payment, the credits clawed back.
    let asked = paddle_refund_asked(&app, &txn, "duplicate purchase").await;
    let adjustment_id = asked["id"].as_str().unwrap().to_owned();
    deliveries_settled(&app).await;
    let order = order_until(&app, order_id, "still paid", |o| o["status"] == "PAID").await;
    assert_eq!(
        order["refundedAmount"], 0,
        "pending is not refunded: {order}"
    );
    assert_eq!(wallet_balance(&app, "cust_1").await, 100);
    paddle_approves(&app, &adjustment_id, json!({})).await;
    let refunded = order_until(&app, order_id, "refunded", |o| o["status"] == "REFUNDED").await;
    assert_eq!(refunded["refundedAmount"], 1000, "{refunded}");
    let balance = eventually(|| wallet_balance(&app, "cust_1"), |b| *b == 0).await;
    assert_eq!(balance, 0, "the credits are clawed back");

    // The approval replayed twice records nothing new.
    deliveries_settled(&app).await;
    let approved = notification_ids(&app, "adjustment.updated").await;
    assert_eq!(approved.len(), 2, "{approved:?}");
    for id in approved.iter().chain(approved.iter()) {
        replay_notification(&app, id).await;
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

    let trial = balanced_trial_balance(&app).await;
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

#[tokio::test]
async fn a_paddle_chargeback_is_recorded_as_a_lost_dispute_on_the_order() {
    let app = spawn().await;
    let order_id = "order-paddle-chargeback";
    let txn = paid_credit_order(&app, order_id).await;
    let chargeback = paddle_charges_back(&app, &txn).await;
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
    let trial = balanced_trial_balance(&app).await;
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
    let subscribed = subscribe(&app, "cust_1").await;
    let sub_id = subscribed.id;
    let asked = paddle_refund_asked(&app, &subscribed.transaction_id, "not what I expected").await;
    let adjustment_id = asked["id"].as_str().unwrap().to_owned();
    paddle_approves(&app, &adjustment_id, json!({})).await;
    let subscription_stream = format!("subscription-{sub_id}");
    let reversed = || stream_events(&app, &subscription_stream, "ProviderChargeReversed");
    let rows = eventually(reversed, |rows| !rows.is_empty()).await;
    assert_eq!(rows.len(), 1, "the refund is recorded on the subscription");
    assert!(rows[0].to_string().contains(&adjustment_id), "{rows:?}");
    assert!(rows[0].to_string().contains("990"), "{rows:?}");

    // Replayed, it records nothing new.
    deliveries_settled(&app).await;
    for id in notification_ids(&app, "adjustment.updated").await {
        replay_notification(&app, &id).await;
    }
    deliveries_settled(&app).await;
    assert_eq!(reversed().await.len(), 1, "recorded once");

    // The journal: the membership revenue given back out of what Paddle holds; Paddle's fee on
    // the charge stays posted.
    let trial = balanced_trial_balance(&app).await;
    assert_eq!(
        account_balance(&trial, "subscription_revenue"),
        0,
        "{trial}"
    );
    assert_eq!(account_balance(&trial, "provider_clearing"), -99, "{trial}");

    // The source document: a membership refund downgrades the membership at once (the
    // subscription itself stays; Paddle's next paid period gives the benefits back).
    let level = eventually(|| membership(&app, "cust_1"), |level| *level == 0).await;
    assert_eq!(level, 0, "a refunded membership payment downgrades");
    paddle_advances_the_period(&app, &sub_id).await;
    subscription_until(&app, &sub_id, "renewal recorded", |s| s["paidCycles"] == 2).await;
    assert_eq!(
        membership(&app, "cust_1").await,
        1,
        "paid again: benefits back"
    );
}

#[tokio::test]
async fn a_chargeback_of_a_membership_payment_downgrades_the_membership_at_once() {
    let app = spawn().await;
    let subscribed = subscribe(&app, "cust_1").await;
    assert_eq!(membership(&app, "cust_1").await, 1);
    paddle_charges_back(&app, &subscribed.transaction_id).await;
    let level = eventually(|| membership(&app, "cust_1"), |level| *level == 0).await;
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
    balanced_trial_balance(&app).await;
}

#[tokio::test]
async fn paddle_bills_the_next_period_by_itself_when_the_scenario_clock_passes_it() {
    use chrono::TimeZone;
    let start = chrono::Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap();
    let app = spawn_with_clock(Some(start)).await;
    let sub_id = subscribe(&app, "cust_1").await.id;

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
    subscription_until(&app, &sub_id, "renewed by Paddle", |s| {
        s["paidCycles"] == 2 && s["status"] == "active"
    })
    .await;
    assert_eq!(membership(&app, "cust_1").await, 1);
}
