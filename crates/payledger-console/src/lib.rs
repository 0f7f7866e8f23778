//! The operator console: support, operations and audit in a browser, at `/console`.
//!
//! Server-rendered HTML from templates compiled into the binary (askama), forms that work
//! without JavaScript, one small same-origin script for progressive enhancement. Reads go to the
//! same read-model and app-layer queries the API uses; every action calls the API's own handler
//! in-process as the signed-in operator, so roles, idempotency, error codes and the
//! `audit-admin` trail are the API's (`actions.rs`). This crate writes no SQL.

mod actions;
mod claims;
mod customers;
pub mod deadline_page;
mod error_page;
pub mod i18n;
mod ledger;
mod operations;
mod orders;
pub mod pages;
mod refund_discrepancies;
pub mod session;
mod settlements;
mod sign_in;
mod slo;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, HttpResponse};
use std::sync::Arc;

/// How the console presents itself.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// Times are shown in this zone, with UTC on hover.
    pub time_zone: chrono_tz::Tz,
    /// How long a session lasts from sign-in.
    pub session_ttl_s: i64,
    /// Mark cookies `Secure`: on when payledger is served (or proxied) over TLS.
    pub secure_cookies: bool,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            time_zone: chrono_tz::Asia::Seoul,
            session_ttl_s: 8 * 3600,
            secure_cookies: false,
        }
    }
}

impl ConsoleConfig {
    /// `PAYLEDGER_CONSOLE_TIME_ZONE` (IANA name, default `Asia/Seoul`),
    /// `PAYLEDGER_CONSOLE_SESSION_TTL_S` (default 8 hours, at most 12) and
    /// `PAYLEDGER_CONSOLE_SECURE_COOKIES` (`true` behind TLS).
    /// `settings` answers a setting by name (the binary owns where settings come from).
    pub fn from_settings(
        settings: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ConsoleConfig, String> {
        let mut config = ConsoleConfig::default();
        if let Some(zone) = settings("PAYLEDGER_CONSOLE_TIME_ZONE") {
            config.time_zone = zone
                .parse()
                .map_err(|_| format!("PAYLEDGER_CONSOLE_TIME_ZONE: unknown time zone {zone:?}"))?;
        }
        if let Some(ttl) = settings("PAYLEDGER_CONSOLE_SESSION_TTL_S") {
            config.session_ttl_s = ttl
                .parse::<i64>()
                .ok()
                .filter(|s| (60..=payledger_app::console_sessions::MAX_SESSION_TTL_S).contains(s))
                .ok_or("PAYLEDGER_CONSOLE_SESSION_TTL_S must be 60 to 43200 seconds")?;
        }
        if let Some(secure) = settings("PAYLEDGER_CONSOLE_SECURE_COOKIES") {
            config.secure_cookies = matches!(secure.as_str(), "1" | "true" | "yes");
        }
        Ok(config)
    }
}

/// What the console's handlers share besides the API's `AppState`.
pub struct Console {
    pub config: ConsoleConfig,
    pub throttle: session::SignInThrottle,
    pub rebuilds: Arc<payledger_projector::rebuild_jobs::RebuildJobs>,
}

impl Console {
    pub fn new(config: ConsoleConfig) -> Console {
        Console {
            config,
            throttle: session::SignInThrottle::default(),
            rebuilds: Arc::new(payledger_projector::rebuild_jobs::RebuildJobs::default()),
        }
    }
}

/// The policy every console response carries: nothing from another origin, no inline script,
/// never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
    frame-ancestors 'none'; base-uri 'none'";

async fn security_headers(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mut response = next.call(request).await?;
    insert_security_headers(response.headers_mut());
    Ok(response)
}

/// The headers every console response carries, pages and error pages alike.
fn insert_security_headers(headers: &mut header::HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        // Pages show customers' orders: no shared or back-button cache.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// Reveals sealed personal fields in the console's pages (docs/events.md, "Personal data and
/// erasure"): a token becomes its text, escaped for HTML, or `[erased]`. The raw log explorer
/// keeps the tokens, as `/v1/events` does: that is what the hashes cover.
async fn reveal_personal_fields(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let keep_tokens = request.match_pattern().as_deref() == Some("/console/ledger/events");
    let vault = request
        .app_data::<web::Data<payledger_app::privacy::PrivacyVault>>()
        .cloned();
    let lang = i18n::Lang::of(request.request());
    let response = next.call(request).await?.map_into_boxed_body();
    let Some(vault) = vault else {
        return Ok(response);
    };
    let is_html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    if keep_tokens || !is_html {
        return Ok(response);
    }
    let (request, response) = response.into_parts();
    let (head, body) = response.into_parts();
    let bytes = match actix_web::body::to_bytes_limited(body, MAX_REVEALED_PAGE_BYTES).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(error)) => {
            return Err(actix_web::error::ErrorInternalServerError(
                error.to_string(),
            ))
        }
        Err(_) => {
            return Err(actix_web::error::ErrorInternalServerError(
                "page too large to reveal",
            ))
        }
    };
    let page = match std::str::from_utf8(&bytes) {
        Ok(page) if page.contains(payledger_app::privacy::TOKEN_PREFIX) => page,
        _ => {
            return Ok(ServiceResponse::new(
                request,
                head.set_body(actix_web::body::BoxBody::new(bytes)),
            ))
        }
    };
    // The vault's key reads are bounded per call (`PrivacyVault::with_call_timeout_ms`); after
    // an action (a `POST`) this runs once the action is durable, and a 503 here undoes nothing.
    let revealed = vault.reveal_html(page).await.map_err(|error| {
        tracing::error!(%error, "failed to reveal personal fields in a console page");
        deadline_page::ConsoleUnavailable {
            lang,
            retry_after_s: 2,
            reason: "personal fields cannot be revealed now".into(),
        }
    })?;
    Ok(ServiceResponse::new(
        request,
        head.set_body(actix_web::body::BoxBody::new(revealed)),
    ))
}

/// Pages larger than this are refused rather than revealed (pages are bounded far below it).
const MAX_REVEALED_PAGE_BYTES: usize = 16 * 1024 * 1024;

const STYLESHEET: &str = include_str!("../static/console.css");
const SCRIPT: &str = include_str!("../static/console.js");

async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "max-age=300"))
        .body(STYLESHEET)
}

async fn script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "max-age=300"))
        .body(SCRIPT)
}

async fn home() -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/console/home"))
        .finish()
}

/// Mounts the console at `/console`. The API's `AppState` (and the webhook `Relay`) must be
/// app data of the same `App`.
pub fn configure(config: &mut web::ServiceConfig, console: web::Data<Console>) {
    config.service(
        web::scope("/console")
            .app_data(console)
            .app_data(
                web::FormConfig::default()
                    .limit(16 * 1024)
                    .error_handler(|error, _| {
                        actix_web::error::InternalError::from_response(
                            error.to_string(),
                            pages::plain_error_page(
                                actix_web::http::StatusCode::BAD_REQUEST,
                                "the form could not be read",
                            ),
                        )
                        .into()
                    }),
            )
            .wrap(from_fn(reveal_personal_fields))
            .wrap(from_fn(security_headers))
            .route("", web::get().to(home))
            .route("/", web::get().to(home))
            .route("/static/console.css", web::get().to(stylesheet))
            .route("/static/console.js", web::get().to(script))
            .route("/lang/{lang}", web::get().to(sign_in::switch_language))
            .route("/sign-in", web::get().to(sign_in::sign_in_page))
            .route("/sign-in", web::post().to(sign_in::sign_in))
            .route("/sign-out", web::post().to(sign_in::sign_out))
            .route("/home", web::get().to(sign_in::home))
            .route("/orders", web::get().to(orders::search))
            .route("/orders/{order_id}", web::get().to(orders::order_page))
            .route("/orders/{order_id}/refund", web::post().to(orders::refund))
            .route(
                "/orders/{order_id}/cancel-enrollment",
                web::post().to(orders::cancel_enrollment),
            )
            .route(
                "/orders/{order_id}/external-payment",
                web::post().to(orders::record_external_payment),
            )
            .route(
                "/orders/{order_id}/refunds/{refund_id}/discrepancy/resolve",
                web::post().to(refund_discrepancies::resolve),
            )
            .route("/claims", web::get().to(claims::queue))
            .route("/claims/{claim_id}", web::get().to(claims::claim))
            .route("/claims/{claim_id}/assign", web::post().to(claims::assign))
            .route(
                "/claims/{claim_id}/resolve",
                web::post().to(claims::resolve),
            )
            .route("/customers", web::get().to(customers::queue))
            .route(
                "/customers/{customer_id}",
                web::get().to(customers::customer),
            )
            .route(
                "/subscriptions/{subscription_id}",
                web::get().to(customers::subscription),
            )
            .route(
                "/subscriptions/{subscription_id}/cancel",
                web::post().to(customers::cancel),
            )
            .route(
                "/subscriptions/{subscription_id}/resume",
                web::post().to(customers::resume),
            )
            .route(
                "/subscriptions/{subscription_id}/charge",
                web::post().to(customers::charge),
            )
            .route("/settlements", web::get().to(settlements::statements))
            .route(
                "/settlements/{statement_id}",
                web::get().to(settlements::statement),
            )
            .route(
                "/settlements/{statement_id}/confirm",
                web::post().to(settlements::confirm),
            )
            .route(
                "/settlements/{statement_id}/payout",
                web::post().to(settlements::payout),
            )
            .route("/operations", web::get().to(operations::switches_page))
            .route(
                "/operations/switches",
                web::post().to(operations::flip_switch),
            )
            .route("/webhooks", web::get().to(operations::dead_letters_page))
            .route(
                "/webhooks/inbound/{id}/replay",
                web::post().to(operations::replay_inbound),
            )
            .route(
                "/webhooks/outbound/{id}/replay",
                web::post().to(operations::replay_outbound),
            )
            .route("/keys", web::get().to(operations::keys_page))
            .route("/keys", web::post().to(operations::create_key))
            .route("/keys/revoke", web::post().to(operations::revoke_key))
            .route("/ledger", web::get().to(ledger::ledger_page))
            .route("/ledger/rebuild", web::post().to(ledger::start_rebuild))
            .route(
                "/ledger/rebuild/{name}",
                web::get().to(ledger::rebuild_page),
            )
            .route("/ledger/verify", web::post().to(ledger::audit_verify))
            .route("/ledger/events", web::get().to(ledger::events_page))
            .route(
                "/ledger/trial-balance",
                web::get().to(ledger::trial_balance_page),
            ),
    );
}
