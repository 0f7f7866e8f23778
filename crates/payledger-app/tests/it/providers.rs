//! The provider is chosen per order: placement refuses what the deployment cannot charge, and
//! every later call for an order (confirm, refund, reconcile) goes to the connector it was
//! placed with. Two real connectors on two real sandboxes, told apart by name.

use payledger_app::clock::SystemClock;
use payledger_app::context::RequestContext;
use payledger_app::executor::Executor;
use payledger_app::payments::{
    ConfirmOutcome, PaymentError, Payments, PaymentsConfig, PlaceOrderInput,
};
use payledger_connector_toss::{TossConfig, TossGateway};
use payledger_domain::ids::{CustomerId, OrderId, PayeeId, PaymentKey};
use payledger_domain::money::{Currency, Money};
use payledger_gateway::{ProviderRegistry, RegistryError};
use payledger_sandbox::{RunningSandbox, SandboxConfig};
use payledger_store::{EventStore, WriterConfig};
use payledger_testdb::TestDatabase;
use std::sync::Arc;

async fn sandbox() -> RunningSandbox {
    payledger_sandbox::start("127.0.0.1:0".parse().unwrap(), SandboxConfig::default())
        .await
        .unwrap()
}

fn connector(name: &str, sandbox: &RunningSandbox) -> Arc<TossGateway> {
    let config = TossConfig {
        provider_name: name.to_string(),
        ..TossConfig::sandbox(sandbox.base_url())
    };
    Arc::new(TossGateway::new(config).unwrap())
}

fn input(order_id: &str, currency: Currency, provider: Option<&str>) -> PlaceOrderInput {
    PlaceOrderInput {
        order_id: Some(OrderId::parse(order_id).unwrap()),
        amount: Money::new(5_000, currency).unwrap(),
        customer_id: CustomerId::parse("cust_1").unwrap(),
        payee_id: PayeeId::parse("payee_1").unwrap(),
        order_name: "Yoga class".into(),
        service_starts_at: None,
        provider: provider.map(str::to_string),
    }
}

#[tokio::test]
async fn each_order_is_paid_refunded_and_reconciled_through_the_provider_it_was_placed_with() {
    let db = TestDatabase::fresh().await;
    let (default_sandbox, other_sandbox) = (sandbox().await, sandbox().await);
    let registry = ProviderRegistry::new(connector("toss", &default_sandbox))
        .with(connector("other", &other_sandbox))
        .unwrap();
    let store = EventStore::new(db.app_pool.clone(), WriterConfig::default());
    let payments = Payments::with_providers(
        Arc::new(Executor::new(store)),
        Arc::new(registry),
        Arc::new(SystemClock),
        PaymentsConfig::default(),
    );
    let context = RequestContext::new("client:test", None);

    // Refused at placement, nothing stored: an unconfigured provider, a currency Toss cannot take.
    let unconfigured = payments
        .place_order(
            input("order-stripe-1", Currency::KRW, Some("stripe")),
            &context,
        )
        .await;
    assert!(matches!(
        unconfigured,
        Err(PaymentError::Provider(RegistryError::NotConfigured { .. }))
    ));
    let usd = payments
        .place_order(input("order-usd-1", Currency::USD, None), &context)
        .await;
    assert!(matches!(
        usd,
        Err(PaymentError::Provider(
            RegistryError::CurrencyNotSupported { .. }
        ))
    ));
    assert_eq!(
        payledger_store::head_position(&db.app_pool).await.unwrap(),
        0
    );

    let default = payments
        .place_order(input("order-default-1", Currency::KRW, None), &context)
        .await
        .unwrap();
    assert_eq!(default.state.placed.unwrap().provider, "toss");
    let other = payments
        .place_order(
            input("order-other-1", Currency::KRW, Some("other")),
            &context,
        )
        .await
        .unwrap();
    assert_eq!(other.state.placed.unwrap().provider, "other");

    for (order_id, key) in [
        ("order-default-1", "pk_default_1"),
        ("order-other-1", "pk_other_1"),
    ] {
        let outcome = payments
            .confirm(
                &OrderId::parse(order_id).unwrap(),
                PaymentKey::parse(key).unwrap(),
                5_000,
                &context,
            )
            .await
            .unwrap();
        assert!(matches!(outcome, ConfirmOutcome::Captured(_)));
    }
    payments
        .refund(
            &OrderId::parse("order-other-1").unwrap(),
            None,
            Some(2_000),
            "changed mind".into(),
            &context,
        )
        .await
        .unwrap();

    let (default_stats, other_stats) = (default_sandbox.stats(), other_sandbox.stats());
    assert_eq!(
        default_stats.charges_by_order_id.get("order-default-1"),
        Some(&1)
    );
    assert_eq!(default_stats.charges_by_order_id.get("order-other-1"), None);
    assert_eq!(
        other_stats.charges_by_order_id.get("order-other-1"),
        Some(&1)
    );
    assert_eq!(other_stats.charges_by_order_id.get("order-default-1"), None);
    assert_eq!(other_stats.total_canceled_amount, 2_000);
    assert_eq!(default_stats.total_canceled_amount, 0);
}
