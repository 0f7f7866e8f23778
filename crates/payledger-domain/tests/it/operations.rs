//! Operations from the runbook, specified as given / when / then: kill switches, outside
//! payments claimed once, manual payments and enrollment cancellation on the order.

use chrono::{DateTime, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use payledger_domain::ids::{CustomerId, OrderId, PayeeId, PaymentKey};
use payledger_domain::money::{Currency, Money};
use payledger_domain::operations::*;
use payledger_domain::order::*;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).unwrap()
}

fn payee(id: &str) -> PayeeId {
    PayeeId::parse(id).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Kill switches
// ---------------------------------------------------------------------------------------------

#[test]
fn suspending_payments_blocks_every_sale_until_resumed() {
    TestFramework::<KillSwitches>::with(())
        .given_no_previous_events()
        .when(SwitchCommand::SuspendPayments {
            reason: "amount mismatch surge".into(),
            at: t0(),
        })
        .then_expect_events(vec![SwitchEvent::PaymentsSuspended(Suspension {
            reason: "amount mismatch surge".into(),
            at: t0(),
        })]);

    let mut switches = KillSwitches::default();
    cqrs_es::Aggregate::apply(
        &mut switches,
        SwitchEvent::PaymentsSuspended(Suspension {
            reason: "surge".into(),
            at: t0(),
        }),
    );
    assert_eq!(
        switches.check_sale(&payee("any")),
        Err(SalesBlock::AllPayments {
            reason: "surge".into()
        })
    );
    cqrs_es::Aggregate::apply(
        &mut switches,
        SwitchEvent::PaymentsResumed(Resumption { at: t0() }),
    );
    assert_eq!(switches.check_sale(&payee("any")), Ok(()));
}

#[test]
fn a_payee_switch_blocks_that_payee_only() {
    let mut switches = KillSwitches::default();
    cqrs_es::Aggregate::apply(
        &mut switches,
        SwitchEvent::PayeeSalesSuspended(PayeeSuspension {
            payee_id: payee("studio_a"),
            reason: "price bug".into(),
            at: t0(),
        }),
    );
    assert!(switches.check_sale(&payee("studio_a")).is_err());
    assert_eq!(switches.check_sale(&payee("studio_b")), Ok(()));
}

#[test]
fn flipping_a_switch_to_where_it_stands_records_nothing() {
    let suspended = SwitchEvent::PayeeSalesSuspended(PayeeSuspension {
        payee_id: payee("studio_a"),
        reason: "price bug".into(),
        at: t0(),
    });
    TestFramework::<KillSwitches>::with(())
        .given(vec![suspended])
        .when(SwitchCommand::SuspendPayee {
            payee_id: payee("studio_a"),
            reason: "again".into(),
            at: t0(),
        })
        .then_expect_events(vec![]);
    TestFramework::<KillSwitches>::with(())
        .given_no_previous_events()
        .when(SwitchCommand::ResumePayments { at: t0() })
        .then_expect_events(vec![]);
}

#[test]
fn a_switch_needs_a_reason() {
    TestFramework::<KillSwitches>::with(())
        .given_no_previous_events()
        .when(SwitchCommand::SuspendPayments {
            reason: String::new(),
            at: t0(),
        })
        .then_expect_error(SwitchError::InvalidReason);
}

// ---------------------------------------------------------------------------------------------
// Outside payments
// ---------------------------------------------------------------------------------------------

fn claim(order: &str) -> ExternalPaymentRecorded {
    ExternalPaymentRecorded {
        provider: "bank_transfer".into(),
        provider_transaction_id: PaymentKey::parse("tx-77").unwrap(),
        order_id: OrderId::parse(order).unwrap(),
        amount: Money::new(10_000, Currency::KRW).unwrap(),
        reason: "paid by transfer".into(),
        at: t0(),
    }
}

#[test]
fn a_provider_transaction_pays_one_order_only() {
    TestFramework::<ProviderTransaction>::with(())
        .given_no_previous_events()
        .when(ProviderTransactionCommand::Claim(claim("order-0001")))
        .then_expect_events(vec![ProviderTransactionEvent::ExternalPaymentRecorded(
            claim("order-0001"),
        )]);
    TestFramework::<ProviderTransaction>::with(())
        .given(vec![ProviderTransactionEvent::ExternalPaymentRecorded(
            claim("order-0001"),
        )])
        .when(ProviderTransactionCommand::Claim(claim("order-0002")))
        .then_expect_error(ProviderTransactionError::AlreadyRecorded(
            OrderId::parse("order-0001").unwrap(),
        ));
    // The same claim again (a retry after a crash) goes on without a second event.
    TestFramework::<ProviderTransaction>::with(())
        .given(vec![ProviderTransactionEvent::ExternalPaymentRecorded(
            claim("order-0001"),
        )])
        .when(ProviderTransactionCommand::Claim(claim("order-0001")))
        .then_expect_events(vec![]);
}

#[test]
fn provider_names_fit_a_stream_id() {
    let mut bad = claim("order-0001");
    bad.provider = "Bank Transfer".into();
    TestFramework::<ProviderTransaction>::with(())
        .given_no_previous_events()
        .when(ProviderTransactionCommand::Claim(bad))
        .then_expect_error(ProviderTransactionError::InvalidProvider);
}

// ---------------------------------------------------------------------------------------------
// The order's manual commands
// ---------------------------------------------------------------------------------------------

fn placed() -> OrderEvent {
    OrderEvent::OrderPlaced(PlaceOrder {
        order_id: OrderId::parse("order-0001").unwrap(),
        amount: Money::new(10_000, Currency::KRW).unwrap(),
        customer_id: CustomerId::parse("cust_1").unwrap(),
        payee_id: payee("payee_1"),
        order_name: "Yoga class".into(),
        provider: "sandbox".into(),
        service_starts_at: None,
        placed_at: t0(),
    })
}

fn manual(amount_minor: i64) -> OrderCommand {
    OrderCommand::RecordManualPayment {
        provider_transaction_id: PaymentKey::parse("tx-77").unwrap(),
        amount_minor,
        method: Some("transfer".into()),
        at: t0(),
    }
}

fn manual_capture() -> OrderEvent {
    OrderEvent::PaymentCaptured(PaymentCaptured {
        payment_key: PaymentKey::parse("tx-77").unwrap(),
        amount_minor: 10_000,
        currency: Currency::KRW,
        payee_id: payee("payee_1"),
        approved_at: t0(),
        method: Some("transfer".into()),
        source: OutcomeSource::Manual,
    })
}

#[test]
fn a_manual_payment_captures_an_unpaid_order_for_its_exact_amount() {
    TestFramework::<Order>::with(())
        .given(vec![placed()])
        .when(manual(10_000))
        .then_expect_events(vec![manual_capture()]);
    TestFramework::<Order>::with(())
        .given(vec![placed()])
        .when(manual(9_999))
        .then_expect_error(OrderError::ManualPaymentAmountMismatch {
            recorded_minor: 9_999,
            expected_minor: 10_000,
        });
    // Recorded again: nothing new.
    TestFramework::<Order>::with(())
        .given(vec![placed(), manual_capture()])
        .when(manual(10_000))
        .then_expect_events(vec![]);
}

#[test]
fn no_manual_payment_while_a_confirmation_may_be_charging() {
    let started = OrderEvent::PaymentConfirmationStarted(ConfirmationStarted {
        payment_key: PaymentKey::parse("pk_1").unwrap(),
        amount_minor: 10_000,
        attempt: 1,
        idempotency_key: "order-order-0001:confirm:1".into(),
        at: t0(),
    });
    TestFramework::<Order>::with(())
        .given(vec![placed(), started])
        .when(manual(10_000))
        .then_expect_error(OrderError::ManualPaymentNotAllowed);
}

#[test]
fn a_cancelled_enrollment_can_no_longer_be_paid_or_fulfilled() {
    let cancelled = OrderEvent::EnrollmentCancelled(EnrollmentCancelled {
        reason: "wrong course".into(),
        was_paid: false,
        at: t0(),
        customer_id: Some(CustomerId::parse("cust_1").unwrap()),
    });
    TestFramework::<Order>::with(())
        .given(vec![placed()])
        .when(OrderCommand::CancelEnrollment {
            reason: "wrong course".into(),
            at: t0(),
        })
        .then_expect_events(vec![cancelled.clone()]);
    TestFramework::<Order>::with(())
        .given(vec![placed(), cancelled.clone()])
        .when(OrderCommand::StartConfirmation {
            payment_key: PaymentKey::parse("pk_1").unwrap(),
            claimed_amount_minor: 10_000,
            at: t0(),
        })
        .then_expect_error(OrderError::EnrollmentAlreadyCancelled);
    TestFramework::<Order>::with(())
        .given(vec![placed(), cancelled.clone()])
        .when(manual(10_000))
        .then_expect_error(OrderError::ManualPaymentNotAllowed);
    TestFramework::<Order>::with(())
        .given(vec![placed(), manual_capture(), cancelled])
        .when(OrderCommand::RecordFulfilment { at: t0() })
        .then_expect_error(OrderError::EnrollmentAlreadyCancelled);
}
