//! The payment flow through HTTP: place, confirm, refund, timeline.

use futures::future::join_all;
use payledger_tests::{event_types, spawn_app, TestProvider};
use serde_json::{json, Value};

#[tokio::test]
async fn place_confirm_and_partially_refund_an_order() {
    let app = spawn_app().await;
    let placed = app.place_order("order-e2e-1", 50_000).await;
    assert_eq!(placed["status"], "READY");
    assert_eq!(placed["amount"], 50_000);

    let confirmed = app.confirm("order-e2e-1", "pk_e2e_1", 50_000).await;
    assert_eq!(confirmed.status().as_u16(), 200);
    let confirmed: Value = confirmed.json().await.unwrap();
    assert_eq!(confirmed["status"], "PAID");
    assert_eq!(confirmed["capturedAmount"], 50_000);

    let refund = app
        .post(
            "/v1/orders/order-e2e-1/refunds",
            &json!({"amount": 20_000, "reason": "one session cancelled"}),
        )
        .await;
    assert_eq!(refund.status().as_u16(), 201);
    let refund: Value = refund.json().await.unwrap();
    assert_eq!(refund["status"], "COMPLETED");
    assert_eq!(refund["order"]["refundedAmount"], 20_000);
    assert_eq!(refund["order"]["refundableAmount"], 30_000);

    // The rest, with no amount: everything still refundable.
    let rest = app
        .post(
            "/v1/orders/order-e2e-1/refunds",
            &json!({"reason": "customer left"}),
        )
        .await;
    assert_eq!(rest.status().as_u16(), 201);
    let rest: Value = rest.json().await.unwrap();
    assert_eq!(rest["amount"], 30_000);
    assert_eq!(rest["order"]["status"], "REFUNDED");
    let position = rest["order"]["position"].as_i64().unwrap();

    // Read your writes: the read model answers once it has reached the command's position.
    let order: Value = app
        .get(&format!("/v1/orders/order-e2e-1?minPosition={position}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(order["status"], "REFUNDED");
    assert_eq!(order["refundedAmount"], 50_000);
    assert_eq!(order["refundableAmount"], 0);

    let timeline: Value = app
        .get(&format!(
            "/v1/orders/order-e2e-1/timeline?minPosition={position}"
        ))
        .await
        .json()
        .await
        .unwrap();
    let types = event_types(&timeline["entries"]);
    assert_eq!(
        types,
        vec![
            "OrderPlaced",
            "PaymentConfirmationStarted",
            "PaymentCaptured",
            "RefundRequested",
            "RefundCompleted",
            "RefundRequested",
            "RefundCompleted"
        ]
    );
    let stats = app.sandbox.stats();
    assert_eq!(stats.charges_by_order_id.get("order-e2e-1"), Some(&1));
}

#[tokio::test]
async fn a_mismatched_amount_is_rejected_recorded_and_never_charged() {
    let app = spawn_app().await;
    app.place_order("order-mismatch", 50_000).await;
    let response = app.confirm("order-mismatch", "pk_mm", 100).await;
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "E_AMOUNT_MISMATCH");
    let stream: Value = app
        .get("/v1/streams/order-order-mismatch")
        .await
        .json()
        .await
        .unwrap();
    let types = event_types(&stream["events"]);
    assert_eq!(types, vec!["OrderPlaced", "ConfirmationRejected"]);
    assert!(!app
        .sandbox
        .stats()
        .charges_by_order_id
        .contains_key("order-mismatch"));
    // The order can still be paid with the right amount.
    assert_eq!(
        app.confirm("order-mismatch", "pk_mm", 50_000)
            .await
            .status()
            .as_u16(),
        200
    );
}

#[tokio::test]
async fn a_declined_card_answers_with_the_provider_code_and_a_suggested_action() {
    let app = spawn_app().await;
    app.place_order("order-declined", 10_000).await;
    let response = app
        .confirm("order-declined", "sandbox_decline_1", 10_000)
        .await;
    assert_eq!(response.status().as_u16(), 402);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "E_PAYMENT_REFUSED");
    assert_eq!(body["providerCode"], "REJECT_CARD_COMPANY");
    assert_eq!(body["suggestedAction"], "USE_ANOTHER_CARD");
    // A new attempt with another card succeeds.
    let retry = app.confirm("order-declined", "pk_other_card", 10_000).await;
    assert_eq!(retry.status().as_u16(), 200);
}

#[tokio::test]
async fn confirming_twice_in_a_row_charges_once_and_answers_the_same() {
    let app = spawn_app().await;
    app.place_order("order-twice", 7_000).await;
    let first: Value = app
        .confirm("order-twice", "pk_twice", 7_000)
        .await
        .json()
        .await
        .unwrap();
    let second = app.confirm("order-twice", "pk_twice", 7_000).await;
    assert_eq!(second.status().as_u16(), 200);
    let second: Value = second.json().await.unwrap();
    assert_eq!(second["status"], first["status"]);
    assert_eq!(second["replay"], true);
    assert_eq!(
        app.sandbox.stats().charges_by_order_id.get("order-twice"),
        Some(&1)
    );
    // Another payment key for a paid order is a conflict, not a second charge.
    let other = app.confirm("order-twice", "pk_someone_else", 7_000).await;
    assert_eq!(other.status().as_u16(), 409);
}

#[tokio::test]
async fn a_hundred_concurrent_confirms_of_one_order_charge_once_and_agree() {
    let app = spawn_app().await;
    for provider in TestProvider::ALL {
        let order_id = format!("order-race-{}", provider.name());
        let payment_key = provider.approved_payment_key("race");
        app.place_order_with(provider, &order_id, 33_000).await;
        let answers =
            join_all((0..100).map(|_| app.confirm(&order_id, &payment_key, 33_000))).await;
        let mut bodies = Vec::new();
        for response in answers {
            assert_eq!(response.status().as_u16(), 200, "{provider:?}");
            let body: Value = response.json().await.unwrap();
            bodies.push(body);
        }
        assert!(
            bodies
                .iter()
                .all(|b| b["status"] == "PAID" && b["capturedAmount"] == 33_000),
            "{provider:?}"
        );
        assert_eq!(
            bodies.iter().filter(|b| b.get("replay").is_none()).count(),
            1,
            "{provider:?}"
        );
        assert_eq!(
            app.charges_at_provider(provider, &order_id),
            1,
            "{provider:?}: one charge"
        );
    }
}

#[tokio::test]
async fn concurrent_refunds_never_exceed_the_capture() {
    let app = spawn_app().await;
    for provider in TestProvider::ALL {
        let order_id = format!("order-refunds-{}", provider.name());
        app.place_order_with(provider, &order_id, 10_000).await;
        let paid: Value = app
            .confirm(&order_id, &provider.approved_payment_key("refunds"), 10_000)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(paid["status"], "PAID", "{provider:?}: {paid}");
        let payment_key = paid["paymentKey"].as_str().unwrap().to_owned();
        // 100 refunds of 300 = 30_000 asked for against a capture of 10_000.
        let body = json!({"amount": 300, "reason": "race"});
        let path = format!("/v1/orders/{order_id}/refunds");
        let answers = join_all((0..100).map(|_| app.post(&path, &body))).await;
        let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
        let created = statuses.iter().filter(|s| **s == 201).count();
        assert_eq!(created, 33, "{provider:?}: 10_000 / 300 = 33 refunds fit");
        assert!(
            statuses.iter().all(|s| *s == 201 || *s == 409),
            "{provider:?}: {statuses:?}"
        );
        let position = app.head_position().await;
        let order: Value = app
            .get(&format!("/v1/orders/{order_id}?minPosition={position}"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(order["refundedAmount"], 9_900, "{provider:?}");
        assert_eq!(order["refundableAmount"], 100, "{provider:?}");
        assert_eq!(
            app.refunded_at_provider(provider, &payment_key).await,
            9_900,
            "{provider:?}: the provider refunded exactly what the ledger did"
        );
    }
}

#[tokio::test]
async fn refunds_are_refused_beyond_what_is_refundable_and_for_unpaid_orders() {
    let app = spawn_app().await;
    app.place_order("order-unpaid", 5_000).await;
    let unpaid = app
        .post("/v1/orders/order-unpaid/refunds", &json!({"reason": "x"}))
        .await;
    assert_eq!(unpaid.status().as_u16(), 409);
    assert_eq!(
        unpaid.json::<Value>().await.unwrap()["code"],
        "E_ORDER_NOT_PAID"
    );

    app.confirm("order-unpaid", "pk_unpaid", 5_000).await;
    let too_much = app
        .post(
            "/v1/orders/order-unpaid/refunds",
            &json!({"amount": 5_001, "reason": "x"}),
        )
        .await;
    assert_eq!(too_much.status().as_u16(), 409);
    let body: Value = too_much.json().await.unwrap();
    assert_eq!(body["code"], "E_REFUND_EXCEEDS_REFUNDABLE");
    assert_eq!(body["refundableAmount"], 5_000);

    let missing = app
        .post("/v1/orders/order-nope-1/refunds", &json!({"reason": "x"}))
        .await;
    assert_eq!(missing.status().as_u16(), 404);
}

#[tokio::test]
async fn the_same_refund_id_twice_refunds_once() {
    let app = spawn_app().await;
    app.place_order("order-refund-id", 8_000).await;
    app.confirm("order-refund-id", "pk_rid", 8_000).await;
    let body = json!({"refundId": "rf-fixed-1", "amount": 2_000, "reason": "late"});
    let first = app.post("/v1/orders/order-refund-id/refunds", &body).await;
    assert_eq!(first.status().as_u16(), 201);
    let again = app.post("/v1/orders/order-refund-id/refunds", &body).await;
    assert_eq!(again.status().as_u16(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["replay"], true);
    assert_eq!(again["order"]["refundedAmount"], 2_000);
    let conflicting = app
        .post(
            "/v1/orders/order-refund-id/refunds",
            &json!({"refundId": "rf-fixed-1", "amount": 3_000, "reason": "late"}),
        )
        .await;
    assert_eq!(conflicting.status().as_u16(), 409);
}
