//! What auditors read: streams and the global log with positions and hashes.

use payledger_tests::spawn_app;
use serde_json::Value;

#[tokio::test]
async fn the_global_log_pages_in_order_with_hashes_that_chain() {
    let app = spawn_app().await;
    for n in 0..5 {
        let id = format!("order-log-{n}");
        app.place_order(&id, 1_000 + n).await;
        app.confirm(&id, &format!("pk_log_{n}"), 1_000 + n).await;
    }
    let mut after = 0;
    let mut positions = Vec::new();
    loop {
        let page: Value = app
            .get(&format!("/v1/events?after={after}&limit=4"))
            .await
            .json()
            .await
            .unwrap();
        let events = page["events"].as_array().unwrap();
        for e in events {
            positions.push(e["globalPosition"].as_i64().unwrap());
            assert_eq!(e["hash"].as_str().unwrap().len(), 64);
        }
        match page["nextAfter"].as_i64() {
            Some(next) => after = next,
            None => break,
        }
    }
    assert_eq!(positions, (1..=15).collect::<Vec<i64>>());

    let stream: Value = app
        .get("/v1/streams/order-order-log-2")
        .await
        .json()
        .await
        .unwrap();
    let events = stream["events"].as_array().unwrap();
    assert_eq!(events[0]["prevHash"], "0".repeat(64));
    for pair in events.windows(2) {
        assert_eq!(pair[1]["prevHash"], pair[0]["hash"]);
        assert_eq!(
            pair[1]["streamVersion"].as_i64().unwrap(),
            pair[0]["streamVersion"].as_i64().unwrap() + 1
        );
    }
    let report = payledger_store::audit::verify_all(&app.app_pool)
        .await
        .unwrap();
    assert_eq!(report.first_problem, None);
    assert_eq!(report.events_checked, 15);

    let missing = app.get("/v1/streams/order-nobody").await;
    assert_eq!(missing.status().as_u16(), 404);
}

#[tokio::test]
async fn health_and_readiness() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz").await.status().as_u16(), 200);
    let ready: Value = app.get("/readyz").await.json().await.unwrap();
    assert_eq!(ready["status"], "ready");
}

#[tokio::test]
async fn recorded_at_is_always_served_with_six_fraction_digits() {
    let app = spawn_app().await;
    app.place_order("order-times", 1_000).await;
    app.confirm("order-times", "pk_times", 1_000).await;
    let page: Value = app
        .get("/v1/events?after=0&limit=10")
        .await
        .json()
        .await
        .unwrap();
    let events = page["events"].as_array().unwrap();
    assert!(!events.is_empty());
    for e in events {
        let at = e["recordedAt"].as_str().unwrap();
        // YYYY-MM-DDTHH:MM:SS.ffffffZ: 27 characters, the fraction always there.
        assert_eq!(at.len(), 27, "{at}");
        assert_eq!(&at[19..20], ".", "{at}");
        assert!(at.ends_with('Z'), "{at}");
    }
}

#[tokio::test]
async fn a_trial_balance_beyond_the_head_is_refused_with_its_own_code() {
    let app = spawn_app().await;
    app.place_order("order-beyond", 1_000).await;
    let response = app
        .get_as(&app.auditor_key, "/v1/journal/trial-balance?at=99999")
        .await;
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "E_POSITION_BEYOND_HEAD");
    assert_eq!(body["headPosition"], app.head_position().await);
}
/// Follows `nextAfter` through a filtered read and returns the matching events.
async fn filtered(app: &payledger_tests::TestApp, query: &str, limit: i64) -> Vec<Value> {
    let mut after = 0;
    let mut found = Vec::new();
    for _ in 0..100 {
        let response = app
            .get(&format!("/v1/events?{query}&after={after}&limit={limit}"))
            .await;
        assert_eq!(response.status().as_u16(), 200, "{query}");
        let page: Value = response.json().await.unwrap();
        found.extend(page["events"].as_array().unwrap().iter().cloned());
        match page["nextAfter"].as_i64() {
            Some(next) => after = next,
            None => return found,
        }
    }
    panic!("paging did not end: {query}");
}

#[tokio::test]
async fn the_global_log_filters_by_type_period_and_status() {
    let app = spawn_app().await;
    let started = chrono::Utc::now() - chrono::Duration::seconds(1);
    for n in 0..3 {
        let id = format!("order-filter-{n}");
        app.place_order(&id, 1_000 + n).await;
        app.confirm(&id, &format!("pk_filter_{n}"), 1_000 + n).await;
    }
    // An admin action is recorded with the HTTP status it was answered with.
    let missing = app
        .post_as(
            &app.admin_key,
            "/v1/admin/orders/order-nobody/cancel-enrollment",
            &serde_json::json!({"reason": "no such order"}),
        )
        .await;
    let admin_status = missing.status().as_u16();

    let captured = filtered(&app, "type=PaymentCaptured", 2).await;
    assert_eq!(captured.len(), 3);
    assert!(captured.iter().all(|e| e["eventType"] == "PaymentCaptured"));
    let positions: Vec<i64> = captured
        .iter()
        .map(|e| e["globalPosition"].as_i64().unwrap())
        .collect();
    assert!(positions.windows(2).all(|p| p[0] < p[1]), "in log order");

    let both = filtered(&app, "type=OrderPlaced,PaymentCaptured", 100).await;
    assert_eq!(both.len(), 6);

    let from = started.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let in_period = filtered(&app, &format!("type=OrderPlaced&from={from}"), 100).await;
    assert_eq!(in_period.len(), 3);
    let before = filtered(&app, &format!("type=OrderPlaced&to={from}"), 100).await;
    assert!(before.is_empty());

    let by_status = filtered(&app, &format!("status={admin_status}"), 100).await;
    assert_eq!(by_status.len(), 1, "{by_status:?}");
    assert_eq!(by_status[0]["eventType"], "AdminActionRecorded");

    for bad in [
        "type=Payment%20Captured",
        "from=yesterday",
        "status=",
        "unknown=1",
    ] {
        let response = app.get(&format!("/v1/events?{bad}")).await;
        assert_eq!(response.status().as_u16(), 400, "{bad}");
    }
}
