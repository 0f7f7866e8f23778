//! Inbound verification: one entry point, one parser per scheme, one shared HMAC check.

use std::borrow::Cow;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

pub use crate::delivery::{
    Scheme, VerifiedDelivery, MAX_DELIVERY_ID_BYTES, MAX_SIGNATURES_PER_HEADER,
    MAX_SIGNATURE_HEADER_BYTES, MAX_TIMESTAMP_HEADER_BYTES,
};
use crate::error::SignatureError;
use crate::headers::HeaderSource;
use crate::schemes;
use crate::secret::WebhookSecret;

/// The replay window used by Stripe's and the Standard Webhooks reference libraries.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);
/// A wider window would make replay protection meaningless; asking for one is a configuration bug.
pub const MAX_TOLERANCE: Duration = Duration::from_secs(3600);
/// The current secret plus the previous one while a rotation is in progress.
pub const MAX_SECRETS: usize = 2;
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
