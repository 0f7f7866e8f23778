//! Confirming payments: approval, every refusal class, and idempotent retries.

use crate::{assert_refused, confirm_request, world};
use payledger_domain::money::Currency;
use payledger_domain::provider_failure::FailureClass;
use payledger_gateway::{PaymentFactStatus, PaymentGateway};

#[tokio::test]
async fn an_approved_confirm_returns_the_payment_with_masked_card_facts() {
    let world = world().await;
    let payment = world
        .gateway
        .confirm(&confirm_request("pk_approve_1", "order-approve-1", 15_000))
        .await
        .unwrap();
    assert_eq!(payment.status, PaymentFactStatus::Captured);
    assert_eq!(payment.order_id, "order-approve-1");
    assert_eq!(payment.payment_key, "pk_approve_1");
    assert_eq!(payment.total_amount_minor, 15_000);
    assert_eq!(payment.balance_amount_minor, 15_000);
    assert_eq!(payment.currency, Currency::KRW);
    assert!(payment.approved_at.is_some());
    assert!(payment.cancels.is_empty());
    let card = payment.card.clone().expect("card metadata");
    assert_eq!(card.last4.len(), 4);
    assert!(card.last4.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(world.gateway.provider_name(), "toss");

    let by_order = world
        .gateway
        .payment_by_order_id("order-approve-1")
        .await
        .unwrap();
    assert_eq!(by_order.as_ref(), Some(&payment));
    let by_key = world.gateway.payment_by_key("pk_approve_1").await.unwrap();
    assert_eq!(by_key.as_ref(), Some(&payment));
}

#[tokio::test]
async fn an_unknown_payment_is_none_not_an_error() {
    let world = world().await;
    assert_eq!(
        world
            .gateway
            .payment_by_order_id("order-nobody")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        world.gateway.payment_by_key("pk_nobody").await.unwrap(),
        None
    );
}

#[tokio::test]
async fn each_test_input_maps_to_its_failure_class_and_is_not_retried() {
    let world = world().await;
    let cases = [
        (
            "sandbox_decline_1",
            FailureClass::SoftDecline,
            "REJECT_CARD_COMPANY",
        ),
        (
            "sandbox_insufficient_1",
            FailureClass::SoftDecline,
            "REJECT_CARD_COMPANY",
        ),
        (
            "sandbox_expired_1",
            FailureClass::CardUnusable,
            "INVALID_CARD_EXPIRATION",
        ),
        (
            "sandbox_stopped_1",
            FailureClass::CardUnusable,
            "INVALID_STOPPED_CARD",
        ),
        (
            "sandbox_limit_1",
            FailureClass::ExceedsLimit,
            "EXCEED_MAX_AMOUNT",
        ),
        (
            "sandbox_unknown_code_1",
            FailureClass::Unclassified,
            "SANDBOX_UNKNOWN_CODE",
        ),
    ];
    for (index, (payment_key, class, code)) in cases.into_iter().enumerate() {
        let order_id = format!("order-refused-{index}");
        let result = world
            .gateway
            .confirm(&confirm_request(payment_key, &order_id, 1_000))
            .await;
        assert_refused(result, class, code);
        let stats = world.sandbox.stats();
        assert_eq!(
            stats.attempts_by_order_id.get(&order_id),
            Some(&1),
            "{payment_key} was retried"
        );
        assert_eq!(stats.charges_by_order_id.get(&order_id), None);
    }
    let gateway_stats = world.gateway.stats();
    assert_eq!(gateway_stats.retries, 0);
    assert_eq!(gateway_stats.refusals, 6);
    assert_eq!(
        gateway_stats.failures, 0,
        "refusals say nothing about the provider's health"
    );
}

#[tokio::test]
async fn an_invalid_request_and_an_already_processed_order_are_told_apart() {
    let world = world().await;
    assert_refused(
        world
            .gateway
            .confirm(&confirm_request("pk_short", "short", 1_000))
            .await,
        FailureClass::InvalidRequest,
        "INVALID_ORDER_ID",
    );

    world
        .gateway
        .confirm(&confirm_request("pk_first", "order-twice-1", 1_000))
        .await
        .unwrap();
    // A second checkout for the same order: another payment key, another idempotency key.
    let mut again = confirm_request("pk_second", "order-twice-1", 1_000);
    again.idempotency_key = "confirm:order-twice-1:second".to_owned();
    assert_refused(
        world.gateway.confirm(&again).await,
        FailureClass::AlreadyProcessed,
        "ALREADY_PROCESSED_PAYMENT",
    );
    assert_eq!(
        world
            .sandbox
            .stats()
            .charges_by_order_id
            .get("order-twice-1"),
        Some(&1)
    );
}

#[tokio::test]
async fn a_repeated_confirm_with_the_same_idempotency_key_charges_once() {
    let world = world().await;
    let request = confirm_request("pk_repeat_1", "order-repeat-1", 7_700);
    let first = world.gateway.confirm(&request).await.unwrap();
    let second = world.gateway.confirm(&request).await.unwrap();
    assert_eq!(first, second);

    let concurrent = tokio::join!(
        world.gateway.confirm(&request),
        world.gateway.confirm(&request)
    );
    assert_eq!(concurrent.0.unwrap(), first);
    assert_eq!(concurrent.1.unwrap(), first);

    let stats = world.sandbox.stats();
    assert_eq!(stats.charges_by_order_id.get("order-repeat-1"), Some(&1));
    assert_eq!(stats.total_charges, 1);
}

#[tokio::test]
async fn only_won_is_charged_and_nothing_is_sent_otherwise() {
    let world = world().await;
    let mut request = confirm_request("pk_usd", "order-usd-1", 1_000);
    request.currency = Currency::USD;
    let failure = crate::refusal(world.gateway.confirm(&request).await);
    assert_eq!(failure.class, FailureClass::InvalidRequest);
    assert!(world.sandbox.stats().attempts_by_order_id.is_empty());
}

#[tokio::test]
async fn a_slow_approval_within_the_timeout_is_an_approval() {
    let world = world().await;
    let payment = world
        .gateway
        .confirm(&confirm_request(
            "sandbox_slow_150_a",
            "order-slow-1",
            2_000,
        ))
        .await
        .unwrap();
    assert_eq!(payment.status, PaymentFactStatus::Captured);
    assert_eq!(world.gateway.stats().retries, 0);
}
