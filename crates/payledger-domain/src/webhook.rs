//! What payledger records about one inbound webhook delivery, in stream
//! `webhook-{provider}-{event_id}`: received, verified, applied (with what it changed), failed
//! attempts, dead-lettered, replayed.
//!
//! Every event carries the order it concerns when payledger *knows* it (a signed body, or the
//! provider's own API answering a re-fetch), never an id taken from an unsigned body, so an
//! unsigned delivery cannot write into an arbitrary order's timeline. The orders read model
//! shows these events in that order's timeline next to payledger's own.
//!
//! No event holds the raw body, a header value or a secret: only ids, a hash and what was done.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub const STREAM_PREFIX: &str = crate::streams::StreamKind::Webhook.prefix();

/// Longest event id kept as is in a stream id; longer ones are replaced by their hash upstream.
pub const MAX_EVENT_ID_CHARS: usize = 128;

pub fn stream_id(provider: &str, event_id: &str) -> String {
    format!("{STREAM_PREFIX}{provider}-{event_id}")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WebhookDeliveryEvent {
    WebhookReceived(WebhookReceived),
    WebhookVerified(WebhookVerified),
    /// The provider says something payledger's ledger does not (canceled there, paid here).
    /// Nothing is changed automatically: support reviews it.
    ProviderStateDiffers(ProviderStateDiffers),
    WebhookApplied(WebhookApplied),
    WebhookAttemptFailed(WebhookAttemptFailed),
    WebhookDeadLettered(WebhookDeadLettered),
    WebhookReplayRequested(WebhookReplayRequested),
}

impl WebhookDeliveryEvent {
    /// The order this event is about, when known.
    pub fn order_id(&self) -> Option<&str> {
        match self {
            WebhookDeliveryEvent::WebhookReceived(e) => e.order_id.as_deref(),
            WebhookDeliveryEvent::WebhookVerified(e) => e.order_id.as_deref(),
            WebhookDeliveryEvent::ProviderStateDiffers(e) => Some(e.order_id.as_str()),
            WebhookDeliveryEvent::WebhookApplied(e) => e.order_id.as_deref(),
            WebhookDeliveryEvent::WebhookAttemptFailed(e) => e.order_id.as_deref(),
            WebhookDeliveryEvent::WebhookDeadLettered(e) => e.order_id.as_deref(),
            WebhookDeliveryEvent::WebhookReplayRequested(e) => e.order_id.as_deref(),
        }
    }

    /// One line a support person can read.
    pub fn summary(&self) -> String {
        match self {
            WebhookDeliveryEvent::WebhookReceived(e) => format!(
                "{} webhook received: {} (event {}, {} bytes)",
                e.provider,
                e.event_type.as_deref().unwrap_or("unknown type"),
                e.event_id,
                e.body_bytes
            ),
            WebhookDeliveryEvent::WebhookVerified(e) => match e.method {
                VerificationMethod::Signature => format!(
                    "{} webhook verified: {} signature (secret #{})",
                    e.provider,
                    e.scheme,
                    e.secret_index.map_or(0, |i| i + 1)
                ),
                VerificationMethod::ProviderLookup => format!(
                    "{} webhook is unsigned: the payment was re-fetched from the provider, which reports {}",
                    e.provider,
                    e.provider_status.as_deref().unwrap_or("no status")
                ),
            },
            WebhookDeliveryEvent::ProviderStateDiffers(e) => format!(
                "ATTENTION: {} reports the payment {} (canceled {} {}) while payledger has it {} (refunded {} {}); nothing was changed, support must review",
                e.provider,
                e.provider_status,
                e.provider_canceled_minor,
                e.currency,
                e.payledger_status,
                e.payledger_refunded_minor,
                e.currency
            ),
            WebhookDeliveryEvent::WebhookApplied(e) => {
                format!("{} webhook applied ({:?}): {}", e.provider, e.outcome, e.detail)
            }
            WebhookDeliveryEvent::WebhookAttemptFailed(e) => format!(
                "{} webhook processing attempt {} failed: {}{}",
                e.provider,
                e.attempt,
                e.error,
                e.next_attempt_at
                    .map(|at| format!("; next attempt at {}", at.format("%Y-%m-%d %H:%M:%SZ")))
                    .unwrap_or_default()
            ),
            WebhookDeliveryEvent::WebhookDeadLettered(e) => format!(
                "{} webhook dead-lettered after {} attempts: {}",
                e.provider, e.attempts, e.last_error
            ),
            WebhookDeliveryEvent::WebhookReplayRequested(e) => format!(
                "{} webhook replay requested by {}",
                e.provider, e.requested_by
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookReceived {
    pub provider: String,
    /// The provider's event id (de-duplication key), or `sha256-…` of the body when it has none.
    pub event_id: String,
    pub event_type: Option<String>,
    /// Delivery/transmission id header, when the sender sends one.
    pub delivery_id: Option<String>,
    /// Row of the raw delivery in `webhook_inbox`.
    pub inbox_id: i64,
    /// Hex SHA-256 of the raw body as received.
    pub body_sha256: String,
    pub body_bytes: i64,
    pub received_at: DateTime<Utc>,
    pub order_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerificationMethod {
    /// The signature matched a configured secret within the timestamp tolerance.
    Signature,
    /// Unsigned (Toss payment status): the facts come from the provider's API, not the body.
    ProviderLookup,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookVerified {
    pub provider: String,
    pub event_id: String,
    pub method: VerificationMethod,
    /// `stripe`, `paddle`, `standard_webhooks`, `toss_signed`, `toss_unsigned`.
    pub scheme: String,
    /// 0 = the current secret, 1 = the previous one (a rotation is still in progress).
    pub secret_index: Option<u8>,
    /// What the provider's API said (unsigned deliveries): `DONE`, `CANCELED`, …
    pub provider_status: Option<String>,
    pub order_id: Option<String>,
    pub at: DateTime<Utc>,
}

/// What applying a delivery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookOutcome {
    /// An order waiting for its outcome was settled from the provider's answer.
    Settled,
    /// payledger already agreed with the provider: nothing to do.
    AlreadyConsistent,
    /// The provider disagrees with payledger; recorded for support, nothing changed.
    ProviderDiffers,
    /// The provider's payment belongs to an order payledger does not know.
    OrderUnknown,
    /// The provider has no such payment.
    PaymentUnknownAtProvider,
    /// payledger has no action for this event type; the delivery is kept on record.
    Recorded,
    /// The provider's event changes nothing the ledger keeps (its connector says why); the
    /// delivery is kept on record.
    NoLedgerEffect,
    /// The provider's fact was recorded on the order (a refund made at the provider, a
    /// dispute opened or decided).
    ProviderFactRecorded,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookApplied {
    pub provider: String,
    pub event_id: String,
    pub outcome: WebhookOutcome,
    pub detail: String,
    pub order_id: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderStateDiffers {
    pub provider: String,
    pub event_id: String,
    pub order_id: String,
    pub payment_key: String,
    pub provider_status: String,
    pub payledger_status: String,
    /// What the provider reports as canceled (total minus balance).
    pub provider_canceled_minor: i64,
    /// What payledger has refunded or is refunding.
    pub payledger_refunded_minor: i64,
    pub currency: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookAttemptFailed {
    pub provider: String,
    pub event_id: String,
    pub attempt: u32,
    /// payledger's own description (never text from the request).
    pub error: String,
    /// `None` when this was the last attempt.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub order_id: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookDeadLettered {
    pub provider: String,
    pub event_id: String,
    pub attempts: u32,
    pub last_error: String,
    pub order_id: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookReplayRequested {
    pub provider: String,
    pub event_id: String,
    /// `admin:NAME`, `cli:USER`, …
    pub requested_by: String,
    pub order_id: Option<String>,
    pub at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    #[test]
    fn webhook_events_store_under_their_variant_name_and_know_their_order() {
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let event = WebhookDeliveryEvent::WebhookDeadLettered(WebhookDeadLettered {
            provider: "toss".into(),
            event_id: "tx_1".into(),
            attempts: 8,
            last_error: "the provider could not be reached".into(),
            order_id: Some("order-1".into()),
            at,
        });
        let (event_type, payload) = codec::encode(&event).unwrap();
        assert_eq!(event_type, "WebhookDeadLettered");
        assert_eq!(payload["orderId"], "order-1");
        let back: WebhookDeliveryEvent = codec::decode(&event_type, &payload).unwrap();
        assert_eq!(back.order_id(), Some("order-1"));
        assert!(back.summary().contains("dead-lettered after 8 attempts"));
    }
}
