//! The ledger records only what the provider said (issue 12's live money bugs): a payment
//! cancelled at the provider is not recorded as paid, the provider's amount is compared with the
//! order's, and one customer's failing card does not open the circuit for everyone.

use payledger_tests::{spawn_app, spawn_app_with, SpawnOptions, TestApp};
use serde_json::{json, Value};

/// Calls the sandbox provider directly, as the provider's own console or API would.
async fn sandbox_post(app: &TestApp, path: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(format!("{}{path}", app.sandbox.base_url()))
        .basic_auth(payledger_connector_toss::SANDBOX_SECRET_KEY, Some(""))
        .json(body)
        .send()
        .await
        .expect("call the sandbox")
}

async fn event_types(app: &TestApp, order_id: &str) -> Vec<String> {
    let stream: Value = app
        .get(&format!("/v1/streams/order-{order_id}"))
        .await
        .json()
        .await
        .unwrap();
    payledger_tests::event_types(&stream["events"])
}

#[tokio::test]
async fn a_payment_cancelled_at_the_provider_is_not_recorded_as_paid() {
    let app = spawn_app_with(SpawnOptions {
        gateway_timeout_ms: 300,
        ..SpawnOptions::default()
    })
    .await;
    app.place_order("order-cancelled-there", 41_000).await;
    let response = app
        .confirm(
            "order-cancelled-there",
            "sandbox_timeout_after_charge_X",
            41_000,
        )
        .await;
    assert_eq!(response.status().as_u16(), 202);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "OUTCOME_UNKNOWN");

    let cancelled = sandbox_post(
        &app,
        "/v1/payments/sandbox_timeout_after_charge_X/cancel",
        &json!({"cancelReason": "cancelled in the provider console"}),
    )
    .await;
    assert_eq!(cancelled.status().as_u16(), 200, "cancel at the provider");

    let status: Value = app
        .get("/v1/orders/order-cancelled-there/payment-status?checkProvider=true")
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(status["status"], "completed", "{status}");
    assert_ne!(status["orderStatus"], "PAID", "{status}");
    assert_eq!(status["capturedAmount"], 0, "{status}");
    let types = event_types(&app, "order-cancelled-there").await;
    assert!(
        !types.iter().any(|t| t == "PaymentCaptured"),
        "no capture may be recorded: {types:?}"
    );
    assert!(
        types.iter().any(|t| t == "PaymentDiscrepancyRecorded"),
        "the difference is recorded: {types:?}"
    );
}

#[tokio::test]
async fn a_payment_the_provider_holds_for_another_amount_is_a_discrepancy_not_a_capture() {
    let app = spawn_app().await;
    app.place_order("order-other-amount", 30_000).await;
    // Confirmed at the provider directly, for far less than the order.
    let direct = sandbox_post(
        &app,
        "/v1/payments/confirm",
        &json!({"paymentKey": "pk_other_amount", "orderId": "order-other-amount", "amount": 1_000}),
    )
    .await;
    assert_eq!(direct.status().as_u16(), 200, "confirm at the provider");

    let discrepancies_before = discrepancies(&app).await;
    let response = app
        .confirm("order-other-amount", "pk_other_amount", 30_000)
        .await;
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "E_PROVIDER_DISCREPANCY", "{body}");

    app.wait_for_projections().await;
    let order: Value = app
        .get("/v1/orders/order-other-amount")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(order["status"], "NEEDS_REVIEW", "{order}");
    let types = event_types(&app, "order-other-amount").await;
    assert!(!types.iter().any(|t| t == "PaymentCaptured"), "{types:?}");
    let stream: Value = app
        .get("/v1/streams/order-order-other-amount")
        .await
        .json()
        .await
        .unwrap();
    let differs = stream["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["eventType"] == "PaymentDiscrepancyRecorded")
        .expect("the discrepancy is recorded");
    assert_eq!(differs["payload"]["providerAmountMinor"], 1_000);
    assert_eq!(differs["payload"]["expectedAmountMinor"], 30_000);
    assert!(differs["payload"]["differences"]
        .as_array()
        .unwrap()
        .contains(&json!("amount")));

    // The metrics registry is shared by every test in this binary: only a rise counts.
    assert!(discrepancies(&app).await > discrepancies_before, "counted");
}

/// `payledger_provider_discrepancies_total{provider="toss"}` as `/metrics` shows it.
async fn discrepancies(app: &TestApp) -> u64 {
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with("payledger_provider_discrepancies_total") && l.contains("\"toss\""))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn one_customers_failing_card_does_not_open_the_circuit_for_everyone() {
    let app = spawn_app_with(SpawnOptions {
        // Long enough that an opened circuit would still be open for the next customer.
        circuit_open_ms: 30_000,
        ..SpawnOptions::default()
    })
    .await;
    for n in 0..2 {
        let order_id = format!("order-bad-card-{n}");
        app.place_order(&order_id, 5_000).await;
        let response = app
            .confirm(&order_id, &format!("sandbox_provider_error_{n}"), 5_000)
            .await;
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body["providerCode"], "PROVIDER_ERROR",
            "that card fails: {body}"
        );
    }
    app.place_order("order-good-card", 5_000).await;
    let response = app.confirm("order-good-card", "pk_good_card", 5_000).await;
    assert_eq!(
        response.status().as_u16(),
        200,
        "another customer pays: {}",
        response.text().await.unwrap()
    );
}

#[tokio::test]
async fn placement_refuses_an_unconfigured_provider_and_a_currency_the_provider_cannot_take() {
    let app = spawn_app().await;
    let order = |order_id: &str, currency: &str, provider: Option<&str>| {
        let mut body = json!({"orderId": order_id, "amount": 5_000, "currency": currency,
            "customerId": "cust_1", "payeeId": "payee_1", "orderName": "Yoga class"});
        if let Some(provider) = provider {
            body["provider"] = json!(provider);
        }
        body
    };
    let before = app.head_position().await;

    let response = app
        .post(
            "/v1/orders",
            &order("order-unconfigured", "KRW", Some("adyen")),
        )
        .await;
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "E_PROVIDER_NOT_CONFIGURED", "{body}");
    assert_eq!(
        body["configuredProviders"],
        json!(["paddle", "stripe", "toss"]),
        "{body}"
    );

    // Before issue 12 a USD order was accepted and could never be paid.
    let response = app
        .post("/v1/orders", &order("order-usd", "USD", None))
        .await;
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "E_CURRENCY_NOT_SUPPORTED", "{body}");
    assert_eq!(body["supportedCurrencies"], json!(["KRW"]), "{body}");

    let response = app
        .post(
            "/v1/orders",
            &order("order-bad-provider", "KRW", Some("../toss")),
        )
        .await;
    assert_eq!(response.status().as_u16(), 400);
    assert_eq!(app.head_position().await, before, "nothing was stored");

    let response = app
        .post("/v1/orders", &order("order-toss", "KRW", Some("toss")))
        .await;
    assert_eq!(response.status().as_u16(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["provider"], "toss", "{body}");
    let default = app.place_order("order-default-provider", 5_000).await;
    assert_eq!(default["provider"], "toss", "{default}");
}
