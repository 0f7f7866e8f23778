//! Paddle's notification timestamps over HTTP (issue 15): Paddle documents a 5-second tolerance
//! for its signed `ts`; payledger holds Paddle's notifications to it by default, configurable
//! (`PAYLEDGER_WEBHOOK_TOLERANCE_PADDLE_S`).

use crate::paddle_steps::spawn;
use payledger_tests::TestApp;
use serde_json::{json, Value};
use std::time::Duration;

/// A Paddle notification signed `age_s` seconds ago, sent as Paddle sends it.
async fn send_signed_paddle(app: &TestApp, age_s: i64, event_id: &str) -> (u16, Value) {
    let body = json!({
        "event_id": event_id, "event_type": "customer.created",
        "occurred_at": chrono::Utc::now().to_rfc3339(), "notification_id": format!("ntf_{event_id}"),
        "data": {"id": "ctm_01tolerance", "email": "t@example.com"}
    })
    .to_string();
    let signed_at = chrono::Utc::now().timestamp() - age_s;
    let response = app
        .client
        .post(format!("{}/v1/webhooks/paddle", app.address))
        .header("content-type", "application/json")
        .header(
            "Paddle-Signature",
            payledger_sandbox::paddle_signature_header(
                crate::paddle_steps::SECRET,
                signed_at,
                &body,
            ),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn paddle_notifications_are_held_to_paddles_five_second_timestamp_tolerance_by_default() {
    let app = spawn().await;
    let (status, fresh) = send_signed_paddle(&app, 1, "evt_01fresh").await;
    assert!((200..300).contains(&status), "{status} {fresh}");
    let (status, stale) = send_signed_paddle(&app, 20, "evt_01stale").await;
    assert_eq!(
        (status, stale["code"].as_str()),
        (400, Some("E_WEBHOOK_TIMESTAMP_OUT_OF_TOLERANCE")),
        "{stale}"
    );
}

#[tokio::test]
async fn paddles_timestamp_tolerance_is_configurable() {
    let app = crate::paddle_steps::spawn_with_tolerance(Duration::from_secs(60)).await;
    let (status, accepted) = send_signed_paddle(&app, 20, "evt_01late").await;
    assert!((200..300).contains(&status), "{status} {accepted}");
    let (status, stale) = send_signed_paddle(&app, 120, "evt_01later").await;
    assert_eq!(status, 400, "{stale}");
}
