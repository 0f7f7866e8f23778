//! The provider's confirmation of a paid booking, on the scenario clock (source document 5,
//! §5.1 and §6.1): asked for when the booking is paid, a reminder to the provider at 12 h, the
//! admins' queue at 24 h, a manual confirmation or a force-cancel that refunds in full. Each step
//! at its exact second, each once.

use crate::test_clock::{call, job_count, monday, paid_booking, set_clock, spawn_on_test_clock};
use chrono::Duration;
use payledger_tests::TestApp;
use serde_json::{json, Value};

/// The booking's confirmation once the booking process has followed its capture.
async fn booking_once(app: &TestApp, order_id: &str, status: &str) -> Value {
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

async fn queue_until(app: &TestApp, total: i64) -> Value {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (code, body) = call(
            app,
            &app.support_key,
            "/v1/admin/bookings/unconfirmed?limit=20",
            None,
        )
        .await;
        assert_eq!(code, 200, "{body}");
        if body["total"] == total {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the queue never held {total}: {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_unconfirmed_booking_is_reminded_at_12_hours_queued_at_24_and_force_cancelled_in_full() {
    let app = spawn_on_test_clock(monday()).await;
    let starts = monday() + Duration::days(3);
    paid_booking(&app, "confirm-late", "therapist-park", 80_000, starts).await;
    paid_booking(&app, "confirm-fast", "therapist-lee", 60_000, starts).await;
    let waiting = booking_once(&app, "confirm-late", "awaiting").await;
    assert_eq!(waiting["requestedAt"], json!(monday()), "{waiting}");
    assert_eq!(waiting["remindAt"], json!(monday() + Duration::hours(12)));
    assert_eq!(waiting["confirmBy"], json!(monday() + Duration::hours(24)));

    // The provider confirms one booking at once (through the platform's key); again is a replay.
    booking_once(&app, "confirm-fast", "awaiting").await;
    let (status, confirmed) = call(
        &app,
        &app.client_key,
        "/v1/orders/confirm-fast/confirm-booking",
        Some(json!({})),
    )
    .await;
    assert_eq!((status, &confirmed["status"]), (200, &json!("confirmed")));
    assert_eq!(confirmed["confirmedBy"], "client:e2e", "{confirmed}");
    let (status, again) = call(
        &app,
        &app.client_key,
        "/v1/orders/confirm-fast/confirm-booking",
        Some(json!({})),
    )
    .await;
    assert_eq!(
        (status, &again["confirmedAt"]),
        (200, &confirmed["confirmedAt"])
    );

    let moved = set_clock(&app, monday() + Duration::hours(12) - Duration::seconds(1)).await;
    assert_eq!(
        job_count(&moved, "bookings.confirmations", "remindersRequested"),
        0
    );
    let moved = set_clock(&app, monday() + Duration::hours(12)).await;
    assert_eq!(
        job_count(&moved, "bookings.confirmations", "remindersRequested"),
        1,
        "only the unconfirmed booking: {moved}"
    );
    let moved = set_clock(&app, monday() + Duration::hours(24) - Duration::seconds(1)).await;
    assert_eq!(
        job_count(&moved, "bookings.confirmations", "remindersRequested"),
        0
    );
    assert_eq!(
        job_count(&moved, "bookings.confirmations", "markedOverdue"),
        0
    );
    queue_until(&app, 0).await;
    let moved = set_clock(&app, monday() + Duration::hours(24)).await;
    assert_eq!(
        job_count(&moved, "bookings.confirmations", "markedOverdue"),
        1,
        "{moved}"
    );
    let moved = set_clock(&app, monday() + Duration::hours(25)).await;
    assert_eq!(
        job_count(&moved, "bookings.confirmations", "markedOverdue"),
        0
    );

    let queue = queue_until(&app, 1).await;
    let row = &queue["unconfirmed"][0];
    assert_eq!(row["orderId"], "confirm-late", "{queue}");
    assert_eq!(row["payeeId"], "therapist-park");
    assert_eq!(row["overdueSeconds"], 3_600, "on the scenario clock");
    assert_eq!(
        (queue["page"].as_i64(), queue["totalPages"].as_i64()),
        (Some(1), Some(1))
    );

    // Only admins force-cancel; the reason is required; a confirmed booking is not theirs to force.
    let (status, _) = call(
        &app,
        &app.client_key,
        "/v1/admin/bookings/confirm-late/force-cancel",
        Some(json!({"reason": "no answer"})),
    )
    .await;
    assert_eq!(status, 403);
    let (status, body) = call(
        &app,
        &app.admin_key,
        "/v1/admin/bookings/confirm-late/force-cancel",
        Some(json!({"reason": ""})),
    )
    .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("reason")),
        "{body}"
    );
    let (status, body) = call(
        &app,
        &app.admin_key,
        "/v1/admin/bookings/confirm-fast/force-cancel",
        Some(json!({"reason": "no answer"})),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("E_BOOKING_ALREADY_CONFIRMED")),
        "{body}"
    );

    let (status, cancelled) = call(
        &app,
        &app.admin_key,
        "/v1/admin/bookings/confirm-late/force-cancel",
        Some(json!({"reason": "the provider did not answer in 24 hours"})),
    )
    .await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["tier"], "UNCONFIRMED");
    assert_eq!(cancelled["refundAmount"], 80_000);
    assert_eq!(cancelled["providerAmount"], 0);
    assert_eq!(cancelled["refundedNow"], 80_000);
    assert_eq!(cancelled["refund"]["refundId"], "cancel", "{cancelled}");
    assert_eq!(cancelled["order"]["refundedAmount"], 80_000, "{cancelled}");
    let (status, again) = call(
        &app,
        &app.admin_key,
        "/v1/admin/bookings/confirm-late/force-cancel",
        Some(json!({"reason": "the provider did not answer in 24 hours"})),
    )
    .await;
    assert_eq!((status, &again["replay"]), (200, &json!(true)), "{again}");
    assert_eq!(again["order"]["refundedAmount"], 80_000, "refunded once");
    queue_until(&app, 0).await;
    booking_once(&app, "confirm-late", "cancelled").await;

    // The provider can still not confirm what was cancelled.
    let (status, body) = call(
        &app,
        &app.client_key,
        "/v1/orders/confirm-late/confirm-booking",
        Some(json!({})),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("E_BOOKING_CANCELLED"))
    );

    let (_, events) = call(
        &app,
        &app.auditor_key,
        "/v1/events?type=BookingConfirmationReminderRequested",
        None,
    )
    .await;
    let reminded: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["payload"]["orderId"].as_str().unwrap())
        .collect();
    assert_eq!(reminded, ["confirm-late"]);
}

#[tokio::test]
async fn an_admin_confirms_an_overdue_booking_by_hand_with_notes() {
    let app = spawn_on_test_clock(monday()).await;
    let starts = monday() + Duration::days(4);
    paid_booking(&app, "confirm-admin", "therapist-park", 70_000, starts).await;
    paid_booking(&app, "confirm-cli", "therapist-lee", 70_000, starts).await;
    booking_once(&app, "confirm-admin", "awaiting").await;
    booking_once(&app, "confirm-cli", "awaiting").await;

    // An unpaid booking awaits nothing.
    let (status, body) = call(
        &app,
        &app.client_key,
        "/v1/orders",
        Some(json!({
            "orderId": "confirm-unpaid", "amount": 70_000, "currency": "KRW",
            "customerId": "parent-lee", "payeeId": "therapist-park",
            "orderName": "Speech therapy session",
            "serviceStartsAt": (starts + Duration::hours(2)).to_rfc3339(),
        })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = call(
        &app,
        &app.client_key,
        "/v1/orders/confirm-unpaid/confirm-booking",
        Some(json!({})),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("E_BOOKING_NOT_AWAITING_CONFIRMATION")),
        "{body}"
    );

    let moved = set_clock(&app, monday() + Duration::days(1) + Duration::hours(1)).await;
    assert_eq!(
        job_count(&moved, "bookings.confirmations", "markedOverdue"),
        2,
        "{moved}"
    );
    // The reminder's moment passed unseen in one jump: the queue takes over, no late reminder.
    assert_eq!(
        job_count(&moved, "bookings.confirmations", "remindersRequested"),
        0
    );
    queue_until(&app, 2).await;

    // The command line works the same queue (`payledger bookings confirm`).
    let cli = payledger::booking_cli::run(
        payledger::booking_cli::BookingsCommand::Confirm {
            order_id: "confirm-cli".into(),
            notes: "confirmed on the phone".into(),
            admin: Some("oncall".into()),
        },
        &app.db.app_pool,
        &payledger_tests::data_dir(),
    )
    .await;
    assert!(cli.is_ok(), "{cli:?}");
    let by_cli = booking_once(&app, "confirm-cli", "confirmed").await;
    assert_eq!(
        by_cli["confirmedAt"],
        json!(monday() + Duration::days(1) + Duration::hours(1)),
        "on the scenario clock: {by_cli}"
    );
    assert!(
        by_cli["confirmedBy"].as_str().unwrap().starts_with("cli:"),
        "{by_cli}"
    );
    queue_until(&app, 1).await;

    let (status, body) = call(
        &app,
        &app.admin_key,
        "/v1/admin/bookings/confirm-admin/manual-confirm",
        Some(json!({})),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("E_INVALID_JSON")),
        "{body}"
    );
    let (status, confirmed) = call(
        &app,
        &app.admin_key,
        "/v1/admin/bookings/confirm-admin/manual-confirm",
        Some(json!({"adminNotes": "confirmed by phone with the provider"})),
    )
    .await;
    assert_eq!(status, 200, "{confirmed}");
    assert_eq!(confirmed["status"], "confirmed");
    assert_eq!(confirmed["confirmedBy"], "admin:ops");
    assert_eq!(
        confirmed["adminNotes"],
        "confirmed by phone with the provider"
    );
    assert_eq!(
        confirmed["confirmedAt"],
        json!(monday() + Duration::days(1) + Duration::hours(1))
    );
    queue_until(&app, 0).await;
    let (_, events) = call(
        &app,
        &app.auditor_key,
        "/v1/events?type=BookingConfirmed",
        None,
    )
    .await;
    let by_admin: Vec<(&str, &str)> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["payload"]["orderId"].as_str().unwrap(),
                e["payload"]["admin"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        by_admin,
        [("confirm-cli", "oncall"), ("confirm-admin", "ops")]
    );
    assert!(events["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["payload"]["overdue"] == true));
}
