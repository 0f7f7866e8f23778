//! Session-notes holds (source document 5, §5.1 정산 알림: "상담일지 미작성으로 1건이
//! 보류되었습니다"): a fulfilled booking whose provider has not recorded the session notes is held
//! on the payee's statement; the Monday confirmation pays the rest, and the hold is released on
//! the statement of the week the notes arrive.

use crate::test_clock::{
    call, job_count, monday, paid_booking, set_clock, spawn_on_test_clock, statement,
};
use chrono::{Duration, TimeZone, Utc};
use serde_json::{json, Value};

fn lines_of<'a>(statement: &'a Value, kind: &str) -> Vec<(&'a str, i64)> {
    statement["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["kind"] == kind)
        .map(|l| (l["lineId"].as_str().unwrap(), l["amount"].as_i64().unwrap()))
        .collect()
}

#[tokio::test]
async fn a_session_without_notes_is_held_at_the_monday_confirmation_and_released_when_they_arrive()
{
    let app = spawn_on_test_clock(monday()).await;
    paid_booking(
        &app,
        "notes-filed",
        "therapist-park",
        80_000,
        monday() + Duration::hours(3),
    )
    .await;
    paid_booking(
        &app,
        "notes-missing",
        "therapist-park",
        50_000,
        monday() + Duration::hours(5),
    )
    .await;
    set_clock(&app, monday() + Duration::hours(6)).await;
    let (status, body) = call(
        &app,
        &app.client_key,
        "/v1/orders/notes-filed/session-notes",
        Some(json!({"reference": "docs/notes-filed"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sessionNotesAt"], json!(monday() + Duration::hours(6)));
    let (status, body) = call(
        &app,
        &app.client_key,
        "/v1/orders/notes-filed/session-notes",
        Some(json!({"reference": ""})),
    )
    .await;
    assert_eq!(
        (status, &body["replay"]),
        (200, &json!(true)),
        "recorded once: {body}"
    );
    for id in ["notes-filed", "notes-missing"] {
        let (status, body) = call(
            &app,
            &app.client_key,
            &format!("/v1/orders/{id}/fulfil"),
            Some(json!({})),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }

    let confirm_at = Utc.with_ymd_and_hms(2026, 10, 12, 1, 0, 0).unwrap();
    let moved = set_clock(&app, confirm_at).await;
    assert_eq!(
        job_count(&moved, "settlement.confirm", "confirmed"),
        1,
        "{moved}"
    );
    let week = statement(&app, "therapist-park", "2026-10-05").await;
    assert_eq!(week["status"], "confirmed", "{week}");
    assert_eq!(
        lines_of(&week, "hold"),
        [("notes:notes-missing", 50_000)],
        "{week}"
    );
    assert_eq!(week["totals"]["payments"], 130_000);
    assert_eq!(week["totals"]["held"], 50_000);
    // The fee is on the week's sales (10 % of 130,000); the held 50,000 waits for the notes.
    assert_eq!(
        week["totals"]["netPayable"],
        130_000 - 13_000 - 50_000,
        "{week}"
    );

    // The Monday notification to the payee (its body is the event) says how many sessions
    // are held: "상담일지 미작성으로 1건이 보류되었습니다".
    let (status, events) = call(
        &app,
        &app.auditor_key,
        "/v1/events?type=StatementConfirmed",
        None,
    )
    .await;
    assert_eq!(status, 200, "{events}");
    let confirmed: Vec<(i64, i64)> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["payload"]["payeeId"] == "therapist-park")
        .map(|e| {
            (
                e["payload"]["sessionsHeldForNotes"].as_i64().unwrap(),
                e["payload"]["heldForNotesMinor"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(confirmed, [(1, 50_000)], "{events}");

    // The notes arrive on Tuesday: the held amount is released on this week's statement.
    set_clock(&app, confirm_at + Duration::days(1)).await;
    let (status, body) = call(
        &app,
        &app.client_key,
        "/v1/orders/notes-missing/session-notes",
        Some(json!({"reference": "docs/notes-missing"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let next = statement(&app, "therapist-park", "2026-10-12").await;
        if !next.is_null() && !lines_of(&next, "hold_released").is_empty() {
            assert_eq!(
                lines_of(&next, "hold_released"),
                [("notes-release:notes-missing", 50_000)],
                "{next}"
            );
            assert_eq!(next["totals"]["released"], 50_000);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never released: {next}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The confirmed statement was not touched.
    let week = statement(&app, "therapist-park", "2026-10-05").await;
    assert_eq!(week["totals"]["held"], 50_000);
}
