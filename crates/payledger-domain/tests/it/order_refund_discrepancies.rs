//! A refund submitted to a provider that approves refunds later (Paddle) whose request, as the
//! provider reports it, does not fit the refund awaited: recorded once as a discrepancy, naming
//! each differing fact with both values; the refund keeps waiting and no money moves.

use chrono::{DateTime, TimeZone, Utc};
use cqrs_es::test::{AggregateTestExecutor, TestFramework};
use cqrs_es::Aggregate;
use payledger_domain::ids::{CustomerId, OrderId, PayeeId, PaymentKey, RefundId};
use payledger_domain::journal::post_order_event;
use payledger_domain::money::{Currency, Money};
use payledger_domain::order::*;
use payledger_domain::provider_failure::{FailureClass, ProviderFailure};
use payledger_domain::provider_refund::{RefundDifference, RefundFact};

type OrderTest = TestFramework<Order>;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 6, 9, 0, 0).unwrap()
}

fn refund_id() -> RefundId {
    RefundId::parse("r1").unwrap()
}

/// The order's history, built as a test's `given`: [`History::awaiting`] (the refund submitted
/// to Paddle), then what was recorded since.
#[derive(Clone)]
struct History(Vec<OrderEvent>);

impl History {
    /// A Paddle order of 1 000 USD (minor units), paid by `txn_1`, with a full refund awaiting
    /// Paddle's decision on `adj_1`.
    fn awaiting() -> History {
        History(awaiting_events())
    }

    /// Paddle's approval of `amount_minor` instead of 1 000, recorded by the reconciler as a
    /// discrepancy: the refund under review.
    fn approved_for(self, amount_minor: i64) -> History {
        self.then(approval_of(amount_minor))
    }

    /// An admin's resolution of the open discrepancy with `note`.
    fn resolved(self, note: &str) -> History {
        self.then(resolved(note))
    }

    fn then(mut self, event: OrderEvent) -> History {
        self.0.push(event);
        self
    }

    /// The order these events make.
    fn order(&self) -> Order {
        let mut order = Order::default();
        for event in &self.0 {
            order.apply(event.clone());
        }
        order
    }
}

/// Given `history`: what a command does to the order.
fn given(history: History) -> AggregateTestExecutor<Order> {
    OrderTest::with(()).given(history.0)
}

fn awaiting_events() -> Vec<OrderEvent> {
    vec![
        OrderEvent::OrderPlaced(PlaceOrder {
            order_id: OrderId::parse("order-0001").unwrap(),
            amount: Money::new(1_000, Currency::USD).unwrap(),
            customer_id: CustomerId::parse("cust_1").unwrap(),
            payee_id: PayeeId::parse("payee_1").unwrap(),
            order_name: "100 credits".into(),
            provider: "paddle".into(),
            service_starts_at: None,
            placed_at: t0(),
        }),
        OrderEvent::PaymentCaptured(PaymentCaptured {
            payment_key: PaymentKey::parse("txn_1").unwrap(),
            amount_minor: 1_000,
            currency: Currency::USD,
            payee_id: PayeeId::parse("payee_1").unwrap(),
            approved_at: t0(),
            method: None,
            source: OutcomeSource::Webhook,
        }),
        OrderEvent::RefundRequested(RefundRequested {
            refund_id: refund_id(),
            amount_minor: 1_000,
            currency: Currency::USD,
            reason: "changed my mind".into(),
            idempotency_key: "order-order-0001:refund:r1".into(),
            at: t0(),
            customer_id: None,
            reason_digest: None,
        }),
        OrderEvent::RefundAwaitingProvider(RefundAwaitingProvider {
            refund_id: refund_id(),
            provider: "paddle".into(),
            provider_refund_id: "adj_1".into(),
            amount_minor: 1_000,
            currency: Currency::USD,
            at: t0(),
        }),
    ]
}

fn rejected() -> ProviderRefundDecision {
    ProviderRefundDecision::Rejected {
        failure: ProviderFailure {
            class: FailureClass::InvalidRequest,
            provider_code: "PADDLE_REFUND_REJECTED".into(),
            provider_message: "Paddle rejected the refund adjustment".into(),
        },
    }
}

/// Paddle's adjustment `adj_1` as its API reports it, with `amount_minor` in `currency`.
fn adjustment(
    amount_minor: i64,
    currency: Currency,
    decision: ProviderRefundDecision,
) -> ProviderRefundFact {
    ProviderRefundFact {
        provider_refund_id: "adj_1".into(),
        payment_key: "txn_1".into(),
        is_refund: true,
        action: "refund".into(),
        amount_minor,
        currency,
        provider_status: crate::paddle_adjustment_status(&decision).into(),
        decision,
    }
}

fn judged(fact: ProviderRefundFact, source: OutcomeSource) -> OrderCommand {
    OrderCommand::RecordProviderRefundDecision {
        provider_refund_id: "adj_1".into(),
        fact,
        source,
        at: t0(),
    }
}

fn difference(fact: RefundFact, expected: &str, provider: &str) -> RefundDifference {
    RefundDifference {
        fact,
        expected: expected.into(),
        provider: provider.into(),
    }
}

fn recorded(
    provider_status: &str,
    differences: Vec<RefundDifference>,
    source: OutcomeSource,
) -> OrderEvent {
    OrderEvent::RefundDiscrepancyRecorded(RefundDiscrepancyRecorded {
        refund_id: refund_id(),
        provider: "paddle".into(),
        provider_refund_id: "adj_1".into(),
        provider_status: provider_status.into(),
        differences,
        source,
        at: t0(),
    })
}

/// The discrepancy the reconciler records for Paddle's approval of `amount_minor` instead of
/// the 1 000 asked.
fn approval_of(amount_minor: i64) -> OrderEvent {
    recorded(
        "approved",
        vec![difference(
            RefundFact::Amount,
            "1000",
            &amount_minor.to_string(),
        )],
        OutcomeSource::Reconciler,
    )
}

/// The refund of all 1 000 completed, as Paddle's notification of its approval records it.
fn completed() -> OrderEvent {
    OrderEvent::RefundCompleted(RefundCompleted {
        refund_id: refund_id(),
        amount_minor: 1_000,
        currency: Currency::USD,
        payee_id: PayeeId::parse("payee_1").unwrap(),
        transaction_key: "adj_1".into(),
        source: OutcomeSource::Webhook,
        at: t0(),
    })
}

/// What the order holds of money: captured, refunded, pending refund, refundable.
fn money(order: &Order) -> (i64, i64, i64, i64) {
    (
        order.captured_minor,
        order.refunded_minor,
        order.refund_pending_minor,
        order.refundable_minor(),
    )
}

#[test]
fn an_approval_of_another_amount_and_currency_is_a_discrepancy_naming_both_values() {
    given(History::awaiting())
        .when(judged(
            adjustment(999, Currency::EUR, ProviderRefundDecision::Approved),
            OutcomeSource::Reconciler,
        ))
        .then_expect_events(vec![recorded(
            "approved",
            vec![
                difference(RefundFact::Amount, "1000", "999"),
                difference(RefundFact::Currency, "USD", "EUR"),
            ],
            OutcomeSource::Reconciler,
        )]);
}

#[test]
fn a_rejection_of_another_amount_is_a_discrepancy_not_a_failed_refund() {
    given(History::awaiting())
        .when(judged(
            adjustment(500, Currency::USD, rejected()),
            OutcomeSource::Webhook,
        ))
        .then_expect_events(vec![recorded(
            "rejected",
            vec![difference(RefundFact::Amount, "1000", "500")],
            OutcomeSource::Webhook,
        )]);
}

#[test]
fn every_differing_fact_of_the_request_is_named() {
    let mut other = adjustment(1_000, Currency::USD, ProviderRefundDecision::Unrecognised);
    other.provider_refund_id = "adj_2".into();
    other.payment_key = "txn_2".into();
    other.is_refund = false;
    other.action = "credit".into();
    given(History::awaiting())
        .when(judged(other, OutcomeSource::Reconciler))
        .then_expect_events(vec![recorded(
            "reversed",
            vec![
                difference(RefundFact::ProviderRefundId, "adj_1", "adj_2"),
                difference(RefundFact::PaymentKey, "txn_1", "txn_2"),
                difference(RefundFact::Action, "refund", "credit"),
                difference(
                    RefundFact::Status,
                    "pending_approval, approved or rejected",
                    "reversed",
                ),
            ],
            OutcomeSource::Reconciler,
        )]);
}

#[test]
fn the_same_mismatch_seen_again_records_nothing_new() {
    let differs = || adjustment(999, Currency::USD, ProviderRefundDecision::Approved);
    let history = History::awaiting().approved_for(999);
    // The next reconciler pass, and the notification of the same approval.
    given(history.clone())
        .when(judged(differs(), OutcomeSource::Reconciler))
        .then_expect_events(vec![]);
    given(history.clone())
        .when(judged(differs(), OutcomeSource::Webhook))
        .then_expect_events(vec![]);
    // What Paddle reports changed (another amount): that is a new fact, recorded.
    given(history)
        .when(judged(
            adjustment(998, Currency::USD, ProviderRefundDecision::Approved),
            OutcomeSource::Reconciler,
        ))
        .then_expect_events(vec![approval_of(998)]);
}

#[test]
fn a_discrepancy_moves_no_money_and_the_refund_keeps_waiting() {
    let before = History::awaiting().order();
    let history = History::awaiting().approved_for(999);
    let after = history.order();
    after.assert_invariants();
    assert_eq!(after.status, OrderStatus::Paid);
    assert_eq!(money(&after), money(&before));
    let refund = &after.refunds[&refund_id()];
    assert_eq!(refund.status, RefundStatus::AwaitingProvider);
    assert_eq!(after.refunds_under_review(), 1);
    assert_eq!(before.refunds_under_review(), 0);
    // The journal posts nothing for it.
    assert!(post_order_event(&approval_of(999), None).is_empty());
    // A pending request that fits records nothing; Paddle deciding the request as asked
    // afterwards still completes the refund.
    given(history.clone())
        .when(judged(
            adjustment(1_000, Currency::USD, ProviderRefundDecision::Pending),
            OutcomeSource::Reconciler,
        ))
        .then_expect_events(vec![]);
    given(history)
        .when(judged(
            adjustment(1_000, Currency::USD, ProviderRefundDecision::Approved),
            OutcomeSource::Webhook,
        ))
        .then_expect_events(vec![completed()]);
}

#[test]
fn a_rejection_that_fits_still_fails_the_refund() {
    given(History::awaiting())
        .when(judged(
            adjustment(1_000, Currency::USD, rejected()),
            OutcomeSource::Webhook,
        ))
        .then_expect_events(vec![OrderEvent::RefundFailed(RefundFailed {
            refund_id: refund_id(),
            amount_minor: 1_000,
            currency: Some(Currency::USD),
            failure: ProviderFailure {
                class: FailureClass::InvalidRequest,
                provider_code: "PADDLE_REFUND_REJECTED".into(),
                provider_message: "Paddle rejected the refund adjustment".into(),
            },
            source: OutcomeSource::Webhook,
            at: t0(),
        })]);
}

// ---------------------------------------------------------------------------------------------
// An admin resolves a discrepancy with an audited note
// ---------------------------------------------------------------------------------------------

fn resolve(note: &str) -> OrderCommand {
    OrderCommand::ResolveRefundDiscrepancy {
        refund_id: refund_id(),
        resolution: DiscrepancyResolution::Acknowledged,
        note: note.into(),
        resolved_by: "admin:ops".into(),
        at: t0(),
    }
}

fn resolved(note: &str) -> OrderEvent {
    OrderEvent::RefundDiscrepancyResolved(RefundDiscrepancyResolved {
        refund_id: refund_id(),
        provider_refund_id: "adj_1".into(),
        resolution: DiscrepancyResolution::Acknowledged,
        note: note.into(),
        resolved_by: "admin:ops".into(),
        at: t0(),
    })
}

#[test]
fn an_admin_acknowledges_a_discrepancy_with_a_note_and_nothing_moves() {
    let under_review = History::awaiting().approved_for(999);
    given(under_review.clone())
        .when(resolve("raised with Paddle, ticket 42"))
        .then_expect_events(vec![resolved("raised with Paddle, ticket 42")]);

    let before = under_review.order();
    let after = under_review
        .resolved("raised with Paddle, ticket 42")
        .order();
    after.assert_invariants();
    assert_eq!(before.refunds_under_review(), 1);
    assert_eq!(after.refunds_under_review(), 0);
    let refund = &after.refunds[&refund_id()];
    assert_eq!(refund.status, RefundStatus::AwaitingProvider);
    assert!(!refund.discrepancy_open());
    assert_eq!(after.status, before.status);
    assert_eq!(money(&after), money(&before));
    // The journal posts nothing for it.
    assert!(post_order_event(&resolved("raised with Paddle, ticket 42"), None).is_empty());
}

#[test]
fn resolving_again_is_refused() {
    given(
        History::awaiting()
            .approved_for(999)
            .resolved("raised with Paddle"),
    )
    .when(resolve("again"))
    .then_expect_error(OrderError::NoOpenRefundDiscrepancy);
}

#[test]
fn a_refund_without_a_discrepancy_or_not_awaiting_has_nothing_to_resolve() {
    given(History::awaiting())
        .when(resolve("nothing differs"))
        .then_expect_error(OrderError::NoOpenRefundDiscrepancy);
    // Paddle later decided the refund as asked: it completed, nothing is left to resolve.
    given(History::awaiting().approved_for(999).then(completed()))
        .when(resolve("too late"))
        .then_expect_error(OrderError::RefundNotAwaitingProvider);
    let mut unknown_refund = resolve("which refund?");
    if let OrderCommand::ResolveRefundDiscrepancy { refund_id, .. } = &mut unknown_refund {
        *refund_id = RefundId::parse("r2").unwrap();
    }
    given(History::awaiting().approved_for(999))
        .when(unknown_refund)
        .then_expect_error(OrderError::RefundNotFound);
}

#[test]
fn the_note_is_one_to_five_hundred_characters_not_blank_without_control_characters() {
    for note in [
        "",
        "   ",
        "line\nbreak",
        &"x".repeat(MAX_DISCREPANCY_NOTE_CHARS + 1),
    ] {
        given(History::awaiting().approved_for(999))
            .when(resolve(note))
            .then_expect_error(OrderError::InvalidDiscrepancyNote);
    }
    let longest = "é".repeat(MAX_DISCREPANCY_NOTE_CHARS);
    given(History::awaiting().approved_for(999))
        .when(resolve(&longest))
        .then_expect_events(vec![resolved(&longest)]);
}

#[test]
fn after_a_resolution_the_same_mismatch_records_nothing_and_a_new_one_is_under_review_again() {
    let resolved_once = History::awaiting()
        .approved_for(999)
        .resolved("raised with Paddle");
    // The next reconciler pass sees the same approval of 999: acknowledged, nothing new.
    given(resolved_once.clone())
        .when(judged(
            adjustment(999, Currency::USD, ProviderRefundDecision::Approved),
            OutcomeSource::Reconciler,
        ))
        .then_expect_events(vec![]);
    // Paddle now reports another amount: a new discrepancy, under review again.
    given(resolved_once.clone())
        .when(judged(
            adjustment(998, Currency::USD, ProviderRefundDecision::Approved),
            OutcomeSource::Reconciler,
        ))
        .then_expect_events(vec![approval_of(998)]);
    let again = resolved_once.clone().approved_for(998);
    assert_eq!(again.order().refunds_under_review(), 1);
    given(again)
        .when(resolve("raised again"))
        .then_expect_events(vec![resolved("raised again")]);
    // Paddle correcting the adjustment after a resolution still completes the refund.
    given(resolved_once)
        .when(judged(
            adjustment(1_000, Currency::USD, ProviderRefundDecision::Approved),
            OutcomeSource::Webhook,
        ))
        .then_expect_events(vec![completed()]);
}
