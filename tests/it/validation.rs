//! Bad input gets a clear 4xx with a stable code, and nothing is stored.

use payledger_tests::spawn_app;
use serde_json::{json, Value};

fn order(amount: Value, currency: &str) -> Value {
    json!({
        "orderId": "order-valid-1",
        "amount": amount,
        "currency": currency,
        "customerId": "cust_1",
        "payeeId": "payee_1",
        "orderName": "Yoga class"
    })
}

#[tokio::test]
async fn invalid_orders_are_refused_with_stable_codes_and_store_nothing() {
    let app = spawn_app().await;
    let huge = serde_json::Number::from(u64::MAX);
    let cases: Vec<(Value, u16, &str)> = vec![
        (order(json!(0), "KRW"), 400, "E_INVALID_AMOUNT"),
        (order(json!(-100), "KRW"), 400, "E_INVALID_AMOUNT"),
        (order(json!(10.5), "KRW"), 400, "E_INVALID_AMOUNT"),
        (order(json!(100.0), "KRW"), 400, "E_INVALID_AMOUNT"),
        (order(Value::Number(huge), "KRW"), 400, "E_INVALID_AMOUNT"),
        (
            order(json!(1_000_000_000_001i64), "KRW"),
            400,
            "E_INVALID_AMOUNT",
        ),
        (order(json!("100"), "KRW"), 400, "E_INVALID_JSON"),
        (order(json!(100), "XYZ"), 400, "E_UNKNOWN_CURRENCY"),
        (order(json!(100), "krw"), 400, "E_UNKNOWN_CURRENCY"),
        (
            json!({"orderId": "order-valid-1", "amount": 100, "currency": "KRW", "customerId": "c", "payeeId": "p", "orderName": "n", "cardNumber": payledger_domain::card_numbers::test_cards::VISA}),
            400,
            "E_CARD_DATA_REJECTED",
        ),
        (
            json!({"amount": 100, "currency": "KRW"}),
            400,
            "E_INVALID_JSON",
        ),
        (
            json!({"orderId": "bad id!", "amount": 100, "currency": "KRW", "customerId": "c", "payeeId": "p", "orderName": "n"}),
            400,
            "E_INVALID_FIELD",
        ),
        (
            json!({"orderId": "order-valid-1", "amount": 100, "currency": "KRW", "customerId": "c", "payeeId": "p", "orderName": ""}),
            400,
            "E_INVALID_FIELD",
        ),
        (
            json!({"orderId": "order-valid-1", "amount": 100, "currency": "KRW", "customerId": "c", "payeeId": "p", "orderName": "x".repeat(101)}),
            400,
            "E_INVALID_FIELD",
        ),
    ];
    for (body, status, code) in cases {
        let response = app.post("/v1/orders", &body).await;
        assert_eq!(response.status().as_u16(), status, "{body}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["code"], code, "{body}: {answer}");
        assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    assert_eq!(
        app.head_position().await,
        0,
        "a refused request stored something"
    );
}

#[tokio::test]
async fn malformed_bodies_are_refused_before_anything_happens() {
    let app = spawn_app().await;
    let malformed = app
        .post_raw(
            "/v1/orders",
            "application/json",
            b"{\"amount\": 1,".to_vec(),
        )
        .await;
    assert_eq!(malformed.status().as_u16(), 400);
    assert_eq!(
        malformed.json::<Value>().await.unwrap()["code"],
        "E_INVALID_JSON"
    );

    let wrong_type = app
        .post_raw("/v1/orders", "text/plain", b"{}".to_vec())
        .await;
    assert_eq!(wrong_type.status().as_u16(), 415);
    assert_eq!(
        wrong_type.json::<Value>().await.unwrap()["code"],
        "E_UNSUPPORTED_MEDIA_TYPE"
    );

    let mut big = b"{\"orderName\": \"".to_vec();
    big.extend(std::iter::repeat_n(b'x', 70 * 1024));
    big.extend(b"\"}");
    let oversized = app.post_raw("/v1/orders", "application/json", big).await;
    assert_eq!(oversized.status().as_u16(), 413);
    assert_eq!(
        oversized.json::<Value>().await.unwrap()["code"],
        "E_BODY_TOO_LARGE"
    );

    let nul = app
        .post(
            "/v1/orders",
            &json!({"orderId": "order-nul-1", "amount": 100, "currency": "KRW", "customerId": "c", "payeeId": "p", "orderName": "a\u{0}b"}),
        )
        .await;
    assert_eq!(nul.status().as_u16(), 400);

    let unknown_route = app.get("/v1/nothing-here").await;
    assert_eq!(unknown_route.status().as_u16(), 404);
    assert_eq!(
        unknown_route.json::<Value>().await.unwrap()["code"],
        "E_NOT_FOUND"
    );

    let bad_query = app.get("/v1/events?limit=0").await;
    assert_eq!(bad_query.status().as_u16(), 400);
    assert_eq!(
        bad_query.json::<Value>().await.unwrap()["code"],
        "E_INVALID_QUERY"
    );
    let bad_query = app.get("/v1/events?after=abc").await;
    assert_eq!(bad_query.status().as_u16(), 400);
    // Every listing reads its page size the same way (`dto::page_limit`).
    for path in [
        "/v1/claims?limit=0",
        "/v1/settlements?payeeId=payee_1&limit=1001",
        "/v1/subscriptions?limit=-1",
    ] {
        let bad_limit = app.get_as(&app.admin_key, path).await;
        assert_eq!(bad_limit.status().as_u16(), 400, "{path}");
        assert_eq!(
            bad_limit.json::<Value>().await.unwrap()["code"],
            "E_INVALID_QUERY",
            "{path}"
        );
    }

    assert_eq!(app.head_position().await, 0);
}

#[tokio::test]
async fn invalid_confirms_and_refunds_store_nothing() {
    let app = spawn_app().await;
    app.place_order("order-valid-2", 1_000).await;
    let before = app.head_position().await;
    for body in [
        json!({"paymentKey": "pk", "orderId": "order-valid-2", "amount": 0}),
        json!({"paymentKey": "pk", "orderId": "order-valid-2", "amount": 1.5}),
        json!({"paymentKey": "", "orderId": "order-valid-2", "amount": 1000}),
        json!({"paymentKey": "pk", "orderId": "order-valid-2"}),
        json!({"paymentKey": "pk", "orderId": "order-valid-2", "amount": 1000, "extra": 1}),
    ] {
        let response = app.post("/v1/payments/confirm", &body).await;
        assert_eq!(response.status().as_u16(), 400, "{body}");
    }
    let unknown = app.confirm("order-never-placed", "pk", 1000).await;
    assert_eq!(unknown.status().as_u16(), 404);
    assert_eq!(
        unknown.json::<Value>().await.unwrap()["code"],
        "E_ORDER_NOT_FOUND"
    );
    assert_eq!(app.head_position().await, before);
}
