//! Sign-in, sign-out, the home page and the language switch.

use crate::i18n::{Lang, LANG_COOKIE};
use crate::pages::{random_token, render, Chrome, Time};
use crate::session::{
    app_state, console_cookie, constant_time_eq, Refusal, Session, SESSION_COOKIE, SIGN_IN_COOKIE,
};
use crate::Console;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use payledger_app::console_sessions::{self, SessionError};
use serde::Deserialize;

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage {
    lang: Lang,
    csrf: String,
    error: Option<String>,
}

impl SignInPage {
    fn t(&self, key: &str) -> String {
        self.lang.t(key)
    }

    fn other_lang(&self) -> &'static str {
        self.lang.other().code()
    }
}

/// The sign-in form, with its own CSRF token in a cookie (there is no session to hold it yet).
fn sign_in_form(
    request: &HttpRequest,
    console: &Console,
    status: StatusCode,
    error: Option<String>,
) -> HttpResponse {
    let token = random_token();
    let page = SignInPage {
        lang: Lang::of(request),
        csrf: token.clone(),
        error,
    };
    let mut response = render(status, &page);
    let _ = response.add_cookie(&console_cookie(console, SIGN_IN_COOKIE, token, 3600));
    response
}

pub async fn sign_in_page(request: HttpRequest, console: web::Data<Console>) -> HttpResponse {
    if Session::of(&request).await.is_ok() {
        return see_other("/console/home");
    }
    sign_in_form(&request, &console, StatusCode::OK, None)
}

#[derive(Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    api_key: String,
}

pub async fn sign_in(
    request: HttpRequest,
    console: web::Data<Console>,
    form: web::Form<SignInForm>,
) -> Result<HttpResponse, Refusal> {
    let presented = request.cookie(SIGN_IN_COOKIE);
    let csrf_ok = presented.is_some_and(|c| {
        !form.csrf.is_empty() && constant_time_eq(c.value().as_bytes(), form.csrf.as_bytes())
    });
    if !csrf_ok {
        return Err(Refusal::BadCsrf);
    }
    let lang = Lang::of(&request);
    let address = request.peer_addr().map(|a| a.ip());
    if let Some(wait_s) = console.throttle.blocked_for_s(address) {
        let message = match lang {
            Lang::En => format!("Too many failed sign-ins. Try again in {wait_s} seconds."),
            Lang::Ko => format!("로그인 실패가 너무 많습니다. {wait_s}초 후에 다시 시도하세요."),
        };
        let mut response = sign_in_form(
            &request,
            &console,
            StatusCode::TOO_MANY_REQUESTS,
            Some(message),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(wait_s));
        return Ok(response);
    }
    let state = app_state(&request)?;
    let now = state.operations.now();
    let key = form.api_key.trim();
    // Each call bounded (`call_bounds`); a sign-in given up may still have stored its session,
    // which nobody holds the token of and which expires (and is purged) as any other.
    let bound_ms = state.database_call_timeout_ms;
    let signing_in =
        console_sessions::sign_in(&state.read_pool, key, console.config.session_ttl_s, now);
    match payledger_store::call_bounds::bounded("signing in to the console", bound_ms, signing_in)
        .await
    {
        Ok((token, session)) => {
            console.throttle.record_success(address);
            // Sessions long expired or ended are deleted as people sign in: no extra job needed.
            let purging = console_sessions::purge(&state.read_pool, now);
            let purged = payledger_store::call_bounds::bounded(
                "purging old console sessions",
                bound_ms,
                purging,
            );
            if let Err(error) = purged.await {
                tracing::warn!(%error, "failed to purge old console sessions");
            }
            tracing::info!(
                actor = session.principal.actor(),
                key_id = session.principal.key_id,
                "console sign-in"
            );
            let mut response = see_other("/console/home");
            let _ = response.add_cookie(&console_cookie(
                &console,
                SESSION_COOKIE,
                token.expose().to_string(),
                console.config.session_ttl_s,
            ));
            let _ =
                response.add_cookie(&console_cookie(&console, SIGN_IN_COOKIE, String::new(), 0));
            Ok(response)
        }
        Err(SessionError::UnknownKey) => {
            console.throttle.record_failure(address);
            let message = match lang {
                Lang::En => "That API key is unknown or revoked.".to_string(),
                Lang::Ko => "알 수 없거나 폐기된 API 키입니다.".to_string(),
            };
            Ok(sign_in_form(
                &request,
                &console,
                StatusCode::UNAUTHORIZED,
                Some(message),
            ))
        }
        Err(SessionError::RoleNotAllowed(role)) => {
            console.throttle.record_failure(address);
            let message = match lang {
                Lang::En => format!(
                    "A {role} key cannot sign in to the console; use a support, auditor or admin key."
                ),
                Lang::Ko => format!(
                    "{role} 키로는 콘솔에 로그인할 수 없습니다. support, auditor, admin 키를 사용하세요."
                ),
            };
            Ok(sign_in_form(
                &request,
                &console,
                StatusCode::FORBIDDEN,
                Some(message),
            ))
        }
        Err(error) => Err(Refusal::Unavailable(error.to_string())),
    }
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

pub async fn sign_out(
    request: HttpRequest,
    console: web::Data<Console>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, Refusal> {
    let session = Session::of(&request).await?;
    session.check_csrf(&form.csrf)?;
    let state = app_state(&request)?;
    if let Some(cookie) = request.cookie(SESSION_COOKIE) {
        payledger_store::call_bounds::bounded(
            "signing out of the console",
            state.database_call_timeout_ms,
            console_sessions::sign_out(&state.read_pool, cookie.value(), state.operations.now()),
        )
        .await
        .map_err(|e| Refusal::Unavailable(e.to_string()))?;
    }
    let mut response = see_other("/console/sign-in");
    let _ = response.add_cookie(&console_cookie(&console, SESSION_COOKIE, String::new(), 0));
    Ok(response)
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    c: Chrome,
    projections: Vec<ProjectionRow>,
    signed_in_until: Time,
    /// Dead-lettered deliveries now, inbound and outbound (the runbook's dead-letter sizes).
    dead_letters: Option<(i64, i64)>,
    /// The service-level figures and charts; `Err` says why they could not be read.
    slo: Result<crate::slo::Slo, String>,
    chart_width: i64,
    chart_height: i64,
}

#[derive(Debug, Default, Deserialize)]
pub struct HomeQuery {
    period: Option<String>,
}

pub struct ProjectionRow {
    pub name: String,
    pub position: i64,
    pub head_position: i64,
    pub lag_events: i64,
    pub lag_ms: i64,
}

/// The landing page: who you are, what you may open, and the projections' lag.
pub async fn home(
    request: HttpRequest,
    console: web::Data<Console>,
    query: web::Query<HomeQuery>,
) -> Result<HttpResponse, Refusal> {
    let session = Session::of(&request).await?;
    let state = app_state(&request)?;
    let projections = payledger_projector::status(&state.read_pool)
        .await
        .map(|all| {
            all.into_iter()
                .map(|s| ProjectionRow {
                    name: s.name,
                    position: s.position,
                    head_position: s.head_position,
                    lag_events: s.lag_events,
                    lag_ms: s.lag_ms,
                })
                .collect()
        })
        .unwrap_or_default();
    // The same counts `/metrics` exports as `payledger_webhook_dead_letters`.
    let dead_letters = match request.app_data::<web::Data<payledger_webhook_relay::Relay>>() {
        Some(relay) => payledger_webhook_relay::outbox::dead_letter_counts(&relay.pool)
            .await
            .ok(),
        None => None,
    };
    let slo = crate::slo::dashboard(
        state,
        query
            .period
            .as_deref()
            .unwrap_or(crate::slo::DEFAULT_PERIOD),
        console.config.time_zone,
    )
    .await
    .map_err(|e| e.to_string());
    let page = HomePage {
        dead_letters,
        slo,
        chart_width: crate::slo::CHART_WIDTH,
        chart_height: crate::slo::CHART_HEIGHT,
        c: Chrome::new(&request, &session, &console, "home"),
        projections,
        signed_in_until: Time::new(session.expires_at, console.config.time_zone),
    };
    Ok(render(StatusCode::OK, &page))
}

#[derive(Deserialize)]
pub struct LangQuery {
    back: Option<String>,
}

/// The language switch: remembers the choice and returns to the page it was clicked on.
pub async fn switch_language(
    path: web::Path<String>,
    query: web::Query<LangQuery>,
    console: web::Data<Console>,
) -> HttpResponse {
    let Some(lang) = Lang::parse(&path) else {
        return crate::pages::plain_error_page(StatusCode::NOT_FOUND, "no such language");
    };
    // Only back into the console: an open redirect would let a link send operators anywhere.
    let back = query
        .back
        .as_deref()
        .filter(|b| b.starts_with("/console") && !b.contains("//") && !b.contains('\\'))
        .unwrap_or("/console/home");
    let mut response = see_other(back);
    let mut cookie = console_cookie(&console, LANG_COOKIE, lang.code().to_string(), 365 * 86400);
    cookie.set_http_only(false);
    let _ = response.add_cookie(&cookie);
    response
}

pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location.to_string()))
        .finish()
}
