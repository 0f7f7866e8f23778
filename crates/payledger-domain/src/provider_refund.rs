//! A refund request as a provider that approves refunds later reports it (Paddle's refund
//! adjustment, from its API or its notification), and how it is judged against the refund the
//! ledger awaits. Only a request that fits in every fact may complete or fail the refund; any
//! difference is recorded as a `RefundDiscrepancyRecorded` on the order, naming each differing
//! fact with the ledger's and the provider's value, and money state does not change.

use crate::money::Currency;
use crate::provider_failure::ProviderFailure;
use serde::{Deserialize, Serialize};

/// Longest provider value kept in a difference (characters): ids and status words are short;
/// a longer one is cut, so an event stays small whatever a provider answers.
pub const MAX_DIFFERENCE_VALUE_CHARS: usize = 100;

/// What a provider decided about a refund it was asked to approve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderRefundDecision {
    /// Not decided yet (`pending_approval`): nothing to record when it fits.
    Pending,
    Approved,
    Rejected {
        failure: ProviderFailure,
    },
    /// A status the ledger cannot read as a decision on this refund (Paddle `reversed`).
    Unrecognised,
}

/// The provider's refund request, as its API (or its re-checked notification) reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderRefundFact {
    /// The provider's id of the request (Paddle `adj_…`).
    pub provider_refund_id: String,
    /// The payment it refunds (Paddle's transaction `txn_…`).
    pub payment_key: String,
    /// Whether it is a refund at all (Paddle's `action` `refund`, not a credit or chargeback).
    pub is_refund: bool,
    /// Its action word verbatim, for the record (`refund`, `credit`).
    pub action: String,
    pub amount_minor: i64,
    pub currency: Currency,
    /// Its status word verbatim (`pending_approval`, `approved`, `rejected`).
    pub provider_status: String,
    pub decision: ProviderRefundDecision,
}

/// A fact of a provider's refund request the ledger checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RefundFact {
    ProviderRefundId,
    PaymentKey,
    Action,
    Amount,
    Currency,
    Status,
}

impl RefundFact {
    pub fn name(self) -> &'static str {
        match self {
            RefundFact::ProviderRefundId => "providerRefundId",
            RefundFact::PaymentKey => "paymentKey",
            RefundFact::Action => "action",
            RefundFact::Amount => "amount",
            RefundFact::Currency => "currency",
            RefundFact::Status => "status",
        }
    }
}

/// One fact that differs: what the ledger expects and what the provider reported (ids, amounts
/// in minor units, currency codes, status words: nothing secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundDifference {
    pub fact: RefundFact,
    pub expected: String,
    pub provider: String,
}

/// The refund the ledger awaits a decision on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwaitedRefund<'a> {
    pub provider_refund_id: &'a str,
    /// The order's payment (`None`: the order holds none, which no request can fit).
    pub payment_key: Option<&'a str>,
    pub amount_minor: i64,
    pub currency: Currency,
}

fn cut(value: &str) -> String {
    value.chars().take(MAX_DIFFERENCE_VALUE_CHARS).collect()
}

/// Every fact in which `fact` differs from the awaited refund, in [`RefundFact`] order; empty
/// when it fits. A pending request is judged too: a wrong one is seen before Paddle decides it.
pub fn refund_differences(
    awaited: &AwaitedRefund<'_>,
    fact: &ProviderRefundFact,
) -> Vec<RefundDifference> {
    let mut differences = Vec::new();
    let mut differs = |fact: RefundFact, expected: String, provider: String| {
        differences.push(RefundDifference {
            fact,
            expected: cut(&expected),
            provider: cut(&provider),
        })
    };
    if fact.provider_refund_id != awaited.provider_refund_id {
        differs(
            RefundFact::ProviderRefundId,
            awaited.provider_refund_id.to_owned(),
            fact.provider_refund_id.clone(),
        );
    }
    if awaited.payment_key != Some(fact.payment_key.as_str()) {
        differs(
            RefundFact::PaymentKey,
            awaited.payment_key.unwrap_or("").to_owned(),
            fact.payment_key.clone(),
        );
    }
    if !fact.is_refund {
        differs(RefundFact::Action, "refund".to_owned(), fact.action.clone());
    }
    if fact.amount_minor != awaited.amount_minor {
        differs(
            RefundFact::Amount,
            awaited.amount_minor.to_string(),
            fact.amount_minor.to_string(),
        );
    }
    if fact.currency != awaited.currency {
        differs(
            RefundFact::Currency,
            awaited.currency.code().to_owned(),
            fact.currency.code().to_owned(),
        );
    }
    if fact.decision == ProviderRefundDecision::Unrecognised {
        differs(
            RefundFact::Status,
            "pending_approval, approved or rejected".to_owned(),
            fact.provider_status.clone(),
        );
    }
    differences
}
