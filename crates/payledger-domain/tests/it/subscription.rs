//! The subscription aggregate and its dunning table (domain spec §3.3), specified as
//! given (history) / when (command) / then (events or error), plus walks through months of
//! billing that check the invariants after every step.

use chrono::{DateTime, Duration, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use cqrs_es::Aggregate;
use payledger_domain::billing::{
    BillingInterval, BillingKeyId, DunningPolicy, IntervalUnit, NotificationPriority, PlanId,
    SubscriptionId,
};
use payledger_domain::ids::{CustomerId, PaymentKey};
use payledger_domain::money::{Currency, Money};
use payledger_domain::order::OutcomeSource;
use payledger_domain::provider_failure::{FailureClass, ProviderFailure};
use payledger_domain::subscription::*;
use proptest::prelude::*;

type SubscriptionTest = TestFramework<Subscription>;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 31, 9, 0, 0).unwrap()
}

fn days(n: i64) -> Duration {
    Duration::days(n)
}

fn sub_id() -> SubscriptionId {
    SubscriptionId::parse("sub_1").unwrap()
}

fn key(name: &str) -> BillingKeyId {
    BillingKeyId::parse(name).unwrap()
}

fn started_event() -> SubscriptionStarted {
    SubscriptionStarted {
        subscription_id: sub_id(),
        customer_id: CustomerId::parse("cust_1").unwrap(),
        plan_id: PlanId::parse("standard").unwrap(),
        membership_level: 2,
        amount: Money::new(9_900, Currency::KRW).unwrap(),
        interval: BillingInterval::monthly(),
        billing_key_id: key("bk_1"),
        anchor: t0(),
        order_name: "Standard membership".into(),
        at: t0(),
        billed_by: None,
    }
}

fn started() -> SubscriptionEvent {
    SubscriptionEvent::SubscriptionStarted(started_event())
}

fn failure(class: FailureClass, code: &str) -> ProviderFailure {
    ProviderFailure {
        class,
        provider_code: code.into(),
        provider_message: format!("{code} (test)"),
    }
}

fn soft_decline() -> ProviderFailure {
    failure(FailureClass::SoftDecline, "REJECT_CARD_COMPANY")
}

fn refused(failure: ProviderFailure) -> ChargeOutcome {
    ChargeOutcome::Refused { failure }
}

fn approved() -> ChargeOutcome {
    ChargeOutcome::Approved {
        payment_key: PaymentKey::parse("pay_1").unwrap(),
        approved_at: t0(),
    }
}

/// A subscription driven command by command: the history grows with what each command appends,
/// exactly as the event store would hold it.
struct Sim {
    history: Vec<SubscriptionEvent>,
    policy: DunningPolicy,
}

impl Sim {
    fn started() -> Sim {
        Sim {
            history: vec![started()],
            policy: DunningPolicy::default(),
        }
    }

    fn run(
        &mut self,
        command: SubscriptionCommand,
    ) -> Result<Vec<SubscriptionEvent>, SubscriptionError> {
        let result = SubscriptionTest::with(())
            .given(self.history.clone())
            .when(command)
            .inspect_result();
        if let Ok(events) = &result {
            self.history.extend(events.iter().cloned());
        }
        result
    }

    fn state(&self) -> Subscription {
        let mut state = Subscription::default();
        for event in self.history.clone() {
            state.apply(event);
        }
        state
    }

    /// Starts an attempt at `at` and records `outcome` for it.
    fn charge(&mut self, at: DateTime<Utc>, outcome: ChargeOutcome) -> Vec<SubscriptionEvent> {
        self.run(SubscriptionCommand::StartChargeAttempt {
            trigger: AttemptTrigger::Scheduled,
            at,
        })
        .expect("a charge is due");
        let attempt = self.state().in_flight.expect("attempt recorded");
        self.run(SubscriptionCommand::RecordChargeOutcome {
            cycle: attempt.cycle,
            attempt: attempt.attempt,
            outcome,
            source: OutcomeSource::Request,
            policy: self.policy.clone(),
            at,
        })
        .expect("the outcome is recorded")
    }

    fn status(&self) -> SubscriptionStatus {
        self.state().status
    }
}

fn handling_of(events: &[SubscriptionEvent]) -> FailureHandling {
    events
        .iter()
        .find_map(|e| match e {
            SubscriptionEvent::ChargeFailed(failed) => Some(failed.handling.clone()),
            _ => None,
        })
        .expect("a ChargeFailed event")
}

fn event_types(events: &[SubscriptionEvent]) -> Vec<String> {
    use cqrs_es::DomainEvent;
    events.iter().map(DomainEvent::event_type).collect()
}

// ---------------------------------------------------------------------------------------------
// Starting and charging
// ---------------------------------------------------------------------------------------------

#[test]
fn starting_a_subscription_records_its_terms() {
    SubscriptionTest::with(())
        .given_no_previous_events()
        .when(SubscriptionCommand::Start(started_event()))
        .then_expect_events(vec![started()]);
}

#[test]
fn a_subscription_id_is_started_once() {
    SubscriptionTest::with(())
        .given(vec![started()])
        .when(SubscriptionCommand::Start(started_event()))
        .then_expect_error(SubscriptionError::AlreadyExists);
}

#[test]
fn the_anchor_cannot_lie_in_the_past_or_too_far_ahead() {
    let mut past = started_event();
    past.anchor = t0() - Duration::minutes(6);
    SubscriptionTest::with(())
        .given_no_previous_events()
        .when(SubscriptionCommand::Start(past))
        .then_expect_error(SubscriptionError::InvalidAnchor);
    let mut far = started_event();
    far.anchor = t0() + days(367);
    SubscriptionTest::with(())
        .given_no_previous_events()
        .when(SubscriptionCommand::Start(far))
        .then_expect_error(SubscriptionError::InvalidAnchor);
}

#[test]
fn an_order_name_holding_a_card_number_is_refused() {
    let mut named = started_event();
    named.order_name = format!(
        "card {}",
        payledger_domain::card_numbers::test_cards::VISA_SPACED
    );
    SubscriptionTest::with(())
        .given_no_previous_events()
        .when(SubscriptionCommand::Start(named))
        .then_expect_error(SubscriptionError::InvalidOrderName);
}

#[test]
fn nothing_is_charged_before_the_anchor() {
    SubscriptionTest::with(())
        .given(vec![started()])
        .when(SubscriptionCommand::StartChargeAttempt {
            trigger: AttemptTrigger::Scheduled,
            at: t0() - Duration::seconds(1),
        })
        .then_expect_error(SubscriptionError::NothingDue);
}

#[test]
fn at_the_anchor_the_first_attempt_gets_the_cycle_order_id_and_its_own_idempotency_key() {
    SubscriptionTest::with(())
        .given(vec![started()])
        .when(SubscriptionCommand::StartChargeAttempt {
            trigger: AttemptTrigger::Scheduled,
            at: t0(),
        })
        .then_expect_events(vec![SubscriptionEvent::ChargeAttemptStarted(
            ChargeAttemptStarted {
                cycle: 1,
                attempt: 1,
                trigger: AttemptTrigger::Scheduled,
                provider_order_id: "sub-sub_1-c1".into(),
                idempotency_key: "sub_1:1:1".into(),
                billing_key_id: key("bk_1"),
                amount_minor: 9_900,
                currency: Currency::KRW,
                period_start: t0(),
                period_end: Utc.with_ymd_and_hms(2026, 2, 28, 9, 0, 0).unwrap(),
                at: t0(),
            },
        )]);
}

#[test]
fn a_second_attempt_while_one_is_in_flight_is_refused() {
    let mut sim = Sim::started();
    sim.run(SubscriptionCommand::StartChargeAttempt {
        trigger: AttemptTrigger::Scheduled,
        at: t0(),
    })
    .unwrap();
    for trigger in [AttemptTrigger::Scheduled, AttemptTrigger::Admin] {
        assert_eq!(
            sim.run(SubscriptionCommand::StartChargeAttempt { trigger, at: t0() }),
            Err(SubscriptionError::AttemptInProgress)
        );
    }
}

#[test]
fn a_success_pays_the_cycle_and_schedules_the_next_from_the_anchor() {
    let mut sim = Sim::started();
    let events = sim.charge(t0(), approved());
    assert_eq!(event_types(&events), ["ChargeSucceeded"]);
    let state = sim.state();
    let feb_28 = Utc.with_ymd_and_hms(2026, 2, 28, 9, 0, 0).unwrap();
    assert_eq!(state.status, SubscriptionStatus::Active);
    assert_eq!(state.cycle, 2);
    assert_eq!(state.paid_through, Some(feb_28));
    assert_eq!(state.due_action(feb_28 - Duration::seconds(1)), None);
    assert_eq!(state.due_action(feb_28), Some(DueAction::Charge));
    // Cycle 3 starts on the 31st again: the anchor decides, not the clamped February date.
    sim.charge(feb_28, approved());
    assert_eq!(
        sim.state().next_charge_at,
        Some(Utc.with_ymd_and_hms(2026, 3, 31, 9, 0, 0).unwrap())
    );
}

#[test]
fn each_attempt_of_a_cycle_has_a_new_idempotency_key_but_the_same_order_id() {
    let mut sim = Sim::started();
    sim.charge(t0(), refused(soft_decline()));
    sim.run(SubscriptionCommand::StartChargeAttempt {
        trigger: AttemptTrigger::Scheduled,
        at: t0() + days(3),
    })
    .unwrap();
    let attempt = sim.state().in_flight.unwrap();
    assert_eq!(attempt.attempt, 2);
    assert_eq!(attempt.idempotency_key, "sub_1:1:2");
    assert_eq!(attempt.provider_order_id, "sub-sub_1-c1");
}

#[test]
fn a_late_duplicate_outcome_changes_nothing_and_an_outcome_for_no_attempt_is_refused() {
    let mut sim = Sim::started();
    sim.charge(t0(), approved());
    let duplicate = SubscriptionCommand::RecordChargeOutcome {
        cycle: 1,
        attempt: 1,
        outcome: refused(soft_decline()),
        source: OutcomeSource::Reconciler,
        policy: DunningPolicy::default(),
        at: t0(),
    };
    assert_eq!(sim.run(duplicate), Ok(vec![]));
    let never_started = SubscriptionCommand::RecordChargeOutcome {
        cycle: 2,
        attempt: 1,
        outcome: approved(),
        source: OutcomeSource::Reconciler,
        policy: DunningPolicy::default(),
        at: t0(),
    };
    assert_eq!(
        sim.run(never_started),
        Err(SubscriptionError::NoAttemptInFlight)
    );
}

// ---------------------------------------------------------------------------------------------
// The dunning table, row by row
// ---------------------------------------------------------------------------------------------

#[test]
fn row_soft_decline_makes_it_past_due_with_a_retry_three_days_after_the_first_failure() {
    let mut sim = Sim::started();
    let events = sim.charge(t0(), refused(soft_decline()));
    assert_eq!(
        handling_of(&events),
        FailureHandling::RetryScheduled {
            retry_number: 1,
            next_retry_at: t0() + days(3),
            first_failure_at: t0(),
            retry_schedule_days: vec![3, 7, 14],
        }
    );
    assert_eq!(
        events[1],
        SubscriptionEvent::PaymentFailedNotificationRequested(PaymentFailedNotificationRequested {
            customer_id: CustomerId::parse("cust_1").unwrap(),
            subscription_id: sub_id(),
            plan_id: PlanId::parse("standard").unwrap(),
            amount_minor: 9_900,
            currency: Currency::KRW,
            failure_code: "REJECT_CARD_COMPANY".into(),
            next_retry_at: t0() + days(3),
            priority: NotificationPriority::Urgent,
            at: t0(),
        })
    );
    let state = sim.state();
    assert_eq!(state.status, SubscriptionStatus::PastDue);
    assert_eq!(state.retry_count(), 0);
    assert_eq!(state.next_retry_at(), Some(t0() + days(3)));
}

#[test]
fn soft_decline_retries_fall_exactly_3_7_and_14_days_after_the_first_failure_then_suspend() {
    let mut sim = Sim::started();
    let first = t0();
    sim.charge(first, refused(soft_decline()));
    for (retry, (due_day, next_day)) in [(3, Some(7)), (7, Some(14)), (14, None)]
        .into_iter()
        .enumerate()
    {
        let due = first + days(due_day);
        let state = sim.state();
        assert_eq!(
            state.due_action(due - Duration::seconds(1)),
            None,
            "retry {retry} early"
        );
        assert_eq!(
            state.due_action(due),
            Some(DueAction::Charge),
            "retry {retry} on time"
        );
        assert_eq!(
            sim.run(SubscriptionCommand::StartChargeAttempt {
                trigger: AttemptTrigger::Scheduled,
                at: due - Duration::seconds(1),
            }),
            Err(SubscriptionError::NothingDue)
        );
        let events = sim.charge(due, refused(soft_decline()));
        match next_day {
            Some(next_day) => {
                assert_eq!(sim.status(), SubscriptionStatus::PastDue);
                assert_eq!(sim.state().retry_count(), retry as u32 + 1);
                assert_eq!(sim.state().next_retry_at(), Some(first + days(next_day)));
            }
            None => {
                assert_eq!(
                    event_types(&events),
                    [
                        "ChargeFailed",
                        "SubscriptionSuspended",
                        "SubscriptionSuspendedNotificationRequested"
                    ]
                );
                assert_eq!(
                    handling_of(&events),
                    FailureHandling::RetriesExhausted { retries: 3 }
                );
                let state = sim.state();
                assert_eq!(state.status, SubscriptionStatus::Suspended);
                assert_eq!(
                    state.suspended_reason.as_deref(),
                    Some("PAYMENT_FAILED_MAX_RETRIES")
                );
                assert_eq!(state.next_due(), None);
            }
        }
    }
    assert_eq!(
        sim.run(SubscriptionCommand::StartChargeAttempt {
            trigger: AttemptTrigger::Scheduled,
            at: first + days(60),
        }),
        Err(SubscriptionError::Suspended)
    );
}

#[test]
fn a_retry_that_succeeds_ends_dunning_and_keeps_the_anchor() {
    let mut sim = Sim::started();
    sim.charge(t0(), refused(soft_decline()));
    sim.charge(t0() + days(3), approved());
    let state = sim.state();
    assert_eq!(state.status, SubscriptionStatus::Active);
    assert_eq!(state.retry_count(), 0);
    assert_eq!(state.dunning, None);
    assert_eq!(
        state.next_charge_at,
        Some(Utc.with_ymd_and_hms(2026, 2, 28, 9, 0, 0).unwrap())
    );
}

#[test]
fn rows_expired_and_stopped_cards_require_a_payment_method_and_are_never_retried() {
    for code in ["INVALID_CARD_EXPIRATION", "INVALID_STOPPED_CARD"] {
        let mut sim = Sim::started();
        let events = sim.charge(t0(), refused(failure(FailureClass::CardUnusable, code)));
        assert_eq!(
            handling_of(&events),
            FailureHandling::PaymentMethodRequired {
                grace_ends_at: None
            }
        );
        assert_eq!(
            events[1],
            SubscriptionEvent::PaymentMethodUpdateNotificationRequested(
                PaymentMethodUpdateNotificationRequested {
                    customer_id: CustomerId::parse("cust_1").unwrap(),
                    subscription_id: sub_id(),
                    plan_id: PlanId::parse("standard").unwrap(),
                    failure_code: code.into(),
                    grace_ends_at: None,
                    priority: NotificationPriority::Urgent,
                    at: t0(),
                }
            )
        );
        assert_eq!(sim.status(), SubscriptionStatus::RequiresPaymentMethod);
        assert_eq!(sim.state().next_due(), None, "{code}: no automatic retry");
        assert_eq!(
            sim.run(SubscriptionCommand::StartChargeAttempt {
                trigger: AttemptTrigger::Scheduled,
                at: t0() + days(365),
            }),
            Err(SubscriptionError::NothingDue)
        );
    }
}

#[test]
fn row_over_the_limit_requires_a_payment_method() {
    let mut sim = Sim::started();
    let events = sim.charge(
        t0(),
        refused(failure(FailureClass::ExceedsLimit, "EXCEED_MAX_AMOUNT")),
    );
    assert_eq!(
        handling_of(&events),
        FailureHandling::PaymentMethodRequired {
            grace_ends_at: None
        }
    );
    assert_eq!(sim.status(), SubscriptionStatus::RequiresPaymentMethod);
    assert_eq!(sim.state().next_due(), None);
}

#[test]
fn row_invalid_billing_key_gives_seven_days_of_grace_then_suspends() {
    let mut sim = Sim::started();
    let events = sim.charge(
        t0(),
        refused(failure(
            FailureClass::BillingKeyInvalid,
            "INVALID_BILL_KEY_REQUEST",
        )),
    );
    let grace_end = t0() + days(7);
    assert_eq!(
        handling_of(&events),
        FailureHandling::PaymentMethodRequired {
            grace_ends_at: Some(grace_end)
        }
    );
    let state = sim.state();
    assert_eq!(state.status, SubscriptionStatus::RequiresPaymentMethod);
    assert_eq!(state.due_action(grace_end - Duration::seconds(1)), None);
    assert_eq!(
        state.due_action(grace_end),
        Some(DueAction::SuspendAfterGrace)
    );
    assert_eq!(
        sim.run(SubscriptionCommand::SuspendAfterGrace {
            at: grace_end - Duration::seconds(1)
        }),
        Err(SubscriptionError::NothingDue)
    );
    let events = sim
        .run(SubscriptionCommand::SuspendAfterGrace { at: grace_end })
        .unwrap();
    assert_eq!(
        events,
        vec![
            SubscriptionEvent::SubscriptionSuspended(SubscriptionSuspended {
                reason_code: "BILLING_KEY_GRACE_EXPIRED".into(),
                at: grace_end,
            }),
            SubscriptionEvent::SubscriptionSuspendedNotificationRequested(
                SubscriptionSuspendedNotificationRequested {
                    customer_id: CustomerId::parse("cust_1").unwrap(),
                    subscription_id: sub_id(),
                    plan_id: PlanId::parse("standard").unwrap(),
                    reason_code: "BILLING_KEY_GRACE_EXPIRED".into(),
                    priority: NotificationPriority::Urgent,
                    at: grace_end,
                }
            ),
        ]
    );
    assert_eq!(sim.status(), SubscriptionStatus::Suspended);
}

#[test]
fn a_second_billing_key_failure_does_not_extend_the_grace_period() {
    let mut sim = Sim::started();
    let invalid = || {
        refused(failure(
            FailureClass::BillingKeyInvalid,
            "NOT_FOUND_BILLING",
        ))
    };
    sim.charge(t0(), invalid());
    // An admin tries again two days later, with the same dead key.
    sim.run(SubscriptionCommand::StartChargeAttempt {
        trigger: AttemptTrigger::Admin,
        at: t0() + days(2),
    })
    .unwrap();
    let events = sim
        .run(SubscriptionCommand::RecordChargeOutcome {
            cycle: 1,
            attempt: 2,
            outcome: invalid(),
            source: OutcomeSource::Request,
            policy: DunningPolicy::default(),
            at: t0() + days(2),
        })
        .unwrap();
    assert_eq!(
        handling_of(&events),
        FailureHandling::PaymentMethodRequired {
            grace_ends_at: Some(t0() + days(7))
        }
    );
}

#[test]
fn row_provider_error_keeps_the_status_and_retries_in_minutes_without_counting() {
    let provider_error = || refused(failure(FailureClass::ProviderError, "PROVIDER_ERROR"));
    let mut sim = Sim::started();
    let events = sim.charge(t0(), provider_error());
    assert_eq!(
        handling_of(&events),
        FailureHandling::ProviderBackoff {
            provider_retry: 1,
            next_attempt_at: t0() + Duration::minutes(1),
        }
    );
    assert_eq!(
        event_types(&events),
        ["ChargeFailed"],
        "no customer notification"
    );
    assert_eq!(sim.status(), SubscriptionStatus::Active);
    assert_eq!(sim.state().due_action(t0() + Duration::seconds(59)), None);

    // In dunning too: past_due stays past_due and the retry count does not move.
    let mut sim = Sim::started();
    sim.charge(t0(), refused(soft_decline()));
    sim.charge(t0() + days(3), provider_error());
    let state = sim.state();
    assert_eq!(state.status, SubscriptionStatus::PastDue);
    assert_eq!(state.retry_count(), 0);
    let retry_at = t0() + days(3) + Duration::minutes(1);
    assert_eq!(state.due_action(retry_at), Some(DueAction::Charge));
    // The backoff try that then soft-declines counts as retry 1: next is day 7.
    sim.charge(retry_at, refused(soft_decline()));
    assert_eq!(sim.state().retry_count(), 1);
    assert_eq!(sim.state().next_retry_at(), Some(t0() + days(7)));
}

#[test]
fn provider_errors_follow_the_backoff_schedule_and_then_need_review() {
    let provider_error = || refused(failure(FailureClass::ProviderError, "PROVIDER_ERROR"));
    let mut sim = Sim::started();
    let mut at = t0();
    for (retry, minutes) in [1, 5, 15, 60, 240, 720].into_iter().enumerate() {
        let events = sim.charge(at, provider_error());
        assert_eq!(
            handling_of(&events),
            FailureHandling::ProviderBackoff {
                provider_retry: retry as u32 + 1,
                next_attempt_at: at + Duration::minutes(minutes),
            }
        );
        at += Duration::minutes(minutes);
    }
    let events = sim.charge(at, provider_error());
    assert_eq!(
        handling_of(&events),
        FailureHandling::ProviderRetriesExhausted {
            provider_retries: 6
        }
    );
    assert_eq!(sim.status(), SubscriptionStatus::NeedsReview);
    assert_eq!(sim.state().next_due(), None);
}

#[test]
fn row_unknown_codes_go_to_manual_review() {
    for class in [
        FailureClass::Unclassified,
        FailureClass::InvalidRequest,
        FailureClass::NotFound,
    ] {
        let mut sim = Sim::started();
        let events = sim.charge(t0(), refused(failure(class, "SANDBOX_UNKNOWN_CODE")));
        assert_eq!(handling_of(&events), FailureHandling::ManualReview);
        assert_eq!(event_types(&events), ["ChargeFailed"]);
        assert_eq!(sim.status(), SubscriptionStatus::NeedsReview, "{class:?}");
        assert_eq!(sim.state().next_due(), None);
    }
}

// ---------------------------------------------------------------------------------------------
// Unknown outcomes and stale attempts
// ---------------------------------------------------------------------------------------------

#[test]
fn an_unknown_outcome_is_recorded_once_and_looked_at_after_the_stale_time() {
    let mut sim = Sim::started();
    sim.run(SubscriptionCommand::StartChargeAttempt {
        trigger: AttemptTrigger::Scheduled,
        at: t0(),
    })
    .unwrap();
    let unknown = |at| SubscriptionCommand::RecordChargeOutcome {
        cycle: 1,
        attempt: 1,
        outcome: ChargeOutcome::Unknown {
            reason: "timeout".into(),
        },
        source: OutcomeSource::Request,
        policy: DunningPolicy::default(),
        at,
    };
    assert_eq!(
        event_types(&sim.run(unknown(t0())).unwrap()),
        ["ChargeOutcomeUnknown"]
    );
    assert_eq!(sim.run(unknown(t0())), Ok(vec![]));
    let stale = t0() + Duration::seconds(ATTEMPT_STALE_AFTER_SECONDS);
    let state = sim.state();
    assert_eq!(state.due_action(stale - Duration::seconds(1)), None);
    assert_eq!(
        state.due_action(stale),
        Some(DueAction::Resolve {
            cycle: 1,
            attempt: 1
        })
    );
    assert_eq!(
        sim.run(SubscriptionCommand::RedriveAttempt {
            at: stale - Duration::seconds(1)
        }),
        Err(SubscriptionError::AttemptInProgress)
    );
    assert_eq!(
        sim.run(SubscriptionCommand::RedriveAttempt { at: stale }),
        Ok(vec![SubscriptionEvent::ChargeAttemptRedriven(
            ChargeAttemptRedriven {
                cycle: 1,
                attempt: 1,
                redrive: 1,
                at: stale,
            }
        )])
    );
    // The same attempt, the same key: nothing new for the provider to charge twice.
    assert_eq!(sim.state().in_flight.unwrap().idempotency_key, "sub_1:1:1");
}

#[test]
fn an_attempt_is_sent_again_at_most_five_times() {
    let mut sim = Sim::started();
    sim.run(SubscriptionCommand::StartChargeAttempt {
        trigger: AttemptTrigger::Scheduled,
        at: t0(),
    })
    .unwrap();
    let mut at = t0();
    for _ in 0..MAX_REDRIVES_PER_ATTEMPT {
        at += Duration::seconds(ATTEMPT_STALE_AFTER_SECONDS);
        sim.run(SubscriptionCommand::RedriveAttempt { at }).unwrap();
    }
    at += Duration::seconds(ATTEMPT_STALE_AFTER_SECONDS);
    assert_eq!(
        sim.run(SubscriptionCommand::RedriveAttempt { at }),
        Err(SubscriptionError::RedrivesExhausted)
    );
}

#[test]
fn already_processed_is_never_taken_as_success_without_looking_it_up() {
    let mut sim = Sim::started();
    let events = sim.charge(
        t0(),
        refused(failure(
            FailureClass::AlreadyProcessed,
            "DUPLICATED_ORDER_ID",
        )),
    );
    assert_eq!(event_types(&events), ["ChargeOutcomeUnknown"]);
    assert_eq!(sim.state().paid_cycles, 0);
    assert!(sim.state().in_flight.is_some());
}

// ---------------------------------------------------------------------------------------------
// Payment method changes
// ---------------------------------------------------------------------------------------------

#[test]
fn a_new_payment_method_charges_past_due_and_requires_payment_method_subscriptions_at_once() {
    let cases: Vec<(&str, ProviderFailure)> = vec![
        ("past_due", soft_decline()),
        (
            "requires_payment_method",
            failure(FailureClass::CardUnusable, "INVALID_CARD_EXPIRATION"),
        ),
        (
            "requires_payment_method with grace",
            failure(FailureClass::BillingKeyInvalid, "INVALID_BILL_KEY_REQUEST"),
        ),
    ];
    for (name, failed_with) in cases {
        let mut sim = Sim::started();
        sim.charge(t0(), refused(failed_with));
        let before = sim.status();
        let changed_at = t0() + days(1);
        let events = sim
            .run(SubscriptionCommand::ChangePaymentMethod {
                billing_key_id: key("bk_2"),
                at: changed_at,
            })
            .unwrap();
        assert_eq!(
            events,
            vec![SubscriptionEvent::PaymentMethodChanged(
                PaymentMethodChanged {
                    billing_key_id: key("bk_2"),
                    previous_billing_key_id: key("bk_1"),
                    status_before: before,
                    charge_now: true,
                    at: changed_at,
                }
            )],
            "{name}"
        );
        let state = sim.state();
        assert_eq!(state.status, SubscriptionStatus::Active, "{name}");
        assert_eq!(state.retry_count(), 0, "{name}");
        assert_eq!(state.grace_ends_at, None, "{name}");
        assert_eq!(
            state.due_action(changed_at),
            Some(DueAction::Charge),
            "{name}"
        );
        sim.run(SubscriptionCommand::StartChargeAttempt {
            trigger: AttemptTrigger::PaymentMethodChanged,
            at: changed_at,
        })
        .unwrap();
        assert_eq!(sim.state().in_flight.unwrap().billing_key_id, key("bk_2"));
    }
}

#[test]
fn a_new_payment_method_restarts_a_suspended_subscription() {
    let mut sim = Sim::started();
    sim.charge(t0(), refused(soft_decline()));
    for day in [3, 7, 14] {
        sim.charge(t0() + days(day), refused(soft_decline()));
    }
    assert_eq!(sim.status(), SubscriptionStatus::Suspended);
    sim.run(SubscriptionCommand::ChangePaymentMethod {
        billing_key_id: key("bk_2"),
        at: t0() + days(20),
    })
    .unwrap();
    sim.charge(t0() + days(20), approved());
    assert_eq!(sim.status(), SubscriptionStatus::Active);
    assert_eq!(sim.state().paid_cycles, 1);
}

#[test]
fn changing_the_method_of_a_subscription_in_good_standing_only_swaps_the_key() {
    let mut sim = Sim::started();
    sim.charge(t0(), approved());
    assert_eq!(
        sim.run(SubscriptionCommand::ChangePaymentMethod {
            billing_key_id: key("bk_1"),
            at: t0(),
        }),
        Ok(vec![])
    );
    let events = sim
        .run(SubscriptionCommand::ChangePaymentMethod {
            billing_key_id: key("bk_2"),
            at: t0(),
        })
        .unwrap();
    let SubscriptionEvent::PaymentMethodChanged(changed) = &events[0] else {
        panic!("expected PaymentMethodChanged");
    };
    assert!(!changed.charge_now);
    assert_eq!(sim.state().due_action(t0() + days(1)), None);
}

// ---------------------------------------------------------------------------------------------
// Configuration is captured when something is scheduled
// ---------------------------------------------------------------------------------------------

#[test]
fn retries_follow_the_schedule_captured_at_the_first_failure_not_the_policy_in_force_later() {
    let mut sim = Sim::started();
    sim.charge(t0(), refused(soft_decline()));
    // The operator shortens the schedule after the first failure.
    sim.policy = DunningPolicy::new(vec![1, 2], 1, vec![2]).unwrap();
    let events = sim.charge(t0() + days(3), refused(soft_decline()));
    assert_eq!(
        handling_of(&events),
        FailureHandling::RetryScheduled {
            retry_number: 2,
            next_retry_at: t0() + days(7),
            first_failure_at: t0(),
            retry_schedule_days: vec![3, 7, 14],
        }
    );
    // Retries 2 and 3 still run; only the third failed retry suspends.
    sim.charge(t0() + days(7), refused(soft_decline()));
    assert_eq!(sim.status(), SubscriptionStatus::PastDue);
    sim.charge(t0() + days(14), refused(soft_decline()));
    assert_eq!(sim.status(), SubscriptionStatus::Suspended);
}

#[test]
fn a_new_dunning_run_uses_the_policy_in_force_when_it_starts() {
    let mut sim = Sim::started();
    sim.charge(t0(), approved());
    sim.policy = DunningPolicy::new(vec![1, 2], 3, vec![2]).unwrap();
    let second_cycle = Utc.with_ymd_and_hms(2026, 2, 28, 9, 0, 0).unwrap();
    let events = sim.charge(second_cycle, refused(soft_decline()));
    assert_eq!(
        handling_of(&events),
        FailureHandling::RetryScheduled {
            retry_number: 1,
            next_retry_at: second_cycle + days(1),
            first_failure_at: second_cycle,
            retry_schedule_days: vec![1, 2],
        }
    );
    sim.charge(second_cycle + days(1), refused(soft_decline()));
    sim.charge(second_cycle + days(2), refused(soft_decline()));
    assert_eq!(sim.status(), SubscriptionStatus::Suspended);
}

#[test]
fn the_grace_period_and_the_backoff_are_fixed_when_scheduled() {
    let mut sim = Sim::started();
    sim.policy = DunningPolicy::new(vec![3], 2, vec![10]).unwrap();
    sim.charge(
        t0(),
        refused(failure(
            FailureClass::BillingKeyInvalid,
            "BILLING_KEY_EXPIRED",
        )),
    );
    sim.policy = DunningPolicy::default();
    // The default policy's 7 days do not apply to a grace period that started under 2 days.
    assert_eq!(
        sim.state().due_action(t0() + days(2)),
        Some(DueAction::SuspendAfterGrace)
    );

    let mut sim = Sim::started();
    sim.policy = DunningPolicy::new(vec![3], 2, vec![10]).unwrap();
    let events = sim.charge(
        t0(),
        refused(failure(FailureClass::ProviderError, "PROVIDER_ERROR")),
    );
    assert_eq!(
        handling_of(&events),
        FailureHandling::ProviderBackoff {
            provider_retry: 1,
            next_attempt_at: t0() + Duration::minutes(10),
        }
    );
}

// ---------------------------------------------------------------------------------------------
// Cancellation, resumption, end
// ---------------------------------------------------------------------------------------------

#[test]
fn cancel_at_period_end_keeps_benefits_until_the_paid_period_ends() {
    let mut sim = Sim::started();
    sim.charge(t0(), approved());
    let period_end = Utc.with_ymd_and_hms(2026, 2, 28, 9, 0, 0).unwrap();
    let events = sim
        .run(SubscriptionCommand::CancelAtPeriodEnd { at: t0() + days(1) })
        .unwrap();
    assert_eq!(
        events,
        vec![SubscriptionEvent::CancellationScheduled(
            CancellationScheduled {
                effective_at: period_end,
                at: t0() + days(1),
            }
        )]
    );
    let state = sim.state();
    assert_eq!(state.membership_level(period_end - Duration::seconds(1)), 2);
    assert_eq!(state.membership_level(period_end), 0);
    assert_eq!(
        state.due_action(period_end),
        Some(DueAction::EndAtPeriodEnd)
    );
    assert_eq!(
        sim.run(SubscriptionCommand::StartChargeAttempt {
            trigger: AttemptTrigger::Scheduled,
            at: period_end,
        }),
        Err(SubscriptionError::NothingDue),
        "a cancelled subscription is not charged again"
    );
    assert_eq!(
        sim.run(SubscriptionCommand::EndAtPeriodEnd {
            at: period_end - Duration::seconds(1)
        }),
        Err(SubscriptionError::NothingDue)
    );
    let events = sim
        .run(SubscriptionCommand::EndAtPeriodEnd { at: period_end })
        .unwrap();
    assert_eq!(
        events,
        vec![SubscriptionEvent::SubscriptionEnded(SubscriptionEnded {
            reason: EndReason::CanceledAtPeriodEnd,
            at: period_end,
        })]
    );
    assert_eq!(sim.state().next_due(), None);
}

#[test]
fn resuming_before_the_period_ends_withdraws_the_cancellation() {
    let mut sim = Sim::started();
    sim.charge(t0(), approved());
    sim.run(SubscriptionCommand::CancelAtPeriodEnd { at: t0() })
        .unwrap();
    assert_eq!(
        event_types(&sim.run(SubscriptionCommand::Resume { at: t0() }).unwrap()),
        ["CancellationWithdrawn"]
    );
    assert_eq!(
        sim.run(SubscriptionCommand::Resume { at: t0() }),
        Ok(vec![])
    );
    let period_end = Utc.with_ymd_and_hms(2026, 2, 28, 9, 0, 0).unwrap();
    assert_eq!(sim.state().due_action(period_end), Some(DueAction::Charge));
}

#[test]
fn cancelling_with_no_paid_time_left_ends_at_once() {
    let mut sim = Sim::started();
    sim.charge(t0(), refused(soft_decline()));
    let events = sim
        .run(SubscriptionCommand::CancelAtPeriodEnd { at: t0() + days(1) })
        .unwrap();
    assert_eq!(
        events,
        vec![SubscriptionEvent::SubscriptionEnded(SubscriptionEnded {
            reason: EndReason::EndedImmediately,
            at: t0() + days(1),
        })]
    );
    assert_eq!(
        sim.run(SubscriptionCommand::Resume { at: t0() + days(1) }),
        Err(SubscriptionError::Ended)
    );
    assert_eq!(
        sim.run(SubscriptionCommand::ChangePaymentMethod {
            billing_key_id: key("bk_2"),
            at: t0() + days(1)
        }),
        Err(SubscriptionError::Ended)
    );
}

#[test]
fn ending_waits_for_an_attempt_in_flight() {
    let mut sim = Sim::started();
    sim.run(SubscriptionCommand::StartChargeAttempt {
        trigger: AttemptTrigger::Scheduled,
        at: t0(),
    })
    .unwrap();
    assert_eq!(
        sim.run(SubscriptionCommand::EndNow { at: t0() }),
        Err(SubscriptionError::AttemptInProgress)
    );
}

// ---------------------------------------------------------------------------------------------
// Membership
// ---------------------------------------------------------------------------------------------

#[test]
fn membership_needs_a_paid_cycle_and_ends_with_suspension() {
    let mut sim = Sim::started();
    assert_eq!(sim.state().membership_level(t0()), 0, "not paid yet");
    sim.charge(t0(), approved());
    assert_eq!(sim.state().membership_level(t0()), 2);
    let second = Utc.with_ymd_and_hms(2026, 2, 28, 9, 0, 0).unwrap();
    sim.charge(second, refused(soft_decline()));
    assert_eq!(
        sim.state().membership_level(second + days(1)),
        2,
        "kept while past due"
    );
    for day in [3, 7, 14] {
        sim.charge(second + days(day), refused(soft_decline()));
    }
    assert_eq!(sim.state().membership_level(second + days(14)), 0);
}

#[test]
fn membership_while_a_payment_method_is_required_lasts_through_the_paid_period_or_the_grace() {
    let mut sim = Sim::started();
    sim.charge(t0(), approved());
    let second = Utc.with_ymd_and_hms(2026, 2, 28, 9, 0, 0).unwrap();
    sim.charge(
        second,
        refused(failure(FailureClass::CardUnusable, "INVALID_STOPPED_CARD")),
    );
    assert_eq!(
        sim.state().membership_level(second),
        0,
        "the paid period is over"
    );

    let mut sim = Sim::started();
    sim.charge(t0(), approved());
    sim.charge(
        second,
        refused(failure(
            FailureClass::BillingKeyInvalid,
            "NOT_FOUND_BILLING",
        )),
    );
    let state = sim.state();
    assert_eq!(
        state.membership_level(second + days(7) - Duration::seconds(1)),
        2
    );
    assert_eq!(state.membership_level(second + days(7)), 0);
}

// ---------------------------------------------------------------------------------------------
// Months of billing with random outcomes
// ---------------------------------------------------------------------------------------------

fn outcome_strategy() -> impl Strategy<Value = ChargeOutcome> {
    prop_oneof![
        4 => Just(approved()),
        2 => Just(refused(soft_decline())),
        1 => Just(refused(failure(FailureClass::ProviderError, "PROVIDER_ERROR"))),
        1 => Just(refused(failure(FailureClass::CardUnusable, "INVALID_CARD_EXPIRATION"))),
        1 => Just(refused(failure(FailureClass::BillingKeyInvalid, "NOT_FOUND_BILLING"))),
        1 => Just(refused(failure(FailureClass::ExceedsLimit, "EXCEED_MAX_AMOUNT"))),
        1 => Just(refused(failure(FailureClass::Unclassified, "NEW_CODE"))),
        1 => Just(ChargeOutcome::Unknown { reason: "timeout".into() }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A scheduler that does whatever is due, for a year, whatever the provider answers: no cycle
    /// is paid twice, no idempotency key is used twice, nothing happens before it is due, and the
    /// state's invariants (asserted inside the aggregate) hold after every command.
    #[test]
    fn a_year_of_scheduled_billing_keeps_its_promises(
        outcomes in prop::collection::vec(outcome_strategy(), 1..60),
        method_changes in prop::collection::vec(any::<bool>(), 60),
        interval_days in 1u32..40,
    ) {
        let mut terms = started_event();
        terms.interval = BillingInterval::new(IntervalUnit::Day, interval_days).unwrap();
        let mut sim = Sim { history: vec![SubscriptionEvent::SubscriptionStarted(terms)], policy: DunningPolicy::default() };
        let end = t0() + days(365);
        let mut outcomes = outcomes.into_iter().cycle();
        let mut keys = std::collections::HashSet::new();
        let mut paid_cycles = std::collections::HashSet::new();
        let mut step = 0;
        while let Some((due_at, action)) = sim.state().next_due() {
            if due_at > end || step > 400 { break; }
            step += 1;
            match action {
                DueAction::Charge => {
                    let events = sim.run(SubscriptionCommand::StartChargeAttempt { trigger: AttemptTrigger::Scheduled, at: due_at }).unwrap();
                    prop_assert_eq!(sim.run(SubscriptionCommand::StartChargeAttempt { trigger: AttemptTrigger::Scheduled, at: due_at }), Err(SubscriptionError::AttemptInProgress));
                    let SubscriptionEvent::ChargeAttemptStarted(started) = &events[0] else { panic!("attempt") };
                    prop_assert!(keys.insert(started.idempotency_key.clone()), "key reused");
                    prop_assert!(started.period_start <= due_at);
                    let outcome = outcomes.next().unwrap();
                    let recorded = sim.run(SubscriptionCommand::RecordChargeOutcome {
                        cycle: started.cycle, attempt: started.attempt, outcome,
                        source: OutcomeSource::Request, policy: DunningPolicy::default(), at: due_at,
                    }).unwrap();
                    for event in &recorded {
                        if let SubscriptionEvent::ChargeSucceeded(s) = event {
                            prop_assert!(paid_cycles.insert(s.cycle), "cycle {} paid twice", s.cycle);
                        }
                    }
                }
                DueAction::Resolve { cycle, attempt } => {
                    // The provider is asked and knew nothing: the attempt is sent again, or
                    // given up as a provider error once it was sent too often.
                    match sim.run(SubscriptionCommand::RedriveAttempt { at: due_at }) {
                        Ok(_) => {
                            sim.run(SubscriptionCommand::RecordChargeOutcome {
                                cycle, attempt, outcome: approved(), source: OutcomeSource::Reconciler,
                                policy: DunningPolicy::default(), at: due_at,
                            }).unwrap();
                            prop_assert!(paid_cycles.insert(cycle), "cycle {} paid twice", cycle);
                        }
                        Err(e) => {
                            prop_assert_eq!(e, SubscriptionError::RedrivesExhausted);
                            sim.run(SubscriptionCommand::RecordChargeOutcome {
                                cycle, attempt,
                                outcome: refused(failure(FailureClass::ProviderError, "NOT_CHARGED")),
                                source: OutcomeSource::Reconciler,
                                policy: DunningPolicy::default(), at: due_at,
                            }).unwrap();
                        }
                    }
                }
                DueAction::SuspendAfterGrace => {
                    sim.run(SubscriptionCommand::SuspendAfterGrace { at: due_at }).unwrap();
                }
                DueAction::EndAtPeriodEnd => {
                    sim.run(SubscriptionCommand::EndAtPeriodEnd { at: due_at }).unwrap();
                }
            }
            let state = sim.state();
            prop_assert!(state.retry_count() <= 3);
            prop_assert_eq!(state.paid_cycles as usize, paid_cycles.len());
            if matches!(state.status, SubscriptionStatus::RequiresPaymentMethod | SubscriptionStatus::Suspended | SubscriptionStatus::NeedsReview)
                && method_changes[step % method_changes.len()]
            {
                let at = due_at + Duration::hours(1);
                sim.run(SubscriptionCommand::ChangePaymentMethod { billing_key_id: key(&format!("bk_{step}")), at }).unwrap();
                prop_assert_eq!(sim.state().due_action(at), Some(DueAction::Charge));
            }
        }
    }
}
