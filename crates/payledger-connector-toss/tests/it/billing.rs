//! Billing keys: issue, charge, and a card scripted to fail and then recover (dunning).

use crate::world;
use payledger_domain::money::Currency;
use payledger_domain::provider_failure::FailureClass;
use payledger_gateway::{
    BillingKeyIssued, BillingKeySecret, ChargeBillingKeyRequest, GatewayError,
    IssueBillingKeyRequest, PaymentFactStatus, PaymentGateway,
};
use payledger_sandbox::Behaviour;

async fn issue(world: &crate::World, auth_key: &str, customer_key: &str) -> BillingKeyIssued {
    world
        .gateway
        .issue_billing_key(&IssueBillingKeyRequest {
            customer_key: customer_key.to_owned(),
            auth_key: auth_key.to_owned(),
        })
        .await
        .unwrap()
}

fn charge(billing_key: &BillingKeySecret, order_id: &str, attempt: u32) -> ChargeBillingKeyRequest {
    ChargeBillingKeyRequest {
        billing_key: billing_key.clone(),
        customer_key: "customer-1".to_owned(),
        order_id: order_id.to_owned(),
        order_name: "Pro plan".to_owned(),
        amount_minor: 9_900,
        currency: Currency::KRW,
        idempotency_key: format!("{order_id}:{attempt}"),
    }
}

#[tokio::test]
async fn an_issued_billing_key_can_be_charged_and_never_prints() {
    let world = world().await;
    let issued = issue(&world, "auth-ok-1", "customer-1").await;
    assert_eq!(issued.customer_key, "customer-1");
    assert_eq!(issued.card.last4.len(), 4);
    assert!(!issued.card.issuer_code.is_empty());
    assert!(!format!("{issued:?}").contains(issued.billing_key.expose()));

    let request = charge(&issued.billing_key, "sub-1-cycle-1", 1);
    assert!(!format!("{request:?}").contains(issued.billing_key.expose()));
    let payment = world.gateway.charge_billing_key(&request).await.unwrap();
    assert_eq!(payment.status, PaymentFactStatus::Captured);
    assert_eq!(payment.order_id, "sub-1-cycle-1");
    assert_eq!(payment.total_amount_minor, 9_900);
    assert_eq!(payment.card.map(|card| card.last4), Some(issued.card.last4));
}

#[tokio::test]
async fn a_card_that_fails_then_recovers_is_charged_once_on_a_new_attempt() {
    let world = world().await;
    let issued = issue(&world, "sandbox_insufficient_auth_2", "customer-1").await;
    let key = issued.billing_key;

    let first = charge(&key, "sub-2-cycle-1", 1);
    let failure = crate::refusal(world.gateway.charge_billing_key(&first).await);
    assert_eq!(failure.class, FailureClass::SoftDecline);

    world
        .sandbox
        .set_billing_key_behaviour(key.expose(), Behaviour::Expired)
        .unwrap();
    crate::assert_refused(
        world
            .gateway
            .charge_billing_key(&charge(&key, "sub-2-cycle-1", 2))
            .await,
        FailureClass::CardUnusable,
        "INVALID_CARD_EXPIRATION",
    );
    world
        .sandbox
        .set_billing_key_behaviour(key.expose(), Behaviour::ExceedLimit)
        .unwrap();
    crate::assert_refused(
        world
            .gateway
            .charge_billing_key(&charge(&key, "sub-2-cycle-1", 3))
            .await,
        FailureClass::ExceedsLimit,
        "EXCEED_MAX_AMOUNT",
    );
    world
        .sandbox
        .set_billing_key_behaviour(key.expose(), Behaviour::BillingKeyInvalid)
        .unwrap();
    crate::assert_refused(
        world
            .gateway
            .charge_billing_key(&charge(&key, "sub-2-cycle-1", 4))
            .await,
        FailureClass::BillingKeyInvalid,
        "INVALID_BILL_KEY_REQUEST",
    );

    world
        .sandbox
        .set_billing_key_behaviour(key.expose(), Behaviour::Approve)
        .unwrap();
    // The failed attempt stays failed under its own key…
    let replayed = crate::refusal(world.gateway.charge_billing_key(&first).await);
    assert_eq!(replayed, failure);
    // …and the next attempt, under a new key, is charged.
    let paid = world
        .gateway
        .charge_billing_key(&charge(&key, "sub-2-cycle-1", 5))
        .await
        .unwrap();
    assert_eq!(paid.status, PaymentFactStatus::Captured);

    let stats = world.sandbox.stats();
    assert_eq!(stats.charges_by_order_id.get("sub-2-cycle-1"), Some(&1));
    assert_eq!(stats.attempts_by_order_id.get("sub-2-cycle-1"), Some(&5));
}

#[tokio::test]
async fn an_unknown_billing_key_is_invalid_and_error_texts_never_show_it() {
    let world = world().await;
    let key = BillingKeySecret::new("sbx_bk_notissued_secret".to_owned());
    let result = world
        .gateway
        .charge_billing_key(&charge(&key, "sub-3-cycle-1", 1))
        .await;
    let text = match &result {
        Err(err) => err.to_string(),
        Ok(payment) => panic!("charged an unknown key: {payment:?}"),
    };
    assert!(!text.contains("notissued_secret"), "{text}");
    crate::assert_refused(result, FailureClass::BillingKeyInvalid, "NOT_FOUND_BILLING");
}

#[tokio::test]
async fn a_charged_order_id_cannot_be_charged_again_under_a_new_attempt_key() {
    let world = world().await;
    let issued = issue(&world, "auth-ok-4", "customer-1").await;
    world
        .gateway
        .charge_billing_key(&charge(&issued.billing_key, "sub-4-cycle-1", 1))
        .await
        .unwrap();
    let again = world
        .gateway
        .charge_billing_key(&charge(&issued.billing_key, "sub-4-cycle-1", 2))
        .await;
    crate::assert_refused(again, FailureClass::AlreadyProcessed, "DUPLICATED_ORDER_ID");
    assert_eq!(
        world
            .sandbox
            .stats()
            .charges_by_order_id
            .get("sub-4-cycle-1"),
        Some(&1)
    );
}

#[tokio::test]
async fn a_flaky_billing_key_is_charged_after_retries() {
    let world = world().await;
    let issued = issue(&world, "sandbox_flaky_2_auth_5", "customer-1").await;
    let payment = world
        .gateway
        .charge_billing_key(&charge(&issued.billing_key, "sub-5-cycle-1", 1))
        .await;
    assert!(
        payment.is_ok(),
        "{:?}",
        payment.map_err(|e: GatewayError| e.to_string())
    );
    assert_eq!(world.gateway.stats().retries, 2);
    assert_eq!(
        world
            .sandbox
            .stats()
            .charges_by_order_id
            .get("sub-5-cycle-1"),
        Some(&1)
    );
}
