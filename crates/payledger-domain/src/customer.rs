//! The customer: billing keys and the subscriptions started for them. Stream `customer-{id}`.
//!
//! A billing key lets payledger charge a card without the customer present, so it is a secret:
//! this aggregate only ever holds it encrypted ([`EncryptedSecret`]), together with the card facts
//! PCI DSS SAQ A allows (issuer, last four digits, type, expiry). There is no field a card number
//! could be put in, and text that looks like one is refused.

use crate::billing::{contains_card_number_like, BillingKeyId, SubscriptionId};
use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Billing keys one customer may ever register; a bound so the stream's state stays small.
pub const MAX_BILLING_KEYS_PER_CUSTOMER: usize = 50;
/// Subscriptions one customer may ever start.
pub const MAX_SUBSCRIPTIONS_PER_CUSTOMER: usize = 50;
/// The longest ciphertext accepted, in base64 characters (billing keys are short tokens).
pub const MAX_CIPHERTEXT_B64_LEN: usize = 4_096;

pub fn stream_id(customer_id: &crate::ids::CustomerId) -> String {
    crate::streams::StreamKind::Customer.name(customer_id)
}

/// A secret encrypted with an authenticated cipher (the application uses AES-256-GCM). The
/// domain never sees the clear text and cannot decrypt: it only carries the three parts.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EncryptedSecret {
    /// Which key encrypted it, so keys can be rotated (old secrets name their old key).
    pub key_id: String,
    pub nonce_b64: String,
    pub ciphertext_b64: String,
}

impl fmt::Debug for EncryptedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptedSecret")
            .field("key_id", &self.key_id)
            .field("ciphertext_b64_len", &self.ciphertext_b64.len())
            .finish_non_exhaustive()
    }
}

impl EncryptedSecret {
    fn is_well_formed(&self) -> bool {
        let base64 = |s: &str| {
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='))
        };
        let key_id_ok = !self.key_id.is_empty()
            && self.key_id.len() <= 64
            && self
                .key_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        key_id_ok
            && !self.nonce_b64.is_empty()
            && self.nonce_b64.len() <= 64
            && base64(&self.nonce_b64)
            && !self.ciphertext_b64.is_empty()
            && self.ciphertext_b64.len() <= MAX_CIPHERTEXT_B64_LEN
            && base64(&self.ciphertext_b64)
    }
}

/// The card facts payledger keeps: never the number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CardSummary {
    pub issuer_code: String,
    /// Four characters, digits or `*` (Toss masks some digits of some cards).
    pub last4: String,
    pub card_type: String,
    /// `YYYY-MM`, when the provider tells it.
    pub expiry: Option<String>,
}

impl CardSummary {
    fn is_valid(&self) -> bool {
        let short_text = |s: &str, max: usize| {
            s.chars().count() <= max
                && !s.chars().any(char::is_control)
                && !contains_card_number_like(s)
        };
        let last4_ok = self.last4.chars().count() <= 4
            && self.last4.chars().all(|c| c.is_ascii_digit() || c == '*');
        let expiry_ok = self.expiry.as_deref().is_none_or(|e| {
            e.len() == 7
                && e.as_bytes()[4] == b'-'
                && e.chars()
                    .enumerate()
                    .all(|(i, c)| i == 4 || c.is_ascii_digit())
        });
        short_text(&self.issuer_code, 16)
            && short_text(&self.card_type, 16)
            && last4_ok
            && expiry_ok
    }
}

// ---------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
pub enum CustomerCommand {
    RegisterBillingKey(BillingKeyRegistered),
    RevokeBillingKey {
        billing_key_id: BillingKeyId,
        reason: String,
        at: DateTime<Utc>,
    },
    /// The provider refused a charge because the key is expired, unknown or revoked there.
    MarkBillingKeyExpired {
        billing_key_id: BillingKeyId,
        provider_code: String,
        at: DateTime<Utc>,
    },
    LinkSubscription {
        subscription_id: SubscriptionId,
        at: DateTime<Utc>,
    },
}

// ---------------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CustomerEvent {
    BillingKeyRegistered(BillingKeyRegistered),
    BillingKeyRevoked(BillingKeyRevoked),
    BillingKeyExpired(BillingKeyExpired),
    SubscriptionLinked(SubscriptionLinked),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BillingKeyRegistered {
    pub billing_key_id: BillingKeyId,
    /// The provider that issued it (`toss`, `sandbox`).
    pub provider: String,
    /// The customer key the provider issued it for; charges must send the same.
    pub customer_key: String,
    pub card: CardSummary,
    /// The provider's billing key, encrypted. Never in clear, anywhere.
    pub secret: EncryptedSecret,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BillingKeyRevoked {
    pub billing_key_id: BillingKeyId,
    pub reason: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BillingKeyExpired {
    pub billing_key_id: BillingKeyId,
    pub provider_code: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionLinked {
    pub subscription_id: SubscriptionId,
    pub at: DateTime<Utc>,
}

impl DomainEvent for CustomerEvent {
    fn event_type(&self) -> String {
        match self {
            CustomerEvent::BillingKeyRegistered(_) => "BillingKeyRegistered",
            CustomerEvent::BillingKeyRevoked(_) => "BillingKeyRevoked",
            CustomerEvent::BillingKeyExpired(_) => "BillingKeyExpired",
            CustomerEvent::SubscriptionLinked(_) => "SubscriptionLinked",
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
pub enum CustomerError {
    #[error("a billing key with this id is already registered")]
    BillingKeyIdTaken,
    #[error(
        "the customer has reached the maximum of {MAX_BILLING_KEYS_PER_CUSTOMER} billing keys"
    )]
    TooManyBillingKeys,
    #[error("the card facts are malformed or look like card data")]
    InvalidCard,
    #[error("the encrypted billing key is malformed")]
    InvalidSecret,
    #[error("the provider name or customer key is malformed")]
    InvalidProviderFields,
    #[error("no billing key with this id")]
    BillingKeyNotFound,
    #[error("the billing key is revoked or expired")]
    BillingKeyNotActive,
    #[error("the reason must be 1 to 200 characters and hold no card data")]
    InvalidReason,
    #[error(
        "the customer has reached the maximum of {MAX_SUBSCRIPTIONS_PER_CUSTOMER} subscriptions"
    )]
    TooManySubscriptions,
}

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BillingKeyStatus {
    Active,
    Revoked,
    Expired,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BillingKeyState {
    pub status: BillingKeyStatus,
    pub provider: String,
    pub customer_key: String,
    pub card: CardSummary,
    pub secret: EncryptedSecret,
    pub registered_at: DateTime<Utc>,
    pub changed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Customer {
    pub billing_keys: BTreeMap<BillingKeyId, BillingKeyState>,
    pub subscriptions: Vec<SubscriptionId>,
}

impl Customer {
    /// The key if it exists and can be charged.
    pub fn active_billing_key(&self, id: &BillingKeyId) -> Result<&BillingKeyState, CustomerError> {
        let key = self
            .billing_keys
            .get(id)
            .ok_or(CustomerError::BillingKeyNotFound)?;
        if key.status != BillingKeyStatus::Active {
            return Err(CustomerError::BillingKeyNotActive);
        }
        Ok(key)
    }

    fn decide(&self, command: CustomerCommand) -> Result<Vec<CustomerEvent>, CustomerError> {
        match command {
            CustomerCommand::RegisterBillingKey(registered) => self.register(registered),
            CustomerCommand::RevokeBillingKey {
                billing_key_id,
                reason,
                at,
            } => {
                check_reason(&reason)?;
                let key = self
                    .billing_keys
                    .get(&billing_key_id)
                    .ok_or(CustomerError::BillingKeyNotFound)?;
                if key.status == BillingKeyStatus::Revoked {
                    // Revoking twice is the same request answered again.
                    return Ok(vec![]);
                }
                Ok(vec![CustomerEvent::BillingKeyRevoked(BillingKeyRevoked {
                    billing_key_id,
                    reason,
                    at,
                })])
            }
            CustomerCommand::MarkBillingKeyExpired {
                billing_key_id,
                provider_code,
                at,
            } => {
                check_reason(&provider_code)?;
                let key = self
                    .billing_keys
                    .get(&billing_key_id)
                    .ok_or(CustomerError::BillingKeyNotFound)?;
                if key.status != BillingKeyStatus::Active {
                    return Ok(vec![]);
                }
                Ok(vec![CustomerEvent::BillingKeyExpired(BillingKeyExpired {
                    billing_key_id,
                    provider_code,
                    at,
                })])
            }
            CustomerCommand::LinkSubscription {
                subscription_id,
                at,
            } => {
                if self.subscriptions.contains(&subscription_id) {
                    return Ok(vec![]);
                }
                if self.subscriptions.len() >= MAX_SUBSCRIPTIONS_PER_CUSTOMER {
                    return Err(CustomerError::TooManySubscriptions);
                }
                Ok(vec![CustomerEvent::SubscriptionLinked(
                    SubscriptionLinked {
                        subscription_id,
                        at,
                    },
                )])
            }
        }
    }

    fn register(
        &self,
        registered: BillingKeyRegistered,
    ) -> Result<Vec<CustomerEvent>, CustomerError> {
        if self.billing_keys.contains_key(&registered.billing_key_id) {
            return Err(CustomerError::BillingKeyIdTaken);
        }
        if self.billing_keys.len() >= MAX_BILLING_KEYS_PER_CUSTOMER {
            return Err(CustomerError::TooManyBillingKeys);
        }
        if !registered.card.is_valid() {
            return Err(CustomerError::InvalidCard);
        }
        if !registered.secret.is_well_formed() {
            return Err(CustomerError::InvalidSecret);
        }
        let field_ok = |s: &str, max: usize| {
            !s.is_empty()
                && s.chars().count() <= max
                && !s.chars().any(char::is_control)
                && !contains_card_number_like(s)
        };
        if !field_ok(&registered.provider, 32) || !field_ok(&registered.customer_key, 255) {
            return Err(CustomerError::InvalidProviderFields);
        }
        Ok(vec![CustomerEvent::BillingKeyRegistered(registered)])
    }
}

fn check_reason(reason: &str) -> Result<(), CustomerError> {
    let len = reason.chars().count();
    if len == 0
        || len > 200
        || reason.chars().any(char::is_control)
        || contains_card_number_like(reason)
    {
        return Err(CustomerError::InvalidReason);
    }
    Ok(())
}

impl Aggregate for Customer {
    const TYPE: &'static str = "customer";
    type Command = CustomerCommand;
    type Event = CustomerEvent;
    type Error = CustomerError;
    type Services = ();

    async fn handle(
        &mut self,
        command: CustomerCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), CustomerError> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        assert!(self.billing_keys.len() <= MAX_BILLING_KEYS_PER_CUSTOMER);
        assert!(self.subscriptions.len() <= MAX_SUBSCRIPTIONS_PER_CUSTOMER);
        Ok(())
    }

    fn apply(&mut self, event: CustomerEvent) {
        match event {
            CustomerEvent::BillingKeyRegistered(registered) => {
                self.billing_keys.insert(
                    registered.billing_key_id,
                    BillingKeyState {
                        status: BillingKeyStatus::Active,
                        provider: registered.provider,
                        customer_key: registered.customer_key,
                        card: registered.card,
                        secret: registered.secret,
                        registered_at: registered.at,
                        changed_at: registered.at,
                    },
                );
            }
            CustomerEvent::BillingKeyRevoked(revoked) => {
                if let Some(key) = self.billing_keys.get_mut(&revoked.billing_key_id) {
                    key.status = BillingKeyStatus::Revoked;
                    key.changed_at = revoked.at;
                }
            }
            CustomerEvent::BillingKeyExpired(expired) => {
                if let Some(key) = self.billing_keys.get_mut(&expired.billing_key_id) {
                    key.status = BillingKeyStatus::Expired;
                    key.changed_at = expired.at;
                }
            }
            CustomerEvent::SubscriptionLinked(linked) => {
                self.subscriptions.push(linked.subscription_id);
            }
        }
    }
}
