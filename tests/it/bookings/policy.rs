//! The cancellation refund policy through the API, at each boundary, and its exceptions.

use super::*;

async fn cancel(app: &BookingApp, key: &str, order_id: &str, body: Value) -> Answer {
    app.post_as(key, &format!("/v1/orders/{order_id}/cancel"), &body)
        .await
}

#[tokio::test]
async fn each_boundary_of_the_refund_policy_holds_through_the_api() {
    let app = spawn().await;
    let day = Duration::days(1);
    let starts = |n: i64| t0() + day * n as i32;
    app.paid_booking("notice-48h", 80_000, starts(10)).await;
    app.paid_booking("notice-48h-less-1s", 80_000, starts(11))
        .await;
    app.paid_booking("notice-24h-odd", 80_001, starts(12)).await;
    app.paid_booking("notice-24h-less-1s", 80_000, starts(13))
        .await;

    // Exactly 48 hours before the start: everything back.
    app.clock.set(starts(10) - Duration::hours(48));
    let full = cancel(&app, &app.client_key, "notice-48h", json!({})).await;
    assert_eq!(full.status, 200, "{}", full.body);
    assert_eq!(full.body["tier"], "FULL");
    assert_eq!(full.body["noticeSeconds"], 48 * 3600);
    assert_eq!(
        (
            full.body["refundAmount"].as_i64(),
            full.body["providerAmount"].as_i64()
        ),
        (Some(80_000), Some(0))
    );
    assert_eq!(full.body["refund"]["status"], "COMPLETED");
    assert_eq!(full.body["order"]["status"], "REFUNDED");

    // One second less: half.
    app.clock
        .set(starts(11) - Duration::hours(48) + Duration::seconds(1));
    let half = cancel(&app, &app.client_key, "notice-48h-less-1s", json!({})).await;
    assert_eq!(half.body["tier"], "HALF", "{}", half.body);
    assert_eq!(
        (
            half.body["refundAmount"].as_i64(),
            half.body["providerAmount"].as_i64()
        ),
        (Some(40_000), Some(40_000))
    );

    // Exactly 24 hours: still half; an odd amount rounds the customer down.
    app.clock.set(starts(12) - Duration::hours(24));
    let odd = cancel(&app, &app.client_key, "notice-24h-odd", json!({})).await;
    assert_eq!(odd.body["tier"], "HALF", "{}", odd.body);
    assert_eq!(
        (
            odd.body["refundAmount"].as_i64(),
            odd.body["providerAmount"].as_i64()
        ),
        (Some(40_000), Some(40_001))
    );
    assert_eq!(odd.body["order"]["refundedAmount"], 40_000);

    // One second less than 24 hours: nothing back, no refund sent.
    app.clock
        .set(starts(13) - Duration::hours(24) + Duration::seconds(1));
    let none = cancel(&app, &app.client_key, "notice-24h-less-1s", json!({})).await;
    assert_eq!(none.body["tier"], "NONE", "{}", none.body);
    assert_eq!(
        (
            none.body["refundAmount"].as_i64(),
            none.body["providerAmount"].as_i64()
        ),
        (Some(0), Some(80_000))
    );
    assert!(none.body["refund"].is_null());
    assert_eq!(none.body["order"]["status"], "PAID");

    // Asking again answers the first decision and refunds nothing more.
    let again = cancel(&app, &app.client_key, "notice-48h", json!({})).await;
    assert_eq!(
        (
            again.status,
            again.body["tier"].as_str(),
            again.body["replay"].as_bool()
        ),
        (200, Some("FULL"), Some(true))
    );

    app.settle().await;
    let stats = app.sandbox.stats();
    assert_eq!(
        stats.canceled_amount_by_payment_key.get("pk_notice-48h"),
        Some(&80_000)
    );
    assert_eq!(
        stats
            .canceled_amount_by_payment_key
            .get("pk_notice-48h-less-1s"),
        Some(&40_000)
    );
    assert_eq!(
        stats
            .canceled_amount_by_payment_key
            .get("pk_notice-24h-odd"),
        Some(&40_000)
    );
    assert_eq!(
        stats
            .canceled_amount_by_payment_key
            .get("pk_notice-24h-less-1s"),
        None
    );
    assert_eq!(stats.total_canceled_amount, 160_000);

    // The cancelled holder gave its slot back: a new booking of it keeps it.
    app.clock.set(starts(10) - Duration::hours(40));
    app.paid_booking("rebooked-slot", 80_000, starts(10)).await;
    app.settle().await;
    assert_eq!(app.order("rebooked-slot").await["status"], "PAID");
    assert!(app.order_state("rebooked-slot").await.refunds.is_empty());
}

#[tokio::test]
async fn an_admin_approved_emergency_overrides_the_policy_and_nobody_else_can_approve_one() {
    let app = spawn().await;
    let starts = t0() + Duration::days(5);
    app.paid_booking("emergency-1", 80_000, starts).await;
    app.clock.set(starts - Duration::hours(1));
    let emergency = json!({"emergency": {"evidence": ["https://files.example/er-visit.pdf"], "refundBps": 10000}});

    let by_client = cancel(&app, &app.client_key, "emergency-1", emergency.clone()).await;
    assert_eq!(
        (by_client.status, by_client.body["code"].as_str()),
        (403, Some("E_FORBIDDEN"))
    );

    let no_evidence = cancel(
        &app,
        &app.admin_key,
        "emergency-1",
        json!({"emergency": {"evidence": [], "refundBps": 10000}}),
    )
    .await;
    assert_eq!(
        (no_evidence.status, no_evidence.body["code"].as_str()),
        (400, Some("E_EVIDENCE_REQUIRED"))
    );

    let misspelt = cancel(
        &app,
        &app.admin_key,
        "emergency-1",
        json!({"emergancy": {}}),
    )
    .await;
    assert_eq!(
        (misspelt.status, misspelt.body["code"].as_str()),
        (400, Some("E_INVALID_JSON"))
    );

    let approved = cancel(&app, &app.admin_key, "emergency-1", emergency).await;
    assert_eq!(approved.status, 200, "{}", approved.body);
    assert_eq!(approved.body["tier"], "EMERGENCY");
    assert_eq!(approved.body["emergencyApprovedBy"], "ops");
    assert_eq!(approved.body["refundedNow"], 80_000);
    assert_eq!(approved.body["order"]["status"], "REFUNDED");
}

#[tokio::test]
async fn only_paid_bookings_are_cancelled_and_a_cancelled_booking_is_not_fulfilled() {
    let app = spawn().await;
    let plain = app
        .post(
            "/v1/orders",
            &json!({"orderId": "no-service-time", "amount": 5000, "currency": "KRW",
                    "customerId": "c1", "payeeId": THERAPIST, "orderName": "Workbook"}),
        )
        .await;
    assert_eq!(plain.status, 201);
    assert_eq!(app.confirm("no-service-time", 5000).await.status, 200);
    let not_booking = cancel(&app, &app.client_key, "no-service-time", json!({})).await;
    assert_eq!(
        (not_booking.status, not_booking.body["code"].as_str()),
        (409, Some("E_NOT_A_BOOKING"))
    );

    let starts = t0() + Duration::days(4);
    app.place_booking("unpaid-booking", "parent-lee", 80_000, starts)
        .await;
    let unpaid = cancel(&app, &app.client_key, "unpaid-booking", json!({})).await;
    assert_eq!(
        (unpaid.status, unpaid.body["code"].as_str()),
        (409, Some("E_ORDER_NOT_PAID"))
    );

    app.paid_booking("cancel-then-fulfil", 80_000, starts + Duration::hours(1))
        .await;
    assert_eq!(
        cancel(&app, &app.client_key, "cancel-then-fulfil", json!({}))
            .await
            .status,
        200
    );
    let fulfil = app
        .post("/v1/orders/cancel-then-fulfil/fulfil", &json!({}))
        .await;
    assert_eq!(
        (fulfil.status, fulfil.body["code"].as_str()),
        (409, Some("E_BOOKING_CANCELLED"))
    );

    let missing = cancel(&app, &app.client_key, "no-such-order", json!({})).await;
    assert_eq!(
        (missing.status, missing.body["code"].as_str()),
        (404, Some("E_ORDER_NOT_FOUND"))
    );
}
