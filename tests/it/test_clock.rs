//! The scenario clock (`serve --test-clock`): read it, move it forward only, share it between
//! the `serve` processes of one database, refuse it with live keys; and the jobs a move runs —
//! each automatic step with its own test (settlement confirmation and payout here; order expiry,
//! claim deadlines and dunning in `scenario.rs`).

use chrono::{DateTime, Duration, TimeZone, Utc};
use payledger_tests::{spawn_app, spawn_app_with, SpawnOptions, TestApp};
use serde_json::{json, Value};

/// Monday 2026-10-05 00:00 UTC = 09:00 in Seoul, the first day of a settlement week.
pub fn monday() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 10, 5, 0, 0, 0).unwrap()
}

pub async fn spawn_on_test_clock(start: DateTime<Utc>) -> TestApp {
    spawn_app_with(SpawnOptions {
        test_clock_start: Some(start),
        ..SpawnOptions::default()
    })
    .await
}

/// Status and JSON body of an answer.
pub async fn answer(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

pub async fn call(app: &TestApp, key: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let response = match body {
        Some(body) => app.post_as(key, path, &body).await,
        None => app.get_as(key, path).await,
    };
    answer(response).await
}

pub async fn clock_now(app: &TestApp) -> DateTime<Utc> {
    let (status, body) = call(app, &app.admin_key, "/v1/admin/test-clock", None).await;
    assert_eq!(status, 200, "{body}");
    DateTime::parse_from_rfc3339(body["now"].as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

/// Sets the clock to `to` and answers what the jobs did.
pub async fn set_clock(app: &TestApp, to: DateTime<Utc>) -> Value {
    let (status, body) = call(
        app,
        &app.admin_key,
        "/v1/admin/test-clock/set",
        Some(json!({"to": to.to_rfc3339()})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["caughtUp"], true, "{body}");
    body
}

/// What job `name` reported in a move's answer, summed over its rounds.
pub fn job_count(moved: &Value, name: &str, field: &str) -> i64 {
    moved["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["job"] == name)
        .map(|j| j["result"][field].as_i64().unwrap_or(0))
        .sum()
}

pub async fn paid_booking(
    app: &TestApp,
    order_id: &str,
    payee: &str,
    amount: i64,
    starts_at: DateTime<Utc>,
) {
    let (status, body) = call(
        app,
        &app.client_key,
        "/v1/orders",
        Some(json!({
            "orderId": order_id, "amount": amount, "currency": "KRW",
            "customerId": "parent-lee", "payeeId": payee,
            "orderName": "Speech therapy session",
            "serviceStartsAt": starts_at.to_rfc3339(),
        })),
    )
    .await;
    assert_eq!(status, 201, "place {order_id}: {body}");
    let (status, body) = answer(
        app.confirm(order_id, &format!("pk_{order_id}"), amount)
            .await,
    )
    .await;
    assert_eq!(status, 200, "confirm {order_id}: {body}");
}

pub async fn statement(app: &TestApp, payee: &str, week: &str) -> Value {
    let (status, body) = call(
        app,
        &app.support_key,
        &format!("/v1/settlements?payeeId={payee}&week={week}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["statements"][0].clone()
}

#[tokio::test]
async fn without_the_flag_there_is_no_clock_to_move() {
    let app = spawn_app().await;
    let (status, body) = call(&app, &app.admin_key, "/v1/admin/test-clock", None).await;
    assert_eq!((status, &body["testClock"]), (200, &json!(false)), "{body}");
    let (status, body) = call(
        &app,
        &app.admin_key,
        "/v1/admin/test-clock/advance",
        Some(json!({"days": 1})),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("E_TEST_CLOCK_DISABLED"))
    );
    let (status, _) = call(
        &app,
        &app.client_key,
        "/v1/admin/test-clock/advance",
        Some(json!({"days": 1})),
    )
    .await;
    assert_eq!(status, 403, "clients do not move time");
}

#[tokio::test]
async fn the_clock_moves_forward_only_and_every_rule_reads_it() {
    let app = spawn_on_test_clock(monday()).await;
    assert_eq!(clock_now(&app).await, monday());
    let (status, moved) = call(
        &app,
        &app.admin_key,
        "/v1/admin/test-clock/advance",
        Some(json!({"hours": 1, "minutes": 30})),
    )
    .await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["now"], json!(monday() + Duration::minutes(90)));
    let (status, body) = call(
        &app,
        &app.admin_key,
        "/v1/admin/test-clock/set",
        Some(json!({"to": monday().to_rfc3339()})),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("E_CLOCK_BACKWARDS")),
        "{body}"
    );
    let (status, body) = call(
        &app,
        &app.admin_key,
        "/v1/admin/test-clock/advance",
        Some(json!({"seconds": -1})),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("E_INVALID_FIELD"))
    );
    assert_eq!(clock_now(&app).await, monday() + Duration::minutes(90));

    // The order's placement is scenario time; the event's recordedAt is the database's.
    let placed = app.place_order("order-clock-1", 5_000).await;
    assert_eq!(placed["placedAt"], json!(monday() + Duration::minutes(90)));
    let (_, stream) = call(
        &app,
        &app.auditor_key,
        "/v1/streams/order-order-clock-1",
        None,
    )
    .await;
    let event = &stream["events"][0];
    let recorded: DateTime<Utc> = event["recordedAt"].as_str().unwrap().parse().unwrap();
    assert!(recorded > Utc::now() - Duration::minutes(5), "{event}");
    assert_eq!(
        event["payload"]["placedAt"],
        json!(monday() + Duration::minutes(90))
    );
}

#[tokio::test]
async fn two_servers_on_one_database_share_the_scenario_clock() {
    let first = spawn_on_test_clock(monday()).await;
    let mut settings = payledger::startup::Settings::embedded(
        "127.0.0.1:0".parse().unwrap(),
        std::env::temp_dir().join("payledger-tests-unused"),
    );
    settings.database_url = Some(first.db.app_url.clone());
    settings.migrate_database_url = Some(first.db.owner_url.clone());
    settings.provider = payledger::startup::ProviderSettings::Sandbox {
        base_url: first.sandbox.base_url(),
    };
    settings.db_max_connections = 8;
    settings.http_workers = 1;
    settings.reconcile_interval_ms = 0;
    settings.settlement_interval_ms = 0;
    settings.test_clock = true;
    // Ignored: the database's clock exists already and keeps its time.
    settings.test_clock_start = Some(monday() - Duration::days(100));
    let second = payledger::startup::Application::build(settings)
        .await
        .expect("build the second server");
    let second_clock = second.state.payments.clock().clone();
    tokio::spawn(second.run_until_stopped());
    assert_eq!(second_clock.now(), monday());

    set_clock(&first, monday() + Duration::days(2)).await;
    // The second process follows the move without being asked (NOTIFY, or its poll).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while second_clock.now() != monday() + Duration::days(2) {
        assert!(tokio::time::Instant::now() < deadline, "not followed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_test_clock_is_refused_with_live_provider_keys() {
    let db = payledger_testdb::TestDatabase::fresh().await;
    let mut settings = payledger::startup::Settings::embedded(
        "127.0.0.1:0".parse().unwrap(),
        std::env::temp_dir().join("payledger-tests-unused"),
    );
    settings.database_url = Some(db.app_url.clone());
    settings.migrate_database_url = Some(db.owner_url.clone());
    settings.provider = payledger::startup::ProviderSettings::Toss {
        base_url: "https://api.tosspayments.com".to_string(),
        secret_key: payledger_connector_toss::TossSecretKey::new("live_sk_not_a_real_key"),
    };
    settings.test_clock = true;
    let refused = payledger::startup::Application::build(settings).await;
    let message = format!("{:#}", refused.err().expect("refused"));
    assert!(message.contains("live provider keys"), "{message}");
    assert!(
        !message.contains("live_sk_not"),
        "the key is not printed: {message}"
    );
    let exists = payledger_app::scenario_clock::ScenarioClock::exists(&db.app_pool)
        .await
        .unwrap();
    assert!(!exists, "no scenario clock was created");
}

#[tokio::test]
async fn statements_are_confirmed_on_monday_and_paid_out_on_wednesday_by_themselves() {
    let app = spawn_on_test_clock(monday()).await;
    paid_booking(
        &app,
        "weekly-auto",
        "therapist-park",
        80_000,
        monday() + Duration::hours(3),
    )
    .await;
    paid_booking(
        &app,
        "weekly-refused",
        "sandbox_payout_fail_choi",
        50_000,
        monday() + Duration::hours(3),
    )
    .await;
    set_clock(&app, monday() + Duration::hours(4)).await;
    for id in ["weekly-auto", "weekly-refused"] {
        let (status, body) = call(
            &app,
            &app.client_key,
            &format!("/v1/orders/{id}/session-notes"),
            Some(json!({"reference": format!("notes/{id}")})),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = call(
            &app,
            &app.client_key,
            &format!("/v1/orders/{id}/fulfil"),
            Some(json!({})),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    // Monday 10:00 in Seoul is 01:00 UTC; the week ended Sunday 15:00 UTC.
    let confirm_at = Utc.with_ymd_and_hms(2026, 10, 12, 1, 0, 0).unwrap();
    let moved = set_clock(&app, confirm_at - Duration::seconds(1)).await;
    assert_eq!(job_count(&moved, "settlement.confirm", "confirmed"), 0);
    assert_eq!(
        statement(&app, "therapist-park", "2026-10-05").await["status"],
        "open"
    );

    let moved = set_clock(&app, confirm_at).await;
    assert_eq!(
        job_count(&moved, "settlement.confirm", "confirmed"),
        2,
        "{moved}"
    );
    let confirmed = statement(&app, "therapist-park", "2026-10-05").await;
    assert_eq!(confirmed["status"], "confirmed");
    assert_eq!(confirmed["confirmedAt"], json!(confirm_at));
    assert_eq!(confirmed["totals"]["netPayable"], 72_000);

    let payout_at = confirm_at + Duration::days(2);
    let moved = set_clock(&app, payout_at - Duration::seconds(1)).await;
    assert_eq!(job_count(&moved, "settlement.payout", "paidOut"), 0);
    let moved = set_clock(&app, payout_at).await;
    assert_eq!(
        job_count(&moved, "settlement.payout", "paidOut"),
        1,
        "{moved}"
    );
    assert!(
        job_count(&moved, "settlement.payout", "payoutRefused") >= 1,
        "{moved}"
    );
    let paid = statement(&app, "therapist-park", "2026-10-05").await;
    assert_eq!(paid["status"], "paid_out", "{paid}");
    assert!(
        paid["payoutReference"]
            .as_str()
            .unwrap()
            .starts_with("FPA_sbx_"),
        "{paid}"
    );
    // The provider refused the other payee: the statement waits, confirmed, for a person.
    let refused = statement(&app, "sandbox_payout_fail_choi", "2026-10-05").await;
    assert_eq!(refused["status"], "confirmed", "{refused}");

    // A later move pays nothing twice.
    let moved = set_clock(&app, payout_at + Duration::hours(1)).await;
    assert_eq!(job_count(&moved, "settlement.payout", "paidOut"), 0);
    let (_, events) = call(
        &app,
        &app.auditor_key,
        "/v1/events?type=StatementPaidOut",
        None,
    )
    .await;
    assert_eq!(events["events"].as_array().unwrap().len(), 1, "{events}");
}

#[tokio::test]
async fn the_embedded_sandbox_tells_the_scenario_time() {
    let db = payledger_testdb::TestDatabase::fresh().await;
    let keys: Vec<String> = payledger_app::api_keys::seed_if_empty(
        &db.app_pool,
        payledger_tests::TEST_KEYS,
        "system:tests",
    )
    .await
    .unwrap()
    .into_iter()
    .map(|k| k.secret.expose().to_string())
    .collect();
    let mut settings = payledger::startup::Settings::embedded(
        "127.0.0.1:0".parse().unwrap(),
        std::env::temp_dir().join("payledger-tests-unused"),
    );
    settings.database_url = Some(db.app_url.clone());
    settings.migrate_database_url = Some(db.owner_url.clone());
    settings.provider = payledger::startup::ProviderSettings::EmbeddedSandbox;
    settings.db_max_connections = 8;
    settings.http_workers = 1;
    settings.settlement_interval_ms = 0;
    settings.test_clock = true;
    settings.test_clock_start = Some(monday());
    let app = payledger::startup::Application::build(settings)
        .await
        .expect("build the server");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        client
            .post(format!("{address}{path}"))
            .bearer_auth(&keys[0])
            .json(&body)
            .send()
    };
    let placed = post(
        "/v1/orders",
        json!({"orderId": "order-sbx-time", "amount": 12_000, "currency": "KRW",
               "customerId": "cust_1", "payeeId": "payee_1", "orderName": "Yoga class"}),
    )
    .await
    .unwrap();
    assert_eq!(placed.status().as_u16(), 201);
    let confirmed = post(
        "/v1/payments/confirm",
        json!({"paymentKey": "pk_sbx_time", "orderId": "order-sbx-time", "amount": 12_000}),
    )
    .await
    .unwrap();
    assert_eq!(confirmed.status().as_u16(), 200);
    let stream: Value = client
        .get(format!("{address}/v1/streams/order-order-sbx-time"))
        .bearer_auth(&keys[3])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let captured = stream["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["eventType"] == "PaymentCaptured")
        .expect("captured");
    // The provider approved it at the scenario's Monday, not at today's date.
    let approved: DateTime<Utc> = captured["payload"]["approvedAt"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((approved - monday()).num_seconds().abs() <= 1, "{captured}");
}

#[tokio::test]
async fn reminders_go_out_the_day_before_at_14_00_and_2_hours_before_by_themselves() {
    let app = spawn_on_test_clock(monday()).await;
    // Wednesday 19:00 in Seoul.
    let starts = Utc.with_ymd_and_hms(2026, 10, 7, 10, 0, 0).unwrap();
    paid_booking(&app, "remind-me", "therapist-park", 80_000, starts).await;
    // Another provider's slot: two bookings of one slot would race the slot process, which
    // refunds the loser (SLOT_TAKEN) while the test cancels it.
    paid_booking(&app, "remind-cancelled", "therapist-lee", 80_000, starts).await;
    let (status, body) = call(
        &app,
        &app.client_key,
        "/v1/orders/remind-cancelled/cancel",
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Tuesday 14:00 in Seoul is 05:00 UTC.
    let day_before = Utc.with_ymd_and_hms(2026, 10, 6, 5, 0, 0).unwrap();
    let moved = set_clock(&app, day_before - Duration::seconds(1)).await;
    assert_eq!(
        job_count(&moved, "bookings.reminders", "remindersRequested"),
        0
    );
    let moved = set_clock(&app, day_before).await;
    assert_eq!(
        job_count(&moved, "bookings.reminders", "remindersRequested"),
        1,
        "{moved}"
    );
    let moved = set_clock(&app, starts - Duration::hours(2) - Duration::seconds(1)).await;
    assert_eq!(
        job_count(&moved, "bookings.reminders", "remindersRequested"),
        0
    );
    let moved = set_clock(&app, starts - Duration::hours(2)).await;
    assert_eq!(
        job_count(&moved, "bookings.reminders", "remindersRequested"),
        1,
        "{moved}"
    );
    let moved = set_clock(&app, starts - Duration::minutes(30)).await;
    assert_eq!(
        job_count(&moved, "bookings.reminders", "remindersRequested"),
        0
    );

    let (_, events) = call(
        &app,
        &app.auditor_key,
        "/v1/events?type=SessionReminderRequested",
        None,
    )
    .await;
    let kinds: Vec<(&str, &str)> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["payload"]["orderId"].as_str().unwrap(),
                e["payload"]["kind"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("remind-me", "day_before"),
            ("remind-me", "two_hours_before")
        ],
        "the cancelled booking is not reminded"
    );
}
