//! One parser per signature format, plus the header reading rules they share.
//!
//! Each parser turns headers into a [`ParsedDelivery`]: the signed timestamp, the bytes signed
//! before and after the body, and the decoded candidate signatures. Unknown signature versions
//! are skipped (providers add versions over time); anything else that is not the documented
//! shape is refused as malformed rather than guessed at.

pub(crate) mod paddle;
pub(crate) mod standard;
pub(crate) mod stripe;
pub(crate) mod toss;

use base64::engine::general_purpose::STANDARD as BASE64_STANDARD;
use base64::Engine as _;
use chrono::{DateTime, Utc};

use crate::delivery::{MAX_DELIVERY_ID_BYTES, MAX_SIGNATURES_PER_HEADER};
use crate::error::SignatureError;
use crate::headers::HeaderSource;

/// Unix seconds have 10 digits until the year 2286; 12 leaves room and keeps `i64` far away.
const MAX_UNIX_SECONDS_DIGITS: usize = 12;

/// Reads a header the scheme cannot do without. Empty or whitespace-only counts as missing.
pub(crate) fn required_header<'h>(
    headers: &dyn HeaderSource<'h>,
    name: &'static str,
    max_bytes: usize,
) -> Result<&'h str, SignatureError> {
    optional_header(headers, name, max_bytes)?.ok_or(SignatureError::MissingHeader { header: name })
}

pub(crate) fn optional_header<'h>(
    headers: &dyn HeaderSource<'h>,
    name: &'static str,
    max_bytes: usize,
) -> Result<Option<&'h str>, SignatureError> {
    let Some(value) = headers.header(name) else {
        return Ok(None);
    };
    // Checked before trimming so padding cannot smuggle in an unbounded value.
    if value.len() > max_bytes {
        return Err(SignatureError::MalformedHeader {
            header: name,
            reason: "the value is longer than allowed",
        });
    }
    let value = value.trim();
    Ok((!value.is_empty()).then_some(value))
}

/// A delivery id is stored and logged, so it must be short visible ASCII.
pub(crate) fn delivery_id(value: &str, header: &'static str) -> Result<String, SignatureError> {
    if value.len() > MAX_DELIVERY_ID_BYTES {
        return Err(SignatureError::MalformedHeader {
            header,
            reason: "the delivery id is longer than 256 bytes",
        });
    }
    if !value.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(SignatureError::MalformedHeader {
            header,
            reason: "the delivery id is not visible ASCII",
        });
    }
    Ok(value.to_owned())
}

/// Parses a timestamp of decimal unix seconds; signs, spaces and fractions are refused.
pub(crate) fn unix_seconds(
    text: &str,
    header: &'static str,
) -> Result<DateTime<Utc>, SignatureError> {
    let malformed = SignatureError::MalformedHeader {
        header,
        reason: "the timestamp is not decimal unix seconds",
    };
    if text.is_empty()
        || text.len() > MAX_UNIX_SECONDS_DIGITS
        || !text.bytes().all(|byte| byte.is_ascii_digit())
    {
        return Err(malformed);
    }
    let seconds: i64 = text.parse().map_err(|_| malformed.clone())?;
    DateTime::from_timestamp(seconds, 0).ok_or(malformed)
}

/// Counts signature entries so a header cannot make the verifier do unbounded work.
pub(crate) struct SignatureCounter {
    header: &'static str,
    seen: usize,
}

impl SignatureCounter {
    pub(crate) fn new(header: &'static str) -> Self {
        Self { header, seen: 0 }
    }

    /// Call once per signature entry of any version.
    pub(crate) fn count_one(&mut self) -> Result<(), SignatureError> {
        self.seen += 1;
        if self.seen > MAX_SIGNATURES_PER_HEADER {
            return Err(SignatureError::MalformedHeader {
                header: self.header,
                reason: "more than 8 signatures",
            });
        }
        Ok(())
    }
}

pub(crate) fn decode_hex_signature(
    text: &str,
    header: &'static str,
) -> Result<[u8; 32], SignatureError> {
    let mut signature = [0_u8; 32];
    // `decode_to_slice` also refuses any length other than 64 hex digits.
    hex::decode_to_slice(text, &mut signature).map_err(|_| {
        SignatureError::BadSignatureEncoding {
            header,
            encoding: "hex",
        }
    })?;
    Ok(signature)
}

pub(crate) fn decode_base64_signature(
    text: &str,
    header: &'static str,
) -> Result<[u8; 32], SignatureError> {
    let bad_encoding = SignatureError::BadSignatureEncoding {
        header,
        encoding: "standard base64",
    };
    // 32 bytes are 44 base64 characters; refusing longer text first keeps decoding bounded.
    if text.len() != 44 {
        return Err(bad_encoding);
    }
    let decoded = BASE64_STANDARD
        .decode(text)
        .map_err(|_| bad_encoding.clone())?;
    <[u8; 32]>::try_from(decoded.as_slice()).map_err(|_| bad_encoding)
}

/// The candidates list of a header that had no signature of the supported version.
pub(crate) fn require_candidates(
    candidates: Vec<[u8; 32]>,
    header: &'static str,
    reason: &'static str,
) -> Result<Vec<[u8; 32]>, SignatureError> {
    if candidates.is_empty() {
        return Err(SignatureError::MalformedHeader { header, reason });
    }
    Ok(candidates)
}

/// The shape Stripe and Paddle share: `separator`-joined `key=value` entries, exactly one
/// timestamp entry and one or more hex signature entries of the supported version.
pub(crate) struct KeyValueSignatureHeader {
    pub(crate) header: &'static str,
    pub(crate) separator: char,
    pub(crate) timestamp_key: &'static str,
    pub(crate) signature_key: &'static str,
}

/// What a [`KeyValueSignatureHeader`] holds: the timestamp as sent (it is signed verbatim) and
/// the decoded signatures.
pub(crate) struct TimestampAndSignatures<'h> {
    pub(crate) timestamp_text: &'h str,
    pub(crate) timestamp: DateTime<Utc>,
    pub(crate) candidates: Vec<[u8; 32]>,
}

impl KeyValueSignatureHeader {
    pub(crate) fn parse<'h>(
        &self,
        headers: &dyn HeaderSource<'h>,
    ) -> Result<TimestampAndSignatures<'h>, SignatureError> {
        let header = self.header;
        let malformed = |reason| SignatureError::MalformedHeader { header, reason };
        let value = required_header(headers, header, crate::delivery::MAX_SIGNATURE_HEADER_BYTES)?;
        let mut timestamp_text = None;
        let mut candidates = Vec::new();
        let mut counter = SignatureCounter::new(header);
        for entry in value.split(self.separator) {
            let (key, entry_value) = entry
                .trim()
                .split_once('=')
                .ok_or_else(|| malformed("an entry is not `key=value`"))?;
            if key == self.timestamp_key {
                if timestamp_text.replace(entry_value).is_some() {
                    return Err(malformed("more than one timestamp entry"));
                }
                continue;
            }
            // Every other entry counts towards the bound, whatever its key.
            counter.count_one()?;
            if key == self.signature_key {
                candidates.push(decode_hex_signature(entry_value, header)?);
            }
            // Other keys (Stripe's test-mode `v0`, future versions) are skipped unread.
        }
        let timestamp_text = timestamp_text.ok_or_else(|| malformed("no timestamp entry"))?;
        let timestamp = unix_seconds(timestamp_text, header)?;
        let candidates =
            require_candidates(candidates, header, "no signature of the supported version")?;
        Ok(TimestampAndSignatures {
            timestamp_text,
            timestamp,
            candidates,
        })
    }
}
