//! Smaller doors of issue 14: a known path with another method, webhook deliveries tied to the
//! request that brought them.

use payledger_tests::{spawn_app, spawn_app_with, SpawnOptions};
use payledger_webhook_relay::{RetryPolicy, WebhookSettings};
use serde_json::Value;
use std::time::Duration;

/// docs/api.md: "Unknown routes, and known paths with another method, are 404 `E_NOT_FOUND`",
/// whoever asks (before: 403 for a client key, a bare 405 for an admin).
#[tokio::test]
async fn a_known_path_with_another_method_is_404_for_every_key() {
    let app = spawn_app().await;
    for key in [&app.client_key, &app.support_key, &app.admin_key] {
        for (method, path) in [
            (reqwest::Method::PUT, "/v1/orders"),
            (reqwest::Method::DELETE, "/v1/orders/order-1"),
            (reqwest::Method::PATCH, "/v1/payments/confirm"),
            (reqwest::Method::GET, "/v1/payments/confirm"),
        ] {
            let response = app
                .client
                .request(method.clone(), app.url(path))
                .bearer_auth(key)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            assert_eq!(status, 404, "{method} {path} → {body}");
            assert_eq!(body["code"], "E_NOT_FOUND", "{method} {path}");
        }
    }
    // Without a key too: nothing about the route is revealed by a 401 first.
    let response = app.client.put(app.url("/v1/orders")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 404);
}

/// Every webhook request's log line names the delivery's event id (the receipt shows the same
/// id), and the delivery's events carry the request id.
#[tokio::test]
async fn a_webhook_deliverys_events_carry_the_request_id_that_brought_it() {
    let app = spawn_app_with(SpawnOptions {
        webhooks: WebhookSettings {
            retry: RetryPolicy {
                delay_divisor: 100_000,
            },
            poll_interval_ms: 50,
            ..WebhookSettings::default()
        },
        ..SpawnOptions::default()
    })
    .await;
    let response = app
        .client
        .post(app.url("/v1/webhooks/toss"))
        .header("content-type", "application/json")
        .header("x-request-id", "req-webhook-e2e-1")
        .body(r#"{"eventType":"PAYMENT_STATUS_CHANGED","data":{"paymentKey":"pk_nobody_knows"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let receipt: Value = response.json().await.unwrap();
    let event_id = receipt["eventId"].as_str().unwrap().to_string();
    let stream = format!("/v1/streams/webhook-toss-{event_id}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let events = loop {
        let answer = app.get(&stream).await;
        if answer.status().as_u16() == 200 {
            let body: Value = answer.json().await.unwrap();
            let events = body["events"].as_array().cloned().unwrap_or_default();
            if events.iter().any(|e| e["eventType"] == "WebhookApplied") {
                break events;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "not processed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for event in &events {
        assert_eq!(
            event["metadata"]["request_id"]
                .as_str()
                .or(event["metadata"]["requestId"].as_str()),
            Some("req-webhook-e2e-1"),
            "{event}"
        );
    }
}

/// The OpenAPI document carries what the validators enforce, from their own constants.
#[tokio::test]
async fn the_openapi_document_carries_the_constraints_the_server_enforces() {
    let app = spawn_app().await;
    let document: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let place = &document["components"]["schemas"]["PlaceOrderBody"]["properties"];
    assert_eq!(place["amount"]["minimum"], 1, "{place}");
    assert_eq!(
        place["amount"]["maximum"],
        payledger_domain::money::MAX_AMOUNT_MINOR
    );
    let currencies: Vec<&str> = place["currency"]["enum"]
        .as_array()
        .expect("currency enum")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(currencies.contains(&"KRW") && currencies.contains(&"USD"));
    assert_eq!(
        place["customerId"]["pattern"],
        payledger_domain::ids::ID_PATTERN
    );
    assert_eq!(
        place["orderName"]["maxLength"],
        payledger_domain::order::MAX_ORDER_NAME_CHARS
    );
    let confirm = &document["components"]["schemas"]["ConfirmBody"]["properties"];
    assert_eq!(confirm["orderId"]["minLength"], 6);
    let refund = &document["components"]["schemas"]["RefundBody"]["properties"];
    assert_eq!(refund["reason"]["maxLength"], 200);
    let search = document["paths"]["/v1/orders"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let customer = search
        .iter()
        .find(|p| p["name"] == "customerId")
        .expect("customerId parameter");
    assert_eq!(customer["schema"]["maxLength"], 64, "{customer}");
}
