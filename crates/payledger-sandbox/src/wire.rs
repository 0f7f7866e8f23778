//! The JSON shapes of the Toss Payments API the sandbox speaks (camelCase, integer amounts), and
//! of its own `/sandbox/*` endpoints.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `POST /v1/payments/confirm`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ConfirmBody {
    pub payment_key: String,
    pub order_id: String,
    pub amount: i64,
}

/// `POST /v1/payments/{paymentKey}/cancel`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CancelBody {
    pub cancel_reason: String,
    #[serde(default)]
    pub cancel_amount: Option<i64>,
}

/// `POST /v1/billing/authorizations/issue`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BillingIssueBody {
    pub auth_key: String,
    pub customer_key: String,
}

/// `POST /v1/billing/{billingKey}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ChargeBody {
    pub customer_key: String,
    pub amount: i64,
    pub order_id: String,
    pub order_name: String,
}

/// `POST /sandbox/outage`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OutageBody {
    pub duration_ms: u64,
}

/// The Toss Payment object, the fields the sandbox fills.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PaymentWire {
    pub m_id: String,
    pub version: String,
    pub last_transaction_key: String,
    pub payment_key: String,
    pub order_id: String,
    pub order_name: String,
    pub status: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub method: String,
    pub currency: String,
    pub total_amount: i64,
    pub balance_amount: i64,
    pub requested_at: String,
    pub approved_at: Option<String>,
    pub card: Option<CardWire>,
    pub cancels: Option<Vec<CancelWire>>,
    pub failure: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CardWire {
    pub issuer_code: String,
    pub acquirer_code: String,
    /// Masked: the sandbox never has a card number in clear.
    pub number: String,
    pub card_type: String,
    pub owner_type: String,
    pub installment_plan_months: u32,
    pub amount: i64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CancelWire {
    pub transaction_key: String,
    pub cancel_amount: i64,
    pub cancel_reason: String,
    pub canceled_at: String,
    pub tax_free_amount: i64,
    pub refundable_amount: i64,
}

/// The Toss Billing object returned when a billing key is issued.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BillingKeyWire {
    pub m_id: String,
    pub customer_key: String,
    pub authenticated_at: String,
    pub method: String,
    pub billing_key: String,
    pub card_company: String,
    pub card_number: String,
    pub card: CardWire,
}

/// `GET /sandbox/stats`: what tests check to prove that nothing was charged twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxStats {
    /// Successful charges (confirms and billing charges) over the sandbox's life since reset.
    pub total_charges: u64,
    /// Successful charges per order id. Replays of a stored answer are not charges.
    pub charges_by_order_id: BTreeMap<String, u64>,
    /// Confirm and billing-charge requests that reached the payment logic per order id,
    /// whatever their outcome; idempotent replays and requests refused during an outage are not
    /// counted.
    pub attempts_by_order_id: BTreeMap<String, u64>,
    /// Sum of cancelled amounts per payment key, in minor units.
    pub canceled_amount_by_payment_key: BTreeMap<String, i64>,
    pub total_canceled_amount: i64,
    /// Payments held.
    pub payments: u64,
    /// Billing keys held.
    pub billing_keys: u64,
}
