//! The load generator drives the real API: what it counts happened in the store.

use payledger_bench::load::{self, Flow, LoadOptions};
use payledger_tests::spawn_app;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

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
    // Every counted command's answer was read and found right.
    assert!(report.answers_checked >= report.commands);
    assert_eq!(report.mismatches, 0, "{:?}", report.first_mismatch);
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

/// A server that answers like the API with the right statuses, places orders correctly and
/// confirms them with another payment key than the one sent: what a peer or a broken build that
/// only gets the statuses right looks like to the load generator.
async fn server_that_confirms_the_wrong_payment() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut reader = BufReader::new(socket);
                loop {
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let mut length = 0;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some(value) =
                            line.to_ascii_lowercase().strip_prefix("content-length:")
                        {
                            length = value.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    let sent: Value = serde_json::from_slice(&body).unwrap_or_default();
                    let (status, answer) = if request_line.starts_with("POST /v1/orders ") {
                        let order = json!({"orderId": sent["orderId"], "status": "READY",
                                           "amount": sent["amount"], "currency": sent["currency"]});
                        ("201 Created", order)
                    } else if request_line.starts_with("POST /v1/payments/confirm ") {
                        let order = json!({"orderId": sent["orderId"], "status": "PAID",
                                           "amount": sent["amount"], "capturedAmount": sent["amount"],
                                           "paymentKey": "pk_of_another_payment"});
                        ("200 OK", order)
                    } else {
                        ("200 OK", json!({"status": "ready"}))
                    };
                    let answer = answer.to_string();
                    let response = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n\
                         content-length: {}\r\n\r\n{answer}",
                        answer.len()
                    );
                    if reader
                        .get_mut()
                        .write_all(response.as_bytes())
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    address
}

#[tokio::test]
async fn an_answer_with_the_right_status_and_the_wrong_payment_is_not_counted() {
    let report = load::run(LoadOptions {
        target: server_that_confirms_the_wrong_payment().await,
        clients: 2,
        duration: Duration::from_millis(500),
        api_key: None,
        warmup: Duration::ZERO,
        rate_per_s: None,
        flow: Flow::PlaceAndConfirm,
    })
    .await
    .unwrap();
    // Each client's place is right and counted; its confirm is wrong: an error, not a command.
    assert!(report.mismatches > 0);
    assert!(report.errors > 0);
    assert!(report.answers_checked >= report.commands + report.mismatches);
    assert!(
        report.commands.abs_diff(report.errors) <= 2,
        "{} places counted, {} confirms refused",
        report.commands,
        report.errors
    );
    let mismatch = report.first_mismatch.unwrap();
    assert!(
        mismatch.contains("paymentKey \"pk_of_another_payment\""),
        "{mismatch}"
    );
}
