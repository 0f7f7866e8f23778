//! Facts a provider reports on its own, re-checked against its API: refunds made at the provider
//! and disputes. Given/when/then on the order aggregate, plus their journal postings.

use chrono::{DateTime, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use cqrs_es::Aggregate;
use payledger_domain::ids::{CustomerId, OrderId, PayeeId, PaymentKey, RefundId};
use payledger_domain::journal::{post_order_event, Account, Side, TrialBalance};
use payledger_domain::money::{Currency, Money};
use payledger_domain::order::*;
use payledger_domain::provider_fact::{DisputeFact, DisputeStatus};

type OrderTest = TestFramework<Order>;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap()
}

fn payee() -> PayeeId {
    PayeeId::parse("payee_1").unwrap()
}

fn intent() -> PaymentKey {
    PaymentKey::parse("pi_1").unwrap()
}

fn placed() -> OrderEvent {
    OrderEvent::OrderPlaced(PlaceOrder {
        order_id: OrderId::parse("order-0001").unwrap(),
        amount: Money::new(10_000, Currency::USD).unwrap(),
        customer_id: CustomerId::parse("cust_1").unwrap(),
        payee_id: payee(),
        order_name: "Yoga course".into(),
        provider: "stripe".into(),
        service_starts_at: None,
        placed_at: t0(),
    })
}

fn captured() -> OrderEvent {
    OrderEvent::PaymentCaptured(PaymentCaptured {
        payment_key: intent(),
        amount_minor: 10_000,
        currency: Currency::USD,
        payee_id: payee(),
        approved_at: t0(),
        method: Some("card".into()),
        source: OutcomeSource::Webhook,
    })
}

fn our_refund(id: &str, amount_minor: i64, transaction_key: &str) -> Vec<OrderEvent> {
    vec![
        OrderEvent::RefundRequested(RefundRequested {
            refund_id: RefundId::parse(id).unwrap(),
            amount_minor,
            currency: Currency::USD,
            reason: "missed class".into(),
            reason_digest: None,
            customer_id: None,
            idempotency_key: format!("order-order-0001:refund:{id}"),
            at: t0(),
        }),
        OrderEvent::RefundCompleted(RefundCompleted {
            refund_id: RefundId::parse(id).unwrap(),
            amount_minor,
            currency: Currency::USD,
            payee_id: payee(),
            transaction_key: transaction_key.into(),
            source: OutcomeSource::Request,
            at: t0(),
        }),
    ]
}

fn provider_refund(transaction_key: &str, amount_minor: i64) -> OrderCommand {
    OrderCommand::RecordProviderRefund {
        provider: "stripe".into(),
        transaction_key: transaction_key.into(),
        amount_minor,
        currency: Currency::USD,
        at: t0(),
    }
}

fn provider_refunded(transaction_key: &str, amount_minor: i64) -> OrderEvent {
    OrderEvent::ProviderRefundRecorded(ProviderRefundRecorded {
        provider: "stripe".into(),
        transaction_key: transaction_key.into(),
        amount_minor,
        currency: Currency::USD,
        payee_id: payee(),
        at: t0(),
    })
}

fn dispute(status: DisputeStatus, amount_minor: i64, withdrawn_minor: i64) -> DisputeFact {
    DisputeFact {
        provider: "stripe".into(),
        dispute_id: "dp_1".into(),
        payment_key: "pi_1".into(),
        status,
        amount_minor,
        currency: Currency::USD,
        withdrawn_minor,
        fee_minor: 1_500,
        reason: Some("fraudulent".into()),
    }
}

fn record(fact: DisputeFact) -> OrderCommand {
    OrderCommand::RecordDispute { fact, at: t0() }
}

fn opened(amount_minor: i64) -> OrderEvent {
    OrderEvent::DisputeOpened(DisputeOpened {
        provider: "stripe".into(),
        dispute_id: "dp_1".into(),
        amount_minor,
        currency: Currency::USD,
        payee_id: payee(),
        reason: Some("fraudulent".into()),
        at: t0(),
    })
}

fn closed(amount_minor: i64, withdrawn_minor: i64) -> DisputeClosed {
    DisputeClosed {
        provider: "stripe".into(),
        dispute_id: "dp_1".into(),
        amount_minor,
        withdrawn_minor,
        fee_minor: 1_500,
        currency: Currency::USD,
        payee_id: payee(),
        at: t0(),
    }
}

fn folded(events: &[OrderEvent]) -> Order {
    let mut order = Order::default();
    for event in events {
        order.apply(event.clone());
    }
    order.assert_invariants();
    order
}

#[test]
fn a_refund_made_at_the_provider_is_recorded_once() {
    OrderTest::with(())
        .given(vec![placed(), captured()])
        .when(provider_refund("re_dash", 2_000))
        .then_expect_events(vec![provider_refunded("re_dash", 2_000)]);
    OrderTest::with(())
        .given(vec![
            placed(),
            captured(),
            provider_refunded("re_dash", 2_000),
        ])
        .when(provider_refund("re_dash", 2_000))
        .then_expect_events(vec![]);
    let order = folded(&[placed(), captured(), provider_refunded("re_dash", 2_000)]);
    assert_eq!(order.status, OrderStatus::PartiallyRefunded);
    assert_eq!(
        (order.refunded_minor, order.refundable_minor()),
        (2_000, 8_000)
    );
}

#[test]
fn payledgers_own_refund_is_never_recorded_again_as_the_providers() {
    let mut given = vec![placed(), captured()];
    given.extend(our_refund("rf-1", 3_000, "re_ours"));
    OrderTest::with(())
        .given(given)
        .when(provider_refund("re_ours", 3_000))
        .then_expect_events(vec![]);
}

#[test]
fn a_provider_refund_beyond_the_capture_or_of_an_unpaid_order_is_a_discrepancy() {
    OrderTest::with(())
        .given(vec![placed(), captured(), provider_refunded("re_1", 9_000)])
        .when(provider_refund("re_2", 2_000))
        .then_expect_error(OrderError::ProviderDiscrepancy);
    OrderTest::with(())
        .given(vec![placed()])
        .when(provider_refund("re_1", 2_000))
        .then_expect_error(OrderError::ProviderDiscrepancy);
}

#[test]
fn an_open_dispute_is_recorded_once_and_refuses_refunds() {
    OrderTest::with(())
        .given(vec![placed(), captured()])
        .when(record(dispute(DisputeStatus::Open, 10_000, 10_000)))
        .then_expect_events(vec![opened(10_000)]);
    OrderTest::with(())
        .given(vec![placed(), captured(), opened(10_000)])
        .when(record(dispute(DisputeStatus::Open, 10_000, 10_000)))
        .then_expect_events(vec![]);
    OrderTest::with(())
        .given(vec![placed(), captured(), opened(10_000)])
        .when(OrderCommand::RequestRefund {
            refund_id: RefundId::parse("rf-1").unwrap(),
            amount_minor: Some(1_000),
            reason: "goodwill".into(),
            reason_digest: None,
            at: t0(),
        })
        .then_expect_error(OrderError::DisputeOpen);
}

#[test]
fn a_lost_dispute_takes_the_withdrawn_amount_out_of_what_is_refundable() {
    OrderTest::with(())
        .given(vec![placed(), captured(), opened(6_000)])
        .when(record(dispute(DisputeStatus::Lost, 6_000, 6_000)))
        .then_expect_events(vec![OrderEvent::DisputeLost(closed(6_000, 6_000))]);
    let order = folded(&[
        placed(),
        captured(),
        opened(6_000),
        OrderEvent::DisputeLost(closed(6_000, 6_000)),
    ]);
    assert_eq!(order.refundable_minor(), 4_000);
    assert!(!order.dispute_open());
    // Decided: a redelivery of any state changes nothing.
    OrderTest::with(())
        .given(vec![
            placed(),
            captured(),
            opened(6_000),
            OrderEvent::DisputeLost(closed(6_000, 6_000)),
        ])
        .when(record(dispute(DisputeStatus::Won, 6_000, 0)))
        .then_expect_events(vec![]);
}

#[test]
fn a_dispute_first_seen_decided_is_opened_and_closed_in_one_step() {
    OrderTest::with(())
        .given(vec![placed(), captured()])
        .when(record(dispute(DisputeStatus::Won, 10_000, 0)))
        .then_expect_events(vec![
            opened(10_000),
            OrderEvent::DisputeWon(closed(10_000, 0)),
        ]);
}

#[test]
fn a_dispute_about_another_payment_or_more_than_is_left_is_a_discrepancy() {
    let other = DisputeFact {
        payment_key: "pi_other".into(),
        ..dispute(DisputeStatus::Open, 10_000, 10_000)
    };
    OrderTest::with(())
        .given(vec![placed(), captured()])
        .when(record(other))
        .then_expect_error(OrderError::ProviderDiscrepancy);
    OrderTest::with(())
        .given(vec![placed(), captured(), provider_refunded("re_1", 5_000)])
        .when(record(dispute(DisputeStatus::Open, 6_000, 6_000)))
        .then_expect_error(OrderError::ProviderDiscrepancy);
    let euros = DisputeFact {
        currency: Currency::EUR,
        ..dispute(DisputeStatus::Open, 10_000, 10_000)
    };
    OrderTest::with(())
        .given(vec![placed(), captured()])
        .when(record(euros))
        .then_expect_error(OrderError::ProviderDiscrepancy);
}

#[test]
fn a_lost_dispute_posts_the_withdrawal_and_the_fee_out_of_provider_clearing() {
    let events = [
        captured(),
        provider_refunded("re_1", 2_000),
        opened(8_000),
        OrderEvent::DisputeLost(closed(8_000, 8_000)),
    ];
    let mut trial = TrialBalance::default();
    let mut count = 0;
    for event in &events {
        for entry in post_order_event(event, None) {
            assert!(entry.is_balanced());
            trial.post(&entry);
            count += 1;
        }
    }
    assert_eq!(
        count, 4,
        "capture, provider refund, withdrawal, fee; opening posts nothing"
    );
    assert!(trial.is_balanced());
    let balance = |account| {
        let (debit, credit) = trial.rows[&(account, Currency::USD)];
        debit - credit
    };
    assert_eq!(
        balance(Account::ProviderClearing),
        10_000 - 2_000 - 8_000 - 1_500
    );
    assert_eq!(balance(Account::PayeePayable), 0);
    assert_eq!(balance(Account::DisputeFees), 1_500);
    let won = post_order_event(&OrderEvent::DisputeWon(closed(8_000, 0)), None);
    assert_eq!(won.len(), 1, "a won dispute posts only the fee");
    assert_eq!(won[0].postings()[0].account, Account::DisputeFees);
    assert_eq!(won[0].postings()[0].side, Side::Debit);
}
