//! Stripe: `Stripe-Signature: t=TIMESTAMP,v1=HEX[,v1=HEX…][,v0=HEX]`.
//!
//! Signed bytes `"{t}.{raw body}"`, HMAC-SHA256 keyed with the endpoint secret's text as UTF-8
//! (the `whsec_…` string as is, not base64-decoded), lowercase hex. Any `v1` may match; `v0` is
//! test-mode only and ignored. (stripe.com/docs/webhooks, "Verify signatures manually".)

use crate::delivery::ParsedDelivery;
use crate::error::SignatureError;
use crate::headers::HeaderSource;
use crate::schemes::KeyValueSignatureHeader;

pub(crate) const SIGNATURE_HEADER: &str = "stripe-signature";

pub(crate) fn parse(headers: &dyn HeaderSource<'_>) -> Result<ParsedDelivery, SignatureError> {
    let parsed = KeyValueSignatureHeader {
        header: SIGNATURE_HEADER,
        separator: ',',
        timestamp_key: "t",
        signature_key: "v1",
    }
    .parse(headers)?;
    Ok(ParsedDelivery {
        timestamp: parsed.timestamp,
        signed_prefix: format!("{}.", parsed.timestamp_text).into_bytes(),
        signed_suffix: Vec::new(),
        candidates: parsed.candidates,
        delivery_id: None,
    })
}
