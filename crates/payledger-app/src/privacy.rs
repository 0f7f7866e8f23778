//! Crypto-shredding: personal fields are stored in events encrypted with a key per data subject,
//! so that destroying the key erases them without changing a byte of the log.
//!
//! - **Sealing** happens on the way into the store (the executor, after the domain decided and
//!   encoded its events): each personal field of [`PERSONAL_FIELDS`] is replaced by a token
//!   `pl-sealed:v1:{generation}:{subject, base64url}:{nonce ‖ AES-256-GCM ciphertext, base64url}`.
//!   The event's hash covers the token, so chains and checkpoints verify before and after an
//!   erasure. The domain and the read models carry the token as opaque text: replays, rebuilds
//!   and projections stay deterministic functions of the log.
//! - **Revealing** happens on the way out (the HTTP layer's responses, the CLI timeline): a token
//!   becomes its text again, or [`ERASED`] once the subject's key is gone.
//! - **Keys** live in `privacy_subject_keys`, one row per subject and generation, each wrapped
//!   (AES-256-GCM) by a master key that is not in the database (`PAYLEDGER_PRIVACY_MASTER_KEY`
//!   or a 0600 file; the binary decides). Erasing a subject sets its wrapped keys to NULL; data
//!   the subject produces afterwards gets a new generation.

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use serde_json::Value;
use sqlx::{PgPool, Row};
use std::collections::HashMap;

/// What an erased field shows wherever it is presented.
pub const ERASED: &str = "[erased]";
pub const TOKEN_PREFIX: &str = "pl-sealed:v1:";

/// The personal fields payledger seals: (event type, path to the field, the payload field naming
/// its subject, the subject's kind). A field is a string or an array of strings; a path with a dot
/// reaches into an object (`emergency.evidence`). docs/events.md lists them and what is never
/// erased.
pub const PERSONAL_FIELDS: &[(&str, &str, &str, &str)] = &[
    ("OrderPlaced", "orderName", "customerId", "customer"),
    ("RefundRequested", "reason", "customerId", "customer"),
    ("EnrollmentCancelled", "reason", "customerId", "customer"),
    ("ClaimFiled", "description", "customerId", "customer"),
    ("ClaimFiled", "evidence", "customerId", "customer"),
    ("ClaimStatementSubmitted", "text", "customerId", "customer"),
    (
        "ClaimStatementSubmitted",
        "evidence",
        "customerId",
        "customer",
    ),
    ("ClaimResolved", "reason", "customerId", "customer"),
    ("ClaimAppealed", "reason", "customerId", "customer"),
    (
        "BookingCancelled",
        "emergency.evidence",
        "customerId",
        "customer",
    ),
];

/// What a keyed digest is for; part of what is digested, so a digest made for one purpose never
/// matches one made for another.
pub const REFUND_REASON_DIGEST: &str = "refund-reason";

#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    #[error("failed to read or write subject keys: {0}")]
    Database(#[from] sqlx::Error),
    #[error("a subject key does not unwrap with the master key (another master key?)")]
    Unwrap,
    #[error("the privacy master key must be 64 hex digits")]
    InvalidMasterKey,
}

/// Seals and reveals personal fields. Never prints a key.
pub struct PrivacyVault {
    pool: PgPool,
    master: Aes256Gcm,
    /// Keys the digests of sealed texts that are compared (a refund's reason): derived from the
    /// master key, so it is never in the database either.
    digest_key: [u8; 32],
}

impl std::fmt::Debug for PrivacyVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivacyVault")
    }
}

/// `customer:cust_1`: whose data a field is.
pub fn subject(kind: &str, id: &str) -> String {
    format!("{kind}:{id}")
}

impl PrivacyVault {
    pub fn new(pool: PgPool, master_key: &[u8; 32]) -> PrivacyVault {
        let digest_key = digest_key(master_key);
        PrivacyVault {
            pool,
            master: Aes256Gcm::new(master_key.into()),
            digest_key,
        }
    }

    /// A keyed digest (HMAC-SHA256, hex) of `text` for `purpose` in `scope` (an order and refund
    /// id): equal texts give equal digests in the same scope only, so a digest links nothing
    /// across orders, and without the master key it cannot be tried against guesses.
    pub fn digest(&self, purpose: &str, scope: &str, text: &str) -> String {
        keyed_digest(&self.digest_key, purpose, scope, text)
    }

    /// Parses a master key of 64 hex digits.
    pub fn parse_master_key(text: &str) -> Result<[u8; 32], PrivacyError> {
        let mut key = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut key).map_err(|_| PrivacyError::InvalidMasterKey)?;
        Ok(key)
    }

    /// Replaces the personal fields of one encoded event by sealed tokens (in place).
    pub async fn seal_event(
        &self,
        event_type: &str,
        payload: &mut Value,
    ) -> Result<(), PrivacyError> {
        // One key lookup per subject and event, however many texts it seals (a claim's
        // description and each evidence item).
        let mut keys: HashMap<String, (i32, [u8; 32])> = HashMap::new();
        for (kind_of_event, path, subject_field, kind) in PERSONAL_FIELDS {
            if *kind_of_event != event_type {
                continue;
            }
            let Some(subject_id) = payload.get(*subject_field).and_then(Value::as_str) else {
                continue;
            };
            let subject = subject(kind, subject_id);
            // The token names the field by its last segment: tokens hold no dots.
            let field = path.rsplit('.').next().unwrap_or(path);
            let Some(value) = path
                .split('.')
                .try_fold(&mut *payload, |value, key| value.get_mut(key))
            else {
                continue;
            };
            let mut texts: Vec<&mut String> = match value {
                Value::String(text) => vec![text],
                Value::Array(items) => items
                    .iter_mut()
                    .filter_map(|item| match item {
                        Value::String(text) => Some(text),
                        _ => None,
                    })
                    .collect(),
                _ => continue,
            };
            texts.retain(|text| {
                // Every non-empty text is sealed, however long: the domain bounds each field
                // (a claim's description is at most 2 000 characters, up to 8 000 bytes), and a
                // text left in clear for its size would be one erasure cannot reach.
                !(text.is_empty() || text.starts_with(TOKEN_PREFIX))
            });
            if texts.is_empty() {
                continue;
            }
            let (generation, key) = match keys.get(&subject) {
                Some(key) => *key,
                None => {
                    let key = self.live_key(&subject).await?;
                    keys.insert(subject.clone(), key);
                    key
                }
            };
            for text in texts {
                *text = seal(generation, &key, &subject, field, text)?;
            }
        }
        Ok(())
    }
}

/// The token of `text`: AES-256-GCM under the subject's key, the subject and field as
/// associated data (a token moved to another subject or field does not open).
fn seal(
    generation: i32,
    key: &[u8; 32],
    subject: &str,
    field: &str,
    text: &str,
) -> Result<String, PrivacyError> {
    let cipher = Aes256Gcm::new(key.into());
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let aad = format!("{subject}\n{field}");
    let sealed = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: text.as_bytes(),
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| PrivacyError::Unwrap)?;
    let mut bytes = nonce.to_vec();
    bytes.extend_from_slice(&sealed);
    Ok(format!(
        "{TOKEN_PREFIX}{generation}:{}:{field}:{}",
        B64.encode(subject),
        B64.encode(bytes)
    ))
}

impl PrivacyVault {
    /// The subject's newest live key, created when it has none.
    async fn live_key(&self, subject: &str) -> Result<(i32, [u8; 32]), PrivacyError> {
        for _ in 0..3 {
            let row = sqlx::query(
                "SELECT generation, wrapped_key FROM privacy_subject_keys \
                 WHERE subject = $1 AND wrapped_key IS NOT NULL ORDER BY generation DESC LIMIT 1",
            )
            .bind(subject)
            .fetch_optional(&self.pool)
            .await?;
            if let Some(row) = row {
                let generation: i32 = row.try_get("generation")?;
                let wrapped: Vec<u8> = row.try_get("wrapped_key")?;
                return Ok((generation, self.unwrap_key(subject, generation, &wrapped)?));
            }
            // A new generation after every erased one; two processes racing insert one row.
            let next: i32 = sqlx::query_scalar(
                "SELECT coalesce(max(generation), 0) + 1 FROM privacy_subject_keys WHERE subject = $1",
            )
            .bind(subject)
            .fetch_one(&self.pool)
            .await?;
            let key: [u8; 32] = Aes256Gcm::generate_key(&mut OsRng).into();
            let wrapped = self.wrap_key(subject, next, &key)?;
            sqlx::query(
                "INSERT INTO privacy_subject_keys (subject, generation, wrapped_key) \
                 VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind(subject)
            .bind(next)
            .bind(&wrapped)
            .execute(&self.pool)
            .await?;
        }
        Err(PrivacyError::Unwrap)
    }

    fn wrap_key(
        &self,
        subject: &str,
        generation: i32,
        key: &[u8; 32],
    ) -> Result<Vec<u8>, PrivacyError> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let aad = format!("{subject}\n{generation}");
        let sealed = self
            .master
            .encrypt(
                &nonce,
                Payload {
                    msg: key,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| PrivacyError::Unwrap)?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        Ok(bytes)
    }

    fn unwrap_key(
        &self,
        subject: &str,
        generation: i32,
        wrapped: &[u8],
    ) -> Result<[u8; 32], PrivacyError> {
        if wrapped.len() < 12 {
            return Err(PrivacyError::Unwrap);
        }
        let (nonce, sealed) = wrapped.split_at(12);
        let aad = format!("{subject}\n{generation}");
        let key = self
            .master
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| PrivacyError::Unwrap)?;
        key.try_into().map_err(|_| PrivacyError::Unwrap)
    }

    /// Destroys every key of the subject. Returns how many live keys were destroyed (0: it was
    /// erased already, or never had one).
    pub async fn erase(&self, subject: &str) -> Result<u64, PrivacyError> {
        let destroyed = sqlx::query(
            "UPDATE privacy_subject_keys SET wrapped_key = NULL, erased_at = now() \
             WHERE subject = $1 AND wrapped_key IS NOT NULL",
        )
        .bind(subject)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(destroyed)
    }

    /// Replaces every sealed token inside `text` by its text, or by [`ERASED`].
    pub async fn reveal_text(&self, text: &str) -> Result<String, PrivacyError> {
        if !text.contains(TOKEN_PREFIX) {
            return Ok(text.to_string());
        }
        let mut keys = KeyLookup::default();
        self.reveal_in(text, &mut keys, no_escape).await
    }

    /// Reveals every sealed token in a page of HTML. A revealed text is escaped for HTML (in
    /// text and in quoted attributes alike), so personal data can never become markup; tokens
    /// themselves hold nothing HTML escapes, so the page's escaping left them whole.
    pub async fn reveal_html(&self, html: &str) -> Result<String, PrivacyError> {
        if !html.contains(TOKEN_PREFIX) {
            return Ok(html.to_string());
        }
        let mut keys = KeyLookup::default();
        self.reveal_in(html, &mut keys, escape_html).await
    }

    /// Reveals every token in a JSON value (strings at any depth), in place.
    pub async fn reveal_json(&self, value: &mut Value) -> Result<(), PrivacyError> {
        let mut keys = KeyLookup::default();
        let mut stack = vec![value];
        while let Some(value) = stack.pop() {
            match value {
                Value::String(text) if text.contains(TOKEN_PREFIX) => {
                    *text = self.reveal_in(text, &mut keys, no_escape).await?;
                }
                Value::Array(items) => stack.extend(items.iter_mut()),
                Value::Object(map) => stack.extend(map.values_mut()),
                _ => {}
            }
        }
        Ok(())
    }

    async fn reveal_in(
        &self,
        text: &str,
        keys: &mut KeyLookup,
        escape: fn(&str) -> String,
    ) -> Result<String, PrivacyError> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find(TOKEN_PREFIX) {
            out.push_str(&rest[..start]);
            let token_and_after = &rest[start..];
            let end = token_and_after[TOKEN_PREFIX.len()..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_')))
                .map_or(token_and_after.len(), |i| i + TOKEN_PREFIX.len());
            let token = &token_and_after[..end];
            out.push_str(&escape(&self.reveal_token(token, keys).await?));
            rest = &token_and_after[end..];
        }
        out.push_str(rest);
        Ok(out)
    }

    async fn reveal_token(
        &self,
        token: &str,
        keys: &mut KeyLookup,
    ) -> Result<String, PrivacyError> {
        let Some((generation, subject, field, sealed)) = parse_token(token) else {
            // Not one of ours after all: shown as it is.
            return Ok(token.to_string());
        };
        let cache_key = (subject.clone(), generation);
        let key = match keys.0.get(&cache_key) {
            Some(key) => *key,
            None => {
                let wrapped: Option<Option<Vec<u8>>> = sqlx::query_scalar(
                    "SELECT wrapped_key FROM privacy_subject_keys WHERE subject = $1 AND generation = $2",
                )
                .bind(&subject)
                .bind(generation)
                .fetch_optional(&self.pool)
                .await?;
                let key = match wrapped.flatten() {
                    Some(wrapped) => Some(self.unwrap_key(&subject, generation, &wrapped)?),
                    None => None,
                };
                keys.0.insert(cache_key, key);
                key
            }
        };
        let Some(key) = key else {
            return Ok(ERASED.to_string());
        };
        if sealed.len() < 12 {
            return Ok(ERASED.to_string());
        }
        let (nonce, ciphertext) = sealed.split_at(12);
        let aad = format!("{subject}\n{field}");
        let plain = Aes256Gcm::new((&key).into())
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| PrivacyError::Unwrap)?;
        String::from_utf8(plain).map_err(|_| PrivacyError::Unwrap)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasureOutcome {
    /// Subject keys destroyed by this request (0: erased already, or nothing was ever sealed).
    pub keys_destroyed: u64,
    /// Whether this request appended `SubjectErased` (a repeated request appends nothing).
    pub recorded: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ErasureError {
    #[error(transparent)]
    Privacy(#[from] PrivacyError),
    #[error("failed to record the erasure: {0}")]
    Append(#[from] payledger_store::AppendError),
    #[error("failed to encode the erasure event: {0}")]
    Encode(#[from] payledger_domain::codec::CodecError),
}

/// Destroys a customer's keys and records it in `privacy-customer-{id}`. Idempotent: asking again
/// destroys nothing and records nothing, unless the customer produced new sealed data since.
pub async fn erase_customer(
    vault: &PrivacyVault,
    store: &payledger_store::EventStore,
    customer_id: &payledger_domain::ids::CustomerId,
    reason: &str,
    at: chrono::DateTime<chrono::Utc>,
    context: &crate::context::RequestContext,
) -> Result<ErasureOutcome, ErasureError> {
    use payledger_domain::privacy::{customer_stream, PrivacyEvent, SubjectErased};
    use payledger_store::{AppendError, ExpectedVersion, NewEvent};
    let keys_destroyed = vault
        .erase(&subject("customer", customer_id.as_str()))
        .await?;
    let event = PrivacyEvent::SubjectErased(SubjectErased {
        subject_type: "customer".into(),
        subject_id: customer_id.as_str().to_string(),
        keys_destroyed,
        reason: reason.to_string(),
        at,
    });
    let (event_type, payload) = payledger_domain::codec::encode(&event)?;
    // Nothing destroyed: record the request once (the first time), then never again.
    let expected = if keys_destroyed == 0 {
        ExpectedVersion::NoStream
    } else {
        ExpectedVersion::Any
    };
    match store
        .append(
            &customer_stream(customer_id.as_str()),
            expected,
            vec![NewEvent::new(event_type, payload, context.metadata())],
            false,
        )
        .await
    {
        Ok(_) => Ok(ErasureOutcome {
            keys_destroyed,
            recorded: true,
        }),
        Err(AppendError::WrongExpectedVersion { .. }) => Ok(ErasureOutcome {
            keys_destroyed,
            recorded: false,
        }),
        Err(error) => Err(error.into()),
    }
}

/// The digest key derived from the master key.
fn digest_key(master_key: &[u8; 32]) -> [u8; 32] {
    hmac_sha256(master_key, &[b"payledger privacy digest key v1"])
}

/// `hex(HMAC-SHA256(digest key, purpose ‖ "\n" ‖ scope ‖ "\n" ‖ text))`.
fn keyed_digest(digest_key: &[u8; 32], purpose: &str, scope: &str, text: &str) -> String {
    hex::encode(hmac_sha256(
        digest_key,
        &[
            purpose.as_bytes(),
            b"\n",
            scope.as_bytes(),
            b"\n",
            text.as_bytes(),
        ],
    ))
}

fn no_escape(text: &str) -> String {
    text.to_string()
}

/// Escapes text for HTML content and quoted attribute values.
fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

/// HMAC-SHA256 of the concatenated parts.
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    let mut mac =
        <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("HMAC takes a key of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Keys looked up while revealing one response (`None`: erased).
#[derive(Default)]
struct KeyLookup(HashMap<(String, i32), Option<[u8; 32]>>);

/// `(generation, subject, field, nonce ‖ ciphertext)` of a token.
fn parse_token(token: &str) -> Option<(i32, String, String, Vec<u8>)> {
    let mut parts = token.strip_prefix(TOKEN_PREFIX)?.split(':');
    let generation = parts.next()?.parse().ok()?;
    let subject = String::from_utf8(B64.decode(parts.next()?).ok()?).ok()?;
    let field = parts.next()?.to_string();
    let sealed = B64.decode(parts.next()?).ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some((generation, subject, field, sealed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_back_and_foreign_text_does_not() {
        let token = format!(
            "{TOKEN_PREFIX}2:{}:orderName:{}",
            B64.encode("customer:cust_1"),
            B64.encode([1u8; 40])
        );
        let (generation, subject, field, sealed) = parse_token(&token).unwrap();
        assert_eq!(
            (generation, subject.as_str(), field.as_str()),
            (2, "customer:cust_1", "orderName")
        );
        assert_eq!(sealed, vec![1u8; 40]);
        assert!(parse_token("pl-sealed:v1:x:y").is_none());
        assert!(parse_token("order name").is_none());
    }

    #[test]
    fn revealed_text_in_a_page_cannot_become_markup() {
        assert_eq!(
            escape_html(r#"<script>alert('x')</script> & "q""#),
            "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }

    #[test]
    fn digests_depend_on_the_key_the_scope_and_the_text() {
        let digest = |master: u8, scope: &str, text: &str| {
            keyed_digest(
                &digest_key(&[master; 32]),
                REFUND_REASON_DIGEST,
                scope,
                text,
            )
        };
        let base = digest(1, "o1:r1", "changed mind");
        assert_eq!(base.len(), 64);
        assert_eq!(base, digest(1, "o1:r1", "changed mind"));
        assert_ne!(base, digest(2, "o1:r1", "changed mind"));
        assert_ne!(base, digest(1, "o2:r1", "changed mind"));
        assert_ne!(base, digest(1, "o1:r1", "changed minds"));
    }
}
