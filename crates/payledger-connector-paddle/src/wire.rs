//! Paddle Billing's JSON, as much of it as payledger reads, and the one reading of Paddle's
//! status words ([`TransactionStatus::fact_status`], [`SubscriptionStatus`],
//! [`AdjustmentStatus`]).
//!
//! Every answer is an envelope `{data, meta}` (or `{error, meta}`). Amounts are strings of minor
//! units (`"990"` is 9.90 USD); they are parsed into `i64` here and refused if they are not
//! plain non-negative integers, so no float ever touches them.

use chrono::{DateTime, Utc};
use payledger_domain::money::Currency;
use payledger_gateway::PaymentFactStatus;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An answer payledger could not read (a shape it does not know, an amount that is not an
/// integer): never guessed at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UnreadableAnswer(pub String);

#[derive(Debug, Clone, Deserialize)]
pub struct Envelope<T> {
    pub data: T,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ErrorBody {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub detail: Option<String>,
}

/// A minor-unit amount as Paddle writes it: a string of digits.
pub fn parse_amount(text: &str, what: &str) -> Result<i64, UnreadableAnswer> {
    if text.is_empty() || text.len() > 18 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UnreadableAnswer(format!(
            "{what} is not an amount in minor units"
        )));
    }
    text.parse::<i64>()
        .map_err(|_| UnreadableAnswer(format!("{what} is out of range")))
}

pub fn parse_currency(code: &str) -> Result<Currency, UnreadableAnswer> {
    Currency::parse(code)
        .map_err(|_| UnreadableAnswer(format!("currency {code} is not one payledger settles in")))
}

// ---------------------------------------------------------------------------------------------
// Prices and items
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillingCycle {
    /// `day`, `week`, `month` or `year`.
    pub interval: String,
    pub frequency: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitPrice {
    pub amount: String,
    pub currency_code: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceWire {
    pub id: String,
    pub product_id: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub billing_cycle: Option<BillingCycle>,
    pub unit_price: UnitPrice,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemWire {
    pub price: PriceWire,
    pub quantity: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

// ---------------------------------------------------------------------------------------------
// Transactions
// ---------------------------------------------------------------------------------------------

/// Paddle's transaction statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransactionStatus {
    Draft,
    Ready,
    Billed,
    Paid,
    Completed,
    Canceled,
    PastDue,
}

impl TransactionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TransactionStatus::Draft => "draft",
            TransactionStatus::Ready => "ready",
            TransactionStatus::Billed => "billed",
            TransactionStatus::Paid => "paid",
            TransactionStatus::Completed => "completed",
            TransactionStatus::Canceled => "canceled",
            TransactionStatus::PastDue => "past_due",
        }
    }

    /// The one reading of a transaction's status in payledger's words. `paid` is captured:
    /// Paddle has the money and only its own processing (invoice, fulfilment) remains.
    /// `billed` and `past_due` wait for a payment (Paddle retries a past-due renewal).
    pub fn fact_status(self) -> PaymentFactStatus {
        match self {
            TransactionStatus::Draft
            | TransactionStatus::Ready
            | TransactionStatus::Billed
            | TransactionStatus::PastDue => PaymentFactStatus::Pending,
            TransactionStatus::Paid | TransactionStatus::Completed => PaymentFactStatus::Captured,
            TransactionStatus::Canceled => PaymentFactStatus::NotCompleted,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotalsWire {
    pub subtotal: String,
    pub tax: String,
    pub total: String,
    /// Paddle's fee as the merchant of record (absent until paid).
    #[serde(default)]
    pub fee: Option<String>,
    #[serde(default)]
    pub earnings: Option<String>,
    pub currency_code: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionDetails {
    pub totals: TotalsWire,
    #[serde(default)]
    pub line_items: Vec<LineItemWire>,
}

/// A line of a transaction (`txnitm_…`), which a partial adjustment names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineItemWire {
    pub id: String,
    pub price_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentAttemptWire {
    pub status: String,
    #[serde(default)]
    pub error_code: Option<String>,
    #[serde(default)]
    pub captured_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub method_details: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionWire {
    pub id: String,
    pub status: TransactionStatus,
    #[serde(default)]
    pub customer_id: Option<String>,
    #[serde(default)]
    pub subscription_id: Option<String>,
    /// `web` (checkout), `subscription_recurring` (a renewal), `api`, …
    #[serde(default)]
    pub origin: Option<String>,
    #[serde(default)]
    pub custom_data: Option<Value>,
    #[serde(default)]
    pub billing_period: Option<Period>,
    pub currency_code: String,
    pub items: Vec<ItemWire>,
    pub details: TransactionDetails,
    #[serde(default)]
    pub payments: Vec<PaymentAttemptWire>,
    #[serde(default)]
    pub billed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// A transaction's money, read and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransactionMoney {
    pub currency: Currency,
    pub total_minor: i64,
    /// Paddle's fee as the merchant of record (0 until Paddle reports it).
    pub fee_minor: i64,
    /// What Paddle pays out: `total − fee − tax`.
    pub earnings_minor: i64,
}

impl TransactionWire {
    pub fn money(&self) -> Result<TransactionMoney, UnreadableAnswer> {
        let totals = &self.details.totals;
        if totals.currency_code != self.currency_code {
            return Err(UnreadableAnswer(
                "the transaction's totals are in another currency".to_owned(),
            ));
        }
        let total_minor = parse_amount(&totals.total, "details.totals.total")?;
        let fee_minor = match &totals.fee {
            Some(fee) => parse_amount(fee, "details.totals.fee")?,
            None => 0,
        };
        let earnings_minor = match &totals.earnings {
            Some(earnings) => parse_amount(earnings, "details.totals.earnings")?,
            None => total_minor - fee_minor,
        };
        if fee_minor > total_minor || earnings_minor > total_minor {
            return Err(UnreadableAnswer(
                "the transaction's fee or earnings exceed its total".to_owned(),
            ));
        }
        Ok(TransactionMoney {
            currency: parse_currency(&self.currency_code)?,
            total_minor,
            fee_minor,
            earnings_minor,
        })
    }

    /// The price ids of its items, in order.
    pub fn price_ids(&self) -> Vec<&str> {
        self.items.iter().map(|i| i.price.id.as_str()).collect()
    }

    /// When Paddle captured the money: the captured payment attempt, else when it was billed.
    pub fn captured_at(&self) -> Option<DateTime<Utc>> {
        self.payments
            .iter()
            .filter(|p| p.status == "captured")
            .find_map(|p| p.captured_at)
            .or(self.billed_at)
    }

    /// A text field of `custom_data` (what payledger passes to the checkout, e.g. `customerId`).
    pub fn custom_text(&self, key: &str) -> Option<&str> {
        self.custom_data.as_ref()?.get(key)?.as_str()
    }
}

// ---------------------------------------------------------------------------------------------
// Subscriptions
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    Active,
    Trialing,
    PastDue,
    Paused,
    Canceled,
}

impl SubscriptionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionStatus::Active => "active",
            SubscriptionStatus::Trialing => "trialing",
            SubscriptionStatus::PastDue => "past_due",
            SubscriptionStatus::Paused => "paused",
            SubscriptionStatus::Canceled => "canceled",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduledChange {
    /// `cancel`, `pause` or `resume`.
    pub action: String,
    pub effective_at: DateTime<Utc>,
    #[serde(default)]
    pub resume_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionWire {
    pub id: String,
    pub status: SubscriptionStatus,
    pub customer_id: String,
    pub currency_code: String,
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub next_billed_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub canceled_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub current_billing_period: Option<Period>,
    pub billing_cycle: BillingCycle,
    #[serde(default)]
    pub scheduled_change: Option<ScheduledChange>,
    pub items: Vec<ItemWire>,
    #[serde(default)]
    pub custom_data: Option<Value>,
    /// Only in `subscription.created` events: the checkout's transaction.
    #[serde(default)]
    pub transaction_id: Option<String>,
}

impl SubscriptionWire {
    pub fn price_ids(&self) -> Vec<&str> {
        self.items.iter().map(|i| i.price.id.as_str()).collect()
    }

    /// When a scheduled cancel takes effect, if one is scheduled.
    pub fn cancel_effective_at(&self) -> Option<DateTime<Utc>> {
        self.scheduled_change
            .as_ref()
            .filter(|change| change.action == "cancel")
            .map(|change| change.effective_at)
    }

    pub fn custom_text(&self, key: &str) -> Option<&str> {
        self.custom_data.as_ref()?.get(key)?.as_str()
    }
}

// ---------------------------------------------------------------------------------------------
// Adjustments
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdjustmentAction {
    Refund,
    Credit,
    Chargeback,
    ChargebackReverse,
    ChargebackWarning,
    CreditReverse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdjustmentStatus {
    PendingApproval,
    Approved,
    Rejected,
    Reversed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdjustmentWire {
    pub id: String,
    pub action: AdjustmentAction,
    pub transaction_id: String,
    #[serde(default)]
    pub subscription_id: Option<String>,
    #[serde(default)]
    pub customer_id: Option<String>,
    pub reason: String,
    pub currency_code: String,
    pub status: AdjustmentStatus,
    pub totals: TotalsWire,
    /// What it takes from the merchant's payouts, once decided (Paddle's `payout_totals`; `null`
    /// before).
    #[serde(default)]
    pub payout_totals: Option<AdjustmentPayoutTotalsWire>,
    pub created_at: DateTime<Utc>,
}

/// The part of an adjustment's `payout_totals` the ledger records at once: the fee on the
/// adjusted amount and how much of it Paddle retains (the rest it gives back to the merchant),
/// and the chargeback fee Paddle passes on (the rest is read as a settlement line,
/// `crate::settlements`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdjustmentPayoutTotalsWire {
    #[serde(default)]
    pub fee: Option<String>,
    #[serde(default)]
    pub retained_fee: Option<String>,
    #[serde(default)]
    pub chargeback_fee: Option<ChargebackFeeWire>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargebackFeeWire {
    pub amount: String,
}

/// What Paddle gives back of its fee with an adjustment: `payout_totals.fee − retained_fee`, the
/// one reading of those two fields for the webhook relay and the settlement import alike.
pub fn fee_given_back_minor(fee_minor: i64, retained_minor: i64) -> Result<i64, UnreadableAnswer> {
    if fee_minor < 0 || retained_minor < 0 || retained_minor > fee_minor {
        return Err(UnreadableAnswer(
            "payout_totals: the retained fee is not within the fee".to_owned(),
        ));
    }
    Ok(fee_minor - retained_minor)
}

impl AdjustmentWire {
    /// The chargeback fee Paddle passes on with this adjustment (`payout_totals.chargeback_fee
    /// .amount`), 0 when it states none.
    pub fn chargeback_fee_minor(&self) -> Result<i64, UnreadableAnswer> {
        match self
            .payout_totals
            .as_ref()
            .and_then(|t| t.chargeback_fee.as_ref())
        {
            Some(fee) => parse_amount(&fee.amount, "payout_totals.chargeback_fee.amount"),
            None => Ok(0),
        }
    }

    /// The adjusted total and Paddle's share of it (the fee it returns or keeps).
    pub fn money(&self) -> Result<TransactionMoney, UnreadableAnswer> {
        let total_minor = parse_amount(&self.totals.total, "totals.total")?;
        let fee_minor = match &self.totals.fee {
            Some(fee) => parse_amount(fee, "totals.fee")?,
            None => 0,
        };
        Ok(TransactionMoney {
            currency: parse_currency(&self.currency_code)?,
            total_minor,
            fee_minor,
            earnings_minor: total_minor - fee_minor.min(total_minor),
        })
    }

    /// The part of Paddle's fee it gives back with this adjustment: `payout_totals.fee −
    /// payout_totals.retained_fee` (0 without payout totals).
    pub fn fee_returned_minor(&self) -> Result<i64, UnreadableAnswer> {
        let Some(payout) = &self.payout_totals else {
            return Ok(0);
        };
        let amount = |field: &Option<String>, name: &str| match field {
            Some(text) => parse_amount(text, name),
            None => Ok(0),
        };
        let fee = amount(&payout.fee, "payout_totals.fee")?;
        let retained = amount(&payout.retained_fee, "payout_totals.retained_fee")?;
        fee_given_back_minor(fee, retained)
    }

    /// Whether it takes money back from the merchant once approved.
    pub fn returns_money(&self) -> bool {
        matches!(
            self.action,
            AdjustmentAction::Refund | AdjustmentAction::Chargeback
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Customers
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerWire {
    pub id: String,
    pub email: String,
    #[serde(default)]
    pub name: Option<String>,
    pub status: String,
}

/// Reads `{data: T}`.
pub fn parse_data<T: serde::de::DeserializeOwned>(
    body: &[u8],
    what: &str,
) -> Result<T, UnreadableAnswer> {
    serde_json::from_slice::<Envelope<T>>(body)
        .map(|envelope| envelope.data)
        .map_err(|err| UnreadableAnswer(format!("{what}: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_digit_strings_only() {
        assert_eq!(parse_amount("990", "x"), Ok(990));
        for bad in ["", "-1", "9.90", "1e3", " 1", "99999999999999999999"] {
            assert!(parse_amount(bad, "x").is_err(), "{bad}");
        }
    }

    #[test]
    fn only_paid_and_completed_transactions_are_captured() {
        use TransactionStatus::*;
        for status in [Draft, Ready, Billed, PastDue] {
            assert_eq!(status.fact_status(), PaymentFactStatus::Pending);
        }
        assert_eq!(Paid.fact_status(), PaymentFactStatus::Captured);
        assert_eq!(Completed.fact_status(), PaymentFactStatus::Captured);
        assert_eq!(Canceled.fact_status(), PaymentFactStatus::NotCompleted);
    }
}
