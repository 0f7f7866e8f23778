//! Who is signed in: the session cookie, CSRF tokens and the throttle on failed sign-ins.
//!
//! The cookie holds a random token; the session itself (principal, CSRF token, expiry) lives in
//! the app layer's `console_sessions` table. Every console request re-reads it, so sign-out and
//! a revoked key take effect at once.

use crate::Console;
use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use payledger_app::api_keys::{Principal, Role};
use payledger_app::console_sessions::{self, ConsoleSession};
use payledger_http::auth::{rule_for, Access};
use payledger_http::AppState;
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const SESSION_COOKIE: &str = "payledger_console_session";
/// The sign-in form's own CSRF token (there is no session yet): a cookie the form must echo.
pub const SIGN_IN_COOKIE: &str = "payledger_console_signin";

/// Failed sign-ins one address may make per window before it must wait.
pub const MAX_FAILED_SIGN_INS: u32 = 5;
pub const FAILED_SIGN_IN_WINDOW_S: u64 = 300;
/// Addresses remembered at once; beyond this the oldest windows are dropped.
const MAX_THROTTLED_ADDRESSES: usize = 10_000;

/// Failed sign-ins per peer address, in memory (one process; a restart forgets them, which only
/// gives an attacker one more window of five guesses against 256-bit keys).
#[derive(Default)]
pub struct SignInThrottle {
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl SignInThrottle {
    /// Seconds to wait when `address` has used up its failures, else `None`.
    pub fn blocked_for_s(&self, address: Option<IpAddr>) -> Option<u64> {
        let address = address?;
        let failures = self.failures.lock().ok()?;
        let (started, count) = failures.get(&address)?;
        let window = Duration::from_secs(FAILED_SIGN_IN_WINDOW_S);
        let elapsed = started.elapsed();
        (*count >= MAX_FAILED_SIGN_INS && elapsed < window)
            .then(|| (window - elapsed).as_secs().max(1))
    }

    pub fn record_failure(&self, address: Option<IpAddr>) {
        let Some(address) = address else { return };
        let Ok(mut failures) = self.failures.lock() else {
            return;
        };
        let window = Duration::from_secs(FAILED_SIGN_IN_WINDOW_S);
        if failures.len() >= MAX_THROTTLED_ADDRESSES {
            failures.retain(|_, (started, _)| started.elapsed() < window);
            if failures.len() >= MAX_THROTTLED_ADDRESSES {
                failures.clear();
            }
        }
        let entry = failures.entry(address).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= window {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
    }

    pub fn record_success(&self, address: Option<IpAddr>) {
        if let (Some(address), Ok(mut failures)) = (address, self.failures.lock()) {
            failures.remove(&address);
        }
    }
}

/// Why a console request cannot go on.
#[derive(Debug)]
pub enum Refusal {
    /// No live session: back to the sign-in page.
    NotSignedIn,
    /// A form without the session's CSRF token.
    BadCsrf,
    /// The role's API rule does not admit this screen or action.
    Forbidden,
    /// The session store failed.
    Unavailable(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotSignedIn => f.write_str("sign in first"),
            Refusal::BadCsrf => f.write_str("the form's CSRF token is missing or wrong"),
            Refusal::Forbidden => f.write_str("your role may not do this"),
            Refusal::Unavailable(e) => write!(f, "the session store is unavailable: {e}"),
        }
    }
}

impl ResponseError for Refusal {
    fn status_code(&self) -> actix_web::http::StatusCode {
        use actix_web::http::StatusCode;
        match self {
            Refusal::NotSignedIn => StatusCode::SEE_OTHER,
            Refusal::BadCsrf | Refusal::Forbidden => StatusCode::FORBIDDEN,
            Refusal::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Refusal::NotSignedIn => HttpResponse::SeeOther()
                .insert_header((header::LOCATION, "/console/sign-in"))
                .finish(),
            other => crate::error_page::plain_error_page(self.status_code(), &other.to_string()),
        }
    }
}

/// A signed-in operator.
#[derive(Debug, Clone)]
pub struct Session {
    pub principal: Principal,
    pub csrf_token: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

impl Session {
    /// Reads the session of this request and makes its principal the request's, so the API's
    /// handlers called in-process see the same caller as over HTTP.
    pub async fn of(request: &HttpRequest) -> Result<Session, Refusal> {
        let state = app_state(request)?;
        let Some(cookie) = request.cookie(SESSION_COOKIE) else {
            return Err(Refusal::NotSignedIn);
        };
        let now = state.operations.now();
        // Bounded per call: a page's whole request is too (the read deadline), an action's
        // (`POST`) only by this, and the session is read before the action does anything.
        let found = payledger_store::call_bounds::bounded(
            "reading a console session",
            state.database_call_timeout_ms,
            console_sessions::lookup(&state.read_pool, cookie.value(), now),
        )
        .await
        .map_err(|e| Refusal::Unavailable(e.to_string()))?;
        let Some(ConsoleSession {
            principal,
            csrf_token,
            expires_at,
        }) = found
        else {
            return Err(Refusal::NotSignedIn);
        };
        request.extensions_mut().insert(principal.clone());
        Ok(Session {
            principal,
            csrf_token,
            expires_at,
        })
    }

    /// Whether this operator's API role admits `method pattern` (a route of the API's table).
    pub fn may(&self, method: &str, pattern: &str) -> bool {
        may(self.principal.role, method, pattern)
    }

    /// Refuses unless the API rule of `method pattern` admits this operator.
    pub fn require(&self, method: &str, pattern: &str) -> Result<(), Refusal> {
        if self.may(method, pattern) {
            Ok(())
        } else {
            Err(Refusal::Forbidden)
        }
    }

    /// Refuses a form whose `csrf` field is not this session's token.
    pub fn check_csrf(&self, presented: &str) -> Result<(), Refusal> {
        if constant_time_eq(presented.as_bytes(), self.csrf_token.as_bytes()) {
            Ok(())
        } else {
            Err(Refusal::BadCsrf)
        }
    }
}

/// The one table of roles: the console asks the API's route table, never a list of its own.
pub fn may(role: Role, method: &str, pattern: &str) -> bool {
    let Ok(method) = actix_web::http::Method::from_bytes(method.as_bytes()) else {
        return false;
    };
    match rule_for(&method, pattern).map(|r| r.access) {
        Some(Access::Roles(roles)) => roles.contains(&role),
        // Open API routes are for tools, not a reason to show a screen; an unknown route is
        // admins only, as the API's own middleware does.
        Some(Access::Open) | None => role == Role::Admin,
    }
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn app_state(request: &HttpRequest) -> Result<&web::Data<AppState>, Refusal> {
    request
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| Refusal::Unavailable("application state missing".into()))
}

/// A cookie only this console reads: HttpOnly, SameSite=Strict, Secure behind TLS.
pub fn console_cookie(
    console: &Console,
    name: &'static str,
    value: String,
    max_age_s: i64,
) -> Cookie<'static> {
    let mut cookie = Cookie::build(name, value)
        .path("/console")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(console.config.secure_cookies)
        .finish();
    cookie.set_max_age(actix_web::cookie::time::Duration::seconds(max_age_s));
    cookie
}
