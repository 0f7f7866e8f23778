//! A dispute on a payable Stripe booking holds the payee's settlement line while it is open; once
//! lost, the hold is released and what Stripe kept comes off the payee's statement like a refund,
//! as the journal posts it (`DisputeLost` debits `payee_payable`).
//!
//! The dispute is recorded through the application layer with the fact the relay records after
//! re-fetching it from Stripe (the relay path itself runs over HTTP in `stripe_disputes.rs`).

use super::*;
use payledger_domain::ids::OrderId;
use payledger_domain::money::Currency;
use payledger_domain::provider_fact::{DisputeFact, DisputeStatus};

fn lines_of(statement: &Value) -> Vec<(String, i64)> {
    statement["lines"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            (
                l["lineId"].as_str().unwrap_or_default().to_owned(),
                l["amount"].as_i64().unwrap_or_default(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_dispute_holds_the_payees_line_and_a_lost_one_takes_what_stripe_kept() {
    let app = spawn().await;
    let starts = t0() + Duration::hours(3);
    let placed = app
        .post(
            "/v1/orders",
            &json!({"orderId": "disputed-1", "amount": 80_000, "currency": "KRW",
                    "customerId": "parent-lee", "payeeId": THERAPIST,
                    "orderName": "Speech therapy session",
                    "serviceStartsAt": starts.to_rfc3339(), "provider": "stripe"}),
        )
        .await;
    assert_eq!(placed.status, 201, "{}", placed.body);
    let paid = app
        .post(
            "/v1/payments/confirm",
            &json!({"orderId": "disputed-1", "paymentKey": "pm_card_visa", "amount": 80_000}),
        )
        .await;
    assert_eq!(paid.status, 200, "{}", paid.body);
    let intent = paid.body["paymentKey"].as_str().unwrap().to_owned();
    app.clock.set(starts + Duration::hours(4));
    let fulfilled = app.post("/v1/orders/disputed-1/fulfil", &json!({})).await;
    assert_eq!(fulfilled.status, 200, "{}", fulfilled.body);
    app.settle().await;

    let order_id = OrderId::parse("disputed-1").unwrap();
    let dispute = |status, withdrawn_minor| DisputeFact {
        provider: "stripe".into(),
        dispute_id: "dp_settle_1".into(),
        payment_key: intent.clone(),
        status,
        amount_minor: 80_000,
        currency: Currency::KRW,
        withdrawn_minor,
        fee_minor: 20_000,
        reason: Some("fraudulent".into()),
    };
    app.payments
        .record_dispute(&order_id, dispute(DisputeStatus::Open, 80_000))
        .await
        .expect("the dispute opens");
    app.settle().await;
    let week = app.statements("2026-10-05").await;
    let lines = lines_of(&week[0]);
    assert!(
        lines.contains(&("hold:dispute:dp_settle_1".to_owned(), 80_000)),
        "{lines:?}"
    );

    app.payments
        .record_dispute(&order_id, dispute(DisputeStatus::Lost, 80_000))
        .await
        .expect("the dispute is lost");
    // Delivered again: nothing more happens.
    let again = app
        .payments
        .record_dispute(&order_id, dispute(DisputeStatus::Lost, 80_000))
        .await
        .expect("a redelivery is answered");
    assert!(again.replay);
    app.settle().await;
    let week = app.statements("2026-10-05").await;
    let lines = lines_of(&week[0]);
    assert!(
        lines.contains(&("release:dispute:dp_settle_1".to_owned(), 80_000)),
        "{lines:?}"
    );
    assert!(
        lines.contains(&("dispute-lost:disputed-1:dp_settle_1".to_owned(), 80_000)),
        "{lines:?}"
    );

    let trial = app.trial_balance().await;
    assert_eq!(trial["balanced"], true, "{trial}");
    assert_eq!(balance(&trial, "payee_payable"), 0, "{trial}");
    assert_eq!(balance(&trial, "dispute_fees"), 20_000, "{trial}");
    assert_eq!(balance(&trial, "provider_clearing"), -20_000, "{trial}");
}
