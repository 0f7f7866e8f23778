//! A Toss payment that expires on the scenario clock (issue 17): the sandbox opens a
//! virtual-account payment (`sandbox_virtual_account_{minutes}_…` → `WAITING_FOR_DEPOSIT`) that
//! becomes `EXPIRED` when the scenario's time passes its deadline. payledger judges that fact
//! through `provider_fact` (not completed): no capture, the order fails with the provider's
//! `EXPIRED` and then expires; the sandbox never charged.

use crate::test_clock::{call, job_count, monday, set_clock, spawn_on_test_clock};
use chrono::Duration;
use payledger_tests::TestApp;
use serde_json::{json, Value};

/// The order once the read model shows `status` (it follows the log a moment later).
async fn order_when(app: &TestApp, status: &str) -> Value {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (code, order) = call(app, &app.support_key, "/v1/orders/va-unpaid", None).await;
        assert_eq!(code, 200, "{order}");
        if order["status"] == status {
            return order;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never {status}: {order}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_virtual_account_nobody_pays_expires_on_the_scenario_clock_and_the_order_with_it() {
    let app = spawn_on_test_clock(monday()).await;
    let (status, body) = call(
        &app,
        &app.client_key,
        "/v1/orders",
        Some(json!({
            "orderId": "va-unpaid", "amount": 45_000, "currency": "KRW",
            "customerId": "parent-lee", "payeeId": "therapist-kim",
            "orderName": "Speech therapy session",
        })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let payment_key = "sandbox_virtual_account_20_va-unpaid";
    let response = app.confirm("va-unpaid", payment_key, 45_000).await;
    let status = response.status().as_u16();
    let confirmed: Value = response.json().await.unwrap_or_default();
    // The provider has not decided: waiting for a deposit is no capture.
    assert_eq!(
        (status, confirmed["status"].as_str()),
        (202, Some("OUTCOME_UNKNOWN")),
        "{confirmed}"
    );
    assert_eq!(confirmed["capturedAmount"], 0, "{confirmed}");
    order_when(&app, "OUTCOME_UNKNOWN").await;

    // Before the deposit deadline the sandbox still waits: the reconciler learns nothing new.
    let moved = set_clock(&app, monday() + Duration::minutes(19)).await;
    assert_eq!(
        job_count(&moved, "orders.reconcile_and_expire", "settled"),
        0,
        "{moved}"
    );
    let order = order_when(&app, "OUTCOME_UNKNOWN").await;
    assert_eq!(order["capturedAmount"], 0, "{order}");

    // Past it: the sandbox says EXPIRED, the ledger records the failure with that code.
    set_clock(&app, monday() + Duration::minutes(21)).await;
    let order = order_when(&app, "FAILED").await;
    assert_eq!(order["lastFailureCode"], "EXPIRED", "{order}");
    assert_eq!(order["capturedAmount"], 0, "{order}");

    // Past the order's own 30 minutes: the order expires.
    set_clock(&app, monday() + Duration::minutes(31)).await;
    let order = order_when(&app, "EXPIRED").await;
    assert_eq!(order["capturedAmount"], 0, "{order}");

    // No capture anywhere in the log, and the sandbox never charged.
    let (_, events) = call(
        &app,
        &app.auditor_key,
        "/v1/events?type=PaymentCaptured",
        None,
    )
    .await;
    assert_eq!(events["events"], json!([]), "{events}");
    assert!(
        app.sandbox.stats().charges_by_order_id.is_empty(),
        "the sandbox charged"
    );
}
