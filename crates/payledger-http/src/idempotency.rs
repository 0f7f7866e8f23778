//! `Idempotency-Key` on every command endpoint (the routes marked `command` in
//! [`crate::auth::ROUTES`]).
//!
//! Keys are scoped to the API client (the key's actor, `client:NAME`): two clients may use the same
//! key. The first request with a key inserts an `in_progress` row (`INSERT … ON CONFLICT DO
//! NOTHING`, and the row count says whether this request owns the key — never assume it did, the
//! lesson of Eventuous #553), runs, and stores its status and body. Then:
//! - the same key with the same request (method, path, query and body, as a SHA-256 fingerprint;
//!   a JSON body is compared as JSON, so whitespace and key order do not matter) gets the stored
//!   status and body with `Idempotency-Replayed: true`;
//! - the same key with another request is 422 `E_IDEMPOTENCY_KEY_REUSED`;
//! - a duplicate that arrives while the first still runs waits for its answer (at most
//!   [`IdempotencyConfig::wait_ms`]), then 409 `E_IDEMPOTENCY_IN_PROGRESS` with `Retry-After`.
//!
//! Successes and business failures (4xx) are pinned to the key. Answers that invite a retry are
//! not: 5xx, 429 and anything with `Retry-After` (provider down, contention, in progress) release
//! the key so the same key can try again. If a process dies mid-request, its row's lease
//! (`locked_until`) runs out and a retry takes the key over; the commands underneath are
//! idempotent on their own (order ids, refund ids, provider idempotency keys), so running the
//! request again does not charge twice. Rows live at least [`IdempotencyConfig::ttl_hours`], then
//! [`run_purger`] deletes them.

use crate::auth::rule_for;
use crate::dto::MAX_BODY_BYTES;
use crate::errors::{ApiError, ErrorCode};
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue, CONTENT_TYPE, LOCATION};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::web::{self, Bytes, BytesMut};
use actix_web::{HttpMessage, HttpResponse, ResponseError};
use futures::StreamExt;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Row};
use std::time::Duration;

pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
pub const REPLAYED_HEADER: &str = "idempotency-replayed";
/// Stripe's limit; long enough for a UUID with a prefix, short enough to index.
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;
/// Responses larger than this are answered but not pinned (command answers are far smaller).
pub const MAX_STORED_RESPONSE_BYTES: usize = 256 * 1024;
/// Rows deleted per purge statement, so a purge never holds locks for long.
const PURGE_BATCH_ROWS: i64 = 10_000;

#[derive(Debug, Clone)]
pub struct IdempotencyConfig {
    /// How long a duplicate waits for the first request's answer before 409.
    pub wait_ms: u64,
    /// How long a running request owns its key; a retry after this takes it over.
    pub lease_ms: u64,
    /// Keys are kept at least this long.
    pub ttl_hours: u32,
    /// How often `serve` purges expired keys.
    pub purge_interval_ms: u64,
    /// Longest wait for one step's database calls (claiming, completing, releasing a key);
    /// then the request is a 503 (`payledger_store::call_bounds`).
    pub call_timeout_ms: u64,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        IdempotencyConfig {
            wait_ms: 10_000,
            lease_ms: 120_000,
            ttl_hours: 24,
            purge_interval_ms: 15 * 60 * 1000,
            call_timeout_ms: payledger_store::call_bounds::DEFAULT_DATABASE_CALL_TIMEOUT_MS,
        }
    }
}

/// The idempotency key of the running request, for handlers that create something without a
/// caller-chosen id (an order without `orderId`, a refund without `refundId`): deriving the id
/// from the key makes a retry that took over a dead request's key find the same order or refund
/// instead of creating a second one.
#[derive(Debug, Clone)]
pub struct IdempotencyScope {
    /// Hex of SHA-256 over the client and the key: stable, and safe to use in an id.
    pub digest: String,
}

impl IdempotencyScope {
    /// An id of at most 64 characters: `{prefix}_{first 40 hex digits}`.
    pub fn derived_id(&self, prefix: &str) -> String {
        format!("{prefix}_{}", &self.digest[..40])
    }
}

/// The scope of this request, when it carries an idempotency key on a command route.
pub fn scope(request: &actix_web::HttpRequest) -> Option<IdempotencyScope> {
    request.extensions().get::<IdempotencyScope>().cloned()
}

/// The stored idempotency keys.
pub struct IdempotencyStore {
    pool: PgPool,
    config: IdempotencyConfig,
}

/// A stored answer.
#[derive(Debug, Clone)]
struct StoredResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

enum Begin {
    /// This request owns the key: run it.
    Owner,
    Replay(StoredResponse),
    Mismatch,
    InProgress,
}

impl IdempotencyStore {
    pub fn new(pool: PgPool, config: IdempotencyConfig) -> IdempotencyStore {
        IdempotencyStore { pool, config }
    }

    /// Claims the key, or finds its stored answer; bounded by `call_timeout_ms`.
    async fn begin(
        &self,
        client: &str,
        key: &str,
        fingerprint: &[u8; 32],
        method: &str,
        path: &str,
    ) -> Result<Begin, sqlx::Error> {
        payledger_store::call_bounds::bounded(
            "claiming an idempotency key",
            self.config.call_timeout_ms,
            self.begin_unbounded(client, key, fingerprint, method, path),
        )
        .await
    }

    async fn begin_unbounded(
        &self,
        client: &str,
        key: &str,
        fingerprint: &[u8; 32],
        method: &str,
        path: &str,
    ) -> Result<Begin, sqlx::Error> {
        let lease_ms = self.config.lease_ms as f64;
        // A row purged between the INSERT and the SELECT: try again, a bounded number of times.
        for _ in 0..3 {
            let inserted = sqlx::query(
                "INSERT INTO idempotency_keys \
                 (client, idempotency_key, fingerprint, method, path, state, locked_until) \
                 VALUES ($1, $2, $3, $4, $5, 'in_progress', \
                         now() + make_interval(secs => $6 / 1000.0)) \
                 ON CONFLICT (client, idempotency_key) DO NOTHING",
            )
            .bind(client)
            .bind(key)
            .bind(fingerprint.as_slice())
            .bind(method)
            .bind(path)
            .bind(lease_ms)
            .execute(&self.pool)
            .await?;
            if inserted.rows_affected() == 1 {
                return Ok(Begin::Owner);
            }
            let Some(row) = sqlx::query(
                "SELECT fingerprint, state, locked_until < now() AS lease_expired, \
                        response_status, response_headers, response_body \
                 FROM idempotency_keys WHERE client = $1 AND idempotency_key = $2",
            )
            .bind(client)
            .bind(key)
            .fetch_optional(&self.pool)
            .await?
            else {
                continue;
            };
            let stored_fingerprint: Vec<u8> = row.try_get("fingerprint")?;
            if stored_fingerprint.as_slice() != fingerprint.as_slice() {
                return Ok(Begin::Mismatch);
            }
            let state: String = row.try_get("state")?;
            if state == "completed" {
                let status: i16 = row.try_get("response_status")?;
                let headers: Option<Value> = row.try_get("response_headers")?;
                let body: Vec<u8> = row.try_get("response_body")?;
                return Ok(Begin::Replay(StoredResponse {
                    status: status as u16,
                    headers: headers
                        .and_then(|h| serde_json::from_value(h).ok())
                        .unwrap_or_default(),
                    body,
                }));
            }
            let lease_expired: bool = row.try_get("lease_expired")?;
            if lease_expired {
                // Its owner died (or ran far longer than any request may): take the key over.
                // Only one of several retries gets the row, and the row count says which.
                let taken = sqlx::query(
                    "UPDATE idempotency_keys \
                     SET locked_until = now() + make_interval(secs => $3 / 1000.0) \
                     WHERE client = $1 AND idempotency_key = $2 \
                       AND state = 'in_progress' AND locked_until < now()",
                )
                .bind(client)
                .bind(key)
                .bind(lease_ms)
                .execute(&self.pool)
                .await?;
                if taken.rows_affected() == 1 {
                    return Ok(Begin::Owner);
                }
            }
            return Ok(Begin::InProgress);
        }
        Ok(Begin::InProgress)
    }

    async fn complete(
        &self,
        client: &str,
        key: &str,
        response: &StoredResponse,
    ) -> Result<(), sqlx::Error> {
        let headers = serde_json::to_value(&response.headers).unwrap_or(Value::Null);
        let update = sqlx::query(
            "UPDATE idempotency_keys SET state = 'completed', response_status = $3, \
                    response_headers = $4, response_body = $5, completed_at = now() \
             WHERE client = $1 AND idempotency_key = $2 AND state = 'in_progress'",
        )
        .bind(client)
        .bind(key)
        .bind(response.status as i16)
        .bind(headers)
        .bind(&response.body)
        .execute(&self.pool);
        let updated = payledger_store::call_bounds::bounded(
            "storing an idempotent answer",
            self.config.call_timeout_ms,
            update,
        )
        .await?;
        if updated.rows_affected() != 1 {
            // Someone took the key over after our lease ran out and answered first; both ran the
            // same idempotent commands, so the stored answer stands.
            tracing::warn!(
                client,
                "idempotency key completed by another request after its lease expired"
            );
        }
        Ok(())
    }

    async fn release(&self, client: &str, key: &str) -> Result<(), sqlx::Error> {
        let delete = sqlx::query(
            "DELETE FROM idempotency_keys \
             WHERE client = $1 AND idempotency_key = $2 AND state = 'in_progress'",
        )
        .bind(client)
        .bind(key)
        .execute(&self.pool);
        payledger_store::call_bounds::bounded(
            "releasing an idempotency key",
            self.config.call_timeout_ms,
            delete,
        )
        .await?;
        Ok(())
    }

    /// Deletes keys older than the TTL; returns how many.
    pub async fn purge_expired(&self) -> Result<u64, sqlx::Error> {
        let mut purged = 0;
        loop {
            let deleted = sqlx::query(
                "DELETE FROM idempotency_keys WHERE ctid IN ( \
                     SELECT ctid FROM idempotency_keys \
                     WHERE created_at < now() - make_interval(hours => $1) LIMIT $2)",
            )
            .bind(self.config.ttl_hours as i32)
            .bind(PURGE_BATCH_ROWS)
            .execute(&self.pool)
            .await?
            .rows_affected();
            purged += deleted;
            if deleted < PURGE_BATCH_ROWS as u64 {
                return Ok(purged);
            }
        }
    }
}

/// Purges expired keys forever, every `purge_interval_ms` (a background job of `serve`).
pub async fn run_purger(store: std::sync::Arc<IdempotencyStore>) {
    let every = Duration::from_millis(store.config.purge_interval_ms.max(1_000));
    loop {
        match store.purge_expired().await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "purged expired idempotency keys"),
            Err(error) => tracing::warn!(%error, "failed to purge idempotency keys"),
        }
        tokio::time::sleep(every).await;
    }
}

/// 1 to 255 printable ASCII characters, no spaces.
fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_IDEMPOTENCY_KEY_CHARS
        && key.bytes().all(|b| b.is_ascii_graphic())
}

/// SHA-256 over method, path, query and body. A JSON body is hashed in its canonical form.
fn fingerprint(method: &str, path: &str, query: &str, body: &[u8]) -> [u8; 32] {
    let canonical = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| serde_json::to_vec(&canonicalize(v)).ok());
    let mut hasher = Sha256::new();
    for part in [method.as_bytes(), path.as_bytes(), query.as_bytes()] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher.update(canonical.as_deref().unwrap_or(body));
    hasher.finalize().into()
}

fn hex_digest(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Object keys sorted at every level.
fn canonicalize(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, canonicalize(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonicalize).collect()),
        other => other,
    }
}

/// Whether an answer invites the client to try again, so must not be pinned to the key.
fn retryable(response: &HttpResponse<impl MessageBody>) -> bool {
    response.status().is_server_error()
        || response.status() == StatusCode::TOO_MANY_REQUESTS
        || response.headers().contains_key("retry-after")
}

fn error_response(request: ServiceRequest, error: ApiError) -> ServiceResponse<BoxBody> {
    // Built from the error itself, so the request log can name its code.
    request.error_response(error).map_into_boxed_body()
}

/// The idempotency middleware; mount it with `actix_web::middleware::from_fn`, inside
/// `auth::authenticate` (it needs the principal).
pub async fn idempotency(
    mut request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(header) = request.headers().get(IDEMPOTENCY_KEY_HEADER).cloned() else {
        return Ok(next.call(request).await?.map_into_boxed_body());
    };
    let is_command = request
        .match_pattern()
        .and_then(|p| rule_for(request.method(), &p))
        .is_some_and(|r| r.command);
    let principal = request
        .extensions()
        .get::<payledger_app::api_keys::Principal>()
        .cloned();
    let (true, Some(principal)) = (is_command, principal) else {
        // Reads are idempotent by nature; open routes have no client to scope keys to.
        return Ok(next.call(request).await?.map_into_boxed_body());
    };
    let Some(key) = header
        .to_str()
        .ok()
        .filter(|k| valid_key(k))
        .map(str::to_string)
    else {
        return Ok(error_response(
            request,
            ApiError::new(
                ErrorCode::InvalidIdempotencyKey,
                format!(
                    "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} printable ASCII characters without spaces"
                ),
            ),
        ));
    };
    let Some(store) = request
        .app_data::<web::Data<crate::state::AppState>>()
        .map(|s| s.idempotency.clone())
    else {
        return Ok(error_response(
            request,
            ApiError::internal("application state missing"),
        ));
    };
    let body = match read_body(&mut request).await {
        Ok(body) => body,
        Err(error) => return Ok(error_response(request, error)),
    };
    let method = request.method().to_string();
    let path = request.path().to_string();
    let fingerprint = fingerprint(&method, &path, request.query_string(), &body);
    request.set_payload(body.into());
    let client = principal.actor();
    let digest = hex_digest(&[client.as_bytes(), b"\n", key.as_bytes()]);
    request.extensions_mut().insert(IdempotencyScope { digest });

    let deadline = tokio::time::Instant::now() + Duration::from_millis(store.config.wait_ms);
    loop {
        let begun = match store
            .begin(&client, &key, &fingerprint, &method, &path)
            .await
        {
            Ok(begun) => begun,
            Err(error) => return Ok(error_response(request, ApiError::from(error))),
        };
        match begun {
            Begin::Owner => return run_and_store(request, next, &store, &client, &key).await,
            Begin::Replay(stored) => {
                payledger_metrics::metrics().idempotency_replay();
                return Ok(replay(request, stored));
            }
            Begin::Mismatch => {
                payledger_metrics::metrics().idempotency_conflict();
                return Ok(error_response(
                    request,
                    ApiError::new(
                        ErrorCode::IdempotencyKeyReused,
                        "this Idempotency-Key was used with a different request; use a new key",
                    ),
                ));
            }
            Begin::InProgress if tokio::time::Instant::now() >= deadline => {
                payledger_metrics::metrics().idempotency_conflict();
                return Ok(error_response(
                    request,
                    ApiError::new(
                        ErrorCode::IdempotencyInProgress,
                        "a request with this Idempotency-Key is still running",
                    )
                    .retry_after(1),
                ));
            }
            Begin::InProgress => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
}

async fn read_body(request: &mut ServiceRequest) -> Result<Bytes, ApiError> {
    let mut payload = request.take_payload();
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::new(ErrorCode::InvalidJson, e.to_string()))?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(ApiError::new(
                ErrorCode::BodyTooLarge,
                format!("the body is larger than {MAX_BODY_BYTES} bytes"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

async fn run_and_store(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
    store: &IdempotencyStore,
    client: &str,
    key: &str,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let response = match next.call(request).await {
        Ok(response) => response,
        Err(error) => {
            let _ = store.release(client, key).await;
            return Err(error);
        }
    };
    if retryable(response.response()) {
        if let Err(error) = store.release(client, key).await {
            tracing::warn!(%error, "failed to release an idempotency key");
        }
        return Ok(response.map_into_boxed_body());
    }
    let (http_request, http_response) = response.into_parts();
    let (head, body) = http_response.into_parts();
    let body = match actix_web::body::to_bytes(body).await {
        Ok(body) => body,
        Err(_) => {
            let _ = store.release(client, key).await;
            return Ok(ServiceResponse::new(
                http_request,
                ApiError::internal("failed to buffer a command response").error_response(),
            ));
        }
    };
    if body.len() <= MAX_STORED_RESPONSE_BYTES {
        let stored = StoredResponse {
            status: head.status().as_u16(),
            headers: [CONTENT_TYPE, LOCATION]
                .iter()
                .filter_map(|name| {
                    head.headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(|v| (name.as_str().to_string(), v.to_string()))
                })
                .collect(),
            // A client secret (Stripe 3-D Secure) reaches the client once and is never kept.
            body: crate::dto::without_client_secret(&body).unwrap_or_else(|| body.to_vec()),
        };
        if let Err(error) = store.complete(client, key, &stored).await {
            // The command happened; only the replay is lost. Release so a retry is not stuck.
            tracing::warn!(%error, "failed to store an idempotent response");
            let _ = store.release(client, key).await;
        }
    } else {
        let _ = store.release(client, key).await;
    }
    Ok(ServiceResponse::new(
        http_request,
        head.set_body(BoxBody::new(body)),
    ))
}

fn replay(request: ServiceRequest, stored: StoredResponse) -> ServiceResponse<BoxBody> {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response = HttpResponse::build(status);
    for (name, value) in &stored.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::from_str(value),
        ) {
            response.insert_header((name, value));
        }
    }
    response.insert_header((REPLAYED_HEADER, "true"));
    let response = response.body(stored.body);
    request.into_response(response).map_into_boxed_body()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_compares_json_as_json_and_everything_else_exactly() {
        let a = fingerprint(
            "POST",
            "/v1/orders",
            "",
            br#"{"a": 1, "b": [1, {"y": 2, "x": 1}]}"#,
        );
        let b = fingerprint(
            "POST",
            "/v1/orders",
            "",
            br#"{"b":[1,{"x":1,"y":2}],"a":1}"#,
        );
        assert_eq!(a, b);
        assert_ne!(
            a,
            fingerprint(
                "POST",
                "/v1/orders",
                "",
                br#"{"a": 2, "b": [1, {"y": 2, "x": 1}]}"#
            )
        );
        assert_ne!(
            a,
            fingerprint(
                "POST",
                "/v1/orderz",
                "",
                br#"{"a": 1, "b": [1, {"y": 2, "x": 1}]}"#
            )
        );
        assert_ne!(
            a,
            fingerprint(
                "POST",
                "/v1/orders",
                "x=1",
                br#"{"a": 1, "b": [1, {"y": 2, "x": 1}]}"#
            )
        );
        // Length-prefixed parts: moving a byte from the path into the query changes the hash.
        assert_ne!(
            fingerprint("POST", "/ab", "c", b""),
            fingerprint("POST", "/a", "bc", b"")
        );
        assert_ne!(
            fingerprint("POST", "/", "", b"not json"),
            fingerprint("POST", "/", "", b"not json ")
        );
    }

    #[test]
    fn keys_are_printable_and_bounded() {
        assert!(valid_key("order-7:confirm"));
        assert!(valid_key(&"k".repeat(255)));
        assert!(!valid_key(""));
        assert!(!valid_key(&"k".repeat(256)));
        assert!(!valid_key("has space"));
        assert!(!valid_key("tab\t"));
        assert!(!valid_key("ключ"));
    }

    #[test]
    fn retry_invitations_are_not_pinned() {
        assert!(retryable(&HttpResponse::ServiceUnavailable().finish()));
        assert!(retryable(&HttpResponse::InternalServerError().finish()));
        assert!(retryable(
            &HttpResponse::Conflict()
                .insert_header(("Retry-After", "1"))
                .finish()
        ));
        assert!(!retryable(&HttpResponse::Conflict().finish()));
        assert!(!retryable(&HttpResponse::PaymentRequired().finish()));
        assert!(!retryable(&HttpResponse::Created().finish()));
    }
}
