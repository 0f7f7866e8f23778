//! A week of a booking platform (and two more of dunning) over HTTP on the scenario clock, in
//! seconds: bookings, a cancellation in each policy tier, an order left unpaid that expires, a
//! claim filed at the window's edge whose respondent misses the deadline, dunning over 14 days,
//! the Monday statement and the Wednesday payout; the provider's confirmation of bookings (one
//! confirmed at once, the others in the admins' queue after 24 h, one confirmed there by hand),
//! a schedule change, and a session held on the statement until its notes arrive. Nothing here waits for wall time: the clock
//! moves, and each move runs what became due (`/v1/admin/test-clock`).

use crate::test_clock::{
    answer, call, job_count, monday, paid_booking, set_clock, spawn_on_test_clock, statement,
};
use chrono::{Duration, TimeZone, Utc};
use serde_json::{json, Value};

const THERAPIST: &str = "therapist-kim";

async fn get(app: &payledger_tests::TestApp, path: &str) -> Value {
    let (status, body) = call(app, &app.admin_key, path, None).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

async fn cancel(app: &payledger_tests::TestApp, key: &str, order_id: &str, body: Value) -> Value {
    let (status, body) = call(
        app,
        key,
        &format!("/v1/orders/{order_id}/cancel"),
        Some(body),
    )
    .await;
    assert_eq!(status, 200, "cancel {order_id}: {body}");
    body
}

#[tokio::test]
async fn a_week_of_a_booking_platform_on_the_scenario_clock() {
    let wall = std::time::Instant::now();
    let t0 = monday();
    let app = spawn_on_test_clock(t0).await;
    let day = Duration::days(1);

    // Monday 09:00 in Seoul: the week's bookings, paid; one order left unpaid; a membership
    // whose card has no money.
    paid_booking(
        &app,
        "wk-full",
        THERAPIST,
        60_000,
        t0 + day * 4 + Duration::hours(10),
    )
    .await;
    paid_booking(
        &app,
        "wk-half",
        THERAPIST,
        80_000,
        t0 + day * 2 + Duration::hours(6),
    )
    .await;
    paid_booking(
        &app,
        "wk-none",
        THERAPIST,
        70_000,
        t0 + day + Duration::hours(12),
    )
    .await;
    paid_booking(
        &app,
        "wk-emergency",
        THERAPIST,
        50_000,
        t0 + day + Duration::hours(10),
    )
    .await;
    paid_booking(
        &app,
        "wk-kept",
        THERAPIST,
        90_000,
        t0 + day + Duration::hours(3),
    )
    .await;
    paid_booking(
        &app,
        "wk-claim",
        THERAPIST,
        40_000,
        t0 + day + Duration::hours(6),
    )
    .await;
    paid_booking(
        &app,
        "wk-moved",
        THERAPIST,
        55_000,
        t0 + day * 4 + Duration::hours(14),
    )
    .await;
    app.place_order("wk-unpaid", 30_000).await;
    let (status, key) = answer(
        app.post(
            "/v1/billing-keys",
            &json!({"customerId": "member-1", "authKey": "sandbox_insufficient_week"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{key}");
    let (status, sub) = answer(
        app.post(
            "/v1/subscriptions",
            &json!({"subscriptionId": "sub-week", "customerId": "member-1", "planId": "standard",
                    "amount": 9900, "currency": "KRW", "interval": "month",
                    "billingKeyId": key["billingKeyId"], "orderName": "Standard membership"}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (status, sub["status"].as_str()),
        (201, Some("past_due")),
        "{sub}"
    );
    assert_eq!(sub["nextRetryAt"], json!(t0 + day * 3));

    // The provider confirms the sessions it will keep; a customer moves one with 4 days' notice.
    for id in ["wk-kept", "wk-moved"] {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let booking = get(&app, &format!("/v1/orders/{id}/booking")).await;
            if booking["status"] == "awaiting" {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{booking}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let (status, body) = call(
            &app,
            &app.client_key,
            &format!("/v1/orders/{id}/confirm-booking"),
            Some(json!({})),
        )
        .await;
        assert_eq!(
            (status, &body["status"]),
            (200, &json!("confirmed")),
            "{body}"
        );
    }
    let (status, moved) = call(
        &app,
        &app.client_key,
        "/v1/orders/wk-moved/reschedule",
        Some(json!({"serviceStartsAt": (t0 + day * 5 + Duration::hours(1)).to_rfc3339()})),
    )
    .await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(
        moved["rescheduledTo"],
        json!(t0 + day * 5 + Duration::hours(1))
    );

    // The unpaid order expires 30 minutes after it was placed, not a second before.
    let moved = set_clock(&app, t0 + Duration::minutes(29)).await;
    assert_eq!(
        job_count(&moved, "orders.reconcile_and_expire", "expired"),
        0
    );
    let moved = set_clock(&app, t0 + Duration::minutes(30) + Duration::seconds(1)).await;
    assert_eq!(
        job_count(&moved, "orders.reconcile_and_expire", "expired"),
        1,
        "{moved}"
    );
    assert_eq!(get(&app, "/v1/orders/wk-unpaid").await["status"], "EXPIRED");

    // A cancellation in each tier of the policy.
    let full = cancel(&app, &app.client_key, "wk-full", json!({})).await;
    assert_eq!(
        (full["tier"].as_str(), full["refundedNow"].as_i64()),
        (Some("FULL"), Some(60_000))
    );
    // 24 hours without the provider's confirmation: the admins' queue (the 12-hour reminder's
    // moment passed inside one move, so the queue took over). wk-full was cancelled before.
    let moved = set_clock(&app, t0 + day).await;
    assert_eq!(
        job_count(&moved, "bookings.confirmations", "markedOverdue"),
        4,
        "wk-half, wk-none, wk-emergency, wk-claim: {moved}"
    );
    let (status, confirmed) = call(
        &app,
        &app.admin_key,
        "/v1/admin/bookings/wk-claim/manual-confirm",
        Some(json!({"adminNotes": "the therapist confirmed by phone"})),
    )
    .await;
    assert_eq!(
        (status, &confirmed["status"]),
        (200, &json!("confirmed")),
        "{confirmed}"
    );
    let half = cancel(&app, &app.client_key, "wk-half", json!({})).await;
    assert_eq!(
        (half["tier"].as_str(), half["refundedNow"].as_i64()),
        (Some("HALF"), Some(40_000))
    );
    let none = cancel(&app, &app.client_key, "wk-none", json!({})).await;
    assert_eq!(
        (none["tier"].as_str(), none["refundedNow"].as_i64()),
        (Some("NONE"), Some(0))
    );
    let emergency = cancel(
        &app,
        &app.admin_key,
        "wk-emergency",
        json!({"emergency": {"evidence": ["https://files.example/er.pdf"], "refundBps": 10000}}),
    )
    .await;
    assert_eq!(emergency["tier"], "EMERGENCY");

    // The session that happened.
    set_clock(&app, t0 + day + Duration::hours(4)).await;
    let (status, body) = call(
        &app,
        &app.client_key,
        "/v1/orders/wk-kept/fulfil",
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // A provider no-show claim at the window's edge: 15 minutes after the start, to the second.
    let starts = t0 + day + Duration::hours(6);
    let claim = json!({"claimId": "clm-week", "orderId": "wk-claim", "type": "PROVIDER_NO_SHOW",
                       "filedBy": "customer", "description": "the therapist did not come"});
    set_clock(&app, starts + Duration::minutes(15) - Duration::seconds(1)).await;
    let (status, early) = call(&app, &app.client_key, "/v1/claims", Some(claim.clone())).await;
    assert_eq!(
        (status, early["code"].as_str()),
        (409, Some("E_CLAIM_WINDOW_NOT_OPEN"))
    );
    set_clock(&app, starts + Duration::minutes(15)).await;
    let (status, filed) = call(&app, &app.client_key, "/v1/claims", Some(claim)).await;
    assert_eq!(status, 201, "{filed}");
    let respond_by = starts + Duration::minutes(15) + day;
    assert_eq!(filed["respondBy"], json!(respond_by));
    // The respondent stays silent: on time to the second, then one second late.
    let moved = set_clock(&app, respond_by).await;
    assert_eq!(
        job_count(&moved, "claims.deadline_sweep", "deadlinesMissed"),
        0
    );
    let moved = set_clock(&app, respond_by + Duration::seconds(1)).await;
    assert_eq!(
        job_count(&moved, "claims.deadline_sweep", "deadlinesMissed"),
        1,
        "{moved}"
    );
    let recorded = get(&app, "/v1/claims/clm-week").await;
    assert!(recorded["deadlineMissedAt"].is_string(), "{recorded}");
    let (status, late) = call(
        &app,
        &app.client_key,
        "/v1/claims/clm-week/statements",
        Some(json!({"side": "respondent", "text": "I was ill"})),
    )
    .await;
    assert_eq!(
        (status, late["code"].as_str()),
        (409, Some("E_RESPONSE_WINDOW_CLOSED"))
    );

    // Dunning: retries 3 and 7 days after the first failure.
    let moved = set_clock(&app, t0 + day * 3).await;
    assert_eq!(job_count(&moved, "billing.run_due", "failed"), 1, "{moved}");
    let sub = get(&app, "/v1/subscriptions/sub-week").await;
    assert_eq!(
        (sub["status"].as_str(), sub["retryCount"].as_i64()),
        (Some("past_due"), Some(1)),
        "{sub}"
    );
    let moved = set_clock(&app, t0 + day * 7).await;
    assert_eq!(job_count(&moved, "billing.run_due", "failed"), 1, "{moved}");

    // Monday 10:00 in Seoul: last week's statement is confirmed by itself.
    let confirm_at = Utc.with_ymd_and_hms(2026, 10, 12, 1, 0, 0).unwrap();
    let moved = set_clock(&app, confirm_at).await;
    assert_eq!(
        job_count(&moved, "settlement.confirm", "confirmed"),
        1,
        "{moved}"
    );
    let week = statement(&app, THERAPIST, "2026-10-05").await;
    assert_eq!(week["status"], "confirmed", "{week}");
    let paid_orders: Vec<&str> = week["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["kind"] == "payment")
        .filter_map(|l| l["orderId"].as_str())
        .collect();
    for kept in ["wk-kept", "wk-half", "wk-none"] {
        assert!(paid_orders.contains(&kept), "{kept} is payable: {week}");
    }
    assert!(
        !paid_orders.contains(&"wk-full"),
        "a full refund pays nothing: {week}"
    );
    let net_payable = week["totals"]["netPayable"].as_i64().unwrap();
    assert!(net_payable > 0, "{week}");
    // The session that happened has no notes yet: held (상담일지 미작성으로 1건이 보류).
    let held: Vec<&str> = week["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["kind"] == "hold")
        .filter_map(|l| l["lineId"].as_str())
        .collect();
    assert_eq!(held, ["notes:wk-kept"], "{week}");
    let (status, body) = call(
        &app,
        &app.client_key,
        "/v1/orders/wk-kept/session-notes",
        Some(json!({"reference": "notes/wk-kept"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Wednesday 10:00: paid out through the payout provider, its reference recorded.
    let moved = set_clock(&app, confirm_at + day * 2).await;
    assert_eq!(
        job_count(&moved, "settlement.payout", "paidOut"),
        1,
        "{moved}"
    );
    let week = statement(&app, THERAPIST, "2026-10-05").await;
    assert_eq!(week["status"], "paid_out", "{week}");
    assert!(
        week["payoutReference"]
            .as_str()
            .unwrap()
            .starts_with("FPA_sbx_"),
        "{week}"
    );
    let (_, paid) = call(
        &app,
        &app.auditor_key,
        "/v1/events?type=StatementPaidOut",
        None,
    )
    .await;
    assert_eq!(
        paid["events"][0]["payload"]["amountMinor"], net_payable,
        "{paid}"
    );

    // The notes recorded on Tuesday release the hold on this week's statement.
    let next = statement(&app, THERAPIST, "2026-10-12").await;
    let released: Vec<(&str, i64)> = next["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["kind"] == "hold_released")
        .map(|l| (l["lineId"].as_str().unwrap(), l["amount"].as_i64().unwrap()))
        .collect();
    assert_eq!(released, [("notes-release:wk-kept", 90_000)], "{next}");
    // The schedule change is in the log, for both sides' notification.
    let (_, changes) = call(
        &app,
        &app.auditor_key,
        "/v1/events?type=BookingRescheduled",
        None,
    )
    .await;
    let change = &changes["events"][0]["payload"];
    assert_eq!(
        (&change["orderId"], &change["from"], &change["to"]),
        (
            &json!("wk-moved"),
            &json!(t0 + day * 4 + Duration::hours(14)),
            &json!(t0 + day * 5 + Duration::hours(1))
        ),
        "{changes}"
    );

    // The last retry, 14 days after the first failure, fails: the membership is suspended.
    let moved = set_clock(&app, t0 + day * 14).await;
    assert_eq!(job_count(&moved, "billing.run_due", "failed"), 1, "{moved}");
    let sub = get(&app, "/v1/subscriptions/sub-week").await;
    assert_eq!(sub["status"], "suspended", "{sub}");

    // The books balance, and the whole log verifies.
    let books = get(&app, "/v1/journal/trial-balance").await;
    assert_eq!(books["balanced"], true, "{books}");
    let report = payledger_store::audit::verify_all(&app.app_pool)
        .await
        .unwrap();
    assert_eq!(report.first_problem, None);
    // Recomputing the books with pages of 3 events and no order facts kept between pages (each
    // read back from its order's OrderPlaced, as on a log of millions of orders) gives the books
    // of the walk that keeps every order's facts (projections.rs has the case that needs them).
    app.wait_for_projections().await;
    let journal_position = payledger_read_models::journal::verify(&app.app_pool)
        .await
        .unwrap()
        .position;
    let head = payledger_store::head_position(&app.app_pool).await.unwrap();
    let recompute = |page_events, max_cached_orders| {
        payledger_read_models::journal::recompute_paged(
            &app.app_pool,
            journal_position,
            head,
            page_events,
            max_cached_orders,
            |_, _| {},
        )
    };
    let kept = recompute(10_000, usize::MAX).await.unwrap();
    let read_back = recompute(3, 0).await.unwrap();
    assert!(!kept.1.rows.is_empty());
    assert_eq!(read_back, kept);
    assert!(
        wall.elapsed() < std::time::Duration::from_secs(60),
        "three weeks took {:?} of wall time",
        wall.elapsed()
    );
}
