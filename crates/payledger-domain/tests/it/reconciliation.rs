//! Reconciliation: how a provider settlement line is judged against the order, how it posts to
//! the journal (always balanced, clearing closed for a clean line), and the record's rules
//! (a line once, a flag resolved once, with a note).

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use cqrs_es::Aggregate;
use payledger_domain::ids::{CustomerId, OrderId, PayeeId, PaymentKey, RefundId};
use payledger_domain::journal::{post_reconciliation_event, Account, Side, TrialBalance};
use payledger_domain::money::{Currency, Money, MAX_AMOUNT_MINOR};
use payledger_domain::order::*;
use payledger_domain::reconciliation::*;
use proptest::prelude::*;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).unwrap()
}

fn order_id() -> OrderId {
    OrderId::parse("order-0001").unwrap()
}

/// A toss order captured for 50 000 KRW, with a completed refund of `refunded`.
fn order(refunded: i64) -> Order {
    let mut order = Order::default();
    order.apply(OrderEvent::OrderPlaced(PlaceOrder {
        order_id: order_id(),
        amount: Money::new(50_000, Currency::KRW).unwrap(),
        customer_id: CustomerId::parse("cust_1").unwrap(),
        payee_id: PayeeId::parse("payee_1").unwrap(),
        order_name: "Yoga class".into(),
        provider: "toss".into(),
        service_starts_at: None,
        placed_at: t0(),
    }));
    order.apply(OrderEvent::PaymentConfirmationStarted(
        ConfirmationStarted {
            payment_key: PaymentKey::parse("pk_1").unwrap(),
            amount_minor: 50_000,
            attempt: 1,
            idempotency_key: "k".into(),
            at: t0(),
        },
    ));
    order.apply(OrderEvent::PaymentCaptured(PaymentCaptured {
        payment_key: PaymentKey::parse("pk_1").unwrap(),
        amount_minor: 50_000,
        currency: Currency::KRW,
        payee_id: PayeeId::parse("payee_1").unwrap(),
        approved_at: t0(),
        method: None,
        source: OutcomeSource::Request,
    }));
    if refunded > 0 {
        order.apply(OrderEvent::RefundRequested(RefundRequested {
            refund_id: RefundId::parse("r1").unwrap(),
            amount_minor: refunded,
            currency: Currency::KRW,
            reason: "x".into(),
            idempotency_key: "rk".into(),
            at: t0(),
            customer_id: None,
            reason_digest: None,
        }));
        order.apply(OrderEvent::RefundCompleted(RefundCompleted {
            refund_id: RefundId::parse("r1").unwrap(),
            amount_minor: refunded,
            currency: Currency::KRW,
            payee_id: PayeeId::parse("payee_1").unwrap(),
            transaction_key: "tx".into(),
            source: OutcomeSource::Request,
            at: t0(),
        }));
    }
    order
}

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
}

/// A clean Toss line for `amount` (negative for a refund) at the default schedule.
fn line(amount: i64) -> SettlementLine {
    let (fee, vat) = FeeSchedule::TOSS_DEFAULT.fee_for(amount);
    SettlementLine {
        provider: "toss".into(),
        line_id: format!("pk_1-{amount}"),
        kind: if amount > 0 {
            SettlementLineKind::Payment
        } else {
            SettlementLineKind::Refund
        },
        payment_key: "pk_1".into(),
        order_id: Some("order-0001".into()),
        amount_minor: amount,
        fee_minor: fee,
        vat_minor: vat,
        payout_minor: amount - fee,
        currency: Currency::KRW,
        sold_on: day(2),
        paid_out_on: day(4),
        payout_id: None,
        method: Some("카드".into()),
        subscription_id: None,
    }
}

fn flags(events: &[ReconciliationEvent]) -> Vec<FlagKind> {
    events
        .iter()
        .filter_map(|e| match e {
            ReconciliationEvent::ReconciliationFlagged(f) => Some(f.kind),
            _ => None,
        })
        .collect()
}

fn judge(line: &SettlementLine, order: Option<&Order>) -> Vec<ReconciliationEvent> {
    judge_line(
        line,
        order.map(|_| order_id()).as_ref(),
        order,
        &FeeSchedule::TOSS_DEFAULT,
        t0(),
    )
}

#[test]
fn the_fee_schedule_rounds_down_and_adds_vat() {
    // 50 000 × 3.2 % = 1 600; VAT 160.
    assert_eq!(FeeSchedule::TOSS_DEFAULT.fee_for(50_000), (1_760, 160));
    // 333 × 3.2 % = 10.656 → 10; VAT 1.
    assert_eq!(FeeSchedule::TOSS_DEFAULT.fee_for(333), (11, 1));
    assert_eq!(FeeSchedule::TOSS_DEFAULT.fee_for(-20_000), (-704, -64));
    // Stripe keeps its fee on a refund and adds its fixed part to a charge only.
    assert_eq!(FeeSchedule::STRIPE_DEFAULT.fee_for(10_000), (320, 0));
    assert_eq!(FeeSchedule::STRIPE_DEFAULT.fee_for(-10_000), (0, 0));
    assert!(FeeSchedule {
        rate_bps: 10_001,
        ..FeeSchedule::TOSS_DEFAULT
    }
    .validate()
    .is_err());
}

#[test]
fn a_clean_payment_line_matches_and_closes_clearing() {
    let order = order(0);
    let events = judge(&line(50_000), Some(&order));
    assert!(flags(&events).is_empty(), "{events:?}");
    assert!(matches!(
        events[0],
        ReconciliationEvent::SettlementLineMatched(_)
    ));
    let entries = post_reconciliation_event(&events[0]);
    let lines: Vec<(Account, Side, i64)> = entries[0]
        .postings()
        .iter()
        .map(|p| (p.account, p.side, p.amount_minor))
        .collect();
    assert_eq!(
        lines,
        vec![
            (Account::Bank, Side::Debit, 48_240),
            (Account::ProviderFees, Side::Debit, 1_760),
            (Account::ProviderClearing, Side::Credit, 50_000),
        ]
    );
}

#[test]
fn a_refund_line_matches_a_completed_refund_and_gives_clearing_back() {
    let order = order(20_000);
    let events = judge(&line(-20_000), Some(&order));
    assert!(flags(&events).is_empty(), "{events:?}");
    let entries = post_reconciliation_event(&events[0]);
    let clearing: Vec<_> = entries[0]
        .postings()
        .iter()
        .filter(|p| p.account == Account::ProviderClearing)
        .map(|p| (p.side, p.amount_minor))
        .collect();
    assert_eq!(clearing, vec![(Side::Debit, 20_000)]);
    // A refund the ledger never completed is a difference.
    let events = judge(&line(-30_000), Some(&order));
    assert_eq!(flags(&events), vec![FlagKind::AmountMismatch]);
}

#[test]
fn a_refund_line_matches_a_refund_the_provider_recorded_by_its_refund_id() {
    // A refund the customer got from the provider directly (a Paddle adjustment approved in
    // Paddle): the order knows it by the provider's refund id, which the line is named by.
    let mut order = order(0);
    order.apply(OrderEvent::ProviderRefundRecorded(ProviderRefundRecorded {
        provider: "toss".into(),
        transaction_key: "adj_1".into(),
        amount_minor: 20_000,
        currency: Currency::KRW,
        payee_id: PayeeId::parse("payee_1").unwrap(),
        at: t0(),
    }));
    let refund = SettlementLine {
        line_id: "adj_1".into(),
        ..line(-20_000)
    };
    let events = judge(&refund, Some(&order));
    assert!(flags(&events).is_empty(), "{events:?}");
    // Not another id, nor more than the order recorded refunded.
    let other = SettlementLine {
        line_id: "adj_2".into(),
        ..line(-20_000)
    };
    assert_eq!(
        flags(&judge(&other, Some(&order))),
        vec![FlagKind::AmountMismatch]
    );
    let more = SettlementLine {
        line_id: "adj_1".into(),
        ..line(-30_000)
    };
    assert_eq!(
        flags(&judge(&more, Some(&order))),
        vec![FlagKind::AmountMismatch]
    );
}

#[test]
fn each_difference_is_its_own_flag() {
    let order = order(0);
    assert_eq!(
        flags(&judge(&line(50_000), None)),
        vec![FlagKind::UnknownPayment]
    );
    assert!(matches!(
        judge(&line(50_000), None)[0],
        ReconciliationEvent::SettlementLineUnmatched(_)
    ));
    let other_key = SettlementLine {
        payment_key: "pk_other".into(),
        ..line(50_000)
    };
    assert_eq!(
        flags(&judge(&other_key, Some(&order))),
        vec![FlagKind::UnknownPayment]
    );
    let usd = SettlementLine {
        currency: Currency::USD,
        ..line(50_000)
    };
    assert_eq!(
        flags(&judge(&usd, Some(&order))),
        vec![FlagKind::CurrencyMismatch]
    );
    assert_eq!(
        flags(&judge(&line(40_000), Some(&order))),
        vec![FlagKind::AmountMismatch]
    );
    let extra_fee = SettlementLine {
        fee_minor: 2_000,
        payout_minor: 48_000,
        ..line(50_000)
    };
    assert_eq!(
        flags(&judge(&extra_fee, Some(&order))),
        vec![FlagKind::FeeMismatch]
    );
    let short = SettlementLine {
        payout_minor: 48_000,
        ..line(50_000)
    };
    assert_eq!(
        flags(&judge(&short, Some(&order))),
        vec![FlagKind::ShortPayout]
    );
    let late = SettlementLine {
        paid_out_on: day(9),
        ..line(50_000)
    };
    assert_eq!(
        flags(&judge(&late, Some(&order))),
        vec![FlagKind::LatePayout]
    );
}

#[test]
fn a_short_payout_leaves_what_the_provider_owes_in_clearing() {
    let order = order(0);
    let short = SettlementLine {
        payout_minor: 48_000,
        ..line(50_000)
    };
    let mut book = TrialBalance::default();
    for event in judge(&short, Some(&order)) {
        for entry in post_reconciliation_event(&event) {
            book.post(&entry);
        }
    }
    assert!(book.is_balanced());
    let (debit, credit) = book.rows[&(Account::ProviderClearing, Currency::KRW)];
    assert_eq!(credit - debit, 49_760);
}

type RecordTest = TestFramework<ReconciliationRecord>;

fn import(line: SettlementLine) -> ReconciliationCommand {
    let judged = judge(&line, None);
    ReconciliationCommand::Import {
        line,
        judged,
        at: t0(),
    }
}

#[test]
fn the_same_line_twice_is_recorded_once_and_a_changed_line_is_flagged() {
    let first = judge(&line(50_000), None);
    RecordTest::with(())
        .given(first.clone())
        .when(import(line(50_000)))
        .then_expect_events(vec![]);
    let changed = SettlementLine {
        payout_minor: 1,
        ..line(50_000)
    };
    let events = RecordTest::with(())
        .given(first)
        .when(import(changed))
        .inspect_result()
        .unwrap();
    assert_eq!(flags(&events), vec![FlagKind::LineChanged]);
}

#[test]
fn a_flag_is_resolved_once_and_needs_a_note() {
    let first = judge(&line(50_000), None);
    let resolve = |note: &str| ReconciliationCommand::Resolve {
        kind: FlagKind::UnknownPayment,
        resolution: Resolution::ClaimAgainstProvider,
        note: note.into(),
        at: t0(),
    };
    RecordTest::with(())
        .given(first.clone())
        .when(resolve(" "))
        .then_expect_error(ReconciliationError::InvalidNote);
    let resolved = RecordTest::with(())
        .given(first.clone())
        .when(resolve("asked Toss, ticket 42"))
        .inspect_result()
        .unwrap();
    assert_eq!(resolved.len(), 1);
    let mut history = first;
    history.extend(resolved);
    RecordTest::with(())
        .given(history)
        .when(resolve("again"))
        .then_expect_error(ReconciliationError::NoOpenFlag);
    RecordTest::with(())
        .given_no_previous_events()
        .when(ReconciliationCommand::Resolve {
            kind: FlagKind::FeeMismatch,
            resolution: Resolution::WriteOff,
            note: "x".into(),
            at: t0(),
        })
        .then_expect_error(ReconciliationError::NoOpenFlag);
}

proptest! {
    #[test]
    fn every_settlement_entry_balances(
        amount in -MAX_AMOUNT_MINOR..=MAX_AMOUNT_MINOR,
        fee in -MAX_AMOUNT_MINOR..=MAX_AMOUNT_MINOR,
        payout in -MAX_AMOUNT_MINOR..=MAX_AMOUNT_MINOR,
    ) {
        let order = order(0);
        let odd = SettlementLine { amount_minor: amount, fee_minor: fee, payout_minor: payout, ..line(50_000) };
        let mut book = TrialBalance::default();
        for event in judge(&odd, Some(&order)) {
            for entry in post_reconciliation_event(&event) {
                prop_assert!(entry.is_balanced());
                prop_assert!(entry.postings().iter().all(|p| p.amount_minor > 0));
                book.post(&entry);
            }
        }
        prop_assert!(book.is_balanced());
    }

    #[test]
    fn a_clean_line_always_closes_its_clearing(amount in 1..=MAX_AMOUNT_MINOR) {
        let schedule = FeeSchedule::TOSS_DEFAULT;
        let (fee, _) = schedule.fee_for(amount);
        prop_assert!(fee <= amount);
        let clean = SettlementLine { amount_minor: amount, fee_minor: fee, payout_minor: amount - fee, ..line(50_000) };
        let matched = ReconciliationEvent::SettlementLineMatched(SettlementLineMatched {
            line: clean,
            order_id: order_id(),
            payee_id: PayeeId::parse("payee_1").unwrap(),
            at: t0(),
        });
        let mut book = TrialBalance::default();
        for entry in post_reconciliation_event(&matched) {
            book.post(&entry);
        }
        let (debit, credit) = book.rows[&(Account::ProviderClearing, Currency::KRW)];
        prop_assert_eq!((debit, credit), (0, amount));
    }
}

#[test]
fn writing_off_a_short_payout_takes_the_shortfall_out_of_clearing() {
    let order = order(0);
    let short = SettlementLine {
        payout_minor: 48_000,
        ..line(50_000)
    };
    let judged = judge(&short, Some(&order));
    let resolve = |resolution| ReconciliationCommand::Resolve {
        kind: FlagKind::ShortPayout,
        resolution,
        note: "Toss will not pay it".into(),
        at: t0(),
    };
    let written_off = RecordTest::with(())
        .given(judged.clone())
        .when(resolve(Resolution::WriteOff))
        .inspect_result()
        .unwrap();
    let mut book = TrialBalance::default();
    for event in judged.iter().chain(written_off.iter()) {
        for entry in post_reconciliation_event(event) {
            assert!(entry.is_balanced());
            book.post(&entry);
        }
    }
    let balance = |account| {
        book.rows
            .get(&(account, Currency::KRW))
            .map_or(0, |(d, c)| d - c)
    };
    // The line settled 48 000 + 1 760; the 240 short is written off: clearing closes.
    assert_eq!(balance(Account::ProviderClearing), -50_000);
    assert_eq!(balance(Account::ReconciliationWriteOffs), 240);
    // Any other resolution posts nothing.
    let claimed = RecordTest::with(())
        .given(judged)
        .when(resolve(Resolution::ClaimAgainstProvider))
        .inspect_result()
        .unwrap();
    assert!(claimed
        .iter()
        .all(|e| post_reconciliation_event(e).is_empty()));
}

#[test]
fn the_fee_schedule_follows_the_payment_method() {
    let transfer = FeeSchedule {
        rate_bps: 0,
        fixed_minor: 300,
        vat_bps: 0,
        ..FeeSchedule::TOSS_DEFAULT
    };
    let schedules = FeeSchedules {
        default: FeeSchedule::TOSS_DEFAULT,
        by_method: [("계좌이체".to_string(), transfer)].into_iter().collect(),
    };
    assert_eq!(schedules.for_method(Some("계좌이체")), &transfer);
    assert_eq!(
        schedules.for_method(Some("카드")),
        &FeeSchedule::TOSS_DEFAULT
    );
    assert_eq!(schedules.for_method(None), &FeeSchedule::TOSS_DEFAULT);
    assert_eq!(transfer.fee_for(50_000), (300, 0));
}

#[test]
fn a_line_unmatched_before_is_matched_once_its_payment_is_recorded() {
    let unmatched = judge(&line(50_000), None);
    let order = order(0);
    let now_matched = judge(&line(50_000), Some(&order));
    let events = RecordTest::with(())
        .given(unmatched.clone())
        .when(ReconciliationCommand::Import {
            line: line(50_000),
            judged: now_matched.clone(),
            at: t0(),
        })
        .inspect_result()
        .unwrap();
    assert!(matches!(
        events[0],
        ReconciliationEvent::SettlementLineMatched(_)
    ));
    assert_eq!(post_reconciliation_event(&events[0]).len(), 1);
    // Once matched, the same line again is nothing new.
    let mut history = unmatched;
    history.extend(events);
    RecordTest::with(())
        .given(history)
        .when(ReconciliationCommand::Import {
            line: line(50_000),
            judged: now_matched,
            at: t0(),
        })
        .then_expect_events(vec![]);
}

/// The order of [`order`] with a dispute over all of it, decided `status` with `fee` kept.
fn disputed(status: Option<payledger_domain::provider_fact::DisputeStatus>, fee: i64) -> Order {
    let mut order = order(0);
    let payee_id = PayeeId::parse("payee_1").unwrap();
    order.apply(OrderEvent::DisputeOpened(DisputeOpened {
        provider: "toss".into(),
        dispute_id: "dp_1".into(),
        amount_minor: 50_000,
        currency: Currency::KRW,
        payee_id: payee_id.clone(),
        reason: None,
        at: t0(),
    }));
    let closed = |withdrawn_minor| DisputeClosed {
        provider: "toss".into(),
        dispute_id: "dp_1".into(),
        amount_minor: 50_000,
        withdrawn_minor,
        fee_minor: fee,
        currency: Currency::KRW,
        payee_id: payee_id.clone(),
        at: t0(),
    };
    match status {
        Some(payledger_domain::provider_fact::DisputeStatus::Lost) => {
            order.apply(OrderEvent::DisputeLost(closed(50_000)))
        }
        Some(payledger_domain::provider_fact::DisputeStatus::Won) => {
            order.apply(OrderEvent::DisputeWon(closed(0)))
        }
        _ => {}
    }
    order
}

/// A dispute balance transaction: `amount` withdrawn (negative) or reinstated, `fee` kept.
fn dispute_line(amount: i64, fee: i64) -> SettlementLine {
    SettlementLine {
        kind: SettlementLineKind::Dispute,
        line_id: format!("txn_dp_{amount}"),
        fee_minor: fee,
        vat_minor: 0,
        payout_minor: amount - fee,
        ..line(amount)
    }
}

#[test]
fn a_dispute_line_matches_the_orders_dispute_and_posts_only_its_payout() {
    use payledger_domain::provider_fact::DisputeStatus;
    let lost = disputed(Some(DisputeStatus::Lost), 1_500);
    let events = judge(&dispute_line(-50_000, 1_500), Some(&lost));
    assert!(flags(&events).is_empty(), "{events:?}");
    // The fee was expensed by DisputeLost: the line takes its payout out of the bank only.
    let lines: Vec<(Account, Side, i64)> = post_reconciliation_event(&events[0])[0]
        .postings()
        .iter()
        .map(|p| (p.account, p.side, p.amount_minor))
        .collect();
    assert_eq!(
        lines,
        vec![
            (Account::Bank, Side::Credit, 51_500),
            (Account::ProviderClearing, Side::Debit, 51_500),
        ]
    );
    // Another fee than the decision recorded, another amount, or no dispute at all: flagged.
    assert_eq!(
        flags(&judge(&dispute_line(-50_000, 2_000), Some(&lost))),
        vec![FlagKind::FeeMismatch]
    );
    assert_eq!(
        flags(&judge(&dispute_line(-40_000, 1_500), Some(&lost))),
        vec![FlagKind::AmountMismatch]
    );
    assert_eq!(
        flags(&judge(&dispute_line(-50_000, 1_500), Some(&order(0)))),
        vec![FlagKind::AmountMismatch]
    );
    // Still open: the withdrawal is expected, its fee not yet known to the ledger.
    let open = disputed(None, 0);
    assert!(flags(&judge(&dispute_line(-50_000, 1_500), Some(&open))).is_empty());
    // Won: the reinstatement gives the amount back with no fee; while lost it is unexpected.
    let won = disputed(Some(DisputeStatus::Won), 1_500);
    assert!(flags(&judge(&dispute_line(50_000, 0), Some(&won))).is_empty());
    assert_eq!(
        flags(&judge(&dispute_line(50_000, 0), Some(&lost))),
        vec![FlagKind::AmountMismatch]
    );
}

#[test]
fn a_payout_is_judged_against_the_sum_of_its_own_lines() {
    let in_payout = |amount: i64, payout: &str| SettlementLine {
        payout_id: Some(payout.into()),
        ..line(amount)
    };
    let lines = vec![
        in_payout(50_000, "po_1"),
        in_payout(-20_000, "po_1"),
        in_payout(30_000, "po_2"),
    ];
    let itemised = lines[0].payout_minor + lines[1].payout_minor;
    let payout = |amount_minor| PayoutTotal {
        payout_id: "po_1".into(),
        currency: Currency::KRW,
        amount_minor,
        paid_out_on: day(4),
    };
    assert_eq!(judge_payout("toss", &payout(itemised), &lines, t0()), None);
    let flag = judge_payout("toss", &payout(itemised - 100), &lines, t0()).unwrap();
    assert_eq!(flag.kind, FlagKind::PayoutMismatch);
    assert_eq!(
        (flag.expected_minor, flag.actual_minor),
        (itemised, itemised - 100)
    );
    assert_eq!(flag.line_id.as_deref(), Some("po_1"));
    // Writing it off takes nothing out of clearing: the lines closed it.
    assert_eq!(write_off_of(&flag), 0);
}
