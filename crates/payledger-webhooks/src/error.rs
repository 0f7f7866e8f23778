//! Why an inbound webhook was refused.

use crate::secret::InvalidSecret;

/// Why a webhook delivery was refused.
///
/// Every field is either a `&'static str` chosen by this crate or a number, so no message can
/// carry a secret, an expected signature, or attacker-supplied text into a log line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// A header the scheme requires is absent, empty, or not visible ASCII.
    #[error("webhook header `{header}` is missing")]
    MissingHeader { header: &'static str },

    /// A header is present but does not have the scheme's shape (too long, too many entries,
    /// unparsable timestamp, no signature of a supported version, …).
    #[error("webhook header `{header}` is malformed: {reason}")]
    MalformedHeader {
        header: &'static str,
        reason: &'static str,
    },

    /// A signature entry is not valid hex/base64, or does not decode to the 32 bytes of an
    /// HMAC-SHA256.
    #[error("webhook header `{header}` carries a signature that is not {encoding} of 32 bytes")]
    BadSignatureEncoding {
        header: &'static str,
        encoding: &'static str,
    },

    /// The signature is genuine but its timestamp is older than the tolerance allows: a late
    /// delivery or a replay.
    #[error(
        "webhook timestamp is {age_seconds} s old, beyond the {tolerance_seconds} s tolerance"
    )]
    TimestampTooOld {
        age_seconds: i64,
        tolerance_seconds: u64,
    },

    /// The signature is genuine but its timestamp lies further in the future than the tolerance
    /// allows: a clock problem at the sender or here.
    #[error(
        "webhook timestamp is {ahead_seconds} s in the future, beyond the {tolerance_seconds} s tolerance"
    )]
    TimestampInFuture {
        ahead_seconds: i64,
        tolerance_seconds: u64,
    },

    /// No signature in the header was made with any of the configured secrets over this body.
    #[error("no webhook signature matches the body under any configured secret")]
    SignatureMismatch,

    /// payledger's own configuration is wrong (no secret, more than two, a secret the scheme
    /// cannot use, a tolerance above the maximum). Not the sender's fault: answer 5xx and alert.
    #[error("webhook verification is misconfigured: {reason}")]
    Misconfigured { reason: &'static str },
}

impl SignatureError {
    /// Stable machine-readable code; clients and dashboards branch on this, people read the message.
    pub fn code(&self) -> &'static str {
        match self {
            SignatureError::MissingHeader { .. } => "E_WEBHOOK_SIGNATURE_MISSING",
            SignatureError::MalformedHeader { .. } => "E_WEBHOOK_SIGNATURE_MALFORMED",
            SignatureError::BadSignatureEncoding { .. } => "E_WEBHOOK_SIGNATURE_ENCODING",
            // Both directions share a code: the sender's remedy (send a fresh delivery with a
            // correct clock) is the same; the variant and message still tell them apart.
            SignatureError::TimestampTooOld { .. } | SignatureError::TimestampInFuture { .. } => {
                "E_WEBHOOK_TIMESTAMP_OUT_OF_TOLERANCE"
            }
            SignatureError::SignatureMismatch => "E_WEBHOOK_SIGNATURE_MISMATCH",
            SignatureError::Misconfigured { .. } => "E_WEBHOOK_VERIFIER_MISCONFIGURED",
        }
    }

    /// True when the fault is payledger's configuration rather than the request: the HTTP layer
    /// answers 5xx (so the provider retries once it is fixed) instead of 4xx.
    pub fn is_misconfiguration(&self) -> bool {
        matches!(self, SignatureError::Misconfigured { .. })
    }
}

impl From<InvalidSecret> for SignatureError {
    fn from(error: InvalidSecret) -> Self {
        SignatureError::Misconfigured {
            reason: error.reason(),
        }
    }
}
