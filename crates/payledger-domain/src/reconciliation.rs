//! The provider's money, reconciled: what a provider says it settled (paid out) to the platform,
//! matched to the ledger's payments and refunds. Stream
//! `reconciliation-{provider}-{line id}`, one per provider settlement line (or
//! `reconciliation-{provider}-unsettled-{order id}` for a capture the provider never settled).
//!
//! A line is judged against the order it names ([`judge_line`]): the payment key, the currency,
//! the amount, the fee against the agreed [`FeeSchedule`], the payout against amount − fee, and
//! the payout date against the provider's settlement delay. A matched line posts to the journal
//! (`payledger_domain::journal::post_reconciliation_event`): the payout to `bank`, the fee to
//! `provider_fees`, their sum out of `provider_clearing`. Every difference is a
//! [`ReconciliationFlagged`] that stays open until an admin resolves it with a note.
//!
//! Importing a line twice records it once: the stream exists, and the same line again decides
//! nothing — unless it matched nothing before and matches a ledger payment now (recorded since),
//! when it is matched and posted then. A line that comes back different is flagged (`line_changed`), never overwritten.

use crate::billing::SubscriptionId;
use crate::ids::{OrderId, PayeeId};
use crate::money::Currency;
use crate::order::{Order, RefundStatus};
use crate::subscription::Subscription;
use chrono::{DateTime, NaiveDate, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Longest provider line id kept (Toss keys are 200 characters at most).
pub const MAX_LINE_ID_CHARS: usize = 200;
/// Longest provider name.
pub const MAX_PROVIDER_CHARS: usize = 32;
/// Longest resolution note.
pub const MAX_NOTE_CHARS: usize = 500;
/// The largest fee rate a schedule may state: 100 %.
pub const MAX_RATE_BPS: u32 = 10_000;
/// The longest settlement delay a schedule may state.
pub const MAX_SETTLEMENT_DELAY_DAYS: u32 = 90;

/// The stream of one provider line.
pub fn line_stream(provider: &str, line_id: &str) -> String {
    crate::streams::StreamKind::Reconciliation.name(format_args!("{provider}-{line_id}"))
}

/// The stream that flags a payout whose total is not the sum of its lines.
pub fn payout_stream(provider: &str, payout_id: &str) -> String {
    crate::streams::StreamKind::Reconciliation.name(format_args!("{provider}-payout-{payout_id}"))
}

/// A provider payout as the provider states it: the total it says it paid, to compare with the
/// sum of the lines it pays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PayoutTotal {
    pub payout_id: String,
    pub currency: Currency,
    pub amount_minor: i64,
    pub paid_out_on: NaiveDate,
}

/// The flag for a payout whose stated total is not the sum of its lines' payouts (`None` when
/// it is): the lines were posted as the provider itemised them, so the difference is money the
/// bank did not receive (or received extra) — compared here, resolved by a claim or accepted.
pub fn judge_payout(
    provider: &str,
    payout: &PayoutTotal,
    lines: &[SettlementLine],
    at: DateTime<Utc>,
) -> Option<ReconciliationFlagged> {
    let itemised: i64 = lines
        .iter()
        .filter(|l| l.payout_id.as_deref() == Some(payout.payout_id.as_str()))
        .map(|l| l.payout_minor)
        .sum();
    (itemised != payout.amount_minor).then(|| ReconciliationFlagged {
        kind: FlagKind::PayoutMismatch,
        provider: provider.to_string(),
        order_id: None,
        line_id: Some(payout.payout_id.clone()),
        currency: payout.currency,
        expected_minor: itemised,
        actual_minor: payout.amount_minor,
        detail: format!(
            "payout {} on {} is not the sum of its balance transactions",
            payout.payout_id, payout.paid_out_on
        ),
        at,
    })
}

/// The stream that flags a capture the provider never settled.
pub fn unsettled_stream(provider: &str, order_id: &OrderId) -> String {
    crate::streams::StreamKind::Reconciliation.name(format_args!("{provider}-unsettled-{order_id}"))
}

/// What the platform agreed to pay a provider, and when the provider pays out. Integer
/// arithmetic: fee = ⌊|amount| × rate_bps / 10 000⌋ + fixed, VAT = ⌊fee × vat_bps / 10 000⌋,
/// the fee charged is fee + VAT; a refund line gives back ⌊|amount| × rate_bps / 10 000⌋ (+ VAT on
/// it) when `refund_returns_fee`, else nothing. The fixed part is never given back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeeSchedule {
    pub rate_bps: u32,
    pub fixed_minor: i64,
    pub vat_bps: u32,
    pub refund_returns_fee: bool,
    /// Days from the sale (`soldDate`) to the payout (`paidOutDate`).
    pub settlement_delay_days: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a fee schedule needs rates of 0..=10000 basis points, a fixed fee of 0..=1000000 minor units and a delay of 0..=90 days")]
pub struct InvalidFeeSchedule;

impl FeeSchedule {
    /// Toss Payments' card rate as the sandbox charges it unless told otherwise: 3.2 % + 10 % VAT,
    /// paid out two days after the sale, the fee given back on a cancel.
    pub const TOSS_DEFAULT: FeeSchedule = FeeSchedule {
        rate_bps: 320,
        fixed_minor: 0,
        vat_bps: 1_000,
        refund_returns_fee: true,
        settlement_delay_days: 2,
    };
    /// Stripe's standard card rate: 2.9 % + 30, no VAT, fees kept on refunds, paid out two days
    /// after the charge.
    pub const STRIPE_DEFAULT: FeeSchedule = FeeSchedule {
        rate_bps: 290,
        fixed_minor: 30,
        vat_bps: 0,
        refund_returns_fee: false,
        settlement_delay_days: 2,
    };

    /// Paddle's merchant-of-record fee as its sandbox charges it: 5 % + 50 of the total before
    /// tax (the tax is Paddle's to remit, never the platform's), paid out two days after billing.
    pub const PADDLE_DEFAULT: FeeSchedule = FeeSchedule {
        rate_bps: 500,
        fixed_minor: 50,
        vat_bps: 0,
        refund_returns_fee: false,
        settlement_delay_days: 2,
    };

    pub fn validate(self) -> Result<FeeSchedule, InvalidFeeSchedule> {
        let ok = self.rate_bps <= MAX_RATE_BPS
            && self.vat_bps <= MAX_RATE_BPS
            && (0..=1_000_000).contains(&self.fixed_minor)
            && self.settlement_delay_days <= MAX_SETTLEMENT_DELAY_DAYS;
        ok.then_some(self).ok_or(InvalidFeeSchedule)
    }

    /// (fee including VAT, the VAT in it) for a line of `amount_minor` (negative for a refund).
    pub fn fee_for(&self, amount_minor: i64) -> (i64, i64) {
        let gross = i128::from(amount_minor.unsigned_abs().min(i64::MAX as u64) as i64);
        let rate = gross * i128::from(self.rate_bps) / 10_000;
        let base = if amount_minor >= 0 {
            rate + i128::from(self.fixed_minor)
        } else if self.refund_returns_fee {
            rate
        } else {
            0
        };
        let vat = base * i128::from(self.vat_bps) / 10_000;
        let clamp = |v: i128| i64::try_from(v).unwrap_or(i64::MAX);
        let (fee, vat) = (clamp(base + vat), clamp(vat));
        if amount_minor >= 0 {
            (fee, vat)
        } else {
            (-fee, -vat)
        }
    }
}

/// The schedules agreed with one provider: one per payment method, and a default for the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeeSchedules {
    pub default: FeeSchedule,
    pub by_method: BTreeMap<String, FeeSchedule>,
}

impl FeeSchedules {
    pub fn uniform(default: FeeSchedule) -> FeeSchedules {
        FeeSchedules {
            default,
            by_method: BTreeMap::new(),
        }
    }

    /// The schedule of `method`, else the default.
    pub fn for_method(&self, method: Option<&str>) -> &FeeSchedule {
        method
            .and_then(|m| self.by_method.get(m))
            .unwrap_or(&self.default)
    }
}

/// What a settlement line is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SettlementLineKind {
    Payment,
    Refund,
    Dispute,
    Adjustment,
}

/// One line of a provider's settlement report, in payledger's words. Amounts are signed: a
/// refund or dispute line is negative. `payout_minor` is what the provider paid the platform for
/// the line (`amount − fee` when all is well).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SettlementLine {
    pub provider: String,
    /// The provider's id of this line; unique per provider (the stream's id).
    pub line_id: String,
    pub kind: SettlementLineKind,
    /// The provider's payment (Toss `paymentKey`, Stripe PaymentIntent id).
    pub payment_key: String,
    /// The merchant order id the provider knows the payment by, when it says.
    pub order_id: Option<String>,
    pub amount_minor: i64,
    pub fee_minor: i64,
    pub vat_minor: i64,
    pub payout_minor: i64,
    pub currency: Currency,
    pub sold_on: NaiveDate,
    pub paid_out_on: NaiveDate,
    /// The provider's payout (batch) the line was paid in, when it has one (Stripe `po_…`).
    pub payout_id: Option<String>,
    /// The payment method as the provider names it (Toss `카드`, `가상계좌`; Stripe `card`),
    /// which picks the fee schedule; `None` when the report does not say.
    #[serde(default)]
    pub method: Option<String>,
    /// The provider's subscription the payment billed, when the provider bills it (Paddle's
    /// `subscription_id`, which is also the ledger's subscription id): the line is then matched
    /// to the subscription's charge, not to an order. Absent from the payload when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSettlementLine {
    #[error("the provider name must be 1 to {MAX_PROVIDER_CHARS} characters of a-z 0-9 _")]
    Provider,
    #[error("the line id must be 1 to {MAX_LINE_ID_CHARS} printable ASCII characters")]
    LineId,
    #[error("the payment key must be 1 to {MAX_LINE_ID_CHARS} printable ASCII characters")]
    PaymentKey,
    #[error("an amount is out of range")]
    Amount,
}

fn printable(text: &str) -> bool {
    (1..=MAX_LINE_ID_CHARS).contains(&text.len())
        && text.chars().all(|c| c.is_ascii_graphic() && c != '/')
}

impl SettlementLine {
    /// Checks the parts that name streams and money, before anything is recorded.
    pub fn validate(&self) -> Result<(), InvalidSettlementLine> {
        let provider_ok = (1..=MAX_PROVIDER_CHARS).contains(&self.provider.len())
            && self
                .provider
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !provider_ok {
            return Err(InvalidSettlementLine::Provider);
        }
        if !printable(&self.line_id) {
            return Err(InvalidSettlementLine::LineId);
        }
        if !printable(&self.payment_key) {
            return Err(InvalidSettlementLine::PaymentKey);
        }
        let bound = crate::money::MAX_AMOUNT_MINOR;
        if [
            self.amount_minor,
            self.fee_minor,
            self.vat_minor,
            self.payout_minor,
        ]
        .iter()
        .any(|v| v.abs() > bound)
        {
            return Err(InvalidSettlementLine::Amount);
        }
        Ok(())
    }
}

/// Kinds of difference reconciliation flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagKind {
    /// A provider line the ledger has no payment (or refund) for.
    UnknownPayment,
    /// The line's currency is not the order's.
    CurrencyMismatch,
    /// The line's amount is not what the ledger captured (or refunded).
    AmountMismatch,
    /// The fee is not the agreed schedule's.
    FeeMismatch,
    /// The provider paid out less (or more) than amount − fee.
    ShortPayout,
    /// Paid out later than the provider's settlement delay.
    LatePayout,
    /// A capture the provider has not settled past its settlement delay.
    UnsettledCapture,
    /// The provider reported a line again, different from the first time.
    LineChanged,
    /// A payout's stated total is not the sum of the lines it pays (stream
    /// `reconciliation-{provider}-payout-{payout id}`).
    PayoutMismatch,
}

impl FlagKind {
    pub const ALL: [FlagKind; 9] = [
        FlagKind::UnknownPayment,
        FlagKind::CurrencyMismatch,
        FlagKind::AmountMismatch,
        FlagKind::FeeMismatch,
        FlagKind::ShortPayout,
        FlagKind::LatePayout,
        FlagKind::UnsettledCapture,
        FlagKind::LineChanged,
        FlagKind::PayoutMismatch,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FlagKind::UnknownPayment => "unknown_payment",
            FlagKind::CurrencyMismatch => "currency_mismatch",
            FlagKind::AmountMismatch => "amount_mismatch",
            FlagKind::FeeMismatch => "fee_mismatch",
            FlagKind::ShortPayout => "short_payout",
            FlagKind::LatePayout => "late_payout",
            FlagKind::UnsettledCapture => "unsettled_capture",
            FlagKind::LineChanged => "line_changed",
            FlagKind::PayoutMismatch => "payout_mismatch",
        }
    }

    pub fn parse(name: &str) -> Option<FlagKind> {
        FlagKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// How an admin closed a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// The difference is right (a negotiated rate, a known delay).
    AcceptedDifference,
    /// The money is lost; written off by finance outside the ledger's clearing.
    WriteOff,
    /// The provider owes it; a claim was filed with them.
    ClaimAgainstProvider,
}

impl Resolution {
    pub fn parse(name: &str) -> Option<Resolution> {
        match name {
            "accepted_difference" => Some(Resolution::AcceptedDifference),
            "write_off" => Some(Resolution::WriteOff),
            "claim_against_provider" => Some(Resolution::ClaimAgainstProvider),
            _ => None,
        }
    }
}

/// A line matched to a ledger payment: it posts to the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SettlementLineMatched {
    pub line: SettlementLine,
    pub order_id: OrderId,
    pub payee_id: PayeeId,
    pub at: DateTime<Utc>,
}

/// A line matched to nothing the ledger holds: recorded, posted nowhere, flagged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SettlementLineUnmatched {
    pub line: SettlementLine,
    /// The order the provider named, when the ledger has it (the currency differs).
    pub order_id: Option<OrderId>,
    pub at: DateTime<Utc>,
}

/// A line matched to a subscription charge a provider billed (a Paddle subscription's first
/// payment or renewal): it posts to the journal like a matched order line, except that the fee
/// the charge recorded (`ChargeSucceeded.providerFeeMinor`, already in `provider_fees`) is not
/// posted again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionChargeSettled {
    pub line: SettlementLine,
    pub subscription_id: SubscriptionId,
    /// The provider's fee the subscription's charge recorded for this payment.
    pub recorded_fee_minor: i64,
    pub at: DateTime<Utc>,
}

/// A difference between the provider's word and the ledger's, open until resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconciliationFlagged {
    pub kind: FlagKind,
    pub provider: String,
    pub order_id: Option<OrderId>,
    pub line_id: Option<String>,
    pub currency: Currency,
    pub expected_minor: i64,
    pub actual_minor: i64,
    pub detail: String,
    pub at: DateTime<Utc>,
}

/// An admin closed a flag, with a note (who is in the event metadata).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconciliationResolved {
    pub kind: FlagKind,
    pub resolution: Resolution,
    pub note: String,
    pub order_id: Option<OrderId>,
    /// What a `write_off` takes out of `provider_clearing` for good: the shortfall of a short
    /// payout, or the whole capture of an unsettled one; 0 otherwise.
    pub written_off_minor: i64,
    pub currency: Currency,
    pub at: DateTime<Utc>,
}

/// What writing off a flag takes out of `provider_clearing`: only money the provider still owes
/// for a payment the ledger captured (a short payout's shortfall, an unsettled capture).
pub fn write_off_of(flag: &ReconciliationFlagged) -> i64 {
    match flag.kind {
        FlagKind::ShortPayout => (flag.expected_minor - flag.actual_minor).max(0),
        FlagKind::UnsettledCapture => flag.expected_minor.max(0),
        _ => 0,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReconciliationEvent {
    SettlementLineMatched(SettlementLineMatched),
    SettlementLineUnmatched(SettlementLineUnmatched),
    ReconciliationFlagged(ReconciliationFlagged),
    ReconciliationResolved(ReconciliationResolved),
    SubscriptionChargeSettled(SubscriptionChargeSettled),
}

impl ReconciliationEvent {
    /// The order the event concerns, for its timeline.
    pub fn order_id(&self) -> Option<&OrderId> {
        match self {
            ReconciliationEvent::SettlementLineMatched(e) => Some(&e.order_id),
            ReconciliationEvent::SettlementLineUnmatched(e) => e.order_id.as_ref(),
            ReconciliationEvent::ReconciliationFlagged(e) => e.order_id.as_ref(),
            ReconciliationEvent::ReconciliationResolved(e) => e.order_id.as_ref(),
            ReconciliationEvent::SubscriptionChargeSettled(_) => None,
        }
    }

    /// One line for the order's timeline.
    pub fn summary(&self) -> String {
        match self {
            ReconciliationEvent::SettlementLineMatched(e) => format!(
                "{} settled {} {} {}: fee {}, paid out {} on {}",
                e.line.provider,
                line_kind_name(e.line.kind),
                e.line.amount_minor,
                e.line.currency.code(),
                e.line.fee_minor,
                e.line.payout_minor,
                e.line.paid_out_on
            ),
            ReconciliationEvent::SettlementLineUnmatched(e) => format!(
                "{} settlement line {} matches no ledger payment",
                e.line.provider, e.line.line_id
            ),
            ReconciliationEvent::ReconciliationFlagged(e) => format!(
                "reconciliation flag {}: expected {}, provider {} ({})",
                e.kind.name(),
                e.expected_minor,
                e.actual_minor,
                e.detail
            ),
            ReconciliationEvent::ReconciliationResolved(e) => format!(
                "reconciliation flag {} resolved: {}",
                e.kind.name(),
                crate::codec::wire_name(&e.resolution)
            ),
            ReconciliationEvent::SubscriptionChargeSettled(e) => format!(
                "{} settled subscription {} {} {} {}: fee {}, paid out {} on {}",
                e.line.provider,
                e.subscription_id,
                line_kind_name(e.line.kind),
                e.line.amount_minor,
                e.line.currency.code(),
                e.line.fee_minor,
                e.line.payout_minor,
                e.line.paid_out_on
            ),
        }
    }
}

fn line_kind_name(kind: SettlementLineKind) -> String {
    crate::codec::wire_name(&kind)
}

impl DomainEvent for ReconciliationEvent {
    fn event_type(&self) -> String {
        match self {
            ReconciliationEvent::SettlementLineMatched(_) => "SettlementLineMatched",
            ReconciliationEvent::SettlementLineUnmatched(_) => "SettlementLineUnmatched",
            ReconciliationEvent::ReconciliationFlagged(_) => "ReconciliationFlagged",
            ReconciliationEvent::ReconciliationResolved(_) => "ReconciliationResolved",
            ReconciliationEvent::SubscriptionChargeSettled(_) => "SubscriptionChargeSettled",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

/// What the ledger concludes about one line: the events an import records.
pub fn judge_line(
    line: &SettlementLine,
    order_id: Option<&OrderId>,
    order: Option<&Order>,
    schedule: &FeeSchedule,
    at: DateTime<Utc>,
) -> Vec<ReconciliationEvent> {
    let flag = |kind, expected_minor, actual_minor, detail: String| {
        ReconciliationEvent::ReconciliationFlagged(ReconciliationFlagged {
            kind,
            provider: line.provider.clone(),
            order_id: order_id.cloned(),
            line_id: Some(line.line_id.clone()),
            currency: line.currency,
            expected_minor,
            actual_minor,
            detail,
            at,
        })
    };
    let placed = order.and_then(|o| o.placed.as_ref().map(|p| (o, p)));
    let matched = placed.filter(|(o, p)| {
        o.payment_key.as_ref().map(|k| k.as_str()) == Some(line.payment_key.as_str())
            && p.provider == line.provider
            && o.captured_minor > 0
    });
    let Some((order, placed)) = matched else {
        return vec![
            ReconciliationEvent::SettlementLineUnmatched(SettlementLineUnmatched {
                line: line.clone(),
                order_id: order_id.cloned(),
                at,
            }),
            flag(
                FlagKind::UnknownPayment,
                0,
                line.amount_minor,
                format!("no captured payment {} in the ledger", line.payment_key),
            ),
        ];
    };
    let order_id = placed.order_id.clone();
    if placed.amount.currency() != line.currency {
        return vec![
            ReconciliationEvent::SettlementLineUnmatched(SettlementLineUnmatched {
                line: line.clone(),
                order_id: Some(order_id),
                at,
            }),
            flag(
                FlagKind::CurrencyMismatch,
                0,
                line.amount_minor,
                format!(
                    "the order is in {}, the line in {}",
                    placed.amount.currency().code(),
                    line.currency.code()
                ),
            ),
        ];
    }
    let mut events = vec![ReconciliationEvent::SettlementLineMatched(
        SettlementLineMatched {
            line: line.clone(),
            order_id,
            payee_id: placed.payee_id.clone(),
            at,
        },
    )];
    match line.kind {
        SettlementLineKind::Payment => {
            if line.amount_minor != order.captured_minor {
                events.push(flag(
                    FlagKind::AmountMismatch,
                    order.captured_minor,
                    line.amount_minor,
                    "the settled amount is not the captured amount".to_string(),
                ));
            }
        }
        SettlementLineKind::Refund => {
            // A refund payledger asked for is known by its amount; one the provider recorded
            // by itself (a Paddle adjustment approved in Paddle, a Stripe dashboard refund) by
            // the provider's refund id, which a line names when the provider itemises refunds
            // by it (Paddle's adjustment id), within what the order recorded refunded.
            let refunded = order.refunds.values().any(|r| {
                r.status == RefundStatus::Completed && r.amount_minor == -line.amount_minor
            }) || (order.refund_transaction_keys.contains(&line.line_id)
                && -line.amount_minor <= order.refunded_minor);
            if !refunded {
                events.push(flag(
                    FlagKind::AmountMismatch,
                    -order.refunded_minor,
                    line.amount_minor,
                    "no completed refund of this amount".to_string(),
                ));
            }
        }
        SettlementLineKind::Dispute => {
            if let Some((kind, expected, actual, detail)) = dispute_difference(line, order) {
                events.push(flag(kind, expected, actual, detail));
            }
        }
        SettlementLineKind::Adjustment => events.push(flag(
            FlagKind::AmountMismatch,
            0,
            line.amount_minor,
            format!(
                "a {} line the ledger did not ask for",
                line_kind_name(line.kind)
            ),
        )),
    }
    events.extend(settlement_checks(line, schedule, &flag));
    events
}

/// The checks every matched line gets, whatever it settles: the fee against the schedule, the
/// payout against amount − fee, the payout date against the settlement delay.
fn settlement_checks(
    line: &SettlementLine,
    schedule: &FeeSchedule,
    flag: &dyn Fn(FlagKind, i64, i64, String) -> ReconciliationEvent,
) -> Vec<ReconciliationEvent> {
    let mut events = Vec::new();
    // A dispute's fee is the provider's dispute fee, not the payment schedule's: it is compared
    // with the order's DisputeLost/DisputeWon (above) once decided.
    let expected_fee = match line.kind {
        SettlementLineKind::Dispute => line.fee_minor,
        _ => schedule.fee_for(line.amount_minor).0,
    };
    if line.fee_minor != expected_fee {
        events.push(flag(
            FlagKind::FeeMismatch,
            expected_fee,
            line.fee_minor,
            "the fee is not the agreed schedule's".to_string(),
        ));
    }
    let expected_payout = line.amount_minor - line.fee_minor;
    if line.payout_minor != expected_payout {
        events.push(flag(
            FlagKind::ShortPayout,
            expected_payout,
            line.payout_minor,
            "the payout is not amount minus fee".to_string(),
        ));
    }
    let due = line.sold_on + chrono::Days::new(u64::from(schedule.settlement_delay_days));
    if line.paid_out_on > due {
        events.push(flag(
            FlagKind::LatePayout,
            0,
            (line.paid_out_on - due).num_days(),
            format!("due on {due}, paid out on {}", line.paid_out_on),
        ));
    }
    events
}

/// What the ledger concludes about a line that names a subscription's payment (Paddle's
/// `subscription_id`; a Toss billing charge's order id `sub-{id}-c{cycle}`): matched when the
/// subscription recorded this payment key (its `ChargeSucceeded`) and, when a provider bills
/// it, the line is that provider's; then judged like an order's line: the
/// amount against what the charge recorded (a refund line against what was taken back), the
/// fee against the schedule, the payout, the payout date.
pub fn judge_subscription_line(
    line: &SettlementLine,
    subscription_id: &SubscriptionId,
    subscription: Option<&Subscription>,
    schedule: &FeeSchedule,
    at: DateTime<Utc>,
) -> Vec<ReconciliationEvent> {
    let flag = |kind, expected_minor, actual_minor, detail: String| {
        ReconciliationEvent::ReconciliationFlagged(ReconciliationFlagged {
            kind,
            provider: line.provider.clone(),
            order_id: None,
            line_id: Some(line.line_id.clone()),
            currency: line.currency,
            expected_minor,
            actual_minor,
            detail,
            at,
        })
    };
    let unmatched = |kind, detail: String| {
        vec![
            ReconciliationEvent::SettlementLineUnmatched(SettlementLineUnmatched {
                line: line.clone(),
                order_id: None,
                at,
            }),
            flag(kind, 0, line.amount_minor, detail),
        ]
    };
    let terms = subscription.and_then(|s| s.terms.as_ref());
    // A provider-billed subscription is matched only to its provider's lines; one payledger
    // bills (a Toss or Stripe billing key) to the charge of that payment key.
    let provider_ok = terms.is_some_and(|t| {
        t.billed_by
            .as_ref()
            .is_none_or(|b| b.provider == line.provider)
    });
    let charge = subscription
        .filter(|_| provider_ok)
        .and_then(|s| s.paid_charges.get(&line.payment_key).copied());
    let (Some(terms), Some((charged, recorded_fee))) = (terms, charge) else {
        return unmatched(
            FlagKind::UnknownPayment,
            format!(
                "no paid charge {} of subscription {subscription_id} in the ledger",
                line.payment_key
            ),
        );
    };
    let taken_back = subscription
        .and_then(|s| s.provider_payments.get(&line.payment_key))
        .map_or(0, |(_, back)| *back);
    if terms.amount.currency() != line.currency {
        return unmatched(
            FlagKind::CurrencyMismatch,
            format!(
                "the subscription is in {}, the line in {}",
                terms.amount.currency().code(),
                line.currency.code()
            ),
        );
    }
    let recorded_fee_minor = match line.kind {
        SettlementLineKind::Payment => recorded_fee,
        _ => 0,
    };
    let mut events = vec![ReconciliationEvent::SubscriptionChargeSettled(
        SubscriptionChargeSettled {
            line: line.clone(),
            subscription_id: subscription_id.clone(),
            recorded_fee_minor,
            at,
        },
    )];
    match line.kind {
        SettlementLineKind::Payment if line.amount_minor != charged => events.push(flag(
            FlagKind::AmountMismatch,
            charged,
            line.amount_minor,
            "the settled amount is not the subscription charge".to_string(),
        )),
        SettlementLineKind::Refund if -line.amount_minor > taken_back => events.push(flag(
            FlagKind::AmountMismatch,
            -taken_back,
            line.amount_minor,
            "more given back than the ledger recorded taken back".to_string(),
        )),
        SettlementLineKind::Dispute | SettlementLineKind::Adjustment => events.push(flag(
            FlagKind::AmountMismatch,
            0,
            line.amount_minor,
            format!(
                "a {} line on a subscription charge",
                line_kind_name(line.kind)
            ),
        )),
        _ => {}
    }
    events.extend(settlement_checks(line, schedule, &flag));
    events
}

/// A dispute line against the order's dispute: a withdrawal (negative) takes the disputed amount
/// and, once the ledger knows the dispute decided, exactly the fee its DisputeLost/DisputeWon
/// recorded; a reinstatement (positive) gives back what a won dispute did not withdraw, with no
/// fee of its own. `None` when the line is what the ledger expects, else the flag's kind,
/// expected and actual amounts and detail.
fn dispute_difference(
    line: &SettlementLine,
    order: &Order,
) -> Option<(FlagKind, i64, i64, String)> {
    use crate::provider_fact::DisputeStatus;
    let Some(dispute) = order.dispute.as_ref() else {
        return Some((
            FlagKind::AmountMismatch,
            0,
            line.amount_minor,
            "a dispute line, but the ledger knows no dispute on this payment".to_string(),
        ));
    };
    let decided = dispute.status != DisputeStatus::Open;
    let (expected_amount, expected_fee) = if line.amount_minor < 0 {
        (-dispute.amount_minor, decided.then_some(dispute.fee_minor))
    } else if dispute.status == DisputeStatus::Won {
        (dispute.amount_minor - dispute.withdrawn_minor, Some(0))
    } else {
        (0, Some(0))
    };
    if line.amount_minor != expected_amount {
        return Some((
            FlagKind::AmountMismatch,
            expected_amount,
            line.amount_minor,
            "the dispute line is not the ledger's dispute amount".to_string(),
        ));
    }
    match expected_fee {
        Some(expected_fee) if expected_fee != line.fee_minor => Some((
            FlagKind::FeeMismatch,
            expected_fee,
            line.fee_minor,
            "the dispute fee is not the one the dispute's decision recorded".to_string(),
        )),
        _ => None,
    }
}

/// Commands on one reconciliation stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReconciliationCommand {
    /// Record a line with what [`judge_line`] concluded about it.
    Import {
        line: SettlementLine,
        judged: Vec<ReconciliationEvent>,
        at: DateTime<Utc>,
    },
    /// Flag a capture never settled (once).
    FlagUnsettled(ReconciliationFlagged),
    Resolve {
        kind: FlagKind,
        resolution: Resolution,
        note: String,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReconciliationError {
    #[error("no open flag of this kind on this reconciliation record")]
    NoOpenFlag,
    #[error("the note must be 1 to {MAX_NOTE_CHARS} characters")]
    InvalidNote,
    #[error("invalid settlement line: {0}")]
    InvalidLine(#[from] InvalidSettlementLine),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlagState {
    pub flagged: Option<ReconciliationFlagged>,
    pub resolved: Option<ReconciliationResolved>,
}

/// One provider line (or one unsettled capture) and its flags.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconciliationRecord {
    pub line: Option<SettlementLine>,
    /// Whether the line was matched to a ledger payment (and posted).
    pub matched: bool,
    pub order_id: Option<OrderId>,
    pub flags: BTreeMap<FlagKind, FlagState>,
}

impl ReconciliationRecord {
    fn decide(
        &self,
        command: ReconciliationCommand,
    ) -> Result<Vec<ReconciliationEvent>, ReconciliationError> {
        match command {
            ReconciliationCommand::Import { line, judged, at } => {
                line.validate()?;
                let matches_now = judged.iter().any(|e| {
                    matches!(
                        e,
                        ReconciliationEvent::SettlementLineMatched(_)
                            | ReconciliationEvent::SubscriptionChargeSettled(_)
                    )
                });
                // A line recorded before the importer read Paddle's `subscription_id` is the
                // same line (it matched nothing then: it may match its subscription now).
                let same = |known: &SettlementLine| {
                    *known == line
                        || (known.subscription_id.is_none()
                            && *known
                                == SettlementLine {
                                    subscription_id: None,
                                    ..line.clone()
                                })
                };
                match &self.line {
                    None => Ok(judged),
                    // Unmatched before, matched now (the payment was recorded since, e.g. as an
                    // outside payment): the line posts now, with the flags not raised before.
                    Some(known) if same(known) && !self.matched && matches_now => Ok(judged
                        .into_iter()
                        .filter(|e| match e {
                            ReconciliationEvent::ReconciliationFlagged(f) => {
                                !self.flags.contains_key(&f.kind)
                            }
                            _ => true,
                        })
                        .collect()),
                    Some(known) if same(known) => Ok(vec![]),
                    // Flagged once; a third version changes nothing more.
                    Some(_) if self.flags.contains_key(&FlagKind::LineChanged) => Ok(vec![]),
                    Some(known) => Ok(vec![ReconciliationEvent::ReconciliationFlagged(
                        ReconciliationFlagged {
                            kind: FlagKind::LineChanged,
                            provider: line.provider.clone(),
                            order_id: self.order_id.clone(),
                            line_id: Some(line.line_id.clone()),
                            currency: line.currency,
                            expected_minor: known.payout_minor,
                            actual_minor: line.payout_minor,
                            detail: "the provider reported this line again, different".to_string(),
                            at,
                        },
                    )]),
                }
            }
            ReconciliationCommand::FlagUnsettled(flag) => {
                if self.flags.contains_key(&flag.kind) {
                    return Ok(vec![]);
                }
                Ok(vec![ReconciliationEvent::ReconciliationFlagged(flag)])
            }
            ReconciliationCommand::Resolve {
                kind,
                resolution,
                note,
                at,
            } => {
                if note.trim().is_empty() || note.chars().count() > MAX_NOTE_CHARS {
                    return Err(ReconciliationError::InvalidNote);
                }
                match self.flags.get(&kind) {
                    Some(FlagState {
                        flagged: Some(flag),
                        resolved: None,
                    }) => Ok(vec![ReconciliationEvent::ReconciliationResolved(
                        ReconciliationResolved {
                            kind,
                            resolution,
                            note,
                            order_id: self.order_id.clone(),
                            written_off_minor: match resolution {
                                Resolution::WriteOff => write_off_of(flag),
                                _ => 0,
                            },
                            currency: flag.currency,
                            at,
                        },
                    )]),
                    _ => Err(ReconciliationError::NoOpenFlag),
                }
            }
        }
    }
}

impl Aggregate for ReconciliationRecord {
    const TYPE: &'static str = "reconciliation";
    type Command = ReconciliationCommand;
    type Event = ReconciliationEvent;
    type Error = ReconciliationError;
    type Services = ();

    async fn handle(
        &mut self,
        command: ReconciliationCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), ReconciliationError> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: ReconciliationEvent) {
        match event {
            ReconciliationEvent::SettlementLineMatched(e) => {
                self.order_id = Some(e.order_id);
                self.line = Some(e.line);
                self.matched = true;
            }
            ReconciliationEvent::SettlementLineUnmatched(e) => {
                self.order_id = e.order_id;
                self.line = Some(e.line);
            }
            ReconciliationEvent::SubscriptionChargeSettled(e) => {
                self.line = Some(e.line);
                self.matched = true;
            }
            ReconciliationEvent::ReconciliationFlagged(e) => {
                if self.order_id.is_none() {
                    self.order_id = e.order_id.clone();
                }
                let kind = e.kind;
                self.flags.entry(kind).or_default().flagged = Some(e);
            }
            ReconciliationEvent::ReconciliationResolved(e) => {
                let kind = e.kind;
                self.flags.entry(kind).or_default().resolved = Some(e);
            }
        }
    }
}
