//! The subscription: a plan charged to a billing key every interval, and the dunning state
//! machine that decides what a failed charge leads to. Stream `subscription-{id}`.
//!
//! A charge is two steps around the provider call, like an order's confirmation:
//! `ChargeAttemptStarted` is appended *before* the call (its expected-version check lets exactly
//! one of several schedulers through), and `ChargeSucceeded` / `ChargeFailed` /
//! `ChargeOutcomeUnknown` after. Each attempt carries its own provider idempotency key
//! `{subscription}:{cycle}:{attempt}`; all attempts of one cycle share the provider order id
//! `sub-{subscription}-c{cycle}`, so the provider itself refuses to charge a cycle twice.
//!
//! Dunning (domain spec §3.3) lives here with its schedule: the policy in force is handed to the
//! command that records a failure, and the event copies what it schedules (retry days, grace end,
//! backoff), so a later change of configuration never moves a retry already scheduled.

use crate::billing::{
    BillingInterval, BillingKeyId, DunningPolicy, NotificationPriority, PlanId, SubscriptionId,
    MAX_CYCLES,
};
use crate::ids::{CustomerId, PaymentKey};
use crate::money::{Currency, Money};
use crate::order::OutcomeSource;
use crate::provider_failure::{FailureClass, ProviderFailure};
use chrono::{DateTime, Duration, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

/// An attempt with no recorded outcome for this long is looked at again: its outcome is looked up
/// at the provider and, if the provider has no payment, the same request is sent again. Far above
/// any provider call's timeout including its retries, so a live request is never overtaken.
pub const ATTEMPT_STALE_AFTER_SECONDS: i64 = 300;
/// How often one attempt may be sent again before it is given up as a provider error.
pub const MAX_REDRIVES_PER_ATTEMPT: u32 = 5;
/// How far in the past an anchor may lie (clock skew between caller and ledger).
pub const ANCHOR_PAST_TOLERANCE_SECONDS: i64 = 300;
/// How far in the future the first charge may be scheduled.
pub const MAX_ANCHOR_AHEAD_DAYS: i64 = 366;
/// Attempts in one cycle; a bound well above any dunning schedule plus provider backoffs.
pub const MAX_ATTEMPTS_PER_CYCLE: u32 = 100;

/// Why a subscription was suspended (`SubscriptionSuspended.reasonCode`).
pub const SUSPENDED_MAX_RETRIES: &str = "PAYMENT_FAILED_MAX_RETRIES";
pub const SUSPENDED_GRACE_EXPIRED: &str = "BILLING_KEY_GRACE_EXPIRED";

pub fn stream_id(subscription_id: &SubscriptionId) -> String {
    crate::streams::StreamKind::Subscription.name(subscription_id)
}

/// The provider order id of a cycle: every attempt of the cycle uses it, so the provider refuses a
/// second charge of the same cycle (`DUPLICATED_ORDER_ID`) whatever happens on our side.
pub fn provider_order_id(subscription_id: &SubscriptionId, cycle: u32) -> String {
    format!("sub-{subscription_id}-c{cycle}")
}

/// The provider idempotency key of one attempt: a retried request of the attempt is the same
/// key, a new attempt a new one.
pub fn idempotency_key(subscription_id: &SubscriptionId, cycle: u32, attempt: u32) -> String {
    format!("{subscription_id}:{cycle}:{attempt}")
}

// ---------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
pub enum SubscriptionCommand {
    Start(SubscriptionStarted),
    /// Record a new charge attempt of the current cycle (before calling the provider).
    StartChargeAttempt {
        trigger: AttemptTrigger,
        at: DateTime<Utc>,
    },
    /// Send a stale attempt again with its own idempotency key (after the provider was asked and
    /// has no payment for the cycle).
    RedriveAttempt {
        at: DateTime<Utc>,
    },
    RecordChargeOutcome {
        cycle: u32,
        attempt: u32,
        outcome: ChargeOutcome,
        source: OutcomeSource,
        /// The dunning policy in force now; what the failure schedules is copied into the event.
        policy: DunningPolicy,
        at: DateTime<Utc>,
    },
    ChangePaymentMethod {
        billing_key_id: BillingKeyId,
        at: DateTime<Utc>,
    },
    CancelAtPeriodEnd {
        at: DateTime<Utc>,
    },
    /// Withdraws a cancellation that has not taken effect yet.
    Resume {
        at: DateTime<Utc>,
    },
    /// Ends the subscription now.
    EndNow {
        at: DateTime<Utc>,
    },
    /// The scheduler: a cancellation reached its effective time.
    EndAtPeriodEnd {
        at: DateTime<Utc>,
    },
    /// The scheduler: the billing-key grace period ran out.
    SuspendAfterGrace {
        at: DateTime<Utc>,
    },
    /// Provider-billed subscriptions: what the provider reported, confirmed against its API
    /// (`provider_billed.rs`).
    RecordProviderFact(crate::billing::ProviderSubscriptionFact),
}

/// Who started an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptTrigger {
    /// The scheduler: a charge or a retry was due.
    Scheduled,
    /// A new payment method: charge at once.
    PaymentMethodChanged,
    /// An admin asked for a charge now (allowed whenever the current cycle has started).
    Admin,
}

/// What the provider said about a charge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum ChargeOutcome {
    Approved {
        payment_key: PaymentKey,
        approved_at: DateTime<Utc>,
    },
    Refused {
        failure: ProviderFailure,
    },
    Unknown {
        reason: String,
    },
}

/// What the scheduler should do with a subscription at some time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DueAction {
    /// Start a new attempt of the current cycle.
    Charge,
    /// An attempt has had no outcome for [`ATTEMPT_STALE_AFTER_SECONDS`]: look it up at the
    /// provider, then record what it says or send it again.
    Resolve {
        cycle: u32,
        attempt: u32,
    },
    EndAtPeriodEnd,
    SuspendAfterGrace,
}

// ---------------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SubscriptionEvent {
    SubscriptionStarted(SubscriptionStarted),
    ChargeAttemptStarted(ChargeAttemptStarted),
    ChargeAttemptRedriven(ChargeAttemptRedriven),
    ChargeSucceeded(ChargeSucceeded),
    ChargeFailed(ChargeFailed),
    ChargeOutcomeUnknown(ChargeOutcomeUnknown),
    PaymentMethodChanged(PaymentMethodChanged),
    CancellationScheduled(CancellationScheduled),
    CancellationWithdrawn(CancellationWithdrawn),
    SubscriptionSuspended(SubscriptionSuspended),
    SubscriptionEnded(SubscriptionEnded),
    /// Notification: tell the customer a charge failed and when it is retried.
    PaymentFailedNotificationRequested(PaymentFailedNotificationRequested),
    /// Notification: ask the customer for a new payment method.
    PaymentMethodUpdateNotificationRequested(PaymentMethodUpdateNotificationRequested),
    /// Notification: tell the customer the subscription is suspended.
    SubscriptionSuspendedNotificationRequested(SubscriptionSuspendedNotificationRequested),
    /// A provider-billed payment refunded or charged back at the provider (Paddle's approved
    /// refund or chargeback adjustment).
    ProviderChargeReversed(ProviderChargeReversed),
}

pub use crate::billing::ChargeReversalKind;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderChargeReversed {
    /// The provider's transaction taken back (one of the subscription's paid periods).
    pub payment_key: PaymentKey,
    /// The provider's adjustment (`adj_…`): each is recorded once.
    pub reversal_id: String,
    pub kind: ChargeReversalKind,
    pub amount_minor: i64,
    pub currency: Currency,
    /// The provider's fee on the payment it gives back with the reversal (0: it keeps it all).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub provider_fee_returned_minor: i64,
    pub at: DateTime<Utc>,
}

fn is_zero(value: &i64) -> bool {
    *value == 0
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionStarted {
    pub subscription_id: SubscriptionId,
    pub customer_id: CustomerId,
    pub plan_id: PlanId,
    /// The plan's level in the catalogue when the subscription started.
    pub membership_level: u8,
    pub amount: Money,
    pub interval: BillingInterval,
    pub billing_key_id: BillingKeyId,
    /// The first charge; cycle n starts at anchor + (n − 1) intervals.
    pub anchor: DateTime<Utc>,
    /// What the provider shows the customer (`orderName`).
    pub order_name: String,
    pub at: DateTime<Utc>,
    /// `None`: payledger bills it (its scheduler charges `billing_key_id`). `Some`: the provider
    /// bills every cycle itself (Paddle) and tells payledger; `billing_key_id` is then the
    /// provider's subscription id, which stands for the payment method the provider keeps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billed_by: Option<crate::billing::ProviderBilling>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChargeAttemptStarted {
    pub cycle: u32,
    /// 1 for the first attempt of the cycle.
    pub attempt: u32,
    pub trigger: AttemptTrigger,
    /// Shared by all attempts of the cycle.
    pub provider_order_id: String,
    /// `{subscription}:{cycle}:{attempt}`: this attempt's provider idempotency key.
    pub idempotency_key: String,
    pub billing_key_id: BillingKeyId,
    pub amount_minor: i64,
    pub currency: Currency,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChargeAttemptRedriven {
    pub cycle: u32,
    pub attempt: u32,
    /// 1 for the first time the attempt is sent again.
    pub redrive: u32,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChargeSucceeded {
    pub cycle: u32,
    pub attempt: u32,
    pub payment_key: PaymentKey,
    pub provider_order_id: String,
    pub amount_minor: i64,
    pub currency: Currency,
    pub approved_at: DateTime<Utc>,
    pub period_start: DateTime<Utc>,
    /// Paid through this time; the next cycle is charged then.
    pub period_end: DateTime<Utc>,
    pub source: OutcomeSource,
    pub at: DateTime<Utc>,
    /// What a merchant-of-record provider (Paddle) kept of the charge as its fee; 0 (and absent
    /// from the payload) for charges payledger makes, whose fees come with the settlement.
    #[serde(default, skip_serializing_if = "is_zero_minor")]
    pub provider_fee_minor: i64,
}

fn is_zero_minor(value: &i64) -> bool {
    *value == 0
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChargeFailed {
    pub cycle: u32,
    pub attempt: u32,
    pub failure: ProviderFailure,
    /// What the dunning table made of it, with everything it scheduled.
    pub handling: FailureHandling,
    pub source: OutcomeSource,
    pub at: DateTime<Utc>,
}

/// One row of the dunning table, as applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum FailureHandling {
    /// Soft decline: `past_due`, retry number `retry_number` at `next_retry_at`
    /// (= `first_failure_at` + `retry_schedule_days[retry_number - 1]` days).
    #[serde(rename_all = "camelCase")]
    RetryScheduled {
        retry_number: u32,
        next_retry_at: DateTime<Utc>,
        first_failure_at: DateTime<Utc>,
        /// The schedule captured when the first failure of this dunning run was recorded.
        retry_schedule_days: Vec<u32>,
    },
    /// Soft decline of the last retry: the subscription is suspended.
    #[serde(rename_all = "camelCase")]
    RetriesExhausted { retries: u32 },
    /// Card expired or stopped, over its limit, or billing key invalid: `requires_payment_method`,
    /// no automatic retry; a billing-key failure also starts a grace period.
    #[serde(rename_all = "camelCase")]
    PaymentMethodRequired {
        grace_ends_at: Option<DateTime<Utc>>,
    },
    /// Provider or network error: status unchanged, another try in minutes, not counted.
    #[serde(rename_all = "camelCase")]
    ProviderBackoff {
        provider_retry: u32,
        next_attempt_at: DateTime<Utc>,
    },
    /// Provider errors outlasted the backoff schedule: `needs_review`.
    #[serde(rename_all = "camelCase")]
    ProviderRetriesExhausted { provider_retries: u32 },
    /// A provider error on a subscription that is not charged automatically anyway (an admin's
    /// attempt while it waits for a payment method or a review): nothing changes.
    StatusUnchanged,
    /// A code payledger does not know, or a request the provider found invalid: `needs_review`.
    ManualReview,
    /// A provider-billed renewal failed: `past_due`, and the provider runs the retries.
    ProviderDunning,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChargeOutcomeUnknown {
    pub cycle: u32,
    pub attempt: u32,
    pub reason: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentMethodChanged {
    pub billing_key_id: BillingKeyId,
    pub previous_billing_key_id: BillingKeyId,
    pub status_before: SubscriptionStatus,
    /// The subscription was waiting for money: it is charged again at once.
    pub charge_now: bool,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CancellationScheduled {
    /// The end of the paid period: benefits stay until then.
    pub effective_at: DateTime<Utc>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CancellationWithdrawn {
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionSuspended {
    /// `PAYMENT_FAILED_MAX_RETRIES` or `BILLING_KEY_GRACE_EXPIRED`.
    pub reason_code: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// Cancelled, and the paid period is over.
    CanceledAtPeriodEnd,
    /// Cancelled when nothing paid was left, or ended on request.
    EndedImmediately,
    /// The provider that bills it canceled it (a cancel at Paddle, or Paddle's dunning gave up).
    CanceledByProvider,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionEnded {
    pub reason: EndReason,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentFailedNotificationRequested {
    pub customer_id: CustomerId,
    pub subscription_id: SubscriptionId,
    pub plan_id: PlanId,
    pub amount_minor: i64,
    pub currency: Currency,
    pub failure_code: String,
    pub next_retry_at: DateTime<Utc>,
    pub priority: NotificationPriority,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentMethodUpdateNotificationRequested {
    pub customer_id: CustomerId,
    pub subscription_id: SubscriptionId,
    pub plan_id: PlanId,
    pub failure_code: String,
    /// When the subscription is suspended unless the method is updated (billing-key failures).
    pub grace_ends_at: Option<DateTime<Utc>>,
    pub priority: NotificationPriority,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionSuspendedNotificationRequested {
    pub customer_id: CustomerId,
    pub subscription_id: SubscriptionId,
    pub plan_id: PlanId,
    pub reason_code: String,
    pub priority: NotificationPriority,
    pub at: DateTime<Utc>,
}

impl DomainEvent for SubscriptionEvent {
    fn event_type(&self) -> String {
        match self {
            SubscriptionEvent::SubscriptionStarted(_) => "SubscriptionStarted",
            SubscriptionEvent::ChargeAttemptStarted(_) => "ChargeAttemptStarted",
            SubscriptionEvent::ChargeAttemptRedriven(_) => "ChargeAttemptRedriven",
            SubscriptionEvent::ChargeSucceeded(_) => "ChargeSucceeded",
            SubscriptionEvent::ChargeFailed(_) => "ChargeFailed",
            SubscriptionEvent::ChargeOutcomeUnknown(_) => "ChargeOutcomeUnknown",
            SubscriptionEvent::PaymentMethodChanged(_) => "PaymentMethodChanged",
            SubscriptionEvent::CancellationScheduled(_) => "CancellationScheduled",
            SubscriptionEvent::CancellationWithdrawn(_) => "CancellationWithdrawn",
            SubscriptionEvent::SubscriptionSuspended(_) => "SubscriptionSuspended",
            SubscriptionEvent::SubscriptionEnded(_) => "SubscriptionEnded",
            SubscriptionEvent::PaymentFailedNotificationRequested(_) => {
                "PaymentFailedNotificationRequested"
            }
            SubscriptionEvent::PaymentMethodUpdateNotificationRequested(_) => {
                "PaymentMethodUpdateNotificationRequested"
            }
            SubscriptionEvent::SubscriptionSuspendedNotificationRequested(_) => {
                "SubscriptionSuspendedNotificationRequested"
            }
            SubscriptionEvent::ProviderChargeReversed(_) => "ProviderChargeReversed",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    #[error("subscription does not exist")]
    NotFound,
    #[error("a subscription with this id already exists")]
    AlreadyExists,
    #[error("the order name must be 1 to 100 characters")]
    InvalidOrderName,
    #[error("the anchor must lie between now and {MAX_ANCHOR_AHEAD_DAYS} days ahead")]
    InvalidAnchor,
    #[error("nothing is due for this subscription now")]
    NothingDue,
    #[error("a charge attempt of this subscription is in progress")]
    AttemptInProgress,
    #[error("no charge attempt is waiting for this outcome")]
    NoAttemptInFlight,
    #[error("the attempt was sent again {MAX_REDRIVES_PER_ATTEMPT} times already")]
    RedrivesExhausted,
    #[error("the subscription has ended")]
    Ended,
    #[error("the subscription is suspended; update the payment method to resume charging")]
    Suspended,
    #[error("the subscription has reached its last cycle")]
    CycleOutOfRange,
    #[error("the cycle has reached the maximum of {MAX_ATTEMPTS_PER_CYCLE} attempts")]
    TooManyAttempts,
    #[error("the provider bills this subscription; payledger does not charge it")]
    ProviderBilled,
    #[error("payledger bills this subscription; a provider's billing report does not apply")]
    NotProviderBilled,
    #[error("the provider's report differs from the ledger: {0}")]
    ProviderFactDiffers(String),
}

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

/// The statuses of the dunning table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    /// In good standing (or waiting for its next charge).
    #[default]
    Active,
    /// A soft decline: retries are scheduled.
    PastDue,
    /// The customer must change the payment method; nothing is retried automatically.
    RequiresPaymentMethod,
    /// A failure payledger cannot classify: a person looks at it.
    NeedsReview,
    /// Charging stopped (retries exhausted or grace over); a new payment method restarts it.
    Suspended,
    Ended,
}

impl SubscriptionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionStatus::Active => "active",
            SubscriptionStatus::PastDue => "past_due",
            SubscriptionStatus::RequiresPaymentMethod => "requires_payment_method",
            SubscriptionStatus::NeedsReview => "needs_review",
            SubscriptionStatus::Suspended => "suspended",
            SubscriptionStatus::Ended => "ended",
        }
    }

    pub const ALL: [SubscriptionStatus; 6] = [
        SubscriptionStatus::Active,
        SubscriptionStatus::PastDue,
        SubscriptionStatus::RequiresPaymentMethod,
        SubscriptionStatus::NeedsReview,
        SubscriptionStatus::Suspended,
        SubscriptionStatus::Ended,
    ];

    pub fn parse(text: &str) -> Option<SubscriptionStatus> {
        SubscriptionStatus::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// An attempt recorded and not yet settled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InFlightAttempt {
    pub cycle: u32,
    pub attempt: u32,
    pub trigger: AttemptTrigger,
    pub provider_order_id: String,
    pub idempotency_key: String,
    pub billing_key_id: BillingKeyId,
    pub amount_minor: i64,
    pub currency: Currency,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    /// Last time the attempt was sent or heard of; staleness counts from here.
    pub last_activity_at: DateTime<Utc>,
    pub outcome_unknown: bool,
    pub redrives: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DunningState {
    pub first_failure_at: DateTime<Utc>,
    pub retry_schedule_days: Vec<u32>,
    /// Scheduled retries that were made and failed.
    pub retries_failed: u32,
    pub next_retry_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderBackoffState {
    pub provider_retries: u32,
    pub next_attempt_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    pub terms: Option<SubscriptionStarted>,
    pub status: SubscriptionStatus,
    pub billing_key_id: Option<BillingKeyId>,
    /// The cycle charged next (1-based); cycles before it are paid.
    pub cycle: u32,
    /// When the current cycle starts (and is first charged).
    pub next_charge_at: Option<DateTime<Utc>>,
    /// End of the last paid cycle.
    pub paid_through: Option<DateTime<Utc>>,
    pub paid_cycles: u32,
    /// Attempts made in the current cycle.
    pub attempts_in_cycle: u32,
    /// The last attempt that got an outcome, `(cycle, attempt)`.
    pub last_settled: Option<(u32, u32)>,
    pub in_flight: Option<InFlightAttempt>,
    pub dunning: Option<DunningState>,
    pub provider_backoff: Option<ProviderBackoffState>,
    pub grace_ends_at: Option<DateTime<Utc>>,
    pub last_failure: Option<ProviderFailure>,
    pub last_payment_key: Option<PaymentKey>,
    pub cancel_effective_at: Option<DateTime<Utc>>,
    pub suspended_reason: Option<String>,
    pub ended_at: Option<DateTime<Utc>>,
    /// A provider-billed subscription's paid transactions: `(charged, taken back)` minor units.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub provider_payments: std::collections::BTreeMap<String, (i64, i64)>,
    /// The provider's reversals (refund, chargeback adjustments) recorded, by id.
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub provider_reversals: std::collections::BTreeSet<String>,
    /// Every successful charge by payment key: `(charged, the provider's fee it recorded)` minor
    /// units (the fee only for a merchant of record, Paddle; it was posted to `provider_fees`
    /// then). What a provider settlement line of the payment is matched against.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub paid_charges: std::collections::BTreeMap<String, (i64, i64)>,
    /// When the payment of the current paid period was taken back (refunded in full or charged
    /// back): the membership is downgraded at once (the source document's "membership refund →
    /// downgrade"). A later paid period gives the benefits back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub benefits_revoked_at: Option<DateTime<Utc>>,
}

impl Subscription {
    fn terms(&self) -> Result<&SubscriptionStarted, SubscriptionError> {
        self.terms.as_ref().ok_or(SubscriptionError::NotFound)
    }

    /// Start of cycle `cycle`.
    pub fn cycle_start(&self, cycle: u32) -> Option<DateTime<Utc>> {
        let terms = self.terms.as_ref()?;
        terms.interval.cycle_start(terms.anchor, cycle)
    }

    /// Scheduled retries that failed in the current dunning run (0 outside dunning).
    pub fn retry_count(&self) -> u32 {
        self.dunning.as_ref().map_or(0, |d| d.retries_failed)
    }

    /// When the scheduler tries again: a provider-error backoff attempt first (it is scheduled
    /// even though it is not a dunning retry), else the next dunning retry.
    pub fn next_retry_at(&self) -> Option<DateTime<Utc>> {
        match &self.provider_backoff {
            Some(backoff) => Some(backoff.next_attempt_at),
            None => self.dunning.as_ref().and_then(|d| d.next_retry_at),
        }
    }

    /// The next thing the scheduler has to do, and from when. `None`: nothing, ever, unless a
    /// command changes the subscription.
    pub fn next_due(&self) -> Option<(DateTime<Utc>, DueAction)> {
        self.terms.as_ref()?;
        if self.status == SubscriptionStatus::Ended {
            return None;
        }
        if let Some(attempt) = &self.in_flight {
            return Some((
                attempt.last_activity_at + Duration::seconds(ATTEMPT_STALE_AFTER_SECONDS),
                DueAction::Resolve {
                    cycle: attempt.cycle,
                    attempt: attempt.attempt,
                },
            ));
        }
        if let Some(effective_at) = self.cancel_effective_at {
            // Nothing is charged after a cancellation: the paid period runs out and that is all.
            return Some((effective_at, DueAction::EndAtPeriodEnd));
        }
        if self.is_provider_billed() {
            // The provider charges each cycle and tells payledger; nothing is due here.
            return None;
        }
        if self.cycle > MAX_CYCLES {
            return None;
        }
        match self.status {
            SubscriptionStatus::Active | SubscriptionStatus::PastDue => {
                let at = match (&self.provider_backoff, &self.dunning) {
                    (Some(backoff), _) => Some(backoff.next_attempt_at),
                    (None, Some(dunning)) => dunning.next_retry_at,
                    (None, None) => self.next_charge_at,
                };
                at.map(|at| (at, DueAction::Charge))
            }
            SubscriptionStatus::RequiresPaymentMethod => self
                .grace_ends_at
                .map(|at| (at, DueAction::SuspendAfterGrace)),
            SubscriptionStatus::NeedsReview
            | SubscriptionStatus::Suspended
            | SubscriptionStatus::Ended => None,
        }
    }

    /// What is due at `at`, if anything.
    pub fn due_action(&self, at: DateTime<Utc>) -> Option<DueAction> {
        self.next_due()
            .filter(|(due_at, _)| *due_at <= at)
            .map(|(_, action)| action)
    }

    /// The membership level this subscription gives at `at` (0: none). Benefits need a paid
    /// cycle; they last through dunning and review, through the paid period while a payment
    /// method is required (or the grace period, if longer), and end with suspension, the end of
    /// the subscription, the end of the paid period after a cancellation, or at once when the
    /// provider takes the current period's payment back (in full, or by a chargeback).
    pub fn membership_level(&self, at: DateTime<Utc>) -> u8 {
        let Some(terms) = &self.terms else { return 0 };
        if self.paid_cycles == 0 {
            return 0;
        }
        if self.cancel_effective_at.is_some_and(|e| at >= e) {
            return 0;
        }
        if self.benefits_revoked_at.is_some() {
            // The current period's payment was taken back: nothing pays for these benefits.
            return 0;
        }
        let active = match self.status {
            SubscriptionStatus::Active
            | SubscriptionStatus::PastDue
            | SubscriptionStatus::NeedsReview => true,
            SubscriptionStatus::RequiresPaymentMethod => {
                let until = self.paid_through.max(self.grace_ends_at);
                until.is_some_and(|until| at < until)
            }
            SubscriptionStatus::Suspended | SubscriptionStatus::Ended => false,
        };
        if active {
            terms.membership_level
        } else {
            0
        }
    }

    fn assert_invariants(&self) {
        if self.terms.is_none() {
            return;
        }
        assert_eq!(
            self.paid_cycles + 1,
            self.cycle,
            "paid cycles and cycle disagree"
        );
        if self.paid_cycles > 0 {
            assert_eq!(
                self.paid_through,
                self.cycle_start(self.cycle),
                "paid through is not the start of the current cycle"
            );
        }
        if let Some(attempt) = &self.in_flight {
            assert_eq!(
                attempt.cycle, self.cycle,
                "an attempt of another cycle is open"
            );
            assert!(
                !matches!(
                    self.status,
                    SubscriptionStatus::Ended | SubscriptionStatus::Suspended
                ),
                "an attempt is open on a stopped subscription"
            );
        }
    }

    fn decide(
        &self,
        command: SubscriptionCommand,
    ) -> Result<Vec<SubscriptionEvent>, SubscriptionError> {
        match command {
            SubscriptionCommand::Start(started) => self.start(started),
            SubscriptionCommand::StartChargeAttempt { trigger, at } => {
                self.start_attempt(trigger, at)
            }
            SubscriptionCommand::RedriveAttempt { at } => self.redrive(at),
            SubscriptionCommand::RecordChargeOutcome {
                cycle,
                attempt,
                outcome,
                source,
                policy,
                at,
            } => self.record_outcome(cycle, attempt, outcome, source, &policy, at),
            SubscriptionCommand::ChangePaymentMethod { billing_key_id, at } => {
                self.change_payment_method(billing_key_id, at)
            }
            SubscriptionCommand::CancelAtPeriodEnd { .. }
            | SubscriptionCommand::Resume { .. }
            | SubscriptionCommand::EndNow { .. }
                if self.is_provider_billed() =>
            {
                // The provider must be asked first; its answer is recorded as a provider fact.
                Err(SubscriptionError::ProviderBilled)
            }
            SubscriptionCommand::CancelAtPeriodEnd { at } => self.cancel_at_period_end(at),
            SubscriptionCommand::Resume { at } => {
                self.terms()?;
                if self.status == SubscriptionStatus::Ended {
                    return Err(SubscriptionError::Ended);
                }
                if self.cancel_effective_at.is_none() {
                    return Ok(vec![]);
                }
                Ok(vec![SubscriptionEvent::CancellationWithdrawn(
                    CancellationWithdrawn { at },
                )])
            }
            SubscriptionCommand::EndNow { at } => {
                self.terms()?;
                if self.status == SubscriptionStatus::Ended {
                    return Ok(vec![]);
                }
                if self.in_flight.is_some() {
                    return Err(SubscriptionError::AttemptInProgress);
                }
                Ok(vec![SubscriptionEvent::SubscriptionEnded(
                    SubscriptionEnded {
                        reason: EndReason::EndedImmediately,
                        at,
                    },
                )])
            }
            SubscriptionCommand::EndAtPeriodEnd { at } => {
                self.terms()?;
                if self.due_action(at) != Some(DueAction::EndAtPeriodEnd) {
                    return Err(SubscriptionError::NothingDue);
                }
                Ok(vec![SubscriptionEvent::SubscriptionEnded(
                    SubscriptionEnded {
                        reason: EndReason::CanceledAtPeriodEnd,
                        at,
                    },
                )])
            }
            SubscriptionCommand::RecordProviderFact(fact) => self.record_provider_fact(fact),
            SubscriptionCommand::SuspendAfterGrace { at } => {
                let terms = self.terms()?;
                if self.due_action(at) != Some(DueAction::SuspendAfterGrace) {
                    return Err(SubscriptionError::NothingDue);
                }
                Ok(suspension(terms, SUSPENDED_GRACE_EXPIRED, at))
            }
        }
    }

    fn start(
        &self,
        started: SubscriptionStarted,
    ) -> Result<Vec<SubscriptionEvent>, SubscriptionError> {
        if self.terms.is_some() {
            return Err(SubscriptionError::AlreadyExists);
        }
        let name_len = started.order_name.chars().count();
        if name_len == 0
            || name_len > 100
            || started.order_name.chars().any(char::is_control)
            || crate::billing::contains_card_number_like(&started.order_name)
        {
            return Err(SubscriptionError::InvalidOrderName);
        }
        let earliest = started.at - Duration::seconds(ANCHOR_PAST_TOLERANCE_SECONDS);
        let latest = started.at + Duration::days(MAX_ANCHOR_AHEAD_DAYS);
        // A provider-billed subscription's anchor is the provider's first period, a fact that
        // may be recorded well after it began (a delivery retried, replayed by an admin).
        let provider_billed = started.billed_by.is_some() && started.anchor <= started.at;
        if !provider_billed && (started.anchor < earliest || started.anchor > latest) {
            return Err(SubscriptionError::InvalidAnchor);
        }
        Ok(vec![SubscriptionEvent::SubscriptionStarted(started)])
    }

    fn start_attempt(
        &self,
        trigger: AttemptTrigger,
        at: DateTime<Utc>,
    ) -> Result<Vec<SubscriptionEvent>, SubscriptionError> {
        let terms = self.terms()?;
        if terms.billed_by.is_some() {
            return Err(SubscriptionError::ProviderBilled);
        }
        match self.status {
            SubscriptionStatus::Ended => return Err(SubscriptionError::Ended),
            SubscriptionStatus::Suspended => return Err(SubscriptionError::Suspended),
            _ => {}
        }
        if self.in_flight.is_some() {
            return Err(SubscriptionError::AttemptInProgress);
        }
        let allowed = match trigger {
            AttemptTrigger::Scheduled | AttemptTrigger::PaymentMethodChanged => {
                self.due_action(at) == Some(DueAction::Charge)
            }
            // An admin may charge whenever the current cycle has started, and no cancellation
            // stops charging; retry timing and review states do not hold them back.
            AttemptTrigger::Admin => {
                self.cancel_effective_at.is_none()
                    && self.next_charge_at.is_some_and(|start| start <= at)
            }
        };
        if !allowed {
            return Err(SubscriptionError::NothingDue);
        }
        if self.attempts_in_cycle >= MAX_ATTEMPTS_PER_CYCLE {
            return Err(SubscriptionError::TooManyAttempts);
        }
        let cycle = self.cycle;
        let (Some(period_start), Some(period_end)) =
            (self.cycle_start(cycle), self.cycle_start(cycle + 1))
        else {
            return Err(SubscriptionError::CycleOutOfRange);
        };
        let attempt = self.attempts_in_cycle + 1;
        let billing_key_id = self
            .billing_key_id
            .clone()
            .unwrap_or_else(|| terms.billing_key_id.clone());
        Ok(vec![SubscriptionEvent::ChargeAttemptStarted(
            ChargeAttemptStarted {
                cycle,
                attempt,
                trigger,
                provider_order_id: provider_order_id(&terms.subscription_id, cycle),
                idempotency_key: idempotency_key(&terms.subscription_id, cycle, attempt),
                billing_key_id,
                amount_minor: terms.amount.amount_minor(),
                currency: terms.amount.currency(),
                period_start,
                period_end,
                at,
            },
        )])
    }

    fn redrive(&self, at: DateTime<Utc>) -> Result<Vec<SubscriptionEvent>, SubscriptionError> {
        self.terms()?;
        let attempt = self
            .in_flight
            .as_ref()
            .ok_or(SubscriptionError::NoAttemptInFlight)?;
        if at < attempt.last_activity_at + Duration::seconds(ATTEMPT_STALE_AFTER_SECONDS) {
            return Err(SubscriptionError::AttemptInProgress);
        }
        if attempt.redrives >= MAX_REDRIVES_PER_ATTEMPT {
            return Err(SubscriptionError::RedrivesExhausted);
        }
        Ok(vec![SubscriptionEvent::ChargeAttemptRedriven(
            ChargeAttemptRedriven {
                cycle: attempt.cycle,
                attempt: attempt.attempt,
                redrive: attempt.redrives + 1,
                at,
            },
        )])
    }

    fn record_outcome(
        &self,
        cycle: u32,
        attempt: u32,
        outcome: ChargeOutcome,
        source: OutcomeSource,
        policy: &DunningPolicy,
        at: DateTime<Utc>,
    ) -> Result<Vec<SubscriptionEvent>, SubscriptionError> {
        let terms = self.terms()?;
        let in_flight = match &self.in_flight {
            Some(open) if open.cycle == cycle && open.attempt == attempt => open,
            _ => {
                if self
                    .last_settled
                    .is_some_and(|settled| (cycle, attempt) <= settled)
                {
                    // That attempt already has its outcome: a late duplicate changes nothing.
                    return Ok(vec![]);
                }
                return Err(SubscriptionError::NoAttemptInFlight);
            }
        };
        match outcome {
            ChargeOutcome::Approved {
                payment_key,
                approved_at,
            } => Ok(vec![SubscriptionEvent::ChargeSucceeded(ChargeSucceeded {
                cycle,
                attempt,
                payment_key,
                provider_order_id: in_flight.provider_order_id.clone(),
                amount_minor: in_flight.amount_minor,
                currency: in_flight.currency,
                approved_at,
                period_start: in_flight.period_start,
                period_end: in_flight.period_end,
                source,
                at,
                provider_fee_minor: 0,
            })]),
            ChargeOutcome::Unknown { reason } => {
                if in_flight.outcome_unknown {
                    return Ok(vec![]);
                }
                Ok(vec![SubscriptionEvent::ChargeOutcomeUnknown(
                    ChargeOutcomeUnknown {
                        cycle,
                        attempt,
                        reason,
                        at,
                    },
                )])
            }
            ChargeOutcome::Refused { failure }
                if failure.class == FailureClass::AlreadyProcessed =>
            {
                // The provider charged this cycle before: what it charged is found by looking the
                // order up, never assumed. Until then the outcome is unknown.
                if in_flight.outcome_unknown {
                    return Ok(vec![]);
                }
                Ok(vec![SubscriptionEvent::ChargeOutcomeUnknown(
                    ChargeOutcomeUnknown {
                        cycle,
                        attempt,
                        reason: format!(
                            "provider reports {}: the charge is looked up",
                            failure.provider_code
                        ),
                        at,
                    },
                )])
            }
            ChargeOutcome::Refused { failure } => {
                let handling = self.handling_of(&failure, policy, at);
                let mut events = vec![SubscriptionEvent::ChargeFailed(ChargeFailed {
                    cycle,
                    attempt,
                    failure: failure.clone(),
                    handling: handling.clone(),
                    source,
                    at,
                })];
                events.extend(notifications(terms, &failure, &handling, at));
                Ok(events)
            }
        }
    }

    /// The dunning table (domain spec §3.3), applied to one failure.
    fn handling_of(
        &self,
        failure: &ProviderFailure,
        policy: &DunningPolicy,
        at: DateTime<Utc>,
    ) -> FailureHandling {
        match failure.class {
            FailureClass::SoftDecline => match &self.dunning {
                None => {
                    let schedule = policy.soft_decline_retry_days().to_vec();
                    FailureHandling::RetryScheduled {
                        retry_number: 1,
                        next_retry_at: at + Duration::days(i64::from(schedule[0])),
                        first_failure_at: at,
                        retry_schedule_days: schedule,
                    }
                }
                Some(dunning) => {
                    // Retries follow the schedule captured at the first failure, not the policy
                    // handed in now.
                    let failed = dunning.retries_failed + 1;
                    match dunning.retry_schedule_days.get(failed as usize) {
                        Some(days) => FailureHandling::RetryScheduled {
                            retry_number: failed + 1,
                            next_retry_at: dunning.first_failure_at
                                + Duration::days(i64::from(*days)),
                            first_failure_at: dunning.first_failure_at,
                            retry_schedule_days: dunning.retry_schedule_days.clone(),
                        },
                        None => FailureHandling::RetriesExhausted { retries: failed },
                    }
                }
            },
            FailureClass::CardUnusable | FailureClass::ExceedsLimit => {
                FailureHandling::PaymentMethodRequired {
                    grace_ends_at: None,
                }
            }
            FailureClass::BillingKeyInvalid => FailureHandling::PaymentMethodRequired {
                // A grace period already running is not extended by another failure.
                grace_ends_at: Some(
                    self.grace_ends_at
                        .unwrap_or(at + Duration::days(i64::from(policy.billing_key_grace_days()))),
                ),
            },
            FailureClass::ProviderError => {
                if !matches!(
                    self.status,
                    SubscriptionStatus::Active | SubscriptionStatus::PastDue
                ) {
                    return FailureHandling::StatusUnchanged;
                }
                let retry = self
                    .provider_backoff
                    .as_ref()
                    .map_or(0, |b| b.provider_retries)
                    + 1;
                match policy
                    .provider_error_backoff_minutes()
                    .get(retry as usize - 1)
                {
                    Some(minutes) => FailureHandling::ProviderBackoff {
                        provider_retry: retry,
                        next_attempt_at: at + Duration::minutes(i64::from(*minutes)),
                    },
                    None => FailureHandling::ProviderRetriesExhausted {
                        provider_retries: retry - 1,
                    },
                }
            }
            FailureClass::AlreadyProcessed
            | FailureClass::InvalidRequest
            | FailureClass::NotFound
            | FailureClass::NotCancelable
            | FailureClass::Unclassified => FailureHandling::ManualReview,
        }
    }

    fn change_payment_method(
        &self,
        billing_key_id: BillingKeyId,
        at: DateTime<Utc>,
    ) -> Result<Vec<SubscriptionEvent>, SubscriptionError> {
        let terms = self.terms()?;
        if terms.billed_by.is_some() {
            return Err(SubscriptionError::ProviderBilled);
        }
        if self.status == SubscriptionStatus::Ended {
            return Err(SubscriptionError::Ended);
        }
        if self.in_flight.is_some() {
            return Err(SubscriptionError::AttemptInProgress);
        }
        let previous = self
            .billing_key_id
            .clone()
            .unwrap_or_else(|| terms.billing_key_id.clone());
        let charge_now = matches!(
            self.status,
            SubscriptionStatus::PastDue
                | SubscriptionStatus::RequiresPaymentMethod
                | SubscriptionStatus::Suspended
                | SubscriptionStatus::NeedsReview
        ) && self.cancel_effective_at.is_none();
        if previous == billing_key_id && !charge_now {
            return Ok(vec![]);
        }
        Ok(vec![SubscriptionEvent::PaymentMethodChanged(
            PaymentMethodChanged {
                billing_key_id,
                previous_billing_key_id: previous,
                status_before: self.status,
                charge_now,
                at,
            },
        )])
    }

    fn cancel_at_period_end(
        &self,
        at: DateTime<Utc>,
    ) -> Result<Vec<SubscriptionEvent>, SubscriptionError> {
        self.terms()?;
        if self.status == SubscriptionStatus::Ended {
            return Err(SubscriptionError::Ended);
        }
        if self.cancel_effective_at.is_some() {
            return Ok(vec![]);
        }
        match self.paid_through {
            // Paid time is left: benefits stay until it runs out.
            Some(paid_through)
                if paid_through > at && !matches!(self.status, SubscriptionStatus::Suspended) =>
            {
                Ok(vec![SubscriptionEvent::CancellationScheduled(
                    CancellationScheduled {
                        effective_at: paid_through,
                        at,
                    },
                )])
            }
            _ => {
                if self.in_flight.is_some() {
                    return Err(SubscriptionError::AttemptInProgress);
                }
                Ok(vec![SubscriptionEvent::SubscriptionEnded(
                    SubscriptionEnded {
                        reason: EndReason::EndedImmediately,
                        at,
                    },
                )])
            }
        }
    }
}

fn suspension(
    terms: &SubscriptionStarted,
    reason: &str,
    at: DateTime<Utc>,
) -> Vec<SubscriptionEvent> {
    vec![
        SubscriptionEvent::SubscriptionSuspended(SubscriptionSuspended {
            reason_code: reason.to_string(),
            at,
        }),
        SubscriptionEvent::SubscriptionSuspendedNotificationRequested(
            SubscriptionSuspendedNotificationRequested {
                customer_id: terms.customer_id.clone(),
                subscription_id: terms.subscription_id.clone(),
                plan_id: terms.plan_id.clone(),
                reason_code: reason.to_string(),
                priority: NotificationPriority::Urgent,
                at,
            },
        ),
    ]
}

/// What the customer must be told about a failure (source document 1, §3.1–3.2).
fn notifications(
    terms: &SubscriptionStarted,
    failure: &ProviderFailure,
    handling: &FailureHandling,
    at: DateTime<Utc>,
) -> Vec<SubscriptionEvent> {
    match handling {
        FailureHandling::RetryScheduled { next_retry_at, .. } => {
            vec![SubscriptionEvent::PaymentFailedNotificationRequested(
                PaymentFailedNotificationRequested {
                    customer_id: terms.customer_id.clone(),
                    subscription_id: terms.subscription_id.clone(),
                    plan_id: terms.plan_id.clone(),
                    amount_minor: terms.amount.amount_minor(),
                    currency: terms.amount.currency(),
                    failure_code: failure.provider_code.clone(),
                    next_retry_at: *next_retry_at,
                    priority: NotificationPriority::Urgent,
                    at,
                },
            )]
        }
        FailureHandling::RetriesExhausted { .. } => suspension(terms, SUSPENDED_MAX_RETRIES, at),
        FailureHandling::PaymentMethodRequired { grace_ends_at } => {
            vec![SubscriptionEvent::PaymentMethodUpdateNotificationRequested(
                PaymentMethodUpdateNotificationRequested {
                    customer_id: terms.customer_id.clone(),
                    subscription_id: terms.subscription_id.clone(),
                    plan_id: terms.plan_id.clone(),
                    failure_code: failure.provider_code.clone(),
                    grace_ends_at: *grace_ends_at,
                    priority: NotificationPriority::Urgent,
                    at,
                },
            )]
        }
        // Transient or internal: nothing the customer can do about it.
        FailureHandling::ProviderBackoff { .. }
        | FailureHandling::ProviderRetriesExhausted { .. }
        | FailureHandling::StatusUnchanged
        | FailureHandling::ManualReview
        | FailureHandling::ProviderDunning => vec![],
    }
}

impl Aggregate for Subscription {
    const TYPE: &'static str = "subscription";
    type Command = SubscriptionCommand;
    type Event = SubscriptionEvent;
    type Error = SubscriptionError;
    type Services = ();

    async fn handle(
        &mut self,
        command: SubscriptionCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), SubscriptionError> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        self.assert_invariants();
        Ok(())
    }

    fn apply(&mut self, event: SubscriptionEvent) {
        match event {
            SubscriptionEvent::SubscriptionStarted(started) => {
                self.status = SubscriptionStatus::Active;
                self.billing_key_id = Some(started.billing_key_id.clone());
                self.cycle = 1;
                self.next_charge_at = Some(started.anchor);
                self.terms = Some(started);
            }
            SubscriptionEvent::ChargeAttemptStarted(started) => {
                self.attempts_in_cycle = started.attempt;
                self.in_flight = Some(InFlightAttempt {
                    cycle: started.cycle,
                    attempt: started.attempt,
                    trigger: started.trigger,
                    provider_order_id: started.provider_order_id,
                    idempotency_key: started.idempotency_key,
                    billing_key_id: started.billing_key_id,
                    amount_minor: started.amount_minor,
                    currency: started.currency,
                    period_start: started.period_start,
                    period_end: started.period_end,
                    started_at: started.at,
                    last_activity_at: started.at,
                    outcome_unknown: false,
                    redrives: 0,
                });
            }
            SubscriptionEvent::ChargeAttemptRedriven(redriven) => {
                if let Some(attempt) = self.in_flight.as_mut() {
                    attempt.redrives = redriven.redrive;
                    attempt.last_activity_at = redriven.at;
                    attempt.outcome_unknown = false;
                }
            }
            SubscriptionEvent::ChargeOutcomeUnknown(unknown) => {
                if let Some(attempt) = self.in_flight.as_mut() {
                    attempt.outcome_unknown = true;
                    attempt.last_activity_at = unknown.at;
                }
            }
            SubscriptionEvent::ChargeSucceeded(succeeded) => {
                self.status = SubscriptionStatus::Active;
                self.in_flight = None;
                self.last_settled = Some((succeeded.cycle, succeeded.attempt));
                self.paid_cycles += 1;
                self.cycle = succeeded.cycle + 1;
                self.attempts_in_cycle = 0;
                self.paid_through = Some(succeeded.period_end);
                self.next_charge_at = Some(succeeded.period_end);
                self.dunning = None;
                self.provider_backoff = None;
                self.grace_ends_at = None;
                self.last_failure = None;
                self.suspended_reason = None;
                if self.is_provider_billed() {
                    self.provider_payments.insert(
                        succeeded.payment_key.to_string(),
                        (succeeded.amount_minor, 0),
                    );
                }
                self.paid_charges.insert(
                    succeeded.payment_key.to_string(),
                    (succeeded.amount_minor, succeeded.provider_fee_minor),
                );
                self.last_payment_key = Some(succeeded.payment_key);
                self.benefits_revoked_at = None;
            }
            SubscriptionEvent::ProviderChargeReversed(reversed) => {
                if let Some(payment) = self
                    .provider_payments
                    .get_mut(reversed.payment_key.as_str())
                {
                    payment.1 += reversed.amount_minor;
                    let taken_back_in_full = payment.1 >= payment.0;
                    let pays_current_period =
                        self.last_payment_key.as_ref() == Some(&reversed.payment_key);
                    if pays_current_period
                        && (taken_back_in_full || reversed.kind == ChargeReversalKind::Chargeback)
                    {
                        self.benefits_revoked_at = Some(reversed.at);
                    }
                }
                self.provider_reversals.insert(reversed.reversal_id);
            }
            SubscriptionEvent::ChargeFailed(failed) => {
                self.in_flight = None;
                self.last_settled = Some((failed.cycle, failed.attempt));
                self.last_failure = Some(failed.failure);
                self.apply_handling(failed.handling);
            }
            SubscriptionEvent::PaymentMethodChanged(changed) => {
                self.billing_key_id = Some(changed.billing_key_id);
                if changed.charge_now {
                    // Back to charging: the unpaid cycle has started, so it is due at once.
                    self.status = SubscriptionStatus::Active;
                    self.dunning = None;
                    self.provider_backoff = None;
                    self.grace_ends_at = None;
                    self.suspended_reason = None;
                }
            }
            SubscriptionEvent::CancellationScheduled(scheduled) => {
                self.cancel_effective_at = Some(scheduled.effective_at);
            }
            SubscriptionEvent::CancellationWithdrawn(_) => self.cancel_effective_at = None,
            SubscriptionEvent::SubscriptionSuspended(suspended) => {
                self.status = SubscriptionStatus::Suspended;
                self.suspended_reason = Some(suspended.reason_code);
                self.grace_ends_at = None;
                self.provider_backoff = None;
                if let Some(dunning) = self.dunning.as_mut() {
                    dunning.next_retry_at = None;
                }
            }
            SubscriptionEvent::SubscriptionEnded(ended) => {
                self.status = SubscriptionStatus::Ended;
                self.ended_at = Some(ended.at);
                self.in_flight = None;
                self.provider_backoff = None;
                self.grace_ends_at = None;
                if let Some(dunning) = self.dunning.as_mut() {
                    dunning.next_retry_at = None;
                }
            }
            SubscriptionEvent::PaymentFailedNotificationRequested(_)
            | SubscriptionEvent::PaymentMethodUpdateNotificationRequested(_)
            | SubscriptionEvent::SubscriptionSuspendedNotificationRequested(_) => {}
        }
    }
}

impl Subscription {
    fn apply_handling(&mut self, handling: FailureHandling) {
        match handling {
            FailureHandling::RetryScheduled {
                retry_number,
                next_retry_at,
                first_failure_at,
                retry_schedule_days,
            } => {
                self.status = SubscriptionStatus::PastDue;
                self.provider_backoff = None;
                self.dunning = Some(DunningState {
                    first_failure_at,
                    retry_schedule_days,
                    retries_failed: retry_number - 1,
                    next_retry_at: Some(next_retry_at),
                });
            }
            FailureHandling::RetriesExhausted { retries } => {
                self.provider_backoff = None;
                if let Some(dunning) = self.dunning.as_mut() {
                    dunning.retries_failed = retries;
                    dunning.next_retry_at = None;
                }
            }
            FailureHandling::PaymentMethodRequired { grace_ends_at } => {
                self.status = SubscriptionStatus::RequiresPaymentMethod;
                self.dunning = None;
                self.provider_backoff = None;
                self.grace_ends_at = grace_ends_at;
            }
            FailureHandling::ProviderBackoff {
                provider_retry,
                next_attempt_at,
            } => {
                self.provider_backoff = Some(ProviderBackoffState {
                    provider_retries: provider_retry,
                    next_attempt_at,
                });
            }
            FailureHandling::ProviderRetriesExhausted { .. } | FailureHandling::ManualReview => {
                self.status = SubscriptionStatus::NeedsReview;
                self.provider_backoff = None;
            }
            FailureHandling::StatusUnchanged => {}
            FailureHandling::ProviderDunning => {
                self.status = SubscriptionStatus::PastDue;
                self.dunning = None;
                self.provider_backoff = None;
            }
        }
    }
}
