//! The cancellation refund policy, at and around each boundary.

use chrono::{DateTime, Duration, TimeZone, Utc};
use payledger_domain::ids::AdminId;
use payledger_domain::money::{BasisPoints, MAX_AMOUNT_MINOR};
use payledger_domain::refund_policy::*;
use proptest::prelude::*;

fn starts() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 10, 5, 5, 0, 0).unwrap()
}

fn cancel(paid_minor: i64, notice: Duration) -> RefundDecision {
    decide(paid_minor, starts(), starts() - notice, None).unwrap()
}

#[test]
fn exactly_48_hours_before_the_start_refunds_everything() {
    let decision = cancel(80_000, Duration::hours(48));
    assert_eq!(decision.tier, RefundTier::Full);
    assert_eq!(
        (decision.refund_minor, decision.provider_minor),
        (80_000, 0)
    );
    assert_eq!(decision.notice_seconds, 48 * 3600);
}

#[test]
fn one_second_short_of_48_hours_refunds_half() {
    let decision = cancel(80_000, Duration::hours(48) - Duration::seconds(1));
    assert_eq!(decision.tier, RefundTier::Half);
    assert_eq!(
        (decision.refund_minor, decision.provider_minor),
        (40_000, 40_000)
    );
}

#[test]
fn exactly_24_hours_before_the_start_refunds_half() {
    let decision = cancel(80_000, Duration::hours(24));
    assert_eq!(decision.tier, RefundTier::Half);
    assert_eq!(
        (decision.refund_minor, decision.provider_minor),
        (40_000, 40_000)
    );
}

#[test]
fn one_second_short_of_24_hours_refunds_nothing() {
    let decision = cancel(80_000, Duration::hours(24) - Duration::seconds(1));
    assert_eq!(decision.tier, RefundTier::None);
    assert_eq!(
        (decision.refund_minor, decision.provider_minor),
        (0, 80_000)
    );
}

#[test]
fn cancelling_after_the_start_refunds_nothing() {
    let decision = cancel(80_000, -Duration::minutes(5));
    assert_eq!(decision.tier, RefundTier::None);
    assert_eq!(decision.refund_minor, 0);
    assert_eq!(decision.notice_seconds, -300);
}

#[test]
fn half_of_an_odd_amount_rounds_the_customer_down_and_the_provider_gets_the_rest() {
    let decision = cancel(80_001, Duration::hours(30));
    assert_eq!(
        (decision.refund_minor, decision.provider_minor),
        (40_000, 40_001)
    );
    let decision = cancel(1, Duration::hours(30));
    assert_eq!((decision.refund_minor, decision.provider_minor), (0, 1));
}

#[test]
fn an_approved_emergency_overrides_the_table() {
    let approval = EmergencyApproval {
        approved_by: AdminId::parse("admin_kim").unwrap(),
        evidence: vec!["https://files.example/hospital-note.pdf".into()],
        customer_share: BasisPoints::new(7_500).unwrap(),
    };
    let decision = decide(
        80_001,
        starts(),
        starts() - Duration::hours(2),
        Some(&approval),
    )
    .unwrap();
    assert_eq!(decision.tier, RefundTier::Emergency);
    assert_eq!(
        (decision.refund_minor, decision.provider_minor),
        (60_000, 20_001)
    );
}

#[test]
fn an_emergency_without_evidence_is_refused() {
    let approval = EmergencyApproval {
        approved_by: AdminId::parse("admin_kim").unwrap(),
        evidence: vec![],
        customer_share: BasisPoints::FULL,
    };
    assert_eq!(
        decide(80_000, starts(), starts(), Some(&approval)),
        Err(RefundPolicyError::EvidenceRequired)
    );
    let approval = EmergencyApproval {
        evidence: vec!["bad\u{0}ref".into()],
        ..approval
    };
    assert_eq!(
        decide(80_000, starts(), starts(), Some(&approval)),
        Err(RefundPolicyError::InvalidEvidence)
    );
}

proptest! {
    #[test]
    fn the_refund_and_the_provider_share_always_sum_to_the_amount(
        paid in 0i64..=MAX_AMOUNT_MINOR,
        notice_s in -7 * 86_400i64..=7 * 86_400,
    ) {
        let d = cancel(paid, Duration::seconds(notice_s));
        prop_assert_eq!(d.refund_minor + d.provider_minor, paid);
        prop_assert!(d.refund_minor >= 0 && d.provider_minor >= 0);
    }

    #[test]
    fn more_notice_never_refunds_less(
        paid in 0i64..=MAX_AMOUNT_MINOR,
        a in -3 * 86_400i64..=5 * 86_400,
        b in -3 * 86_400i64..=5 * 86_400,
    ) {
        let (early, late) = (a.max(b), a.min(b));
        prop_assert!(
            cancel(paid, Duration::seconds(early)).refund_minor
                >= cancel(paid, Duration::seconds(late)).refund_minor
        );
    }
}
