//! Subscriptions a provider bills (Paddle) in the subscription aggregate's one state model:
//! given (history) / when (a confirmed provider fact) / then (the same events payledger's own
//! billing records), and the membership each state gives.

use chrono::{DateTime, Duration, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use cqrs_es::Aggregate;
use payledger_domain::billing::{BillingInterval, BillingKeyId, PlanId, SubscriptionId};
use payledger_domain::ids::{CustomerId, PaymentKey};
use payledger_domain::money::{Currency, Money};
use payledger_domain::order::OutcomeSource;
use payledger_domain::provider_billed::{ProviderBilling, ProviderSubscriptionFact};
use payledger_domain::provider_failure::{FailureClass, ProviderFailure};
use payledger_domain::subscription::*;

type SubscriptionTest = TestFramework<Subscription>;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 31, 9, 0, 0).unwrap()
}

fn month(n: u32) -> DateTime<Utc> {
    t0().checked_add_months(chrono::Months::new(n)).unwrap()
}

fn amount() -> Money {
    Money::new(990, Currency::USD).unwrap()
}

fn started() -> SubscriptionEvent {
    SubscriptionEvent::SubscriptionStarted(SubscriptionStarted {
        subscription_id: SubscriptionId::parse("sub_01paddle").unwrap(),
        customer_id: CustomerId::parse("cust_1").unwrap(),
        plan_id: PlanId::parse("basic").unwrap(),
        membership_level: 1,
        amount: amount(),
        interval: BillingInterval::monthly(),
        billing_key_id: BillingKeyId::parse("sub_01paddle").unwrap(),
        anchor: t0(),
        order_name: "Basic monthly".into(),
        at: t0(),
        billed_by: Some(ProviderBilling {
            provider: "paddle".into(),
            provider_subscription_id: "sub_01paddle".into(),
            price_id: "pri_basic".into(),
        }),
    })
}

fn paid(cycle: u32, txn: &str) -> ProviderSubscriptionFact {
    ProviderSubscriptionFact::Paid {
        payment_key: PaymentKey::parse(txn).unwrap(),
        amount: amount(),
        provider_fee_minor: 99,
        period_start: month(cycle - 1),
        period_end: month(cycle),
        approved_at: month(cycle - 1),
        at: month(cycle - 1),
    }
}

fn succeeded(cycle: u32, txn: &str) -> SubscriptionEvent {
    SubscriptionEvent::ChargeSucceeded(ChargeSucceeded {
        cycle,
        attempt: 0,
        payment_key: PaymentKey::parse(txn).unwrap(),
        provider_order_id: txn.into(),
        amount_minor: 990,
        currency: Currency::USD,
        approved_at: month(cycle - 1),
        period_start: month(cycle - 1),
        period_end: month(cycle),
        source: OutcomeSource::Reconciler,
        at: month(cycle - 1),
        provider_fee_minor: 99,
    })
}

fn record(fact: ProviderSubscriptionFact) -> SubscriptionCommand {
    SubscriptionCommand::RecordProviderFact(fact)
}

fn state(history: Vec<SubscriptionEvent>) -> Subscription {
    let mut state = Subscription::default();
    for event in history {
        state.apply(event);
    }
    state
}

#[test]
fn the_checkouts_payment_is_cycle_one_and_gives_the_plans_level() {
    SubscriptionTest::with(())
        .given(vec![started()])
        .when(record(paid(1, "txn_01first")))
        .then_expect_events(vec![succeeded(1, "txn_01first")]);
    let subscription = state(vec![started(), succeeded(1, "txn_01first")]);
    assert_eq!(subscription.membership_level(t0() + Duration::days(3)), 1);
    assert_eq!(subscription.paid_through, Some(month(1)));
}

#[test]
fn no_membership_before_paddle_is_paid_and_payledger_never_charges_it() {
    let subscription = state(vec![started()]);
    assert_eq!(subscription.membership_level(t0()), 0);
    assert_eq!(subscription.next_due(), None);
    SubscriptionTest::with(())
        .given(vec![started(), succeeded(1, "txn_01first")])
        .when(SubscriptionCommand::StartChargeAttempt {
            trigger: AttemptTrigger::Admin,
            at: month(1),
        })
        .then_expect_error(SubscriptionError::ProviderBilled);
}

#[test]
fn a_replayed_payment_records_nothing() {
    SubscriptionTest::with(())
        .given(vec![started(), succeeded(1, "txn_01first")])
        .when(record(paid(1, "txn_01first")))
        .then_expect_events(vec![]);
}

#[test]
fn a_renewal_is_the_next_cycle_and_a_period_or_amount_that_differs_is_refused() {
    SubscriptionTest::with(())
        .given(vec![started(), succeeded(1, "txn_01first")])
        .when(record(paid(2, "txn_01second")))
        .then_expect_events(vec![succeeded(2, "txn_01second")]);
    // Cycle 3 reported while the ledger waits for cycle 2: not smoothed over.
    let result = SubscriptionTest::with(())
        .given(vec![started(), succeeded(1, "txn_01first")])
        .when(record(paid(3, "txn_01third")))
        .inspect_result();
    assert!(matches!(
        result,
        Err(SubscriptionError::ProviderFactDiffers(_))
    ));
    let other_amount = ProviderSubscriptionFact::Paid {
        payment_key: PaymentKey::parse("txn_01second").unwrap(),
        amount: Money::new(1, Currency::USD).unwrap(),
        provider_fee_minor: 0,
        period_start: month(1),
        period_end: month(2),
        approved_at: month(1),
        at: month(1),
    };
    let result = SubscriptionTest::with(())
        .given(vec![started(), succeeded(1, "txn_01first")])
        .when(record(other_amount))
        .inspect_result();
    assert!(matches!(
        result,
        Err(SubscriptionError::ProviderFactDiffers(_))
    ));
    // A fee above what was paid is not a fee: refused.
    let fee_above = ProviderSubscriptionFact::Paid {
        payment_key: PaymentKey::parse("txn_01second").unwrap(),
        amount: amount(),
        provider_fee_minor: 991,
        period_start: month(1),
        period_end: month(2),
        approved_at: month(1),
        at: month(1),
    };
    let result = SubscriptionTest::with(())
        .given(vec![started(), succeeded(1, "txn_01first")])
        .when(record(fee_above))
        .inspect_result();
    assert!(matches!(
        result,
        Err(SubscriptionError::ProviderFactDiffers(_))
    ));
}

#[test]
fn a_failed_renewal_is_past_due_with_benefits_kept_and_a_recovery_makes_it_active() {
    let past_due = SubscriptionEvent::ChargeFailed(ChargeFailed {
        cycle: 2,
        attempt: 0,
        failure: ProviderFailure {
            class: FailureClass::SoftDecline,
            provider_code: "declined".into(),
            provider_message: "the provider's renewal failed; it retries".into(),
        },
        handling: FailureHandling::ProviderDunning,
        source: OutcomeSource::Reconciler,
        at: month(1),
    });
    SubscriptionTest::with(())
        .given(vec![started(), succeeded(1, "txn_01first")])
        .when(record(ProviderSubscriptionFact::PastDue {
            provider_code: "declined".into(),
            at: month(1),
        }))
        .then_expect_events(vec![past_due.clone()]);
    let history = vec![started(), succeeded(1, "txn_01first"), past_due.clone()];
    let subscription = state(history.clone());
    assert_eq!(subscription.status, SubscriptionStatus::PastDue);
    assert_eq!(
        subscription.membership_level(month(1) + Duration::days(2)),
        1
    );
    assert_eq!(
        subscription.next_due(),
        None,
        "Paddle retries, not payledger"
    );
    SubscriptionTest::with(())
        .given(history.clone())
        .when(record(paid(2, "txn_01second")))
        .then_expect_events(vec![succeeded(2, "txn_01second")]);
    let mut recovered = history;
    recovered.push(succeeded(2, "txn_01second"));
    assert_eq!(state(recovered).status, SubscriptionStatus::Active);
}

#[test]
fn a_scheduled_cancel_keeps_benefits_until_the_period_ends_then_paddles_cancel_ends_it() {
    let scheduled = SubscriptionEvent::CancellationScheduled(CancellationScheduled {
        effective_at: month(1),
        at: t0() + Duration::days(10),
    });
    SubscriptionTest::with(())
        .given(vec![started(), succeeded(1, "txn_01first")])
        .when(record(ProviderSubscriptionFact::CancelScheduled {
            effective_at: Some(month(1)),
            at: t0() + Duration::days(10),
        }))
        .then_expect_events(vec![scheduled.clone()]);
    let history = vec![started(), succeeded(1, "txn_01first"), scheduled];
    let subscription = state(history.clone());
    assert_eq!(
        subscription.membership_level(month(1) - Duration::seconds(1)),
        1
    );
    assert_eq!(subscription.membership_level(month(1)), 0);
    let ended = SubscriptionEvent::SubscriptionEnded(SubscriptionEnded {
        reason: EndReason::CanceledByProvider,
        at: month(1),
    });
    SubscriptionTest::with(())
        .given(history.clone())
        .when(record(ProviderSubscriptionFact::Canceled { at: month(1) }))
        .then_expect_events(vec![ended.clone()]);
    let mut done = history;
    done.push(ended);
    SubscriptionTest::with(())
        .given(done)
        .when(record(ProviderSubscriptionFact::Canceled { at: month(1) }))
        .then_expect_events(vec![]);
}

#[test]
fn a_fact_about_a_subscription_payledger_bills_is_refused() {
    let own = SubscriptionEvent::SubscriptionStarted(SubscriptionStarted {
        billed_by: None,
        ..match started() {
            SubscriptionEvent::SubscriptionStarted(s) => s,
            _ => unreachable!(),
        }
    });
    SubscriptionTest::with(())
        .given(vec![own])
        .when(record(paid(1, "txn_01first")))
        .then_expect_error(SubscriptionError::NotProviderBilled);
}

#[test]
fn payledger_cannot_cancel_or_resume_on_its_own_what_the_provider_bills() {
    for command in [
        SubscriptionCommand::CancelAtPeriodEnd { at: month(0) },
        SubscriptionCommand::Resume { at: month(0) },
        SubscriptionCommand::EndNow { at: month(0) },
    ] {
        SubscriptionTest::with(())
            .given(vec![started(), succeeded(1, "txn_01first")])
            .when(command)
            .then_expect_error(SubscriptionError::ProviderBilled);
    }
}

fn reversal(txn: &str, id: &str, amount_minor: i64) -> ProviderSubscriptionFact {
    ProviderSubscriptionFact::ChargeReversed {
        payment_key: PaymentKey::parse(txn).unwrap(),
        reversal_id: id.into(),
        kind: ChargeReversalKind::Refund,
        amount: Money::new(amount_minor, Currency::USD).unwrap(),
        provider_fee_returned_minor: 0,
        at: month(1),
    }
}

fn reversed(txn: &str, id: &str, amount_minor: i64) -> SubscriptionEvent {
    SubscriptionEvent::ProviderChargeReversed(ProviderChargeReversed {
        payment_key: PaymentKey::parse(txn).unwrap(),
        reversal_id: id.into(),
        kind: ChargeReversalKind::Refund,
        amount_minor,
        currency: Currency::USD,
        provider_fee_returned_minor: 0,
        at: month(1),
    })
}

#[test]
fn a_provider_refund_of_a_paid_period_is_recorded_once_within_what_was_paid() {
    SubscriptionTest::with(())
        .given(vec![started(), succeeded(1, "txn_01first")])
        .when(record(reversal("txn_01first", "adj_01a", 400)))
        .then_expect_events(vec![reversed("txn_01first", "adj_01a", 400)]);
    // The same adjustment again: nothing.
    SubscriptionTest::with(())
        .given(vec![
            started(),
            succeeded(1, "txn_01first"),
            reversed("txn_01first", "adj_01a", 400),
        ])
        .when(record(reversal("txn_01first", "adj_01a", 400)))
        .then_expect_events(vec![]);
    // More than is left of the payment, or a payment that is not a paid period: refused.
    for (fact, given) in [
        (
            reversal("txn_01first", "adj_01b", 591),
            vec![
                started(),
                succeeded(1, "txn_01first"),
                reversed("txn_01first", "adj_01a", 400),
            ],
        ),
        (
            reversal("txn_01other", "adj_01c", 100),
            vec![started(), succeeded(1, "txn_01first")],
        ),
    ] {
        let result = SubscriptionTest::with(())
            .given(given)
            .when(record(fact))
            .inspect_result();
        assert!(matches!(
            result,
            Err(SubscriptionError::ProviderFactDiffers(_))
        ));
    }
}

#[test]
fn taking_back_the_current_periods_payment_downgrades_at_once_until_a_period_is_paid_again() {
    let during = month(0) + Duration::days(10);
    // A partial refund leaves the period paid: benefits stay.
    let partial = state(vec![
        started(),
        succeeded(1, "txn_01first"),
        reversed("txn_01first", "adj_01a", 400),
    ]);
    assert_eq!(partial.membership_level(during), 1);
    // The rest refunded too: the period is no longer paid for.
    let full = state(vec![
        started(),
        succeeded(1, "txn_01first"),
        reversed("txn_01first", "adj_01a", 400),
        reversed("txn_01first", "adj_01b", 590),
    ]);
    assert_eq!(full.membership_level(during), 0);
    // A chargeback, of any amount, downgrades too.
    let charged_back = state(vec![
        started(),
        succeeded(1, "txn_01first"),
        SubscriptionEvent::ProviderChargeReversed(ProviderChargeReversed {
            payment_key: PaymentKey::parse("txn_01first").unwrap(),
            reversal_id: "adj_01cb".into(),
            kind: ChargeReversalKind::Chargeback,
            amount_minor: 990,
            currency: Currency::USD,
            provider_fee_returned_minor: 0,
            at: during,
        }),
    ]);
    assert_eq!(charged_back.membership_level(during), 0);
    // A refund of an earlier period leaves the current, paid one alone.
    let earlier = state(vec![
        started(),
        succeeded(1, "txn_01first"),
        succeeded(2, "txn_01second"),
        reversed("txn_01first", "adj_01a", 990),
    ]);
    assert_eq!(earlier.membership_level(month(1) + Duration::days(3)), 1);
    // Paid again: benefits back.
    let mut renewed = full.clone();
    renewed.apply(succeeded(2, "txn_01second"));
    assert_eq!(renewed.membership_level(month(1) + Duration::days(3)), 1);
}
