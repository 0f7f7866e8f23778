//! Settlement endpoints (weekly statements: list, confirm, record the payout) and the journal's
//! trial balance.

use crate::bookings::{flow_error, services};
use crate::dto::{page_limit, parse_amount, parse_payee_id};
use crate::errors::{ApiError, ErrorCode};
use crate::request_context::request_context;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use payledger_app::settlements::StatementSnapshot;
use payledger_domain::settlement::{StatementKey, StatementStatus, StatementTotals};
use payledger_read_models::settlements::{StatementLineView, StatementView};
use serde::{Deserialize, Serialize};

/// Lines returned per statement.
const MAX_LINES_PER_ANSWER: i64 = 1_000;

fn parse_statement_id(value: &str) -> Result<StatementKey, ApiError> {
    StatementKey::parse(value).map_err(|e| ApiError::field("statementId", e.to_string()))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TotalsOut {
    pub payments: i64,
    pub refunds: i64,
    pub compensations: i64,
    pub held: i64,
    pub released: i64,
    pub carried: i64,
    pub net_sales: i64,
    pub platform_fee_bps: u32,
    pub platform_fee: i64,
    pub net: i64,
    pub net_payable: i64,
    pub carry_forward: i64,
}

impl From<StatementTotals> for TotalsOut {
    fn from(t: StatementTotals) -> Self {
        TotalsOut {
            payments: t.payments_minor,
            refunds: t.refunds_minor,
            compensations: t.compensations_minor,
            held: t.held_minor,
            released: t.released_minor,
            carried: t.carried_minor,
            net_sales: t.net_sales_minor,
            platform_fee_bps: t.platform_fee_bps,
            platform_fee: t.platform_fee_minor,
            net: t.net_minor,
            net_payable: t.net_payable_minor,
            carry_forward: t.carry_forward_minor,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LineOut {
    pub line_id: String,
    pub kind: String,
    pub order_id: Option<String>,
    pub claim_id: Option<String>,
    pub amount: i64,
    pub occurred_at: DateTime<Utc>,
    /// The week (its Monday) the line was carried from, because that statement was confirmed.
    pub carried_from: Option<NaiveDate>,
    pub memo: String,
}

impl From<StatementLineView> for LineOut {
    fn from(l: StatementLineView) -> Self {
        LineOut {
            line_id: l.line_id,
            kind: l.kind,
            order_id: l.order_id,
            claim_id: l.claim_id,
            amount: l.amount_minor,
            occurred_at: l.occurred_at,
            carried_from: l.carried_from,
            memo: l.memo,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatementOut {
    pub statement_id: String,
    pub payee_id: String,
    pub week_start: NaiveDate,
    pub currency: String,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub time_zone: String,
    /// `open`, `confirmed` (frozen) or `paid_out` (closed).
    pub status: String,
    pub totals: TotalsOut,
    pub lines: Vec<LineOut>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub paid_out_at: Option<DateTime<Utc>>,
    pub payout_reference: Option<String>,
    pub version: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub replay: bool,
}

fn status_name(status: StatementStatus) -> String {
    payledger_domain::codec::wire_name(&status)
}

impl StatementOut {
    fn from_view(view: StatementView, lines: Vec<StatementLineView>) -> StatementOut {
        StatementOut {
            statement_id: view.statement_id,
            payee_id: view.payee_id,
            week_start: view.week_start,
            currency: view.currency,
            period_start: view.period_start,
            period_end: view.period_end,
            time_zone: view.time_zone,
            status: view.status,
            totals: view.totals.into(),
            lines: lines.into_iter().map(LineOut::from).collect(),
            confirmed_at: view.confirmed_at,
            paid_out_at: view.paid_out_at,
            payout_reference: view.payout_reference,
            version: view.stream_version,
            position: Some(view.last_position),
            replay: false,
        }
    }

    fn from_snapshot(snapshot: &StatementSnapshot) -> Result<StatementOut, ApiError> {
        let state = &snapshot.state;
        let opened = state
            .opened
            .as_ref()
            .ok_or_else(|| ApiError::internal("statement without opening"))?;
        Ok(StatementOut {
            statement_id: opened.statement_id.clone(),
            payee_id: opened.payee_id.to_string(),
            week_start: opened.week_start,
            currency: opened.currency.code().to_string(),
            period_start: opened.period_start,
            period_end: opened.period_end,
            time_zone: opened.time_zone.clone(),
            status: status_name(state.status),
            totals: state.totals().into(),
            lines: state
                .lines
                .iter()
                .take(MAX_LINES_PER_ANSWER as usize)
                .map(|l| LineOut {
                    line_id: l.line_id.clone(),
                    kind: payledger_domain::codec::wire_name(&l.kind),
                    order_id: l.order_id.as_ref().map(ToString::to_string),
                    claim_id: l.claim_id.as_ref().map(ToString::to_string),
                    amount: l.amount_minor,
                    occurred_at: l.occurred_at,
                    carried_from: l.carried_from,
                    memo: l.memo.clone(),
                })
                .collect(),
            confirmed_at: state.confirmed.as_ref().map(|c| c.at),
            paid_out_at: state.paid_out.as_ref().map(|p| p.at),
            payout_reference: state.paid_out.as_ref().map(|p| p.reference.clone()),
            version: snapshot.version,
            position: snapshot.position,
            replay: snapshot.replay,
        })
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SettlementQuery {
    pub payee_id: Option<String>,
    /// Any date of the week (`YYYY-MM-DD`); the statement is the one of that week's Monday.
    pub week: Option<NaiveDate>,
    pub status: Option<String>,
    pub limit: Option<i64>,
    pub min_position: Option<i64>,
}

/// `GET /v1/settlements?payeeId=…&week=…`
#[utoipa::path(
    get,
    path = "/v1/settlements",
    tag = "settlements",
    params(crate::settlements::SettlementQuery),
    responses((status = 200, description = "`{\"statements\": [Statement]}`", body = Object))
)]
pub async fn list_statements(
    state: web::Data<AppState>,
    query: web::Query<SettlementQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let payee_id = query
        .payee_id
        .as_deref()
        .map(parse_payee_id)
        .transpose()
        .map_err(|e| ApiError::new(ErrorCode::InvalidQuery, e.message))?;
    let week_start = query
        .week
        .map(|d| d - Duration::days(i64::from(d.weekday().num_days_from_monday())));
    let status = match query.status.as_deref() {
        None => None,
        Some(s @ ("open" | "confirmed" | "paid_out")) => Some(s),
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                "status must be one of open, confirmed, paid_out",
            ))
        }
    };
    if payee_id.is_none() && week_start.is_none() {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            "give payeeId or week to list statements",
        ));
    }
    let limit = page_limit(query.limit)?;
    state
        .wait_for_projection("settlements", query.min_position)
        .await?;
    let views = payledger_read_models::settlements::list_statements(
        &state.read_pool,
        payee_id.as_ref().map(|p| p.as_str()),
        week_start,
        status,
        limit,
    )
    .await?;
    let mut statements = Vec::with_capacity(views.len());
    for view in views {
        let lines = payledger_read_models::settlements::statement_lines(
            &state.read_pool,
            &view.statement_id,
            MAX_LINES_PER_ANSWER,
        )
        .await?;
        statements.push(StatementOut::from_view(view, lines));
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({ "statements": statements })))
}

/// `POST /v1/settlements/{statement_id}/confirm` (admins): freezes a statement whose week is over.
#[utoipa::path(
    post,
    path = "/v1/settlements/{statement_id}/confirm",
    tag = "settlements",
    params(("statement_id" = String, Path, description = "The settlement statement id")),
    responses((status = 200, description = "Confirmed and frozen", body = crate::settlements::StatementOut))
)]
pub async fn confirm(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let services = services(&state);
    let key = parse_statement_id(&path)?;
    let snapshot = services
        .settlements
        .confirm(&key, &request_context(&request))
        .await
        .map_err(flow_error)?;
    Ok(HttpResponse::Ok().json(StatementOut::from_snapshot(&snapshot)?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PayoutBody {
    /// The bank transfer's reference.
    pub reference: String,
    /// Must equal the statement's net payable.
    #[schema(value_type = i64)]
    pub amount: serde_json::Number,
}

/// `POST /v1/settlements/{statement_id}/payout` (admins): records the transfer; closes it.
#[utoipa::path(
    post,
    path = "/v1/settlements/{statement_id}/payout",
    tag = "settlements",
    params(("statement_id" = String, Path, description = "The settlement statement id")),
    request_body = crate::settlements::PayoutBody,
    responses((status = 200, description = "The payout is recorded; the statement is closed", body = crate::settlements::StatementOut))
)]
pub async fn payout(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    body: web::Json<PayoutBody>,
) -> Result<HttpResponse, ApiError> {
    let services = services(&state);
    let key = parse_statement_id(&path)?;
    let body = body.into_inner();
    // A statement whose net is zero is closed with a payout of 0.
    let amount_minor = match body.amount.as_i64() {
        Some(0) => 0,
        _ => parse_amount(&body.amount, "amount")?,
    };
    let snapshot = services
        .settlements
        .record_payout(
            &key,
            body.reference,
            amount_minor,
            &request_context(&request),
        )
        .await
        .map_err(flow_error)?;
    Ok(HttpResponse::Ok().json(StatementOut::from_snapshot(&snapshot)?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TrialBalanceQuery {
    /// A global position; the journal's current position when left out.
    pub at: Option<i64>,
}

/// `GET /v1/journal/trial-balance?at=…` (auditors): balances per account and currency.
#[utoipa::path(
    get,
    path = "/v1/journal/trial-balance",
    tag = "settlements",
    params(crate::settlements::TrialBalanceQuery),
    responses((status = 200, description = "Debits and credits per account and currency at a position", body = Object))
)]
pub async fn trial_balance(
    state: web::Data<AppState>,
    query: web::Query<TrialBalanceQuery>,
) -> Result<HttpResponse, ApiError> {
    if query.at.is_some_and(|a| a < 0) {
        return Err(ApiError::new(ErrorCode::InvalidQuery, "at must be >= 0"));
    }
    if let Some(at) = query.at {
        // A position the log has not reached is refused, not waited for (the CLI does the same).
        let head = payledger_store::head_position(&state.read_pool).await?;
        if at > head {
            return Err(ApiError::new(
                ErrorCode::PositionBeyondHead,
                format!("position {at} is beyond the head of the log ({head})"),
            )
            .with("headPosition", head));
        }
    }
    // Balances at a position the journal has not reached yet would be wrong, not late.
    state.wait_for_projection("journal", query.at).await?;
    let view = payledger_read_models::journal::trial_balance(&state.read_pool, query.at).await?;
    let balanced = view.balanced();
    let accounts: Vec<serde_json::Value> = view
        .rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "account": r.account,
                "currency": r.currency,
                "debit": r.debit_minor,
                "credit": r.credit_minor,
                "balance": r.balance_minor,
            })
        })
        .collect();
    let currencies: Vec<serde_json::Value> = view
        .by_currency
        .iter()
        .map(|c| {
            serde_json::json!({
                "currency": c.currency,
                "debit": c.debit_minor,
                "credit": c.credit_minor,
                "balanced": c.balanced(),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "position": view.position,
        "accounts": accounts,
        "currencies": currencies,
        "balanced": balanced,
    })))
}
