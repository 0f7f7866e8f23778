//! Toss Payments webhooks.
//!
//! Signed (`payout.changed`, `seller.changed` only):
//! `tosspayments-webhook-signature: v1:BASE64[,v1:BASE64]` and
//! `tosspayments-webhook-transmission-time: 2024-09-05T12:19:21+09:00` (RFC 3339 with offset).
//! Signed bytes `"{raw body}:{transmission-time}"` (the header text verbatim), HMAC-SHA256 keyed
//! with the security key's text, standard base64; either `v1` may match (two are sent so a key
//! can rotate). Based on Toss Payments' webhook-events reference ("tosspayments-webhook-signature"
//! field description) as quoted by Toss staff at techchat.tosspayments.com/m/1308725417263497257:
//! "{WEBHOOK_PAYLOAD}:{tosspayments-webhook-transmission-time} 값을 보안 키로 HMAC SHA-256
//! 해싱 … v1: 뒤에 오는 2개의 값을 모두 base64로 디코딩 … 하나가 일치하면 올바른 웹훅".
//! The seed document's `X-Toss-Signature` hex-over-body example matches no Toss documentation
//! and is not implemented.
//!
//! Payment-status events (`PAYMENT_STATUS_CHANGED`, …) carry no signature: they are accepted
//! only as a prompt to re-fetch the payment. `tosspayments-webhook-transmission-id` is read on
//! both kinds as the delivery id; it is not covered by any signature.

use chrono::{DateTime, Utc};

use crate::delivery::{
    ParsedDelivery, Scheme, VerifiedDelivery, MAX_DELIVERY_ID_BYTES, MAX_SIGNATURE_HEADER_BYTES,
    MAX_TIMESTAMP_HEADER_BYTES,
};
use crate::error::SignatureError;
use crate::headers::HeaderSource;
use crate::schemes::{
    decode_base64_signature, delivery_id, optional_header, require_candidates, required_header,
    SignatureCounter,
};

pub(crate) const SIGNATURE_HEADER: &str = "tosspayments-webhook-signature";
pub(crate) const TRANSMISSION_TIME_HEADER: &str = "tosspayments-webhook-transmission-time";
pub(crate) const TRANSMISSION_ID_HEADER: &str = "tosspayments-webhook-transmission-id";

pub(crate) fn parse_signed(
    headers: &dyn HeaderSource<'_>,
) -> Result<ParsedDelivery, SignatureError> {
    let signatures = required_header(headers, SIGNATURE_HEADER, MAX_SIGNATURE_HEADER_BYTES)?;
    let time_text = required_header(
        headers,
        TRANSMISSION_TIME_HEADER,
        MAX_TIMESTAMP_HEADER_BYTES,
    )?;
    let timestamp = DateTime::parse_from_rfc3339(time_text)
        .map_err(|_| SignatureError::MalformedHeader {
            header: TRANSMISSION_TIME_HEADER,
            reason: "the transmission time is not an RFC 3339 date-time",
        })?
        .with_timezone(&Utc);

    let mut candidates = Vec::new();
    let mut counter = SignatureCounter::new(SIGNATURE_HEADER);
    for entry in signatures.split(',') {
        counter.count_one()?;
        let (version, signature) =
            entry
                .trim()
                .split_once(':')
                .ok_or(SignatureError::MalformedHeader {
                    header: SIGNATURE_HEADER,
                    reason: "an entry is not `version:signature`",
                })?;
        if version == "v1" {
            candidates.push(decode_base64_signature(signature, SIGNATURE_HEADER)?);
        }
    }
    let candidates = require_candidates(candidates, SIGNATURE_HEADER, "no v1 signature")?;
    Ok(ParsedDelivery {
        timestamp,
        signed_prefix: Vec::new(),
        signed_suffix: format!(":{time_text}").into_bytes(),
        candidates,
        delivery_id: transmission_id(headers)?,
    })
}

/// Unsigned payment-status events: nothing to verify, so the result says so.
pub(crate) fn accept_unsigned(
    headers: &dyn HeaderSource<'_>,
) -> Result<VerifiedDelivery, SignatureError> {
    Ok(VerifiedDelivery {
        scheme: Scheme::TossUnsigned,
        delivery_id: transmission_id(headers)?,
        timestamp: None,
        secret_index: None,
        must_refetch: true,
    })
}

fn transmission_id(headers: &dyn HeaderSource<'_>) -> Result<Option<String>, SignatureError> {
    optional_header(headers, TRANSMISSION_ID_HEADER, MAX_DELIVERY_ID_BYTES)?
        .map(|value| delivery_id(value, TRANSMISSION_ID_HEADER))
        .transpose()
}
