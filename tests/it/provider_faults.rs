//! Provider faults: an outage opens the circuit and nothing is charged; a timeout after the
//! charge is settled by the reconciler, never guessed.

use payledger_tests::{event_types, spawn_app, spawn_app_with, SpawnOptions};
use serde_json::Value;
use std::time::Duration;

#[tokio::test]
async fn an_outage_fails_payments_fast_with_retry_after_and_the_circuit_closes_by_itself() {
    let app = spawn_app().await;
    for n in 0..8 {
        app.place_order(&format!("order-outage-{n}"), 1_000).await;
    }
    app.sandbox.start_outage(Duration::from_millis(1_500));
    let mut unavailable = 0;
    for n in 0..8 {
        let response = app
            .confirm(
                &format!("order-outage-{n}"),
                &format!("pk_outage_{n}"),
                1_000,
            )
            .await;
        assert_eq!(response.status().as_u16(), 503);
        assert!(response.headers().contains_key("retry-after"));
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "E_PROVIDER_UNAVAILABLE");
        unavailable += 1;
    }
    assert_eq!(unavailable, 8);
    let stats = app.sandbox.stats();
    assert_eq!(
        stats.total_charges, 0,
        "nothing is charged during an outage"
    );
    // Once the circuit has opened, calls stop reaching the provider at all.
    let reached: u64 = stats.attempts_by_order_id.values().sum();
    assert!(
        reached < 8 * 3,
        "the open circuit short-circuits calls ({reached} reached the provider)"
    );

    // After the outage the circuit half-opens, a probe succeeds, and payments flow again; each
    // order that failed can be paid with a new attempt, charged once.
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    for n in 0..8 {
        let response = app
            .confirm(
                &format!("order-outage-{n}"),
                &format!("pk_outage_{n}"),
                1_000,
            )
            .await;
        assert_eq!(
            response.status().as_u16(),
            200,
            "order {n} after the outage"
        );
    }
    let stats = app.sandbox.stats();
    for n in 0..8 {
        assert_eq!(
            stats.charges_by_order_id.get(&format!("order-outage-{n}")),
            Some(&1)
        );
    }
}

#[tokio::test]
async fn a_timeout_after_the_charge_is_recorded_as_unknown_then_reconciled() {
    let app = spawn_app_with(SpawnOptions {
        gateway_timeout_ms: 300,
        reconcile_interval_ms: 200,
        // Older than the request's own attempts (3 × 300 ms plus backoff): the reconciler
        // settles what the request left unknown, not a call still in flight.
        reconcile_after_ms: 3_000,
        ..SpawnOptions::default()
    })
    .await;
    app.place_order("order-timeout", 4_000).await;
    let response = app
        .confirm("order-timeout", "sandbox_timeout_after_charge_1", 4_000)
        .await;
    assert_eq!(response.status().as_u16(), 202, "accepted, outcome unknown");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "OUTCOME_UNKNOWN");

    // The reconciler asks the provider by order id and records what it says.
    let mut status = String::new();
    for _ in 0..150 {
        let order: Value = app
            .get("/v1/orders/order-timeout")
            .await
            .json()
            .await
            .unwrap();
        status = order["status"].as_str().unwrap_or_default().to_string();
        if status == "PAID" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, "PAID");
    assert_eq!(
        app.sandbox.stats().charges_by_order_id.get("order-timeout"),
        Some(&1)
    );
    let stream: Value = app
        .get("/v1/streams/order-order-timeout")
        .await
        .json()
        .await
        .unwrap();
    let types = event_types(&stream["events"]);
    assert_eq!(
        types,
        vec![
            "OrderPlaced",
            "PaymentConfirmationStarted",
            "PaymentOutcomeUnknown",
            "PaymentCaptured"
        ]
    );
    assert_eq!(stream["events"][3]["payload"]["source"], "reconciler");
}

#[tokio::test]
async fn slow_provider_answers_still_complete() {
    let app = spawn_app().await;
    app.place_order("order-slow", 2_500).await;
    let response = app.confirm("order-slow", "sandbox_slow_400_a", 2_500).await;
    assert_eq!(response.status().as_u16(), 200);
}
