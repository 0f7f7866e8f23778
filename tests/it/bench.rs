//! The load generator drives the real API: what it counts happened in the store.

use payledger_bench::load::{self, Flow, LoadOptions};
use payledger_tests::spawn_app;
use std::time::Duration;

fn options(app: &payledger_tests::TestApp, flow: Flow) -> LoadOptions {
    LoadOptions {
        target: app.address.clone(),
        clients: 4,
        duration: Duration::from_secs(1),
        api_key: Some(app.client_key.clone()),
        warmup: Duration::ZERO,
        rate_per_s: None,
        flow,
    }
}

async fn orders_placed_and_captured(app: &payledger_tests::TestApp) -> (i64, i64) {
    sqlx::query_as(
        "SELECT count(*) FILTER (WHERE event_type = 'OrderPlaced'), \
                count(*) FILTER (WHERE event_type = 'PaymentCaptured') FROM events",
    )
    .fetch_one(&app.app_pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn the_load_generator_places_and_confirms_orders_and_counts_only_answered_commands() {
    let app = spawn_app().await;
    let report = load::run(options(&app, Flow::PlaceAndConfirm))
        .await
        .unwrap();
    assert_eq!(report.errors, 0);
    assert!(
        report.commands >= 2,
        "it measured {} commands",
        report.commands
    );
    assert!(report.p50_ms > 0.0 && report.p50_ms <= report.p99_ms);
    let (placed, captured) = orders_placed_and_captured(&app).await;
    // Commands answered inside the window are counted; a client's last pair may straddle it.
    assert!(
        placed + captured >= report.commands as i64,
        "{} commands counted, {placed} orders placed and {captured} captured",
        report.commands
    );
    assert!(captured >= 1 && captured <= placed);
}

#[tokio::test]
async fn the_healthz_flow_measures_http_alone_and_stores_nothing() {
    let app = spawn_app().await;
    let head_before = app.head_position().await;
    let report = load::run(options(&app, Flow::Healthz)).await.unwrap();
    assert_eq!(report.errors, 0);
    assert!(report.commands > 0);
    assert_eq!(app.head_position().await, head_before);
}

#[tokio::test]
async fn a_wrong_api_key_is_counted_as_errors_not_as_commands() {
    let app = spawn_app().await;
    let mut options = options(&app, Flow::PlaceAndConfirm);
    options.api_key = Some("pl_not_a_real_key".into());
    let report = load::run(options).await.unwrap();
    assert_eq!(report.commands, 0);
    assert!(report.errors > 0);
    assert_eq!(orders_placed_and_captured(&app).await, (0, 0));
}
