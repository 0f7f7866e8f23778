//! Webhook secrets: held as given, never printed, turned into HMAC key bytes per scheme.

use base64::engine::general_purpose::STANDARD as BASE64_STANDARD;
use base64::Engine as _;
use std::borrow::Cow;
use std::fmt;

use hmac::Mac as _;

use crate::delivery::HmacSha256;
use crate::Scheme;

/// Prefix of Standard Webhooks secrets; Stripe's secrets carry it too but there it is part of the
/// key bytes.
pub const STANDARD_WEBHOOKS_SECRET_PREFIX: &str = "whsec_";

/// The Standard Webhooks specification asks for keys of 24 to 64 bytes; anything shorter is too
/// weak to sign with and anything longer is almost certainly a configuration mistake.
pub const STANDARD_WEBHOOKS_KEY_MIN_BYTES: usize = 24;
pub const STANDARD_WEBHOOKS_KEY_MAX_BYTES: usize = 64;

/// Secrets longer than this are a configuration mistake (a pasted file, a whole env dump), not a key.
pub const MAX_SECRET_BYTES: usize = 256;

/// A webhook signing secret exactly as the provider (or payledger) issued it, e.g. `whsec_…`.
///
/// `Debug` prints `WebhookSecret(<redacted>)`; there is no `Display`, `PartialEq` or `Serialize`, so
/// the secret cannot slip into a log line, an event or an error message by accident. The only way
/// to read it back is [`WebhookSecret::expose_secret`], whose name makes every use visible in review.
#[derive(Clone)]
pub struct WebhookSecret {
    text: String,
}

impl WebhookSecret {
    /// Wraps a secret as configured (typically read from the environment). Nothing is checked
    /// here because what makes a secret valid depends on the scheme it is used with; see
    /// [`WebhookSecret::check_usable_for`] to fail fast at startup.
    pub fn new(text: impl Into<String>) -> Self {
        Self { text: text.into() }
    }

    /// A fresh Standard Webhooks secret (`whsec_` + base64 of 32 bytes) for a new outbound
    /// endpoint. The bytes must come from a cryptographically secure generator (`rand::rng()`,
    /// `OsRng`); taking them as an argument keeps this crate free of IO.
    pub fn generate_standard_webhooks(random_bytes: [u8; 32]) -> Self {
        Self::new(format!(
            "{STANDARD_WEBHOOKS_SECRET_PREFIX}{}",
            BASE64_STANDARD.encode(random_bytes)
        ))
    }

    /// The secret text, for handing a newly generated secret to its owner once or storing it in
    /// a secret store. Never log it.
    pub fn expose_secret(&self) -> &str {
        &self.text
    }

    /// Checks, without verifying anything, that this secret can key `scheme`'s HMAC, so a bad
    /// configuration is reported at startup instead of on the first webhook.
    pub fn check_usable_for(&self, scheme: Scheme) -> Result<(), InvalidSecret> {
        self.key_for(scheme).map(|_| ())
    }

    /// The HMAC key bytes this secret stands for under `scheme`.
    ///
    /// Stripe, Paddle and Toss key their HMAC with the secret text itself (Stripe's `whsec_…`
    /// included); Standard Webhooks keys it with the base64-decoded part after `whsec_`.
    pub(crate) fn key_for(&self, scheme: Scheme) -> Result<Cow<'_, [u8]>, InvalidSecret> {
        if self.text.is_empty() {
            return Err(InvalidSecret::new("the secret is empty"));
        }
        if self.text.len() > MAX_SECRET_BYTES {
            return Err(InvalidSecret::new("the secret is longer than 256 bytes"));
        }
        match scheme {
            Scheme::StandardWebhooks => decode_standard_webhooks_key(&self.text).map(Cow::Owned),
            Scheme::Stripe | Scheme::Paddle | Scheme::TossSigned | Scheme::TossUnsigned => {
                Ok(Cow::Borrowed(self.text.as_bytes()))
            }
        }
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

/// A Standard Webhooks signing key, decoded and keyed once at startup so that signing each
/// outbound message cannot fail.
#[derive(Clone)]
pub struct StandardWebhookKey {
    keyed_mac: HmacSha256,
}

impl StandardWebhookKey {
    /// Decodes a `whsec_…` secret (the prefix is optional, as in the reference libraries).
    pub fn from_secret(secret: &WebhookSecret) -> Result<Self, InvalidSecret> {
        let key = secret.key_for(Scheme::StandardWebhooks)?;
        let keyed_mac = HmacSha256::new_from_slice(&key)
            .map_err(|_| InvalidSecret::new("the key cannot key HMAC-SHA256"))?;
        Ok(Self { keyed_mac })
    }

    /// A fresh HMAC already keyed with this key.
    pub(crate) fn mac(&self) -> HmacSha256 {
        self.keyed_mac.clone()
    }
}

impl fmt::Debug for StandardWebhookKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StandardWebhookKey(<redacted>)")
    }
}

fn decode_standard_webhooks_key(text: &str) -> Result<Vec<u8>, InvalidSecret> {
    let encoded = text
        .strip_prefix(STANDARD_WEBHOOKS_SECRET_PREFIX)
        .unwrap_or(text);
    let key = BASE64_STANDARD
        .decode(encoded)
        .map_err(|_| InvalidSecret::new("the part after `whsec_` is not standard base64"))?;
    if !(STANDARD_WEBHOOKS_KEY_MIN_BYTES..=STANDARD_WEBHOOKS_KEY_MAX_BYTES).contains(&key.len()) {
        return Err(InvalidSecret::new(
            "a Standard Webhooks key must decode to 24..=64 bytes",
        ));
    }
    Ok(key)
}

/// A secret that cannot key the scheme it was configured for. The reason is a fixed sentence and
/// never contains any part of the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("webhook secret is unusable: {reason}")]
pub struct InvalidSecret {
    reason: &'static str,
}

impl InvalidSecret {
    fn new(reason: &'static str) -> Self {
        Self { reason }
    }

    pub fn reason(&self) -> &'static str {
        self.reason
    }

    /// Stable error code; a configuration problem on payledger's side, not the sender's.
    pub fn code(&self) -> &'static str {
        "E_WEBHOOK_SECRET_INVALID"
    }
}
