//! Claim endpoints: file, statements, assignment, resolution, appeal; the queue, a claim's
//! detail and the statistics.

use crate::auth;
use crate::bookings::{acting_admin, flow_error, parse_non_negative_amount, services};
use crate::dto::{page_limit, parse_order_id, ConsistencyQuery};
use crate::errors::{ApiError, ErrorCode};
use crate::request_context::request_context;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Duration, Utc};
use payledger_app::claims::{ClaimSnapshot, FileClaimInput, ResolveInput};
use payledger_domain::claim::{
    Claim, ClaimOutcome, ClaimResolved, ClaimStatementSubmitted, ClaimType, Party, Penalty, Side,
};
use payledger_domain::ids::ClaimId;
use payledger_read_models::claims::{ClaimFilter, ClaimView};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The largest age filter, in minutes (a year).
const MAX_AGE_FILTER_MINUTES: i64 = 366 * 24 * 60;

fn parse_claim_id(value: &str) -> Result<ClaimId, ApiError> {
    ClaimId::parse(value.to_string()).map_err(|e| ApiError::field("claimId", e.to_string()))
}

fn parse_enum<T: DeserializeOwned>(value: &str, field: &str, allowed: &str) -> Result<T, ApiError> {
    serde_json::from_value(serde_json::Value::String(value.to_string()))
        .map_err(|_| ApiError::field(field, format!("{field} must be one of {allowed}")))
}

const CLAIM_TYPES: &str =
    "PROVIDER_NO_SHOW, CUSTOMER_NO_SHOW, SERVICE_QUALITY, SCHEDULE, PAYMENT, OTHER";
const PARTIES: &str = "customer, provider";
const SIDES: &str = "claimant, respondent";
const OUTCOMES: &str = "claimant_wins, respondent_wins, split, rejected";
const STATUSES: &str = "filed, under_review, resolved, appealed";

fn name_of<T: Serialize + std::fmt::Debug>(value: &T) -> String {
    payledger_domain::codec::wire_name(value)
}

// ---------------------------------------------------------------------------------------------
// Bodies
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileClaimBody {
    pub claim_id: Option<String>,
    pub order_id: String,
    #[serde(rename = "type")]
    pub claim_type: String,
    pub filed_by: String,
    pub description: String,
    #[serde(default)]
    pub evidence: Vec<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StatementBody {
    pub side: String,
    pub text: String,
    #[serde(default)]
    pub evidence: Vec<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AssignBody {
    pub admin_id: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResolveBody {
    pub admin_id: Option<String>,
    pub outcome: String,
    pub reason: String,
    #[schema(value_type = i64)]
    pub refund_amount: serde_json::Number,
    #[schema(value_type = i64)]
    pub provider_payout_amount: serde_json::Number,
    pub coupon: Option<String>,
    #[schema(value_type = Option<i64>)]
    pub provider_compensation_amount: Option<serde_json::Number>,
    #[serde(default)]
    pub penalties: Vec<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppealBody {
    pub side: String,
    pub reason: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ClaimStatement)]
pub struct StatementOut {
    pub side: String,
    pub party: String,
    pub text: String,
    pub evidence: Vec<String>,
    pub submitted_at: DateTime<Utc>,
}

impl From<&ClaimStatementSubmitted> for StatementOut {
    fn from(s: &ClaimStatementSubmitted) -> Self {
        StatementOut {
            side: name_of(&s.side),
            party: name_of(&s.party),
            text: s.text.clone(),
            evidence: s.evidence.clone(),
            submitted_at: s.at,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DecisionOut {
    pub round: u32,
    pub outcome: String,
    pub reason: String,
    pub admin_id: String,
    pub refund_amount: i64,
    pub additional_refund_amount: i64,
    pub provider_payout_amount: i64,
    pub coupon: Option<String>,
    pub provider_compensation_amount: i64,
    pub penalties: Vec<String>,
    pub resolved_at: DateTime<Utc>,
}

impl From<&ClaimResolved> for DecisionOut {
    fn from(r: &ClaimResolved) -> Self {
        DecisionOut {
            round: r.round,
            outcome: name_of(&r.outcome),
            reason: r.reason.clone(),
            admin_id: r.admin_id.to_string(),
            refund_amount: r.refund_minor,
            additional_refund_amount: r.additional_refund_minor,
            provider_payout_amount: r.provider_payout_minor,
            coupon: r.coupon.clone(),
            provider_compensation_amount: r.provider_compensation_minor,
            penalties: r.penalties.iter().map(name_of).collect(),
            resolved_at: r.at,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimBody {
    pub claim_id: String,
    pub order_id: String,
    pub customer_id: String,
    pub payee_id: String,
    pub currency: String,
    #[serde(rename = "type")]
    pub claim_type: String,
    pub filed_by: String,
    pub status: String,
    pub description: String,
    /// References to evidence (URLs, document ids), never the files.
    pub evidence: Vec<String>,
    pub amount_at_stake: i64,
    pub service_starts_at: Option<DateTime<Utc>>,
    pub filed_at: DateTime<Utc>,
    /// Seconds since filing when answered: the queue's age.
    pub age_seconds: i64,
    pub respond_by: DateTime<Utc>,
    pub claimant_statement: Option<StatementOut>,
    pub respondent_statement: Option<StatementOut>,
    pub deadline_missed_at: Option<DateTime<Utc>>,
    pub assigned_to: Option<String>,
    pub decision: Option<DecisionOut>,
    pub resolution_round: u32,
    pub seconds_to_resolve: Option<i64>,
    pub appealed_at: Option<DateTime<Utc>>,
    pub version: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub replay: bool,
}

impl ClaimBody {
    fn from_state(
        claim_id: &str,
        claim: &Claim,
        version: i64,
        position: Option<i64>,
        replay: bool,
        now: DateTime<Utc>,
    ) -> Result<ClaimBody, ApiError> {
        let filed = claim
            .filed
            .as_ref()
            .ok_or_else(|| ApiError::internal("claim without filing"))?;
        Ok(ClaimBody {
            claim_id: claim_id.to_string(),
            order_id: filed.order_id.to_string(),
            customer_id: filed.customer_id.to_string(),
            payee_id: filed.payee_id.to_string(),
            currency: filed.currency.code().to_string(),
            claim_type: name_of(&filed.claim_type),
            filed_by: name_of(&filed.filed_by),
            status: name_of(&claim.status),
            description: filed.description.clone(),
            evidence: filed.evidence.clone(),
            amount_at_stake: filed.amount_at_stake_minor,
            service_starts_at: filed.service_starts_at,
            filed_at: filed.at,
            age_seconds: (now - filed.at).num_seconds().max(0),
            respond_by: filed.respond_by,
            claimant_statement: claim.claimant_statement.as_ref().map(StatementOut::from),
            respondent_statement: claim.respondent_statement.as_ref().map(StatementOut::from),
            deadline_missed_at: claim.deadline_missed.as_ref().map(|m| m.at),
            assigned_to: claim.assigned_to.as_ref().map(ToString::to_string),
            decision: claim.resolutions.last().map(DecisionOut::from),
            resolution_round: claim.round(),
            seconds_to_resolve: claim.resolutions.first().map(|r| r.seconds_to_resolve),
            appealed_at: claim.appeal.as_ref().map(|a| a.at),
            version,
            position,
            replay,
        })
    }

    fn from_snapshot(snapshot: &ClaimSnapshot, now: DateTime<Utc>) -> Result<ClaimBody, ApiError> {
        ClaimBody::from_state(
            snapshot.claim_id.as_str(),
            &snapshot.state,
            snapshot.version,
            snapshot.position,
            snapshot.replay,
            now,
        )
    }

    fn from_view(view: ClaimView, now: DateTime<Utc>) -> Result<ClaimBody, ApiError> {
        fn decode<T: DeserializeOwned>(
            value: Option<serde_json::Value>,
        ) -> Result<Option<T>, ApiError> {
            value.map(serde_json::from_value).transpose().map_err(|e| {
                ApiError::internal(format!("stored claim detail does not decode: {e}"))
            })
        }
        let evidence: Vec<String> = serde_json::from_value(view.evidence)
            .map_err(|e| ApiError::internal(format!("stored evidence does not decode: {e}")))?;
        let claimant: Option<ClaimStatementSubmitted> = decode(view.claimant_statement)?;
        let respondent: Option<ClaimStatementSubmitted> = decode(view.respondent_statement)?;
        let decision: Option<ClaimResolved> = decode(view.decision)?;
        Ok(ClaimBody {
            claim_id: view.claim_id,
            order_id: view.order_id,
            customer_id: view.customer_id,
            payee_id: view.payee_id,
            currency: view.currency,
            claim_type: view.claim_type,
            filed_by: view.filed_by,
            status: view.status,
            description: view.description,
            evidence,
            amount_at_stake: view.amount_at_stake_minor,
            service_starts_at: view.service_starts_at,
            filed_at: view.filed_at,
            age_seconds: (now - view.filed_at).num_seconds().max(0),
            respond_by: view.respond_by,
            claimant_statement: claimant.as_ref().map(StatementOut::from),
            respondent_statement: respondent.as_ref().map(StatementOut::from),
            deadline_missed_at: view.deadline_missed_at,
            assigned_to: view.assigned_to,
            decision: decision.as_ref().map(DecisionOut::from),
            resolution_round: u32::try_from(view.resolution_round).unwrap_or_default(),
            seconds_to_resolve: view.seconds_to_resolve,
            appealed_at: view.appealed_at,
            version: view.stream_version,
            position: Some(view.last_position),
            replay: false,
        })
    }
}

fn now(state: &AppState) -> DateTime<Utc> {
    state.payments.clock().now()
}

// ---------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------

/// `POST /v1/claims`
#[utoipa::path(
    post,
    path = "/v1/claims",
    tag = "claims",
    request_body = crate::claims::FileClaimBody,
    responses((status = 201, description = "Filed; the respondent is notified", body = crate::claims::ClaimBody))
)]
pub async fn file_claim(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Json<FileClaimBody>,
) -> Result<HttpResponse, ApiError> {
    let services = services(&state);
    let body = body.into_inner();
    let order_id = parse_order_id(&body.order_id)?;
    let input = FileClaimInput {
        claim_id: body.claim_id.as_deref().map(parse_claim_id).transpose()?,
        order_id: order_id.clone(),
        claim_type: parse_enum::<ClaimType>(&body.claim_type, "type", CLAIM_TYPES)?,
        filed_by: parse_enum::<Party>(&body.filed_by, "filedBy", PARTIES)?,
        description: body.description,
        evidence: body.evidence,
    };
    auth::check_order_access(&state, &request, &order_id).await?;
    let snapshot = services
        .claims
        .file(input, &request_context(&request))
        .await
        .map_err(flow_error)?;
    let body = ClaimBody::from_snapshot(&snapshot, now(&state))?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/v1/claims/{}", body.claim_id)))
        .json(body))
}

/// Loads a claim and checks the caller may see its order (clients: only their own).
async fn visible_claim(
    state: &AppState,
    request: &HttpRequest,
    claim_id: &ClaimId,
) -> Result<ClaimSnapshot, ApiError> {
    let services = services(state);
    let snapshot = services
        .claims
        .load(claim_id)
        .await
        .map_err(flow_error)?
        .ok_or_else(|| ApiError::new(ErrorCode::ClaimNotFound, "claim does not exist"))?;
    if let Some(filed) = snapshot.state.filed.as_ref() {
        auth::check_order_access(state, request, &filed.order_id)
            .await
            .map_err(|_| ApiError::new(ErrorCode::ClaimNotFound, "claim does not exist"))?;
    }
    Ok(snapshot)
}

/// `POST /v1/claims/{claim_id}/statements`
#[utoipa::path(
    post,
    path = "/v1/claims/{claim_id}/statements",
    tag = "claims",
    params(("claim_id" = String, Path, description = "The claim id")),
    request_body = crate::claims::StatementBody,
    responses((status = 201, description = "The statement is recorded", body = crate::claims::ClaimBody))
)]
pub async fn submit_statement(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    body: web::Json<StatementBody>,
) -> Result<HttpResponse, ApiError> {
    let services = services(&state);
    let claim_id = parse_claim_id(&path)?;
    let body = body.into_inner();
    let side = parse_enum::<Side>(&body.side, "side", SIDES)?;
    visible_claim(&state, &request, &claim_id).await?;
    let snapshot = services
        .claims
        .submit_statement(
            &claim_id,
            side,
            body.text,
            body.evidence,
            &request_context(&request),
        )
        .await
        .map_err(flow_error)?;
    Ok(HttpResponse::Created().json(ClaimBody::from_snapshot(&snapshot, now(&state))?))
}

/// `POST /v1/claims/{claim_id}/assign` (admins)
#[utoipa::path(
    post,
    path = "/v1/claims/{claim_id}/assign",
    tag = "claims",
    params(("claim_id" = String, Path, description = "The claim id")),
    request_body = crate::claims::AssignBody,
    responses((status = 200, description = "Assigned to an admin", body = crate::claims::ClaimBody))
)]
pub async fn assign(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    body: web::Json<AssignBody>,
) -> Result<HttpResponse, ApiError> {
    let services = services(&state);
    let claim_id = parse_claim_id(&path)?;
    let admin_id = acting_admin(&request, body.admin_id.as_deref())?;
    let snapshot = services
        .claims
        .assign(&claim_id, admin_id, &request_context(&request))
        .await
        .map_err(flow_error)?;
    Ok(HttpResponse::Ok().json(ClaimBody::from_snapshot(&snapshot, now(&state))?))
}

/// `POST /v1/claims/{claim_id}/resolve` (admins)
#[utoipa::path(
    post,
    path = "/v1/claims/{claim_id}/resolve",
    tag = "claims",
    params(("claim_id" = String, Path, description = "The claim id")),
    request_body = crate::claims::ResolveBody,
    responses((status = 200, description = "Resolved; refunds and payouts follow", body = crate::claims::ClaimBody))
)]
pub async fn resolve(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    body: web::Json<ResolveBody>,
) -> Result<HttpResponse, ApiError> {
    let services = services(&state);
    let claim_id = parse_claim_id(&path)?;
    let body = body.into_inner();
    let input = ResolveInput {
        admin_id: acting_admin(&request, body.admin_id.as_deref())?,
        outcome: parse_enum::<ClaimOutcome>(&body.outcome, "outcome", OUTCOMES)?,
        reason: body.reason,
        refund_minor: parse_non_negative_amount(&body.refund_amount, "refundAmount")?,
        provider_payout_minor: parse_non_negative_amount(
            &body.provider_payout_amount,
            "providerPayoutAmount",
        )?,
        coupon: body.coupon,
        provider_compensation_minor: body
            .provider_compensation_amount
            .as_ref()
            .map(|a| parse_non_negative_amount(a, "providerCompensationAmount"))
            .transpose()?
            .unwrap_or(0),
        penalties: body
            .penalties
            .iter()
            .map(|p| parse_enum::<Penalty>(p, "penalties", "warning"))
            .collect::<Result<_, _>>()?,
    };
    let snapshot = services
        .claims
        .resolve(&claim_id, input, &request_context(&request))
        .await
        .map_err(flow_error)?;
    Ok(HttpResponse::Ok().json(ClaimBody::from_snapshot(&snapshot, now(&state))?))
}

/// `POST /v1/claims/{claim_id}/appeal`
#[utoipa::path(
    post,
    path = "/v1/claims/{claim_id}/appeal",
    tag = "claims",
    params(("claim_id" = String, Path, description = "The claim id")),
    request_body = crate::claims::AppealBody,
    responses((status = 200, description = "Appealed", body = crate::claims::ClaimBody))
)]
pub async fn appeal(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    body: web::Json<AppealBody>,
) -> Result<HttpResponse, ApiError> {
    let services = services(&state);
    let claim_id = parse_claim_id(&path)?;
    let body = body.into_inner();
    let side = parse_enum::<Side>(&body.side, "side", SIDES)?;
    visible_claim(&state, &request, &claim_id).await?;
    let snapshot = services
        .claims
        .appeal(&claim_id, side, body.reason, &request_context(&request))
        .await
        .map_err(flow_error)?;
    Ok(HttpResponse::Ok().json(ClaimBody::from_snapshot(&snapshot, now(&state))?))
}

// ---------------------------------------------------------------------------------------------
// Queries
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ClaimQuery {
    pub status: Option<String>,
    #[serde(rename = "type")]
    pub claim_type: Option<String>,
    pub order_id: Option<String>,
    /// Only claims waiting at least this long.
    pub older_than_minutes: Option<i64>,
    /// The `nextAfter` of the previous page.
    pub after: Option<String>,
    pub limit: Option<i64>,
    pub min_position: Option<i64>,
}

/// `GET /v1/claims`: the queue, oldest first.
#[utoipa::path(
    get,
    path = "/v1/claims",
    tag = "claims",
    params(crate::claims::ClaimQuery),
    responses((status = 200, description = "`{\"claims\": [Claim], \"nextAfter\"}`", body = Object))
)]
pub async fn list_claims(
    state: web::Data<AppState>,
    query: web::Query<ClaimQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let limit = page_limit(query.limit)?;
    let status = query
        .status
        .as_deref()
        .map(|s| {
            parse_enum::<payledger_domain::claim::ClaimStatus>(s, "status", STATUSES)
                .map(|v| name_of(&v))
        })
        .transpose()
        .map_err(|e| ApiError::new(ErrorCode::InvalidQuery, e.message))?;
    let claim_type = query
        .claim_type
        .as_deref()
        .map(|t| parse_enum::<ClaimType>(t, "type", CLAIM_TYPES).map(|v| name_of(&v)))
        .transpose()
        .map_err(|e| ApiError::new(ErrorCode::InvalidQuery, e.message))?;
    let now = now(&state);
    let filed_before = match query.older_than_minutes {
        None => None,
        Some(m) if (0..=MAX_AGE_FILTER_MINUTES).contains(&m) => Some(now - Duration::minutes(m)),
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                format!("olderThanMinutes must be between 0 and {MAX_AGE_FILTER_MINUTES}"),
            ))
        }
    };
    let after = match query.after.as_deref() {
        None => None,
        Some(cursor) => {
            let (at, id) = cursor.split_once('~').ok_or_else(|| {
                ApiError::new(ErrorCode::InvalidQuery, "after is the nextAfter of a page")
            })?;
            let at = DateTime::parse_from_rfc3339(at)
                .map_err(|_| {
                    ApiError::new(ErrorCode::InvalidQuery, "after is the nextAfter of a page")
                })?
                .with_timezone(&Utc);
            Some((at, id))
        }
    };
    state
        .wait_for_projection("claims", query.min_position)
        .await?;
    let filter = ClaimFilter {
        status: status.as_deref(),
        claim_type: claim_type.as_deref(),
        order_id: query.order_id.as_deref(),
        filed_before,
        after,
    };
    let claims =
        payledger_read_models::claims::list_claims(&state.read_pool, &filter, limit).await?;
    let next_after = (claims.len() as i64 == limit)
        .then(|| {
            claims
                .last()
                .map(|c| format!("{}~{}", c.filed_at.to_rfc3339(), c.claim_id))
        })
        .flatten();
    let claims = claims
        .into_iter()
        .map(|c| ClaimBody::from_view(c, now))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "claims": claims, "nextAfter": next_after })))
}

/// `GET /v1/claims/{claim_id}`
#[utoipa::path(
    get,
    path = "/v1/claims/{claim_id}",
    tag = "claims",
    params(("claim_id" = String, Path, description = "The claim id"), crate::dto::ConsistencyQuery),
    responses((status = 200, description = "The claim", body = crate::claims::ClaimBody))
)]
pub async fn get_claim(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    query: web::Query<ConsistencyQuery>,
) -> Result<HttpResponse, ApiError> {
    let claim_id = parse_claim_id(&path)?;
    state
        .wait_for_projection("claims", query.min_position)
        .await?;
    let now = now(&state);
    if let Some(view) =
        payledger_read_models::claims::get_claim(&state.read_pool, claim_id.as_str()).await?
    {
        if let Ok(order_id) = parse_order_id(&view.order_id) {
            auth::check_order_access(&state, &request, &order_id)
                .await
                .map_err(|_| ApiError::new(ErrorCode::ClaimNotFound, "claim does not exist"))?;
        }
        return Ok(HttpResponse::Ok().json(ClaimBody::from_view(view, now)?));
    }
    // Not projected yet (just filed): the command side knows it.
    let snapshot = visible_claim(&state, &request, &claim_id).await?;
    Ok(HttpResponse::Ok().json(ClaimBody::from_snapshot(&snapshot, now)?))
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CountOut {
    #[serde(rename = "type")]
    claim_type: String,
    /// `null`: not resolved yet.
    outcome: Option<String>,
    count: i64,
}

/// `GET /v1/claims/stats`
#[utoipa::path(
    get,
    path = "/v1/claims/stats",
    tag = "claims",
    params(crate::dto::ConsistencyQuery),
    responses((status = 200, description = "Counts by type and status", body = Object))
)]
pub async fn claim_stats(
    state: web::Data<AppState>,
    query: web::Query<ConsistencyQuery>,
) -> Result<HttpResponse, ApiError> {
    state
        .wait_for_projection("claims", query.min_position)
        .await?;
    let stats = payledger_read_models::claims::claim_stats(&state.read_pool).await?;
    let counts: Vec<CountOut> = stats
        .counts
        .into_iter()
        .map(|c| CountOut {
            claim_type: c.claim_type,
            outcome: c.outcome,
            count: c.count,
        })
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "total": stats.total,
        "open": stats.open,
        "resolved": stats.resolved,
        "byTypeAndOutcome": counts,
        "medianSecondsToResolve": stats.median_seconds_to_resolve,
    })))
}
