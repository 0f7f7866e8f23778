//! Cancels: partial, full, over the balance, and a repeated cancel.

use crate::{assert_refused, confirm_request, world};
use payledger_domain::provider_failure::FailureClass;
use payledger_gateway::{CancelRequest, PaymentFactStatus, PaymentGateway};

fn cancel_request(payment_key: &str, amount_minor: Option<i64>, refund_id: &str) -> CancelRequest {
    CancelRequest {
        payment_key: payment_key.to_owned(),
        cancel_amount_minor: amount_minor,
        cancel_reason: "customer asked".to_owned(),
        idempotency_key: format!("refund:{refund_id}"),
    }
}

#[tokio::test]
async fn partial_cancels_then_the_rest_leave_a_zero_balance() {
    let world = world().await;
    world
        .gateway
        .confirm(&confirm_request("pk_cancel_1", "order-cancel-1", 10_000))
        .await
        .unwrap();

    let partial = world
        .gateway
        .cancel(&cancel_request("pk_cancel_1", Some(3_000), "r1"))
        .await
        .unwrap();
    assert_eq!(partial.status, PaymentFactStatus::PartiallyRefunded);
    assert_eq!(partial.balance_amount_minor, 7_000);
    assert_eq!(partial.cancels.len(), 1);
    assert_eq!(partial.cancels[0].cancel_amount_minor, 3_000);
    assert_eq!(partial.cancels[0].cancel_reason, "customer asked");

    let over = world
        .gateway
        .cancel(&cancel_request("pk_cancel_1", Some(7_001), "r2"))
        .await;
    assert_refused(over, FailureClass::NotCancelable, "NOT_CANCELABLE_AMOUNT");

    let rest = world
        .gateway
        .cancel(&cancel_request("pk_cancel_1", None, "r3"))
        .await
        .unwrap();
    assert_eq!(rest.status, PaymentFactStatus::Refunded);
    assert_eq!(rest.balance_amount_minor, 0);
    assert_eq!(rest.cancels.len(), 2);
    assert_eq!(rest.cancels[1].cancel_amount_minor, 7_000);

    let again = world
        .gateway
        .cancel(&cancel_request("pk_cancel_1", None, "r4"))
        .await;
    assert_refused(
        again,
        FailureClass::NotCancelable,
        "ALREADY_CANCELED_PAYMENT",
    );
    assert_eq!(world.sandbox.stats().total_canceled_amount, 10_000);
}

#[tokio::test]
async fn a_retried_refund_with_its_idempotency_key_cancels_once() {
    let world = world().await;
    world
        .gateway
        .confirm(&confirm_request("pk_cancel_2", "order-cancel-2", 10_000))
        .await
        .unwrap();
    let request = cancel_request("pk_cancel_2", Some(2_500), "refund-once");
    let first = world.gateway.cancel(&request).await.unwrap();
    let second = world.gateway.cancel(&request).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(second.balance_amount_minor, 7_500);
    assert_eq!(
        world
            .sandbox
            .stats()
            .canceled_amount_by_payment_key
            .get("pk_cancel_2"),
        Some(&2_500)
    );
}

#[tokio::test]
async fn cancelling_an_unknown_payment_is_not_found() {
    let world = world().await;
    let result = world
        .gateway
        .cancel(&cancel_request("pk_never_paid", Some(100), "r1"))
        .await;
    assert_refused(result, FailureClass::NotFound, "NOT_FOUND_PAYMENT");
}
