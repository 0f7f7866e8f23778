//! Outbound signing: payledger's notifications to products go out as Standard Webhooks.

use base64::engine::general_purpose::STANDARD as BASE64_STANDARD;
use base64::Engine as _;
use hmac::Mac as _;

use crate::secret::StandardWebhookKey;

/// The `webhook-signature` header value (`v1,BASE64`) for one message: HMAC-SHA256 over
/// `"{msg_id}.{timestamp}.{body}"`, exactly what [`crate::verify`] with
/// [`crate::Scheme::StandardWebhooks`] (and every Standard Webhooks library) checks.
///
/// `msg_id` goes out as `webhook-id` and must stay the same across retries of the message, so
/// the receiver can de-duplicate; `timestamp` (unix seconds, sent as `webhook-timestamp`) is
/// the time of *this* attempt, so a retry after hours is not refused as stale. While rotating,
/// sign with both keys and join the two values with a space.
pub fn sign_standard_webhook(
    key: &StandardWebhookKey,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    let mut mac = key.mac();
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", BASE64_STANDARD.encode(mac.finalize().into_bytes()))
}
