//! Inbound verification: one entry point, one parser per scheme, one shared HMAC check.

use std::borrow::Cow;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::SignatureError;
use crate::headers::HeaderSource;
use crate::schemes;
use crate::secret::WebhookSecret;

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// The replay window used by Stripe's and the Standard Webhooks reference libraries.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);
/// A wider window would make replay protection meaningless; asking for one is a configuration bug.
pub const MAX_TOLERANCE: Duration = Duration::from_secs(3600);
/// The current secret plus the previous one while a rotation is in progress.
pub const MAX_SECRETS: usize = 2;
/// Real signature headers are a few hundred bytes even with several signatures.
pub const MAX_SIGNATURE_HEADER_BYTES: usize = 2048;
/// Signature entries (of any version) accepted in one header; senders use one, two while rotating.
pub const MAX_SIGNATURES_PER_HEADER: usize = 8;
/// Timestamp headers: unix seconds or an RFC 3339 date-time.
pub const MAX_TIMESTAMP_HEADER_BYTES: usize = 64;
/// Delivery ids are stored for de-duplication, so they are bounded like any stored input.
pub const MAX_DELIVERY_ID_BYTES: usize = 256;

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

/// Verifies one inbound webhook delivery against the raw body bytes exactly as received.
///
/// - `headers`: the request's headers (names matched case-insensitively).
/// - `raw_body`: the body before any parsing; re-serialised JSON will not verify.
/// - `secrets`: one secret, or two while rotating (either may match). May be empty for
///   [`Scheme::TossUnsigned`] only.
/// - `now` and `tolerance`: the signed timestamp must lie within `tolerance` of `now` in either
///   direction (inclusive); [`DEFAULT_TOLERANCE`] is 300 s, at most [`MAX_TOLERANCE`].
///
/// The signature is checked before the timestamp, so a timestamp error always means a genuine
/// but late (or early) delivery. Comparisons are constant-time (`hmac::Mac::verify_slice`).
/// The body size is not bounded here: the HTTP layer bounds it before buffering.
pub fn verify(
    scheme: Scheme,
    headers: &dyn HeaderSource<'_>,
    raw_body: &[u8],
    secrets: &[WebhookSecret],
    now: DateTime<Utc>,
    tolerance: Duration,
) -> Result<VerifiedDelivery, SignatureError> {
    if tolerance > MAX_TOLERANCE {
        return Err(SignatureError::Misconfigured {
            reason: "the timestamp tolerance is above the 3600 s maximum",
        });
    }
    let parse = match scheme {
        Scheme::TossUnsigned => return schemes::toss::accept_unsigned(headers),
        Scheme::Stripe => schemes::stripe::parse,
        Scheme::Paddle => schemes::paddle::parse,
        Scheme::StandardWebhooks => schemes::standard::parse,
        Scheme::TossSigned => schemes::toss::parse_signed,
    };
    let keys = keys_for(scheme, secrets)?;
    let parsed = parse(headers)?;
    let secret_index = parsed
        .matching_secret(&keys, raw_body)?
        .ok_or(SignatureError::SignatureMismatch)?;
    check_timestamp(parsed.timestamp, now, tolerance)?;
    Ok(VerifiedDelivery {
        scheme,
        delivery_id: parsed.delivery_id,
        timestamp: Some(parsed.timestamp),
        secret_index: Some(secret_index),
        must_refetch: false,
    })
}

fn keys_for(
    scheme: Scheme,
    secrets: &[WebhookSecret],
) -> Result<Vec<Cow<'_, [u8]>>, SignatureError> {
    if secrets.is_empty() {
        return Err(SignatureError::Misconfigured {
            reason: "no webhook secret is configured for a signed scheme",
        });
    }
    if secrets.len() > MAX_SECRETS {
        return Err(SignatureError::Misconfigured {
            reason: "more than two webhook secrets are configured",
        });
    }
    secrets
        .iter()
        .map(|secret| secret.key_for(scheme).map_err(SignatureError::from))
        .collect()
}

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
    fn matching_secret(
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

fn check_timestamp(
    timestamp: DateTime<Utc>,
    now: DateTime<Utc>,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    // `tolerance` is at most MAX_TOLERANCE, so the conversion cannot fail.
    let tolerance_delta = TimeDelta::from_std(tolerance).unwrap_or(TimeDelta::MAX);
    let age = now.signed_duration_since(timestamp);
    if age > tolerance_delta {
        return Err(SignatureError::TimestampTooOld {
            age_seconds: age.num_seconds(),
            tolerance_seconds: tolerance.as_secs(),
        });
    }
    if -age > tolerance_delta {
        return Err(SignatureError::TimestampInFuture {
            ahead_seconds: (-age).num_seconds(),
            tolerance_seconds: tolerance.as_secs(),
        });
    }
    Ok(())
}
