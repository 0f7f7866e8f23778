//! The order aggregate, specified as given (history) / when (command) / then (events or error).

use chrono::{DateTime, Duration, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use payledger_domain::ids::{CustomerId, OrderId, PayeeId, PaymentKey, RefundId};
use payledger_domain::money::{Currency, Money};
use payledger_domain::order::*;
use payledger_domain::provider_fact::{Difference, PaymentFact, PaymentFactStatus};
use payledger_domain::provider_failure::{FailureClass, ProviderFailure};

type OrderTest = TestFramework<Order>;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).unwrap()
}

fn order_id() -> OrderId {
    OrderId::parse("order-0001").unwrap()
}

fn key() -> PaymentKey {
    PaymentKey::parse("pk_test_1").unwrap()
}

fn placed(amount_minor: i64) -> OrderEvent {
    OrderEvent::OrderPlaced(PlaceOrder {
        order_id: order_id(),
        amount: Money::new(amount_minor, Currency::KRW).unwrap(),
        customer_id: CustomerId::parse("cust_1").unwrap(),
        payee_id: PayeeId::parse("payee_1").unwrap(),
        order_name: "Yoga class".into(),
        provider: "sandbox".into(),
        service_starts_at: None,
        placed_at: t0(),
    })
}

fn started(attempt: u32) -> OrderEvent {
    started_at(attempt, t0())
}

fn started_at(attempt: u32, at: DateTime<Utc>) -> OrderEvent {
    OrderEvent::PaymentConfirmationStarted(ConfirmationStarted {
        payment_key: key(),
        amount_minor: 50_000,
        attempt,
        idempotency_key: format!("order-order-0001:confirm:{attempt}"),
        at,
    })
}

fn captured() -> OrderEvent {
    OrderEvent::PaymentCaptured(PaymentCaptured {
        payment_key: key(),
        amount_minor: 50_000,
        currency: Currency::KRW,
        payee_id: PayeeId::parse("payee_1").unwrap(),
        approved_at: t0(),
        method: Some("CARD".into()),
        source: OutcomeSource::Request,
    })
}

/// The provider's report of this order's payment.
fn fact(status: PaymentFactStatus, amount_minor: i64) -> PaymentFact {
    PaymentFact {
        provider: "toss".into(),
        order_id: "order-0001".into(),
        payment_key: "pk_test_1".into(),
        status,
        provider_status: "DONE".into(),
        amount_minor,
        refunded_minor: 0,
        currency: Currency::KRW,
        approved_at: Some(t0()),
        method: Some("CARD".into()),
        client_key: None,
    }
}

fn refund_requested(id: &str, amount_minor: i64) -> OrderEvent {
    OrderEvent::RefundRequested(RefundRequested {
        refund_id: RefundId::parse(id).unwrap(),
        amount_minor,
        currency: Currency::KRW,
        reason: "changed mind".into(),
        idempotency_key: format!("order-order-0001:refund:{id}"),
        at: t0(),
        customer_id: Some(CustomerId::parse("cust_1").unwrap()),
        reason_digest: None,
    })
}

fn refund_completed(id: &str, amount_minor: i64) -> OrderEvent {
    OrderEvent::RefundCompleted(RefundCompleted {
        refund_id: RefundId::parse(id).unwrap(),
        amount_minor,
        currency: Currency::KRW,
        payee_id: PayeeId::parse("payee_1").unwrap(),
        transaction_key: format!("tx_{id}"),
        source: OutcomeSource::Request,
        at: t0(),
    })
}

fn refund(id: &str, amount_minor: Option<i64>) -> OrderCommand {
    OrderCommand::RequestRefund {
        refund_id: RefundId::parse(id).unwrap(),
        amount_minor,
        reason: "changed mind".into(),
        reason_digest: None,
        at: t0(),
    }
}

fn confirm(amount_minor: i64, at: DateTime<Utc>) -> OrderCommand {
    OrderCommand::StartConfirmation {
        payment_key: key(),
        claimed_amount_minor: amount_minor,
        at,
    }
}

#[test]
fn placing_a_new_order_records_it() {
    let OrderEvent::OrderPlaced(place) = placed(50_000) else {
        unreachable!()
    };
    OrderTest::with(())
        .given_no_previous_events()
        .when(OrderCommand::Place(place))
        .then_expect_events(vec![placed(50_000)]);
}

#[test]
fn placing_an_order_twice_is_refused() {
    let OrderEvent::OrderPlaced(place) = placed(50_000) else {
        unreachable!()
    };
    OrderTest::with(())
        .given(vec![placed(50_000)])
        .when(OrderCommand::Place(place))
        .then_expect_error(OrderError::AlreadyExists);
}

#[test]
fn confirming_with_the_placed_amount_starts_the_first_attempt() {
    OrderTest::with(())
        .given(vec![placed(50_000)])
        .when(confirm(50_000, t0()))
        .then_expect_events(vec![started(1)]);
}

#[test]
fn a_claimed_amount_that_differs_is_rejected_and_recorded() {
    OrderTest::with(())
        .given(vec![placed(50_000)])
        .when(confirm(100, t0()))
        .then_expect_events(vec![OrderEvent::ConfirmationRejected(
            ConfirmationRejected {
                payment_key: key(),
                reason: RejectionReason::AmountMismatch,
                claimed_amount_minor: 100,
                expected_amount_minor: 50_000,
                at: t0(),
            },
        )]);
}

#[test]
fn a_second_confirm_while_the_first_is_in_flight_is_refused() {
    OrderTest::with(())
        .given(vec![placed(50_000), started(1)])
        .when(confirm(50_000, t0()))
        .then_expect_error(OrderError::ConfirmationInProgress);
}

#[test]
fn confirming_a_paid_order_is_refused() {
    OrderTest::with(())
        .given(vec![placed(50_000), started(1), captured()])
        .when(confirm(50_000, t0()))
        .then_expect_error(OrderError::AlreadyPaid);
}

#[test]
fn after_a_definite_failure_a_new_attempt_gets_a_new_idempotency_key() {
    let failed = OrderEvent::PaymentFailed(PaymentFailed {
        payment_key: key(),
        failure: ProviderFailure {
            class: FailureClass::SoftDecline,
            provider_code: "REJECT_CARD_COMPANY".into(),
            provider_message: "declined".into(),
        },
        source: OutcomeSource::Request,
        at: t0(),
    });
    OrderTest::with(())
        .given(vec![placed(50_000), started(1), failed])
        .when(confirm(50_000, t0()))
        .then_expect_events(vec![started(2)]);
}

#[test]
fn the_payment_window_closes_thirty_minutes_after_placement() {
    let closes = t0() + Duration::minutes(CONFIRMATION_WINDOW_MINUTES);
    OrderTest::with(())
        .given(vec![placed(50_000)])
        .when(confirm(50_000, closes))
        .then_expect_error(OrderError::Expired);
    OrderTest::with(())
        .given(vec![placed(50_000)])
        .when(confirm(50_000, closes - Duration::seconds(1)))
        .then_expect_events(vec![started_at(1, closes - Duration::seconds(1))]);
    OrderTest::with(())
        .given(vec![placed(50_000)])
        .when(OrderCommand::Expire { at: closes })
        .then_expect_events(vec![OrderEvent::OrderExpired(OrderExpired { at: closes })]);
    OrderTest::with(())
        .given(vec![placed(50_000), started(1)])
        .when(OrderCommand::Expire { at: closes })
        .then_expect_error(OrderError::NotExpirable);
}

#[test]
fn an_approval_captures_the_placed_amount() {
    OrderTest::with(())
        .given(vec![placed(50_000), started(1)])
        .when(OrderCommand::RecordConfirmationOutcome {
            outcome: ProviderOutcome::Observed {
                fact: fact(PaymentFactStatus::Captured, 50_000),
            },
            source: OutcomeSource::Request,
            at: t0(),
        })
        .then_expect_events(vec![captured()]);
}

#[test]
fn an_unknown_outcome_is_recorded_once_and_blocks_new_attempts() {
    let unknown = OrderEvent::PaymentOutcomeUnknown(OutcomeUnknown {
        payment_key: key(),
        reason: "timeout".into(),
        at: t0(),
    });
    let record_unknown = || OrderCommand::RecordConfirmationOutcome {
        outcome: ProviderOutcome::Unknown {
            reason: "timeout".into(),
        },
        source: OutcomeSource::Request,
        at: t0(),
    };
    OrderTest::with(())
        .given(vec![placed(50_000), started(1)])
        .when(record_unknown())
        .then_expect_events(vec![unknown.clone()]);
    OrderTest::with(())
        .given(vec![placed(50_000), started(1), unknown.clone()])
        .when(record_unknown())
        .then_expect_events(vec![]);
    OrderTest::with(())
        .given(vec![placed(50_000), started(1), unknown])
        .when(confirm(50_000, t0()))
        .then_expect_error(OrderError::ConfirmationInProgress);
}

#[test]
fn a_refund_without_amount_refunds_everything_refundable() {
    OrderTest::with(())
        .given(vec![
            placed(50_000),
            started(1),
            captured(),
            refund_requested("r1", 20_000),
            refund_completed("r1", 20_000),
        ])
        .when(refund("r2", None))
        .then_expect_events(vec![refund_requested("r2", 30_000)]);
}

#[test]
fn refunds_in_flight_count_against_what_is_refundable() {
    OrderTest::with(())
        .given(vec![
            placed(50_000),
            started(1),
            captured(),
            refund_requested("r1", 40_000),
        ])
        .when(refund("r2", Some(10_001)))
        .then_expect_error(OrderError::RefundExceedsRefundable {
            requested_minor: 10_001,
            refundable_minor: 10_000,
        });
}

#[test]
fn a_refund_of_an_unpaid_order_is_refused() {
    OrderTest::with(())
        .given(vec![placed(50_000)])
        .when(refund("r1", Some(1)))
        .then_expect_error(OrderError::NotPaid);
}

#[test]
fn the_same_refund_requested_again_changes_nothing_but_a_different_one_under_its_id_fails() {
    let given = vec![
        placed(50_000),
        started(1),
        captured(),
        refund_requested("r1", 20_000),
    ];
    OrderTest::with(())
        .given(given.clone())
        .when(refund("r1", Some(20_000)))
        .then_expect_events(vec![]);
    OrderTest::with(())
        .given(given)
        .when(refund("r1", Some(5_000)))
        .then_expect_error(OrderError::RefundIdConflict);
}

#[test]
fn a_failed_refund_releases_its_amount() {
    let failed = OrderEvent::RefundFailed(RefundFailed {
        refund_id: RefundId::parse("r1").unwrap(),
        amount_minor: 50_000,
        currency: Some(Currency::KRW),
        failure: ProviderFailure {
            class: FailureClass::ProviderError,
            provider_code: "PROVIDER_ERROR".into(),
            provider_message: "down".into(),
        },
        source: OutcomeSource::Request,
        at: t0(),
    });
    OrderTest::with(())
        .given(vec![
            placed(50_000),
            started(1),
            captured(),
            refund_requested("r1", 50_000),
            failed,
        ])
        .when(refund("r2", None))
        .then_expect_events(vec![refund_requested("r2", 50_000)]);
}

#[test]
fn a_late_duplicate_refund_outcome_changes_nothing() {
    OrderTest::with(())
        .given(vec![
            placed(50_000),
            started(1),
            captured(),
            refund_requested("r1", 10_000),
            refund_completed("r1", 10_000),
        ])
        .when(OrderCommand::RecordRefundOutcome {
            refund_id: RefundId::parse("r1").unwrap(),
            outcome: RefundOutcome::Completed {
                transaction_key: "tx_r1".into(),
            },
            source: OutcomeSource::Reconciler,
            at: t0(),
        })
        .then_expect_events(vec![]);
}

#[test]
fn fulfilment_needs_a_paid_order_and_happens_once() {
    let at = t0() + Duration::days(2);
    OrderTest::with(())
        .given(vec![placed(50_000)])
        .when(OrderCommand::RecordFulfilment { at })
        .then_expect_error(OrderError::NotPaid);
    OrderTest::with(())
        .given(vec![placed(50_000), started(1), captured()])
        .when(OrderCommand::RecordFulfilment { at })
        .then_expect_events(vec![OrderEvent::OrderFulfilled(OrderFulfilled { at })]);
    OrderTest::with(())
        .given(vec![
            placed(50_000),
            started(1),
            captured(),
            OrderEvent::OrderFulfilled(OrderFulfilled { at }),
        ])
        .when(OrderCommand::RecordFulfilment { at })
        .then_expect_error(OrderError::AlreadyFulfilled);
}

#[test]
fn a_provider_payment_of_another_amount_is_a_discrepancy_never_a_capture() {
    OrderTest::with(())
        .given(vec![placed(50_000), started(1)])
        .when(OrderCommand::RecordConfirmationOutcome {
            outcome: ProviderOutcome::Observed {
                fact: fact(PaymentFactStatus::Captured, 1_000),
            },
            source: OutcomeSource::Request,
            at: t0(),
        })
        .then_expect_events(vec![OrderEvent::PaymentDiscrepancyRecorded(
            PaymentDiscrepancyRecorded {
                provider: "toss".into(),
                payment_key: key(),
                differences: vec![Difference::Amount],
                provider_order_id: "order-0001".into(),
                provider_payment_key: "pk_test_1".into(),
                provider_status: "DONE".into(),
                provider_amount_minor: 1_000,
                provider_refunded_minor: 0,
                provider_currency: Currency::KRW,
                expected_amount_minor: 50_000,
                expected_currency: Currency::KRW,
                source: OutcomeSource::Request,
                at: t0(),
            },
        )]);
}

#[test]
fn a_payment_cancelled_at_the_provider_is_not_captured_and_the_order_waits_for_review() {
    let cancelled = PaymentFact {
        provider_status: "CANCELED".into(),
        refunded_minor: 50_000,
        ..fact(PaymentFactStatus::Refunded, 50_000)
    };
    let recorded = OrderEvent::PaymentDiscrepancyRecorded(PaymentDiscrepancyRecorded {
        provider: "toss".into(),
        payment_key: key(),
        differences: vec![Difference::Status],
        provider_order_id: "order-0001".into(),
        provider_payment_key: "pk_test_1".into(),
        provider_status: "CANCELED".into(),
        provider_amount_minor: 50_000,
        provider_refunded_minor: 50_000,
        provider_currency: Currency::KRW,
        expected_amount_minor: 50_000,
        expected_currency: Currency::KRW,
        source: OutcomeSource::Reconciler,
        at: t0(),
    });
    OrderTest::with(())
        .given(vec![placed(50_000), started(1)])
        .when(OrderCommand::RecordConfirmationOutcome {
            outcome: ProviderOutcome::Observed { fact: cancelled },
            source: OutcomeSource::Reconciler,
            at: t0(),
        })
        .then_expect_events(vec![recorded.clone()]);
    // Under review: no new confirmation, no refund of money the ledger never captured.
    OrderTest::with(())
        .given(vec![placed(50_000), started(1), recorded.clone()])
        .when(OrderCommand::StartConfirmation {
            payment_key: key(),
            claimed_amount_minor: 50_000,
            at: t0(),
        })
        .then_expect_error(OrderError::ProviderDiscrepancy);
    OrderTest::with(())
        .given(vec![placed(50_000), started(1), recorded])
        .when(OrderCommand::RequestRefund {
            refund_id: RefundId::parse("r1").unwrap(),
            amount_minor: None,
            reason: "changed mind".into(),
            reason_digest: None,
            at: t0(),
        })
        .then_expect_error(OrderError::NotPaid);
}

/// A refund whose reason was sealed on its way into the log: the stored text is ciphertext, the
/// keyed digest is what a retry is compared by.
fn sealed_refund_requested(id: &str, amount_minor: i64, digest: &str) -> OrderEvent {
    let OrderEvent::RefundRequested(requested) = refund_requested(id, amount_minor) else {
        unreachable!()
    };
    OrderEvent::RefundRequested(RefundRequested {
        reason: "pl-sealed:v1:1:Y3VzdG9tZXI6Y3VzdF8x:reason:AAAA".into(),
        reason_digest: Some(digest.into()),
        ..requested
    })
}

fn refund_with_digest(id: &str, amount_minor: Option<i64>, digest: &str) -> OrderCommand {
    OrderCommand::RequestRefund {
        refund_id: RefundId::parse(id).unwrap(),
        amount_minor,
        reason: "changed mind".into(),
        reason_digest: Some(digest.into()),
        at: t0(),
    }
}

#[test]
fn a_retried_refund_with_a_sealed_reason_is_compared_by_the_reason_s_digest() {
    let given = vec![
        placed(50_000),
        started(1),
        captured(),
        sealed_refund_requested("r1", 20_000, "digest-of-changed-mind"),
    ];
    // The same reason: its digest matches although the stored text is a token.
    OrderTest::with(())
        .given(given.clone())
        .when(refund_with_digest(
            "r1",
            Some(20_000),
            "digest-of-changed-mind",
        ))
        .then_expect_events(vec![]);
    // Another reason has another digest: a conflict, as with reasons in clear.
    OrderTest::with(())
        .given(given)
        .when(refund_with_digest("r1", Some(20_000), "digest-of-other"))
        .then_expect_error(OrderError::RefundIdConflict);
}

#[test]
fn a_refund_requested_before_sealing_is_still_compared_by_its_text() {
    // Schema version 1: no digest, the reason in clear. A retry that carries a digest falls
    // back to the text.
    let given = vec![
        placed(50_000),
        started(1),
        captured(),
        refund_requested("r1", 20_000),
    ];
    OrderTest::with(())
        .given(given.clone())
        .when(refund_with_digest("r1", Some(20_000), "any-digest"))
        .then_expect_events(vec![]);
}

#[test]
fn a_refund_request_records_whose_reason_it_is_and_its_digest() {
    OrderTest::with(())
        .given(vec![placed(50_000), started(1), captured()])
        .when(refund_with_digest("r1", Some(20_000), "d"))
        .then_expect_events(vec![OrderEvent::RefundRequested(RefundRequested {
            refund_id: RefundId::parse("r1").unwrap(),
            amount_minor: 20_000,
            currency: Currency::KRW,
            reason: "changed mind".into(),
            idempotency_key: "order-order-0001:refund:r1".into(),
            at: t0(),
            customer_id: Some(CustomerId::parse("cust_1").unwrap()),
            reason_digest: Some("d".into()),
        })]);
}

#[test]
fn version_1_refund_requests_decode_without_a_subject_or_digest() {
    let payload = serde_json::json!({
        "refundId": "r1", "amountMinor": 100, "currency": "KRW", "reason": "changed mind",
        "idempotencyKey": "k", "at": "2026-12-06T00:00:00Z"
    });
    let event: OrderEvent = payledger_domain::codec::decode("RefundRequested", &payload).unwrap();
    let OrderEvent::RefundRequested(requested) = event else {
        panic!("{event:?}")
    };
    assert_eq!(
        (requested.customer_id, requested.reason_digest),
        (None, None)
    );
    assert_eq!(
        payledger_domain::codec::schema_version("RefundRequested"),
        2
    );
}

fn awaiting_provider(id: &str, amount_minor: i64) -> OrderEvent {
    OrderEvent::RefundAwaitingProvider(RefundAwaitingProvider {
        refund_id: RefundId::parse(id).unwrap(),
        provider: "sandbox".into(),
        provider_refund_id: format!("adj_{id}"),
        amount_minor,
        currency: Currency::KRW,
        at: t0(),
    })
}

/// The provider's request `adj_{id}` for the order's payment, refunding `amount_minor` KRW.
fn provider_request(
    id: &str,
    amount_minor: i64,
    decision: ProviderRefundDecision,
) -> ProviderRefundFact {
    ProviderRefundFact {
        provider_refund_id: format!("adj_{id}"),
        payment_key: key().to_string(),
        is_refund: true,
        action: "refund".into(),
        amount_minor,
        currency: Currency::KRW,
        provider_status: crate::paddle_adjustment_status(&decision).into(),
        decision,
    }
}

fn decided_as(id: &str, fact: ProviderRefundFact) -> OrderCommand {
    OrderCommand::RecordProviderRefundDecision {
        provider_refund_id: format!("adj_{id}"),
        fact,
        source: OutcomeSource::Webhook,
        at: t0(),
    }
}

fn decided(id: &str, decision: ProviderRefundDecision) -> OrderCommand {
    decided_as(id, provider_request(id, 50_000, decision))
}

#[test]
fn a_refund_the_provider_approves_later_waits_with_its_amount_held() {
    OrderTest::with(())
        .given(vec![
            placed(50_000),
            started(1),
            captured(),
            refund_requested("r1", 50_000),
        ])
        .when(OrderCommand::RecordRefundOutcome {
            refund_id: RefundId::parse("r1").unwrap(),
            outcome: RefundOutcome::AwaitingProvider {
                provider_refund_id: "adj_r1".into(),
            },
            source: OutcomeSource::Request,
            at: t0(),
        })
        .then_expect_events(vec![awaiting_provider("r1", 50_000)]);
    // Still held: nothing more can be refunded while the provider decides.
    OrderTest::with(())
        .given(vec![
            placed(50_000),
            started(1),
            captured(),
            refund_requested("r1", 50_000),
            awaiting_provider("r1", 50_000),
        ])
        .when(refund("r2", None))
        .then_expect_error(OrderError::NothingToRefund);
}

#[test]
fn the_providers_approval_completes_the_refund_as_asked_once() {
    let history = || {
        vec![
            placed(50_000),
            started(1),
            captured(),
            refund_requested("r1", 50_000),
            awaiting_provider("r1", 50_000),
        ]
    };
    let approved = || ProviderRefundDecision::Approved;
    OrderTest::with(())
        .given(history())
        .when(decided("r1", approved()))
        .then_expect_events(vec![OrderEvent::RefundCompleted(RefundCompleted {
            refund_id: RefundId::parse("r1").unwrap(),
            amount_minor: 50_000,
            currency: Currency::KRW,
            payee_id: PayeeId::parse("payee_1").unwrap(),
            transaction_key: "adj_r1".into(),
            source: OutcomeSource::Webhook,
            at: t0(),
        })]);
    // Another amount than asked completes nothing (`order_refund_discrepancies.rs`).
    OrderTest::with(())
        .given(history())
        .when(decided_as(
            "r1",
            provider_request("r1", 40_000, ProviderRefundDecision::Approved),
        ))
        .then_expect_events(vec![OrderEvent::RefundDiscrepancyRecorded(
            RefundDiscrepancyRecorded {
                refund_id: RefundId::parse("r1").unwrap(),
                provider: "sandbox".into(),
                provider_refund_id: "adj_r1".into(),
                provider_status: "approved".into(),
                differences: vec![payledger_domain::provider_refund::RefundDifference {
                    fact: payledger_domain::provider_refund::RefundFact::Amount,
                    expected: "50000".into(),
                    provider: "40000".into(),
                }],
                source: OutcomeSource::Webhook,
                at: t0(),
            },
        )]);
    // A redelivered approval changes nothing.
    let mut done = history();
    done.push(OrderEvent::RefundCompleted(RefundCompleted {
        refund_id: RefundId::parse("r1").unwrap(),
        amount_minor: 50_000,
        currency: Currency::KRW,
        payee_id: PayeeId::parse("payee_1").unwrap(),
        transaction_key: "adj_r1".into(),
        source: OutcomeSource::Webhook,
        at: t0(),
    }));
    OrderTest::with(())
        .given(done)
        .when(decided("r1", approved()))
        .then_expect_events(vec![]);
    // A decision about an adjustment no refund awaits is not this path's.
    OrderTest::with(())
        .given(history())
        .when(decided("other", approved()))
        .then_expect_error(OrderError::RefundNotFound);
}

#[test]
fn the_providers_rejection_fails_the_refund_and_releases_the_amount() {
    let failure = ProviderFailure {
        class: FailureClass::InvalidRequest,
        provider_code: "PADDLE_REFUND_REJECTED".into(),
        provider_message: "rejected".into(),
    };
    OrderTest::with(())
        .given(vec![
            placed(50_000),
            started(1),
            captured(),
            refund_requested("r1", 50_000),
            awaiting_provider("r1", 50_000),
        ])
        .when(decided(
            "r1",
            ProviderRefundDecision::Rejected {
                failure: failure.clone(),
            },
        ))
        .then_expect_events(vec![OrderEvent::RefundFailed(RefundFailed {
            refund_id: RefundId::parse("r1").unwrap(),
            amount_minor: 50_000,
            currency: Some(Currency::KRW),
            failure: failure.clone(),
            source: OutcomeSource::Webhook,
            at: t0(),
        })]);
    OrderTest::with(())
        .given(vec![
            placed(50_000),
            started(1),
            captured(),
            refund_requested("r1", 50_000),
            awaiting_provider("r1", 50_000),
            OrderEvent::RefundFailed(RefundFailed {
                refund_id: RefundId::parse("r1").unwrap(),
                amount_minor: 50_000,
                currency: Some(Currency::KRW),
                failure,
                source: OutcomeSource::Webhook,
                at: t0(),
            }),
        ])
        .when(refund("r2", None))
        .then_expect_events(vec![refund_requested("r2", 50_000)]);
}
