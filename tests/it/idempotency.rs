//! `Idempotency-Key` on command endpoints: one effect, the original answer, marked as a replay.

use futures::future::join_all;
use payledger_tests::{spawn_app, TestApp};
use serde_json::{json, Value};

async fn post_with_key(
    app: &TestApp,
    key: &str,
    idem: &str,
    path: &str,
    body: &Value,
) -> (u16, Option<String>, Value) {
    let response = app
        .client
        .post(app.url(path))
        .bearer_auth(key)
        .header("Idempotency-Key", idem)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let replayed = response
        .headers()
        .get("idempotency-replayed")
        .map(|v| v.to_str().unwrap().to_string());
    (status, replayed, response.json().await.unwrap())
}

fn new_order() -> Value {
    // No orderId: without the idempotency key every request would place a new order.
    json!({"amount": 4_000, "currency": "KRW", "customerId": "cust_idem", "payeeId": "payee_1", "orderName": "Spin class"})
}

#[tokio::test]
async fn fifty_concurrent_identical_requests_place_one_order_and_get_one_answer() {
    let app = spawn_app().await;
    let body = new_order();
    let answers = join_all(
        (0..50).map(|_| post_with_key(&app, &app.client_key, "place-once-1", "/v1/orders", &body)),
    )
    .await;
    let first = &answers[0];
    for (status, _, body) in &answers {
        assert_eq!(*status, 201);
        assert_eq!(body, &first.2, "every answer is the original one");
    }
    let fresh = answers
        .iter()
        .filter(|(_, replayed, _)| replayed.is_none())
        .count();
    assert_eq!(fresh, 1, "exactly one request ran");
    assert!(answers
        .iter()
        .filter_map(|(_, replayed, _)| replayed.as_deref())
        .all(|r| r == "true"));
    assert_eq!(
        app.head_position().await,
        1,
        "one OrderPlaced, nothing else"
    );

    // A later retry with the same key: the same answer again, nothing new.
    let (status, replayed, body) = post_with_key(
        &app,
        &app.client_key,
        "place-once-1",
        "/v1/orders",
        &new_order(),
    )
    .await;
    assert_eq!((status, replayed.as_deref()), (201, Some("true")));
    assert_eq!(body, first.2);
    // The same JSON with other whitespace and key order is the same request.
    let reordered = app
        .client
        .post(app.url("/v1/orders"))
        .bearer_auth(&app.client_key)
        .header("Idempotency-Key", "place-once-1")
        .header("content-type", "application/json")
        .body(r#"{ "payeeId":"payee_1", "orderName":"Spin class", "amount":4000, "currency":"KRW", "customerId":"cust_idem" }"#)
        .send()
        .await
        .unwrap();
    assert_eq!(reordered.status().as_u16(), 201);
    assert_eq!(app.head_position().await, 1);
}

#[tokio::test]
async fn concurrent_confirms_with_one_key_charge_once_and_agree() {
    let app = spawn_app().await;
    app.place_order("order-idem-pay", 9_000).await;
    let body = json!({"paymentKey": "sandbox_slow_300_idem", "orderId": "order-idem-pay", "amount": 9_000});
    let answers = join_all((0..20).map(|_| {
        post_with_key(
            &app,
            &app.client_key,
            "pay-1",
            "/v1/payments/confirm",
            &body,
        )
    }))
    .await;
    for (status, _, answer) in &answers {
        assert_eq!(*status, 200);
        assert_eq!(answer, &answers[0].2);
    }
    assert_eq!(answers.iter().filter(|a| a.1.is_none()).count(), 1);
    assert_eq!(
        app.sandbox
            .stats()
            .charges_by_order_id
            .get("order-idem-pay"),
        Some(&1)
    );
}

#[tokio::test]
async fn a_key_reused_for_another_request_is_refused() {
    let app = spawn_app().await;
    let (status, _, _) =
        post_with_key(&app, &app.client_key, "k-reuse", "/v1/orders", &new_order()).await;
    assert_eq!(status, 201);
    let mut other = new_order();
    other["amount"] = json!(4_001);
    let (status, _, body) =
        post_with_key(&app, &app.client_key, "k-reuse", "/v1/orders", &other).await;
    assert_eq!(status, 422);
    assert_eq!(body["code"], "E_IDEMPOTENCY_KEY_REUSED");
    // Another path with the same key is another request too.
    let (status, _, _) = post_with_key(
        &app,
        &app.client_key,
        "k-reuse",
        "/v1/payments/confirm",
        &json!({"paymentKey": "pk", "orderId": "order-none-1", "amount": 1}),
    )
    .await;
    assert_eq!(status, 422);
    // Keys are scoped to the client: another client's identical key is its own.
    let (status, replayed, _) =
        post_with_key(&app, &app.other_client_key, "k-reuse", "/v1/orders", &other).await;
    assert_eq!((status, replayed), (201, None));
    assert_eq!(app.head_position().await, 2);
}

#[tokio::test]
async fn a_business_failure_is_pinned_to_its_key_and_a_provider_outage_is_not() {
    let app = spawn_app().await;
    app.place_order("order-idem-fail", 3_000).await;
    let mismatch = json!({"paymentKey": "pk_f", "orderId": "order-idem-fail", "amount": 1});
    let (status, replayed, first) = post_with_key(
        &app,
        &app.client_key,
        "fail-1",
        "/v1/payments/confirm",
        &mismatch,
    )
    .await;
    assert_eq!((status, replayed), (400, None));
    assert_eq!(first["code"], "E_AMOUNT_MISMATCH");
    let head = app.head_position().await;
    let (status, replayed, again) = post_with_key(
        &app,
        &app.client_key,
        "fail-1",
        "/v1/payments/confirm",
        &mismatch,
    )
    .await;
    assert_eq!((status, replayed.as_deref()), (400, Some("true")));
    assert_eq!(again, first);
    assert_eq!(
        app.head_position().await,
        head,
        "the replay recorded no second rejection"
    );

    // A provider outage answers 503: the key is released, and the same request succeeds later.
    let pay = json!({"paymentKey": "pk_ok", "orderId": "order-idem-fail", "amount": 3_000});
    app.sandbox.start_outage(std::time::Duration::from_secs(60));
    let (status, _, body) =
        post_with_key(&app, &app.client_key, "pay-2", "/v1/payments/confirm", &pay).await;
    assert_eq!(status, 503, "{body}");
    app.sandbox.start_outage(std::time::Duration::ZERO);
    // The breaker may still be open for a moment: retry the same key until it goes through.
    let mut answer = (0, None, Value::Null);
    for _ in 0..50 {
        answer = post_with_key(&app, &app.client_key, "pay-2", "/v1/payments/confirm", &pay).await;
        if answer.0 != 503 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!((answer.0, answer.1), (200, None), "{}", answer.2);
    assert_eq!(answer.2["status"], "PAID");
}

#[tokio::test]
async fn malformed_keys_are_refused_and_reads_ignore_the_header() {
    let app = spawn_app().await;
    for bad in ["has space", &"k".repeat(256)] {
        let (status, _, body) =
            post_with_key(&app, &app.client_key, bad, "/v1/orders", &new_order()).await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(body["code"], "E_INVALID_IDEMPOTENCY_KEY");
    }
    assert_eq!(app.head_position().await, 0);
    let read = app
        .client
        .get(app.url("/v1/orders?customerId=x"))
        .bearer_auth(&app.client_key)
        .header("Idempotency-Key", "whatever")
        .send()
        .await
        .unwrap();
    assert_eq!(read.status().as_u16(), 200);
}

#[tokio::test]
async fn a_retry_whose_stored_answer_was_lost_still_creates_nothing_new() {
    let app = spawn_app().await;
    // The key names what the request creates when the body names nothing.
    let (status, _, order) =
        post_with_key(&app, &app.client_key, "lost-1", "/v1/orders", &new_order()).await;
    assert_eq!(status, 201);
    let order_id = order["orderId"].as_str().unwrap().to_string();
    assert!(order_id.starts_with("ord_"), "{order_id}");
    app.confirm(&order_id, "pk_lost", 4_000).await;
    let refund = json!({"amount": 1_000, "reason": "late"});
    let refund_path = format!("/v1/orders/{order_id}/refunds");
    let (status, _, first) =
        post_with_key(&app, &app.client_key, "lost-2", &refund_path, &refund).await;
    assert_eq!(status, 201);

    // As if the process died before storing its answers (or the keys were purged).
    sqlx::query("DELETE FROM idempotency_keys")
        .execute(&app.db.owner_pool)
        .await
        .unwrap();
    let head = app.head_position().await;
    let (status, _, again) =
        post_with_key(&app, &app.client_key, "lost-1", "/v1/orders", &new_order()).await;
    assert_eq!(
        (status, again["code"].as_str()),
        (409, Some("E_ORDER_ALREADY_EXISTS"))
    );
    let (status, _, again) =
        post_with_key(&app, &app.client_key, "lost-2", &refund_path, &refund).await;
    assert_eq!(status, 200, "the same refund, answered again: {again}");
    assert_eq!(again["refundId"], first["refundId"]);
    assert_eq!(again["order"]["refundedAmount"], 1_000);
    assert_eq!(app.head_position().await, head, "nothing new was recorded");
    assert_eq!(
        app.sandbox
            .stats()
            .canceled_amount_by_payment_key
            .get("pk_lost"),
        Some(&1_000)
    );
}

#[tokio::test]
async fn keys_older_than_a_day_are_purged_and_younger_ones_kept() {
    let app = spawn_app().await;
    post_with_key(&app, &app.client_key, "young", "/v1/orders", &new_order()).await;
    post_with_key(&app, &app.client_key, "old", "/v1/orders", &new_order()).await;
    sqlx::query(
        "UPDATE idempotency_keys SET created_at = now() - interval '25 hours' \
         WHERE idempotency_key = 'old'",
    )
    .execute(&app.db.owner_pool)
    .await
    .unwrap();
    let store = payledger_http::idempotency::IdempotencyStore::new(
        app.app_pool.clone(),
        payledger_http::idempotency::IdempotencyConfig::default(),
    );
    assert_eq!(store.purge_expired().await.unwrap(), 1);
    let left: Vec<String> = sqlx::query_scalar("SELECT idempotency_key FROM idempotency_keys")
        .fetch_all(&app.db.owner_pool)
        .await
        .unwrap();
    assert_eq!(left, vec!["young".to_string()]);
}
