//! A provider's payment as a ledger fact, and the one comparison of such a fact with what the
//! ledger expects.
//!
//! Each connector turns its own payment object (Toss `Payment`, Stripe `PaymentIntent`) into a
//! [`PaymentFact`] with a provider-neutral [`PaymentFactStatus`]; that mapping is the only place
//! a provider's status words are interpreted. Everything that learns about a payment from a
//! provider — a confirm's answer, the reconciler's lookup, a subscription charge's lookup, a
//! re-fetched webhook — then judges the fact here, against what the ledger expects (order id,
//! payment key, amount, currency, status). Only an exact match supports a capture; any
//! difference is reported as such, so callers record a discrepancy instead of smoothing it over.

use crate::money::{Currency, Money};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What a payment is at the provider, in payledger's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentFactStatus {
    /// Not decided yet: created, in progress, waiting for a deposit or for the customer
    /// (3-D Secure). Nothing to record but "still unknown".
    Pending,
    /// Charged, nothing returned.
    Captured,
    /// Charged, then part of it returned at the provider.
    PartiallyRefunded,
    /// Charged, then all of it returned at the provider (Toss `CANCELED`).
    Refunded,
    /// Never charged: aborted, expired, failed, or voided before capture.
    NotCompleted,
}

impl PaymentFactStatus {
    /// Whether the provider took money for this payment at some point.
    pub fn was_charged(self) -> bool {
        matches!(
            self,
            PaymentFactStatus::Captured
                | PaymentFactStatus::PartiallyRefunded
                | PaymentFactStatus::Refunded
        )
    }
}

/// One payment as a provider reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentFact {
    /// The connector that reported it (`toss`, `stripe`).
    pub provider: String,
    pub order_id: String,
    pub payment_key: String,
    pub status: PaymentFactStatus,
    /// The provider's own word for the status (`DONE`, `CANCELED`, `succeeded`), for the record.
    pub provider_status: String,
    /// What the provider charged (or was asked to charge), in minor units.
    pub amount_minor: i64,
    /// What the provider has returned of it.
    pub refunded_minor: i64,
    pub currency: Currency,
    pub approved_at: Option<DateTime<Utc>>,
    pub method: Option<String>,
    /// The key the client handed payledger for this payment, when the provider's own payment id
    /// differs from it (Stripe: the PaymentMethod id payledger confirmed with, which the
    /// connector keeps in the PaymentIntent's metadata). `None` for providers whose payment id
    /// is the client's key (Toss).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<String>,
}

impl PaymentFact {
    /// Whether this fact is about the payment the ledger knows by `key`: the provider's payment
    /// id, or the client's key the provider recorded for it.
    pub fn has_key(&self, key: &str) -> bool {
        self.payment_key == key || self.client_key.as_deref() == Some(key)
    }
}

/// What the ledger expects a provider's payment to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpectedPayment<'a> {
    pub order_id: &'a str,
    /// `None` when the provider assigns the key (a billing-key charge).
    pub payment_key: Option<&'a str>,
    pub amount: Money,
}

/// One way a provider's fact differs from the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Difference {
    OrderId,
    PaymentKey,
    Amount,
    Currency,
    /// The provider's status is not the one the ledger can record (cancelled or refunded
    /// there, charged there but not here, not charged there but captured here).
    Status,
    /// The provider returned more than the ledger has refunded.
    Refunded,
}

impl Difference {
    pub fn name(self) -> &'static str {
        match self {
            Difference::OrderId => "orderId",
            Difference::PaymentKey => "paymentKey",
            Difference::Amount => "amount",
            Difference::Currency => "currency",
            Difference::Status => "status",
            Difference::Refunded => "refunded",
        }
    }
}

/// What a fact means for a confirmation (or a charge) the ledger is waiting on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Exactly the expected payment, charged and untouched: the ledger may record the capture.
    Captured,
    /// The provider never charged it.
    NotCompleted,
    /// The provider has not decided yet.
    Pending,
    /// Not what the ledger expects: record the differences, never a capture.
    Differs(Vec<Difference>),
}

/// Judges a fact about a payment the ledger is waiting on. The only way to [`Verdict::Captured`]
/// is a charged, unrefunded payment of exactly the expected order, key, amount and currency.
pub fn judge(expected: &ExpectedPayment<'_>, fact: &PaymentFact) -> Verdict {
    let mut differences = Vec::new();
    if fact.order_id != expected.order_id {
        differences.push(Difference::OrderId);
    }
    if expected.payment_key.is_some_and(|key| !fact.has_key(key)) {
        differences.push(Difference::PaymentKey);
    }
    if !differences.is_empty() {
        // A fact about another payment says nothing about this one, whatever its status.
        return Verdict::Differs(differences);
    }
    match fact.status {
        PaymentFactStatus::Pending => return Verdict::Pending,
        PaymentFactStatus::NotCompleted => return Verdict::NotCompleted,
        PaymentFactStatus::Captured
        | PaymentFactStatus::PartiallyRefunded
        | PaymentFactStatus::Refunded => {}
    }
    if fact.amount_minor != expected.amount.amount_minor() {
        differences.push(Difference::Amount);
    }
    if fact.currency != expected.amount.currency() {
        differences.push(Difference::Currency);
    }
    if fact.status != PaymentFactStatus::Captured || fact.refunded_minor != 0 {
        differences.push(Difference::Status);
    }
    if differences.is_empty() {
        Verdict::Captured
    } else {
        Verdict::Differs(differences)
    }
}

/// What the ledger has recorded for a settled order, to compare a later fact with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerPayment<'a> {
    /// The key of the recorded capture, or of the attempt that failed.
    pub payment_key: Option<&'a str>,
    pub captured_minor: i64,
    /// Refunded plus refunds in flight.
    pub refunded_minor: i64,
    pub currency: Currency,
}

/// Where a fact about an order the ledger is not waiting on (a webhook after the fact) differs
/// from what the ledger recorded. Empty: the ledger and the provider agree.
pub fn differences_from_ledger(ledger: &LedgerPayment<'_>, fact: &PaymentFact) -> Vec<Difference> {
    let mut differences = Vec::new();
    let ledger_paid = ledger.captured_minor > 0;
    let charged = fact.status.was_charged();
    if charged != ledger_paid {
        differences.push(Difference::Status);
    }
    if ledger_paid {
        if !ledger.payment_key.is_some_and(|key| fact.has_key(key)) {
            differences.push(Difference::PaymentKey);
        }
        if charged && fact.amount_minor != ledger.captured_minor {
            differences.push(Difference::Amount);
        }
        if fact.currency != ledger.currency {
            differences.push(Difference::Currency);
        }
    }
    if charged && fact.refunded_minor > ledger.refunded_minor {
        differences.push(Difference::Refunded);
    }
    differences
}

/// Where a dispute (a chargeback the cardholder opened with their bank) stands at the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DisputeStatus {
    /// Waiting for evidence or under review (Stripe `needs_response`, `under_review`, and the
    /// `warning_*` inquiries): refunds are refused and the payee's settlement is held.
    Open,
    /// Decided for the merchant: the disputed amount came back (the fee may stay taken).
    Won,
    /// Decided for the cardholder: the provider keeps what it withdrew.
    Lost,
}

/// A dispute as a provider reports it, re-fetched from its API (never read from a webhook body).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DisputeFact {
    /// The connector that reported it (`stripe`).
    pub provider: String,
    /// The provider's dispute id (`dp_…`).
    pub dispute_id: String,
    /// The provider's payment the dispute is about (Stripe: the PaymentIntent id).
    pub payment_key: String,
    pub status: DisputeStatus,
    /// The amount the cardholder disputes.
    pub amount_minor: i64,
    pub currency: Currency,
    /// What the provider has taken from the merchant's balance for it, net of anything given
    /// back (a won dispute: 0).
    pub withdrawn_minor: i64,
    /// The provider's dispute fee.
    pub fee_minor: i64,
    /// The provider's reason code (`fraudulent`, `product_not_received`, …).
    pub reason: Option<String>,
}

/// Where a dispute fact differs from the order's capture: it must name the captured payment, in
/// the order's currency, for no more than what is left of it. Empty: the ledger may record it.
pub fn dispute_differences(ledger: &LedgerPayment<'_>, fact: &DisputeFact) -> Vec<Difference> {
    let mut differences = Vec::new();
    if ledger.captured_minor <= 0 {
        differences.push(Difference::Status);
    }
    if ledger.payment_key != Some(fact.payment_key.as_str()) {
        differences.push(Difference::PaymentKey);
    }
    if fact.currency != ledger.currency {
        differences.push(Difference::Currency);
    }
    let at_stake = ledger.captured_minor - ledger.refunded_minor;
    if fact.amount_minor <= 0
        || fact.amount_minor > at_stake
        || !(0..=fact.amount_minor).contains(&fact.withdrawn_minor)
        || fact.fee_minor < 0
    {
        differences.push(Difference::Amount);
    }
    differences
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fact(status: PaymentFactStatus, amount_minor: i64) -> PaymentFact {
        PaymentFact {
            provider: "toss".into(),
            order_id: "order-1".into(),
            payment_key: "pk_1".into(),
            status,
            provider_status: "DONE".into(),
            amount_minor,
            refunded_minor: 0,
            currency: Currency::KRW,
            approved_at: None,
            method: None,
            client_key: None,
        }
    }

    fn expected() -> ExpectedPayment<'static> {
        ExpectedPayment {
            order_id: "order-1",
            payment_key: Some("pk_1"),
            amount: Money::new(30_000, Currency::KRW).unwrap(),
        }
    }

    #[test]
    fn a_provider_id_matches_when_the_provider_recorded_the_clients_key() {
        // Stripe: the ledger knows the PaymentMethod id the client sent; Stripe's payment id is
        // the PaymentIntent, which carries that key in its metadata.
        let stripe = PaymentFact {
            payment_key: "pi_1".into(),
            client_key: Some("pk_1".into()),
            ..fact(PaymentFactStatus::Captured, 30_000)
        };
        assert_eq!(judge(&expected(), &stripe), Verdict::Captured);
        let unrelated = PaymentFact {
            client_key: Some("pk_other".into()),
            ..stripe
        };
        assert_eq!(
            judge(&expected(), &unrelated),
            Verdict::Differs(vec![Difference::PaymentKey])
        );
    }

    #[test]
    fn only_the_exact_payment_supports_a_capture() {
        assert_eq!(
            judge(&expected(), &fact(PaymentFactStatus::Captured, 30_000)),
            Verdict::Captured
        );
        assert_eq!(
            judge(&expected(), &fact(PaymentFactStatus::Captured, 1_000)),
            Verdict::Differs(vec![Difference::Amount])
        );
        let cancelled = PaymentFact {
            refunded_minor: 30_000,
            ..fact(PaymentFactStatus::Refunded, 30_000)
        };
        assert_eq!(
            judge(&expected(), &cancelled),
            Verdict::Differs(vec![Difference::Status])
        );
        let other_key = PaymentFact {
            payment_key: "pk_2".into(),
            ..fact(PaymentFactStatus::NotCompleted, 30_000)
        };
        assert_eq!(
            judge(&expected(), &other_key),
            Verdict::Differs(vec![Difference::PaymentKey])
        );
    }
}
