//! A Paddle subscription and its transactions read into the ledger's words: what starts the
//! subscription (price, amount per period, billing interval, first period) and the facts that
//! move it (each completed transaction as a paid period, then the subscription's state). The
//! one place Paddle's subscription and transaction shapes become `payledger_domain` facts; the
//! webhook worker only decides what to do with them.

use crate::wire::{
    parse_amount, parse_currency, SubscriptionStatus, SubscriptionWire, TransactionStatus,
    TransactionWire, UnreadableAnswer,
};
use crate::{CUSTOM_DATA_API_CLIENT, CUSTOM_DATA_CUSTOMER_ID};
use chrono::{DateTime, Utc};
use payledger_domain::billing::{BillingInterval, IntervalUnit, ProviderSubscriptionFact};
use payledger_domain::ids::PaymentKey;
use payledger_domain::money::Money;

/// Most transactions of one subscription read (years of monthly renewals).
pub const MAX_TRANSACTIONS_READ: usize = 200;

/// A Paddle subscription as the ledger needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionReading {
    pub subscription_id: String,
    /// Paddle's status word (`active`, `past_due`, `canceled`, …), for the record.
    pub status: String,
    /// `custom_data.customerId`: the payledger customer the checkout was for.
    pub customer_id: Option<String>,
    /// `custom_data.apiClient`: the payledger API client the customer belongs to.
    pub api_client: Option<String>,
    pub price_id: String,
    pub product_id: String,
    pub description: Option<String>,
    /// The price of one period, before tax.
    pub amount: Money,
    pub interval: BillingInterval,
    /// The first billing period's start (cycle 1).
    pub first_period_start: DateTime<Utc>,
    /// Every completed transaction as a paid period, in period order.
    pub paid: Vec<ProviderSubscriptionFact>,
    /// The subscription's state now: canceled, past due, or its scheduled cancel (or none).
    pub state: ProviderSubscriptionFact,
}

/// Reads a subscription and its transactions, at `now` (when the state was looked at).
pub fn read_subscription(
    subscription: &SubscriptionWire,
    transactions: &[TransactionWire],
    now: DateTime<Utc>,
) -> Result<SubscriptionReading, UnreadableAnswer> {
    let item = subscription
        .items
        .first()
        .ok_or_else(|| UnreadableAnswer("the subscription has no items".to_owned()))?;
    let mut per_period = 0i64;
    for item in &subscription.items {
        per_period += parse_amount(&item.price.unit_price.amount, "unit_price.amount")?
            * i64::from(item.quantity);
    }
    let currency = parse_currency(&subscription.currency_code)?;
    let amount = Money::new(per_period, currency)
        .map_err(|err| UnreadableAnswer(format!("the price per period: {err}")))?;
    let unit = match subscription.billing_cycle.interval.as_str() {
        "day" => IntervalUnit::Day,
        "week" => IntervalUnit::Week,
        "month" => IntervalUnit::Month,
        "year" => IntervalUnit::Year,
        other => return Err(UnreadableAnswer(format!("billing interval '{other}'"))),
    };
    let interval = BillingInterval::new(unit, subscription.billing_cycle.frequency)
        .map_err(|err| UnreadableAnswer(format!("billing cycle: {err}")))?;
    let mut billed: Vec<&TransactionWire> = transactions
        .iter()
        .filter(|t| t.billing_period.is_some())
        .collect();
    billed.sort_by_key(|t| t.billing_period.as_ref().map(|p| p.starts_at));
    billed.truncate(MAX_TRANSACTIONS_READ);
    let first_period_start = billed
        .first()
        .and_then(|t| t.billing_period.as_ref().map(|p| p.starts_at))
        .or(subscription.started_at)
        .or(subscription
            .current_billing_period
            .as_ref()
            .map(|p| p.starts_at))
        .ok_or_else(|| UnreadableAnswer("the subscription has no billing period".to_owned()))?;
    let paid = billed
        .into_iter()
        .filter(|t| {
            matches!(
                t.status,
                TransactionStatus::Completed | TransactionStatus::Paid
            )
        })
        .map(paid_fact)
        .collect::<Result<Vec<_>, _>>()?;
    let state = match subscription.status {
        SubscriptionStatus::Canceled => ProviderSubscriptionFact::Canceled {
            at: subscription.canceled_at.unwrap_or(now),
        },
        SubscriptionStatus::PastDue => ProviderSubscriptionFact::PastDue {
            provider_code: "past_due".to_owned(),
            at: now,
        },
        SubscriptionStatus::Active | SubscriptionStatus::Trialing | SubscriptionStatus::Paused => {
            ProviderSubscriptionFact::CancelScheduled {
                effective_at: subscription.cancel_effective_at(),
                at: now,
            }
        }
    };
    Ok(SubscriptionReading {
        subscription_id: subscription.id.clone(),
        status: subscription.status.as_str().to_owned(),
        customer_id: subscription
            .custom_text(CUSTOM_DATA_CUSTOMER_ID)
            .map(str::to_owned),
        api_client: subscription
            .custom_text(CUSTOM_DATA_API_CLIENT)
            .map(str::to_owned),
        price_id: item.price.id.clone(),
        product_id: item.price.product_id.clone(),
        description: item.price.description.clone().filter(|d| !d.is_empty()),
        amount,
        interval,
        first_period_start,
        paid,
        state,
    })
}

/// A completed transaction as a paid period: its subtotal (before tax: the subscription's
/// price) for its billing period.
fn paid_fact(transaction: &TransactionWire) -> Result<ProviderSubscriptionFact, UnreadableAnswer> {
    let money = transaction.money()?;
    let subtotal = parse_amount(
        &transaction.details.totals.subtotal,
        "details.totals.subtotal",
    )?;
    let period = transaction
        .billing_period
        .as_ref()
        .ok_or_else(|| UnreadableAnswer(format!("{} has no billing period", transaction.id)))?;
    let approved_at = transaction
        .captured_at()
        .ok_or_else(|| UnreadableAnswer(format!("{} has no capture time", transaction.id)))?;
    Ok(ProviderSubscriptionFact::Paid {
        payment_key: PaymentKey::parse(&transaction.id)
            .map_err(|err| UnreadableAnswer(format!("transaction id: {err}")))?,
        amount: Money::new(subtotal, money.currency)
            .map_err(|err| UnreadableAnswer(format!("subtotal: {err}")))?,
        provider_fee_minor: money.fee_minor,
        period_start: period.starts_at,
        period_end: period.ends_at,
        approved_at,
        at: approved_at,
    })
}

/// A Paddle adjustment in the ledger's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdjustmentReading {
    pub id: String,
    pub transaction_id: String,
    pub subscription_id: Option<String>,
    /// What it takes back once approved (a refund, a chargeback); `None` for what takes
    /// nothing back (credits, chargeback warnings, reversals).
    pub reversal: Option<payledger_domain::billing::ChargeReversalKind>,
    /// Paddle approved it (a chargeback is approved when Paddle records it).
    pub approved: bool,
    /// Paddle's words, for the record: `refund`, `pending_approval`, …
    pub action: String,
    pub status: String,
    pub total_minor: i64,
    pub currency: payledger_domain::money::Currency,
    /// The part of Paddle's fee it gives back with the adjustment (see
    /// [`crate::wire::AdjustmentWire::fee_returned_minor`]).
    pub fee_returned_minor: i64,
    pub reason: String,
    pub created_at: DateTime<Utc>,
    /// The chargeback fee Paddle passes on (`payout_totals.chargeback_fee.amount`; 0 for a
    /// refund, or when Paddle states none).
    pub chargeback_fee_minor: i64,
}

/// Reads an adjustment Paddle's API answered.
pub fn read_adjustment(
    adjustment: &crate::wire::AdjustmentWire,
) -> Result<AdjustmentReading, UnreadableAnswer> {
    use crate::wire::{AdjustmentAction, AdjustmentStatus};
    use payledger_domain::billing::ChargeReversalKind;
    let money = adjustment.money()?;
    Ok(AdjustmentReading {
        id: adjustment.id.clone(),
        transaction_id: adjustment.transaction_id.clone(),
        subscription_id: adjustment.subscription_id.clone(),
        reversal: match adjustment.action {
            AdjustmentAction::Refund => Some(ChargeReversalKind::Refund),
            AdjustmentAction::Chargeback => Some(ChargeReversalKind::Chargeback),
            _ => None,
        },
        approved: adjustment.status == AdjustmentStatus::Approved,
        action: serde_json::to_value(adjustment.action)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        status: serde_json::to_value(adjustment.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        total_minor: money.total_minor,
        currency: money.currency,
        fee_returned_minor: adjustment.fee_returned_minor()?,
        reason: adjustment.reason.clone(),
        created_at: adjustment.created_at,
        chargeback_fee_minor: adjustment.chargeback_fee_minor()?,
    })
}
