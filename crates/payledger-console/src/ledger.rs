//! Ledger and audit: projection status and lag, rebuild with live progress, `audit verify`, and
//! an explorer of the global log.

use crate::actions::{self, Route};
use crate::pages::{render, Chrome, Time};
use crate::session::{app_state, Refusal, Session};
use crate::sign_in::see_other;
use crate::Console;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use payledger_app::api_keys::Role;
use payledger_projector::rebuild_jobs::{RebuildJob, RebuildState};
use serde::Deserialize;

/// Who may read the ledger screens: whoever may read the raw log.
const RAW_LOG: Route = Route::get("/v1/events");
/// A rebuild has no API route (the CLI's `projections rebuild`); admins only, and recorded
/// under this name in `audit-admin`.
const REBUILD: Route = Route::post("/console/ledger/rebuild");

/// Events the explorer reads per page while filtering (a bound on one request's work).
const EXPLORER_SCAN_EVENTS: i64 = 5_000;
const EXPLORER_PAGE_ROWS: usize = 50;

pub struct ProjectionRow {
    pub name: String,
    pub position: i64,
    pub head_position: i64,
    pub lag_events: i64,
    pub lag_ms: i64,
    pub rebuild: Option<String>,
}

#[derive(Template)]
#[template(path = "ledger.html")]
struct LedgerPage {
    c: Chrome,
    projections: Vec<ProjectionRow>,
    may_rebuild: bool,
}

fn rebuild_label(job: &RebuildJob) -> String {
    match &job.state {
        RebuildState::Running => format!("running {}%", job.percent()),
        RebuildState::Finished {
            swapped_at_position,
        } => format!("finished at position {swapped_at_position}"),
        RebuildState::Failed { error } => format!("failed: {error}"),
    }
}

pub async fn ledger_page(
    request: HttpRequest,
    console: web::Data<Console>,
) -> Result<HttpResponse, Refusal> {
    let session = actions::page_session(&request, RAW_LOG).await?;
    let state = app_state(&request)?;
    let projections = payledger_projector::status(&state.read_pool)
        .await
        .map_err(|e| Refusal::Unavailable(e.to_string()))?
        .into_iter()
        .map(|s| ProjectionRow {
            rebuild: console.rebuilds.get(&s.name).map(|j| rebuild_label(&j)),
            name: s.name,
            position: s.position,
            head_position: s.head_position,
            lag_events: s.lag_events,
            lag_ms: s.lag_ms,
        })
        .collect();
    let page = LedgerPage {
        c: Chrome::new(&request, &session, &console, "ledger"),
        projections,
        may_rebuild: session.principal.role == Role::Admin,
    };
    Ok(render(StatusCode::OK, &page))
}

#[derive(Debug, Deserialize)]
pub struct RebuildForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
}

pub async fn start_rebuild(
    request: HttpRequest,
    console: web::Data<Console>,
    form: web::Form<RebuildForm>,
) -> Result<HttpResponse, Refusal> {
    let session = Session::of(&request).await?;
    session.check_csrf(&form.csrf)?;
    if session.principal.role != Role::Admin {
        return Err(Refusal::Forbidden);
    }
    let state = app_state(&request)?;
    let Some(projection) = payledger_read_models::projection_named(form.name.trim()) else {
        return Ok(crate::pages::plain_error_page(
            StatusCode::NOT_FOUND,
            "no projection has that name",
        ));
    };
    let name = projection.name();
    let started = console.rebuilds.start(
        state.read_pool.clone(),
        projection,
        &session.principal.actor(),
        state.operations.now(),
    );
    let result = match &started {
        Ok(_) => Ok(HttpResponse::Accepted().finish()),
        Err(error) => Err(payledger_http::errors::ApiError::new(
            payledger_http::errors::ErrorCode::Contention,
            error.to_string(),
        )),
    };
    let outcome = actions::finish(&request, &session, REBUILD, result).await;
    if !outcome.ok() {
        let chrome = Chrome::new(&request, &session, &console, "ledger");
        let heading = chrome.t("rebuild");
        return Ok(actions::result_page(
            chrome,
            &outcome,
            heading,
            Vec::new(),
            "/console/ledger".into(),
        ));
    }
    Ok(see_other(&format!("/console/ledger/rebuild/{name}")))
}

#[derive(Template)]
#[template(path = "rebuild.html")]
struct RebuildPage {
    c: Chrome,
    name: String,
    running: bool,
    finished: bool,
    error: Option<String>,
    percent: i64,
    position: i64,
    head_position: i64,
    started: Time,
    started_by: String,
}

/// The rebuild's progress. While it runs the page refreshes itself every second (a `refresh`
/// meta tag: no script needed); the script, when allowed, updates the bar in place instead.
pub async fn rebuild_page(
    request: HttpRequest,
    console: web::Data<Console>,
    path: web::Path<String>,
) -> Result<HttpResponse, Refusal> {
    let session = actions::page_session(&request, RAW_LOG).await?;
    let Some(job) = console.rebuilds.get(&path) else {
        return Ok(crate::pages::plain_error_page(
            StatusCode::NOT_FOUND,
            "no rebuild of that projection has run since the server started",
        ));
    };
    let page = RebuildPage {
        c: Chrome::new(&request, &session, &console, "ledger"),
        running: job.state == RebuildState::Running,
        finished: matches!(job.state, RebuildState::Finished { .. }),
        error: match &job.state {
            RebuildState::Failed { error } => Some(error.clone()),
            _ => None,
        },
        percent: job.percent(),
        position: job.position,
        head_position: job.head_position,
        started: Time::new(job.started_at, console.config.time_zone),
        started_by: job.started_by.clone(),
        name: job.name,
    };
    Ok(render(StatusCode::OK, &page))
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    c: Chrome,
    ok: bool,
    events_checked: u64,
    streams_checked: u64,
    head_position: i64,
    problem: String,
}

pub async fn audit_verify(
    request: HttpRequest,
    console: web::Data<Console>,
    form: web::Form<crate::sign_in::CsrfForm>,
) -> Result<HttpResponse, Refusal> {
    let session = Session::of(&request).await?;
    session.check_csrf(&form.csrf)?;
    session.require(RAW_LOG.method, RAW_LOG.pattern)?;
    let state = app_state(&request)?;
    let report = payledger_store::audit::verify_all(&state.read_pool)
        .await
        .map_err(|e| Refusal::Unavailable(e.to_string()))?;
    let page = AuditPage {
        c: Chrome::new(&request, &session, &console, "ledger"),
        ok: report.first_problem.is_none(),
        events_checked: report.events_checked,
        streams_checked: report.streams_checked,
        head_position: report.head_position,
        problem: report
            .first_problem
            .map(|p| format!("{p:?}"))
            .unwrap_or_default(),
    };
    Ok(render(StatusCode::OK, &page))
}

#[derive(Debug, Default, Deserialize)]
pub struct EventsQuery {
    prefix: Option<String>,
    event_type: Option<String>,
    after: Option<i64>,
}

pub struct EventRow {
    pub position: i64,
    pub stream_id: String,
    pub version: i64,
    pub event_type: String,
    pub actor: String,
    pub recorded: Time,
    pub hash: String,
    pub payload: String,
}

#[derive(Template)]
#[template(path = "events.html")]
struct EventsPage {
    c: Chrome,
    prefix: String,
    event_type: String,
    after: i64,
    rows: Vec<EventRow>,
    scanned_to: i64,
    head_position: i64,
    next_href: Option<String>,
}

/// The global log from a position, filtered by stream prefix and event type. Each page reads at
/// most [`EXPLORER_SCAN_EVENTS`] events and says how far it got, so a rare match pages on.
pub async fn events_page(
    request: HttpRequest,
    console: web::Data<Console>,
    query: web::Query<EventsQuery>,
) -> Result<HttpResponse, Refusal> {
    let session = actions::page_session(&request, RAW_LOG).await?;
    let state = app_state(&request)?;
    let zone = console.config.time_zone;
    let clean = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .unwrap_or("")
            .chars()
            .take(100)
            .collect::<String>()
    };
    let prefix = clean(&query.prefix);
    let event_type = clean(&query.event_type);
    let after = query.after.unwrap_or(0).max(0);
    let head_position = state
        .store
        .head_position()
        .await
        .map_err(|e| Refusal::Unavailable(e.to_string()))?;
    let mut rows = Vec::new();
    let mut scanned_to = after;
    let mut cursor = after;
    while cursor < head_position
        && cursor - after < EXPLORER_SCAN_EVENTS
        && rows.len() < EXPLORER_PAGE_ROWS
    {
        let batch = state
            .store
            .read_all(cursor, 500)
            .await
            .map_err(|e| Refusal::Unavailable(e.to_string()))?;
        let Some(last) = batch.last() else { break };
        cursor = last.global_position;
        for event in batch {
            scanned_to = event.global_position;
            if (!prefix.is_empty() && !event.stream_id.starts_with(&prefix))
                || (!event_type.is_empty() && event.event_type != event_type)
            {
                continue;
            }
            rows.push(EventRow {
                position: event.global_position,
                actor: event
                    .metadata
                    .get("actor")
                    .and_then(|a| a.as_str())
                    .unwrap_or_default()
                    .to_string(),
                stream_id: event.stream_id,
                version: event.stream_version,
                event_type: event.event_type,
                recorded: Time::new(event.recorded_at, zone),
                hash: hex::encode(event.hash),
                payload: serde_json::to_string_pretty(&event.payload).unwrap_or_default(),
            });
            if rows.len() >= EXPLORER_PAGE_ROWS {
                break;
            }
        }
    }
    let next_href = (scanned_to < head_position).then(|| {
        format!(
            "/console/ledger/events?prefix={}&event_type={}&after={scanned_to}",
            crate::orders::encode(&prefix),
            crate::orders::encode(&event_type)
        )
    });
    let page = EventsPage {
        c: Chrome::new(&request, &session, &console, "ledger"),
        prefix,
        event_type,
        after,
        rows,
        scanned_to,
        head_position,
        next_href,
    };
    Ok(render(StatusCode::OK, &page))
}

const TRIAL_BALANCE: Route = Route::get("/v1/journal/trial-balance");

#[derive(Debug, Deserialize)]
struct AccountIn {
    account: String,
    currency: String,
    debit: i64,
    credit: i64,
    balance: i64,
}

#[derive(Debug, Deserialize)]
struct TrialBalanceIn {
    position: i64,
    accounts: Vec<AccountIn>,
    balanced: bool,
}

pub struct AccountRow {
    pub account: String,
    pub debit: String,
    pub credit: String,
    pub balance: String,
}

#[derive(Template)]
#[template(path = "trial_balance.html")]
struct TrialBalancePage {
    c: Chrome,
    at: String,
    position: i64,
    balanced: bool,
    rows: Vec<AccountRow>,
    error: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct TrialBalanceQuery {
    at: Option<String>,
}

/// The trial balance at a chosen position (the journal's current one when left empty): the
/// API's own answer, drawn as a table.
pub async fn trial_balance_page(
    request: HttpRequest,
    console: web::Data<Console>,
    query: web::Query<TrialBalanceQuery>,
) -> Result<HttpResponse, Refusal> {
    let session = actions::page_session(&request, TRIAL_BALANCE).await?;
    let state = app_state(&request)?.clone();
    let at_text = query.at.as_deref().unwrap_or("").trim().to_string();
    let mut error = None;
    let at = if at_text.is_empty() {
        None
    } else {
        match at_text.parse::<i64>() {
            Ok(at) => Some(at),
            Err(_) => {
                error = Some("the position must be a whole number".to_string());
                None
            }
        }
    };
    let mut page = TrialBalancePage {
        c: Chrome::new(&request, &session, &console, "ledger"),
        at: at_text,
        position: 0,
        balanced: true,
        rows: Vec::new(),
        error,
    };
    if page.error.is_none() {
        let answer = payledger_http::settlements::trial_balance(
            state,
            web::Query(payledger_http::settlements::TrialBalanceQuery { at }),
        )
        .await;
        match answer {
            Ok(response) => {
                let bytes = actix_web::body::to_bytes(response.into_body())
                    .await
                    .unwrap_or_default();
                let view: TrialBalanceIn = serde_json::from_slice(&bytes).map_err(|e| {
                    Refusal::Unavailable(format!("unexpected trial balance answer: {e}"))
                })?;
                page.position = view.position;
                page.balanced = view.balanced;
                page.rows = view
                    .accounts
                    .into_iter()
                    .map(|a| AccountRow {
                        debit: crate::pages::money(a.debit, &a.currency),
                        credit: crate::pages::money(a.credit, &a.currency),
                        balance: crate::pages::money(a.balance, &a.currency),
                        account: a.account,
                    })
                    .collect();
            }
            Err(e) => page.error = Some(format!("{} ({})", e.message, e.code.as_str())),
        }
    }
    Ok(render(StatusCode::OK, &page))
}
