//! The request log of the real binary: one JSON line per request with the request id, order id,
//! actor, status, error code and latency — and never an API key or a card number.

use crate::{payledger, run, serve_command, stdout};
use payledger_testdb::TestDatabase;
use serde_json::{json, Value};
use std::process::Stdio;

use payledger_domain::card_numbers::test_cards;

const CARD: &str = test_cards::VISA;
const OTHER_CARD: &str = test_cards::VISA_STRIPE;

#[tokio::test]
async fn request_logs_name_the_order_and_actor_but_never_keys_or_card_numbers() {
    let db = TestDatabase::fresh().await;
    let dir = tempfile::tempdir().unwrap();
    let urls = (db.app_url.as_str(), db.owner_url.as_str());
    let created = run(payledger(dir.path(), Some(urls))
        .args(["keys", "create", "--role", "client", "--name", "logtest"]));
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let key = stdout(&created).lines().nth(1).unwrap().trim().to_string();
    assert!(key.starts_with("plk_"), "{key}");

    let log_path = dir.path().join("serve.log");
    let mut command = payledger(dir.path(), Some(urls));
    command
        .env("RUST_LOG", "info")
        .stderr(Stdio::from(std::fs::File::create(&log_path).unwrap()));
    let server = serve_command(command, dir.path()).await;
    let http = reqwest::Client::new();
    let screened = http
        .post(format!("{}/v1/orders", server.url))
        .bearer_auth(&key)
        // A caller that puts a card number where a request id goes: refused by the screen.
        .header("x-request-id", CARD)
        .json(
            &json!({"orderId": "order-log-1", "amount": 5_000, "currency": "KRW",
                      "customerId": "cust_1", "payeeId": "payee_1", "orderName": "Yoga"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(screened.status().as_u16(), 400);
    assert_ne!(
        screened.headers()["x-request-id"],
        CARD,
        "the id was replaced"
    );
    let placed = http
        .post(format!("{}/v1/orders", server.url))
        .bearer_auth(&key)
        .json(
            &json!({"orderId": "order-log-1", "amount": 5_000, "currency": "KRW",
                      "customerId": "cust_1", "payeeId": "payee_1", "orderName": "Yoga"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(placed.status().as_u16(), 201);
    let card_in_body = http
        .post(format!("{}/v1/orders", server.url))
        .header("x-api-key", &key)
        .json(
            &json!({"orderId": "order-log-2", "amount": 5_000, "currency": "KRW",
                      "customerId": "cust_1", "payeeId": "payee_1", "orderName": "Yoga",
                      "cardNumber": OTHER_CARD}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(card_in_body.status().as_u16(), 400);
    let forged = format!("plk_{}", "ab".repeat(32));
    let refused = http
        .get(format!("{}/v1/orders/order-log-1", server.url))
        .bearer_auth(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    let confirmed = http
        .post(format!("{}/v1/payments/confirm", server.url))
        .bearer_auth(&key)
        .header("x-request-id", "req-confirm-1")
        .json(&json!({"paymentKey": "pk_log_1", "orderId": "order-log-1", "amount": 5_000}))
        .send()
        .await
        .unwrap();
    assert_eq!(confirmed.status().as_u16(), 200);
    drop(server);

    let log = std::fs::read_to_string(&log_path).unwrap();
    let requests: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["fields"]["message"] == "request")
        .collect();
    let confirm = requests
        .iter()
        .find(|l| l["fields"]["request_id"] == "req-confirm-1")
        .unwrap_or_else(|| panic!("no log line of the confirm in:\n{log}"));
    assert_eq!(
        confirm["fields"]["order_id"], "order-log-1",
        "from the body"
    );
    assert_eq!(confirm["fields"]["actor"], "client:logtest");
    assert_eq!(confirm["fields"]["status"], 200);
    assert!(confirm["fields"]["latency_ms"].as_f64().is_some());
    assert!(requests
        .iter()
        .any(|l| l["fields"]["status"] == 401 && l["fields"]["error_code"] == "E_UNAUTHENTICATED"));
    assert!(requests
        .iter()
        // The card screen answers before the body is parsed, so the card number in an unknown
        // field is refused as card data, not as an unknown field.
        .any(
            |l| l["fields"]["status"] == 400 && l["fields"]["error_code"] == "E_CARD_DATA_REJECTED"
        ));
    for secret in [key.as_str(), forged.as_str(), CARD, OTHER_CARD] {
        assert!(!log.contains(secret), "the log contains {secret}:\n{log}");
    }
}
