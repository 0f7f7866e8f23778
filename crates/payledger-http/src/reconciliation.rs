//! Reconciliation of the providers' settlements: import a provider's report (admins), flag
//! captures never settled, list and resolve the exceptions (discrepancies), and the report per
//! provider and day with the aged `provider_clearing` balance (JSON or CSV).
//!
//! The service is registered beside `AppState` as `web::Data<Reconciliation>`; a deployment
//! without it answers these routes with `E_RECONCILIATION_PROVIDER_UNKNOWN`.

use crate::dto::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use crate::errors::{ApiError, ErrorCode};
use crate::request_context::request_context;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use payledger_app::reconciliation::{ReconcileError, Reconciliation, UnsettledCapture};
use payledger_domain::ids::OrderId;
use payledger_domain::money::Currency;
use payledger_domain::reconciliation::{FlagKind, ReconciliationError, Resolution};
use payledger_gateway::settlements::{SettlementError, SettlementPeriod, MAX_IMPORT_DAYS};
use payledger_read_models::reconciliation::{self as rm, ExceptionFilter};
use payledger_store::call_bounds::bounded_as;
use serde::Deserialize;
use std::fmt::Write as _;

/// Longest report period, in days.
const MAX_REPORT_DAYS: i64 = 366;

fn service(
    reconciliation: Option<web::Data<Reconciliation>>,
    provider: &str,
) -> Result<web::Data<Reconciliation>, ApiError> {
    reconciliation.ok_or_else(|| unknown_provider(provider))
}

fn unknown_provider(provider: &str) -> ApiError {
    ApiError::new(
        ErrorCode::ReconciliationProviderUnknown,
        format!("no settlement import is configured for provider '{provider}'"),
    )
    .with("provider", provider.chars().take(40).collect::<String>())
}

fn reconcile_error(error: ReconcileError) -> ApiError {
    match error {
        ReconcileError::UnknownProvider(provider) => unknown_provider(&provider),
        ReconcileError::Source(e @ SettlementError::TooManyLines)
        | ReconcileError::Source(e @ SettlementError::Malformed(_))
        | ReconcileError::Source(e @ SettlementError::Unavailable(_)) => {
            ApiError::new(ErrorCode::SettlementReportUnavailable, e.to_string()).retry_after(60)
        }
        ReconcileError::Record(ReconciliationError::NoOpenFlag) => ApiError::new(
            ErrorCode::ReconciliationExceptionNotOpen,
            "no open reconciliation exception with this id",
        ),
        ReconcileError::Record(e @ ReconciliationError::InvalidNote) => {
            ApiError::field("note", e.to_string())
        }
        ReconcileError::Record(e @ ReconciliationError::InvalidLine(_)) => {
            ApiError::new(ErrorCode::SettlementReportUnavailable, e.to_string()).retry_after(60)
        }
        ReconcileError::Unavailable(e) => ApiError::new(ErrorCode::Unavailable, e).retry_after(1),
        ReconcileError::Contention => {
            ApiError::new(ErrorCode::Unavailable, "the ledger is busy; retry").retry_after(1)
        }
        ReconcileError::Internal(e) => ApiError::internal(e),
    }
}

fn period(from: NaiveDate, to: NaiveDate, max_days: i64) -> Result<(), ApiError> {
    if from > to {
        return Err(ApiError::field("to", "to must not be before from"));
    }
    if (to - from).num_days() >= max_days {
        return Err(ApiError::field(
            "to",
            format!("a period is at most {max_days} days"),
        ));
    }
    Ok(())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImportBody {
    /// The provider, as orders name it (`toss`, `stripe`).
    pub provider: String,
    /// First payout day (`YYYY-MM-DD`, the provider's calendar).
    pub from: NaiveDate,
    /// Last payout day, included; at most 31 days after `from`.
    pub to: NaiveDate,
}

/// `POST /v1/admin/reconciliation/imports` (admins): imports the provider's settlement lines
/// paid out from `from` to `to`. The same report imported again records nothing new.
#[utoipa::path(
    post,
    path = "/v1/admin/reconciliation/imports",
    tag = "reconciliation",
    request_body = crate::reconciliation::ImportBody,
    responses((status = 200, description = "What the import recorded: `{provider, lines, matched, unmatched, alreadyImported, flags, lastPosition}`", body = Object))
)]
pub async fn import(
    reconciliation: Option<web::Data<Reconciliation>>,
    request: HttpRequest,
    body: web::Json<ImportBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    period(body.from, body.to, MAX_IMPORT_DAYS)?;
    let reconciliation = service(reconciliation, &body.provider)?;
    let summary = reconciliation
        .import(
            &body.provider,
            SettlementPeriod {
                from: body.from,
                to: body.to,
            },
            &request_context(&request),
        )
        .await
        .map_err(reconcile_error)?;
    Ok(HttpResponse::Ok().json(summary))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UnsettledCheckBody {
    pub provider: String,
    /// The moment to judge at (default: now). A capture older than the provider's settlement
    /// delay plus one day with no settlement line is flagged.
    pub as_of: Option<DateTime<Utc>>,
    /// Only captures from this moment on (default: 31 days before `asOf`), so captures from
    /// before settlements were imported are not all flagged at once.
    pub captured_after: Option<DateTime<Utc>>,
}

/// `POST /v1/admin/reconciliation/unsettled-checks` (admins): flags each capture the provider
/// has not settled past its settlement delay (once per order).
#[utoipa::path(
    post,
    path = "/v1/admin/reconciliation/unsettled-checks",
    tag = "reconciliation",
    request_body = crate::reconciliation::UnsettledCheckBody,
    responses((status = 200, description = "`{provider, flagged, lastPosition}`", body = Object))
)]
pub async fn unsettled_check(
    state: web::Data<AppState>,
    reconciliation: Option<web::Data<Reconciliation>>,
    request: HttpRequest,
    body: web::Json<UnsettledCheckBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let reconciliation = service(reconciliation, &body.provider)?;
    let as_of = body.as_of.unwrap_or_else(|| reconciliation.now());
    let captured_after = body
        .captured_after
        .unwrap_or(as_of - Duration::days(MAX_IMPORT_DAYS));
    let (flagged, last_position) = check_unsettled(
        &state,
        &reconciliation,
        &body.provider,
        (captured_after, as_of),
        &request,
    )
    .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "provider": body.provider,
        "asOf": as_of,
        "flagged": flagged,
        "lastPosition": last_position,
    })))
}

/// The unsettled check: the read models, caught up with the log first (a line imported a moment
/// ago must not be missed), say which captures have no line.
pub async fn check_unsettled(
    state: &AppState,
    reconciliation: &Reconciliation,
    provider: &str,
    (captured_after, as_of): (DateTime<Utc>, DateTime<Utc>),
    request: &HttpRequest,
) -> Result<(u64, i64), ApiError> {
    let schedule = reconciliation
        .schedule(provider)
        .ok_or_else(|| unknown_provider(provider))?;
    // A `POST`, so outside the read deadline: each read bounded per call (`call_bounds`), all
    // before anything is recorded (a time-out flags nothing).
    let bound_ms = state.database_call_timeout_ms;
    let head = bounded_as::<_, ApiError, _>(
        "reading the head position",
        bound_ms,
        payledger_store::head_position(&state.read_pool),
    )
    .await?;
    state.wait_for_projection("orders", Some(head)).await?;
    state
        .wait_for_projection("reconciliation", Some(head))
        .await?;
    let cutoff = as_of - Duration::days(i64::from(schedule.settlement_delay_days) + 1);
    let rows: Vec<_> = bounded_as::<_, ApiError, _>(
        "reading unsettled captures",
        bound_ms,
        rm::unsettled_captures(
            &state.read_pool,
            provider,
            captured_after,
            cutoff,
            payledger_app::reconciliation::MAX_UNSETTLED_PER_RUN as i64,
        ),
    )
    .await?;
    let captures: Vec<UnsettledCapture> = rows
        .into_iter()
        .filter_map(|row| {
            Some(UnsettledCapture {
                provider: row.provider,
                order_id: OrderId::parse(row.order_id).ok()?,
                currency: Currency::parse(&row.currency).ok()?,
                captured_minor: row.captured_minor,
                captured_at: row.captured_at,
            })
        })
        .collect();
    reconciliation
        .flag_unsettled(&captures, &request_context(request))
        .await
        .map_err(reconcile_error)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExceptionQuery {
    pub provider: Option<String>,
    /// `unknown_payment`, `currency_mismatch`, `amount_mismatch`, `fee_mismatch`,
    /// `short_payout`, `late_payout`, `unsettled_capture`, `line_changed`, `payout_mismatch`.
    pub kind: Option<String>,
    pub order_id: Option<String>,
    /// `open` (default) or `all`.
    pub status: Option<String>,
    /// Only exceptions flagged after this position (the last one's `position`, to page).
    pub after: Option<i64>,
    pub limit: Option<i64>,
    pub min_position: Option<i64>,
}

/// `GET /v1/reconciliation/exceptions` (support, auditors, admins): the flags reconciliation
/// raised, oldest first.
#[utoipa::path(
    get,
    path = "/v1/reconciliation/exceptions",
    tag = "reconciliation",
    params(crate::reconciliation::ExceptionQuery),
    responses((status = 200, description = "`{\"exceptions\": [...]}`", body = Object))
)]
pub async fn exceptions(
    state: web::Data<AppState>,
    query: web::Query<ExceptionQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    if let Some(kind) = &query.kind {
        if FlagKind::parse(kind).is_none() {
            return Err(ApiError::new(ErrorCode::InvalidQuery, "unknown kind"));
        }
    }
    let include_resolved = match query.status.as_deref() {
        None | Some("open") => false,
        Some("all") => true,
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                "status must be open or all",
            ))
        }
    };
    let limit = match query.limit {
        None => DEFAULT_PAGE_SIZE,
        Some(l) if (1..=MAX_PAGE_SIZE).contains(&l) => l,
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                format!("limit must be between 1 and {MAX_PAGE_SIZE}"),
            ))
        }
    };
    if query.after.is_some_and(|a| a < 0) {
        return Err(ApiError::new(ErrorCode::InvalidQuery, "after must be >= 0"));
    }
    let too_long = |v: &Option<String>| v.as_ref().is_some_and(|v| v.len() > 200);
    if too_long(&query.provider) || too_long(&query.order_id) {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            "a filter is too long",
        ));
    }
    state
        .wait_for_projection("reconciliation", query.min_position)
        .await?;
    let list = rm::exceptions(
        &state.read_pool,
        &ExceptionFilter {
            provider: query.provider,
            kind: query.kind,
            order_id: query.order_id,
            include_resolved,
            after_position: query.after.unwrap_or(0),
            limit,
        },
    )
    .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "exceptions": list })))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResolveBody {
    /// `accepted_difference`, `write_off` or `claim_against_provider`.
    pub resolution: String,
    /// Why (1 to 500 characters); kept in the event, with who resolved it.
    pub note: String,
}

/// `POST /v1/reconciliation/exceptions/{stream_id}/{kind}/resolve` (admins): closes an open
/// exception with an audited note.
#[utoipa::path(
    post,
    path = "/v1/reconciliation/exceptions/{stream_id}/{kind}/resolve",
    tag = "reconciliation",
    params(
        ("stream_id" = String, Path, description = "The exception's `streamId`"),
        ("kind" = String, Path, description = "The exception's `kind`"),
    ),
    request_body = crate::reconciliation::ResolveBody,
    responses((status = 200, description = "`{exceptionId, resolution, position}`", body = Object))
)]
pub async fn resolve(
    reconciliation: Option<web::Data<Reconciliation>>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Json<ResolveBody>,
) -> Result<HttpResponse, ApiError> {
    let (stream_id, kind_name) = path.into_inner();
    let body = body.into_inner();
    let kind = FlagKind::parse(&kind_name)
        .ok_or_else(|| ApiError::field("kind", "unknown exception kind"))?;
    let resolution = Resolution::parse(&body.resolution).ok_or_else(|| {
        ApiError::field(
            "resolution",
            "resolution must be accepted_difference, write_off or claim_against_provider",
        )
    })?;
    let reconciliation = service(reconciliation, "any")?;
    let position = reconciliation
        .resolve(
            &stream_id,
            kind,
            resolution,
            body.note,
            &request_context(&request),
        )
        .await
        .map_err(reconcile_error)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "exceptionId": format!("{stream_id}/{kind_name}"),
        "resolution": body.resolution,
        "position": position,
    })))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    pub provider: Option<String>,
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// `json` (default) or `csv` (the days only).
    pub format: Option<String>,
    pub min_position: Option<i64>,
}

/// `GET /v1/reconciliation?from&to[&provider][&format=csv]` (auditors, admins): per provider and
/// payout day the lines, what was settled, fees, payouts and discrepancies; and what each
/// provider still owes by age of the capture.
#[utoipa::path(
    get,
    path = "/v1/reconciliation",
    tag = "reconciliation",
    params(crate::reconciliation::ReportQuery),
    responses((status = 200, description = "`{days: [...], agedClearing: [...]}` or CSV", body = Object))
)]
pub async fn report(
    state: web::Data<AppState>,
    query: web::Query<ReportQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    period(query.from, query.to, MAX_REPORT_DAYS)
        .map_err(|e| ApiError::new(ErrorCode::InvalidQuery, e.message))?;
    let csv = match query.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                "format must be json or csv",
            ))
        }
    };
    state
        .wait_for_projection("reconciliation", query.min_position)
        .await?;
    let days = rm::report(
        &state.read_pool,
        query.provider.as_deref(),
        query.from,
        query.to,
    )
    .await?;
    if csv {
        let mut text = String::from(
            "provider,day,currency,lines,unmatched_lines,settled_minor,fees_minor,payouts_minor,discrepancies,open_discrepancies\n",
        );
        for d in &days {
            // Provider names are [a-z0-9_]: nothing to quote.
            let _ = writeln!(
                text,
                "{},{},{},{},{},{},{},{},{},{}",
                d.provider,
                d.day,
                d.currency,
                d.lines,
                d.unmatched_lines,
                d.settled_minor,
                d.fees_minor,
                d.payouts_minor,
                d.discrepancies,
                d.open_discrepancies
            );
        }
        return Ok(HttpResponse::Ok()
            .content_type("text/csv; charset=utf-8")
            .body(text));
    }
    let aged = rm::aged_clearing(&state.read_pool, state.payments.clock().now()).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "days": days,
        "agedClearing": aged,
    })))
}
