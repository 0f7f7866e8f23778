//! Independent, deliberately plain implementations of each provider's signing recipe.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use payledger_webhooks::{
    verify, HeaderPairs, Scheme, SignatureError, VerifiedDelivery, WebhookSecret, DEFAULT_TOLERANCE,
};
use sha2::Sha256;

pub const STRIPE_SECRET: &str = "whsec_stripe_endpoint_secret_for_tests";
pub const PADDLE_SECRET: &str = "pdl_ntfset_01h_secret_for_tests";
pub const TOSS_SECRET: &str = "toss_security_key_for_tests";
/// The official Standard Webhooks test secret.
pub const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// Another valid Standard Webhooks secret (base64 of 32 bytes).
pub const STANDARD_SECRET_NEXT: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// 2023-11-14T22:13:20Z.
pub const NOW_UNIX: i64 = 1_700_000_000;
/// NOW_UNIX as Toss writes it, in Korean time.
pub const NOW_TOSS: &str = "2023-11-15T07:13:20+09:00";

pub const BODY: &[u8] = br#"{"id":"evt_1","type":"payment.succeeded","amount_minor":15000}"#;

pub fn at(unix_seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(unix_seconds, 0).expect("test times are in range")
}

pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

fn concat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Stripe: hex(HMAC(secret text, "{t}.{body}")).
pub fn stripe_v1(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let message = concat(&[timestamp.to_string().as_bytes(), b".", body]);
    hex::encode(hmac_sha256(secret.as_bytes(), &message))
}

/// Paddle: hex(HMAC(secret text, "{ts}:{body}")).
pub fn paddle_h1(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let message = concat(&[timestamp.to_string().as_bytes(), b":", body]);
    hex::encode(hmac_sha256(secret.as_bytes(), &message))
}

/// Toss: base64(HMAC(security key text, "{body}:{transmission time}")).
pub fn toss_v1(secret: &str, transmission_time: &str, body: &[u8]) -> String {
    let message = concat(&[body, b":", transmission_time.as_bytes()]);
    BASE64.encode(hmac_sha256(secret.as_bytes(), &message))
}

/// Standard Webhooks: base64(HMAC(base64-decode(secret after whsec_), "{id}.{ts}.{body}")).
pub fn standard_v1(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = BASE64
        .decode(
            secret
                .strip_prefix("whsec_")
                .expect("test secrets carry the prefix"),
        )
        .expect("test secrets are base64");
    let message = concat(&[
        id.as_bytes(),
        b".",
        timestamp.to_string().as_bytes(),
        b".",
        body,
    ]);
    BASE64.encode(hmac_sha256(&key, &message))
}

pub fn secrets(texts: &[&str]) -> Vec<WebhookSecret> {
    texts.iter().map(|text| WebhookSecret::new(*text)).collect()
}

/// Verifies with the default tolerance at `now_unix`.
pub fn check(
    scheme: Scheme,
    headers: &[(&str, &str)],
    body: &[u8],
    secret_texts: &[&str],
    now_unix: i64,
) -> Result<VerifiedDelivery, SignatureError> {
    verify(
        scheme,
        &HeaderPairs(headers),
        body,
        &secrets(secret_texts),
        at(now_unix),
        DEFAULT_TOLERANCE,
    )
}
