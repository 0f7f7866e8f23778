//! Standard Webhooks (standardwebhooks.com, the spec's "Verifying webhooks" section):
//! `webhook-id`, `webhook-timestamp` (unix seconds) and
//! `webhook-signature: v1,BASE64[ v1,BASE64…]` (space-separated).
//!
//! Signed bytes `"{webhook-id}.{webhook-timestamp}.{raw body}"`, HMAC-SHA256 keyed with the
//! base64-decoded part of the secret after `whsec_`, standard base64 with padding. Entries of
//! other versions (`v1a`, asymmetric) are skipped.

use crate::delivery::{
    ParsedDelivery, MAX_DELIVERY_ID_BYTES, MAX_SIGNATURE_HEADER_BYTES, MAX_TIMESTAMP_HEADER_BYTES,
};
use crate::error::SignatureError;
use crate::headers::HeaderSource;
use crate::schemes::{
    decode_base64_signature, delivery_id, require_candidates, required_header, unix_seconds,
    SignatureCounter,
};

pub(crate) const ID_HEADER: &str = "webhook-id";
pub(crate) const TIMESTAMP_HEADER: &str = "webhook-timestamp";
pub(crate) const SIGNATURE_HEADER: &str = "webhook-signature";

pub(crate) fn parse(headers: &dyn HeaderSource<'_>) -> Result<ParsedDelivery, SignatureError> {
    let id = delivery_id(
        required_header(headers, ID_HEADER, MAX_DELIVERY_ID_BYTES)?,
        ID_HEADER,
    )?;
    let timestamp_text = required_header(headers, TIMESTAMP_HEADER, MAX_TIMESTAMP_HEADER_BYTES)?;
    let timestamp = unix_seconds(timestamp_text, TIMESTAMP_HEADER)?;
    let signatures = required_header(headers, SIGNATURE_HEADER, MAX_SIGNATURE_HEADER_BYTES)?;

    let mut candidates = Vec::new();
    let mut counter = SignatureCounter::new(SIGNATURE_HEADER);
    for entry in signatures.split_ascii_whitespace() {
        counter.count_one()?;
        let (version, signature) =
            entry
                .split_once(',')
                .ok_or(SignatureError::MalformedHeader {
                    header: SIGNATURE_HEADER,
                    reason: "an entry is not `version,signature`",
                })?;
        if version == "v1" {
            candidates.push(decode_base64_signature(signature, SIGNATURE_HEADER)?);
        }
    }
    let candidates = require_candidates(candidates, SIGNATURE_HEADER, "no v1 signature")?;
    Ok(ParsedDelivery {
        timestamp,
        signed_prefix: format!("{id}.{timestamp_text}.").into_bytes(),
        signed_suffix: Vec::new(),
        candidates,
        delivery_id: Some(id),
    })
}
