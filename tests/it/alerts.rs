//! The alert channel: a signed Standard Webhooks message when an alarm starts and one when it
//! ends, never repeated while it lasts; received here by a plain HTTP listener and verified with
//! the shared secret.

use payledger::alerts::{AlertMonitor, AlertSettings};
use payledger_connector_toss::{TossConfig, TossGateway};
use payledger_gateway::circuit::CircuitConfig;
use payledger_gateway::PaymentGateway;
use payledger_tests::spawn_app;
use payledger_webhooks::{verify, HeaderPairs, Scheme, WebhookSecret};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// (headers, body) of each request received.
type Received = Arc<Mutex<Vec<(Vec<(String, String)>, Vec<u8>)>>>;

/// A minimal HTTP endpoint that records each POST and answers 200.
async fn receiver() -> (String, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/alerts", listener.local_addr().unwrap());
    let received: Received = Arc::default();
    let log = received.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let log = log.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buffer.extend_from_slice(&chunk[..n]);
                    let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buffer[..end]).to_string();
                    let headers: Vec<(String, String)> = head
                        .lines()
                        .skip(1)
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                        .collect();
                    let length: usize = headers
                        .iter()
                        .find(|(k, _)| k == "content-length")
                        .and_then(|(_, v)| v.parse().ok())
                        .unwrap_or(0);
                    if buffer.len() < end + 4 + length {
                        continue;
                    }
                    let body = buffer[end + 4..end + 4 + length].to_vec();
                    log.lock().unwrap().push((headers, body));
                    let _ = socket
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                    return;
                }
            });
        }
    });
    (url, received)
}

/// The bodies received, each checked against its signature.
fn verified_bodies(received: &Received) -> Vec<Value> {
    let secrets = [WebhookSecret::new(SECRET)];
    received
        .lock()
        .unwrap()
        .iter()
        .map(|(headers, body)| {
            let pairs: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            verify(
                Scheme::StandardWebhooks,
                &HeaderPairs(&pairs),
                body,
                &secrets,
                chrono::Utc::now(),
                Duration::from_secs(300),
            )
            .expect("a genuine signature");
            serde_json::from_slice(body).unwrap()
        })
        .collect()
}

#[tokio::test]
async fn an_open_circuit_is_announced_once_and_its_end_too() {
    let app = spawn_app().await;
    let (url, received) = receiver().await;
    let mut settings = AlertSettings::new(url, &WebhookSecret::new(SECRET)).unwrap();
    // Rates are judged on this process's counters, which the other tests share: off here.
    settings.thresholds.mismatch_min_attempts = u64::MAX;
    settings.thresholds.signature_min_deliveries = u64::MAX;
    let mut config = TossConfig::sandbox(app.sandbox.base_url());
    config.transport.max_attempts = 1;
    config.transport.circuit = CircuitConfig {
        failure_threshold: 2,
        open_ms: 300,
    };
    let gateway: Arc<dyn PaymentGateway> = Arc::new(TossGateway::new(config).unwrap());
    let mut monitor = AlertMonitor::new(settings, app.app_pool.clone(), gateway.clone()).unwrap();
    assert!(
        monitor.check_once().await.unwrap().is_empty(),
        "all is well"
    );

    app.sandbox.start_outage(Duration::from_secs(30));
    for _ in 0..3 {
        let _ = gateway.payment_by_order_id("order-alert-1").await;
    }
    let sent = monitor.check_once().await.unwrap();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(
        monitor.check_once().await.unwrap().is_empty(),
        "not repeated while it lasts"
    );

    app.sandbox.start_outage(Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(400)).await;
    gateway
        .payment_by_order_id("order-alert-1")
        .await
        .expect("the probe gets through");
    let sent = monitor.check_once().await.unwrap();
    assert_eq!(sent.len(), 1, "{sent:?}");

    let bodies = verified_bodies(&received);
    let kinds: Vec<(&str, &str)> = bodies
        .iter()
        .map(|b| {
            (
                b["type"].as_str().unwrap(),
                b["data"]["alert"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("alert.firing", "circuit_open"),
            ("alert.resolved", "circuit_open")
        ]
    );
    assert_eq!(bodies[0]["data"]["severity"], "critical");
}

#[tokio::test]
async fn a_dead_letter_raises_an_alert() {
    let app = spawn_app().await;
    let (url, received) = receiver().await;
    let mut settings = AlertSettings::new(url, &WebhookSecret::new(SECRET)).unwrap();
    settings.thresholds.mismatch_min_attempts = u64::MAX;
    settings.thresholds.signature_min_deliveries = u64::MAX;
    let gateway: Arc<dyn PaymentGateway> =
        Arc::new(TossGateway::new(TossConfig::sandbox(app.sandbox.base_url())).unwrap());
    let mut monitor = AlertMonitor::new(settings, app.app_pool.clone(), gateway).unwrap();
    assert!(monitor.check_once().await.unwrap().is_empty());
    // What a process manager writes when it gives up on an event.
    sqlx::query(
        "INSERT INTO process_dead_letters (name, global_position, stream_id, event_type, error) \
         VALUES ('settlement', 1, 'order-x', 'OrderFulfilled', 'the statement refused the line')",
    )
    .execute(&app.app_pool)
    .await
    .unwrap();
    let sent = monitor.check_once().await.unwrap();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let bodies = verified_bodies(&received);
    assert_eq!(bodies[0]["type"], "alert.firing");
    assert_eq!(bodies[0]["data"]["alert"], "dead_letters");
    assert_eq!(bodies[0]["data"]["value"], 1);
}
