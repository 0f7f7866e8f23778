//! What every scheme's parser produces and the one HMAC check over it: below both `verify` (the
//! entry point) and `schemes` (the parsers), so neither reaches back up into the other.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::SignatureError;

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// Which signature format a webhook endpoint expects. Chosen by the endpoint's configuration,
/// never by anything in the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scheme {
    /// `Stripe-Signature: t=…,v1=hex`.
    Stripe,
    /// Paddle Billing `Paddle-Signature: ts=…;h1=hex`.
    Paddle,
    /// `webhook-id` / `webhook-timestamp` / `webhook-signature: v1,base64` (standardwebhooks.com).
    StandardWebhooks,
    /// Toss Payments `payout.changed` and `seller.changed` events:
    /// `tosspayments-webhook-signature: v1:base64`.
    TossSigned,
    /// Toss Payments payment-status events, which carry no signature at all. Verification only
    /// reads the transmission id and flags the delivery [`VerifiedDelivery::must_refetch`].
    TossUnsigned,
}

impl Scheme {
    /// Whether deliveries of this scheme prove who sent them.
    pub fn is_signed(self) -> bool {
        !matches!(self, Scheme::TossUnsigned)
    }
}

/// What verification established about a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedDelivery {
    pub scheme: Scheme,
    /// `webhook-id` (Standard Webhooks, covered by the signature) or
    /// `tosspayments-webhook-transmission-id` (Toss, *not* covered by the signature: a hint for
    /// logs, while de-duplication keys on the event id inside the verified body). Stripe and
    /// Paddle put their event id only in the body, so this is `None` for them.
    pub delivery_id: Option<String>,
    /// The sender's signed timestamp, checked against the tolerance window. `None` when unsigned.
    pub timestamp: Option<DateTime<Utc>>,
    /// Index into the `secrets` slice of the secret that matched (0 = first). `None` when unsigned.
    /// A match on the previous secret late in a rotation means the sender has not switched yet.
    pub secret_index: Option<usize>,
    /// True when the body proves nothing (Toss payment-status events): never act on its content;
    /// fetch the payment from the provider's API by its id and act on that answer instead.
    pub must_refetch: bool,
}

/// Real signature headers are a few hundred bytes even with several signatures.
pub const MAX_SIGNATURE_HEADER_BYTES: usize = 2048;
/// Signature entries (of any version) accepted in one header; senders use one, two while rotating.
pub const MAX_SIGNATURES_PER_HEADER: usize = 8;
/// Timestamp headers: unix seconds or an RFC 3339 date-time.
pub const MAX_TIMESTAMP_HEADER_BYTES: usize = 64;
/// Delivery ids are stored for de-duplication, so they are bounded like any stored input.
pub const MAX_DELIVERY_ID_BYTES: usize = 256;

/// A delivery's signature headers parsed into what the HMAC check needs.
pub(crate) struct ParsedDelivery {
    pub(crate) timestamp: DateTime<Utc>,
    /// The signed message is `signed_prefix ++ raw body ++ signed_suffix`; kept in pieces so the
    /// body is fed to the HMAC without being copied.
    pub(crate) signed_prefix: Vec<u8>,
    pub(crate) signed_suffix: Vec<u8>,
    /// Decoded signatures of the supported version; never empty.
    pub(crate) candidates: Vec<[u8; 32]>,
    pub(crate) delivery_id: Option<String>,
}

impl ParsedDelivery {
    /// The index of the first secret under which any candidate signature is valid.
    pub(crate) fn matching_secret(
        &self,
        keys: &[Cow<'_, [u8]>],
        raw_body: &[u8],
    ) -> Result<Option<usize>, SignatureError> {
        for (index, key) in keys.iter().enumerate() {
            let mut mac =
                HmacSha256::new_from_slice(key).map_err(|_| SignatureError::Misconfigured {
                    reason: "a webhook secret cannot key HMAC-SHA256",
                })?;
            mac.update(&self.signed_prefix);
            mac.update(raw_body);
            mac.update(&self.signed_suffix);
            let matched = self
                .candidates
                .iter()
                .any(|candidate| mac.clone().verify_slice(candidate).is_ok());
            if matched {
                return Ok(Some(index));
            }
        }
        Ok(None)
    }
}
