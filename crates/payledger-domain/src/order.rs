//! The order: one payment, from placement through confirmation, refunds and fulfilment.
//! Stream `order-{order_id}`.
//!
//! A confirmation is two steps around the provider call: `PaymentConfirmationStarted` is appended
//! *before* the provider is called (its expected-version check lets exactly one of several
//! concurrent confirms through), and the outcome is appended after. An outcome that is not known
//! (timeout after sending) is recorded as such and settled later by the reconciler, never guessed.

use crate::ids::{CustomerId, OrderId, PayeeId, PaymentKey, RefundId};
use crate::money::{Currency, Money};
use crate::provider_fact::{
    self, Difference, DisputeFact, DisputeStatus, ExpectedPayment, LedgerPayment, PaymentFact,
    Verdict,
};
use crate::provider_failure::{FailureClass, ProviderFailure};
use crate::provider_refund::{AwaitedRefund, RefundDifference};
pub use crate::provider_refund::{ProviderRefundDecision, ProviderRefundFact};
use chrono::{DateTime, Duration, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Toss closes the payment window 30 minutes after the order became READY.
pub const CONFIRMATION_WINDOW_MINUTES: i64 = 30;

/// How many refunds one order may carry; a bound so an order's state stays small.
pub const MAX_REFUNDS_PER_ORDER: usize = 100;
/// Longest order name (characters); no control characters.
pub const MAX_ORDER_NAME_CHARS: usize = 100;
/// Longest refund or cancellation reason (characters); no control characters.
pub const MAX_REASON_CHARS: usize = 200;
/// Longest note an admin resolves a refund discrepancy with (characters), as for a
/// reconciliation exception's note; not blank, no control characters.
pub const MAX_DISCREPANCY_NOTE_CHARS: usize = 500;

pub fn stream_id(order_id: &OrderId) -> String {
    crate::streams::StreamKind::Order.name(order_id)
}

// ---------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
pub enum OrderCommand {
    Place(PlaceOrder),
    StartConfirmation {
        payment_key: PaymentKey,
        claimed_amount_minor: i64,
        at: DateTime<Utc>,
    },
    RecordConfirmationOutcome {
        outcome: ProviderOutcome,
        source: OutcomeSource,
        at: DateTime<Utc>,
    },
    RequestRefund {
        refund_id: RefundId,
        /// `None`: everything still refundable.
        amount_minor: Option<i64>,
        reason: String,
        /// A keyed digest of the reason (payledger-app's `privacy`), when reasons are sealed: a
        /// retry is compared by it, because the stored reason is ciphertext the domain cannot read.
        reason_digest: Option<String>,
        at: DateTime<Utc>,
    },
    RecordRefundOutcome {
        refund_id: RefundId,
        outcome: RefundOutcome,
        source: OutcomeSource,
        at: DateTime<Utc>,
    },
    Expire {
        at: DateTime<Utc>,
    },
    RecordFulfilment {
        at: DateTime<Utc>,
    },
    /// An admin records a payment the customer made outside payledger (runbook §5 "결제 강제
    /// 주입"). The provider transaction id's uniqueness is enforced by its own stream
    /// (`operations::provider_transaction_stream`) before this command runs.
    RecordManualPayment {
        provider_transaction_id: PaymentKey,
        amount_minor: i64,
        method: Option<String>,
        at: DateTime<Utc>,
    },
    /// An admin cancels the enrollment (the service entitlement) this order paid for (runbook §5
    /// "잘못된 enrollment 취소"). The money side is a separate, ordinary refund.
    CancelEnrollment {
        reason: String,
        at: DateTime<Utc>,
    },
    /// A refund made at the provider without payledger asking (Stripe's dashboard), as the
    /// provider's API reports it: recorded as provider-initiated, within what is left of the
    /// capture. One per provider transaction: a refund already known (payledger's own, or this
    /// one recorded before) changes nothing.
    RecordProviderRefund {
        provider: String,
        transaction_key: String,
        amount_minor: i64,
        currency: Currency,
        at: DateTime<Utc>,
    },
    /// A dispute as the provider's API reports it: opened, won or lost.
    RecordDispute {
        fact: DisputeFact,
        at: DateTime<Utc>,
    },
    /// What the provider reports about a refund payledger submitted for its approval (Paddle's
    /// adjustment: pending, approved or rejected), as its API reports it. Judged against the
    /// refund awaited (id, payment, action, amount, currency, status): a fitting decision
    /// completes or fails it; any difference is recorded as a `RefundDiscrepancyRecorded`, once
    /// per distinct difference, and the refund keeps waiting.
    RecordProviderRefundDecision {
        /// Which awaited refund: the id payledger holds for it.
        provider_refund_id: String,
        fact: ProviderRefundFact,
        /// `webhook` (the provider's notification) or `reconciler` (found by a lookup).
        source: OutcomeSource,
        at: DateTime<Utc>,
    },
    /// An admin resolves the open discrepancy of a refund awaiting the provider with an audited
    /// note. Moves no money: the refund keeps waiting for the provider's next fact with its
    /// amount held; only a provider's fact completes or fails it.
    ResolveRefundDiscrepancy {
        refund_id: RefundId,
        resolution: DiscrepancyResolution,
        note: String,
        /// The admin (the request's actor, `admin:NAME`).
        resolved_by: String,
        at: DateTime<Utc>,
    },
}

/// How an admin resolved a refund discrepancy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscrepancyResolution {
    /// The admin has taken it up with the provider: the refund keeps waiting for the provider's
    /// next fact (a fitting decision completes or fails it; another mismatch is recorded anew).
    Acknowledged,
}

impl DiscrepancyResolution {
    pub const ALL: &'static [DiscrepancyResolution] = &[DiscrepancyResolution::Acknowledged];

    pub fn name(self) -> &'static str {
        match self {
            DiscrepancyResolution::Acknowledged => "acknowledged",
        }
    }

    pub fn parse(name: &str) -> Option<DiscrepancyResolution> {
        Self::ALL.iter().copied().find(|r| r.name() == name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlaceOrder {
    pub order_id: OrderId,
    pub amount: Money,
    pub customer_id: CustomerId,
    pub payee_id: PayeeId,
    pub order_name: String,
    pub provider: String,
    pub service_starts_at: Option<DateTime<Utc>>,
    pub placed_at: DateTime<Utc>,
}

/// What the provider said about a charge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum ProviderOutcome {
    /// The provider reported the payment (a confirm's answer or a lookup). The aggregate judges
    /// it against the order ([`provider_fact::judge`]): only the exact payment is a capture.
    Observed {
        fact: PaymentFact,
    },
    Refused {
        failure: ProviderFailure,
    },
    Unknown {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum RefundOutcome {
    Completed {
        transaction_key: String,
    },
    /// The provider accepted the request and decides later (Paddle approves refund
    /// adjustments asynchronously): nothing is refunded yet.
    AwaitingProvider {
        provider_refund_id: String,
    },
    Refused {
        failure: ProviderFailure,
    },
    Unknown {
        reason: String,
    },
}

/// Who learned the outcome: the request that called the provider, or the reconciler asking later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeSource {
    Request,
    Reconciler,
    /// Recorded by an admin for a payment made outside payledger.
    Manual,
    /// Learned from a provider's webhook, re-checked against the provider's API.
    Webhook,
}

// ---------------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderEvent {
    OrderPlaced(PlaceOrder),
    /// A confirm whose claimed amount differed from the placed amount. Recorded because the
    /// runbook watches the mismatch rate (it signals price bugs or tampering).
    ConfirmationRejected(ConfirmationRejected),
    PaymentConfirmationStarted(ConfirmationStarted),
    PaymentCaptured(PaymentCaptured),
    PaymentFailed(PaymentFailed),
    PaymentOutcomeUnknown(OutcomeUnknown),
    RefundRequested(RefundRequested),
    RefundCompleted(RefundCompleted),
    RefundFailed(RefundFailed),
    RefundOutcomeUnknown(RefundOutcomeUnknown),
    /// The provider accepted the refund request and will approve or reject it later (Paddle's
    /// adjustment, `pending_approval`): the amount stays held, nothing is refunded yet.
    RefundAwaitingProvider(RefundAwaitingProvider),
    OrderExpired(OrderExpired),
    OrderFulfilled(OrderFulfilled),
    EnrollmentCancelled(EnrollmentCancelled),
    /// The provider reported this order's payment differently from what the ledger expects
    /// (another amount, currency, key or order, or cancelled there). Nothing is captured; the
    /// order waits for support (`NEEDS_REVIEW`).
    PaymentDiscrepancyRecorded(PaymentDiscrepancyRecorded),
    /// A refund made at the provider without payledger asking (Stripe's dashboard), confirmed
    /// against the provider's API.
    ProviderRefundRecorded(ProviderRefundRecorded),
    /// The cardholder disputed the payment: refunds are refused and the payee's settlement is
    /// held until it is decided.
    DisputeOpened(DisputeOpened),
    /// The dispute was decided for the merchant; the fee the provider kept (if any) is journaled.
    DisputeWon(DisputeClosed),
    /// The dispute was decided for the cardholder: the withdrawn amount and the fee leave
    /// `provider_clearing`.
    DisputeLost(DisputeClosed),
    /// The provider's refund request (Paddle's adjustment) differs from the refund awaiting its
    /// decision (id, payment, action, amount, currency or status). Nothing moves: the refund
    /// keeps waiting with its amount held, and support must review it.
    RefundDiscrepancyRecorded(RefundDiscrepancyRecorded),
    /// An admin resolved a refund's open discrepancy with a note. Nothing moves: the refund
    /// keeps waiting for the provider with its amount held; it is no longer under review.
    RefundDiscrepancyResolved(RefundDiscrepancyResolved),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundDiscrepancyResolved {
    pub refund_id: RefundId,
    /// The id payledger holds for the refund request (Paddle `adj_…`).
    pub provider_refund_id: String,
    pub resolution: DiscrepancyResolution,
    /// Why, for the audit trail (1 to 500 characters). Not sealed, like a reconciliation
    /// exception's note: bookkeeping text an admin must keep free of personal data.
    pub note: String,
    /// The admin who resolved it (`admin:NAME`; also the event metadata's actor).
    pub resolved_by: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundDiscrepancyRecorded {
    pub refund_id: RefundId,
    pub provider: String,
    /// The id payledger holds for the refund request (Paddle `adj_…`).
    pub provider_refund_id: String,
    /// The request's status word as the provider reported it (`approved`, `rejected`, …).
    pub provider_status: String,
    /// Each differing fact, with the ledger's and the provider's value.
    pub differences: Vec<RefundDifference>,
    /// `webhook` (the provider's notification) or `reconciler` (found by a lookup).
    pub source: OutcomeSource,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderRefundRecorded {
    pub provider: String,
    /// The provider's refund id (Stripe `re_…`).
    pub transaction_key: String,
    pub amount_minor: i64,
    pub currency: Currency,
    pub payee_id: PayeeId,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DisputeOpened {
    pub provider: String,
    /// The provider's dispute id (Stripe `dp_…`).
    pub dispute_id: String,
    pub amount_minor: i64,
    pub currency: Currency,
    pub payee_id: PayeeId,
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DisputeClosed {
    pub provider: String,
    pub dispute_id: String,
    /// The disputed amount.
    pub amount_minor: i64,
    /// What the provider kept of it (lost: usually all of it; won: 0).
    pub withdrawn_minor: i64,
    /// The provider's dispute fee.
    pub fee_minor: i64,
    pub currency: Currency,
    pub payee_id: PayeeId,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentDiscrepancyRecorded {
    pub provider: String,
    /// The key of the confirmation the ledger was waiting on.
    pub payment_key: PaymentKey,
    /// What differs, e.g. `["amount"]`.
    pub differences: Vec<Difference>,
    pub provider_order_id: String,
    pub provider_payment_key: String,
    pub provider_status: String,
    pub provider_amount_minor: i64,
    pub provider_refunded_minor: i64,
    pub provider_currency: Currency,
    pub expected_amount_minor: i64,
    pub expected_currency: Currency,
    pub source: OutcomeSource,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfirmationRejected {
    pub payment_key: PaymentKey,
    pub reason: RejectionReason,
    pub claimed_amount_minor: i64,
    pub expected_amount_minor: i64,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RejectionReason {
    AmountMismatch,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfirmationStarted {
    pub payment_key: PaymentKey,
    pub amount_minor: i64,
    /// 1 for the first confirmation of the order; a new attempt only follows a definite failure.
    pub attempt: u32,
    /// Sent to the provider: every retry of this attempt is the same provider request.
    pub idempotency_key: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentCaptured {
    pub payment_key: PaymentKey,
    pub amount_minor: i64,
    pub currency: Currency,
    pub payee_id: PayeeId,
    pub approved_at: DateTime<Utc>,
    pub method: Option<String>,
    pub source: OutcomeSource,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentFailed {
    pub payment_key: PaymentKey,
    pub failure: ProviderFailure,
    pub source: OutcomeSource,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutcomeUnknown {
    pub payment_key: PaymentKey,
    pub reason: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundRequested {
    pub refund_id: RefundId,
    pub amount_minor: i64,
    pub currency: Currency,
    /// Personal: sealed under `customer_id` (docs/events.md, "Personal data and erasure").
    pub reason: String,
    pub idempotency_key: String,
    pub at: DateTime<Utc>,
    /// Whose personal data `reason` is. From schema version 2 on; `None` in version 1.
    #[serde(default)]
    pub customer_id: Option<CustomerId>,
    /// HMAC-SHA256 of the reason under a key outside the database (schema version 2, when
    /// sealing is on): what a retry of the same refund is compared by.
    #[serde(default)]
    pub reason_digest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundCompleted {
    pub refund_id: RefundId,
    pub amount_minor: i64,
    pub currency: Currency,
    pub payee_id: PayeeId,
    pub transaction_key: String,
    pub source: OutcomeSource,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundFailed {
    pub refund_id: RefundId,
    pub amount_minor: i64,
    /// The order's currency. Carried from schema version 2 on; version-1 events lack it and
    /// decode with `None` (their currency is the order's `OrderPlaced.amount.currency`).
    #[serde(default)]
    pub currency: Option<Currency>,
    pub failure: ProviderFailure,
    pub source: OutcomeSource,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundOutcomeUnknown {
    pub refund_id: RefundId,
    pub reason: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundAwaitingProvider {
    pub refund_id: RefundId,
    pub provider: String,
    /// The provider's id of the request (Paddle `adj_…`): its decision names it, and the
    /// completed refund's `transactionKey` is it.
    pub provider_refund_id: String,
    pub amount_minor: i64,
    pub currency: Currency,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderExpired {
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderFulfilled {
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnrollmentCancelled {
    /// Personal: sealed under `customer_id`.
    pub reason: String,
    /// Whether the order had been paid when its enrollment was cancelled (a refund may follow).
    pub was_paid: bool,
    pub at: DateTime<Utc>,
    /// Whose personal data `reason` is. From schema version 2 on; `None` in version 1.
    #[serde(default)]
    pub customer_id: Option<CustomerId>,
}

impl DomainEvent for OrderEvent {
    fn event_type(&self) -> String {
        let name = match self {
            OrderEvent::OrderPlaced(_) => "OrderPlaced",
            OrderEvent::ConfirmationRejected(_) => "ConfirmationRejected",
            OrderEvent::PaymentConfirmationStarted(_) => "PaymentConfirmationStarted",
            OrderEvent::PaymentCaptured(_) => "PaymentCaptured",
            OrderEvent::PaymentFailed(_) => "PaymentFailed",
            OrderEvent::PaymentOutcomeUnknown(_) => "PaymentOutcomeUnknown",
            OrderEvent::RefundRequested(_) => "RefundRequested",
            OrderEvent::RefundCompleted(_) => "RefundCompleted",
            OrderEvent::RefundFailed(_) => "RefundFailed",
            OrderEvent::RefundOutcomeUnknown(_) => "RefundOutcomeUnknown",
            OrderEvent::RefundAwaitingProvider(_) => "RefundAwaitingProvider",
            OrderEvent::OrderExpired(_) => "OrderExpired",
            OrderEvent::OrderFulfilled(_) => "OrderFulfilled",
            OrderEvent::EnrollmentCancelled(_) => "EnrollmentCancelled",
            OrderEvent::PaymentDiscrepancyRecorded(_) => "PaymentDiscrepancyRecorded",
            OrderEvent::ProviderRefundRecorded(_) => "ProviderRefundRecorded",
            OrderEvent::DisputeOpened(_) => "DisputeOpened",
            OrderEvent::DisputeWon(_) => "DisputeWon",
            OrderEvent::DisputeLost(_) => "DisputeLost",
            OrderEvent::RefundDiscrepancyRecorded(_) => "RefundDiscrepancyRecorded",
            OrderEvent::RefundDiscrepancyResolved(_) => "RefundDiscrepancyResolved",
        };
        name.to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    #[error("order does not exist")]
    NotFound,
    #[error("an order with this id already exists")]
    AlreadyExists,
    #[error("the order name must be 1 to 100 characters")]
    InvalidOrderName,
    #[error("a confirmation of this order is in progress")]
    ConfirmationInProgress,
    #[error("the order is already paid")]
    AlreadyPaid,
    #[error("the order expired before it was confirmed")]
    Expired,
    #[error("the order has not been paid")]
    NotPaid,
    #[error("refund of {requested_minor} exceeds the refundable {refundable_minor}")]
    RefundExceedsRefundable {
        requested_minor: i64,
        refundable_minor: i64,
    },
    #[error("refund amount must be greater than zero")]
    RefundAmountNotPositive,
    #[error("nothing is left to refund")]
    NothingToRefund,
    #[error("a refund with this id already exists with a different amount or reason")]
    RefundIdConflict,
    #[error("the order has reached the maximum of {MAX_REFUNDS_PER_ORDER} refunds")]
    TooManyRefunds,
    #[error("the refund reason must be 1 to 200 characters")]
    InvalidRefundReason,
    #[error("no refund with this id")]
    RefundNotFound,
    #[error("no confirmation is waiting for an outcome")]
    NoConfirmationPending,
    #[error("the order can no longer expire")]
    NotExpirable,
    #[error("the order is already fulfilled")]
    AlreadyFulfilled,
    #[error(
        "a manual payment can only be recorded for an unpaid order with no confirmation in flight"
    )]
    ManualPaymentNotAllowed,
    #[error("the manual payment's amount {recorded_minor} differs from the order amount {expected_minor}")]
    ManualPaymentAmountMismatch {
        recorded_minor: i64,
        expected_minor: i64,
    },
    #[error("the order's enrollment is already cancelled")]
    EnrollmentAlreadyCancelled,
    #[error("the cancellation reason must be 1 to 200 characters")]
    InvalidCancellationReason,
    #[error("the provider reports this payment differently from the order; nothing was captured and support must review it")]
    ProviderDiscrepancy,
    #[error("the payment is disputed; refunds wait until the dispute is decided")]
    DisputeOpen,
    #[error("the note must be 1 to {MAX_DISCREPANCY_NOTE_CHARS} characters, not blank, without control characters")]
    InvalidDiscrepancyNote,
    #[error(
        "the refund is not awaiting the provider's decision, so it has no discrepancy to resolve"
    )]
    RefundNotAwaitingProvider,
    #[error("the refund has no open discrepancy: none was recorded, or it was resolved already")]
    NoOpenRefundDiscrepancy,
}

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    /// No events yet.
    #[default]
    New,
    /// Placed, waiting for the customer's payment (Toss READY).
    Ready,
    /// The provider was asked; its answer is not recorded yet.
    Confirming,
    /// The provider was asked and nobody knows its answer: the reconciler will find out.
    OutcomeUnknown,
    /// The last attempt failed; the customer may try again with a new payment.
    Failed,
    Paid,
    PartiallyRefunded,
    Refunded,
    Expired,
    /// The provider's payment differs from the order (a `PaymentDiscrepancyRecorded`): nothing
    /// was captured, and no automatic path moves it on; support settles it (a manual payment).
    NeedsReview,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RefundStatus {
    Requested,
    OutcomeUnknown,
    /// Submitted to a provider that approves refunds later (Paddle).
    AwaitingProvider,
    Completed,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundState {
    pub amount_minor: i64,
    /// As stored: a sealed token when personal fields are sealed.
    pub reason: String,
    /// See [`RefundRequested::reason_digest`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_digest: Option<String>,
    pub status: RefundStatus,
    pub idempotency_key: String,
    pub requested_at: DateTime<Utc>,
    /// Why the provider refused it, when it did.
    pub failure: Option<ProviderFailure>,
    /// The provider's id of a refund it approves later (Paddle `adj_…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_refund_id: Option<String>,
    /// The last difference recorded between the provider's request and this refund (a
    /// `RefundDiscrepancyRecorded`): the same one seen again records nothing new.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discrepancy: Option<RefundDiscrepancy>,
    /// How an admin resolved that discrepancy (a `RefundDiscrepancyResolved`); cleared when a
    /// new one is recorded. The discrepancy itself stays, so the same mismatch seen again
    /// records nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discrepancy_resolution: Option<DiscrepancyResolution>,
}

impl RefundState {
    /// Whether the refund waits for the provider with a discrepancy no admin has resolved.
    pub fn discrepancy_open(&self) -> bool {
        self.status == RefundStatus::AwaitingProvider
            && self.discrepancy.is_some()
            && self.discrepancy_resolution.is_none()
    }
}

/// What a `RefundDiscrepancyRecorded` said, kept on the refund.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundDiscrepancy {
    pub provider_status: String,
    pub differences: Vec<RefundDifference>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    pub placed: Option<PlaceOrder>,
    pub status: OrderStatus,
    pub payment_key: Option<PaymentKey>,
    pub confirmation_attempts: u32,
    pub pending_idempotency_key: Option<String>,
    /// When the confirmation now waiting for an outcome was sent (the reconciler's age check).
    pub confirmation_started_at: Option<DateTime<Utc>>,
    pub captured_minor: i64,
    pub refunded_minor: i64,
    /// Requested but not yet completed or failed: held back from what can still be refunded.
    pub refund_pending_minor: i64,
    pub refunds: BTreeMap<RefundId, RefundState>,
    pub last_failure: Option<ProviderFailure>,
    pub paid_at: Option<DateTime<Utc>>,
    pub fulfilled_at: Option<DateTime<Utc>>,
    /// Set when an admin cancelled the enrollment: no new payment, no fulfilment after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrollment_cancelled_at: Option<DateTime<Utc>>,
    /// What the provider's payment differed in, when a discrepancy put the order under review.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discrepancy: Option<Vec<Difference>>,
    /// Provider transaction keys of completed refunds (payledger's and provider-initiated), so
    /// a refund the provider reports is recorded once.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub refund_transaction_keys: BTreeSet<String>,
    /// The payment's dispute, once the provider reported one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispute: Option<OrderDispute>,
    /// What a lost dispute took: no longer refundable.
    #[serde(default)]
    pub dispute_lost_minor: i64,
    /// The key the client confirmed the current (or captured) attempt with, when the provider
    /// names the payment otherwise once captured (Stripe: the PaymentMethod id, while
    /// `payment_key` becomes the PaymentIntent id), so a repeated confirm with it is answered as
    /// the same payment. Cleared when the attempt fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_payment_key: Option<PaymentKey>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderDispute {
    pub dispute_id: String,
    pub status: DisputeStatus,
    pub amount_minor: i64,
    /// What the provider kept of the amount, once decided (a lost dispute: usually all of it).
    #[serde(default)]
    pub withdrawn_minor: i64,
    /// The provider's dispute fee, once decided; reconciliation compares the provider's dispute
    /// balance transaction with it.
    #[serde(default)]
    pub fee_minor: i64,
}

impl Order {
    pub fn refundable_minor(&self) -> i64 {
        self.captured_minor
            - self.refunded_minor
            - self.refund_pending_minor
            - self.dispute_lost_minor
    }

    /// Whether `key` names this order's current payment: the provider's key, or the one the
    /// client confirmed it with.
    pub fn is_payment_key(&self, key: &PaymentKey) -> bool {
        self.payment_key.as_ref() == Some(key) || self.client_payment_key.as_ref() == Some(key)
    }

    /// Refunds still awaiting the provider whose request, as the provider reported it, differs
    /// from them (a `RefundDiscrepancyRecorded`) and that no admin resolved since: support must
    /// review each.
    pub fn refunds_under_review(&self) -> usize {
        self.refunds
            .values()
            .filter(|r| r.discrepancy_open())
            .count()
    }

    /// Whether a dispute is open on the payment (refunds refused, settlement held).
    pub fn dispute_open(&self) -> bool {
        self.dispute
            .as_ref()
            .is_some_and(|d| d.status == DisputeStatus::Open)
    }

    fn placed(&self) -> Result<&PlaceOrder, OrderError> {
        self.placed.as_ref().ok_or(OrderError::NotFound)
    }

    pub fn is_paid(&self) -> bool {
        matches!(
            self.status,
            OrderStatus::Paid | OrderStatus::PartiallyRefunded | OrderStatus::Refunded
        )
    }

    /// The ledger's invariant for one order: refunds never exceed the capture. Asserted after
    /// every decision and, as the other half of the pair, by the orders read model after every
    /// fold: a log that broke it would stop the projection instead of serving a wrong row.
    pub fn assert_invariants(&self) {
        assert!(self.captured_minor >= 0, "negative capture");
        assert!(
            self.refunded_minor >= 0 && self.refund_pending_minor >= 0,
            "negative refund total"
        );
        assert!(self.dispute_lost_minor >= 0, "negative dispute loss");
        assert!(
            self.refunded_minor + self.refund_pending_minor + self.dispute_lost_minor
                <= self.captured_minor,
            "refunds {} + pending {} + lost dispute {} exceed capture {}",
            self.refunded_minor,
            self.refund_pending_minor,
            self.dispute_lost_minor,
            self.captured_minor
        );
    }

    fn decide(&self, command: OrderCommand) -> Result<Vec<OrderEvent>, OrderError> {
        match command {
            OrderCommand::Place(place) => self.place(place),
            OrderCommand::StartConfirmation {
                payment_key,
                claimed_amount_minor,
                at,
            } => self.start_confirmation(payment_key, claimed_amount_minor, at),
            OrderCommand::RecordConfirmationOutcome {
                outcome,
                source,
                at,
            } => self.record_confirmation_outcome(outcome, source, at),
            OrderCommand::RequestRefund {
                refund_id,
                amount_minor,
                reason,
                reason_digest,
                at,
            } => self.request_refund(refund_id, amount_minor, reason, reason_digest, at),
            OrderCommand::RecordRefundOutcome {
                refund_id,
                outcome,
                source,
                at,
            } => self.record_refund_outcome(refund_id, outcome, source, at),
            OrderCommand::Expire { at } => self.expire(at),
            OrderCommand::RecordFulfilment { at } => self.fulfil(at),
            OrderCommand::RecordManualPayment {
                provider_transaction_id,
                amount_minor,
                method,
                at,
            } => self.record_manual_payment(provider_transaction_id, amount_minor, method, at),
            OrderCommand::CancelEnrollment { reason, at } => self.cancel_enrollment(reason, at),
            OrderCommand::RecordProviderRefund {
                provider,
                transaction_key,
                amount_minor,
                currency,
                at,
            } => self.record_provider_refund(provider, transaction_key, amount_minor, currency, at),
            OrderCommand::RecordDispute { fact, at } => self.record_dispute(fact, at),
            OrderCommand::RecordProviderRefundDecision {
                provider_refund_id,
                fact,
                source,
                at,
            } => self.record_provider_refund_decision(provider_refund_id, fact, source, at),
            OrderCommand::ResolveRefundDiscrepancy {
                refund_id,
                resolution,
                note,
                resolved_by,
                at,
            } => self.resolve_refund_discrepancy(refund_id, resolution, note, resolved_by, at),
        }
    }

    fn resolve_refund_discrepancy(
        &self,
        refund_id: RefundId,
        resolution: DiscrepancyResolution,
        note: String,
        resolved_by: String,
        at: DateTime<Utc>,
    ) -> Result<Vec<OrderEvent>, OrderError> {
        self.placed()?;
        let note_chars = note.chars().count();
        if note.trim().is_empty()
            || note_chars > MAX_DISCREPANCY_NOTE_CHARS
            || note.chars().any(char::is_control)
        {
            return Err(OrderError::InvalidDiscrepancyNote);
        }
        let refund = self
            .refunds
            .get(&refund_id)
            .ok_or(OrderError::RefundNotFound)?;
        if refund.status != RefundStatus::AwaitingProvider {
            return Err(OrderError::RefundNotAwaitingProvider);
        }
        // Resolving twice is refused, not a no-op: the second admin learns that someone else
        // (or their own earlier request) resolved it. A retried request with the same
        // Idempotency-Key gets the first answer from the idempotency layer.
        if !refund.discrepancy_open() {
            return Err(OrderError::NoOpenRefundDiscrepancy);
        }
        Ok(vec![OrderEvent::RefundDiscrepancyResolved(
            RefundDiscrepancyResolved {
                refund_id,
                provider_refund_id: refund.provider_refund_id.clone().unwrap_or_default(),
                resolution,
                note,
                resolved_by,
                at,
            },
        )])
    }

    fn record_provider_refund_decision(
        &self,
        provider_refund_id: String,
        fact: ProviderRefundFact,
        source: OutcomeSource,
        at: DateTime<Utc>,
    ) -> Result<Vec<OrderEvent>, OrderError> {
        let placed = self.placed()?;
        let (refund_id, refund) = self
            .refunds
            .iter()
            .find(|(_, r)| r.provider_refund_id.as_deref() == Some(provider_refund_id.as_str()))
            .ok_or(OrderError::RefundNotFound)?;
        if matches!(
            refund.status,
            RefundStatus::Completed | RefundStatus::Failed
        ) {
            // Decided before: a redelivered decision changes nothing.
            return Ok(vec![]);
        }
        let currency = placed.amount.currency();
        let awaited = AwaitedRefund {
            provider_refund_id: &provider_refund_id,
            payment_key: self.payment_key.as_ref().map(|k| k.as_str()),
            amount_minor: refund.amount_minor,
            currency,
        };
        let differences = crate::provider_refund::refund_differences(&awaited, &fact);
        if !differences.is_empty() {
            let provider_status: String = fact
                .provider_status
                .chars()
                .take(crate::provider_refund::MAX_DIFFERENCE_VALUE_CHARS)
                .collect();
            let seen = RefundDiscrepancy {
                provider_status,
                differences,
            };
            if refund.discrepancy.as_ref() == Some(&seen) {
                // The same mismatch seen again (every reconciler pass, a redelivery).
                return Ok(vec![]);
            }
            return Ok(vec![OrderEvent::RefundDiscrepancyRecorded(
                RefundDiscrepancyRecorded {
                    refund_id: refund_id.clone(),
                    provider: placed.provider.clone(),
                    provider_refund_id,
                    provider_status: seen.provider_status,
                    differences: seen.differences,
                    source,
                    at,
                },
            )]);
        }
        Ok(match fact.decision {
            ProviderRefundDecision::Pending | ProviderRefundDecision::Unrecognised => vec![],
            ProviderRefundDecision::Approved => {
                vec![OrderEvent::RefundCompleted(RefundCompleted {
                    refund_id: refund_id.clone(),
                    amount_minor: refund.amount_minor,
                    currency,
                    payee_id: placed.payee_id.clone(),
                    transaction_key: provider_refund_id,
                    source,
                    at,
                })]
            }
            ProviderRefundDecision::Rejected { failure } => {
                vec![OrderEvent::RefundFailed(RefundFailed {
                    refund_id: refund_id.clone(),
                    amount_minor: refund.amount_minor,
                    currency: Some(currency),
                    failure,
                    source,
                    at,
                })]
            }
        })
    }

    fn record_provider_refund(
        &self,
        provider: String,
        transaction_key: String,
        amount_minor: i64,
        currency: Currency,
        at: DateTime<Utc>,
    ) -> Result<Vec<OrderEvent>, OrderError> {
        let placed = self.placed()?;
        if self.refund_transaction_keys.contains(&transaction_key) {
            // Already recorded (ours, or this provider refund delivered again).
            return Ok(vec![]);
        }
        // Only within what is left of the capture, in the order's currency: anything else is
        // not something the ledger can record, and the caller records the discrepancy.
        if !self.is_paid()
            || currency != placed.amount.currency()
            || amount_minor <= 0
            || amount_minor > self.refundable_minor()
            || transaction_key.is_empty()
            || transaction_key.chars().count() > 255
        {
            return Err(OrderError::ProviderDiscrepancy);
        }
        Ok(vec![OrderEvent::ProviderRefundRecorded(
            ProviderRefundRecorded {
                provider,
                transaction_key,
                amount_minor,
                currency,
                payee_id: placed.payee_id.clone(),
                at,
            },
        )])
    }

    fn record_dispute(
        &self,
        fact: DisputeFact,
        at: DateTime<Utc>,
    ) -> Result<Vec<OrderEvent>, OrderError> {
        let placed = self.placed()?;
        let currency = placed.amount.currency();
        let mut events = Vec::new();
        match &self.dispute {
            Some(known) if known.dispute_id != fact.dispute_id => {
                // One dispute per charge at the provider: another id is not this payment's.
                return Err(OrderError::ProviderDiscrepancy);
            }
            // Decided already, or still open: a redelivery changes nothing.
            Some(known) if known.status != DisputeStatus::Open => return Ok(vec![]),
            Some(_) if fact.status == DisputeStatus::Open => return Ok(vec![]),
            Some(known) => {
                if fact.currency != currency
                    || !(0..=known.amount_minor).contains(&fact.withdrawn_minor)
                    || fact.fee_minor < 0
                {
                    return Err(OrderError::ProviderDiscrepancy);
                }
            }
            None => {
                let ledger = LedgerPayment {
                    payment_key: self.payment_key.as_ref().map(|k| k.as_str()),
                    captured_minor: self.captured_minor,
                    refunded_minor: self.refunded_minor + self.dispute_lost_minor,
                    currency,
                };
                if !self.is_paid() || !provider_fact::dispute_differences(&ledger, &fact).is_empty()
                {
                    return Err(OrderError::ProviderDiscrepancy);
                }
                events.push(OrderEvent::DisputeOpened(DisputeOpened {
                    provider: fact.provider.clone(),
                    dispute_id: fact.dispute_id.clone(),
                    amount_minor: fact.amount_minor,
                    currency,
                    payee_id: placed.payee_id.clone(),
                    reason: fact.reason.as_ref().map(|r| r.chars().take(100).collect()),
                    at,
                }));
            }
        }
        let amount_minor = self
            .dispute
            .as_ref()
            .map_or(fact.amount_minor, |d| d.amount_minor);
        let closed = DisputeClosed {
            provider: fact.provider,
            dispute_id: fact.dispute_id,
            amount_minor,
            withdrawn_minor: fact.withdrawn_minor,
            fee_minor: fact.fee_minor,
            currency,
            payee_id: placed.payee_id.clone(),
            at,
        };
        match fact.status {
            DisputeStatus::Open => {}
            DisputeStatus::Won => events.push(OrderEvent::DisputeWon(DisputeClosed {
                // Won: nothing stays withdrawn, whatever the order of the provider's reversals.
                withdrawn_minor: 0,
                ..closed
            })),
            DisputeStatus::Lost => events.push(OrderEvent::DisputeLost(closed)),
        }
        Ok(events)
    }

    fn record_manual_payment(
        &self,
        provider_transaction_id: PaymentKey,
        amount_minor: i64,
        method: Option<String>,
        at: DateTime<Utc>,
    ) -> Result<Vec<OrderEvent>, OrderError> {
        let placed = self.placed()?;
        if self.is_paid() && self.payment_key.as_ref() == Some(&provider_transaction_id) {
            // The same manual payment recorded again (a retried admin request): nothing new.
            return Ok(vec![]);
        }
        // Confirming/OutcomeUnknown: the provider may be charging right now, so recording an
        // outside payment could charge the customer twice; settle that first (reconcile).
        if !matches!(
            self.status,
            OrderStatus::Ready
                | OrderStatus::Failed
                | OrderStatus::Expired
                | OrderStatus::NeedsReview
        ) || self.enrollment_cancelled_at.is_some()
        {
            return Err(OrderError::ManualPaymentNotAllowed);
        }
        let expected = placed.amount.amount_minor();
        if amount_minor != expected {
            return Err(OrderError::ManualPaymentAmountMismatch {
                recorded_minor: amount_minor,
                expected_minor: expected,
            });
        }
        Ok(vec![OrderEvent::PaymentCaptured(PaymentCaptured {
            payment_key: provider_transaction_id,
            amount_minor: expected,
            currency: placed.amount.currency(),
            payee_id: placed.payee_id.clone(),
            approved_at: at,
            method,
            source: OutcomeSource::Manual,
        })])
    }

    fn cancel_enrollment(
        &self,
        reason: String,
        at: DateTime<Utc>,
    ) -> Result<Vec<OrderEvent>, OrderError> {
        let placed = self.placed()?;
        let reason_len = reason.chars().count();
        if reason_len == 0 || reason_len > MAX_REASON_CHARS || reason.chars().any(char::is_control)
        {
            return Err(OrderError::InvalidCancellationReason);
        }
        if self.enrollment_cancelled_at.is_some() {
            return Err(OrderError::EnrollmentAlreadyCancelled);
        }
        if matches!(
            self.status,
            OrderStatus::Confirming | OrderStatus::OutcomeUnknown
        ) {
            // The charge may be happening: cancelling now would leave a paid, cancelled order
            // nobody refunds. Settle the confirmation first.
            return Err(OrderError::ConfirmationInProgress);
        }
        Ok(vec![OrderEvent::EnrollmentCancelled(EnrollmentCancelled {
            reason,
            was_paid: self.is_paid(),
            at,
            customer_id: Some(placed.customer_id.clone()),
        })])
    }

    fn place(&self, place: PlaceOrder) -> Result<Vec<OrderEvent>, OrderError> {
        if self.placed.is_some() {
            return Err(OrderError::AlreadyExists);
        }
        let name_len = place.order_name.chars().count();
        if name_len == 0
            || name_len > MAX_ORDER_NAME_CHARS
            || place.order_name.chars().any(char::is_control)
        {
            return Err(OrderError::InvalidOrderName);
        }
        Ok(vec![OrderEvent::OrderPlaced(place)])
    }

    fn start_confirmation(
        &self,
        payment_key: PaymentKey,
        claimed_amount_minor: i64,
        at: DateTime<Utc>,
    ) -> Result<Vec<OrderEvent>, OrderError> {
        let placed = self.placed()?;
        match self.status {
            OrderStatus::Confirming | OrderStatus::OutcomeUnknown => {
                return Err(OrderError::ConfirmationInProgress)
            }
            OrderStatus::Paid | OrderStatus::PartiallyRefunded | OrderStatus::Refunded => {
                return Err(OrderError::AlreadyPaid)
            }
            OrderStatus::Expired => return Err(OrderError::Expired),
            OrderStatus::NeedsReview => return Err(OrderError::ProviderDiscrepancy),
            OrderStatus::New | OrderStatus::Ready | OrderStatus::Failed => {}
        }
        if self.enrollment_cancelled_at.is_some() {
            return Err(OrderError::EnrollmentAlreadyCancelled);
        }
        if at >= self.window_closes_at(placed) {
            return Err(OrderError::Expired);
        }
        let expected = placed.amount.amount_minor();
        if claimed_amount_minor != expected {
            return Ok(vec![OrderEvent::ConfirmationRejected(
                ConfirmationRejected {
                    payment_key,
                    reason: RejectionReason::AmountMismatch,
                    claimed_amount_minor,
                    expected_amount_minor: expected,
                    at,
                },
            )]);
        }
        let attempt = self.confirmation_attempts + 1;
        Ok(vec![OrderEvent::PaymentConfirmationStarted(
            ConfirmationStarted {
                idempotency_key: format!("{}:confirm:{attempt}", stream_id(&placed.order_id)),
                payment_key,
                amount_minor: expected,
                attempt,
                at,
            },
        )])
    }

    fn window_closes_at(&self, placed: &PlaceOrder) -> DateTime<Utc> {
        placed.placed_at + Duration::minutes(CONFIRMATION_WINDOW_MINUTES)
    }

    fn record_confirmation_outcome(
        &self,
        outcome: ProviderOutcome,
        source: OutcomeSource,
        at: DateTime<Utc>,
    ) -> Result<Vec<OrderEvent>, OrderError> {
        let placed = self.placed()?;
        if !matches!(
            self.status,
            OrderStatus::Confirming | OrderStatus::OutcomeUnknown
        ) {
            return Err(OrderError::NoConfirmationPending);
        }
        let payment_key = self
            .payment_key
            .clone()
            .ok_or(OrderError::NoConfirmationPending)?;
        // What is left to record once an observation is judged: a failure or "still unknown".
        enum Settled {
            Failed(ProviderFailure),
            Unknown(String),
        }
        let settled = match outcome {
            ProviderOutcome::Refused { failure } => Settled::Failed(failure),
            ProviderOutcome::Unknown { reason } => Settled::Unknown(reason),
            ProviderOutcome::Observed { fact } => {
                let expected = ExpectedPayment {
                    order_id: placed.order_id.as_str(),
                    payment_key: Some(payment_key.as_str()),
                    amount: placed.amount,
                };
                match provider_fact::judge(&expected, &fact) {
                    Verdict::Captured => {
                        // The provider's own payment id from now on (Stripe's PaymentIntent, not
                        // the PaymentMethod the client sent): refunds and lookups use it.
                        let payment_key =
                            PaymentKey::parse(fact.payment_key.clone()).unwrap_or(payment_key);
                        return Ok(vec![OrderEvent::PaymentCaptured(PaymentCaptured {
                            payment_key,
                            amount_minor: placed.amount.amount_minor(),
                            currency: placed.amount.currency(),
                            payee_id: placed.payee_id.clone(),
                            approved_at: fact.approved_at.unwrap_or(at),
                            method: fact.method,
                            source,
                        })]);
                    }
                    Verdict::Differs(differences) => {
                        return Ok(vec![OrderEvent::PaymentDiscrepancyRecorded(
                            PaymentDiscrepancyRecorded {
                                provider: fact.provider,
                                payment_key,
                                differences,
                                provider_order_id: fact.order_id,
                                provider_payment_key: fact.payment_key,
                                provider_status: fact.provider_status,
                                provider_amount_minor: fact.amount_minor,
                                provider_refunded_minor: fact.refunded_minor,
                                provider_currency: fact.currency,
                                expected_amount_minor: placed.amount.amount_minor(),
                                expected_currency: placed.amount.currency(),
                                source,
                                at,
                            },
                        )])
                    }
                    Verdict::NotCompleted => Settled::Failed(ProviderFailure {
                        class: FailureClass::InvalidRequest,
                        provider_code: fact.provider_status.chars().take(100).collect(),
                        provider_message: "the provider reports the payment was not completed"
                            .into(),
                    }),
                    Verdict::Pending => Settled::Unknown(format!(
                        "the provider reports the payment {}",
                        fact.provider_status.chars().take(100).collect::<String>()
                    )),
                }
            }
        };
        Ok(match settled {
            Settled::Failed(failure) => vec![OrderEvent::PaymentFailed(PaymentFailed {
                payment_key,
                failure,
                source,
                at,
            })],
            // Still unknown: recording it again would only add noise.
            Settled::Unknown(_) if self.status == OrderStatus::OutcomeUnknown => vec![],
            Settled::Unknown(reason) => vec![OrderEvent::PaymentOutcomeUnknown(OutcomeUnknown {
                payment_key,
                reason,
                at,
            })],
        })
    }

    fn request_refund(
        &self,
        refund_id: RefundId,
        amount_minor: Option<i64>,
        reason: String,
        reason_digest: Option<String>,
        at: DateTime<Utc>,
    ) -> Result<Vec<OrderEvent>, OrderError> {
        let placed = self.placed()?;
        let reason_len = reason.chars().count();
        if reason_len == 0 || reason_len > MAX_REASON_CHARS || reason.chars().any(char::is_control)
        {
            return Err(OrderError::InvalidRefundReason);
        }
        if let Some(existing) = self.refunds.get(&refund_id) {
            // The same refund asked again: nothing new happens, whatever its state. A sealed
            // reason is compared by its keyed digest; a reason stored in clear (sealing off, or
            // an event of schema version 1) by its text.
            let same_amount = amount_minor.is_none_or(|a| a == existing.amount_minor);
            let same_reason = match (&existing.reason_digest, &reason_digest) {
                (Some(stored), Some(asked)) => stored == asked,
                _ => existing.reason == reason,
            };
            if same_amount && same_reason {
                return Ok(vec![]);
            }
            return Err(OrderError::RefundIdConflict);
        }
        if self.dispute_open() {
            return Err(OrderError::DisputeOpen);
        }
        if !self.is_paid() {
            return Err(OrderError::NotPaid);
        }
        if self.refunds.len() >= MAX_REFUNDS_PER_ORDER {
            return Err(OrderError::TooManyRefunds);
        }
        let refundable = self.refundable_minor();
        let amount = match amount_minor {
            Some(a) if a <= 0 => return Err(OrderError::RefundAmountNotPositive),
            Some(a) => a,
            None if refundable == 0 => return Err(OrderError::NothingToRefund),
            None => refundable,
        };
        if amount > refundable {
            return Err(OrderError::RefundExceedsRefundable {
                requested_minor: amount,
                refundable_minor: refundable,
            });
        }
        Ok(vec![OrderEvent::RefundRequested(RefundRequested {
            idempotency_key: format!("{}:refund:{refund_id}", stream_id(&placed.order_id)),
            refund_id,
            amount_minor: amount,
            currency: placed.amount.currency(),
            reason,
            at,
            customer_id: Some(placed.customer_id.clone()),
            reason_digest,
        })])
    }

    fn record_refund_outcome(
        &self,
        refund_id: RefundId,
        outcome: RefundOutcome,
        source: OutcomeSource,
        at: DateTime<Utc>,
    ) -> Result<Vec<OrderEvent>, OrderError> {
        let placed = self.placed()?;
        let refund = self
            .refunds
            .get(&refund_id)
            .ok_or(OrderError::RefundNotFound)?;
        if matches!(
            refund.status,
            RefundStatus::Completed | RefundStatus::Failed
        ) {
            // Already settled: a late duplicate outcome changes nothing.
            return Ok(vec![]);
        }
        let event = match outcome {
            RefundOutcome::Completed { transaction_key } => {
                OrderEvent::RefundCompleted(RefundCompleted {
                    refund_id,
                    amount_minor: refund.amount_minor,
                    currency: placed.amount.currency(),
                    payee_id: placed.payee_id.clone(),
                    transaction_key,
                    source,
                    at,
                })
            }
            RefundOutcome::Refused { failure } => OrderEvent::RefundFailed(RefundFailed {
                refund_id,
                amount_minor: refund.amount_minor,
                currency: Some(placed.amount.currency()),
                failure,
                source,
                at,
            }),
            RefundOutcome::AwaitingProvider { provider_refund_id } => {
                if refund.status == RefundStatus::AwaitingProvider {
                    return Ok(vec![]);
                }
                if provider_refund_id.is_empty() || provider_refund_id.chars().count() > 255 {
                    return Err(OrderError::ProviderDiscrepancy);
                }
                OrderEvent::RefundAwaitingProvider(RefundAwaitingProvider {
                    refund_id,
                    provider: placed.provider.clone(),
                    provider_refund_id,
                    amount_minor: refund.amount_minor,
                    currency: placed.amount.currency(),
                    at,
                })
            }
            RefundOutcome::Unknown { reason } => {
                if matches!(
                    refund.status,
                    RefundStatus::OutcomeUnknown | RefundStatus::AwaitingProvider
                ) {
                    return Ok(vec![]);
                }
                OrderEvent::RefundOutcomeUnknown(RefundOutcomeUnknown {
                    refund_id,
                    reason,
                    at,
                })
            }
        };
        Ok(vec![event])
    }

    fn expire(&self, at: DateTime<Utc>) -> Result<Vec<OrderEvent>, OrderError> {
        let placed = self.placed()?;
        if !matches!(self.status, OrderStatus::Ready | OrderStatus::Failed) {
            return Err(OrderError::NotExpirable);
        }
        if at < self.window_closes_at(placed) {
            return Err(OrderError::NotExpirable);
        }
        Ok(vec![OrderEvent::OrderExpired(OrderExpired { at })])
    }

    fn fulfil(&self, at: DateTime<Utc>) -> Result<Vec<OrderEvent>, OrderError> {
        self.placed()?;
        if self.fulfilled_at.is_some() {
            return Err(OrderError::AlreadyFulfilled);
        }
        if !self.is_paid() {
            return Err(OrderError::NotPaid);
        }
        if self.enrollment_cancelled_at.is_some() {
            return Err(OrderError::EnrollmentAlreadyCancelled);
        }
        Ok(vec![OrderEvent::OrderFulfilled(OrderFulfilled { at })])
    }

    fn after_refund_change(&mut self) {
        if self.captured_minor > 0 && self.refunded_minor == self.captured_minor {
            self.status = OrderStatus::Refunded;
        } else if self.refunded_minor > 0 {
            self.status = OrderStatus::PartiallyRefunded;
        }
    }
}

impl Aggregate for Order {
    const TYPE: &'static str = "order";
    type Command = OrderCommand;
    type Event = OrderEvent;
    type Error = OrderError;
    type Services = ();

    async fn handle(
        &mut self,
        command: OrderCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), OrderError> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        self.assert_invariants();
        Ok(())
    }

    fn apply(&mut self, event: OrderEvent) {
        match event {
            OrderEvent::OrderPlaced(placed) => {
                self.placed = Some(placed);
                self.status = OrderStatus::Ready;
            }
            OrderEvent::ConfirmationRejected(_) => {}
            OrderEvent::PaymentConfirmationStarted(started) => {
                self.status = OrderStatus::Confirming;
                self.client_payment_key = Some(started.payment_key.clone());
                self.payment_key = Some(started.payment_key);
                self.confirmation_attempts = started.attempt;
                self.pending_idempotency_key = Some(started.idempotency_key);
                self.confirmation_started_at = Some(started.at);
            }
            OrderEvent::PaymentCaptured(captured) => {
                self.status = OrderStatus::Paid;
                self.discrepancy = None;
                // The same key for a confirmed payment; the provider transaction for a manual one.
                self.payment_key = Some(captured.payment_key.clone());
                self.captured_minor = captured.amount_minor;
                self.paid_at = Some(captured.approved_at);
                self.pending_idempotency_key = None;
                self.confirmation_started_at = None;
                self.last_failure = None;
            }
            OrderEvent::PaymentFailed(failed) => {
                // AlreadyProcessed is resolved into a capture by the application before recording.
                debug_assert_ne!(failed.failure.class, FailureClass::AlreadyProcessed);
                self.status = OrderStatus::Failed;
                self.client_payment_key = None;
                self.pending_idempotency_key = None;
                self.confirmation_started_at = None;
                self.last_failure = Some(failed.failure);
            }
            OrderEvent::PaymentOutcomeUnknown(_) => self.status = OrderStatus::OutcomeUnknown,
            OrderEvent::RefundRequested(requested) => {
                self.refund_pending_minor += requested.amount_minor;
                self.refunds.insert(
                    requested.refund_id,
                    RefundState {
                        amount_minor: requested.amount_minor,
                        reason: requested.reason,
                        reason_digest: requested.reason_digest,
                        status: RefundStatus::Requested,
                        idempotency_key: requested.idempotency_key,
                        requested_at: requested.at,
                        failure: None,
                        provider_refund_id: None,
                        discrepancy: None,
                        discrepancy_resolution: None,
                    },
                );
            }
            OrderEvent::RefundCompleted(completed) => {
                if let Some(refund) = self.refunds.get_mut(&completed.refund_id) {
                    refund.status = RefundStatus::Completed;
                    self.refund_pending_minor -= refund.amount_minor;
                    self.refunded_minor += refund.amount_minor;
                }
                self.refund_transaction_keys
                    .insert(completed.transaction_key);
                self.after_refund_change();
            }
            OrderEvent::RefundFailed(failed) => {
                if let Some(refund) = self.refunds.get_mut(&failed.refund_id) {
                    refund.status = RefundStatus::Failed;
                    refund.failure = Some(failed.failure);
                    self.refund_pending_minor -= refund.amount_minor;
                }
            }
            OrderEvent::RefundOutcomeUnknown(unknown) => {
                if let Some(refund) = self.refunds.get_mut(&unknown.refund_id) {
                    refund.status = RefundStatus::OutcomeUnknown;
                }
            }
            OrderEvent::RefundAwaitingProvider(awaiting) => {
                if let Some(refund) = self.refunds.get_mut(&awaiting.refund_id) {
                    refund.status = RefundStatus::AwaitingProvider;
                    refund.provider_refund_id = Some(awaiting.provider_refund_id);
                }
            }
            OrderEvent::OrderExpired(_) => self.status = OrderStatus::Expired,
            OrderEvent::OrderFulfilled(fulfilled) => self.fulfilled_at = Some(fulfilled.at),
            OrderEvent::EnrollmentCancelled(cancelled) => {
                self.enrollment_cancelled_at = Some(cancelled.at)
            }
            OrderEvent::PaymentDiscrepancyRecorded(differs) => {
                self.status = OrderStatus::NeedsReview;
                self.client_payment_key = None;
                self.discrepancy = Some(differs.differences);
                self.pending_idempotency_key = None;
                self.confirmation_started_at = None;
            }
            OrderEvent::ProviderRefundRecorded(refund) => {
                self.refunded_minor += refund.amount_minor;
                self.refund_transaction_keys.insert(refund.transaction_key);
                self.after_refund_change();
            }
            OrderEvent::DisputeOpened(opened) => {
                self.dispute = Some(OrderDispute {
                    dispute_id: opened.dispute_id,
                    status: DisputeStatus::Open,
                    amount_minor: opened.amount_minor,
                    withdrawn_minor: 0,
                    fee_minor: 0,
                });
            }
            OrderEvent::DisputeWon(closed) => {
                if let Some(dispute) = self.dispute.as_mut() {
                    dispute.status = DisputeStatus::Won;
                    dispute.withdrawn_minor = closed.withdrawn_minor;
                    dispute.fee_minor = closed.fee_minor;
                }
                self.dispute_lost_minor += closed.withdrawn_minor;
            }
            OrderEvent::DisputeLost(closed) => {
                if let Some(dispute) = self.dispute.as_mut() {
                    dispute.status = DisputeStatus::Lost;
                    dispute.withdrawn_minor = closed.withdrawn_minor;
                    dispute.fee_minor = closed.fee_minor;
                }
                self.dispute_lost_minor += closed.withdrawn_minor;
            }
            OrderEvent::RefundDiscrepancyRecorded(differs) => {
                // Money state does not change: the refund keeps waiting with its amount held.
                if let Some(refund) = self.refunds.get_mut(&differs.refund_id) {
                    refund.discrepancy = Some(RefundDiscrepancy {
                        provider_status: differs.provider_status,
                        differences: differs.differences,
                    });
                    // A new mismatch is under review again, whatever was resolved before.
                    refund.discrepancy_resolution = None;
                }
            }
            OrderEvent::RefundDiscrepancyResolved(resolved) => {
                // Money state does not change: the refund keeps waiting with its amount held.
                if let Some(refund) = self.refunds.get_mut(&resolved.refund_id) {
                    refund.discrepancy_resolution = Some(resolved.resolution);
                }
            }
        }
    }
}
