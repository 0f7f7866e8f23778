//! Crypto-shredding beyond orders and claims (issue 20): the notes and reasons of bookings are
//! sealed under their customer, a payee's own texts under the payee, and an erasure in one
//! process stops every other process from sealing or revealing with the erased key, although
//! each keeps unwrapped keys in a short-lived cache.

use crate::test_clock::{call, monday, paid_booking, set_clock, spawn_on_test_clock};
use chrono::Duration;
use payledger_app::privacy::{
    erase_subject, erase_subject_unwaited, PrivacyVault, SubjectKind, ERASED, TOKEN_PREFIX,
};
use payledger_tests::{data_dir, spawn_app, TestApp};
use serde_json::{json, Value};

const RESCHEDULE_REASON: &str = "이민지 어린이 병원 진료와 겹침";
const NOTES_REFERENCE: &str = "https://notes.example/lee-minji/2026-12-10";
const ADMIN_NOTES: &str = "보호자 이수진님과 통화로 확인";
const FORCE_CANCEL_REASON: &str = "치료사 연락 두절, 보호자 이수진님께 안내";

/// The payloads of every event of one type in the raw log (sealed tokens, as hashed).
async fn raw_payloads(app: &TestApp, event_type: &str) -> Vec<Value> {
    let (status, body) = call(
        app,
        &app.auditor_key,
        &format!("/v1/events?type={event_type}&limit=100"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["payload"].clone())
        .collect()
}

/// The one sealed field of one event type: a token naming `subject`.
async fn sealed_field(app: &TestApp, event_type: &str, field: &str, subject: &str) -> String {
    use base64::Engine as _;
    let payloads = raw_payloads(app, event_type).await;
    assert_eq!(payloads.len(), 1, "{event_type}: {payloads:?}");
    let token = payloads[0][field].as_str().unwrap().to_string();
    assert!(
        token.starts_with(TOKEN_PREFIX),
        "{event_type}.{field}: {token}"
    );
    let named = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(subject);
    assert!(
        token.contains(&format!(":{named}:")),
        "{event_type}.{field} is sealed under {subject}: {token}"
    );
    token
}

/// The vault of a command-line process beside the test server: the same master key, its own
/// key cache.
fn cli_vault(app: &TestApp) -> PrivacyVault {
    payledger::privacy_cli::vault(&app.app_pool, &data_dir())
        .unwrap()
        .expect("sealing is on")
}

/// The trial balance once every projection has caught up with the log, so that two readings
/// around an erasure compare the same books, not a journal still catching up.
async fn trial_balance(app: &TestApp) -> Value {
    app.wait_for_projections().await;
    let (status, body) = call(app, &app.auditor_key, "/v1/journal/trial-balance", None).await;
    assert_eq!(status, 200, "{body}");
    body["accounts"].clone()
}

async fn booking(app: &TestApp, order_id: &str) -> Value {
    let (status, body) = call(
        app,
        &app.support_key,
        &format!("/v1/orders/{order_id}/booking"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn booking_notes_and_reasons_are_sealed_revealed_and_erased_with_their_customer_in_every_process(
) {
    let app = spawn_on_test_clock(monday()).await;
    paid_booking(
        &app,
        "pn-move",
        "therapist-park",
        80_000,
        monday() + Duration::days(5),
    )
    .await;
    paid_booking(
        &app,
        "pn-manual",
        "therapist-lee",
        70_000,
        monday() + Duration::days(4),
    )
    .await;
    paid_booking(
        &app,
        "pn-force",
        "therapist-kim",
        60_000,
        monday() + Duration::days(4),
    )
    .await;

    let (status, body) = call(
        &app,
        &app.client_key,
        "/v1/orders/pn-move/reschedule",
        Some(
            json!({"serviceStartsAt": (monday() + Duration::days(6)).to_rfc3339(),
                    "reason": RESCHEDULE_REASON}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(
        &app,
        &app.client_key,
        "/v1/orders/pn-move/session-notes",
        Some(json!({"reference": NOTES_REFERENCE})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // A day later the unconfirmed bookings are in the admins' queue.
    set_clock(&app, monday() + Duration::hours(25)).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while booking(&app, "pn-manual").await["status"] != "overdue"
        || booking(&app, "pn-force").await["status"] != "overdue"
    {
        assert!(tokio::time::Instant::now() < deadline, "never overdue");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (status, confirmed) = call(
        &app,
        &app.admin_key,
        "/v1/admin/bookings/pn-manual/manual-confirm",
        Some(json!({"adminNotes": ADMIN_NOTES})),
    )
    .await;
    assert_eq!(status, 200, "{confirmed}");
    assert_eq!(
        confirmed["adminNotes"], ADMIN_NOTES,
        "revealed in the answer"
    );
    let (status, body) = call(
        &app,
        &app.admin_key,
        "/v1/admin/bookings/pn-force/force-cancel",
        Some(json!({"reason": FORCE_CANCEL_REASON})),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Sealed in the log, each under the booking's customer.
    let customer = "customer:parent-lee";
    let tokens = [
        (
            sealed_field(&app, "BookingRescheduled", "reason", customer).await,
            RESCHEDULE_REASON,
        ),
        (
            sealed_field(&app, "SessionNotesRecorded", "reference", customer).await,
            NOTES_REFERENCE,
        ),
        (
            sealed_field(&app, "BookingConfirmed", "adminNotes", customer).await,
            ADMIN_NOTES,
        ),
        (
            sealed_field(&app, "BookingCancelled", "forceCancelReason", customer).await,
            FORCE_CANCEL_REASON,
        ),
    ];
    let (_, everything) = call(&app, &app.auditor_key, "/v1/events?limit=1000", None).await;
    let raw = everything.to_string();
    for (_, text) in &tokens {
        assert!(!raw.contains(text), "{text} is in the log in clear");
    }
    // Revealed: over the API (the admin notes are the one text a booking answer shows) and by
    // any process holding the master key.
    assert_eq!(booking(&app, "pn-manual").await["adminNotes"], ADMIN_NOTES);
    let other_process = cli_vault(&app);
    for (token, text) in &tokens {
        assert_eq!(other_process.reveal_text(token).await.unwrap(), *text);
    }
    let books_before = trial_balance(&app).await;

    // The server has just revealed the notes, so its cache holds the customer's key; the
    // erasure runs in another process (the command line's vault), and the first answer after it
    // returns must already show the notes erased.
    assert_eq!(booking(&app, "pn-manual").await["adminNotes"], ADMIN_NOTES);
    let erased = payledger::privacy_cli::run(
        payledger::privacy_cli::PrivacyCommand::Erase {
            customer: Some("parent-lee".into()),
            payee: None,
            reason: "erasure request (PIPA art. 36)".into(),
        },
        &app.app_pool,
        &data_dir(),
    )
    .await;
    assert!(erased.is_ok(), "{erased:?}");
    assert_eq!(booking(&app, "pn-manual").await["adminNotes"], ERASED);
    let fresh_process = cli_vault(&app);
    for (token, _) in &tokens {
        assert_eq!(other_process.reveal_text(token).await.unwrap(), ERASED);
        assert_eq!(fresh_process.reveal_text(token).await.unwrap(), ERASED);
    }

    // Money, ids and the log are untouched.
    let booking_after = booking(&app, "pn-force").await;
    assert_eq!(booking_after["status"], "cancelled");
    assert_eq!(trial_balance(&app).await, books_before);
    let chains = payledger_store::audit::verify_all(&app.app_pool)
        .await
        .unwrap();
    assert_eq!(chains.first_problem, None);
    let (_, erasures) = call(
        &app,
        &app.auditor_key,
        "/v1/streams/privacy-customer-parent-lee",
        None,
    )
    .await;
    assert_eq!(erasures["events"][0]["payload"]["subjectType"], "customer");
    assert_eq!(erasures["events"][0]["metadata"]["actor"], "admin:cli");
}

async fn erase_payee(app: &TestApp, key: &str) -> (u16, Value) {
    call(
        app,
        key,
        "/v1/admin/privacy/payees/payee_pp/erase",
        Some(json!({"reason": "the payee left the platform"})),
    )
    .await
}

/// Seals an order name of `cust_cache` in `vault`; the token.
async fn seal_name(vault: &PrivacyVault, name: &str) -> String {
    let mut payload = json!({"customerId": "cust_cache", "orderName": name});
    vault.seal_event("OrderPlaced", &mut payload).await.unwrap();
    payload["orderName"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_payee_s_own_texts_are_sealed_under_its_key_and_erased_with_it_alone() {
    const SUSPENSION_REASON: &str = "김도윤 선생님 자격 확인 중 (민원 2건)";
    let app = spawn_app().await;
    let placed = app
        .post(
            "/v1/orders",
            &json!({"orderId": "pp-order", "amount": 30_000, "currency": "KRW",
                    "customerId": "cust_pp", "payeeId": "payee_pp", "orderName": "Kept name"}),
        )
        .await;
    assert_eq!(placed.status().as_u16(), 201);
    assert_eq!(app.confirm("pp-order", "pk_pp", 30_000).await.status(), 200);
    let (status, switches) = call(
        &app,
        &app.admin_key,
        "/v1/admin/switches/payees/payee_pp/suspend",
        Some(json!({"reason": SUSPENSION_REASON})),
    )
    .await;
    assert_eq!(status, 200, "{switches}");
    let token = sealed_field(&app, "PayeeSalesSuspended", "reason", "payee:payee_pp").await;
    assert!(!token.contains(SUSPENSION_REASON));
    let reason_shown = |switches: &Value| {
        switches["suspendedPayees"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["payeeId"] == "payee_pp")
            .map(|s| s["reason"].clone())
    };
    let (_, switches) = call(&app, &app.support_key, "/v1/admin/switches", None).await;
    assert_eq!(
        reason_shown(&switches),
        Some(json!(SUSPENSION_REASON)),
        "{switches}"
    );
    let books_before = trial_balance(&app).await;

    let (status, _) = erase_payee(&app, &app.support_key).await;
    assert_eq!(status, 403, "only admins erase");
    let (status, first) = erase_payee(&app, &app.admin_key).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(
        (
            &first["payeeId"],
            &first["keysDestroyed"],
            &first["recorded"]
        ),
        (&json!("payee_pp"), &json!(1), &json!(true))
    );
    let (_, switches) = call(&app, &app.support_key, "/v1/admin/switches", None).await;
    assert_eq!(reason_shown(&switches), Some(json!(ERASED)), "{switches}");
    // The customer's data is another subject's: untouched.
    let (_, order) = call(&app, &app.support_key, "/v1/orders/pp-order", None).await;
    assert_eq!(order["orderName"], "Kept name");
    assert_eq!(order["payeeId"], "payee_pp", "ids are untouched");

    // Idempotent, over HTTP and on the command line.
    let (_, again) = erase_payee(&app, &app.admin_key).await;
    assert_eq!(
        (&again["keysDestroyed"], &again["recorded"]),
        (&json!(0), &json!(false))
    );
    let by_cli = payledger::privacy_cli::run(
        payledger::privacy_cli::PrivacyCommand::Erase {
            customer: None,
            payee: Some("payee_pp".into()),
            reason: "asked again".into(),
        },
        &app.app_pool,
        &data_dir(),
    )
    .await;
    assert!(by_cli.is_ok(), "{by_cli:?}");
    let (_, erasures) = call(
        &app,
        &app.auditor_key,
        "/v1/streams/privacy-payee-payee_pp",
        None,
    )
    .await;
    let events = erasures["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{erasures}");
    assert_eq!(events[0]["eventType"], "SubjectErased");
    assert_eq!(events[0]["payload"]["subjectType"], "payee");
    assert_eq!(events[0]["payload"]["subjectId"], "payee_pp");
    assert_eq!(events[0]["metadata"]["actor"], "admin:ops");

    assert_eq!(trial_balance(&app).await, books_before);
    let chains = payledger_store::audit::verify_all(&app.app_pool)
        .await
        .unwrap();
    assert_eq!(chains.first_problem, None);
}

#[tokio::test]
async fn an_erasure_in_one_process_stops_every_other_process_from_using_the_key_before_it_answers()
{
    let db = payledger_testdb::TestDatabase::fresh().await;
    let master = [7u8; 32];
    let ttl = payledger_app::privacy::MAX_KEY_CACHE_TTL;
    // Two processes: each its own pool and its own cache, at the longest cache time allowed.
    let first = PrivacyVault::new(db.app_pool.clone(), &master).with_key_cache_ttl(ttl);
    let second = PrivacyVault::new(sqlx::PgPool::connect(&db.app_url).await.unwrap(), &master)
        .with_key_cache_ttl(ttl);
    let uncached = PrivacyVault::new(db.app_pool.clone(), &master)
        .with_key_cache_ttl(std::time::Duration::ZERO);
    let store = payledger_store::EventStore::new(
        db.app_pool.clone(),
        payledger_store::WriterConfig::default(),
    );
    let context = payledger_app::context::RequestContext::new("admin:tests", None);

    // Both processes have the key in their caches.
    let token = seal_name(&first, "김민지 검진").await;
    assert!(token.starts_with(&format!("{TOKEN_PREFIX}1:")), "{token}");
    assert_eq!(first.reveal_text(&token).await.unwrap(), "김민지 검진");
    assert_eq!(second.reveal_text(&token).await.unwrap(), "김민지 검진");

    // The second erases; when it has answered, the first can neither reveal nor seal with the
    // erased key, although it read the key less than its cache time ago.
    let started = std::time::Instant::now();
    let outcome = erase_subject(
        &second,
        &store,
        SubjectKind::Customer,
        "cust_cache",
        "erasure request",
        chrono::Utc::now(),
        &context,
    )
    .await
    .unwrap();
    assert_eq!(outcome.keys_destroyed, 1);
    assert!(started.elapsed() >= ttl, "the erasure waits out the caches");
    assert_eq!(first.reveal_text(&token).await.unwrap(), ERASED);
    let after = seal_name(&first, "새 주문").await;
    let sealed_at = std::time::Instant::now();
    assert!(
        after.starts_with(&format!("{TOKEN_PREFIX}2:")),
        "a new generation, not the erased key: {after}"
    );
    assert_eq!(second.reveal_text(&after).await.unwrap(), "새 주문");
    assert_eq!(first.reveal_text(&after).await.unwrap(), "새 주문");

    // Why the erasure waits: without it, the first process would still reveal from its cache
    // (the key it read a moment ago), while a process without a cache sees the erasure at once.
    erase_subject_unwaited(
        &second,
        &store,
        SubjectKind::Customer,
        "cust_cache",
        "erasure request",
        chrono::Utc::now(),
        &context,
    )
    .await
    .unwrap();
    assert_eq!(uncached.reveal_text(&after).await.unwrap(), ERASED);
    let still_shown = first.reveal_text(&after).await.unwrap();
    // (Only provable while the first's read is younger than its cache time: a machine that
    // stalled longer has let the entry expire.)
    if sealed_at.elapsed() < ttl / 2 {
        assert_eq!(
            still_shown, "새 주문",
            "within its cache time the first still holds the key"
        );
    }
    second.wait_out_key_caches().await;
    assert_eq!(first.reveal_text(&after).await.unwrap(), ERASED);
    assert_eq!(second.reveal_text(&after).await.unwrap(), ERASED);
}
