//! A read whose database connection stops answering is a 503 within
//! `PAYLEDGER_DATABASE_CALL_TIMEOUT_MS`, and the connection it was stuck on is closed, never
//! handed to the next request (`payledger_store::call_bounds`, `payledger_http::deadline`).
//!
//! Two ways to make a connection stop answering without a network namespace (the partition test,
//! `crates/payledger/tests/cli/partition.rs`, cuts the network itself, as root):
//! - a lock the read waits for (the backend is alive, its answer only late);
//! - the read's PostgreSQL backend stopped with SIGSTOP (no answer ever comes, like a partition;
//!   needs the managed test cluster on this machine).

use payledger_tests::{spawn_app_with, SpawnOptions, TestApp};
use serde_json::Value;
use sqlx::PgPool;
use std::process::Command;
use std::time::{Duration, Instant};

const CALL_TIMEOUT_MS: u64 = 1_000;
/// Scheduling slack on a loaded machine, on top of a bound.
const SLACK_MS: u128 = 1_500;

async fn app() -> TestApp {
    spawn_app_with(SpawnOptions {
        database_call_timeout_ms: CALL_TIMEOUT_MS,
        ..SpawnOptions::default()
    })
    .await
}

/// The backend of the service's connection waiting on a lock in a statement like `pattern`.
/// Holds `table` in ACCESS EXCLUSIVE mode until the returned transaction ends: every database
/// call that touches it waits, as it would on a connection cut off by a partition.
async fn locked(owner: &PgPool, table: &str) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut lock = owner.begin().await.unwrap();
    sqlx::query(&format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
        .execute(&mut *lock)
        .await
        .unwrap();
    lock
}

async fn blocked_backend(owner: &PgPool, pattern: &str) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pid: Option<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
             AND usename = 'payledger_app' AND wait_event_type = 'Lock' AND query LIKE $1 \
             ORDER BY backend_start LIMIT 1",
        )
        .bind(pattern)
        .fetch_optional(owner)
        .await
        .expect("read pg_stat_activity");
        if let Some(pid) = pid {
            return pid;
        }
        assert!(Instant::now() < deadline, "no backend waits on {pattern}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn backend_exists(owner: &PgPool, pid: i32) -> bool {
    sqlx::query_scalar("SELECT count(*) > 0 FROM pg_stat_activity WHERE pid = $1")
        .bind(pid)
        .fetch_one(owner)
        .await
        .expect("read pg_stat_activity")
}

/// Waits until backend `pid` has ended: its client closed the connection.
async fn assert_backend_ends(owner: &PgPool, pid: i32, why: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while backend_exists(owner, pid).await {
        assert!(
            Instant::now() < deadline,
            "backend {pid} still lives: {why} (the pool kept its connection)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn assert_unavailable(response: reqwest::Response, started: Instant) {
    let elapsed_ms = started.elapsed().as_millis();
    assert_eq!(response.status().as_u16(), 503);
    assert!(
        response.headers().get("retry-after").is_some(),
        "a 503 says when to retry"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "E_UNAVAILABLE", "{body}");
    assert!(
        elapsed_ms >= u128::from(CALL_TIMEOUT_MS) - 50
            && elapsed_ms <= u128::from(CALL_TIMEOUT_MS) + SLACK_MS,
        "answered after {elapsed_ms} ms; the bound is {CALL_TIMEOUT_MS} ms"
    );
}

#[tokio::test]
async fn a_read_waiting_past_the_deadline_is_a_503_and_its_connection_is_closed_not_reused() {
    let app = app().await;
    app.place_order("stuck-read-1", 5_000).await;
    app.wait_for_projections().await;
    let path = "/v1/orders/stuck-read-1";
    assert_eq!(app.get(path).await.status().as_u16(), 200);
    let timed_503 = r#"payledger_http_request_duration_seconds_count{method="GET",route="/v1/orders/{order_id}",status_class="5xx"} "#;
    let timed_before = metric(&app, timed_503).await.unwrap_or(0);

    // Hold the read model's table: the read's query waits on the lock.
    let lock = locked(&app.db.owner_pool, "rm.orders").await;
    let started = Instant::now();
    assert_unavailable(app.get(path).await, started).await;
    let stuck = blocked_backend(&app.db.owner_pool, "%FROM rm.orders WHERE order_id%").await;

    // Past the release drain the pool has closed the connection. Once the lock is gone the
    // backend finishes its query, finds its client gone, and ends. A connection put back into
    // the pool (sqlx's own release waits for the late answer, then reuses it) would live on.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    lock.rollback().await.unwrap();
    assert_backend_ends(&app.db.owner_pool, stuck, "a read given up at its deadline").await;

    let started = Instant::now();
    let response = app.get(path).await;
    assert_eq!(response.status().as_u16(), 200);
    assert!(started.elapsed() < Duration::from_millis(CALL_TIMEOUT_MS));
    // Counted (the registry is the process's: other tests may have added to it).
    let counted = metric(&app, "payledger_read_deadlines_exceeded_total ")
        .await
        .expect("payledger_read_deadlines_exceeded_total is exposed");
    assert!(counted >= 1, "the 503 is counted");
    // And timed with its route, as every answer is (the request went down with the read).
    let timed_after = metric(&app, timed_503)
        .await
        .expect("the 503 is in the request histogram");
    assert!(timed_after > timed_before, "the 503 is timed");
}

/// The value of the metric whose line starts with `prefix` (name, labels and a space).
async fn metric(app: &TestApp, prefix: &str) -> Option<u64> {
    let metrics = app.get("/metrics").await.text().await.unwrap();
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// Resumes a stopped backend even when the test fails, so nothing stays frozen.
struct Stopped(i32);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .status();
    }
}

fn signal(pid: i32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {signal} {pid}");
}

#[tokio::test]
async fn a_log_read_on_a_frozen_backend_is_a_503_and_the_next_read_gets_another_connection() {
    if std::env::var_os("PAYLEDGER_TEST_DATABASE_URL").is_some() {
        eprintln!(
            "a_log_read_on_a_frozen_backend…: not run: it stops a PostgreSQL backend with \
             SIGSTOP, which needs the managed test cluster on this machine \
             (PAYLEDGER_TEST_DATABASE_URL is set)"
        );
        return;
    }
    let app = app().await;
    app.place_order("stuck-log-1", 5_000).await;
    let path = "/v1/streams/order-stuck-log-1";
    assert_eq!(app.get(path).await.status().as_u16(), 200);

    // Catch the read's backend waiting on a lock, freeze it, then free the lock: the backend
    // holds its connection open and never answers, as behind a network partition.
    let lock = locked(&app.db.owner_pool, "events").await;
    let started = Instant::now();
    let read = tokio::spawn({
        let request = app.client.get(app.url(path)).bearer_auth(&app.auditor_key);
        async move { request.send().await.expect("send the request") }
    });
    let frozen = blocked_backend(&app.db.owner_pool, "%FROM events WHERE stream_id%").await;
    signal(frozen, "-STOP");
    let stopped = Stopped(frozen);
    lock.rollback().await.unwrap();
    assert_unavailable(read.await.unwrap(), started).await;

    // The next read is served at once, on another connection.
    let started = Instant::now();
    let response = app.get(path).await;
    assert_eq!(response.status().as_u16(), 200);
    assert!(started.elapsed() < Duration::from_millis(CALL_TIMEOUT_MS));
    let body: Value = response.json().await.unwrap();
    assert!(!body["events"].as_array().unwrap().is_empty(), "{body}");

    // The pool closed the frozen connection after its release drain: thawed, the backend
    // finds its client gone and ends.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    drop(stopped);
    assert_backend_ends(&app.db.owner_pool, frozen, "a connection frozen mid-answer").await;
}

#[tokio::test]
async fn a_command_whose_database_steps_are_stuck_is_a_503_within_the_bound_and_charges_nothing() {
    let app = app().await;
    app.place_order("stuck-command-1", 5_000).await;
    let confirm = serde_json::json!({"paymentKey": "pk_stuck_1", "orderId": "stuck-command-1",
                                     "amount": 5_000});

    // The idempotency key's claim waits on a lock: the command is given up before it starts.
    let lock = locked(&app.db.owner_pool, "idempotency_keys").await;
    let started = Instant::now();
    let response = app
        .client
        .post(app.url("/v1/payments/confirm"))
        .bearer_auth(&app.client_key)
        .header("Idempotency-Key", "stuck-claim-1")
        .json(&confirm)
        .send()
        .await
        .unwrap();
    assert_unavailable(response, started).await;
    lock.rollback().await.unwrap();

    // The order's stream load waits on a lock: given up before the provider is called.
    let head = app.head_position().await;
    let lock = locked(&app.db.owner_pool, "events").await;
    let started = Instant::now();
    assert_unavailable(app.post("/v1/payments/confirm", &confirm).await, started).await;
    lock.rollback().await.unwrap();
    assert_eq!(
        app.head_position().await,
        head,
        "a command given up stored nothing"
    );
    assert_eq!(
        app.charges_at_provider(payledger_tests::TestProvider::Toss, "stuck-command-1"),
        0,
        "a command given up before the provider charged nothing"
    );

    // Both locks gone, the same confirm goes through.
    let response = app.post("/v1/payments/confirm", &confirm).await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        app.charges_at_provider(payledger_tests::TestProvider::Toss, "stuck-command-1"),
        1
    );
}

#[tokio::test]
async fn a_refund_whose_key_read_is_stuck_is_a_503_stores_and_refunds_nothing_then_goes_through() {
    let app = app().await;
    app.place_order("stuck-refund-1", 5_000).await;
    let payment_key = "pk_stuck_refund_1";
    let confirmed = app.confirm("stuck-refund-1", payment_key, 5_000).await;
    assert_eq!(confirmed.status().as_u16(), 200);
    let refund = serde_json::json!({"refundId": "rf-stuck-1", "amount": 1_000,
                                    "reason": "the class was cancelled"});
    let path = "/v1/orders/stuck-refund-1/refunds";

    // The refund's reason is sealed with the customer's key before the request is appended:
    // past the vault's key cache, that key is read from the database, and the read waits on a
    // lock. The bounded call gives up before anything is appended or sent to the provider.
    tokio::time::sleep(payledger_app::privacy::MAX_KEY_CACHE_TTL + Duration::from_millis(200))
        .await;
    let head = app.head_position().await;
    let lock = locked(&app.db.owner_pool, "privacy_subject_keys").await;
    let started = Instant::now();
    assert_unavailable(app.post(path, &refund).await, started).await;
    let stuck = blocked_backend(&app.db.owner_pool, "%FROM privacy_subject_keys%").await;
    assert_eq!(
        app.head_position().await,
        head,
        "a refund given up at its key read stored nothing"
    );
    assert_eq!(
        app.refunded_at_provider(payledger_tests::TestProvider::Toss, payment_key)
            .await,
        0,
        "a refund given up before the provider refunded nothing"
    );
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    lock.rollback().await.unwrap();
    assert_backend_ends(
        &app.db.owner_pool,
        stuck,
        "a key read given up at its bound",
    )
    .await;

    // The lock gone, the same refund goes through, once.
    let response = app.post(path, &refund).await;
    assert_eq!(response.status().as_u16(), 201);
    assert_eq!(
        app.refunded_at_provider(payledger_tests::TestProvider::Toss, payment_key)
            .await,
        1_000
    );
    let again = app.post(path, &refund).await;
    assert_eq!(
        again.status().as_u16(),
        200,
        "a repeated refund id is answered as it was, and repeats nothing"
    );
    assert_eq!(
        app.refunded_at_provider(payledger_tests::TestProvider::Toss, payment_key)
            .await,
        1_000
    );
}

#[tokio::test]
async fn a_console_page_past_the_read_deadline_is_the_consoles_html_503_and_the_api_keeps_json() {
    let app = app().await;
    app.place_order("stuck-console-1", 5_000).await;
    app.wait_for_projections().await;
    let (session, csrf) = crate::console::http_session(&app, &app.support_key).await;
    let page = |lang: &'static str| {
        app.client
            .get(app.url("/console/orders/stuck-console-1"))
            .header("cookie", format!("payledger_console_session={session}"))
            .header("accept-language", lang)
            .send()
    };
    assert_eq!(page("en").await.unwrap().status().as_u16(), 200);

    // The order page's read waits on the read model's lock past the deadline.
    let lock = locked(&app.db.owner_pool, "rm.orders").await;
    for (lang, heading) in [
        ("en", "Temporarily unavailable"),
        ("ko", "일시적으로 사용할 수 없음"),
    ] {
        let started = Instant::now();
        let response = page(lang).await.unwrap();
        let elapsed_ms = started.elapsed().as_millis();
        assert_eq!(response.status().as_u16(), 503);
        assert!(
            elapsed_ms <= u128::from(CALL_TIMEOUT_MS) + SLACK_MS,
            "answered after {elapsed_ms} ms"
        );
        assert_eq!(
            response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()),
            Some("2")
        );
        let content_type = response.headers()["content-type"].to_str().unwrap();
        assert!(content_type.starts_with("text/html"), "{content_type}");
        assert!(
            response.headers().get("content-security-policy").is_some(),
            "the console's error page carries the console's headers"
        );
        let html = response.text().await.unwrap();
        assert!(html.contains("E_UNAVAILABLE"), "{html}");
        assert!(html.contains(heading), "{lang}: {html}");
        assert!(html.contains(&format!("<html lang=\"{lang}\"")), "{html}");
    }
    // The API's read of the same order stays the API's JSON.
    let started = Instant::now();
    assert_unavailable(app.get("/v1/orders/stuck-console-1").await, started).await;
    lock.rollback().await.unwrap();
    assert_eq!(page("en").await.unwrap().status().as_u16(), 200);

    // An action (a `POST`, outside the read deadline) whose session read is stuck: bounded on
    // its own, the same page, and it did nothing (the session still works afterwards).
    let lock = locked(&app.db.owner_pool, "console_sessions").await;
    let started = Instant::now();
    let response = app
        .client
        .post(app.url("/console/sign-out"))
        .header("cookie", format!("payledger_console_session={session}"))
        .header("accept-language", "ko")
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    let elapsed_ms = started.elapsed().as_millis();
    assert_eq!(response.status().as_u16(), 503);
    assert!(
        elapsed_ms >= u128::from(CALL_TIMEOUT_MS) - 50
            && elapsed_ms <= u128::from(CALL_TIMEOUT_MS) + SLACK_MS,
        "answered after {elapsed_ms} ms; the bound is {CALL_TIMEOUT_MS} ms"
    );
    assert!(response.headers().get("retry-after").is_some());
    let html = response.text().await.unwrap();
    assert!(
        html.contains("E_UNAVAILABLE") && html.contains("일시적으로 사용할 수 없음"),
        "{html}"
    );
    lock.rollback().await.unwrap();
    assert_eq!(
        page("en").await.unwrap().status().as_u16(),
        200,
        "the sign-out given up signed nobody out"
    );
}
