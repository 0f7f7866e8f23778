//! The runbook's operations through HTTP: kill switches, outside payments, enrollment
//! cancellation, and the payment-recovery status.

use payledger_tests::{event_types, spawn_app, spawn_app_with, SpawnOptions, TestApp};
use serde_json::{json, Value};

async fn admin_post(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    let response = app.post_as(&app.admin_key, path, &body).await;
    (response.status().as_u16(), response.json().await.unwrap())
}

fn order_for(order_id: &str, payee: &str) -> Value {
    json!({"orderId": order_id, "amount": 10_000, "currency": "KRW", "customerId": "cust_1",
           "payeeId": payee, "orderName": "Yoga class"})
}

#[tokio::test]
async fn the_global_switch_stops_new_orders_and_payments_until_resumed() {
    let app = spawn_app().await;
    app.place_order("order-sw-ready", 10_000).await;
    app.place_order("order-sw-paid", 10_000).await;
    assert_eq!(
        app.confirm("order-sw-paid", "pk_sw_paid", 10_000)
            .await
            .status(),
        200
    );

    let (status, switches) = admin_post(
        &app,
        "/v1/admin/switches/payments/suspend",
        json!({"reason": "amount mismatch surge"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        switches["paymentsSuspended"]["reason"],
        "amount mismatch surge"
    );
    assert_eq!(switches["changed"], true);
    let head = app.head_position().await;

    let placed = app
        .post("/v1/orders", &order_for("order-sw-new", "payee_1"))
        .await;
    assert_eq!(placed.status().as_u16(), 409);
    assert_eq!(
        placed.json::<Value>().await.unwrap()["code"],
        "E_PAYMENTS_SUSPENDED"
    );
    let confirm = app.confirm("order-sw-ready", "pk_sw_ready", 10_000).await;
    assert_eq!(confirm.status().as_u16(), 409);
    let body: Value = confirm.json().await.unwrap();
    assert_eq!(body["code"], "E_PAYMENTS_SUSPENDED");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("amount mismatch surge"));
    // Refreshing the success page of a paid order still answers success.
    assert_eq!(
        app.confirm("order-sw-paid", "pk_sw_paid", 10_000)
            .await
            .status(),
        200
    );
    assert_eq!(
        app.head_position().await,
        head,
        "refusals and the replay stored nothing"
    );
    assert!(!app
        .sandbox
        .stats()
        .charges_by_order_id
        .contains_key("order-sw-ready"));

    // Suspending again changes nothing.
    let (_, again) = admin_post(
        &app,
        "/v1/admin/switches/payments/suspend",
        json!({"reason": "x"}),
    )
    .await;
    assert_eq!(again["changed"], false);
    let (status, resumed) = admin_post(&app, "/v1/admin/switches/payments/resume", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(resumed["paymentsSuspended"], Value::Null);
    assert_eq!(
        app.confirm("order-sw-ready", "pk_sw_ready", 10_000)
            .await
            .status(),
        200
    );

    let stream: Value = app
        .get("/v1/streams/ops-switches")
        .await
        .json()
        .await
        .unwrap();
    let types = event_types(&stream["events"]);
    assert_eq!(types, vec!["PaymentsSuspended", "PaymentsResumed"]);
}

#[tokio::test]
async fn a_payee_switch_stops_only_that_payees_sales() {
    let app = spawn_app().await;
    app.post("/v1/orders", &order_for("order-pay-a", "studio_a"))
        .await;
    let (status, _) = admin_post(
        &app,
        "/v1/admin/switches/payees/studio_a/suspend",
        json!({"reason": "course price wrong"}),
    )
    .await;
    assert_eq!(status, 200);
    let refused = app
        .post("/v1/orders", &order_for("order-pay-a2", "studio_a"))
        .await;
    assert_eq!(refused.status().as_u16(), 409);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["code"], "E_PAYEE_SUSPENDED");
    assert_eq!(body["payeeId"], "studio_a");
    assert_eq!(
        app.confirm("order-pay-a", "pk_pay_a", 10_000)
            .await
            .json::<Value>()
            .await
            .unwrap()["code"],
        "E_PAYEE_SUSPENDED"
    );
    let other = app
        .post("/v1/orders", &order_for("order-pay-b", "studio_b"))
        .await;
    assert_eq!(other.status().as_u16(), 201);
    let switches: Value = app
        .get_as(&app.support_key, "/v1/admin/switches")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(switches["suspendedPayees"][0]["payeeId"], "studio_a");
    admin_post(&app, "/v1/admin/switches/payees/studio_a/resume", json!({})).await;
    assert_eq!(
        app.confirm("order-pay-a", "pk_pay_a", 10_000)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn an_outside_payment_is_recorded_once_and_shows_in_the_timeline() {
    let app = spawn_app().await;
    app.place_order("order-ext-1", 10_000).await;
    app.place_order("order-ext-2", 10_000).await;
    let payment = json!({"provider": "bank_transfer", "providerTransactionId": "tx-2026-77",
                         "amount": 10_000, "currency": "KRW", "method": "transfer",
                         "reason": "paid by bank transfer, ticket 812"});
    let (status, order) = admin_post(
        &app,
        "/v1/admin/orders/order-ext-1/external-payments",
        payment.clone(),
    )
    .await;
    assert_eq!(status, 201, "{order}");
    assert_eq!(order["status"], "PAID");
    assert_eq!(order["capturedAmount"], 10_000);
    // A retry of the same request: the same order, nothing new.
    let (status, _) = admin_post(
        &app,
        "/v1/admin/orders/order-ext-1/external-payments",
        payment.clone(),
    )
    .await;
    assert_eq!(status, 200);
    // The same transaction id for another order: refused.
    let (status, body) = admin_post(
        &app,
        "/v1/admin/orders/order-ext-2/external-payments",
        payment.clone(),
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(body["code"], "E_PROVIDER_TRANSACTION_ALREADY_RECORDED");
    assert_eq!(body["orderId"], "order-ext-1");
    // A wrong amount is refused before the transaction id is used up.
    let mut wrong = payment.clone();
    wrong["providerTransactionId"] = json!("tx-2026-78");
    wrong["amount"] = json!(9_999);
    let (status, body) = admin_post(
        &app,
        "/v1/admin/orders/order-ext-2/external-payments",
        wrong,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("E_INVALID_AMOUNT"))
    );
    // Clients may not do this.
    let client = app
        .post("/v1/admin/orders/order-ext-2/external-payments", &payment)
        .await;
    assert_eq!(client.status().as_u16(), 403);

    let position = app.head_position().await;
    let timeline: Value = app
        .get(&format!(
            "/v1/orders/order-ext-1/timeline?minPosition={position}"
        ))
        .await
        .json()
        .await
        .unwrap();
    let last = timeline["entries"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["eventType"], "PaymentCaptured");
    assert_eq!(last["actor"], "admin:ops");
    assert_eq!(last["data"]["source"], "manual");
    assert!(
        app.sandbox.stats().charges_by_order_id.is_empty(),
        "nothing was charged"
    );
}

#[tokio::test]
async fn cancelling_an_enrollment_refunds_once_and_closes_the_order() {
    let app = spawn_app().await;
    app.place_order("order-enr-1", 10_000).await;
    app.confirm("order-enr-1", "pk_enr_1", 10_000).await;
    let request = json!({"reason": "enrolled in the wrong course", "refund": true});
    let (status, order) = admin_post(
        &app,
        "/v1/admin/orders/order-enr-1/cancel-enrollment",
        request.clone(),
    )
    .await;
    assert_eq!(status, 200, "{order}");
    assert_eq!(order["status"], "REFUNDED");
    // A retry refunds nothing more.
    let (status, body) = admin_post(
        &app,
        "/v1/admin/orders/order-enr-1/cancel-enrollment",
        request,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        app.sandbox
            .stats()
            .canceled_amount_by_payment_key
            .get("pk_enr_1"),
        Some(&10_000)
    );
    let position = app.head_position().await;
    let timeline: Value = app
        .get(&format!(
            "/v1/orders/order-enr-1/timeline?minPosition={position}"
        ))
        .await
        .json()
        .await
        .unwrap();
    let types = event_types(&timeline["entries"]);
    assert_eq!(
        types,
        vec![
            "OrderPlaced",
            "PaymentConfirmationStarted",
            "PaymentCaptured",
            "EnrollmentCancelled",
            "RefundRequested",
            "RefundCompleted"
        ]
    );
    // An unpaid order whose enrollment was cancelled can no longer be paid.
    app.place_order("order-enr-2", 10_000).await;
    admin_post(
        &app,
        "/v1/admin/orders/order-enr-2/cancel-enrollment",
        json!({"reason": "duplicate"}),
    )
    .await;
    let confirm = app.confirm("order-enr-2", "pk_enr_2", 10_000).await;
    assert_eq!(confirm.status().as_u16(), 409);
    assert_eq!(
        confirm.json::<Value>().await.unwrap()["code"],
        "E_ENROLLMENT_CANCELLED"
    );
}

async fn status_of(app: &TestApp, path: &str) -> Value {
    let response = app.get(path).await;
    assert_eq!(response.status().as_u16(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn the_recovery_screen_gets_completed_failed_pending_or_not_found() {
    let app = spawn_app_with(SpawnOptions {
        gateway_timeout_ms: 300,
        ..SpawnOptions::default()
    })
    .await;
    let none = status_of(&app, "/v1/orders/order-rec-none/payment-status").await;
    assert_eq!(none["status"], "not_found");
    assert_eq!(none["nextAction"], "START_OVER");

    app.place_order("order-rec-ready", 2_000).await;
    let ready = status_of(&app, "/v1/orders/order-rec-ready/payment-status").await;
    assert_eq!(
        (ready["status"].as_str(), ready["nextAction"].as_str()),
        (Some("pending"), Some("CONTINUE_PAYMENT"))
    );

    app.confirm("order-rec-ready", "pk_rec_ok", 2_000).await;
    let paid = status_of(&app, "/v1/orders/order-rec-ready/payment-status").await;
    assert_eq!(paid["status"], "completed");
    assert_eq!(paid["nextAction"], "SHOW_SUCCESS");
    assert_eq!(paid["capturedAmount"], 2_000);

    app.place_order("order-rec-declined", 2_000).await;
    app.confirm("order-rec-declined", "sandbox_decline_rec", 2_000)
        .await;
    let declined = status_of(&app, "/v1/orders/order-rec-declined/payment-status").await;
    assert_eq!(declined["status"], "failed");
    assert_eq!(declined["failureCode"], "REJECT_CARD_COMPANY");
    assert_eq!(declined["nextAction"], "USE_ANOTHER_CARD");

    // Charged, but the answer was lost: pending until the provider is asked.
    app.place_order("order-rec-lost", 2_000).await;
    let lost = app
        .confirm("order-rec-lost", "sandbox_timeout_after_charge_rec", 2_000)
        .await;
    assert_eq!(lost.status().as_u16(), 202);
    let pending = status_of(&app, "/v1/orders/order-rec-lost/payment-status").await;
    assert_eq!(pending["status"], "pending");
    assert_eq!(pending["nextAction"], "CHECK_AGAIN_LATER");
    assert_eq!(pending["checkedProvider"], false);
    let checked = status_of(
        &app,
        "/v1/orders/order-rec-lost/payment-status?checkProvider=true",
    )
    .await;
    assert_eq!(checked["checkedProvider"], true);
    assert_eq!(checked["status"], "completed", "{checked}");
    assert_eq!(
        app.sandbox
            .stats()
            .charges_by_order_id
            .get("order-rec-lost"),
        Some(&1)
    );
}
