//! Webhook signatures in and out, the outbound retry schedule and notification priorities.
//!
//! This crate does no IO and knows no HTTP framework: the HTTP layer hands it header values
//! (through [`HeaderSource`]), the raw body bytes, the configured secrets and the current time,
//! and gets back a [`VerifiedDelivery`] or a [`SignatureError`] with a stable [`SignatureError::code`].
//!
//! # Inbound schemes
//!
//! | [`Scheme`] | Headers | Signature header value | Exact signed bytes | HMAC-SHA256 key | Signature encoding |
//! |---|---|---|---|---|---|
//! | `Stripe` | `Stripe-Signature` | `t=T,v1=SIG[,v1=SIG…][,v0=…]` | `T` `.` body | secret text as UTF-8 (`whsec_…` as is) | hex |
//! | `Paddle` | `Paddle-Signature` | `ts=T;h1=SIG[;h1=SIG…]` | `T` `:` body | secret text as UTF-8 | hex |
//! | `StandardWebhooks` | `webhook-id`, `webhook-timestamp`, `webhook-signature` | `v1,SIG[ v1,SIG…]` (space-separated) | id `.` timestamp `.` body | base64-decode of the part after `whsec_` (24–64 bytes) | standard base64 |
//! | `TossSigned` (`payout.changed`, `seller.changed`) | `tosspayments-webhook-signature`, `tosspayments-webhook-transmission-time`, optional `tosspayments-webhook-transmission-id` | `v1:SIG[,v1:SIG]` | body `:` transmission-time (header text verbatim) | security key text as UTF-8 | standard base64 |
//! | `TossUnsigned` (payment status) | optional `tosspayments-webhook-transmission-id` | none | none | none | — (result has `must_refetch: true`) |
//!
//! Timestamps: `T` and `webhook-timestamp` are decimal unix seconds; Toss's transmission time is
//! RFC 3339 with an offset (`2024-09-05T12:19:21+09:00`). Each must lie within the tolerance
//! ([`DEFAULT_TOLERANCE`] 300 s, inclusive, at most [`MAX_TOLERANCE`]) of `now` in *both*
//! directions. One or two secrets ([`MAX_SECRETS`]) are tried, so a rotation needs no downtime;
//! [`VerifiedDelivery::secret_index`] says which one matched.
//!
//! Limits: each signature header at most [`MAX_SIGNATURE_HEADER_BYTES`], at most
//! [`MAX_SIGNATURES_PER_HEADER`] signature entries, timestamps at most
//! [`MAX_TIMESTAMP_HEADER_BYTES`], delivery ids at most [`MAX_DELIVERY_ID_BYTES`] of visible ASCII.
//! Signature versions a scheme does not define (`v0`, `v1a`, …) are skipped, never trusted.
//!
//! Toss sends payment-status events unsigned. If one endpoint receives both kinds, choosing
//! `TossSigned` when `tosspayments-webhook-signature` is present and `TossUnsigned` otherwise is
//! safe only because unsigned results are never trusted: payout and seller handlers must still
//! require `must_refetch == false`.
//!
//! # Errors
//!
//! | Variant | `code()` | Meaning |
//! |---|---|---|
//! | `MissingHeader` | `E_WEBHOOK_SIGNATURE_MISSING` | a required header is absent or empty |
//! | `MalformedHeader` | `E_WEBHOOK_SIGNATURE_MALFORMED` | wrong shape, too long, too many entries, bad timestamp |
//! | `BadSignatureEncoding` | `E_WEBHOOK_SIGNATURE_ENCODING` | a signature is not hex/base64 of 32 bytes |
//! | `TimestampTooOld`, `TimestampInFuture` | `E_WEBHOOK_TIMESTAMP_OUT_OF_TOLERANCE` | genuine signature, outside the window |
//! | `SignatureMismatch` | `E_WEBHOOK_SIGNATURE_MISMATCH` | no signature matches any secret |
//! | `Misconfigured` | `E_WEBHOOK_VERIFIER_MISCONFIGURED` | payledger's configuration (answer 5xx) |
//!
//! No message ever contains a secret, an expected signature or text from the request.
//!
//! # Outbound
//!
//! Notifications to products are Standard Webhooks: [`sign_standard_webhook`] produces the
//! `webhook-signature` value, [`WebhookSecret::generate_standard_webhooks`] makes a new
//! `whsec_` secret from caller-supplied random bytes, [`RETRY_SCHEDULE`] and
//! [`next_attempt_delay`] say when to retry and when to dead-letter, and [`Priority`] labels
//! each notification.
//!
//! ```
//! use payledger_webhooks::{
//!     sign_standard_webhook, verify, HeaderPairs, Scheme, StandardWebhookKey, WebhookSecret,
//!     DEFAULT_TOLERANCE,
//! };
//!
//! let secret = WebhookSecret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
//! let key = StandardWebhookKey::from_secret(&secret).expect("a valid whsec_ secret");
//! let body = br#"{"test": 2432232314}"#;
//! let signature = sign_standard_webhook(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
//! assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
//!
//! let headers = [
//!     ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
//!     ("webhook-timestamp", "1614265330"),
//!     ("webhook-signature", signature.as_str()),
//! ];
//! let now = chrono::DateTime::from_timestamp(1614265330, 0).expect("a valid time");
//! let delivery = verify(
//!     Scheme::StandardWebhooks,
//!     &HeaderPairs(&headers),
//!     body,
//!     &[secret],
//!     now,
//!     DEFAULT_TOLERANCE,
//! )
//! .expect("the official vector verifies");
//! assert_eq!(delivery.delivery_id.as_deref(), Some("msg_p5jXN8AQM9LWM0D4loKWxJek"));
//! ```

mod delivery;
mod error;
mod headers;
mod priority;
mod schedule;
mod schemes;
mod secret;
mod sign;
mod verify;

pub use error::SignatureError;
pub use headers::{HeaderPairs, HeaderSource};
pub use priority::Priority;
pub use schedule::{
    next_attempt_delay, next_inbound_attempt_delay, INBOUND_HOURLY_RETRIES, INBOUND_QUICK_ATTEMPTS,
    MAX_DELIVERY_ATTEMPTS, MAX_INBOUND_ATTEMPTS, RETRY_SCHEDULE,
};
pub use secret::{
    InvalidSecret, StandardWebhookKey, WebhookSecret, MAX_SECRET_BYTES,
    STANDARD_WEBHOOKS_KEY_MAX_BYTES, STANDARD_WEBHOOKS_KEY_MIN_BYTES,
    STANDARD_WEBHOOKS_SECRET_PREFIX,
};
pub use sign::sign_standard_webhook;
pub use verify::{
    verify, Scheme, VerifiedDelivery, DEFAULT_TOLERANCE, MAX_DELIVERY_ID_BYTES, MAX_SECRETS,
    MAX_SIGNATURES_PER_HEADER, MAX_SIGNATURE_HEADER_BYTES, MAX_TIMESTAMP_HEADER_BYTES,
    MAX_TOLERANCE,
};
