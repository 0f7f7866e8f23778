//! A provider's signed webhook, re-checked: what the connector's API says now about the object
//! the event named. The relay acts only on this, never on the body it was sent.

use crate::{GatewayError, ProviderPayment};
use payledger_domain::provider_fact::DisputeFact;

/// What a connector found when it re-fetched the object a verified webhook named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookFact {
    /// The provider's event type (`payment_intent.succeeded`), for the record.
    pub event_type: String,
    pub meaning: WebhookMeaning,
}

/// Which ledger object a webhook concerns, as the provider's API reports it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookMeaning {
    /// The payment may have settled (succeeded, failed, canceled): the payment as it stands.
    Payment(Box<ProviderPayment>),
    /// The payment's refunds changed: the payment with every refund that moved money
    /// ([`ProviderPayment::cancels`]).
    Refunds(Box<ProviderPayment>),
    /// A dispute opened, changed or closed.
    Dispute(DisputeFact),
    /// The provider does not know the object the event named (deleted, or never its).
    UnknownAtProvider { object_id: String },
    /// Nothing in the ledger depends on this event; it is kept on record only.
    NoLedgerEffect { reason: String },
}

/// Why a webhook could not be re-checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookFactError {
    /// The body is not an event of this provider: retrying cannot help.
    #[error("the event cannot be read: {0}")]
    Malformed(String),
    /// This connector does not interpret signed webhooks (Toss's payment webhooks are unsigned
    /// and go through lookups instead).
    #[error("this connector does not interpret signed webhooks")]
    Unsupported,
    /// The provider could not be asked: retried later.
    #[error(transparent)]
    Gateway(#[from] GatewayError),
}
