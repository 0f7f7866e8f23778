//! Paddle Billing: `Paddle-Signature: ts=TIMESTAMP;h1=HEX[;h1=HEX…]`.
//!
//! Signed bytes `"{ts}:{raw body}"`, HMAC-SHA256 keyed with the notification destination's
//! secret key text as UTF-8, lowercase hex; several `h1` entries appear while a secret rotates.
//! (developer.paddle.com/webhooks/signature-verification.)

use crate::delivery::ParsedDelivery;
use crate::error::SignatureError;
use crate::headers::HeaderSource;
use crate::schemes::KeyValueSignatureHeader;

pub(crate) const SIGNATURE_HEADER: &str = "paddle-signature";

pub(crate) fn parse(headers: &dyn HeaderSource<'_>) -> Result<ParsedDelivery, SignatureError> {
    let parsed = KeyValueSignatureHeader {
        header: SIGNATURE_HEADER,
        separator: ';',
        timestamp_key: "ts",
        signature_key: "h1",
    }
    .parse(headers)?;
    Ok(ParsedDelivery {
        timestamp: parsed.timestamp,
        signed_prefix: format!("{}:", parsed.timestamp_text).into_bytes(),
        signed_suffix: Vec::new(),
        candidates: parsed.candidates,
        delivery_id: None,
    })
}
