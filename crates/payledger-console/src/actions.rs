//! Every console action is the API's own handler, called in-process as the signed-in operator.
//!
//! Before the call: the API's route table must admit the operator's role, the form's CSRF token
//! must match, and the form's idempotency token becomes the request's idempotency scope (so a
//! refund posted twice derives the same refund id, exactly as two API calls with one
//! `Idempotency-Key` do). After it: an admin's action is appended to `audit-admin` with the API
//! route it used and the console path it came from, as the API's middleware does for API calls.
//! Errors keep the API's code and message.

use crate::pages::{Chrome, ResultPage};
use crate::session::{app_state, Refusal, Session};
use crate::Console;
use actix_web::http::StatusCode;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use payledger_app::api_keys::Role;
use payledger_domain::operations::AdminAction;
use payledger_http::errors::ApiError;
use payledger_http::idempotency::IdempotencyScope;
use payledger_http::state::AppState;
use sha2::{Digest, Sha256};
use std::future::Future;

/// The API route an action stands for: its role rule and its name in `audit-admin`.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: &'static str,
    pub pattern: &'static str,
}

impl Route {
    pub const fn get(pattern: &'static str) -> Route {
        Route {
            method: "GET",
            pattern,
        }
    }

    pub const fn post(pattern: &'static str) -> Route {
        Route {
            method: "POST",
            pattern,
        }
    }
}

/// How an action ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: u16,
    /// The API's error code when it was refused.
    pub code: Option<String>,
    pub message: String,
    /// The API's answer when it succeeded.
    pub body: serde_json::Value,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.code.is_none()
    }
}

/// Checks role and CSRF and sets the idempotency scope; call before the handler.
pub fn prepare(
    request: &HttpRequest,
    session: &Session,
    route: Route,
    csrf: &str,
    idempotency_token: Option<&str>,
) -> Result<(), Refusal> {
    session.check_csrf(csrf)?;
    session.require(route.method, route.pattern)?;
    if let Some(token) = idempotency_token.filter(|t| !t.is_empty() && t.len() <= 64) {
        let actor = session.principal.actor();
        let digest = hex::encode(Sha256::digest(
            [actor.as_bytes(), b"\nconsole\n", token.as_bytes()].concat(),
        ));
        request.extensions_mut().insert(IdempotencyScope { digest });
    }
    Ok(())
}

/// Reads the handler's answer and records an admin's action in `audit-admin`.
pub async fn finish(
    request: &HttpRequest,
    session: &Session,
    route: Route,
    result: Result<HttpResponse, ApiError>,
) -> Outcome {
    let outcome = match result {
        Ok(response) => {
            let status = response.status().as_u16();
            let bytes = actix_web::body::to_bytes(response.into_body())
                .await
                .unwrap_or_default();
            let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
            Outcome {
                status,
                code: None,
                message: String::new(),
                body,
            }
        }
        Err(error) => Outcome {
            status: actix_web::ResponseError::status_code(&error).as_u16(),
            code: Some(error.code.as_str().to_string()),
            message: error.message.clone(),
            body: serde_json::Value::Null,
        },
    };
    if session.principal.role == Role::Admin {
        record(request, session, route, outcome.status).await;
    }
    outcome
}

async fn record(request: &HttpRequest, session: &Session, route: Route, status: u16) {
    let Ok(state) = app_state(request) else {
        return;
    };
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(200).collect::<String>())
    };
    let action = AdminAction {
        action: format!("{} {}", route.method, route.pattern),
        // The console path: who reads the trail sees the action came from the console.
        path: request.path().chars().take(300).collect(),
        status,
        key_id: session.principal.key_id.clone(),
        remote_addr: request.peer_addr().map(|a| a.ip().to_string()),
        forwarded_for: header("x-forwarded-for"),
        user_agent: header("user-agent"),
        at: state.operations.now(),
    };
    let context = payledger_http::request_context(request);
    if let Err(error) = state.operations.record_admin_action(action, &context).await {
        tracing::error!(%error, actor = context.actor, "failed to record a console action in audit-admin");
    }
}

/// How an action's result page is drawn: `Label · subject`, the fields of the API's answer
/// shown, and where "back" goes.
pub struct ActionPage<'a> {
    /// The route the action stands for (its role rule, its name in `audit-admin`).
    pub route: Route,
    /// The header's section the page belongs to (`orders`, `claims`, …).
    pub section: &'static str,
    /// The label key of the action, for the heading.
    pub label: &'static str,
    /// What it acted on (an id), for the heading.
    pub subject: &'a str,
    /// The API answer's fields shown as details.
    pub details: &'a [&'a str],
    pub back: String,
}

/// The whole shape of a console action, for the ones that need nothing between the checks and
/// the handler: the signed-in session, [`prepare`] (role, CSRF, idempotency scope), the API's
/// handler, [`finish`] (the `audit-admin` record) and the result page with the API's code.
pub async fn perform<Call, Answer>(
    request: &HttpRequest,
    console: &Console,
    page: ActionPage<'_>,
    csrf: &str,
    idempotency_token: Option<&str>,
    call: Call,
) -> Result<HttpResponse, Refusal>
where
    Call: FnOnce(web::Data<AppState>) -> Answer,
    Answer: Future<Output = Result<HttpResponse, ApiError>>,
{
    let session = Session::of(request).await?;
    prepare(request, &session, page.route, csrf, idempotency_token)?;
    let state = app_state(request)?.clone();
    let result = call(state).await;
    let outcome = finish(request, &session, page.route, result).await;
    let chrome = Chrome::new(request, &session, console, page.section);
    let heading = format!("{} · {}", chrome.t(page.label), page.subject);
    let details = fields(&outcome.body, page.details);
    Ok(result_page(chrome, &outcome, heading, details, page.back))
}

/// The signed-in session of a page, refused unless its role may read `route`.
pub async fn page_session(request: &HttpRequest, route: Route) -> Result<Session, Refusal> {
    let session = Session::of(request).await?;
    session.require(route.method, route.pattern)?;
    Ok(session)
}

/// The page after an action: what the API answered, in words, with a way back.
pub fn result_page(
    chrome: Chrome,
    outcome: &Outcome,
    heading: String,
    details: Vec<(String, String)>,
    back: String,
) -> HttpResponse {
    let ok = outcome.ok();
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::from_u16(outcome.status).unwrap_or(StatusCode::BAD_REQUEST)
    };
    let message = if ok {
        chrome.t("done")
    } else {
        outcome.message.clone()
    };
    let page = ResultPage {
        heading: if ok {
            heading
        } else {
            format!("{}: {heading}", chrome.t("refused"))
        },
        c: chrome,
        ok,
        message,
        code: outcome.code.clone(),
        details,
        back,
        secret: None,
    };
    crate::pages::render(status, &page)
}

/// A string field of the API's answer, for the result page's details.
pub fn field(body: &serde_json::Value, name: &str) -> Option<String> {
    match body.get(name)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// The named fields of the API's answer that it holds, for the result page's details.
pub fn fields(body: &serde_json::Value, names: &[&str]) -> Vec<(String, String)> {
    names
        .iter()
        .filter_map(|name| field(body, name).map(|v| (name.to_string(), v)))
        .collect()
}

/// The JSON of an API handler's answer, or its error code and message (reads, where nothing is
/// audited).
pub async fn json_of(
    result: Result<HttpResponse, ApiError>,
) -> Result<serde_json::Value, (String, String)> {
    match result {
        Ok(response) => {
            let bytes = actix_web::body::to_bytes(response.into_body())
                .await
                .unwrap_or_default();
            Ok(serde_json::from_slice(&bytes).unwrap_or_default())
        }
        Err(error) => Err((error.code.as_str().to_string(), error.message)),
    }
}
