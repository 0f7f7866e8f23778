//! The vocabulary recurring billing shares: its identifiers, billing intervals, the plan catalogue
//! (which plan gives which membership level) and the dunning policy (what happens after a failed
//! charge). Customer, subscription and wallet aggregates build on these.
//!
//! Catalogue and policy are configuration: the application hands the values in force to the
//! command, and the aggregate copies what it needs into the event it records. A later change of
//! configuration never rewrites what an earlier event scheduled.

use chrono::{DateTime, Duration, Months, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

// ---------------------------------------------------------------------------------------------
// Identifiers
// ---------------------------------------------------------------------------------------------

/// Billing ids end up inside provider order ids (`sub-{id}-c{cycle}`), which Toss limits to
/// letters, digits, `-` and `_`; so these ids allow exactly those.
pub type InvalidBillingId = crate::ids::InvalidId;

crate::ids::identifier!(
    /// A subscription. At most 40 characters, so `sub-{id}-c{cycle}` fits Toss's 64-character
    /// order ids.
    SubscriptionId,
    "subscriptionId",
    1,
    40,
    ProviderOrderSafe,
    "sub_"
);
crate::ids::identifier!(
    /// payledger's handle for a billing key. The provider's key itself is a secret and is only
    /// ever stored encrypted; this id is what APIs, logs and events name.
    BillingKeyId,
    "billingKeyId",
    1,
    64,
    ProviderOrderSafe,
    "bk_"
);
crate::ids::identifier!(
    /// A plan of the plan catalogue.
    PlanId,
    "planId",
    1,
    40,
    ProviderOrderSafe,
    "plan_"
);
crate::ids::identifier!(
    /// One credit purchase, spend or clawback in a wallet; chosen by the caller or generated.
    CreditOperationId,
    "creditOperationId",
    1,
    64,
    ProviderOrderSafe,
    "cr_"
);

// ---------------------------------------------------------------------------------------------
// Billing interval
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntervalUnit {
    Day,
    Week,
    Month,
    Year,
}

impl IntervalUnit {
    /// The most units one interval may span: a bound, so cycle arithmetic stays far from
    /// overflow and a typo cannot schedule a charge decades away.
    pub fn max_count(self) -> u32 {
        match self {
            IntervalUnit::Day => 366,
            IntervalUnit::Week => 52,
            IntervalUnit::Month => 24,
            IntervalUnit::Year => 2,
        }
    }

    pub fn parse(text: &str) -> Option<IntervalUnit> {
        match text {
            "day" => Some(IntervalUnit::Day),
            "week" => Some(IntervalUnit::Week),
            "month" => Some(IntervalUnit::Month),
            "year" => Some(IntervalUnit::Year),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            IntervalUnit::Day => "day",
            IntervalUnit::Week => "week",
            IntervalUnit::Month => "month",
            IntervalUnit::Year => "year",
        }
    }
}

/// The most cycles a subscription can run: 100 years of daily billing. A bound so that cycle
/// numbers and interval arithmetic can never overflow.
pub const MAX_CYCLES: u32 = 36_600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an interval is 1 to {max} {unit:?}s, got {count}")]
pub struct InvalidInterval {
    pub unit: IntervalUnit,
    pub count: u32,
    pub max: u32,
}

/// How often a subscription is charged: every `count` `unit`s from its anchor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BillingInterval {
    unit: IntervalUnit,
    count: u32,
}

impl BillingInterval {
    pub fn new(unit: IntervalUnit, count: u32) -> Result<BillingInterval, InvalidInterval> {
        if count == 0 || count > unit.max_count() {
            return Err(InvalidInterval {
                unit,
                count,
                max: unit.max_count(),
            });
        }
        Ok(BillingInterval { unit, count })
    }

    pub fn monthly() -> BillingInterval {
        BillingInterval {
            unit: IntervalUnit::Month,
            count: 1,
        }
    }

    pub fn unit(self) -> IntervalUnit {
        self.unit
    }

    pub fn count(self) -> u32 {
        self.count
    }

    /// When cycle `cycle` (1-based) starts. Every cycle is computed from the anchor, never from
    /// the previous cycle, so a month-end anchor (the 31st) does not drift to the 28th for good
    /// after February: chrono clamps each month separately.
    pub fn cycle_start(self, anchor: DateTime<Utc>, cycle: u32) -> Option<DateTime<Utc>> {
        if cycle == 0 || cycle > MAX_CYCLES + 1 {
            return None;
        }
        let steps = i64::from(cycle - 1) * i64::from(self.count);
        match self.unit {
            IntervalUnit::Day => anchor.checked_add_signed(Duration::try_days(steps)?),
            IntervalUnit::Week => anchor.checked_add_signed(Duration::try_weeks(steps)?),
            IntervalUnit::Month => {
                anchor.checked_add_months(Months::new(u32::try_from(steps).ok()?))
            }
            IntervalUnit::Year => {
                anchor.checked_add_months(Months::new(u32::try_from(steps.checked_mul(12)?).ok()?))
            }
        }
    }
}

impl fmt::Display for BillingInterval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "every {} {}", self.count, self.unit.as_str())
    }
}

// ---------------------------------------------------------------------------------------------
// Plan catalogue and membership
// ---------------------------------------------------------------------------------------------

/// Membership level 0 is "no membership"; buying credits needs at least this level.
pub const CREDIT_PURCHASE_MIN_LEVEL: u8 = 1;

/// The highest membership level a plan may give.
pub const MAX_MEMBERSHIP_LEVEL: u8 = 9;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub plan_id: PlanId,
    pub membership_level: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogueError {
    #[error("plan entries are `planId=level`, got '{0}'")]
    Malformed(String),
    #[error(transparent)]
    InvalidPlanId(#[from] InvalidBillingId),
    #[error("membership levels are 0 to {MAX_MEMBERSHIP_LEVEL}, got {0}")]
    InvalidLevel(String),
    #[error("plan '{0}' is listed twice")]
    Duplicate(String),
    #[error("the catalogue has no plans")]
    Empty,
    #[error("the catalogue has more than {MAX_PLANS} plans")]
    TooMany,
}

/// The most plans a catalogue holds.
pub const MAX_PLANS: usize = 100;

/// Which plans exist and the membership level each gives (source document 4: the active plan
/// decides the level, and level ≥ 1 may buy credits). Configuration, not events: the level is
/// copied into `SubscriptionStarted` when a subscription starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanCatalogue {
    plans: Vec<Plan>,
}

impl Default for PlanCatalogue {
    /// `basic` → 1, `standard` → 2, `premium` → 3.
    fn default() -> Self {
        PlanCatalogue::parse("basic=1,standard=2,premium=3").expect("the default catalogue parses")
    }
}

impl PlanCatalogue {
    pub fn new(plans: Vec<Plan>) -> Result<PlanCatalogue, CatalogueError> {
        if plans.is_empty() {
            return Err(CatalogueError::Empty);
        }
        if plans.len() > MAX_PLANS {
            return Err(CatalogueError::TooMany);
        }
        for (i, plan) in plans.iter().enumerate() {
            if plan.membership_level > MAX_MEMBERSHIP_LEVEL {
                return Err(CatalogueError::InvalidLevel(
                    plan.membership_level.to_string(),
                ));
            }
            if plans[..i].iter().any(|p| p.plan_id == plan.plan_id) {
                return Err(CatalogueError::Duplicate(plan.plan_id.to_string()));
            }
        }
        Ok(PlanCatalogue { plans })
    }

    /// Reads `basic=1,pro=2` (the form of `PAYLEDGER_PLAN_CATALOGUE`).
    pub fn parse(text: &str) -> Result<PlanCatalogue, CatalogueError> {
        let mut plans = Vec::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (plan_id, level) = entry
                .split_once('=')
                .ok_or_else(|| CatalogueError::Malformed(entry.chars().take(60).collect()))?;
            let level: u8 = level
                .trim()
                .parse()
                .map_err(|_| CatalogueError::InvalidLevel(level.chars().take(10).collect()))?;
            plans.push(Plan {
                plan_id: PlanId::parse(plan_id.trim())?,
                membership_level: level,
            });
        }
        PlanCatalogue::new(plans)
    }

    pub fn plans(&self) -> &[Plan] {
        &self.plans
    }

    pub fn level_of(&self, plan_id: &PlanId) -> Option<u8> {
        self.plans
            .iter()
            .find(|p| &p.plan_id == plan_id)
            .map(|p| p.membership_level)
    }
}

// ---------------------------------------------------------------------------------------------
// Dunning policy
// ---------------------------------------------------------------------------------------------

/// The most entries a retry or backoff schedule may have.
pub const MAX_SCHEDULE_ENTRIES: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("soft-decline retries must be 1 to {MAX_SCHEDULE_ENTRIES} strictly increasing day counts between 1 and 365")]
    RetryDays,
    #[error("the billing-key grace period is 0 to 90 days")]
    GraceDays,
    #[error("provider-error backoffs must be 1 to {MAX_SCHEDULE_ENTRIES} minute counts between 1 and 1440")]
    BackoffMinutes,
}

/// What happens after a failed charge (domain spec §3.3). Defaults are the spec's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DunningPolicy {
    /// Soft declines (insufficient funds): retry this many days after the *first* failure; when
    /// the last retry fails too the subscription is suspended (`PAYMENT_FAILED_MAX_RETRIES`).
    soft_decline_retry_days: Vec<u32>,
    /// Billing key expired, unknown or revoked: days until the subscription is suspended.
    billing_key_grace_days: u32,
    /// Provider or network errors: minutes until the next try, one entry per consecutive error.
    /// They do not count as dunning attempts; when they run out the subscription needs review.
    provider_error_backoff_minutes: Vec<u32>,
}

impl Default for DunningPolicy {
    fn default() -> Self {
        DunningPolicy {
            soft_decline_retry_days: vec![3, 7, 14],
            billing_key_grace_days: 7,
            // About 17 hours of tries in all: a provider outage of an afternoon heals by itself.
            provider_error_backoff_minutes: vec![1, 5, 15, 60, 240, 720],
        }
    }
}

impl DunningPolicy {
    pub fn new(
        soft_decline_retry_days: Vec<u32>,
        billing_key_grace_days: u32,
        provider_error_backoff_minutes: Vec<u32>,
    ) -> Result<DunningPolicy, PolicyError> {
        let increasing = soft_decline_retry_days.windows(2).all(|w| w[0] < w[1]);
        if soft_decline_retry_days.is_empty()
            || soft_decline_retry_days.len() > MAX_SCHEDULE_ENTRIES
            || !increasing
            || soft_decline_retry_days.iter().any(|d| *d == 0 || *d > 365)
        {
            return Err(PolicyError::RetryDays);
        }
        if billing_key_grace_days > 90 {
            return Err(PolicyError::GraceDays);
        }
        if provider_error_backoff_minutes.is_empty()
            || provider_error_backoff_minutes.len() > MAX_SCHEDULE_ENTRIES
            || provider_error_backoff_minutes
                .iter()
                .any(|m| *m == 0 || *m > 1440)
        {
            return Err(PolicyError::BackoffMinutes);
        }
        Ok(DunningPolicy {
            soft_decline_retry_days,
            billing_key_grace_days,
            provider_error_backoff_minutes,
        })
    }

    pub fn soft_decline_retry_days(&self) -> &[u32] {
        &self.soft_decline_retry_days
    }

    pub fn billing_key_grace_days(&self) -> u32 {
        self.billing_key_grace_days
    }

    pub fn provider_error_backoff_minutes(&self) -> &[u32] {
        &self.provider_error_backoff_minutes
    }
}

/// How urgent a notification to the product is (source document 5, §5: the product chooses
/// channels and quiet hours by it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationPriority {
    Urgent,
    Important,
    Normal,
    Info,
}

/// True when `text` holds a card number (PAN) by the one rule of
/// [`crate::card_numbers`]: used to refuse such text in any field payledger would store, so a
/// card number pasted into the wrong field never reaches an event (PCI DSS SAQ A).
pub fn contains_card_number_like(text: &str) -> bool {
    crate::card_numbers::contains_card_number(text)
}

// ---------------------------------------------------------------------------------------------
// Provider-billed subscriptions (the facts; the rules are in `provider_billed.rs`)
// ---------------------------------------------------------------------------------------------

/// Who bills a provider-billed subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderBilling {
    /// The connector (`paddle`).
    pub provider: String,
    /// The provider's subscription id (`sub_…`).
    pub provider_subscription_id: String,
    /// The provider's price the plan was mapped from.
    pub price_id: String,
}

/// Why a provider took a subscription payment back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChargeReversalKind {
    Refund,
    Chargeback,
}

/// What a provider reported about a subscription it bills, after payledger confirmed it against
/// the provider's API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderSubscriptionFact {
    /// A period was billed and paid.
    Paid {
        /// The provider's transaction (`txn_…`).
        payment_key: crate::ids::PaymentKey,
        amount: crate::money::Money,
        /// The provider's fee as the merchant of record (Paddle's `details.totals.fee`), in the
        /// amount's currency: what it keeps of the payment. Posted to `provider_fees`.
        provider_fee_minor: i64,
        period_start: DateTime<Utc>,
        period_end: DateTime<Utc>,
        approved_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// A renewal failed and the provider retries it (its dunning).
    PastDue {
        provider_code: String,
        at: DateTime<Utc>,
    },
    /// A cancel is scheduled for `effective_at` (`Some`), or none is (`None`: withdrawn).
    CancelScheduled {
        effective_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    /// The provider canceled the subscription.
    Canceled { at: DateTime<Utc> },
    /// The provider took a paid period's payment back: a refund it approved, or a chargeback.
    ChargeReversed {
        payment_key: crate::ids::PaymentKey,
        /// The provider's adjustment id (`adj_…`).
        reversal_id: String,
        kind: ChargeReversalKind,
        amount: crate::money::Money,
        /// The part of its fee on the payment the provider gives back with the reversal (Paddle:
        /// the adjustment's `payout_totals.fee − retained_fee`); 0 when it keeps it all.
        provider_fee_returned_minor: i64,
        at: DateTime<Utc>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn month_end_anchors_do_not_drift() {
        let anchor = Utc.with_ymd_and_hms(2026, 1, 31, 10, 0, 0).unwrap();
        let monthly = BillingInterval::monthly();
        assert_eq!(monthly.cycle_start(anchor, 1), Some(anchor));
        assert_eq!(
            monthly.cycle_start(anchor, 2),
            Some(Utc.with_ymd_and_hms(2026, 2, 28, 10, 0, 0).unwrap())
        );
        assert_eq!(
            monthly.cycle_start(anchor, 3),
            Some(Utc.with_ymd_and_hms(2026, 3, 31, 10, 0, 0).unwrap())
        );
        assert_eq!(monthly.cycle_start(anchor, 0), None);
    }

    #[test]
    fn intervals_and_policies_are_bounded() {
        assert!(BillingInterval::new(IntervalUnit::Month, 0).is_err());
        assert!(BillingInterval::new(IntervalUnit::Month, 25).is_err());
        assert!(BillingInterval::new(IntervalUnit::Day, 366).is_ok());
        assert!(DunningPolicy::new(vec![3, 3], 7, vec![1]).is_err());
        assert!(DunningPolicy::new(vec![], 7, vec![1]).is_err());
        assert!(DunningPolicy::new(vec![1], 91, vec![1]).is_err());
        assert!(DunningPolicy::new(vec![1], 7, vec![]).is_err());
        assert!(DunningPolicy::new(vec![1, 2], 0, vec![5]).is_ok());
    }

    #[test]
    fn the_catalogue_parses_and_refuses_nonsense() {
        let catalogue = PlanCatalogue::parse("free=0, pro=2").unwrap();
        assert_eq!(catalogue.level_of(&PlanId::parse("pro").unwrap()), Some(2));
        assert_eq!(catalogue.level_of(&PlanId::parse("gold").unwrap()), None);
        assert!(PlanCatalogue::parse("pro").is_err());
        assert!(PlanCatalogue::parse("pro=10").is_err());
        assert!(PlanCatalogue::parse("pro=1,pro=2").is_err());
        assert!(PlanCatalogue::parse("").is_err());
        assert_eq!(
            PlanCatalogue::default().level_of(&PlanId::parse("basic").unwrap()),
            Some(1)
        );
    }

    #[test]
    fn card_number_like_runs_are_found() {
        use crate::card_numbers::test_cards;
        assert!(contains_card_number_like(test_cards::VISA_STRIPE));
        assert!(contains_card_number_like(test_cards::VISA_SPACED));
        assert!(contains_card_number_like(&format!(
            "card:{}.",
            test_cards::MASTERCARD_DASHED
        )));
        assert!(contains_card_number_like(&format!(
            "x{}y",
            test_cards::AMEX
        )));
        // Not Luhn-valid, too short, or masked: not a card number.
        assert!(!contains_card_number_like("4111111111111112"));
        assert!(!contains_card_number_like("411111111111"));
        assert!(!contains_card_number_like("bln_2026ab12345cd67890"));
        assert!(!contains_card_number_like("433012******1234"));
    }

    #[test]
    fn billing_ids_fit_provider_order_ids() {
        assert!(SubscriptionId::parse("a".repeat(40)).is_ok());
        assert!(SubscriptionId::parse("a".repeat(41)).is_err());
        assert!(SubscriptionId::parse("has.dot").is_err());
        assert!(SubscriptionId::generate().as_str().len() <= 40);
        assert!(BillingKeyId::generate().as_str().len() <= 64);
    }
}
