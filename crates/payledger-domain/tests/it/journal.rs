//! Posting rules: every money event posts balanced entries, and the book balances.

use chrono::{TimeZone, Utc};
use payledger_domain::claim::{ClaimEvent, ClaimOutcome, ClaimResolved};
use payledger_domain::ids::{AdminId, OrderId, PayeeId, PaymentKey, RefundId};
use payledger_domain::journal::*;
use payledger_domain::money::{Currency, MAX_AMOUNT_MINOR};
use payledger_domain::order::*;
use payledger_domain::provider_failure::{FailureClass, ProviderFailure};
use payledger_domain::settlement::{
    StatementConfirmed, StatementEvent, StatementPaidOut, StatementTotals,
};
use proptest::prelude::*;

fn payee() -> PayeeId {
    PayeeId::parse("therapist-kim").unwrap()
}

fn facts(currency: Currency) -> OrderFacts {
    OrderFacts {
        payee_id: payee(),
        currency,
    }
}

fn captured(amount_minor: i64, currency: Currency) -> OrderEvent {
    OrderEvent::PaymentCaptured(PaymentCaptured {
        payment_key: PaymentKey::parse("pk_1").unwrap(),
        amount_minor,
        currency,
        payee_id: payee(),
        approved_at: Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap(),
        method: None,
        source: OutcomeSource::Request,
    })
}

fn refund_requested(amount_minor: i64, currency: Currency) -> OrderEvent {
    OrderEvent::RefundRequested(RefundRequested {
        refund_id: RefundId::parse("r1").unwrap(),
        amount_minor,
        currency,
        reason: "x".into(),
        idempotency_key: "k".into(),
        at: Utc::now(),
        customer_id: None,
        reason_digest: None,
    })
}

fn refund_completed(amount_minor: i64, currency: Currency) -> OrderEvent {
    OrderEvent::RefundCompleted(RefundCompleted {
        refund_id: RefundId::parse("r1").unwrap(),
        amount_minor,
        currency,
        payee_id: payee(),
        transaction_key: "tx".into(),
        source: OutcomeSource::Request,
        at: Utc::now(),
    })
}

/// `currency: None` is a schema-1 `RefundFailed`, written before the event carried it.
fn refund_failed(amount_minor: i64, currency: Option<Currency>) -> OrderEvent {
    OrderEvent::RefundFailed(RefundFailed {
        refund_id: RefundId::parse("r1").unwrap(),
        amount_minor,
        currency,
        failure: ProviderFailure {
            class: FailureClass::ProviderError,
            provider_code: "PROVIDER_ERROR".into(),
            provider_message: "down".into(),
        },
        source: OutcomeSource::Request,
        at: Utc::now(),
    })
}

fn resolved(compensation_minor: i64) -> ClaimEvent {
    ClaimEvent::ClaimResolved(ClaimResolved {
        round: 1,
        order_id: OrderId::parse("order-0001").unwrap(),
        payee_id: payee(),
        currency: Currency::KRW,
        admin_id: AdminId::parse("admin").unwrap(),
        outcome: ClaimOutcome::RespondentWins,
        reason: "r".into(),
        refund_minor: 0,
        additional_refund_minor: 0,
        provider_payout_minor: 1,
        coupon: None,
        provider_compensation_minor: compensation_minor,
        penalties: vec![],
        seconds_to_resolve: 1,
        at: Utc::now(),
        customer_id: None,
    })
}

fn confirmed(fee_minor: i64, net_payable_minor: i64) -> StatementEvent {
    StatementEvent::StatementConfirmed(StatementConfirmed {
        statement_id: "s".into(),
        payee_id: payee(),
        currency: Currency::KRW,
        line_count: 1,
        totals: StatementTotals {
            platform_fee_minor: fee_minor,
            net_payable_minor,
            ..StatementTotals::default()
        },
        at: Utc::now(),
        sessions_held_for_notes: 0,
        held_for_notes_minor: 0,
    })
}

fn paid_out(amount_minor: i64) -> StatementEvent {
    StatementEvent::StatementPaidOut(StatementPaidOut {
        statement_id: "s".into(),
        payee_id: payee(),
        currency: Currency::KRW,
        reference: "bank".into(),
        amount_minor,
        at: Utc::now(),
    })
}

fn lines(entries: &[JournalEntry]) -> Vec<(Account, Side, i64)> {
    entries
        .iter()
        .flat_map(|e| {
            e.postings()
                .iter()
                .map(|p| (p.account, p.side, p.amount_minor))
        })
        .collect()
}

#[test]
fn a_capture_moves_money_into_clearing_owed_to_the_payee() {
    let entries = post_order_event(&captured(80_000, Currency::KRW), None);
    assert_eq!(
        lines(&entries),
        vec![
            (Account::ProviderClearing, Side::Debit, 80_000),
            (Account::PayeePayable, Side::Credit, 80_000)
        ]
    );
    assert_eq!(entries[0].postings()[1].payee_id, Some(payee()));
}

#[test]
fn a_refund_is_owed_to_the_customer_when_asked_and_leaves_clearing_when_done() {
    let f = facts(Currency::KRW);
    assert_eq!(
        lines(&post_order_event(
            &refund_requested(3_333, Currency::KRW),
            Some(&f)
        )),
        vec![
            (Account::PayeePayable, Side::Debit, 3_333),
            (Account::CustomerRefunds, Side::Credit, 3_333)
        ]
    );
    assert_eq!(
        lines(&post_order_event(
            &refund_completed(3_333, Currency::KRW),
            Some(&f)
        )),
        vec![
            (Account::CustomerRefunds, Side::Debit, 3_333),
            (Account::ProviderClearing, Side::Credit, 3_333)
        ]
    );
    // A failed refund undoes its request in the currency it carries (schema 2)…
    let undone = post_order_event(
        &refund_failed(3_333, Some(Currency::USD)),
        Some(&facts(Currency::USD)),
    );
    assert_eq!(undone[0].currency, Currency::USD);
    // …or, written before it carried one (schema 1), in the order's.
    let old = post_order_event(&refund_failed(3_333, None), Some(&facts(Currency::USD)));
    assert_eq!(old, undone);
    assert_eq!(
        lines(&undone),
        vec![
            (Account::CustomerRefunds, Side::Debit, 3_333),
            (Account::PayeePayable, Side::Credit, 3_333)
        ]
    );
}

#[test]
fn a_schema_1_refund_failed_decodes_without_a_currency_and_schema_2_carries_it() {
    use payledger_domain::codec;
    assert_eq!(codec::schema_version("RefundFailed"), 2);
    assert_eq!(codec::schema_version("RefundCompleted"), 1);
    let event = refund_failed(10, Some(Currency::KRW));
    let (event_type, payload) = codec::encode(&event).unwrap();
    assert_eq!(payload["currency"], "KRW");
    let new: OrderEvent = codec::decode(&event_type, &payload).unwrap();
    assert_eq!(new, event);
    let mut v1 = payload.clone();
    v1.as_object_mut().unwrap().remove("currency");
    let old: OrderEvent = codec::decode(&event_type, &v1).unwrap();
    let OrderEvent::RefundFailed(mut expected) = event else {
        unreachable!()
    };
    expected.currency = None;
    assert_eq!(old, OrderEvent::RefundFailed(expected));
}

#[test]
fn events_that_move_no_money_post_nothing() {
    let expired = OrderEvent::OrderExpired(OrderExpired { at: Utc::now() });
    assert!(post_order_event(&expired, None).is_empty());
    assert!(post_claim_event(&resolved(0)).is_empty());
    assert!(post_statement_event(&confirmed(0, 0)).is_empty());
}

#[test]
fn a_statement_charges_its_fee_makes_its_net_due_and_the_payout_leaves_the_bank() {
    assert_eq!(
        lines(&post_statement_event(&confirmed(8_000, 72_001))),
        vec![
            (Account::PayeePayable, Side::Debit, 8_000),
            (Account::PlatformFeeRevenue, Side::Credit, 8_000),
            (Account::PayeePayable, Side::Debit, 72_001),
            (Account::Payouts, Side::Credit, 72_001),
        ]
    );
    // A fee given back posts the other way round, never a negative amount.
    assert_eq!(
        lines(&post_statement_event(&confirmed(-500, 0))),
        vec![
            (Account::PlatformFeeRevenue, Side::Debit, 500),
            (Account::PayeePayable, Side::Credit, 500)
        ]
    );
    assert_eq!(
        lines(&post_statement_event(&paid_out(72_001))),
        vec![
            (Account::Payouts, Side::Debit, 72_001),
            (Account::Bank, Side::Credit, 72_001)
        ]
    );
    assert_eq!(
        lines(&post_claim_event(&resolved(5_000))),
        vec![
            (Account::CompensationExpense, Side::Debit, 5_000),
            (Account::PayeePayable, Side::Credit, 5_000)
        ]
    );
}

#[test]
fn an_unbalanced_or_non_positive_entry_cannot_exist() {
    let p = |side, amount_minor| Posting {
        account: Account::Payouts,
        side,
        amount_minor,
        payee_id: None,
    };
    assert!(matches!(
        JournalEntry::new(
            Currency::KRW,
            "x",
            vec![p(Side::Debit, 10), p(Side::Credit, 9)]
        ),
        Err(JournalError::Unbalanced {
            debits_minor: 10,
            credits_minor: 9,
            ..
        })
    ));
    assert!(JournalEntry::new(
        Currency::KRW,
        "x",
        vec![p(Side::Debit, 0), p(Side::Credit, 0)]
    )
    .is_err());
    assert!(JournalEntry::new(Currency::KRW, "x", vec![]).is_err());
}

#[test]
fn a_whole_booking_lifecycle_leaves_clearing_equal_to_what_is_still_held() {
    let f = facts(Currency::KRW);
    let mut book = TrialBalance::default();
    let order_events = [
        captured(80_001, Currency::KRW),
        refund_requested(40_000, Currency::KRW),
        refund_completed(40_000, Currency::KRW),
    ];
    for event in &order_events {
        for entry in post_order_event(event, Some(&f)) {
            book.post(&entry);
        }
    }
    for entry in post_statement_event(&confirmed(4_000, 36_001)) {
        book.post(&entry);
    }
    for entry in post_statement_event(&paid_out(36_001)) {
        book.post(&entry);
    }
    assert!(book.is_balanced());
    let balance = |a| book.rows.get(&(a, Currency::KRW)).map_or(0, |(d, c)| d - c);
    // The provider still holds what was captured and not refunded (nothing is settled yet);
    // the payee was paid from the bank.
    assert_eq!(balance(Account::ProviderClearing), 40_001);
    assert_eq!(balance(Account::Bank), -36_001);
    assert_eq!(balance(Account::PlatformFeeRevenue), -4_000);
    assert_eq!(balance(Account::PayeePayable), 0);
    assert_eq!(balance(Account::CustomerRefunds), 0);
    assert_eq!(balance(Account::Payouts), 0);
}

fn arbitrary_event() -> impl Strategy<Value = (u8, i64, usize)> {
    (0u8..8, 1i64..=MAX_AMOUNT_MINOR, 0usize..Currency::ALL.len())
}

proptest! {
    #[test]
    fn every_entry_balances_and_so_does_the_book(events in proptest::collection::vec(arbitrary_event(), 0..60)) {
        let mut book = TrialBalance::default();
        for (kind, amount, currency) in events {
            let currency = Currency::ALL[currency];
            let f = facts(currency);
            let entries = match kind {
                0 => post_order_event(&captured(amount, currency), Some(&f)),
                1 => post_order_event(&refund_requested(amount, currency), Some(&f)),
                2 => post_order_event(&refund_completed(amount, currency), Some(&f)),
                3 => post_order_event(&refund_failed(amount, Some(currency)), Some(&f)),
                4 => post_claim_event(&resolved(amount)),
                5 => post_statement_event(&confirmed(amount, amount / 3)),
                6 => post_statement_event(&confirmed(-amount, 0)),
                _ => post_statement_event(&paid_out(amount)),
            };
            for entry in &entries {
                prop_assert!(entry.is_balanced());
                prop_assert!(entry.postings().iter().all(|p| p.amount_minor > 0));
                book.post(entry);
            }
        }
        prop_assert!(book.is_balanced());
    }
}

#[test]
fn a_subscription_charge_is_the_platforms_revenue() {
    use payledger_domain::subscription::{ChargeSucceeded, SubscriptionEvent};
    let charged = SubscriptionEvent::ChargeSucceeded(ChargeSucceeded {
        cycle: 1,
        attempt: 1,
        payment_key: PaymentKey::parse("pk_sub").unwrap(),
        provider_order_id: "sub-1-cycle-1".into(),
        amount_minor: 9_900,
        currency: Currency::KRW,
        approved_at: Utc::now(),
        period_start: Utc::now(),
        period_end: Utc::now(),
        source: OutcomeSource::Request,
        at: Utc::now(),
        provider_fee_minor: 0,
    });
    let entries = post_subscription_event(&charged);
    assert_eq!(
        lines(&entries),
        vec![
            (Account::ProviderClearing, Side::Debit, 9_900),
            (Account::SubscriptionRevenue, Side::Credit, 9_900)
        ]
    );
    assert_eq!(
        Account::parse("subscription_revenue"),
        Some(Account::SubscriptionRevenue)
    );
    assert_eq!(Account::parse("cash"), None);
}

#[test]
fn a_merchant_of_record_reversal_posts_the_fee_it_gives_back_into_clearing() {
    use payledger_domain::subscription::{
        ChargeReversalKind, ProviderChargeReversed, SubscriptionEvent,
    };
    let reversed = |provider_fee_returned_minor| {
        SubscriptionEvent::ProviderChargeReversed(ProviderChargeReversed {
            payment_key: PaymentKey::parse("txn_01paddle").unwrap(),
            reversal_id: "adj_01refund".into(),
            kind: ChargeReversalKind::Refund,
            amount_minor: 990,
            currency: Currency::USD,
            provider_fee_returned_minor,
            at: Utc::now(),
        })
    };
    // Paddle gave its 0.99 fee back with the refund: it holds that for the platform again.
    let entries = post_subscription_event(&reversed(99));
    assert!(entries.iter().all(|entry| entry.is_balanced()));
    assert_eq!(
        lines(&entries),
        vec![
            (Account::SubscriptionRevenue, Side::Debit, 990),
            (Account::ProviderClearing, Side::Credit, 990),
            (Account::ProviderClearing, Side::Debit, 99),
            (Account::ProviderFees, Side::Credit, 99),
        ]
    );
    // It kept its fee: only the refund posts.
    assert_eq!(
        lines(&post_subscription_event(&reversed(0))),
        vec![
            (Account::SubscriptionRevenue, Side::Debit, 990),
            (Account::ProviderClearing, Side::Credit, 990),
        ]
    );
}

#[test]
fn a_merchant_of_record_charge_posts_the_providers_fee_out_of_clearing() {
    use payledger_domain::subscription::{ChargeSucceeded, SubscriptionEvent};
    // Paddle billed 9.90 USD and kept 0.99 as the merchant of record.
    let charged = SubscriptionEvent::ChargeSucceeded(ChargeSucceeded {
        cycle: 1,
        attempt: 0,
        payment_key: PaymentKey::parse("txn_01paddle").unwrap(),
        provider_order_id: "txn_01paddle".into(),
        amount_minor: 990,
        currency: Currency::USD,
        approved_at: Utc::now(),
        period_start: Utc::now(),
        period_end: Utc::now(),
        source: OutcomeSource::Reconciler,
        at: Utc::now(),
        provider_fee_minor: 99,
    });
    let entries = post_subscription_event(&charged);
    assert!(entries.iter().all(|entry| entry.is_balanced()));
    assert_eq!(
        lines(&entries),
        vec![
            (Account::ProviderClearing, Side::Debit, 990),
            (Account::SubscriptionRevenue, Side::Credit, 990),
            (Account::ProviderFees, Side::Debit, 99),
            (Account::ProviderClearing, Side::Credit, 99),
        ]
    );
    let mut book = TrialBalance::default();
    for entry in &entries {
        book.post(entry);
    }
    assert!(book.is_balanced());
}
