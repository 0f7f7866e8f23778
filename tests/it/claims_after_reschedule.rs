//! Claim filing windows follow a schedule change (source document 5, §5.1 and §6): after
//! `POST /v1/orders/{id}/reschedule` the session happens at the new start, so a no-show claim
//! opens 15 minutes after the new start — not after the start the order was placed with — and
//! the claim records the new start.

use crate::test_clock::{call, monday, paid_booking, set_clock, spawn_on_test_clock};
use chrono::Duration;
use serde_json::json;

#[tokio::test]
async fn a_no_show_claim_opens_15_minutes_after_the_rescheduled_start_not_the_original() {
    let app = spawn_on_test_clock(monday()).await;
    let original = monday() + Duration::days(5);
    let moved_to = monday() + Duration::days(7);
    paid_booking(&app, "claim-moved", "therapist-kim", 60_000, original).await;
    let (status, moved) = call(
        &app,
        &app.client_key,
        "/v1/orders/claim-moved/reschedule",
        Some(json!({"serviceStartsAt": moved_to.to_rfc3339(), "reason": "fever"})),
    )
    .await;
    assert_eq!(status, 200, "{moved}");

    let claim = json!({"claimId": "clm-moved", "orderId": "claim-moved",
                       "type": "PROVIDER_NO_SHOW", "filedBy": "customer",
                       "description": "the therapist did not come"});
    // 15 minutes after the original start: nothing was due then, the window is not open.
    set_clock(&app, original + Duration::minutes(15)).await;
    let (status, body) = call(&app, &app.client_key, "/v1/claims", Some(claim.clone())).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("E_CLAIM_WINDOW_NOT_OPEN")),
        "{body}"
    );
    // One second before the new start's window: still closed.
    set_clock(
        &app,
        moved_to + Duration::minutes(15) - Duration::seconds(1),
    )
    .await;
    let (status, body) = call(&app, &app.client_key, "/v1/claims", Some(claim.clone())).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("E_CLAIM_WINDOW_NOT_OPEN")),
        "{body}"
    );
    // At the new start's window, to the second: filed, and the claim carries the new start.
    set_clock(&app, moved_to + Duration::minutes(15)).await;
    let (status, filed) = call(&app, &app.client_key, "/v1/claims", Some(claim)).await;
    assert_eq!(status, 201, "{filed}");
    assert_eq!(filed["serviceStartsAt"], json!(moved_to), "{filed}");
}
