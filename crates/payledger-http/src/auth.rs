//! Who may do what: API keys, roles and the one table of routes.
//!
//! Every request to a route that is not open carries an API key, as `Authorization: Bearer
//! <key>` or `X-Api-Key: <key>`. No key, a malformed, unknown or revoked key → 401
//! `E_UNAUTHENTICATED`; a key whose role the route does not admit → 403 `E_FORBIDDEN`.
//! [`ROUTES`] is the only place that says which role may call which route; a mounted route missing
//! from it admits admins only (fail closed) and logs a warning.
//!
//! Clients see only their own orders: the order's first event records the placing actor
//! (`client:NAME`), and reads and commands on an order of another client answer 404, exactly as
//! for an order that does not exist (so ids of other clients' orders cannot be probed).
//!
//! Every non-GET request made with an admin key is recorded in the `audit-admin` stream with its
//! outcome (who, what, when, from where).

use crate::errors::{ApiError, ErrorCode};
use crate::state::AppState;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderValue, WWW_AUTHENTICATE};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpRequest};
use payledger_app::api_keys::{self, Principal, Role};
use payledger_domain::ids::{CustomerId, OrderId};
use payledger_domain::operations::AdminAction;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a key lookup (found or not) is trusted. A revoked key stops working within this
/// time in every process; a new key works at once (an unknown key is looked up again once its
/// negative entry expires, so at most this long after a failed attempt with it).
pub const KEY_CACHE_TTL_MS: u64 = 5_000;
/// Keys remembered per process. On overflow expired entries go first, then everything.
pub const KEY_CACHE_CAPACITY: usize = 10_000;
/// Order owners remembered per process (an owner never changes, so no expiry is needed).
pub const OWNER_CACHE_CAPACITY: usize = 100_000;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No key needed (health, webhooks that carry their own signature, the API description).
    Open,
    /// A key with one of these roles.
    Roles(&'static [Role]),
}

/// One row of the route table.
#[derive(Debug, Clone, Copy)]
pub struct RouteRule {
    pub method: &'static str,
    /// The route pattern exactly as mounted (`/v1/orders/{order_id}`).
    pub pattern: &'static str,
    pub access: Access,
    /// A command: takes an `Idempotency-Key` (see `idempotency`).
    pub command: bool,
}

const CLIENT_SUPPORT_ADMIN: &[Role] = &[Role::Client, Role::Support, Role::Admin];
const CLIENT_ADMIN: &[Role] = &[Role::Client, Role::Admin];
const AUDITOR_ADMIN: &[Role] = &[Role::Auditor, Role::Admin];
const SUPPORT_ADMIN: &[Role] = &[Role::Support, Role::Admin];
const ADMIN: &[Role] = &[Role::Admin];
const SUPPORT_AUDITOR_ADMIN: &[Role] = &[Role::Support, Role::Auditor, Role::Admin];

const fn rule(method: &'static str, pattern: &'static str, access: Access) -> RouteRule {
    RouteRule {
        method,
        pattern,
        access,
        command: false,
    }
}

const fn command(method: &'static str, pattern: &'static str, roles: &'static [Role]) -> RouteRule {
    RouteRule {
        method,
        pattern,
        access: Access::Roles(roles),
        command: true,
    }
}

/// THE table: every route, the roles it admits, and whether it is a command.
///
/// Clients issue commands and read their own orders; support reads orders, timelines and
/// claims; auditors read streams, the global log and audit reports; admins may do everything.
pub const ROUTES: &[RouteRule] = &[
    rule("GET", "/healthz", Access::Open),
    rule("GET", "/readyz", Access::Open),
    // Orders and payments.
    command("POST", "/v1/orders", CLIENT_ADMIN),
    rule("GET", "/v1/orders", Access::Roles(CLIENT_SUPPORT_ADMIN)),
    rule(
        "GET",
        "/v1/orders/{order_id}",
        Access::Roles(CLIENT_SUPPORT_ADMIN),
    ),
    rule(
        "GET",
        "/v1/orders/{order_id}/timeline",
        Access::Roles(CLIENT_SUPPORT_ADMIN),
    ),
    rule(
        "GET",
        "/v1/orders/{order_id}/payment-status",
        Access::Roles(CLIENT_SUPPORT_ADMIN),
    ),
    command("POST", "/v1/orders/{order_id}/refunds", CLIENT_ADMIN),
    command("POST", "/v1/payments/confirm", CLIENT_ADMIN),
    // Billing keys, subscriptions and credit wallets (issue 4). Clients manage their customers'
    // keys, subscriptions and wallets; listing by status and charging on demand are for admins.
    command("POST", "/v1/billing-keys", CLIENT_ADMIN),
    command("DELETE", "/v1/billing-keys/{billing_key_id}", CLIENT_ADMIN),
    command("POST", "/v1/subscriptions", CLIENT_ADMIN),
    rule("GET", "/v1/subscriptions", Access::Roles(SUPPORT_ADMIN)),
    rule(
        "GET",
        "/v1/subscriptions/{subscription_id}",
        Access::Roles(CLIENT_SUPPORT_ADMIN),
    ),
    command("POST", "/v1/subscriptions/{subscription_id}/charge", ADMIN),
    command(
        "POST",
        "/v1/subscriptions/{subscription_id}/payment-method",
        CLIENT_ADMIN,
    ),
    command(
        "POST",
        "/v1/subscriptions/{subscription_id}/cancel",
        CLIENT_ADMIN,
    ),
    command(
        "POST",
        "/v1/subscriptions/{subscription_id}/resume",
        CLIENT_ADMIN,
    ),
    rule(
        "GET",
        "/v1/wallets/{customer_id}",
        Access::Roles(CLIENT_SUPPORT_ADMIN),
    ),
    command("POST", "/v1/wallets/{customer_id}/credits", CLIENT_ADMIN),
    command("POST", "/v1/wallets/{customer_id}/spend", CLIENT_ADMIN),
    // The raw log, for auditors.
    rule(
        "GET",
        "/v1/streams/{stream_id}",
        Access::Roles(AUDITOR_ADMIN),
    ),
    rule("GET", "/v1/events", Access::Roles(AUDITOR_ADMIN)),
    rule("GET", "/v1/audit/checkpoints", Access::Roles(AUDITOR_ADMIN)),
    rule(
        "GET",
        "/v1/audit/proofs/{position}",
        Access::Roles(AUDITOR_ADMIN),
    ),
    // Crypto-shredding (issue 20): erasure is an admin command, audited like the others.
    command(
        "POST",
        "/v1/admin/privacy/customers/{customer_id}/erase",
        ADMIN,
    ),
    command("POST", "/v1/admin/privacy/payees/{payee_id}/erase", ADMIN),
    // Operations (runbook §5–6): kill switches and manual operations.
    rule("GET", "/v1/admin/switches", Access::Roles(SUPPORT_ADMIN)),
    command("POST", "/v1/admin/switches/payments/suspend", ADMIN),
    command("POST", "/v1/admin/switches/payments/resume", ADMIN),
    command(
        "POST",
        "/v1/admin/switches/payees/{payee_id}/suspend",
        ADMIN,
    ),
    command("POST", "/v1/admin/switches/payees/{payee_id}/resume", ADMIN),
    command(
        "POST",
        "/v1/admin/orders/{order_id}/external-payments",
        ADMIN,
    ),
    command(
        "POST",
        "/v1/admin/orders/{order_id}/cancel-enrollment",
        ADMIN,
    ),
    // Bookings, claims, settlements and the journal (issue 5). Clients cancel and fulfil their
    // own orders and file claims about them; an emergency cancellation needs an admin key (the
    // handler checks). Admins assign and resolve claims and confirm and pay out statements.
    command("POST", "/v1/orders/{order_id}/cancel", CLIENT_ADMIN),
    command("POST", "/v1/orders/{order_id}/fulfil", CLIENT_ADMIN),
    command("POST", "/v1/claims", CLIENT_ADMIN),
    rule("GET", "/v1/claims", Access::Roles(SUPPORT_ADMIN)),
    rule("GET", "/v1/claims/stats", Access::Roles(SUPPORT_ADMIN)),
    rule(
        "GET",
        "/v1/claims/{claim_id}",
        Access::Roles(CLIENT_SUPPORT_ADMIN),
    ),
    command("POST", "/v1/claims/{claim_id}/statements", CLIENT_ADMIN),
    command("POST", "/v1/claims/{claim_id}/assign", ADMIN),
    command("POST", "/v1/claims/{claim_id}/resolve", ADMIN),
    command("POST", "/v1/claims/{claim_id}/appeal", CLIENT_ADMIN),
    rule(
        "GET",
        "/v1/settlements",
        Access::Roles(SUPPORT_AUDITOR_ADMIN),
    ),
    command("POST", "/v1/settlements/{statement_id}/confirm", ADMIN),
    command("POST", "/v1/settlements/{statement_id}/payout", ADMIN),
    rule(
        "GET",
        "/v1/journal/trial-balance",
        Access::Roles(AUDITOR_ADMIN),
    ),
    // Described here for the routes of the webhook/observability work (issue 6): webhooks carry
    // their own signatures, the API description and metrics are read by tools without keys.
    rule("POST", "/v1/webhooks/{provider}", Access::Open),
    rule(
        "GET",
        "/v1/admin/webhooks/dead-letters",
        Access::Roles(ADMIN),
    ),
    command("POST", "/v1/admin/webhooks/dead-letters/{id}/replay", ADMIN),
    rule(
        "GET",
        "/v1/admin/notifications/dead-letters",
        Access::Roles(ADMIN),
    ),
    command(
        "POST",
        "/v1/admin/notifications/dead-letters/{id}/replay",
        ADMIN,
    ),
    // The scenario clock of a test deployment (issue 17): admins read and move it.
    rule("GET", "/v1/admin/test-clock", Access::Roles(SUPPORT_ADMIN)),
    command("POST", "/v1/admin/test-clock/advance", ADMIN),
    command("POST", "/v1/admin/test-clock/set", ADMIN),
    // The provider's money, reconciled (issue 18): admins import and resolve; support and
    // auditors read the exceptions; auditors and admins the report.
    command("POST", "/v1/admin/reconciliation/imports", ADMIN),
    command("POST", "/v1/admin/reconciliation/unsettled-checks", ADMIN),
    rule(
        "GET",
        "/v1/reconciliation/exceptions",
        Access::Roles(SUPPORT_AUDITOR_ADMIN),
    ),
    command(
        "POST",
        "/v1/reconciliation/exceptions/{stream_id}/{kind}/resolve",
        ADMIN,
    ),
    rule("GET", "/v1/reconciliation", Access::Roles(AUDITOR_ADMIN)),
    // The provider's confirmation of bookings (issue 17): the platform confirms for its
    // provider; admins work the queue of bookings unconfirmed after 24 hours.
    rule(
        "GET",
        "/v1/orders/{order_id}/booking",
        Access::Roles(CLIENT_SUPPORT_ADMIN),
    ),
    command(
        "POST",
        "/v1/orders/{order_id}/confirm-booking",
        CLIENT_ADMIN,
    ),
    rule(
        "GET",
        "/v1/admin/bookings/unconfirmed",
        Access::Roles(SUPPORT_ADMIN),
    ),
    command(
        "POST",
        "/v1/admin/bookings/{order_id}/manual-confirm",
        ADMIN,
    ),
    command("POST", "/v1/admin/bookings/{order_id}/force-cancel", ADMIN),
    command("POST", "/v1/orders/{order_id}/reschedule", CLIENT_ADMIN),
    command("POST", "/v1/orders/{order_id}/session-notes", CLIENT_ADMIN),
    rule("GET", "/openapi.json", Access::Open),
    rule("GET", "/docs", Access::Open),
    rule("GET", "/metrics", Access::Open),
    // The membership status (issue 15): clients read their own customers'.
    rule(
        "GET",
        "/v1/customers/{customer_id}/membership",
        Access::Roles(CLIENT_SUPPORT_ADMIN),
    ),
    // A refund discrepancy (a Paddle adjustment that does not fit): admins resolve it with a note.
    command(
        "POST",
        "/v1/orders/{order_id}/refunds/{refund_id}/discrepancy/resolve",
        ADMIN,
    ),
];

/// Where the operator console is mounted; its routes are not in [`ROUTES`].
pub const CONSOLE_PREFIX: &str = "/console";

/// The rule of a mounted route, if the table has one.
pub fn rule_for(method: &Method, pattern: &str) -> Option<&'static RouteRule> {
    ROUTES
        .iter()
        .find(|r| r.pattern == pattern && r.method == method.as_str())
}

type KeyHash = [u8; 32];
/// When a key was looked up, and what was found (`None`: unknown or revoked).
type CachedLookup = (Instant, Option<Principal>);

/// Keys and order owners, cached briefly; shared by the workers of a process.
pub struct AccessControl {
    pool: PgPool,
    keys: Mutex<HashMap<KeyHash, CachedLookup>>,
    owners: Mutex<HashMap<String, Option<String>>>,
    key_ttl: Duration,
}

impl AccessControl {
    pub fn new(pool: PgPool) -> AccessControl {
        AccessControl {
            pool,
            keys: Mutex::new(HashMap::new()),
            owners: Mutex::new(HashMap::new()),
            key_ttl: Duration::from_millis(KEY_CACHE_TTL_MS),
        }
    }

    /// The principal of a presented key, or `None` for an unknown or revoked one.
    pub async fn principal(&self, key: &str) -> Result<Option<Principal>, ApiError> {
        if !api_keys::looks_like_key(key) {
            return Ok(None);
        }
        let hash = api_keys::hash_key(key);
        if let Ok(keys) = self.keys.lock() {
            if let Some((read_at, principal)) = keys.get(&hash) {
                if read_at.elapsed() < self.key_ttl {
                    return Ok(principal.clone());
                }
            }
        }
        let principal = api_keys::lookup(&self.pool, &hash)
            .await
            .map_err(|e| match e {
                api_keys::ApiKeyError::Database(db) => ApiError::from(db),
                other => ApiError::internal(other),
            })?;
        if let Ok(mut keys) = self.keys.lock() {
            if keys.len() >= KEY_CACHE_CAPACITY {
                let ttl = self.key_ttl;
                keys.retain(|_, (read_at, _)| read_at.elapsed() < ttl);
                if keys.len() >= KEY_CACHE_CAPACITY {
                    keys.clear();
                }
            }
            keys.insert(hash, (Instant::now(), principal.clone()));
        }
        Ok(principal)
    }

    /// Remembers who placed `order_id`, known to the handler that just appended its first
    /// event: the confirm that follows then needs no read of the stream to check its caller.
    pub fn remember_owner(&self, order_id: &OrderId, owner: &str) {
        self.remember(
            payledger_domain::order::stream_id(order_id),
            Some(owner.to_string()),
        );
    }

    fn remember(&self, stream_id: String, owner: Option<String>) {
        if let Ok(mut owners) = self.owners.lock() {
            if owners.len() >= OWNER_CACHE_CAPACITY {
                owners.clear();
            }
            owners.insert(stream_id, owner);
        }
    }

    /// The actor of a stream's first event: who created the order or the customer. `None` while
    /// the stream does not exist.
    async fn stream_owner(
        &self,
        state: &AppState,
        stream_id: &str,
    ) -> Result<Option<String>, ApiError> {
        if let Some(owner) = self
            .owners
            .lock()
            .ok()
            .and_then(|o| o.get(stream_id).cloned())
        {
            return Ok(owner);
        }
        let first = state.store.read_stream(stream_id, 0, 1).await?;
        let Some(first) = first.first() else {
            // Not created (yet): not remembered, it may be created any moment.
            return Ok(None);
        };
        let owner = first
            .metadata
            .get("actor")
            .and_then(|a| a.as_str())
            .map(str::to_string);
        self.remember(stream_id.to_string(), owner.clone());
        Ok(owner)
    }
}

/// The principal of this request (set by [`authenticate`]); `None` on open routes.
pub fn principal(request: &HttpRequest) -> Option<Principal> {
    request.extensions().get::<Principal>().cloned()
}

/// The calling client, when the request is made with a client key: the one role limited to
/// what it created.
pub fn calling_client(request: &HttpRequest) -> Option<Principal> {
    principal(request).filter(|p| p.role == Role::Client)
}

/// Refuses a client whose actor did not create `stream_id` (its first event's actor) with
/// `not_found`, as if the thing did not exist. A stream nobody created yet is free to claim;
/// other roles are not limited.
async fn check_client_created(
    state: &AppState,
    request: &HttpRequest,
    stream_id: &str,
    not_found: impl FnOnce() -> ApiError,
) -> Result<(), ApiError> {
    let Some(client) = calling_client(request) else {
        return Ok(());
    };
    match state.access.stream_owner(state, stream_id).await? {
        Some(owner) if owner != client.actor() => Err(not_found()),
        _ => Ok(()),
    }
}

/// Whether this request may see `order_id`: clients only the orders they placed, other roles
/// all. Answers 404 for another client's order, as if it did not exist.
pub async fn check_order_access(
    state: &AppState,
    request: &HttpRequest,
    order_id: &OrderId,
) -> Result<(), ApiError> {
    let stream_id = payledger_domain::order::stream_id(order_id);
    check_client_created(state, request, &stream_id, || {
        ApiError::new(ErrorCode::OrderNotFound, "order does not exist")
    })
    .await
}

/// A client acts only for the customers it created: the actor of the customer stream's first
/// event (its first billing key) owns the customer's billing keys, subscriptions and wallet.
/// Another client is answered as if the customer did not exist.
pub async fn check_customer_access(
    state: &AppState,
    request: &HttpRequest,
    customer_id: &CustomerId,
) -> Result<(), ApiError> {
    let stream_id = payledger_domain::customer::stream_id(customer_id);
    check_client_created(state, request, &stream_id, || {
        ApiError::new(ErrorCode::CustomerNotFound, "customer does not exist")
    })
    .await
}

/// Whether a client may see this order (for filtering lists).
pub async fn may_see_order(
    state: &AppState,
    request: &HttpRequest,
    order_id: &str,
) -> Result<bool, ApiError> {
    let Ok(order_id) = OrderId::parse(order_id) else {
        return Ok(false);
    };
    Ok(check_order_access(state, request, &order_id).await.is_ok())
}

/// The key a request presents: `Authorization: Bearer <key>`, else `X-Api-Key: <key>`.
fn presented_key(request: &ServiceRequest) -> Option<String> {
    let headers = request.headers();
    if let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        let (scheme, key) = value.trim().split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| key.trim().to_string());
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string())
}

fn header_text(request: &ServiceRequest, name: &str, max_chars: usize) -> Option<String> {
    request
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(max_chars).collect())
}

/// Authenticates and authorises every request by [`ROUTES`]; mount it with
/// `actix_web::middleware::from_fn`, inside `request_logging`.
pub async fn authenticate(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let method = request.method().clone();
    let access = match request.match_pattern() {
        // Not a route: the default service answers 404.
        None => Access::Open,
        // The operator console authenticates its own sessions (payledger-console) and checks
        // each screen and action against this table itself.
        Some(pattern) if pattern == CONSOLE_PREFIX || pattern.starts_with("/console/") => {
            Access::Open
        }
        Some(pattern) => match rule_for(&method, &pattern) {
            Some(rule) => rule.access,
            // A known path with another method: 404 like any unknown route (docs/api.md), for
            // every caller alike, before any key is looked at.
            None if ROUTES.iter().any(|r| r.pattern == pattern) => {
                let error = ApiError::new(ErrorCode::NotFound, "no such route");
                return Ok(request.error_response(error).map_into_boxed_body());
            }
            None => {
                tracing::warn!(%method, pattern, "route missing from the access table: admins only");
                Access::Roles(ADMIN)
            }
        },
    };
    let Access::Roles(roles) = access else {
        return Ok(next.call(request).await?.map_into_boxed_body());
    };
    let principal = match check(&request, roles).await {
        Ok(principal) => principal,
        Err(error) => {
            let unauthenticated = error.code == ErrorCode::Unauthenticated;
            // Built from the error itself, so the request log can name its code.
            let mut response = request.error_response(error);
            if unauthenticated {
                response.headers_mut().insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"payledger\""),
                );
            }
            return Ok(response.map_into_boxed_body());
        }
    };
    request.extensions_mut().insert(principal.clone());
    let audited = principal.role == Role::Admin && method != Method::GET;
    let action = audited.then(|| admin_action(&request, &principal));
    let response = next.call(request).await?;
    if let Some(mut action) = action {
        action.status = response.status().as_u16();
        record_admin_action(&response, action).await;
    }
    Ok(response.map_into_boxed_body())
}

async fn check(request: &ServiceRequest, roles: &[Role]) -> Result<Principal, ApiError> {
    let state = request
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::internal("application state missing"))?;
    let key = presented_key(request).ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unauthenticated,
            "send an API key: Authorization: Bearer <key> (or X-Api-Key: <key>)",
        )
    })?;
    // Bounded for commands too (a read's whole request is, `deadline`).
    let principal = payledger_store::call_bounds::bounded(
        "looking up an API key",
        state.database_call_timeout_ms,
        state.access.principal(&key),
    )
    .await?
    .ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unauthenticated,
            "the API key is unknown or revoked",
        )
    })?;
    if !roles.contains(&principal.role) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("the {} role may not use this endpoint", principal.role),
        ));
    }
    Ok(principal)
}

fn admin_action(request: &ServiceRequest, principal: &Principal) -> AdminAction {
    AdminAction {
        action: format!(
            "{} {}",
            request.method(),
            request.match_pattern().unwrap_or_default()
        ),
        path: request.path().chars().take(300).collect(),
        status: 0,
        key_id: principal.key_id.clone(),
        remote_addr: request.peer_addr().map(|a| a.ip().to_string()),
        forwarded_for: header_text(request, "x-forwarded-for", 200),
        user_agent: header_text(request, "user-agent", 200),
        // The payments clock: a test clock moves the audit trail with everything else.
        at: request
            .app_data::<web::Data<AppState>>()
            .map(|state| state.payments.clock().now())
            .unwrap_or_else(|| {
                payledger_app::clock::Clock::now(&payledger_app::clock::SystemClock)
            }),
    }
}

/// Appends the admin action to `audit-admin`. The action already happened; a failure to record
/// it is logged as an error (the action's own events still name the admin as actor).
async fn record_admin_action<B>(response: &ServiceResponse<B>, action: AdminAction) {
    let request = response.request();
    let Some(state) = request.app_data::<web::Data<AppState>>() else {
        return;
    };
    let context = crate::request_context::request_context(request);
    if let Err(error) = state.operations.record_admin_action(action, &context).await {
        tracing::error!(%error, actor = context.actor, "failed to record an admin action in audit-admin");
    }
}
