//! Settlements: weekly statements by payee and week, the statement page with its totals, lines
//! and holds, its confirm/payout state and payout reference, and the admin actions: confirm a
//! statement whose week is over, record its payout.
//!
//! Reads are the API's own answer (`GET /v1/settlements`); actions are the API's handlers (see
//! `actions.rs`).

use crate::actions::{self, field, json_of, Route};
use crate::pages::{money, render, Chrome, Time};
use crate::session::{app_state, Refusal, Session};
use crate::Console;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use payledger_domain::settlement::StatementKey;
use payledger_http::errors::{ApiError, ErrorCode};
use payledger_http::settlements as api;
use serde::Deserialize;
use serde_json::Value;

const LIST: Route = Route {
    method: "GET",
    pattern: "/v1/settlements",
};
const CONFIRM: Route = Route {
    method: "POST",
    pattern: "/v1/settlements/{statement_id}/confirm",
};
const PAYOUT: Route = Route {
    method: "POST",
    pattern: "/v1/settlements/{statement_id}/payout",
};

const STATUSES: &[&str] = &["open", "confirmed", "paid_out"];
/// Statements listed on one page.
const PAGE_SIZE: i64 = 100;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TotalsIn {
    payments: i64,
    refunds: i64,
    compensations: i64,
    held: i64,
    released: i64,
    carried: i64,
    net_sales: i64,
    platform_fee_bps: u32,
    platform_fee: i64,
    net: i64,
    net_payable: i64,
    carry_forward: i64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LineIn {
    kind: String,
    order_id: Option<String>,
    claim_id: Option<String>,
    amount: i64,
    occurred_at: DateTime<Utc>,
    carried_from: Option<NaiveDate>,
    memo: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatementIn {
    statement_id: String,
    payee_id: String,
    week_start: NaiveDate,
    currency: String,
    period_start: DateTime<Utc>,
    period_end: DateTime<Utc>,
    time_zone: String,
    status: String,
    totals: TotalsIn,
    #[serde(default)]
    lines: Vec<LineIn>,
    confirmed_at: Option<DateTime<Utc>>,
    paid_out_at: Option<DateTime<Utc>>,
    payout_reference: Option<String>,
    version: i64,
}

pub struct StatementRow {
    pub statement_id: String,
    pub payee_id: String,
    pub week_start: String,
    pub status: String,
    pub payments: String,
    pub held: String,
    pub net_payable: String,
    pub lines: usize,
    pub confirmed: Option<Time>,
    pub paid_out: Option<Time>,
    pub payout_reference: String,
}

fn row_of(s: &StatementIn, zone: chrono_tz::Tz) -> StatementRow {
    StatementRow {
        statement_id: s.statement_id.clone(),
        payee_id: s.payee_id.clone(),
        week_start: s.week_start.to_string(),
        status: s.status.clone(),
        payments: money(s.totals.payments, &s.currency),
        held: money(s.totals.held - s.totals.released, &s.currency),
        net_payable: money(s.totals.net_payable, &s.currency),
        lines: s.lines.len(),
        confirmed: s.confirmed_at.map(|t| Time::new(t, zone)),
        paid_out: s.paid_out_at.map(|t| Time::new(t, zone)),
        payout_reference: s.payout_reference.clone().unwrap_or_default(),
    }
}

fn statements_of(body: &Value) -> Vec<StatementIn> {
    body.get("statements")
        .cloned()
        .and_then(|s| serde_json::from_value(s).ok())
        .unwrap_or_default()
}

async fn list(
    request: &HttpRequest,
    payee_id: Option<String>,
    week: Option<NaiveDate>,
    status: Option<String>,
    min_position: Option<i64>,
) -> Result<Vec<StatementIn>, (String, String)> {
    let state = app_state(request)
        .map_err(|e| (ErrorCode::Unavailable.as_str().to_string(), e.to_string()))?
        .clone();
    let query = api::SettlementQuery {
        payee_id,
        week,
        status,
        limit: Some(PAGE_SIZE),
        min_position,
    };
    json_of(api::list_statements(state, web::Query(query)).await)
        .await
        .map(|body| statements_of(&body))
}

#[derive(Template)]
#[template(path = "settlements.html")]
struct ListPage {
    c: Chrome,
    payee_id: String,
    week: String,
    statuses: Vec<(&'static str, bool)>,
    rows: Vec<StatementRow>,
    error: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    payee_id: Option<String>,
    week: Option<String>,
    status: Option<String>,
}

fn non_empty(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| v.chars().take(150).collect())
}

/// `/console/settlements?payee_id=…&week=…&status=…`: this week's statements by default.
pub async fn statements(
    request: HttpRequest,
    console: web::Data<Console>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, Refusal> {
    let session = Session::of(&request).await?;
    session.require(LIST.method, LIST.pattern)?;
    let state = app_state(&request)?.clone();
    let zone = console.config.time_zone;
    let payee_id = non_empty(&query.payee_id);
    let status = non_empty(&query.status).filter(|s| STATUSES.contains(&s.as_str()));
    let mut error = None;
    let week = match non_empty(&query.week) {
        Some(text) => match NaiveDate::parse_from_str(&text, "%Y-%m-%d") {
            Ok(date) => Some(date),
            Err(_) => {
                error = Some(format!("{text:?} is not a date (YYYY-MM-DD)"));
                None
            }
        },
        // No payee either: the week the console's zone is in now (the scenario clock's now).
        None if payee_id.is_none() => {
            Some(state.operations.now().with_timezone(&zone).date_naive())
        }
        None => None,
    };
    let week = week.map(|d| d - Duration::days(i64::from(d.weekday().num_days_from_monday())));
    let rows = if error.is_some() || (payee_id.is_none() && week.is_none()) {
        Vec::new()
    } else {
        match list(&request, payee_id.clone(), week, status.clone(), None).await {
            Ok(statements) => statements.iter().map(|s| row_of(s, zone)).collect(),
            Err((code, message)) => {
                error = Some(format!("{message} ({code})"));
                Vec::new()
            }
        }
    };
    let page = ListPage {
        c: Chrome::new(&request, &session, &console, "settlements"),
        payee_id: payee_id.unwrap_or_default(),
        week: week.map(|w| w.to_string()).unwrap_or_default(),
        statuses: STATUSES
            .iter()
            .map(|s| (*s, status.as_deref() == Some(*s)))
            .collect(),
        rows,
        error,
    };
    Ok(render(StatusCode::OK, &page))
}

pub struct LineRow {
    pub kind: String,
    pub order_id: String,
    pub claim_id: String,
    pub amount: String,
    pub occurred: Time,
    pub carried_from: String,
    pub memo: String,
}

#[derive(Template)]
#[template(path = "statement.html")]
struct StatementPage {
    c: Chrome,
    statement_id: String,
    payee_id: String,
    week_start: String,
    currency: String,
    time_zone: String,
    period_start: Time,
    period_end: Time,
    status: String,
    totals: Vec<(String, String, &'static str)>,
    platform_fee_bps: u32,
    net_payable_minor: i64,
    lines: Vec<LineRow>,
    holds: Vec<LineRow>,
    confirmed: Option<Time>,
    paid_out: Option<Time>,
    payout_reference: String,
    version: i64,
    may_confirm: bool,
    may_pay_out: bool,
}

fn line_row(line: LineIn, currency: &str, zone: chrono_tz::Tz) -> LineRow {
    LineRow {
        amount: money(line.amount, currency),
        occurred: Time::new(line.occurred_at, zone),
        carried_from: line.carried_from.map(|d| d.to_string()).unwrap_or_default(),
        order_id: line.order_id.unwrap_or_default(),
        claim_id: line.claim_id.unwrap_or_default(),
        kind: line.kind,
        memo: line.memo,
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct ReadQuery {
    /// After an action: the position its answer named, so the page reads its own write.
    min_position: Option<i64>,
}

/// `/console/settlements/{statement_id}`.
pub async fn statement(
    request: HttpRequest,
    console: web::Data<Console>,
    path: web::Path<String>,
    query: web::Query<ReadQuery>,
) -> Result<HttpResponse, Refusal> {
    let session = Session::of(&request).await?;
    session.require(LIST.method, LIST.pattern)?;
    let zone = console.config.time_zone;
    let statement_id = path.into_inner();
    let chrome = Chrome::new(&request, &session, &console, "settlements");
    let found = match StatementKey::parse(&statement_id) {
        Err(error) => Err((
            ErrorCode::InvalidField.as_str().to_string(),
            error.to_string(),
        )),
        Ok(key) => list(
            &request,
            Some(key.payee_id.to_string()),
            Some(key.week_start),
            None,
            query.min_position.filter(|p| *p > 0),
        )
        .await
        .and_then(|all| {
            all.into_iter()
                .find(|s| s.statement_id == statement_id)
                .ok_or_else(|| {
                    (
                        ErrorCode::StatementNotFound.as_str().to_string(),
                        "statement does not exist".to_string(),
                    )
                })
        }),
    };
    let s = match found {
        Ok(s) => s,
        Err((code, message)) => {
            let outcome = actions::Outcome {
                status: 404,
                code: Some(code),
                message,
                body: Value::Null,
            };
            let heading = format!("{} {statement_id}", chrome.t("statement"));
            return Ok(actions::result_page(
                chrome,
                &outcome,
                heading,
                Vec::new(),
                "/console/settlements".into(),
            ));
        }
    };
    let currency = s.currency.clone();
    let m = |v: i64| money(v, &currency);
    let t = &s.totals;
    let totals = vec![
        (chrome.t("payments"), m(t.payments), "payments"),
        (chrome.t("refunds"), m(-t.refunds), "refunds"),
        (
            chrome.t("compensations"),
            m(t.compensations),
            "compensations",
        ),
        (chrome.t("held"), m(-t.held), "held"),
        (chrome.t("released"), m(t.released), "released"),
        (chrome.t("carried"), m(t.carried), "carried"),
        (chrome.t("net_sales"), m(t.net_sales), "net-sales"),
        (chrome.t("platform_fee"), m(-t.platform_fee), "platform-fee"),
        (chrome.t("net"), m(t.net), "net"),
        (chrome.t("net_payable"), m(t.net_payable), "net-payable"),
        (
            chrome.t("carry_forward"),
            m(t.carry_forward),
            "carry-forward",
        ),
    ];
    let (holds, lines): (Vec<LineIn>, Vec<LineIn>) = s
        .lines
        .into_iter()
        .partition(|l| l.kind == "hold" || l.kind == "hold_released");
    let page = StatementPage {
        may_confirm: s.status == "open" && session.may(CONFIRM.method, CONFIRM.pattern),
        may_pay_out: s.status == "confirmed" && session.may(PAYOUT.method, PAYOUT.pattern),
        c: chrome,
        totals,
        platform_fee_bps: t.platform_fee_bps,
        net_payable_minor: t.net_payable,
        lines: lines
            .into_iter()
            .map(|l| line_row(l, &currency, zone))
            .collect(),
        holds: holds
            .into_iter()
            .map(|l| line_row(l, &currency, zone))
            .collect(),
        period_start: Time::new(s.period_start, zone),
        period_end: Time::new(s.period_end, zone),
        confirmed: s.confirmed_at.map(|t| Time::new(t, zone)),
        paid_out: s.paid_out_at.map(|t| Time::new(t, zone)),
        payout_reference: s.payout_reference.unwrap_or_default(),
        week_start: s.week_start.to_string(),
        statement_id: s.statement_id,
        payee_id: s.payee_id,
        currency: s.currency,
        time_zone: s.time_zone,
        status: s.status,
        version: s.version,
    };
    Ok(render(StatusCode::OK, &page))
}

fn back_to(statement_id: &str) -> String {
    format!(
        "/console/settlements/{}",
        crate::orders::encode(statement_id)
    )
}

const RESULT_FIELDS: &[&str] = &["status", "confirmedAt", "paidOutAt", "payoutReference"];

async fn statement_result(
    request: &HttpRequest,
    session: &Session,
    console: &Console,
    route: Route,
    statement_id: &str,
    heading_key: &str,
    result: Result<HttpResponse, ApiError>,
) -> HttpResponse {
    let outcome = actions::finish(request, session, route, result).await;
    let chrome = Chrome::new(request, session, console, "settlements");
    let heading = format!("{} · {statement_id}", chrome.t(heading_key));
    let mut details: Vec<(String, String)> = RESULT_FIELDS
        .iter()
        .filter_map(|n| field(&outcome.body, n).map(|v| (n.to_string(), v)))
        .collect();
    if let Some(net) = outcome.body.pointer("/totals/netPayable") {
        details.push(("netPayable".into(), net.to_string()));
    }
    let back = match outcome.body.get("position").and_then(Value::as_i64) {
        Some(position) => format!("{}?min_position={position}", back_to(statement_id)),
        None => back_to(statement_id),
    };
    actions::result_page(chrome, &outcome, heading, details, back)
}

pub async fn confirm(
    request: HttpRequest,
    console: web::Data<Console>,
    path: web::Path<String>,
    form: web::Form<crate::sign_in::CsrfForm>,
) -> Result<HttpResponse, Refusal> {
    let session = Session::of(&request).await?;
    actions::prepare(&request, &session, CONFIRM, &form.csrf, None)?;
    let state = app_state(&request)?.clone();
    let statement_id = path.into_inner();
    let result = api::confirm(
        state,
        request.clone(),
        web::Path::from(statement_id.clone()),
    )
    .await;
    Ok(statement_result(
        &request,
        &session,
        &console,
        CONFIRM,
        &statement_id,
        "confirm_statement",
        result,
    )
    .await)
}

#[derive(Debug, Deserialize)]
pub struct PayoutForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    idem: String,
    #[serde(default)]
    reference: String,
    #[serde(default)]
    amount: String,
}

pub async fn payout(
    request: HttpRequest,
    console: web::Data<Console>,
    path: web::Path<String>,
    form: web::Form<PayoutForm>,
) -> Result<HttpResponse, Refusal> {
    let session = Session::of(&request).await?;
    let form = form.into_inner();
    actions::prepare(&request, &session, PAYOUT, &form.csrf, Some(&form.idem))?;
    let state = app_state(&request)?.clone();
    let statement_id = path.into_inner();
    let result = match form.amount.trim().parse::<i64>() {
        Ok(amount) => {
            api::payout(
                state,
                request.clone(),
                web::Path::from(statement_id.clone()),
                web::Json(api::PayoutBody {
                    reference: form.reference.trim().to_string(),
                    amount: serde_json::Number::from(amount),
                }),
            )
            .await
        }
        Err(_) => Err(ApiError::new(
            ErrorCode::InvalidAmount,
            "the amount is a whole number of minor units",
        )),
    };
    Ok(statement_result(
        &request,
        &session,
        &console,
        PAYOUT,
        &statement_id,
        "record_payout",
        result,
    )
    .await)
}
