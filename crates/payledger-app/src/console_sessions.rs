//! Operator console sessions: an API key exchanged for a server-side session.
//!
//! The browser holds only a random token (`pls_` + 64 hex digits, 256 bits from the OS CSPRNG);
//! the table keeps its SHA-256, the key it was opened with, a CSRF token and the expiry. A
//! session is valid while it has not expired, has not been ended (sign-out), and its key is not
//! revoked: revoking a key signs its operators out at their next click.
//!
//! Only roles that operate payledger may sign in: support, auditor and admin. A client key is a
//! shop's backend credential and is refused ([`SessionError::RoleNotAllowed`]).

use crate::api_keys::{self, Principal, Role};
use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Row};
use std::fmt;

const TOKEN_PREFIX: &str = "pls_";
const TOKEN_LENGTH: usize = TOKEN_PREFIX.len() + 64;
/// The longest session anyone may ask for: a working day.
pub const MAX_SESSION_TTL_S: i64 = 12 * 3600;

/// The session token as the browser holds it. Never printed.
pub struct SessionToken(String);

impl SessionToken {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(***)")
    }
}

/// A valid session: who is signed in, its CSRF token and when it ends.
#[derive(Debug, Clone)]
pub struct ConsoleSession {
    pub principal: Principal,
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("the API key is unknown or revoked")]
    UnknownKey,
    #[error("the {0} role cannot sign in to the console; use a support, auditor or admin key")]
    RoleNotAllowed(Role),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Key(#[from] api_keys::ApiKeyError),
}

/// Whether `role` may sign in to the console at all.
pub fn may_sign_in(role: Role) -> bool {
    matches!(role, Role::Support | Role::Auditor | Role::Admin)
}

/// Never card-shaped: the CSRF token goes back in every form, past the card-data screen.
fn random_hex() -> String {
    crate::tokens::random_hex(32)
}

fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Opens a session for the holder of `api_key`, valid for `ttl_s` seconds (at most
/// [`MAX_SESSION_TTL_S`]). Unknown, revoked and client keys are refused.
pub async fn sign_in(
    pool: &PgPool,
    api_key: &str,
    ttl_s: i64,
    now: DateTime<Utc>,
) -> Result<(SessionToken, ConsoleSession), SessionError> {
    if !api_keys::looks_like_key(api_key) {
        return Err(SessionError::UnknownKey);
    }
    let principal = api_keys::lookup(pool, &api_keys::hash_key(api_key))
        .await?
        .ok_or(SessionError::UnknownKey)?;
    if !may_sign_in(principal.role) {
        return Err(SessionError::RoleNotAllowed(principal.role));
    }
    let token = format!("{TOKEN_PREFIX}{}", random_hex());
    let csrf_token = random_hex();
    let expires_at = now + Duration::seconds(ttl_s.clamp(60, MAX_SESSION_TTL_S));
    sqlx::query(
        "INSERT INTO console_sessions (session_hash, key_id, csrf_token, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(hash_token(&token).as_slice())
    .bind(&principal.key_id)
    .bind(&csrf_token)
    .bind(now)
    .bind(expires_at)
    .execute(pool)
    .await?;
    Ok((
        SessionToken(token),
        ConsoleSession {
            principal,
            csrf_token,
            expires_at,
        },
    ))
}

/// The live session of `token`, if any: not expired, not ended, its key not revoked.
pub async fn lookup(
    pool: &PgPool,
    token: &str,
    now: DateTime<Utc>,
) -> Result<Option<ConsoleSession>, SessionError> {
    if token.len() != TOKEN_LENGTH || !token.starts_with(TOKEN_PREFIX) {
        return Ok(None);
    }
    let row = sqlx::query(
        "SELECT k.key_id, k.name, k.role, s.csrf_token, s.expires_at \
         FROM console_sessions s JOIN api_keys k ON k.key_id = s.key_id \
         WHERE s.session_hash = $1 AND s.ended_at IS NULL AND s.expires_at > $2 \
           AND k.revoked_at IS NULL",
    )
    .bind(hash_token(token).as_slice())
    .bind(now)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let role: String = row.try_get("role")?;
    let role = Role::parse(&role)?;
    if !may_sign_in(role) {
        return Ok(None);
    }
    Ok(Some(ConsoleSession {
        principal: Principal {
            key_id: row.try_get("key_id")?,
            name: row.try_get("name")?,
            role,
        },
        csrf_token: row.try_get("csrf_token")?,
        expires_at: row.try_get("expires_at")?,
    }))
}

/// Ends the session of `token` (sign-out). Ending an unknown or ended session is not an error.
pub async fn sign_out(pool: &PgPool, token: &str, now: DateTime<Utc>) -> Result<(), SessionError> {
    sqlx::query(
        "UPDATE console_sessions SET ended_at = $2 WHERE session_hash = $1 AND ended_at IS NULL",
    )
    .bind(hash_token(token).as_slice())
    .bind(now)
    .execute(pool)
    .await?;
    Ok(())
}

/// Deletes sessions that ended or expired more than a day before `now`; returns how many.
pub async fn purge(pool: &PgPool, now: DateTime<Utc>) -> Result<u64, SessionError> {
    let cutoff = now - Duration::days(1);
    let done = sqlx::query("DELETE FROM console_sessions WHERE expires_at < $1 OR ended_at < $1")
        .bind(cutoff)
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}
