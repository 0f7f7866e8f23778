//! Claims: filing windows, statements and their deadline, assignment, resolution and appeal.

use chrono::{DateTime, Duration, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use payledger_domain::claim::*;
use payledger_domain::ids::{AdminId, ClaimId, CustomerId, OrderId, PayeeId};
use payledger_domain::money::Currency;
use payledger_domain::refund_policy::RefundPolicyError;

type ClaimTest = TestFramework<Claim>;

fn starts() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 10, 5, 5, 0, 0).unwrap()
}

fn claim_id() -> ClaimId {
    ClaimId::parse("clm-1234").unwrap()
}

fn admin() -> AdminId {
    AdminId::parse("admin_park").unwrap()
}

fn claimed_order(service_starts_at: Option<DateTime<Utc>>) -> ClaimedOrder {
    ClaimedOrder {
        order_id: OrderId::parse("order-0001").unwrap(),
        customer_id: CustomerId::parse("parent-lee").unwrap(),
        payee_id: PayeeId::parse("therapist-kim").unwrap(),
        currency: Currency::KRW,
        service_starts_at,
        captured_minor: 80_000,
        refunded_minor: 0,
    }
}

fn file(
    claim_type: ClaimType,
    filed_by: Party,
    evidence: &[&str],
    at: DateTime<Utc>,
) -> ClaimCommand {
    ClaimCommand::File(FileClaim {
        claim_id: claim_id(),
        order: claimed_order(Some(starts())),
        claim_type,
        filed_by,
        description: "the therapist did not come".into(),
        evidence: evidence.iter().map(|e| e.to_string()).collect(),
        at,
    })
}

fn filed_at(claim_type: ClaimType, filed_by: Party, at: DateTime<Utc>) -> ClaimEvent {
    ClaimEvent::ClaimFiled(ClaimFiled {
        claim_id: claim_id(),
        order_id: OrderId::parse("order-0001").unwrap(),
        customer_id: CustomerId::parse("parent-lee").unwrap(),
        payee_id: PayeeId::parse("therapist-kim").unwrap(),
        currency: Currency::KRW,
        claim_type,
        filed_by,
        description: "the therapist did not come".into(),
        evidence: vec![],
        service_starts_at: Some(starts()),
        amount_at_stake_minor: 80_000,
        respond_by: at + Duration::hours(RESPONSE_WINDOW_HOURS),
        at,
    })
}

/// A provider no-show filed by the customer 20 minutes after the start.
fn filed() -> ClaimEvent {
    filed_at(ClaimType::ProviderNoShow, Party::Customer, filing_time())
}

fn filing_time() -> DateTime<Utc> {
    starts() + Duration::minutes(20)
}

fn assigned() -> ClaimEvent {
    ClaimEvent::ClaimAssigned(ClaimAssigned {
        admin_id: admin(),
        at: filing_time() + Duration::hours(1),
    })
}

fn resolve(outcome: ClaimOutcome, refund: i64, payout: i64, at: DateTime<Utc>) -> ResolveClaim {
    ResolveClaim {
        admin_id: admin(),
        outcome,
        reason: "no prior contact".into(),
        refund_minor: refund,
        provider_payout_minor: payout,
        coupon: None,
        provider_compensation_minor: 0,
        penalties: vec![],
        at,
    }
}

fn resolution_time() -> DateTime<Utc> {
    filing_time() + Duration::hours(2)
}

fn resolved(
    round: u32,
    outcome: ClaimOutcome,
    refund: i64,
    additional: i64,
    at: DateTime<Utc>,
) -> ClaimResolved {
    ClaimResolved {
        round,
        order_id: OrderId::parse("order-0001").unwrap(),
        payee_id: PayeeId::parse("therapist-kim").unwrap(),
        currency: Currency::KRW,
        admin_id: admin(),
        outcome,
        reason: "no prior contact".into(),
        refund_minor: refund,
        additional_refund_minor: additional,
        provider_payout_minor: 80_000 - refund,
        coupon: None,
        provider_compensation_minor: 0,
        penalties: vec![],
        seconds_to_resolve: (at - filing_time()).num_seconds(),
        at,
        customer_id: Some(CustomerId::parse("parent-lee").unwrap()),
    }
}

// --- filing windows ----------------------------------------------------------------------------

#[test]
fn a_provider_no_show_can_be_filed_exactly_15_minutes_after_the_start() {
    let opens = starts() + Duration::minutes(15);
    ClaimTest::with(())
        .given_no_previous_events()
        .when(file(ClaimType::ProviderNoShow, Party::Customer, &[], opens))
        .then_expect_events(vec![filed_at(
            ClaimType::ProviderNoShow,
            Party::Customer,
            opens,
        )]);
}

#[test]
fn a_provider_no_show_one_second_before_15_minutes_is_refused() {
    let opens = starts() + Duration::minutes(15);
    ClaimTest::with(())
        .given_no_previous_events()
        .when(file(
            ClaimType::ProviderNoShow,
            Party::Customer,
            &[],
            opens - Duration::seconds(1),
        ))
        .then_expect_error(ClaimError::FilingWindowNotOpen {
            claim_type: ClaimType::ProviderNoShow,
            opens_at: opens,
        });
}

#[test]
fn a_customer_no_show_can_be_filed_exactly_10_minutes_after_the_start_with_evidence() {
    let opens = starts() + Duration::minutes(10);
    let result = ClaimTest::with(())
        .given_no_previous_events()
        .when(file(
            ClaimType::CustomerNoShow,
            Party::Provider,
            &["gps:37.5,127.0", "photo-1"],
            opens,
        ))
        .inspect_result()
        .unwrap();
    let [ClaimEvent::ClaimFiled(f)] = result.as_slice() else {
        panic!("one filing expected: {result:?}")
    };
    assert_eq!(
        f.evidence,
        vec!["gps:37.5,127.0".to_string(), "photo-1".to_string()]
    );
    assert_eq!(f.respond_by, opens + Duration::hours(24));
}

#[test]
fn a_customer_no_show_one_second_before_10_minutes_is_refused() {
    let opens = starts() + Duration::minutes(10);
    ClaimTest::with(())
        .given_no_previous_events()
        .when(file(
            ClaimType::CustomerNoShow,
            Party::Provider,
            &["photo-1"],
            opens - Duration::seconds(1),
        ))
        .then_expect_error(ClaimError::FilingWindowNotOpen {
            claim_type: ClaimType::CustomerNoShow,
            opens_at: opens,
        });
}

#[test]
fn a_customer_no_show_without_evidence_is_refused() {
    ClaimTest::with(())
        .given_no_previous_events()
        .when(file(
            ClaimType::CustomerNoShow,
            Party::Provider,
            &[],
            starts() + Duration::hours(1),
        ))
        .then_expect_error(ClaimError::Evidence(RefundPolicyError::EvidenceRequired));
}

#[test]
fn no_show_claims_come_from_the_side_that_showed_up() {
    ClaimTest::with(())
        .given_no_previous_events()
        .when(file(
            ClaimType::ProviderNoShow,
            Party::Provider,
            &[],
            starts() + Duration::hours(1),
        ))
        .then_expect_error(ClaimError::WrongClaimant {
            claim_type: ClaimType::ProviderNoShow,
            allowed: Party::Customer,
        });
    ClaimTest::with(())
        .given_no_previous_events()
        .when(file(
            ClaimType::CustomerNoShow,
            Party::Customer,
            &["x"],
            starts() + Duration::hours(1),
        ))
        .then_expect_error(ClaimError::WrongClaimant {
            claim_type: ClaimType::CustomerNoShow,
            allowed: Party::Provider,
        });
}

#[test]
fn a_service_quality_claim_opens_at_the_start_and_other_types_any_time() {
    ClaimTest::with(())
        .given_no_previous_events()
        .when(file(
            ClaimType::ServiceQuality,
            Party::Customer,
            &[],
            starts() - Duration::seconds(1),
        ))
        .then_expect_error(ClaimError::FilingWindowNotOpen {
            claim_type: ClaimType::ServiceQuality,
            opens_at: starts(),
        });
    ClaimTest::with(())
        .given_no_previous_events()
        .when(file(
            ClaimType::ServiceQuality,
            Party::Customer,
            &[],
            starts(),
        ))
        .then_expect_events(vec![filed_at(
            ClaimType::ServiceQuality,
            Party::Customer,
            starts(),
        )]);
    let early = starts() - Duration::days(3);
    for claim_type in [ClaimType::Schedule, ClaimType::Payment, ClaimType::Other] {
        ClaimTest::with(())
            .given_no_previous_events()
            .when(file(claim_type, Party::Customer, &[], early))
            .then_expect_events(vec![filed_at(claim_type, Party::Customer, early)]);
    }
}

#[test]
fn no_show_claims_need_a_booking_and_every_claim_a_payment_at_stake() {
    let mut command = FileClaim {
        claim_id: claim_id(),
        order: claimed_order(None),
        claim_type: ClaimType::ProviderNoShow,
        filed_by: Party::Customer,
        description: "no show".into(),
        evidence: vec![],
        at: starts(),
    };
    ClaimTest::with(())
        .given_no_previous_events()
        .when(ClaimCommand::File(command.clone()))
        .then_expect_error(ClaimError::NotABooking(ClaimType::ProviderNoShow));
    command.claim_type = ClaimType::Payment;
    command.order.refunded_minor = 80_000;
    ClaimTest::with(())
        .given_no_previous_events()
        .when(ClaimCommand::File(command.clone()))
        .then_expect_error(ClaimError::NothingAtStake);
    command.order.captured_minor = 0;
    command.order.refunded_minor = 0;
    ClaimTest::with(())
        .given_no_previous_events()
        .when(ClaimCommand::File(command))
        .then_expect_error(ClaimError::OrderNotPaid);
}

#[test]
fn a_claim_id_is_filed_once() {
    ClaimTest::with(())
        .given(vec![filed()])
        .when(file(
            ClaimType::ProviderNoShow,
            Party::Customer,
            &[],
            filing_time(),
        ))
        .then_expect_error(ClaimError::AlreadyExists);
}

// --- statements and the 24-hour deadline --------------------------------------------------------

fn statement(side: Side, at: DateTime<Utc>) -> ClaimCommand {
    ClaimCommand::SubmitStatement {
        side,
        text: "a traffic accident delayed me".into(),
        evidence: vec!["photo-accident".into()],
        at,
    }
}

#[test]
fn the_respondent_may_answer_until_exactly_24_hours_after_the_filing() {
    let deadline = filing_time() + Duration::hours(24);
    ClaimTest::with(())
        .given(vec![filed()])
        .when(statement(Side::Respondent, deadline))
        .then_expect_events(vec![ClaimEvent::ClaimStatementSubmitted(
            ClaimStatementSubmitted {
                side: Side::Respondent,
                party: Party::Provider,
                text: "a traffic accident delayed me".into(),
                evidence: vec!["photo-accident".into()],
                at: deadline,
                customer_id: Some(CustomerId::parse("parent-lee").unwrap()),
            },
        )]);
    ClaimTest::with(())
        .given(vec![filed()])
        .when(statement(Side::Respondent, deadline + Duration::seconds(1)))
        .then_expect_error(ClaimError::ResponseWindowClosed {
            respond_by: deadline,
        });
}

#[test]
fn each_side_makes_one_statement() {
    let submitted = ClaimEvent::ClaimStatementSubmitted(ClaimStatementSubmitted {
        side: Side::Respondent,
        party: Party::Provider,
        text: "late".into(),
        evidence: vec![],
        at: filing_time(),
        customer_id: Some(CustomerId::parse("parent-lee").unwrap()),
    });
    ClaimTest::with(())
        .given(vec![filed(), submitted])
        .when(statement(Side::Respondent, filing_time()))
        .then_expect_error(ClaimError::StatementAlreadySubmitted);
}

#[test]
fn a_missed_deadline_is_recorded_once_and_only_after_the_deadline() {
    let deadline = filing_time() + Duration::hours(24);
    let missed = ClaimEvent::ClaimResponseDeadlineMissed(ClaimResponseDeadlineMissed {
        respond_by: deadline,
        at: deadline + Duration::seconds(1),
    });
    ClaimTest::with(())
        .given(vec![filed()])
        .when(ClaimCommand::RecordMissedDeadline { at: deadline })
        .then_expect_error(ClaimError::DeadlineNotReached {
            respond_by: deadline,
        });
    ClaimTest::with(())
        .given(vec![filed()])
        .when(ClaimCommand::RecordMissedDeadline {
            at: deadline + Duration::seconds(1),
        })
        .then_expect_events(vec![missed.clone()]);
    ClaimTest::with(())
        .given(vec![filed(), missed])
        .when(ClaimCommand::RecordMissedDeadline {
            at: deadline + Duration::hours(5),
        })
        .then_expect_events(vec![]);
}

#[test]
fn assigning_after_the_deadline_records_the_missed_deadline_first() {
    let at = filing_time() + Duration::hours(30);
    ClaimTest::with(())
        .given(vec![filed()])
        .when(ClaimCommand::Assign {
            admin_id: admin(),
            at,
        })
        .then_expect_events(vec![
            ClaimEvent::ClaimResponseDeadlineMissed(ClaimResponseDeadlineMissed {
                respond_by: filing_time() + Duration::hours(24),
                at,
            }),
            ClaimEvent::ClaimAssigned(ClaimAssigned {
                admin_id: admin(),
                at,
            }),
        ]);
}

// --- resolution ----------------------------------------------------------------------------------

#[test]
fn the_assigned_admin_resolves_with_amounts_that_add_up() {
    let at = resolution_time();
    ClaimTest::with(())
        .given(vec![filed(), assigned()])
        .when(ClaimCommand::Resolve(resolve(
            ClaimOutcome::ClaimantWins,
            80_000,
            0,
            at,
        )))
        .then_expect_events(vec![ClaimEvent::ClaimResolved(resolved(
            1,
            ClaimOutcome::ClaimantWins,
            80_000,
            80_000,
            at,
        ))]);
}

#[test]
fn a_claim_must_be_assigned_and_resolved_by_its_assignee() {
    let at = resolution_time();
    ClaimTest::with(())
        .given(vec![filed()])
        .when(ClaimCommand::Resolve(resolve(
            ClaimOutcome::ClaimantWins,
            80_000,
            0,
            at,
        )))
        .then_expect_error(ClaimError::NotUnderReview);
    let mut other = resolve(ClaimOutcome::ClaimantWins, 80_000, 0, at);
    other.admin_id = AdminId::parse("admin_choi").unwrap();
    ClaimTest::with(())
        .given(vec![filed(), assigned()])
        .when(ClaimCommand::Resolve(other))
        .then_expect_error(ClaimError::NotAssignee { assigned: admin() });
}

#[test]
fn refund_and_payout_must_divide_the_amount_at_stake() {
    ClaimTest::with(())
        .given(vec![filed(), assigned()])
        .when(ClaimCommand::Resolve(resolve(
            ClaimOutcome::Split,
            40_000,
            30_000,
            resolution_time(),
        )))
        .then_expect_error(ClaimError::AmountsDoNotAddUp {
            refund_minor: 40_000,
            payout_minor: 30_000,
            at_stake_minor: 80_000,
        });
}

#[test]
fn amounts_must_fit_the_outcome() {
    let at = resolution_time();
    for (outcome, refund) in [
        (ClaimOutcome::Split, 0),
        (ClaimOutcome::Split, 80_000),
        (ClaimOutcome::ClaimantWins, 0),
        (ClaimOutcome::RespondentWins, 80_000),
        (ClaimOutcome::Rejected, 10_000),
    ] {
        ClaimTest::with(())
            .given(vec![filed(), assigned()])
            .when(ClaimCommand::Resolve(resolve(
                outcome,
                refund,
                80_000 - refund,
                at,
            )))
            .then_expect_error(ClaimError::OutcomeMismatch(outcome));
    }
    let mut rejected_with_penalty = resolve(ClaimOutcome::Rejected, 0, 80_000, at);
    rejected_with_penalty.penalties = vec![Penalty::Warning];
    ClaimTest::with(())
        .given(vec![filed(), assigned()])
        .when(ClaimCommand::Resolve(rejected_with_penalty))
        .then_expect_error(ClaimError::OutcomeMismatch(ClaimOutcome::Rejected));
}

#[test]
fn a_split_with_penalties_coupon_and_compensation_is_recorded_as_decided() {
    let at = resolution_time();
    let mut decision = resolve(ClaimOutcome::Split, 40_001, 39_999, at);
    decision.coupon = Some("FREE_SESSION_1".into());
    decision.provider_compensation_minor = 5_000;
    decision.penalties = vec![Penalty::Warning];
    let result = ClaimTest::with(())
        .given(vec![filed(), assigned()])
        .when(ClaimCommand::Resolve(decision))
        .inspect_result()
        .unwrap();
    let [ClaimEvent::ClaimResolved(r)] = result.as_slice() else {
        panic!("one resolution expected: {result:?}")
    };
    assert_eq!(
        (
            r.refund_minor,
            r.additional_refund_minor,
            r.provider_payout_minor
        ),
        (40_001, 40_001, 39_999)
    );
    assert_eq!(r.coupon.as_deref(), Some("FREE_SESSION_1"));
    assert_eq!(r.penalties, vec![Penalty::Warning]);
    assert_eq!(r.seconds_to_resolve, 2 * 3600);
}

// --- appeal ----------------------------------------------------------------------------------------

fn appeal(at: DateTime<Utc>) -> ClaimCommand {
    ClaimCommand::Appeal {
        side: Side::Respondent,
        reason: "the accident report was ignored".into(),
        at,
    }
}

fn appealed(at: DateTime<Utc>) -> ClaimEvent {
    ClaimEvent::ClaimAppealed(ClaimAppealed {
        side: Side::Respondent,
        party: Party::Provider,
        reason: "the accident report was ignored".into(),
        at,
        customer_id: Some(CustomerId::parse("parent-lee").unwrap()),
    })
}

#[test]
fn a_resolution_can_be_appealed_within_7_days() {
    let resolved_at = resolution_time();
    let first = ClaimEvent::ClaimResolved(resolved(
        1,
        ClaimOutcome::Split,
        40_000,
        40_000,
        resolved_at,
    ));
    let closes = resolved_at + Duration::days(7);
    ClaimTest::with(())
        .given(vec![filed(), assigned(), first.clone()])
        .when(appeal(closes))
        .then_expect_events(vec![appealed(closes)]);
    ClaimTest::with(())
        .given(vec![filed(), assigned(), first.clone()])
        .when(appeal(closes + Duration::seconds(1)))
        .then_expect_error(ClaimError::AppealWindowClosed { closed_at: closes });
    ClaimTest::with(())
        .given(vec![filed(), assigned()])
        .when(appeal(closes))
        .then_expect_error(ClaimError::NotResolved);
}

#[test]
fn after_an_appeal_the_refund_can_rise_but_not_fall_and_only_the_difference_is_refunded() {
    let resolved_at = resolution_time();
    let first = ClaimEvent::ClaimResolved(resolved(
        1,
        ClaimOutcome::Split,
        40_000,
        40_000,
        resolved_at,
    ));
    let appeal_at = resolved_at + Duration::days(1);
    let reassigned = ClaimEvent::ClaimAssigned(ClaimAssigned {
        admin_id: admin(),
        at: appeal_at,
    });
    let answered = ClaimEvent::ClaimStatementSubmitted(ClaimStatementSubmitted {
        side: Side::Respondent,
        party: Party::Provider,
        text: "a traffic accident".into(),
        evidence: vec![],
        at: filing_time(),
        customer_id: Some(CustomerId::parse("parent-lee").unwrap()),
    });
    let given = vec![
        filed(),
        answered,
        assigned(),
        first,
        appealed(appeal_at),
        reassigned,
    ];
    let second_at = appeal_at + Duration::hours(3);
    ClaimTest::with(())
        .given(given.clone())
        .when(ClaimCommand::Resolve(resolve(
            ClaimOutcome::Split,
            30_000,
            50_000,
            second_at,
        )))
        .then_expect_error(ClaimError::RefundBelowEarlierDecision {
            earlier_minor: 40_000,
        });
    ClaimTest::with(())
        .given(given.clone())
        .when(ClaimCommand::Resolve(resolve(
            ClaimOutcome::ClaimantWins,
            80_000,
            0,
            second_at,
        )))
        .then_expect_events(vec![ClaimEvent::ClaimResolved(resolved(
            2,
            ClaimOutcome::ClaimantWins,
            80_000,
            40_000,
            second_at,
        ))]);
    // A rejected appeal keeps the first refund and changes nothing else.
    ClaimTest::with(())
        .given(given)
        .when(ClaimCommand::Resolve(resolve(
            ClaimOutcome::Rejected,
            40_000,
            40_000,
            second_at,
        )))
        .then_expect_events(vec![ClaimEvent::ClaimResolved(resolved(
            2,
            ClaimOutcome::Rejected,
            40_000,
            0,
            second_at,
        ))]);
}

#[test]
fn a_claim_is_appealed_once() {
    let resolved_at = resolution_time();
    let first = ClaimEvent::ClaimResolved(resolved(
        1,
        ClaimOutcome::Split,
        40_000,
        40_000,
        resolved_at,
    ));
    ClaimTest::with(())
        .given(vec![filed(), assigned(), first, appealed(resolved_at)])
        .when(appeal(resolved_at))
        .then_expect_error(ClaimError::AlreadyAppealed);
}

#[test]
fn refund_ids_are_derived_from_the_claim_and_round() {
    assert_eq!(refund_id(&claim_id(), 1).as_str(), "claim-clm-1234-1");
    let longest = ClaimId::parse("c".repeat(40)).unwrap();
    assert!(refund_id(&longest, 2).as_str().len() <= 64);
    assert!(ClaimId::parse("c".repeat(41)).is_err());
    assert!(ClaimId::generate().as_str().len() <= 40);
}

// --- invariants ----------------------------------------------------------------------------------

fn resolution_event(
    round: u32,
    refund_minor: i64,
    additional: i64,
    payout_minor: i64,
) -> ClaimEvent {
    ClaimEvent::ClaimResolved(ClaimResolved {
        round,
        order_id: OrderId::parse("order-0001").unwrap(),
        payee_id: PayeeId::parse("therapist-kim").unwrap(),
        currency: Currency::KRW,
        admin_id: admin(),
        outcome: ClaimOutcome::Split,
        reason: "both sides share the fault".into(),
        refund_minor,
        additional_refund_minor: additional,
        provider_payout_minor: payout_minor,
        coupon: None,
        provider_compensation_minor: 0,
        penalties: vec![],
        seconds_to_resolve: 3_600,
        at: filing_time() + Duration::hours(1),
        customer_id: Some(CustomerId::parse("parent-lee").unwrap()),
    })
}

/// The read half of the pair: a resolution that does not split exactly the amount at stake
/// trips the assertion when the claim is folded, instead of being served or settled.
#[test]
#[should_panic(expected = "splits 50000 + 20000 of 80000")]
fn a_resolution_that_does_not_split_the_amount_at_stake_trips_the_invariant() {
    use cqrs_es::Aggregate;
    let mut claim = Claim::default();
    claim.apply(filed());
    claim.apply(resolution_event(1, 50_000, 50_000, 20_000));
    claim.assert_invariants();
}

#[test]
#[should_panic(expected = "round 2's refunds do not add up")]
fn refunds_of_the_rounds_must_add_up_to_the_latest_refund() {
    use cqrs_es::Aggregate;
    let mut claim = Claim::default();
    claim.apply(filed());
    claim.apply(resolution_event(1, 40_000, 40_000, 40_000));
    // An appeal raises the refund to 60 000, so round 2 adds 20 000, not 60 000.
    claim.apply(resolution_event(2, 60_000, 60_000, 20_000));
    claim.assert_invariants();
}

#[test]
fn an_appealed_claim_whose_rounds_add_up_keeps_its_invariants() {
    use cqrs_es::Aggregate;
    let mut claim = Claim::default();
    claim.apply(filed());
    claim.apply(resolution_event(1, 40_000, 40_000, 40_000));
    claim.apply(resolution_event(2, 60_000, 20_000, 20_000));
    claim.assert_invariants();
}

#[test]
fn version_1_claim_events_decode_without_their_subject() {
    use payledger_domain::codec;
    let statement = serde_json::json!({"side": "respondent", "party": "provider", "text": "late",
        "evidence": [], "at": "2026-10-05T00:00:00Z"});
    let appeal = serde_json::json!({"side": "claimant", "party": "customer", "reason": "again",
        "at": "2026-10-05T00:00:00Z"});
    for (event_type, payload) in [
        ("ClaimStatementSubmitted", statement),
        ("ClaimAppealed", appeal),
    ] {
        let event: ClaimEvent = codec::decode(event_type, &payload).unwrap();
        let customer_id = match event {
            ClaimEvent::ClaimStatementSubmitted(s) => s.customer_id,
            ClaimEvent::ClaimAppealed(a) => a.customer_id,
            other => panic!("{other:?}"),
        };
        assert_eq!(customer_id, None, "{event_type}");
        assert_eq!(codec::schema_version(event_type), 2);
    }
    // Version 2 names the subject: the claim's customer, whichever side wrote the text.
    let (_, payload) = codec::encode(&appealed(filing_time())).unwrap();
    assert_eq!(payload["customerId"], "parent-lee");
}
