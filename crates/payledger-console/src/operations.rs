//! Operations: kill switches and payee suspension, dead letters with replay, API keys.

use crate::actions::{self, field, Route};
use crate::pages::{render, Chrome, ResultPage, Time};
use crate::session::{app_state, Refusal, Session};
use crate::Console;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use payledger_app::api_keys::{self, Role};
use payledger_domain::operations::SWITCHES_STREAM;
use payledger_webhook_relay::Relay;
use serde::Deserialize;

const SWITCHES: Route = Route::get("/v1/admin/switches");
const SUSPEND_PAYMENTS: Route = Route::post("/v1/admin/switches/payments/suspend");
const RESUME_PAYMENTS: Route = Route::post("/v1/admin/switches/payments/resume");
const SUSPEND_PAYEE: Route = Route::post("/v1/admin/switches/payees/{payee_id}/suspend");
const RESUME_PAYEE: Route = Route::post("/v1/admin/switches/payees/{payee_id}/resume");
const INBOUND_DEAD_LETTERS: Route = Route::get("/v1/admin/webhooks/dead-letters");
const REPLAY_INBOUND: Route = Route::post("/v1/admin/webhooks/dead-letters/{id}/replay");
const REPLAY_OUTBOUND: Route = Route::post("/v1/admin/notifications/dead-letters/{id}/replay");
/// Keys are managed by the CLI and here; neither is an API route, so the name in `audit-admin`
/// says where it came from.
const CREATE_KEY: Route = Route::post("/console/keys");
const REVOKE_KEY: Route = Route::post("/console/keys/revoke");

/// Switch events shown in the history (newest first).
const SWITCH_HISTORY_LIMIT: i64 = 500;
const DEAD_LETTER_PAGE: i64 = 50;
/// Bytes of a body that is not JSON shown on the page.
const MAX_SHOWN_BODY_BYTES: usize = 16 * 1024;

pub struct PayeeRow {
    pub payee_id: String,
    pub reason: String,
    pub since: Time,
}

pub struct HistoryRow {
    pub recorded: Time,
    pub event_type: String,
    pub actor: String,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "operations.html")]
struct SwitchesPage {
    c: Chrome,
    payments_suspended: Option<(String, Time)>,
    payees: Vec<PayeeRow>,
    history: Vec<HistoryRow>,
    may_flip: bool,
}

pub async fn switches_page(
    request: HttpRequest,
    console: web::Data<Console>,
) -> Result<HttpResponse, Refusal> {
    let session = actions::page_session(&request, SWITCHES).await?;
    let state = app_state(&request)?;
    let zone = console.config.time_zone;
    let chrome = Chrome::new(&request, &session, &console, "operations");
    let switches = match state.operations.switches().current().await {
        Ok(switches) => switches,
        Err(error) => return Err(Refusal::Unavailable(error.to_string())),
    };
    let history = state
        .store
        .read_stream(SWITCHES_STREAM, 0, SWITCH_HISTORY_LIMIT)
        .await
        .map_err(|e| Refusal::Unavailable(e.to_string()))?
        .into_iter()
        .rev()
        .map(|event| {
            let payload = &event.payload;
            let pick = |name: &str| {
                payload
                    .get(name)
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
            };
            let detail = [pick("payeeId"), pick("reason")]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" · ");
            HistoryRow {
                recorded: Time::new(event.recorded_at, zone),
                actor: event
                    .metadata
                    .get("actor")
                    .and_then(|a| a.as_str())
                    .unwrap_or_default()
                    .to_string(),
                event_type: event.event_type,
                detail,
            }
        })
        .collect();
    let page = SwitchesPage {
        payments_suspended: switches
            .payments_suspended
            .as_ref()
            .map(|s| (s.reason.clone(), Time::new(s.at, zone))),
        payees: switches
            .suspended_payees
            .iter()
            .map(|(payee_id, s)| PayeeRow {
                payee_id: payee_id.to_string(),
                reason: s.reason.clone(),
                since: Time::new(s.at, zone),
            })
            .collect(),
        history,
        may_flip: session.may(SUSPEND_PAYEE.method, SUSPEND_PAYEE.pattern),
        c: chrome,
    };
    Ok(render(StatusCode::OK, &page))
}

#[derive(Debug, Deserialize)]
pub struct SwitchForm {
    #[serde(default)]
    csrf: String,
    /// `suspend_payments`, `resume_payments`, `suspend_payee` or `resume_payee`.
    #[serde(default)]
    action: String,
    #[serde(default)]
    payee_id: String,
    #[serde(default)]
    reason: String,
}

pub async fn flip_switch(
    request: HttpRequest,
    console: web::Data<Console>,
    form: web::Form<SwitchForm>,
) -> Result<HttpResponse, Refusal> {
    use payledger_http::admin;
    let session = Session::of(&request).await?;
    let form = form.into_inner();
    let state = app_state(&request)?.clone();
    let reason = || {
        web::Json(admin::SuspendBody {
            reason: form.reason.clone(),
        })
    };
    let payee = || web::Path::from(form.payee_id.trim().to_string());
    let (route, result) = match form.action.as_str() {
        "suspend_payments" => {
            actions::prepare(&request, &session, SUSPEND_PAYMENTS, &form.csrf, None)?;
            let result = admin::suspend_payments(state, request.clone(), reason()).await;
            (SUSPEND_PAYMENTS, result)
        }
        "resume_payments" => {
            actions::prepare(&request, &session, RESUME_PAYMENTS, &form.csrf, None)?;
            let result = admin::resume_payments(state, request.clone()).await;
            (RESUME_PAYMENTS, result)
        }
        "suspend_payee" => {
            actions::prepare(&request, &session, SUSPEND_PAYEE, &form.csrf, None)?;
            let result = admin::suspend_payee(state, request.clone(), payee(), reason()).await;
            (SUSPEND_PAYEE, result)
        }
        "resume_payee" => {
            actions::prepare(&request, &session, RESUME_PAYEE, &form.csrf, None)?;
            let result = admin::resume_payee(state, request.clone(), payee()).await;
            (RESUME_PAYEE, result)
        }
        _ => {
            session.check_csrf(&form.csrf)?;
            return Ok(crate::pages::plain_error_page(
                StatusCode::BAD_REQUEST,
                "unknown switch action",
            ));
        }
    };
    let outcome = actions::finish(&request, &session, route, result).await;
    let chrome = Chrome::new(&request, &session, &console, "operations");
    let heading = chrome.t("kill_switches");
    let mut details = Vec::new();
    if !form.payee_id.trim().is_empty() {
        details.push(("payeeId".to_string(), form.payee_id.trim().to_string()));
    }
    details.push(("action".to_string(), form.action.clone()));
    if let Some(changed) = field(&outcome.body, "changed") {
        details.push(("changed".to_string(), changed));
    }
    Ok(actions::result_page(
        chrome,
        &outcome,
        heading,
        details,
        "/console/operations".into(),
    ))
}

pub struct InboundRow {
    pub id: i64,
    pub provider: String,
    pub event_id: String,
    pub event_type: String,
    pub status: String,
    pub attempts: i32,
    pub last_error: String,
    pub received: Time,
    pub payload: String,
}

pub struct OutboundRow {
    pub id: i64,
    pub message_id: String,
    pub endpoint_url: String,
    pub notification_type: String,
    pub status: String,
    pub attempts: i32,
    pub last_error: String,
    pub created: Time,
}

#[derive(Template)]
#[template(path = "webhooks.html")]
struct DeadLettersPage {
    c: Chrome,
    inbound: Vec<InboundRow>,
    outbound: Vec<OutboundRow>,
}

fn relay(request: &HttpRequest) -> Result<web::Data<Relay>, Refusal> {
    request
        .app_data::<web::Data<Relay>>()
        .cloned()
        .ok_or_else(|| Refusal::Unavailable("the webhook relay is not running".into()))
}

pub async fn dead_letters_page(
    request: HttpRequest,
    console: web::Data<Console>,
) -> Result<HttpResponse, Refusal> {
    let session = actions::page_session(&request, INBOUND_DEAD_LETTERS).await?;
    let relay = relay(&request)?;
    let zone = console.config.time_zone;
    let unavailable = |e: &dyn std::fmt::Display| Refusal::Unavailable(e.to_string());
    let letters = relay
        .inbound_dead_letters(0, DEAD_LETTER_PAGE)
        .await
        .map_err(|e| unavailable(&e))?;
    let mut inbound = Vec::with_capacity(letters.len());
    for letter in letters {
        // The webhook exactly as received (JSON pretty-printed when it is JSON).
        let payload = relay
            .inbound_body(letter.id)
            .await
            .ok()
            .flatten()
            .map(|body| {
                serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|json| serde_json::to_string_pretty(&json).ok())
                    .unwrap_or_else(|| {
                        String::from_utf8_lossy(&body[..body.len().min(MAX_SHOWN_BODY_BYTES)])
                            .into_owned()
                    })
            })
            .unwrap_or_default();
        inbound.push(InboundRow {
            id: letter.id,
            provider: letter.provider,
            event_id: letter.event_id,
            event_type: letter.event_type.unwrap_or_default(),
            status: letter.status,
            attempts: letter.attempts,
            last_error: letter.last_error.unwrap_or_default(),
            received: Time::new(letter.received_at, zone),
            payload,
        });
    }
    let outbound =
        payledger_webhook_relay::outbox::outbound_dead_letters(&relay.pool, 0, DEAD_LETTER_PAGE)
            .await
            .map_err(|e| unavailable(&e))?
            .into_iter()
            .map(|d| OutboundRow {
                id: d.id,
                message_id: d.message_id,
                endpoint_url: d.endpoint_url,
                notification_type: d.notification_type,
                status: d.status,
                attempts: d.attempts,
                last_error: d.last_error.unwrap_or_default(),
                created: Time::new(d.created_at, zone),
            })
            .collect();
    let page = DeadLettersPage {
        c: Chrome::new(&request, &session, &console, "webhooks"),
        inbound,
        outbound,
    };
    Ok(render(StatusCode::OK, &page))
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub async fn replay_inbound(
    request: HttpRequest,
    console: web::Data<Console>,
    path: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, Refusal> {
    let id = path.into_inner();
    let relay = relay(&request)?;
    let page = actions::ActionPage {
        route: REPLAY_INBOUND,
        section: "webhooks",
        label: "replay",
        subject: &id,
        details: &["eventId", "status", "streamId"],
        back: "/console/webhooks".into(),
    };
    actions::perform(&request, &console, page, &form.csrf, None, |_| {
        payledger_http::webhooks::replay_inbound(
            relay,
            request.clone(),
            web::Path::from(id.clone()),
        )
    })
    .await
}

pub async fn replay_outbound(
    request: HttpRequest,
    console: web::Data<Console>,
    path: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, Refusal> {
    let id = path.into_inner();
    let relay = relay(&request)?;
    let page = actions::ActionPage {
        route: REPLAY_OUTBOUND,
        section: "webhooks",
        label: "replay",
        subject: &id,
        details: &["messageId", "status"],
        back: "/console/webhooks".into(),
    };
    actions::perform(&request, &console, page, &form.csrf, None, |_| {
        payledger_http::webhooks::replay_outbound(
            relay,
            request.clone(),
            web::Path::from(id.clone()),
        )
    })
    .await
}

pub struct KeyRow {
    pub key_id: String,
    pub name: String,
    pub role: String,
    pub prefix: String,
    pub created: Time,
    pub created_by: String,
    pub revoked: Option<Time>,
}

#[derive(Template)]
#[template(path = "keys.html")]
struct KeysPage {
    c: Chrome,
    keys: Vec<KeyRow>,
    roles: Vec<&'static str>,
}

fn require_admin(session: &Session) -> Result<(), Refusal> {
    if session.principal.role == Role::Admin {
        Ok(())
    } else {
        Err(Refusal::Forbidden)
    }
}

pub async fn keys_page(
    request: HttpRequest,
    console: web::Data<Console>,
) -> Result<HttpResponse, Refusal> {
    let session = Session::of(&request).await?;
    require_admin(&session)?;
    let state = app_state(&request)?;
    let zone = console.config.time_zone;
    let keys = api_keys::list_keys(&state.read_pool)
        .await
        .map_err(|e| Refusal::Unavailable(e.to_string()))?
        .into_iter()
        .take(500)
        .map(|k| KeyRow {
            key_id: k.key_id,
            name: k.name,
            role: k.role.to_string(),
            prefix: k.key_prefix,
            created: Time::new(k.created_at, zone),
            created_by: k.created_by,
            revoked: k.revoked_at.map(|t| Time::new(t, zone)),
        })
        .collect();
    let page = KeysPage {
        c: Chrome::new(&request, &session, &console, "api_keys"),
        keys,
        roles: Role::ALL.iter().map(|r| r.as_str()).collect(),
    };
    Ok(render(StatusCode::OK, &page))
}

#[derive(Debug, Deserialize)]
pub struct CreateKeyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
}

pub async fn create_key(
    request: HttpRequest,
    console: web::Data<Console>,
    form: web::Form<CreateKeyForm>,
) -> Result<HttpResponse, Refusal> {
    let session = Session::of(&request).await?;
    session.check_csrf(&form.csrf)?;
    require_admin(&session)?;
    let state = app_state(&request)?;
    let context = payledger_http::request_context(&request);
    let created = match Role::parse(form.role.trim()) {
        Ok(role) => {
            api_keys::create_key(
                &state.read_pool,
                &state.store,
                form.name.trim(),
                role,
                &context,
            )
            .await
        }
        Err(e) => Err(e),
    };
    let chrome = Chrome::new(&request, &session, &console, "api_keys");
    let heading = chrome.t("create_key");
    let (outcome, secret, details) = match created {
        Ok(key) => (
            actions::Outcome {
                status: 201,
                code: None,
                message: String::new(),
                body: serde_json::Value::Null,
            },
            Some(key.secret.expose().to_string()),
            vec![
                ("keyId".to_string(), key.record.key_id.clone()),
                ("name".to_string(), key.record.name.clone()),
                ("role".to_string(), key.record.role.to_string()),
            ],
        ),
        Err(error) => (key_error_outcome(&error), None, Vec::new()),
    };
    record_key_action(&request, &session, CREATE_KEY, &outcome).await;
    let ok = outcome.ok();
    let page = ResultPage {
        heading: if ok {
            heading
        } else {
            format!("{}: {heading}", chrome.t("refused"))
        },
        message: if ok {
            chrome.t("key_shown_once")
        } else {
            outcome.message.clone()
        },
        code: outcome.code.clone(),
        c: chrome,
        ok,
        details,
        back: "/console/keys".into(),
        secret,
    };
    let status = if ok {
        StatusCode::CREATED
    } else {
        StatusCode::BAD_REQUEST
    };
    Ok(render(status, &page))
}

fn key_error_outcome(error: &api_keys::ApiKeyError) -> actions::Outcome {
    use api_keys::ApiKeyError as E;
    let (status, code) = match error {
        E::NotFound(_) => (404, "E_NOT_FOUND"),
        E::Database(_) | E::Audit(_) => (503, "E_UNAVAILABLE"),
        _ => (400, "E_INVALID_FIELD"),
    };
    actions::Outcome {
        status,
        code: Some(code.to_string()),
        message: error.to_string(),
        body: serde_json::Value::Null,
    }
}

/// Key changes already write their own `audit-admin` event (`api_keys`); the action record says
/// that it was done from the console, like every other console action.
async fn record_key_action(
    request: &HttpRequest,
    session: &Session,
    route: Route,
    outcome: &actions::Outcome,
) {
    let _ = actions::finish(
        request,
        session,
        route,
        if outcome.ok() {
            Ok(HttpResponse::Ok().finish())
        } else {
            Err(payledger_http::errors::ApiError::new(
                payledger_http::errors::ErrorCode::InvalidField,
                outcome.message.clone(),
            ))
        },
    )
    .await;
}

#[derive(Debug, Deserialize)]
pub struct RevokeKeyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    key_id: String,
}

pub async fn revoke_key(
    request: HttpRequest,
    console: web::Data<Console>,
    form: web::Form<RevokeKeyForm>,
) -> Result<HttpResponse, Refusal> {
    let session = Session::of(&request).await?;
    session.check_csrf(&form.csrf)?;
    require_admin(&session)?;
    let state = app_state(&request)?;
    let context = payledger_http::request_context(&request);
    let key_id = form.key_id.trim();
    // Only by id: revoking by name from a button would revoke every key of that name.
    let revoked = if key_id.starts_with("key_") {
        api_keys::revoke(&state.read_pool, &state.store, key_id, &context).await
    } else {
        Err(api_keys::ApiKeyError::NotFound(
            key_id.chars().take(80).collect(),
        ))
    };
    let outcome = match &revoked {
        Ok(_) => actions::Outcome {
            status: 200,
            code: None,
            message: String::new(),
            body: serde_json::Value::Null,
        },
        Err(error) => key_error_outcome(error),
    };
    record_key_action(&request, &session, REVOKE_KEY, &outcome).await;
    let chrome = Chrome::new(&request, &session, &console, "api_keys");
    let heading = format!("{} · {key_id}", chrome.t("revoke"));
    Ok(actions::result_page(
        chrome,
        &outcome,
        heading,
        vec![("keyId".to_string(), key_id.to_string())],
        "/console/keys".into(),
    ))
}
