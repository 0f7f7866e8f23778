//! API keys: who may call the API, and in which role.
//!
//! A key is `plk_` followed by 64 hex digits of 32 random bytes from the operating system's
//! CSPRNG. It is shown once, when created; the database keeps only its SHA-256. A fast hash is
//! enough because the key has 256 bits of entropy: no dictionary or brute force finds a
//! preimage, so a leaked table reveals no key, while each request costs one hash and one indexed
//! lookup (a slow password hash would make every request pay for protection the key does not
//! need, and hand an attacker a cheap way to burn CPU).
//!
//! Creating and revoking keys is an admin action: each one is also an event in `audit-admin`.

use crate::context::RequestContext;
use chrono::{DateTime, Utc};
use payledger_domain::codec;
use payledger_domain::operations::{AdminAuditEvent, ApiKeyChange, ADMIN_AUDIT_STREAM};
use payledger_store::call_bounds::bounded;
use payledger_store::{EventStore, ExpectedVersion, NewEvent};
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Row};
use std::fmt;

/// What a key may do. The route table in `payledger-http` says which roles each route admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// A shop's or platform's backend: issues commands and reads its own orders.
    Client,
    /// Reads orders, timelines and claims.
    Support,
    /// Reads streams, the global log and audit reports.
    Auditor,
    /// Everything, including switches, manual operations, rebuilds and replays.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Client, Role::Support, Role::Auditor, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Support => "support",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Result<Role, ApiKeyError> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == text)
            .ok_or_else(|| ApiKeyError::UnknownRole(text.chars().take(20).collect()))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The caller a valid key stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub key_id: String,
    pub name: String,
    pub role: Role,
}

impl Principal {
    /// The actor recorded in event metadata: `client:shop_7`, `admin:alice`, …
    pub fn actor(&self) -> String {
        format!("{}:{}", self.role, self.name)
    }
}

/// A stored key, without its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub key_id: String,
    pub name: String,
    pub role: Role,
    pub key_prefix: String,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// The key itself. `Debug` and `Display` never print it; [`ApiKeySecret::expose`] does, once.
pub struct ApiKeySecret(String);

impl ApiKeySecret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKeySecret(***)")
    }
}

/// A key just created: the record and the secret to hand over.
#[derive(Debug)]
pub struct CreatedKey {
    pub record: ApiKeyRecord,
    pub secret: ApiKeySecret,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    #[error("unknown role '{0}': use client, support, auditor or admin")]
    UnknownRole(String),
    #[error(
        "a key name is 1 to 64 characters of A-Z a-z 0-9 _ . - starting with a letter or digit"
    )]
    InvalidName,
    #[error("'{name}' already has {role} keys; a name keeps one role (the actor `{role}:{name}` owns its orders)")]
    NameHasAnotherRole { name: String, role: Role },
    #[error("no active key has the name or id '{0}'")]
    NotFound(String),
    #[error("a stored key has an unknown role: {0}")]
    CorruptRole(String),
    #[error("failed to record the key change in the audit stream: {0}")]
    Audit(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

pub const KEY_PREFIX: &str = "plk_";
/// `plk_` + 64 hex digits.
pub const KEY_LENGTH: usize = KEY_PREFIX.len() + 64;
/// Characters of the key kept in the clear to tell keys apart in lists.
const SHOWN_PREFIX_CHARS: usize = 12;

fn generate_secret() -> String {
    // Never card-shaped: the console's sign-in form carries the key past the card-data screen.
    format!("{KEY_PREFIX}{}", crate::tokens::random_hex(32))
}

/// The stored form of a key. Anything that is not shaped like a key hashes to something no
/// stored key has, so callers need not pre-validate (they do, to answer early).
pub fn hash_key(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Whether `text` could be a key at all (length and alphabet), checked before any lookup.
pub fn looks_like_key(text: &str) -> bool {
    text.len() == KEY_LENGTH
        && text.starts_with(KEY_PREFIX)
        && text[KEY_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    first_ok
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn record_of(row: &sqlx::postgres::PgRow) -> Result<ApiKeyRecord, ApiKeyError> {
    let role: String = row.try_get("role")?;
    Ok(ApiKeyRecord {
        key_id: row.try_get("key_id")?,
        name: row.try_get("name")?,
        role: Role::parse(&role).map_err(|_| ApiKeyError::CorruptRole(role))?,
        key_prefix: row.try_get("key_prefix")?,
        created_at: row.try_get("created_at")?,
        created_by: row.try_get("created_by")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

const RECORD_COLUMNS: &str = "key_id, name, role, key_prefix, created_at, created_by, revoked_at";

/// Creates a key for `name` in `role`, records it in `audit-admin`, and returns its secret.
pub async fn create_key(
    pool: &PgPool,
    store: &EventStore,
    name: &str,
    role: Role,
    context: &RequestContext,
) -> Result<CreatedKey, ApiKeyError> {
    if !valid_name(name) {
        return Err(ApiKeyError::InvalidName);
    }
    // Each call bounded by the store's setting (`call_bounds`): an admin's request must not
    // wait on a dead connection for minutes. A given-up insert or revocation may still commit
    // without its `audit-admin` event, as after a crash between the two; the key list shows it.
    let timeout_ms = store.call_timeout_ms();
    let existing_role: Option<String> = bounded(
        "looking up an API key's name",
        timeout_ms,
        sqlx::query_scalar("SELECT role FROM api_keys WHERE name = $1 LIMIT 1")
            .bind(name)
            .fetch_optional(pool),
    )
    .await?;
    if let Some(existing) = existing_role {
        let existing = Role::parse(&existing).map_err(|_| ApiKeyError::CorruptRole(existing))?;
        if existing != role {
            return Err(ApiKeyError::NameHasAnotherRole {
                name: name.to_string(),
                role: existing,
            });
        }
    }
    let created = bounded(
        "creating an API key",
        timeout_ms,
        insert_key(pool, name, role, &context.actor),
    )
    .await?;
    record_key_change(store, &created.record, false, context).await?;
    Ok(created)
}

async fn insert_key<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    name: &str,
    role: Role,
    created_by: &str,
) -> Result<CreatedKey, ApiKeyError> {
    let secret = generate_secret();
    let key_id = payledger_domain::card_numbers::first_without_card_number(|| {
        format!("key_{}", uuid::Uuid::new_v4().simple())
    });
    let row = sqlx::query(&format!(
        "INSERT INTO api_keys (key_id, name, role, key_hash, key_prefix, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING {RECORD_COLUMNS}"
    ))
    .bind(&key_id)
    .bind(name)
    .bind(role.as_str())
    .bind(hash_key(&secret).as_slice())
    .bind(&secret[..SHOWN_PREFIX_CHARS])
    .bind(created_by.chars().take(200).collect::<String>())
    .fetch_one(executor)
    .await?;
    Ok(CreatedKey {
        record: record_of(&row)?,
        secret: ApiKeySecret(secret),
    })
}

async fn record_key_change(
    store: &EventStore,
    record: &ApiKeyRecord,
    revoked: bool,
    context: &RequestContext,
) -> Result<(), ApiKeyError> {
    let change = ApiKeyChange {
        key_id: record.key_id.clone(),
        name: record.name.clone(),
        role: record.role.to_string(),
        at: record.revoked_at.unwrap_or(record.created_at),
    };
    let event = if revoked {
        AdminAuditEvent::ApiKeyRevoked(change)
    } else {
        AdminAuditEvent::ApiKeyCreated(change)
    };
    let (event_type, payload) =
        codec::encode(&event).map_err(|e| ApiKeyError::Audit(e.to_string()))?;
    store
        .append(
            ADMIN_AUDIT_STREAM,
            ExpectedVersion::Any,
            vec![NewEvent::new(event_type, payload, context.metadata())],
            false,
        )
        .await
        .map_err(|e| ApiKeyError::Audit(e.to_string()))?;
    Ok(())
}

/// Whether `name` holds an active key with the client role: an API client that can own
/// customers.
pub async fn is_active_client(pool: &PgPool, name: &str) -> Result<bool, ApiKeyError> {
    let found: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM api_keys WHERE name = $1 AND role = $2 AND revoked_at IS NULL LIMIT 1",
    )
    .bind(name)
    .bind(Role::Client.as_str())
    .fetch_optional(pool)
    .await?;
    Ok(found.is_some())
}

/// Every key, newest first (revoked ones included: revocation is history).
pub async fn list_keys(pool: &PgPool) -> Result<Vec<ApiKeyRecord>, ApiKeyError> {
    let rows = sqlx::query(&format!(
        "SELECT {RECORD_COLUMNS} FROM api_keys ORDER BY created_at DESC, key_id LIMIT 10000"
    ))
    .fetch_all(pool)
    .await?;
    rows.iter().map(record_of).collect()
}

/// Revokes the key with id `name_or_id`, or every active key of that name. Returns what it
/// revoked; each revocation is recorded in `audit-admin`.
pub async fn revoke(
    pool: &PgPool,
    store: &EventStore,
    name_or_id: &str,
    context: &RequestContext,
) -> Result<Vec<ApiKeyRecord>, ApiKeyError> {
    // Bounded like `create_key`'s calls.
    let revoking = format!(
        "UPDATE api_keys SET revoked_at = now() \
         WHERE (key_id = $1 OR name = $1) AND revoked_at IS NULL RETURNING {RECORD_COLUMNS}"
    );
    let rows = bounded(
        "revoking an API key",
        store.call_timeout_ms(),
        sqlx::query(&revoking).bind(name_or_id).fetch_all(pool),
    )
    .await?;
    if rows.is_empty() {
        return Err(ApiKeyError::NotFound(name_or_id.chars().take(80).collect()));
    }
    let revoked = rows.iter().map(record_of).collect::<Result<Vec<_>, _>>()?;
    for record in &revoked {
        record_key_change(store, record, true, context).await?;
    }
    Ok(revoked)
}

/// The active key with this hash, if any.
pub async fn lookup(pool: &PgPool, key_hash: &[u8; 32]) -> Result<Option<Principal>, ApiKeyError> {
    let row = sqlx::query(
        "SELECT key_id, name, role FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
    )
    .bind(key_hash.as_slice())
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let role: String = row.try_get("role")?;
    Ok(Some(Principal {
        key_id: row.try_get("key_id")?,
        name: row.try_get("name")?,
        role: Role::parse(&role).map_err(|_| ApiKeyError::CorruptRole(role))?,
    }))
}

/// The first keys of an installation, created only while the key table is empty (an advisory
/// lock makes several processes starting at once create one set). Returns the keys created, or
/// nothing when keys already exist.
///
/// Unlike [`create_key`] this records no `audit-admin` event: it is the installation itself, not
/// an admin, that creates them, before anyone can be recorded as acting; `serve` writes them to a
/// file only the operator can read. Every later key change is audited.
pub async fn seed_if_empty(
    pool: &PgPool,
    keys: &[(&str, Role)],
    created_by: &str,
) -> Result<Vec<CreatedKey>, ApiKeyError> {
    if keys.iter().any(|(name, _)| !valid_name(name)) {
        return Err(ApiKeyError::InvalidName);
    }
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('payledger.api_keys.seed'))")
        .execute(&mut *tx)
        .await?;
    let any: bool = sqlx::query_scalar("SELECT EXISTS (SELECT FROM api_keys)")
        .fetch_one(&mut *tx)
        .await?;
    if any {
        return Ok(vec![]);
    }
    let mut created = Vec::with_capacity(keys.len());
    for (name, role) in keys {
        created.push(insert_key(&mut *tx, name, *role, created_by).await?);
    }
    tx.commit().await?;
    Ok(created)
}

/// The keys `serve` creates on first start: an admin key and a client key for the Quickstart.
pub const BOOTSTRAP_KEYS: &[(&str, Role)] = &[("admin", Role::Admin), ("quickstart", Role::Client)];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_long_random_and_recognisable() {
        let a = generate_secret();
        let b = generate_secret();
        assert_ne!(a, b);
        assert!(looks_like_key(&a), "{a}");
        assert_eq!(a.len(), KEY_LENGTH);
        assert!(!looks_like_key(&a[..a.len() - 1]));
        assert!(!looks_like_key(&a.to_uppercase()));
        assert_ne!(hash_key(&a), hash_key(&b));
    }

    #[test]
    fn secrets_do_not_print() {
        let secret = ApiKeySecret(generate_secret());
        assert_eq!(format!("{secret:?}"), "ApiKeySecret(***)");
    }

    #[test]
    fn names_and_roles_are_checked() {
        assert!(valid_name("shop_7"));
        assert!(valid_name("a"));
        assert!(!valid_name(""));
        assert!(!valid_name("_x"));
        assert!(!valid_name("has space"));
        assert!(!valid_name(&"x".repeat(65)));
        assert_eq!(Role::parse("admin").unwrap(), Role::Admin);
        assert!(Role::parse("root").is_err());
    }
}
