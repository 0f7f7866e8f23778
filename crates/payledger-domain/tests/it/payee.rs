//! Payee warnings: three suspend the provider for seven days.

use chrono::{DateTime, Duration, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use payledger_domain::ids::{ClaimId, PayeeId};
use payledger_domain::payee::*;

type PayeeTest = TestFramework<Payee>;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 10, 6, 9, 0, 0).unwrap()
}

fn payee() -> PayeeId {
    PayeeId::parse("therapist-kim").unwrap()
}

fn claim(n: u32) -> ClaimId {
    ClaimId::parse(format!("clm-{n}")).unwrap()
}

fn warn(n: u32) -> PayeeCommand {
    PayeeCommand::Warn {
        payee_id: payee(),
        warning_id: warning_id(&claim(n), 1, 0),
        claim_id: claim(n),
        reason: "no-show without notice".into(),
        at: t0(),
    }
}

fn warned(n: u32, active: u32) -> PayeeEvent {
    PayeeEvent::PayeeWarned(PayeeWarned {
        payee_id: payee(),
        warning_id: warning_id(&claim(n), 1, 0),
        claim_id: claim(n),
        reason: "no-show without notice".into(),
        active_warnings: active,
        at: t0(),
    })
}

#[test]
fn a_first_warning_is_counted() {
    PayeeTest::with(())
        .given_no_previous_events()
        .when(warn(1))
        .then_expect_events(vec![warned(1, 1)]);
}

#[test]
fn the_third_warning_suspends_the_provider_for_seven_days() {
    PayeeTest::with(())
        .given(vec![warned(1, 1), warned(2, 2)])
        .when(warn(3))
        .then_expect_events(vec![
            warned(3, 3),
            PayeeEvent::PayeeSuspended(PayeeSuspended {
                payee_id: payee(),
                from: t0(),
                until: t0() + Duration::days(7),
                warnings: 3,
            }),
        ]);
}

#[test]
fn the_same_warning_twice_counts_once() {
    PayeeTest::with(())
        .given(vec![warned(1, 1), warned(2, 2)])
        .when(warn(2))
        .then_expect_events(vec![]);
}

#[test]
fn after_a_suspension_the_count_starts_again() {
    let suspended = PayeeEvent::PayeeSuspended(PayeeSuspended {
        payee_id: payee(),
        from: t0(),
        until: t0() + Duration::days(7),
        warnings: 3,
    });
    PayeeTest::with(())
        .given(vec![warned(1, 1), warned(2, 2), warned(3, 3), suspended])
        .when(warn(4))
        .then_expect_events(vec![warned(4, 1)]);
}

#[test]
fn a_suspension_ends_after_seven_days() {
    use cqrs_es::Aggregate;
    let mut state = Payee::default();
    for event in [warned(1, 1), warned(2, 2), warned(3, 3)] {
        state.apply(event);
    }
    state.apply(PayeeEvent::PayeeSuspended(PayeeSuspended {
        payee_id: payee(),
        from: t0(),
        until: t0() + Duration::days(7),
        warnings: 3,
    }));
    assert!(state.is_suspended_at(t0() + Duration::days(7) - Duration::seconds(1)));
    assert!(!state.is_suspended_at(t0() + Duration::days(7)));
}
