//! Weekly statements: weeks in the configured zone, lines, totals, confirmation, carrying, payout.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use payledger_domain::ids::{ClaimId, OrderId, PayeeId};
use payledger_domain::money::{BasisPoints, Currency, MAX_AMOUNT_MINOR};
use payledger_domain::settlement::*;
use proptest::prelude::*;

type StatementTest = TestFramework<Statement>;

fn monday() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 10, 5).unwrap()
}

fn key() -> StatementKey {
    StatementKey {
        payee_id: PayeeId::parse("therapist-kim").unwrap(),
        week_start: monday(),
        currency: Currency::KRW,
    }
}

fn setup() -> StatementSetup {
    StatementSetup {
        key: key(),
        time_zone: DEFAULT_TIME_ZONE,
        platform_fee: BasisPoints::new(1_000).unwrap(),
    }
}

/// Monday 00:00 KST of the week is Sunday 15:00 UTC.
fn period_start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 10, 4, 15, 0, 0).unwrap()
}

fn period_end() -> DateTime<Utc> {
    period_start() + Duration::days(7)
}

fn during() -> DateTime<Utc> {
    period_start() + Duration::days(2)
}

fn line(id: &str, kind: LineKind, amount_minor: i64) -> StatementLine {
    StatementLine {
        line_id: id.into(),
        kind,
        order_id: Some(OrderId::parse("order-0001").unwrap()),
        claim_id: None,
        amount_minor,
        occurred_at: during(),
        carried_from: None,
        memo: String::new(),
    }
}

fn add(l: StatementLine) -> StatementCommand {
    StatementCommand::AddLine {
        setup: setup(),
        line: l,
        at: during(),
    }
}

fn opened() -> StatementEvent {
    StatementEvent::StatementOpened(StatementOpened {
        statement_id: "therapist-kim-2026-10-05-KRW".into(),
        payee_id: key().payee_id,
        currency: Currency::KRW,
        week_start: monday(),
        period_start: period_start(),
        period_end: period_end(),
        time_zone: "Asia/Seoul".into(),
        platform_fee_bps: 1_000,
        at: during(),
    })
}

fn added(l: StatementLine) -> StatementEvent {
    StatementEvent::StatementLineAdded(StatementLineAdded {
        line: l,
        at: during(),
    })
}

fn confirmed(lines: &[StatementLine], at: DateTime<Utc>) -> StatementEvent {
    StatementEvent::StatementConfirmed(StatementConfirmed {
        statement_id: key().id(),
        payee_id: key().payee_id,
        currency: Currency::KRW,
        line_count: lines.len() as u32,
        totals: compute_totals(lines, BasisPoints::new(1_000).unwrap()),
        at,
        sessions_held_for_notes: held_for_notes(lines).0,
        held_for_notes_minor: held_for_notes(lines).1,
    })
}

// --- weeks ---------------------------------------------------------------------------------------

#[test]
fn a_week_runs_from_monday_to_sunday_in_seoul() {
    let tz = DEFAULT_TIME_ZONE;
    // Sunday 23:59:59 KST is still the week of Monday the 5th …
    let last_second = Utc.with_ymd_and_hms(2026, 10, 11, 14, 59, 59).unwrap();
    assert_eq!(week_start_of(last_second, tz), monday());
    // … and Monday 00:00 KST (Sunday 15:00 UTC) starts the next one.
    let next = Utc.with_ymd_and_hms(2026, 10, 11, 15, 0, 0).unwrap();
    assert_eq!(week_start_of(next, tz), monday() + Duration::days(7));
    // Monday 00:00 KST of the 5th is Sunday the 4th in UTC, and belongs to the 5th's week.
    assert_eq!(week_start_of(period_start(), tz), monday());
    assert_eq!(period_of(monday(), tz), (period_start(), period_end()));
}

#[test]
fn another_zone_moves_the_week_boundary() {
    let tz = chrono_tz::Europe::Berlin;
    // 2026-10-25 is the end of summer time in Berlin: that week is 169 hours long.
    let monday = NaiveDate::from_ymd_opt(2026, 10, 19).unwrap();
    let (start, end) = period_of(monday, tz);
    assert_eq!(start, Utc.with_ymd_and_hms(2026, 10, 18, 22, 0, 0).unwrap());
    assert_eq!(end - start, Duration::hours(169));
}

#[test]
fn statement_ids_round_trip_even_with_dashes_in_the_payee() {
    assert_eq!(key().id(), "therapist-kim-2026-10-05-KRW");
    assert_eq!(StatementKey::parse(&key().id()), Ok(key()));
    assert_eq!(key().stream_id(), "settlement-therapist-kim-2026-10-05-KRW");
    assert_eq!(
        key().next().week_start,
        NaiveDate::from_ymd_opt(2026, 10, 12).unwrap()
    );
    // Not a Monday, not a currency, no payee.
    assert!(StatementKey::parse("therapist-kim-2026-10-06-KRW").is_err());
    assert!(StatementKey::parse("therapist-kim-2026-10-05-XXX").is_err());
    assert!(StatementKey::parse("-2026-10-05-KRW").is_err());
}

// --- totals ----------------------------------------------------------------------------------------

#[test]
fn totals_take_the_fee_on_net_sales_and_hold_open_claims() {
    let lines = vec![
        line("payment:a", LineKind::Payment, 80_000),
        line("payment:b", LineKind::Payment, 50_001),
        line("refund:b:cancel", LineKind::Refund, 25_000),
        line("comp:c", LineKind::Compensation, 3_000),
        line("hold:c", LineKind::Hold, 80_000),
    ];
    let totals = compute_totals(&lines, BasisPoints::new(1_000).unwrap());
    assert_eq!(totals.net_sales_minor, 105_001);
    // 10 % of 105,001 is 10,500.1: the fee rounds down, in the payee's favour.
    assert_eq!(totals.platform_fee_minor, 10_500);
    assert_eq!(totals.net_minor, 105_001 - 10_500 + 3_000 - 80_000);
    assert_eq!(totals.net_payable_minor, 17_501);
    assert_eq!(totals.carry_forward_minor, 0);
}

#[test]
fn a_week_of_refunds_gives_the_fee_back_and_carries_its_negative_net() {
    let lines = vec![
        line("refund:a:claim", LineKind::Refund, 80_001),
        line("release:x", LineKind::HoldReleased, 10_000),
    ];
    let totals = compute_totals(&lines, BasisPoints::new(1_000).unwrap());
    assert_eq!(totals.platform_fee_minor, -8_000);
    assert_eq!(totals.net_minor, -80_001 + 8_000 + 10_000);
    assert_eq!(totals.net_payable_minor, 0);
    assert_eq!(totals.carry_forward_minor, -62_001);
}

proptest! {
    #[test]
    fn totals_always_add_up(
        amounts in proptest::collection::vec((0usize..6, 1i64..=MAX_AMOUNT_MINOR / 1_000), 0..40),
        bps in 0u32..=10_000,
    ) {
        let kinds = [LineKind::Payment, LineKind::Refund, LineKind::Compensation, LineKind::Hold, LineKind::HoldReleased, LineKind::CarriedBalance];
        let lines: Vec<StatementLine> = amounts.iter().enumerate()
            .map(|(i, (k, a))| {
                let amount = if kinds[*k] == LineKind::CarriedBalance { -a } else { *a };
                line(&format!("l{i}"), kinds[*k], amount)
            })
            .collect();
        let t = compute_totals(&lines, BasisPoints::new(bps).unwrap());
        prop_assert_eq!(t.net_sales_minor, t.payments_minor - t.refunds_minor);
        prop_assert!(t.platform_fee_minor.abs() <= t.net_sales_minor.abs());
        prop_assert_eq!(t.platform_fee_minor.signum() * t.net_sales_minor.signum() >= 0, true);
        prop_assert_eq!(
            t.net_minor,
            t.net_sales_minor - t.platform_fee_minor + t.compensations_minor - t.held_minor + t.released_minor + t.carried_minor
        );
        prop_assert_eq!(t.net_payable_minor + t.carry_forward_minor, t.net_minor);
        prop_assert!(t.net_payable_minor >= 0 && t.carry_forward_minor <= 0);
    }
}

// --- the statement aggregate -------------------------------------------------------------------

#[test]
fn the_first_line_opens_the_statement() {
    let l = line("payment:order-0001", LineKind::Payment, 80_000);
    StatementTest::with(())
        .given_no_previous_events()
        .when(add(l.clone()))
        .then_expect_events(vec![opened(), added(l)]);
}

#[test]
fn a_line_added_twice_is_added_once() {
    let l = line("payment:order-0001", LineKind::Payment, 80_000);
    StatementTest::with(())
        .given(vec![opened(), added(l.clone())])
        .when(add(l))
        .then_expect_events(vec![]);
}

#[test]
fn a_statement_is_confirmed_once_its_week_is_over() {
    let l = line("payment:order-0001", LineKind::Payment, 80_000);
    StatementTest::with(())
        .given(vec![opened(), added(l.clone())])
        .when(StatementCommand::Confirm {
            at: period_end() - Duration::seconds(1),
        })
        .then_expect_error(StatementError::PeriodNotOver {
            period_end: period_end(),
        });
    StatementTest::with(())
        .given(vec![opened(), added(l.clone())])
        .when(StatementCommand::Confirm { at: period_end() })
        .then_expect_events(vec![confirmed(std::slice::from_ref(&l), period_end())]);
    StatementTest::with(())
        .given(vec![
            opened(),
            added(l.clone()),
            confirmed(&[l], period_end()),
        ])
        .when(StatementCommand::Confirm {
            at: period_end() + Duration::days(1),
        })
        .then_expect_events(vec![]);
}

#[test]
fn the_confirmation_counts_the_sessions_held_for_missing_notes() {
    let paid = line("payment:order-a", LineKind::Payment, 80_000);
    let held_a = line("notes:order-a", LineKind::Hold, 80_000);
    let held_b = line("notes:order-b", LineKind::Hold, 50_000);
    let released_b = line("notes-release:order-b", LineKind::HoldReleased, 50_000);
    let claim_hold = line("hold:clm-1:1", LineKind::Hold, 30_000);
    let lines = [paid, held_a, held_b, released_b, claim_hold];
    // A claim's hold is not a missing note; a hold released on the same statement is no longer held.
    assert_eq!(held_for_notes(&lines), (1, 80_000));
    let mut given = vec![opened()];
    given.extend(lines.iter().cloned().map(added));
    StatementTest::with(())
        .given(given)
        .when(StatementCommand::Confirm { at: period_end() })
        .then_expect_events(vec![StatementEvent::StatementConfirmed(
            StatementConfirmed {
                statement_id: key().id(),
                payee_id: key().payee_id,
                currency: Currency::KRW,
                line_count: 5,
                totals: compute_totals(&lines, BasisPoints::new(1_000).unwrap()),
                at: period_end(),
                sessions_held_for_notes: 1,
                held_for_notes_minor: 80_000,
            },
        )]);
}

#[test]
fn a_confirmed_statement_takes_no_new_line_but_recognises_its_own() {
    let l = line("payment:order-0001", LineKind::Payment, 80_000);
    let given = vec![
        opened(),
        added(l.clone()),
        confirmed(std::slice::from_ref(&l), period_end()),
    ];
    StatementTest::with(())
        .given(given.clone())
        .when(add(line("hold:clm-1:1", LineKind::Hold, 80_000)))
        .then_expect_error(StatementError::Closed(StatementStatus::Confirmed));
    StatementTest::with(())
        .given(given)
        .when(add(l))
        .then_expect_events(vec![]);
}

#[test]
fn a_late_claim_is_carried_to_the_next_statement() {
    // The sender's rule, spelled out: refused by the confirmed week, added to the next one,
    // saying where it came from.
    let mut hold = line("hold:clm-1:1", LineKind::Hold, 80_000);
    hold.claim_id = Some(ClaimId::parse("clm-1").unwrap());
    let l = line("payment:order-0001", LineKind::Payment, 80_000);
    StatementTest::with(())
        .given(vec![
            opened(),
            added(l.clone()),
            confirmed(&[l], period_end()),
        ])
        .when(add(hold.clone()))
        .then_expect_error(StatementError::Closed(StatementStatus::Confirmed));
    let next = key().next();
    let mut carried = hold;
    carried.carried_from = Some(key().week_start);
    let result = StatementTest::with(())
        .given_no_previous_events()
        .when(StatementCommand::AddLine {
            setup: StatementSetup {
                key: next.clone(),
                ..setup()
            },
            line: carried.clone(),
            at: period_end() + Duration::hours(1),
        })
        .inspect_result()
        .unwrap();
    let StatementEvent::StatementLineAdded(added) = &result[1] else {
        panic!("the carried line expected: {result:?}")
    };
    assert_eq!(added.line, carried);
    let StatementEvent::StatementOpened(o) = &result[0] else {
        panic!("the next statement opens first: {result:?}")
    };
    assert_eq!(o.statement_id, "therapist-kim-2026-10-12-KRW");
}

#[test]
fn the_payout_must_match_the_net_payable_and_closes_the_statement() {
    let l = line("payment:order-0001", LineKind::Payment, 80_001);
    let given = vec![opened(), added(l.clone()), confirmed(&[l], period_end())];
    let payout = |amount_minor: i64, reference: &str| StatementCommand::RecordPayout {
        reference: reference.into(),
        amount_minor,
        at: period_end() + Duration::days(2),
    };
    StatementTest::with(())
        .given(vec![opened()])
        .when(payout(72_001, "bank-tx-1"))
        .then_expect_error(StatementError::NotConfirmed);
    StatementTest::with(())
        .given(given.clone())
        .when(payout(72_000, "bank-tx-1"))
        .then_expect_error(StatementError::PayoutAmountMismatch {
            amount_minor: 72_000,
            net_payable_minor: 72_001,
        });
    let paid = StatementEvent::StatementPaidOut(StatementPaidOut {
        statement_id: key().id(),
        payee_id: key().payee_id,
        currency: Currency::KRW,
        reference: "bank-tx-1".into(),
        amount_minor: 72_001,
        at: period_end() + Duration::days(2),
    });
    StatementTest::with(())
        .given(given.clone())
        .when(payout(72_001, "bank-tx-1"))
        .then_expect_events(vec![paid.clone()]);
    let mut closed = given;
    closed.push(paid);
    StatementTest::with(())
        .given(closed.clone())
        .when(payout(72_001, "bank-tx-1"))
        .then_expect_events(vec![]);
    StatementTest::with(())
        .given(closed.clone())
        .when(payout(72_001, "bank-tx-2"))
        .then_expect_error(StatementError::AlreadyPaidOut);
    StatementTest::with(())
        .given(closed)
        .when(add(line("refund:x", LineKind::Refund, 1)))
        .then_expect_error(StatementError::Closed(StatementStatus::PaidOut));
}

#[test]
fn lines_must_carry_a_sensible_amount() {
    StatementTest::with(())
        .given_no_previous_events()
        .when(add(line("payment:x", LineKind::Payment, 0)))
        .then_expect_error(StatementError::InvalidLine);
    StatementTest::with(())
        .given_no_previous_events()
        .when(add(line("refund:x", LineKind::Refund, -5)))
        .then_expect_error(StatementError::InvalidLine);
}

// --- invariants ----------------------------------------------------------------------------------

/// The read half of the pair: a statement whose frozen totals are not the sum of its lines
/// trips the assertion instead of being paid out.
#[test]
#[should_panic(expected = "frozen totals differ from the lines")]
fn frozen_totals_that_are_not_the_sum_of_the_lines_trip_the_invariant() {
    use cqrs_es::Aggregate;
    let paid = line("payment:order-0001", LineKind::Payment, 80_000);
    let mut statement = Statement::default();
    statement.apply(opened());
    statement.apply(added(paid.clone()));
    // Frozen as if a second payment had been on the statement.
    statement.apply(confirmed(&[paid.clone(), paid], during()));
    statement.assert_invariants();
}

#[test]
fn a_confirmed_statement_keeps_its_invariants() {
    use cqrs_es::Aggregate;
    let paid = line("payment:order-0001", LineKind::Payment, 80_000);
    let refunded = line("refund:order-0001", LineKind::Refund, 30_000);
    let mut statement = Statement::default();
    statement.apply(opened());
    statement.apply(added(paid.clone()));
    statement.apply(added(refunded.clone()));
    statement.apply(confirmed(&[paid, refunded], during()));
    statement.assert_invariants();
}
