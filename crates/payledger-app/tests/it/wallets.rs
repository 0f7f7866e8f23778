//! Credit wallets: buying needs a membership, spending stops at zero, refunds of the paying order
//! claw credits back (through the scheduler pass), never below zero.

use crate::support::*;
use payledger_app::payments::{ConfirmOutcome, PlaceOrderInput};
use payledger_app::subscriptions::BillingError;
use payledger_domain::billing::CreditOperationId;
use payledger_domain::ids::{OrderId, PayeeId, PaymentKey};
use payledger_domain::money::{Currency, Money};
use payledger_domain::wallet::WalletError;

/// Places and pays a 10 000 KRW order of `customer_id` through the sandbox.
async fn paid_order(h: &Harness, customer_id: &str, order_id: &str) -> OrderId {
    let payments = h.payments();
    let order_id = OrderId::parse(order_id).unwrap();
    payments
        .place_order(
            PlaceOrderInput {
                order_id: Some(order_id.clone()),
                amount: Money::new(10_000, Currency::KRW).unwrap(),
                customer_id: customer(customer_id),
                payee_id: PayeeId::parse("payee_credits").unwrap(),
                order_name: "100 credits".into(),
                service_starts_at: None,
                provider: None,
            },
            &context(),
        )
        .await
        .unwrap();
    let outcome = payments
        .confirm(
            &order_id,
            PaymentKey::parse(format!("pk_{order_id}")).unwrap(),
            10_000,
            &context(),
        )
        .await
        .unwrap();
    assert!(matches!(outcome, ConfirmOutcome::Captured(_)));
    order_id
}

fn op(id: &str) -> Option<CreditOperationId> {
    Some(CreditOperationId::parse(id).unwrap())
}

#[tokio::test]
async fn buying_credits_needs_an_active_membership() {
    let h = Harness::start().await;
    let services = h.services();
    let order = paid_order(&h, "cust_w1", "order-credits-1").await;
    let refused = services
        .purchase_credits(&customer("cust_w1"), op("p1"), 100, &order, &context())
        .await;
    assert!(
        matches!(
            refused,
            Err(BillingError::Wallet(WalletError::MembershipRequired))
        ),
        "{refused:?}"
    );
    h.subscribe(&services, "cust_w1", "member_w1", "sandbox_approve_w1")
        .await;
    let wallet = services
        .purchase_credits(&customer("cust_w1"), op("p1"), 100, &order, &context())
        .await
        .unwrap();
    assert_eq!(wallet.state.balance, 100);
    assert_eq!(wallet.membership_level, 2);
    // The same purchase again is a replay, not 100 more credits.
    let again = services
        .purchase_credits(&customer("cust_w1"), op("p1"), 100, &order, &context())
        .await
        .unwrap();
    assert!(again.replay);
    assert_eq!(again.state.balance, 100);
    // One order pays for one purchase.
    assert!(matches!(
        services
            .purchase_credits(&customer("cust_w1"), op("p2"), 100, &order, &context())
            .await,
        Err(BillingError::Wallet(WalletError::OrderAlreadyUsed))
    ));
}

#[tokio::test]
async fn a_suspended_membership_cannot_buy_credits() {
    let h = Harness::start().await;
    let services = h.services();
    let order = paid_order(&h, "cust_w2", "order-credits-2").await;
    h.subscribe(&services, "cust_w2", "member_w2", "sandbox_stopped_w2")
        .await;
    // Never paid: no membership.
    assert!(matches!(
        services
            .purchase_credits(&customer("cust_w2"), op("p1"), 10, &order, &context())
            .await,
        Err(BillingError::Wallet(WalletError::MembershipRequired))
    ));
}

#[tokio::test]
async fn orders_of_another_customer_or_unpaid_orders_buy_nothing() {
    let h = Harness::start().await;
    let services = h.services();
    h.subscribe(&services, "cust_w3", "member_w3", "sandbox_approve_w3")
        .await;
    let someone_elses = paid_order(&h, "cust_other", "order-credits-3").await;
    assert!(matches!(
        services
            .purchase_credits(
                &customer("cust_w3"),
                op("p1"),
                10,
                &someone_elses,
                &context()
            )
            .await,
        Err(BillingError::CustomerMismatch("order"))
    ));
    let unpaid = OrderId::parse("order-credits-unpaid").unwrap();
    h.payments()
        .place_order(
            PlaceOrderInput {
                order_id: Some(unpaid.clone()),
                amount: Money::new(5_000, Currency::KRW).unwrap(),
                customer_id: customer("cust_w3"),
                payee_id: PayeeId::parse("payee_credits").unwrap(),
                order_name: "credits".into(),
                service_starts_at: None,
                provider: None,
            },
            &context(),
        )
        .await
        .unwrap();
    assert!(matches!(
        services
            .purchase_credits(&customer("cust_w3"), op("p1"), 10, &unpaid, &context())
            .await,
        Err(BillingError::OrderNotPaid)
    ));
    let missing = OrderId::parse("order-never-placed").unwrap();
    assert!(matches!(
        services
            .purchase_credits(&customer("cust_w3"), op("p1"), 10, &missing, &context())
            .await,
        Err(BillingError::OrderNotFound)
    ));
}

#[tokio::test]
async fn spending_stops_at_zero() {
    let h = Harness::start().await;
    let services = h.services();
    h.subscribe(&services, "cust_w4", "member_w4", "sandbox_approve_w4")
        .await;
    let order = paid_order(&h, "cust_w4", "order-credits-4").await;
    services
        .purchase_credits(&customer("cust_w4"), op("p1"), 50, &order, &context())
        .await
        .unwrap();
    let after = services
        .spend_credits(
            &customer("cust_w4"),
            op("s1"),
            50,
            "export".into(),
            &context(),
        )
        .await
        .unwrap();
    assert_eq!(after.state.balance, 0);
    let refused = services
        .spend_credits(
            &customer("cust_w4"),
            op("s2"),
            1,
            "export".into(),
            &context(),
        )
        .await;
    assert!(matches!(
        refused,
        Err(BillingError::Wallet(WalletError::InsufficientCredits {
            balance: 0,
            requested: 1
        }))
    ));
}

#[tokio::test]
async fn refunds_of_the_paying_order_claw_back_credits_through_the_scheduler_never_below_zero() {
    let h = Harness::start().await;
    let services = h.services();
    h.subscribe(&services, "cust_w5", "member_w5", "sandbox_approve_w5")
        .await;
    let order = paid_order(&h, "cust_w5", "order-credits-5").await;
    services
        .purchase_credits(&customer("cust_w5"), op("p1"), 100, &order, &context())
        .await
        .unwrap();
    services
        .spend_credits(
            &customer("cust_w5"),
            op("s1"),
            30,
            "export".into(),
            &context(),
        )
        .await
        .unwrap();

    // Half the order is refunded: half the credits go back.
    h.payments()
        .refund(
            &order,
            None,
            Some(5_000),
            "partial refund".into(),
            &context(),
        )
        .await
        .unwrap();
    let report = h.run_due_at(&services, h.now()).await;
    assert_eq!(report.refunds_clawed_back, 1);
    let wallet = services.wallet(&customer("cust_w5")).await.unwrap();
    assert_eq!(wallet.state.balance, 20);
    assert_eq!(wallet.state.clawed_back_total, 50);

    // The rest is refunded: 50 more are due, only 20 are left; 30 become a shortfall.
    h.payments()
        .refund(&order, None, None, "the rest".into(), &context())
        .await
        .unwrap();
    let report = h.run_due_at(&services, h.now()).await;
    assert_eq!(report.refunds_clawed_back, 1);
    let wallet = services.wallet(&customer("cust_w5")).await.unwrap();
    assert_eq!(wallet.state.balance, 0);
    assert_eq!(wallet.state.clawed_back_total, 70);
    assert_eq!(wallet.state.shortfall_total, 30);

    // Nothing left to do: a further pass records nothing.
    let report = h.run_due_at(&services, h.now()).await;
    assert_eq!(report.refunds_clawed_back, 0);
    h.index.caught_up().await;
    let view = payledger_read_models::subscriptions::get_wallet(&h.db.app_pool, "cust_w5")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (view.balance, view.clawed_back_total, view.shortfall_total),
        (0, 70, 30)
    );
}

#[tokio::test]
async fn another_customers_subscription_id_gives_no_membership() {
    let h = Harness::start().await;
    let services = h.services();
    h.subscribe(&services, "cust_owner", "taken", "sandbox_approve_owner")
        .await;
    // Someone else tries to start a subscription under the same id: refused, and no borrowed
    // membership either.
    let key = services
        .register_billing_key(&customer("cust_thief"), "sandbox_approve_thief", &context())
        .await
        .unwrap();
    let refused = services
        .start(
            payledger_app::subscriptions::StartSubscriptionInput {
                subscription_id: Some(
                    payledger_domain::billing::SubscriptionId::parse("taken").unwrap(),
                ),
                customer_id: customer("cust_thief"),
                plan_id: payledger_domain::billing::PlanId::parse("premium").unwrap(),
                amount: Money::new(1_000, Currency::KRW).unwrap(),
                interval: payledger_domain::billing::BillingInterval::monthly(),
                billing_key_id: key.billing_key_id,
                anchor: None,
                order_name: None,
            },
            &context(),
        )
        .await;
    assert!(matches!(
        refused,
        Err(BillingError::Subscription(
            payledger_domain::subscription::SubscriptionError::AlreadyExists
        ))
    ));
    assert_eq!(
        services
            .membership_level(&customer("cust_thief"))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        services
            .membership_level(&customer("cust_owner"))
            .await
            .unwrap(),
        2
    );
}
