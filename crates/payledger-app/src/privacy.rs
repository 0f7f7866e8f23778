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
use payledger_store::call_bounds::bounded;
use serde_json::Value;
use sqlx::{PgPool, Row};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// An unwrapped key; its bytes are zeroed when it is dropped.
type SubjectKey = Zeroizing<[u8; 32]>;

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
    (
        "BookingCancelled",
        "forceCancelReason",
        "customerId",
        "customer",
    ),
    ("BookingConfirmed", "adminNotes", "customerId", "customer"),
    ("BookingRescheduled", "reason", "customerId", "customer"),
    (
        "SessionNotesRecorded",
        "reference",
        "customerId",
        "customer",
    ),
    // A payee's own data: why it was warned or its sales were stopped.
    ("PayeeWarned", "reason", "payeeId", "payee"),
    ("PayeeSalesSuspended", "reason", "payeeId", "payee"),
];

/// Whose personal data a sealed field is (docs/events.md, "Personal data and erasure").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectKind {
    Customer,
    Payee,
}

impl SubjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::Customer => "customer",
            SubjectKind::Payee => "payee",
        }
    }
}

/// The longest a process may keep an unwrapped subject key in memory
/// (`PAYLEDGER_PRIVACY_KEY_CACHE_TTL_MS` is refused above it). An erasure waits this long (and
/// [`ERASURE_CACHE_MARGIN`]) after destroying the keys before it answers, so that when it has
/// answered no process, whatever its own setting, can seal or reveal with a destroyed key.
pub const MAX_KEY_CACHE_TTL: std::time::Duration = std::time::Duration::from_millis(2_000);
/// Added to the erasure's wait: the keys' reads and the wait are timed on different processes'
/// monotonic clocks.
pub const ERASURE_CACHE_MARGIN: std::time::Duration = std::time::Duration::from_millis(100);
/// The default time a key stays cached.
pub const DEFAULT_KEY_CACHE_TTL: std::time::Duration = std::time::Duration::from_millis(1_000);
/// Subjects whose live key one process keeps at most (and as many erased keys remembered).
pub const MAX_CACHED_SUBJECT_KEYS: usize = 10_000;

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
    digest_key: Zeroizing<[u8; 32]>,
    cache: KeyCache,
    /// The bound of each of the vault's database calls (`PAYLEDGER_DATABASE_CALL_TIMEOUT_MS`).
    call_timeout_ms: u64,
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
        let digest_key = Zeroizing::new(digest_key(master_key));
        PrivacyVault {
            pool,
            master: Aes256Gcm::new(master_key.into()),
            digest_key,
            cache: KeyCache::new(DEFAULT_KEY_CACHE_TTL),
            call_timeout_ms: payledger_store::call_bounds::DEFAULT_DATABASE_CALL_TIMEOUT_MS,
        }
    }

    /// Gives each of the vault's database calls at most `timeout_ms`
    /// (`payledger_store::call_bounds`). The vault sits inside commands: it seals an event's
    /// fields between the decision and the append (so after the provider's answer, for the
    /// events that record one), reveals a refund's reason before the provider is asked, and
    /// reveals a command's answer after its append. None of these may make the command wait on a
    /// dead connection for minutes; a call given up is [`PrivacyError::Database`], which every
    /// caller answers as "unavailable" (503), and what it left undone is resumed by a retry (see
    /// the callers).
    pub fn with_call_timeout_ms(mut self, timeout_ms: u64) -> PrivacyVault {
        self.call_timeout_ms = timeout_ms;
        self
    }

    /// Keeps unwrapped keys this long (0: no cache; at most [`MAX_KEY_CACHE_TTL`]).
    pub fn with_key_cache_ttl(mut self, ttl: Duration) -> PrivacyVault {
        self.cache = KeyCache::new(ttl.min(MAX_KEY_CACHE_TTL));
        self
    }

    /// How long this vault keeps unwrapped keys (zero: not at all).
    pub fn key_cache_ttl(&self) -> Duration {
        self.cache.ttl
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
        let mut keys: HashMap<String, (i32, SubjectKey)> = HashMap::new();
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
            if !keys.contains_key(&subject) {
                let key = self.live_key(&subject).await?;
                keys.insert(subject.clone(), key);
            }
            let (generation, key) = &keys[&subject];
            for text in texts {
                *text = seal(*generation, key, &subject, field, text)?;
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
    /// The subject's newest live key, created when it has none. From the cache while it is
    /// fresh; otherwise one `SELECT` (and one `INSERT` for a subject's first key).
    async fn live_key(&self, subject: &str) -> Result<(i32, SubjectKey), PrivacyError> {
        if let Some(live) = self.cache.live(subject) {
            return Ok(live);
        }
        for _ in 0..3 {
            // Timed from before the read: a key read before an erasure committed expires no
            // later than the erasure's wait ends.
            let read_at = Instant::now();
            // At most one generation is live, the newest: an erasure destroys them all, and a
            // new generation is made only when none is live.
            let row = bounded(
                "reading a data subject's key",
                self.call_timeout_ms,
                sqlx::query(
                    "SELECT generation, wrapped_key FROM privacy_subject_keys \
                     WHERE subject = $1 ORDER BY generation DESC LIMIT 1",
                )
                .bind(subject)
                .fetch_optional(&self.pool),
            )
            .await?;
            let next = match row {
                Some(row) => {
                    let generation: i32 = row.try_get("generation")?;
                    let wrapped: Option<Vec<u8>> = row.try_get("wrapped_key")?;
                    if let Some(wrapped) = wrapped {
                        let key = self.unwrap_key(subject, generation, &wrapped)?;
                        self.cache.put_live(subject, generation, &key, read_at);
                        return Ok((generation, key));
                    }
                    generation + 1
                }
                None => 1,
            };
            let key: SubjectKey = Zeroizing::new(Aes256Gcm::generate_key(&mut OsRng).into());
            let wrapped = self.wrap_key(subject, next, &key)?;
            // Two processes racing insert one row; the loser reads the winner's key.
            // Given up, the insert may still land: the retry reads that key (or inserts the
            // next generation's, if it was lost), so no text is ever sealed with a key not stored.
            let inserted = bounded(
                "storing a data subject's key",
                self.call_timeout_ms,
                sqlx::query(
                    "INSERT INTO privacy_subject_keys (subject, generation, wrapped_key) \
                     VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                )
                .bind(subject)
                .bind(next)
                .bind(&wrapped)
                .execute(&self.pool),
            )
            .await?
            .rows_affected();
            if inserted == 1 {
                self.cache.put_live(subject, next, &key, read_at);
                return Ok((next, key));
            }
        }
        Err(PrivacyError::Unwrap)
    }

    /// The key of one generation (`None`: destroyed). From the cache while it is fresh.
    async fn key_of(
        &self,
        subject: &str,
        generation: i32,
    ) -> Result<Option<SubjectKey>, PrivacyError> {
        if let Some(known) = self.cache.key_of(subject, generation) {
            return Ok(known);
        }
        let read_at = Instant::now();
        let wrapped: Option<Option<Vec<u8>>> = bounded(
            "reading a data subject's key",
            self.call_timeout_ms,
            sqlx::query_scalar(
                "SELECT wrapped_key FROM privacy_subject_keys \
                 WHERE subject = $1 AND generation = $2",
            )
            .bind(subject)
            .bind(generation)
            .fetch_optional(&self.pool),
        )
        .await?;
        match wrapped {
            Some(Some(wrapped)) => {
                let key = self.unwrap_key(subject, generation, &wrapped)?;
                // A live key is the subject's only live one, its newest.
                self.cache.put_live(subject, generation, &key, read_at);
                Ok(Some(key))
            }
            Some(None) => {
                self.cache.put_erased(subject, generation);
                Ok(None)
            }
            // No such key (a token that was never ours): shown as erased, remembered nowhere.
            None => Ok(None),
        }
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
    ) -> Result<SubjectKey, PrivacyError> {
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
        let key = Zeroizing::new(key);
        let bytes: [u8; 32] = key
            .as_slice()
            .try_into()
            .map_err(|_| PrivacyError::Unwrap)?;
        Ok(Zeroizing::new(bytes))
    }

    /// Destroys every key of the subject. Returns how many live keys were destroyed (0: it was
    /// erased already, or never had one). This process forgets the keys at once; other
    /// processes' caches only after [`PrivacyVault::wait_out_key_caches`].
    pub async fn erase(&self, subject: &str) -> Result<u64, PrivacyError> {
        // Given up, the erasure may still commit; it is idempotent, and the caller answers 503
        // so that the operator repeats it.
        let destroyed = bounded(
            "erasing a data subject's keys",
            self.call_timeout_ms,
            sqlx::query(
                "UPDATE privacy_subject_keys SET wrapped_key = NULL, erased_at = now() \
                 WHERE subject = $1 AND wrapped_key IS NOT NULL",
            )
            .bind(subject)
            .execute(&self.pool),
        )
        .await?
        .rows_affected();
        self.cache.forget(subject);
        Ok(destroyed)
    }

    /// Waits until every key any process read before now has left its cache: the longest
    /// allowed cache time, whatever this process's own setting. An erasure answers only after
    /// it, so that once it has answered nothing anywhere seals or reveals with the erased keys.
    pub async fn wait_out_key_caches(&self) {
        tokio::time::sleep(MAX_KEY_CACHE_TTL + ERASURE_CACHE_MARGIN).await;
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

    /// Reveals every token in the string values of a JSON text written by `serde_json` (an
    /// answer of the API), without parsing it into a tree: the text is copied as it is, and each
    /// token in a value string (never in an object's key, as [`Self::reveal_json`]) is replaced
    /// by its text escaped for JSON. Tokens hold only `[A-Za-z0-9:_-]`, which `serde_json`
    /// never escapes, so a token in the text is exactly a token in the decoded string. `None`
    /// when the text is not well-formed enough to walk (an unterminated string); the caller then
    /// takes the tree path.
    pub async fn reveal_json_text(&self, json: &str) -> Result<Option<String>, PrivacyError> {
        let Some(strings) = value_strings_with_tokens(json.as_bytes()) else {
            return Ok(None);
        };
        let mut keys = KeyLookup::default();
        let mut out = String::with_capacity(json.len() + 64);
        let mut copied = 0;
        for (start, end) in strings {
            out.push_str(&json[copied..start]);
            out.push_str(
                &self
                    .reveal_in(&json[start..end], &mut keys, escape_json)
                    .await?,
            );
            copied = end;
        }
        out.push_str(&json[copied..]);
        Ok(Some(out))
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
            Some(key) => key.clone(),
            None => {
                let key = self.key_of(&subject, generation).await?;
                keys.0.insert(cache_key, key.clone());
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
        let key: &[u8; 32] = &key;
        let plain = Aes256Gcm::new(key.into())
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

/// Destroys a subject's keys, records it in `privacy-{kind}-{id}`, and answers once no process
/// can still hold the keys ([`PrivacyVault::wait_out_key_caches`]). Idempotent: asking again
/// destroys nothing and records nothing, unless the subject produced new sealed data since.
pub async fn erase_subject(
    vault: &PrivacyVault,
    store: &payledger_store::EventStore,
    kind: SubjectKind,
    subject_id: &str,
    reason: &str,
    at: chrono::DateTime<chrono::Utc>,
    context: &crate::context::RequestContext,
) -> Result<ErasureOutcome, ErasureError> {
    let outcome =
        erase_subject_unwaited(vault, store, kind, subject_id, reason, at, context).await?;
    vault.wait_out_key_caches().await;
    Ok(outcome)
}

/// [`erase_subject`] without the final wait, for a caller that erases many subjects and waits
/// once at the end (the retention job). Its caller must wait before it reports them erased.
pub async fn erase_subject_unwaited(
    vault: &PrivacyVault,
    store: &payledger_store::EventStore,
    kind: SubjectKind,
    subject_id: &str,
    reason: &str,
    at: chrono::DateTime<chrono::Utc>,
    context: &crate::context::RequestContext,
) -> Result<ErasureOutcome, ErasureError> {
    use payledger_domain::privacy::{subject_stream, PrivacyEvent, SubjectErased};
    use payledger_store::{AppendError, ExpectedVersion, NewEvent};
    let keys_destroyed = vault.erase(&subject(kind.as_str(), subject_id)).await?;
    let event = PrivacyEvent::SubjectErased(SubjectErased {
        subject_type: kind.as_str().into(),
        subject_id: subject_id.to_string(),
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
            &subject_stream(kind.as_str(), subject_id),
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

/// Destroys a customer's keys and records it in `privacy-customer-{id}` ([`erase_subject`]).
pub async fn erase_customer(
    vault: &PrivacyVault,
    store: &payledger_store::EventStore,
    customer_id: &payledger_domain::ids::CustomerId,
    reason: &str,
    at: chrono::DateTime<chrono::Utc>,
    context: &crate::context::RequestContext,
) -> Result<ErasureOutcome, ErasureError> {
    erase_subject(
        vault,
        store,
        SubjectKind::Customer,
        customer_id.as_str(),
        reason,
        at,
        context,
    )
    .await
}

/// Destroys a payee's keys and records it in `privacy-payee-{id}` ([`erase_subject`]).
pub async fn erase_payee(
    vault: &PrivacyVault,
    store: &payledger_store::EventStore,
    payee_id: &payledger_domain::ids::PayeeId,
    reason: &str,
    at: chrono::DateTime<chrono::Utc>,
    context: &crate::context::RequestContext,
) -> Result<ErasureOutcome, ErasureError> {
    erase_subject(
        vault,
        store,
        SubjectKind::Payee,
        payee_id.as_str(),
        reason,
        at,
        context,
    )
    .await
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

/// Escapes text for the inside of a JSON string (what `serde_json` writes between the quotes).
fn escape_json(text: &str) -> String {
    let quoted = serde_json::Value::String(text.to_string()).to_string();
    quoted[1..quoted.len() - 1].to_string()
}

/// The byte ranges (between the quotes) of the value strings of a JSON text that hold a token's
/// prefix, in order; object keys are passed over. `None` for a string left unterminated.
fn value_strings_with_tokens(json: &[u8]) -> Option<Vec<(usize, usize)>> {
    let prefix = TOKEN_PREFIX.as_bytes();
    let mut found = Vec::new();
    // Whether each open container is an object, and whether the next string is a key.
    let mut in_object: Vec<bool> = Vec::new();
    let mut expect_key = false;
    let mut at = 0;
    while at < json.len() {
        match json[at] {
            b'{' => {
                in_object.push(true);
                expect_key = true;
            }
            b'[' => {
                in_object.push(false);
                expect_key = false;
            }
            b'}' | b']' => {
                in_object.pop();
                expect_key = false;
            }
            b',' => expect_key = in_object.last() == Some(&true),
            b':' => expect_key = false,
            b'"' => {
                let start = at + 1;
                let mut end = start;
                loop {
                    match json.get(end)? {
                        b'\\' => end += 2,
                        b'"' => break,
                        _ => end += 1,
                    }
                }
                let text = json.get(start..end)?;
                if !expect_key && text.windows(prefix.len()).any(|w| w == prefix) {
                    found.push((start, end));
                }
                expect_key = false;
                at = end;
            }
            _ => {}
        }
        at += 1;
    }
    Some(found)
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
struct KeyLookup(HashMap<(String, i32), Option<SubjectKey>>);

/// Unwrapped keys one process keeps for a short while (docs/security.md, "Key cache"): the live
/// key of a subject until its time is up, and the keys known destroyed (a destroyed key never
/// comes back, so remembering it is always right). Bounded; never held across an await.
struct KeyCache {
    ttl: Duration,
    inner: Mutex<CachedKeys>,
}

#[derive(Default)]
struct CachedKeys {
    live: HashMap<String, LiveKey>,
    erased: HashSet<(String, i32)>,
}

struct LiveKey {
    generation: i32,
    key: SubjectKey,
    expires_at: Instant,
}

impl KeyCache {
    fn new(ttl: Duration) -> KeyCache {
        KeyCache {
            ttl,
            inner: Mutex::new(CachedKeys::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CachedKeys> {
        // A panic while holding it leaves nothing half-written that matters: a map of keys.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The subject's live key while it is fresh.
    fn live(&self, subject: &str) -> Option<(i32, SubjectKey)> {
        if self.ttl.is_zero() {
            return None;
        }
        let inner = self.lock();
        let live = inner.live.get(subject)?;
        (Instant::now() < live.expires_at).then(|| (live.generation, live.key.clone()))
    }

    /// `Some(Some(key))`: the key; `Some(None)`: destroyed; `None`: not known here.
    fn key_of(&self, subject: &str, generation: i32) -> Option<Option<SubjectKey>> {
        if self.ttl.is_zero() {
            return None;
        }
        let inner = self.lock();
        if inner.erased.contains(&(subject.to_string(), generation)) {
            return Some(None);
        }
        let live = inner.live.get(subject)?;
        if Instant::now() >= live.expires_at {
            return None;
        }
        match generation.cmp(&live.generation) {
            std::cmp::Ordering::Equal => Some(Some(live.key.clone())),
            // A newer generation is made only once every older one is destroyed.
            std::cmp::Ordering::Less => Some(None),
            std::cmp::Ordering::Greater => None,
        }
    }

    /// Keeps a key read at `read_at` until `read_at + ttl`.
    fn put_live(&self, subject: &str, generation: i32, key: &SubjectKey, read_at: Instant) {
        if self.ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut inner = self.lock();
        if inner.live.len() >= MAX_CACHED_SUBJECT_KEYS {
            inner.live.retain(|_, live| now < live.expires_at);
            if inner.live.len() >= MAX_CACHED_SUBJECT_KEYS {
                inner.live.clear();
            }
        }
        inner.live.insert(
            subject.to_string(),
            LiveKey {
                generation,
                key: key.clone(),
                expires_at: read_at + self.ttl,
            },
        );
    }

    fn put_erased(&self, subject: &str, generation: i32) {
        if self.ttl.is_zero() {
            return;
        }
        let mut inner = self.lock();
        if inner.erased.len() >= MAX_CACHED_SUBJECT_KEYS {
            inner.erased.clear();
        }
        inner.erased.insert((subject.to_string(), generation));
        if inner
            .live
            .get(subject)
            .is_some_and(|live| live.generation <= generation)
        {
            inner.live.remove(subject);
        }
    }

    /// Drops the subject's live key (this process erased it).
    fn forget(&self, subject: &str) {
        self.lock().live.remove(subject);
    }
}

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

    /// A vault whose keys are all in its cache: revealing never reaches the (unreachable) pool.
    fn vault_with_cached_keys(subjects: &[(&str, i32, [u8; 32])]) -> PrivacyVault {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .expect("a lazy pool");
        let vault = PrivacyVault::new(pool, &[7u8; 32]);
        for (subject, generation, key) in subjects {
            let key = Zeroizing::new(*key);
            vault
                .cache
                .put_live(subject, *generation, &key, Instant::now());
        }
        vault
    }

    #[tokio::test]
    async fn revealing_a_json_text_in_place_equals_revealing_its_tree() {
        let vault = vault_with_cached_keys(&[("customer:c1", 1, [1u8; 32])]);
        let key = [1u8; 32];
        let name = seal(1, &key, "customer:c1", "orderName", "Kim's \"order\" ü\n").unwrap();
        let other = seal(1, &key, "customer:c1", "reason", "changed my mind").unwrap();
        // Not a token after all (it does not parse): shown as it is by both paths.
        let unknown = format!("{TOKEN_PREFIX}x:y");
        let documents = [
            serde_json::json!({"orderName": name, "status": "PAID"}),
            serde_json::json!({"items": [{"text": name}, {"text": format!("before {other} after")}],
                "nested": {"deeper": [[name.clone()]]}}),
            // A token as an object's key is left alone by both paths.
            serde_json::json!({ name.clone(): {"reason": other}, "plain": "no token \" here" }),
            serde_json::json!({"a": "pl-sealed:v1:", "b": unknown, "c": [1, 2.5, null, true]}),
            serde_json::json!([name, {"k": "\\\"pl-sealed:v1:x\\"}]),
        ];
        for document in documents {
            let text = serde_json::to_string(&document).unwrap();
            let mut tree = document.clone();
            vault.reveal_json(&mut tree).await.unwrap();
            let in_place = vault
                .reveal_json_text(&text)
                .await
                .unwrap()
                .expect("a well-formed text");
            let in_place: serde_json::Value = serde_json::from_str(&in_place).unwrap();
            assert_eq!(in_place, tree, "{text}");
        }
        let revealed = vault
            .reveal_json_text(&serde_json::json!({ "orderName": name }).to_string())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(revealed, r#"{"orderName":"Kim's \"order\" ü\n"}"#);
        assert!(vault
            .reveal_json_text(r#"{"a": "unterminated"#)
            .await
            .unwrap()
            .is_none());
    }

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
    fn the_key_cache_expires_is_bounded_and_never_forgets_an_erasure() {
        let key = Zeroizing::new([9u8; 32]);
        let cache = KeyCache::new(Duration::from_millis(50));
        let now = Instant::now();
        cache.put_live("customer:a", 2, &key, now);
        assert_eq!(cache.live("customer:a").map(|(g, _)| g), Some(2));
        assert!(matches!(cache.key_of("customer:a", 2), Some(Some(_))));
        // An older generation than the live one is destroyed; a newer one is not known here.
        assert!(matches!(cache.key_of("customer:a", 1), Some(None)));
        assert!(cache.key_of("customer:a", 3).is_none());
        // Timed from the read: a read long ago is not kept at all.
        cache.put_live(
            "customer:b",
            1,
            &key,
            now.checked_sub(Duration::from_secs(1)).unwrap_or(now),
        );
        assert!(cache.live("customer:b").is_none());
        // A destroyed key is remembered and drops the live entry it ends.
        cache.put_erased("customer:a", 2);
        assert!(cache.live("customer:a").is_none());
        assert!(matches!(cache.key_of("customer:a", 2), Some(None)));
        std::thread::sleep(Duration::from_millis(60));
        assert!(matches!(cache.key_of("customer:a", 2), Some(None)));
        // Bounded: never more than the maximum of subjects.
        for n in 0..MAX_CACHED_SUBJECT_KEYS + 10 {
            cache.put_live(&format!("customer:{n}"), 1, &key, Instant::now());
        }
        assert!(cache.lock().live.len() <= MAX_CACHED_SUBJECT_KEYS);
        // Off: nothing is kept.
        let off = KeyCache::new(Duration::ZERO);
        off.put_live("customer:a", 1, &key, Instant::now());
        assert!(off.live("customer:a").is_none() && off.key_of("customer:a", 1).is_none());
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
