//! Schedule changes (source document 5, §5.1 일정 변경 확정) on the scenario clock: a paid
//! booking moves to a free slot of its provider with 48 hours' notice (an admin with less), the
//! old slot is free again, reminders follow the new start, a later cancellation is measured
//! against it, and both sides hear of each change (`BookingRescheduled`).

use crate::test_clock::{call, monday, paid_booking, set_clock, spawn_on_test_clock};
use chrono::{Duration, TimeZone, Utc};
use payledger_tests::TestApp;
use serde_json::{json, Value};

async fn booking_status(app: &TestApp, order_id: &str, status: &str) -> Value {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (code, body) = call(
            app,
            &app.support_key,
            &format!("/v1/orders/{order_id}/booking"),
            None,
        )
        .await;
        assert_eq!(code, 200, "{body}");
        if body["status"] == status {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{order_id} never became {status}: {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn reschedule(
    app: &TestApp,
    key: &str,
    order_id: &str,
    to: chrono::DateTime<Utc>,
) -> (u16, Value) {
    call(
        app,
        key,
        &format!("/v1/orders/{order_id}/reschedule"),
        Some(json!({"serviceStartsAt": to.to_rfc3339(), "reason": "family trip"})),
    )
    .await
}

#[tokio::test]
async fn a_booking_moves_to_a_free_slot_with_48_hours_notice_and_everything_follows_it() {
    let app = spawn_on_test_clock(monday()).await;
    let first = monday() + Duration::days(5);
    let taken = monday() + Duration::days(6);
    let moved_to = monday() + Duration::days(7);
    paid_booking(&app, "move-me", "therapist-park", 80_000, first).await;
    paid_booking(&app, "blocker", "therapist-park", 50_000, taken).await;
    booking_status(&app, "move-me", "awaiting").await;
    booking_status(&app, "blocker", "awaiting").await;

    let (status, body) = reschedule(&app, &app.client_key, "move-me", taken).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("E_SLOT_TAKEN")),
        "{body}"
    );
    let (status, body) = reschedule(
        &app,
        &app.client_key,
        "move-me",
        monday() - Duration::hours(1),
    )
    .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("serviceStartsAt")),
        "{body}"
    );

    let (status, moved) = reschedule(&app, &app.client_key, "move-me", moved_to).await;
    assert_eq!(status, 200, "{moved}");

    assert_eq!(moved["rescheduledTo"], json!(moved_to));
    assert_eq!(moved["reschedules"], 1);
    let (status, again) = reschedule(&app, &app.client_key, "move-me", moved_to).await;
    assert_eq!((status, &again["replay"]), (200, &json!(true)), "{again}");
    assert_eq!(again["reschedules"], 1);

    // The old slot is free again: another customer's payment for it keeps it.
    paid_booking(&app, "takes-old", "therapist-park", 80_000, first).await;
    booking_status(&app, "takes-old", "awaiting").await;

    // Reminders follow the new start: the day before it at 14:00 in Seoul.
    let day_before_new = Utc.with_ymd_and_hms(2026, 10, 11, 5, 0, 0).unwrap();
    set_clock(&app, day_before_new).await;
    let (_, events) = call(
        &app,
        &app.auditor_key,
        "/v1/events?type=SessionReminderRequested",
        None,
    )
    .await;
    let reminded: Vec<(&str, &str, &str)> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["payload"]["orderId"].as_str().unwrap(),
                e["payload"]["kind"].as_str().unwrap(),
                e["payload"]["serviceStartsAt"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        reminded,
        [("move-me", "day_before", "2026-10-12T00:00:00Z")],
        "{events}"
    );

    // 19 hours before the new start: the customer can no longer move it; an admin can.
    let later = moved_to + Duration::days(1);
    let (status, body) = reschedule(&app, &app.client_key, "move-me", later).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("E_RESCHEDULE_TOO_LATE")),
        "{body}"
    );
    let (status, body) = reschedule(&app, &app.admin_key, "move-me", later).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["reschedules"], 2);

    // A cancellation now is measured against the latest start: 43 hours, half back.
    let (status, cancelled) = call(
        &app,
        &app.client_key,
        "/v1/orders/move-me/cancel",
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["tier"], "HALF", "{cancelled}");
    assert_eq!(cancelled["noticeSeconds"], 43 * 3_600);
    assert_eq!(cancelled["refundAmount"], 40_000);

    let (_, changes) = call(
        &app,
        &app.auditor_key,
        "/v1/events?type=BookingRescheduled",
        None,
    )
    .await;
    let changes: Vec<(&str, &str, Value)> = changes["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["payload"]["from"].as_str().unwrap(),
                e["payload"]["to"].as_str().unwrap(),
                e["payload"]["admin"].clone(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            ("2026-10-10T00:00:00Z", "2026-10-12T00:00:00Z", Value::Null),
            ("2026-10-12T00:00:00Z", "2026-10-13T00:00:00Z", json!("ops")),
        ]
    );
}
