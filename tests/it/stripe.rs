//! Stripe end to end over HTTP: orders placed with `provider: stripe` pay through the Stripe
//! connector against the sandbox's `/stripe` API.

use payledger_tests::{spawn_app, TestApp};
use serde_json::{json, Value};

async fn place(app: &TestApp, order_id: &str, amount: i64, currency: &str) -> Value {
    let response = app
        .post(
            "/v1/orders",
            &json!({"orderId": order_id, "amount": amount, "currency": currency,
                    "customerId": "cust_1", "payeeId": "payee_1", "orderName": "Yoga class",
                    "provider": "stripe"}),
        )
        .await;
    assert_eq!(response.status().as_u16(), 201, "place a Stripe order");
    response.json().await.unwrap()
}

fn charges_of(app: &TestApp, order_id: &str) -> u64 {
    app.sandbox.stripe_stats()["chargesByOrderId"][order_id]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test]
async fn a_stripe_order_is_confirmed_with_a_payment_method_and_partly_refunded() {
    let app = spawn_app().await;
    let order = place(&app, "order-stripe-1", 10_000, "USD").await;
    assert_eq!(order["provider"], "stripe", "{order}");

    let response = app.confirm("order-stripe-1", "pm_card_visa", 10_000).await;
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "PAID", "{body}");
    assert_eq!(charges_of(&app, "order-stripe-1"), 1);

    // The order now knows its payment by the PaymentIntent id, and still by the PaymentMethod id
    // it was confirmed with: the repeat is answered as the same payment, never charged again.
    let again = app.confirm("order-stripe-1", "pm_card_visa", 10_000).await;
    assert_eq!(again.status().as_u16(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["replay"], true, "{again}");
    assert_eq!(again["paymentKey"], body["paymentKey"], "{again}");
    let other = app
        .confirm("order-stripe-1", "pm_card_mastercard", 10_000)
        .await;
    assert_eq!(other.status().as_u16(), 409, "another card is a conflict");
    assert_eq!(
        charges_of(&app, "order-stripe-1"),
        1,
        "nothing is charged again"
    );

    let refund = app
        .post(
            "/v1/orders/order-stripe-1/refunds",
            &json!({"amount": 3_000, "reason": "one class missed"}),
        )
        .await;
    let status = refund.status().as_u16();
    let refund: Value = refund.json().await.unwrap();
    assert_eq!(status, 201, "{refund}");
    assert_eq!(refund["order"]["refundedAmount"], 3_000, "{refund}");
    let second = app
        .post(
            "/v1/orders/order-stripe-1/refunds",
            &json!({"amount": 2_000, "reason": "another class missed"}),
        )
        .await;
    let second: Value = second.json().await.unwrap();
    assert_eq!(second["order"]["refundedAmount"], 5_000, "{second}");
}

#[tokio::test]
async fn a_declined_stripe_card_is_a_clear_refusal() {
    let app = spawn_app().await;
    place(&app, "order-stripe-2", 41_000, "KRW").await;
    let response = app
        .confirm(
            "order-stripe-2",
            "pm_card_chargeDeclinedInsufficientFunds",
            41_000,
        )
        .await;
    assert_eq!(response.status().as_u16(), 402);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "E_PAYMENT_REFUSED", "{body}");
    assert_eq!(charges_of(&app, "order-stripe-2"), 0);
}

#[tokio::test]
async fn three_d_secure_leaves_the_order_waiting_until_stripe_says_it_succeeded() {
    let app = spawn_app().await;
    place(&app, "order-stripe-3", 5_000, "EUR").await;
    let response = app
        .confirm("order-stripe-3", "pm_card_authenticationRequired", 5_000)
        .await;
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 202, "{body}");
    assert_eq!(charges_of(&app, "order-stripe-3"), 0);

    // The customer completes 3-D Secure with Stripe.js.
    let found: Value = app
        .client
        .get(format!(
            "{}/v1/payment_intents/search?query=metadata%5B%27order_id%27%5D%3A%27order-stripe-3%27",
            app.sandbox.stripe_base_url()
        ))
        .bearer_auth(payledger_sandbox::DEFAULT_STRIPE_SECRET_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let intent = found["data"][0]["id"].as_str().unwrap().to_owned();
    let done = app
        .client
        .post(format!(
            "{}/sandbox/payment_intents/{intent}/authenticate",
            app.sandbox.stripe_base_url()
        ))
        .bearer_auth(payledger_sandbox::DEFAULT_STRIPE_SECRET_KEY)
        .form(&[("outcome", "succeed")])
        .send()
        .await
        .unwrap();
    assert!(done.status().is_success());

    let status: Value = app
        .get("/v1/orders/order-stripe-3/payment-status?checkProvider=true")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["orderStatus"], "PAID", "{status}");
    assert_eq!(status["capturedAmount"], 5_000, "{status}");
    assert_eq!(charges_of(&app, "order-stripe-3"), 1);
}
