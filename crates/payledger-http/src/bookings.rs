//! Booking endpoints: cancel under the refund policy, record fulfilment. Also the state the
//! booking, claim and settlement endpoints share, and how their errors become API errors.

use crate::auth;
use crate::dto::{parse_order_id, OrderBody};
use crate::errors::{ApiError, ErrorCode};
use crate::orders::payment_error;
use crate::request_context::request_context;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use payledger_app::api_keys::Role;
use payledger_app::bookings::{Bookings, FlowError};
use payledger_app::claims::Claims;
use payledger_app::settlements::Settlements;
use payledger_domain::booking::BookingError;
use payledger_domain::claim::ClaimError;
use payledger_domain::ids::AdminId;
use payledger_domain::money::BasisPoints;
use payledger_domain::refund_policy::{EmergencyApproval, RefundPolicyError};
use payledger_domain::settlement::StatementError;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The services behind the booking, claim, settlement and journal endpoints. Registered as its
/// own `app_data` next to [`AppState`].
pub struct BookingServices {
    pub bookings: Arc<Bookings>,
    pub claims: Arc<Claims>,
    pub settlements: Arc<Settlements>,
}

/// Maps every failure of a booking, claim or settlement command to one row of the error table.
pub fn flow_error(error: FlowError) -> ApiError {
    let message = error.to_string();
    match error {
        FlowError::Payment(e) => payment_error(e),
        FlowError::Booking(e) => match e {
            BookingError::NotABooking => ApiError::new(ErrorCode::NotABooking, message),
            BookingError::NotPaid => ApiError::new(ErrorCode::OrderNotPaid, message),
            BookingError::WrongOrder => ApiError::internal(message),
            BookingError::Policy(p) => policy_error(p),
            BookingError::NotAwaitingConfirmation => {
                ApiError::new(ErrorCode::BookingNotAwaitingConfirmation, message)
            }
            BookingError::AlreadyConfirmed => {
                ApiError::new(ErrorCode::BookingAlreadyConfirmed, message)
            }
            BookingError::Cancelled => ApiError::new(ErrorCode::BookingCancelled, message),
            BookingError::InvalidNote => ApiError::field("adminNotes", message),
            BookingError::NotDue { .. } => ApiError::internal(message),
            BookingError::RescheduleTooLate { starts_at } => {
                ApiError::new(ErrorCode::RescheduleTooLate, message)
                    .with("startsAt", starts_at.to_rfc3339())
            }
            BookingError::InvalidNewStart => ApiError::field("serviceStartsAt", message),
            BookingError::TooManyReschedules => {
                ApiError::new(ErrorCode::TooManyReschedules, message)
            }
        },
        FlowError::BookingCancelled => ApiError::new(ErrorCode::BookingCancelled, message),
        FlowError::FullyRefunded => ApiError::new(ErrorCode::OrderStateConflict, message),
        FlowError::Slot(payledger_domain::slot::SlotError::Taken) => {
            ApiError::new(ErrorCode::SlotTaken, message)
        }
        FlowError::Slot(e) => ApiError::internal(e),
        FlowError::Payee(e) => ApiError::internal(e),
        FlowError::Claim(e) => claim_error(e),
        FlowError::Statement(e) => statement_error(e),
    }
}

fn policy_error(error: RefundPolicyError) -> ApiError {
    let message = error.to_string();
    match error {
        RefundPolicyError::EvidenceRequired => {
            ApiError::new(ErrorCode::EvidenceRequired, message).with("field", "evidence")
        }
        RefundPolicyError::InvalidEvidence => ApiError::field("evidence", message),
        RefundPolicyError::NegativeAmount => ApiError::internal(message),
    }
}

fn claim_error(error: ClaimError) -> ApiError {
    let message = error.to_string();
    match error {
        ClaimError::NotFound => ApiError::new(ErrorCode::ClaimNotFound, message),
        ClaimError::AlreadyExists => ApiError::new(ErrorCode::ClaimAlreadyExists, message),
        ClaimError::OrderNotPaid => ApiError::new(ErrorCode::OrderNotPaid, message),
        ClaimError::NothingAtStake => ApiError::new(ErrorCode::ClaimNothingAtStake, message),
        ClaimError::NotABooking(_) => ApiError::new(ErrorCode::NotABooking, message),
        ClaimError::WrongClaimant { .. } => {
            ApiError::new(ErrorCode::ClaimWrongClaimant, message).with("field", "filedBy")
        }
        ClaimError::FilingWindowNotOpen { opens_at, .. } => {
            ApiError::new(ErrorCode::ClaimWindowNotOpen, message)
                .with("opensAt", opens_at.to_rfc3339())
        }
        ClaimError::Evidence(e) => policy_error(e),
        ClaimError::InvalidDescription => ApiError::field("description", message),
        ClaimError::InvalidReason => ApiError::field("reason", message),
        ClaimError::InvalidCoupon => ApiError::field("coupon", message),
        ClaimError::InvalidAmount => ApiError::new(ErrorCode::InvalidAmount, message),
        ClaimError::ResponseWindowClosed { respond_by } => {
            ApiError::new(ErrorCode::ResponseWindowClosed, message)
                .with("respondBy", respond_by.to_rfc3339())
        }
        ClaimError::AppealWindowClosed { closed_at } => {
            ApiError::new(ErrorCode::AppealWindowClosed, message)
                .with("closedAt", closed_at.to_rfc3339())
        }
        ClaimError::NotAssignee { assigned } => ApiError::new(ErrorCode::ClaimNotAssignee, message)
            .with("assignedTo", assigned.to_string()),
        ClaimError::AmountsDoNotAddUp { at_stake_minor, .. } => {
            ApiError::new(ErrorCode::ResolutionInvalid, message)
                .with("amountAtStake", at_stake_minor)
        }
        ClaimError::RefundBelowEarlierDecision { .. }
        | ClaimError::OutcomeMismatch(_)
        | ClaimError::TooManyPenalties => ApiError::new(ErrorCode::ResolutionInvalid, message),
        ClaimError::NotOpen
        | ClaimError::StatementAlreadySubmitted
        | ClaimError::DeadlineNotReached { .. }
        | ClaimError::NotUnderReview
        | ClaimError::NotResolved
        | ClaimError::AlreadyAppealed => ApiError::new(ErrorCode::ClaimStateConflict, message),
    }
}

fn statement_error(error: StatementError) -> ApiError {
    let message = error.to_string();
    match error {
        StatementError::NotFound => ApiError::new(ErrorCode::StatementNotFound, message),
        StatementError::PeriodNotOver { period_end } => {
            ApiError::new(ErrorCode::StatementPeriodNotOver, message)
                .with("periodEnd", period_end.to_rfc3339())
        }
        StatementError::PayoutAmountMismatch {
            net_payable_minor, ..
        } => ApiError::new(ErrorCode::PayoutAmountMismatch, message)
            .with("netPayable", net_payable_minor),
        StatementError::InvalidReference => ApiError::field("reference", message),
        StatementError::NotConfirmed
        | StatementError::AlreadyPaidOut
        | StatementError::Closed(_) => ApiError::new(ErrorCode::StatementStateConflict, message),
        StatementError::WrongStatement
        | StatementError::InvalidLine
        | StatementError::TooManyLines => ApiError::internal(message),
    }
}

/// The booking services of this process: a typed field of the state every handler has.
pub fn services(state: &AppState) -> &BookingServices {
    &state.bookings
}

/// The admin acting: the API key's name when an admin key is used (the key is the authority, not
/// the body), else the id the body names (only possible where the route table admits no other
/// role, or without authentication in embedded tests).
pub fn acting_admin(request: &HttpRequest, named: Option<&str>) -> Result<AdminId, ApiError> {
    if let Some(principal) = auth::principal(request) {
        if principal.role != Role::Admin {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "only an admin key may do this",
            ));
        }
        return AdminId::parse(principal.name.clone())
            .map_err(|e| ApiError::internal(format!("admin key name is not an admin id: {e}")));
    }
    let named = named.ok_or_else(|| ApiError::field("adminId", "adminId is required"))?;
    AdminId::parse(named.to_string()).map_err(|e| ApiError::field("adminId", e.to_string()))
}

/// A non-negative amount in minor units (0 allowed: a resolution may refund nothing).
pub fn parse_non_negative_amount(
    number: &serde_json::Number,
    field: &str,
) -> Result<i64, ApiError> {
    match number.as_i64() {
        Some(0) => Ok(0),
        _ => crate::dto::parse_amount(number, field),
    }
}

/// A JSON body that may be left out entirely (no body, or only whitespace). A body that is sent
/// must parse: a misspelt field is an error, never silently ignored.
pub fn optional_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<Option<T>, ApiError> {
    if body.len() > crate::dto::MAX_BODY_BYTES {
        return Err(ApiError::new(
            ErrorCode::BodyTooLarge,
            format!(
                "the body is larger than {} bytes",
                crate::dto::MAX_BODY_BYTES
            ),
        ));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(body).map(Some).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidJson,
            e.to_string().chars().take(300).collect::<String>(),
        )
    })
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = BookingCancelBody)]
pub struct CancelBody {
    /// An admin-approved emergency: overrides the policy with the admin's refund share.
    pub emergency: Option<EmergencyBody>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmergencyBody {
    /// Who approved (ignored when an admin key is used: the key's name is recorded).
    pub approved_by: Option<String>,
    pub evidence: Vec<String>,
    /// The share of the paid amount refunded to the customer, in basis points (0–10000).
    pub refund_bps: u32,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CancellationBody {
    pub order_id: String,
    /// `FULL` (≥ 48 h), `HALF` (24–48 h), `NONE` (< 24 h) or `EMERGENCY`.
    pub tier: String,
    pub refund_bps: u32,
    pub notice_seconds: i64,
    pub paid_amount: i64,
    /// The customer's share under the policy.
    pub refund_amount: i64,
    /// The provider's share, settled with the payee's statement.
    pub provider_amount: i64,
    /// What this cancellation refunds now (less what was refunded before).
    pub refunded_now: i64,
    pub refund: Option<RefundRef>,
    pub emergency_approved_by: Option<String>,
    pub cancelled_at: DateTime<Utc>,
    pub order: OrderBody,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub replay: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefundRef {
    pub refund_id: String,
    pub status: String,
}

fn name_of<T: Serialize + std::fmt::Debug>(value: &T) -> String {
    payledger_domain::codec::wire_name(value)
}

/// `POST /v1/orders/{order_id}/cancel`: cancels a booking under the refund policy.
#[utoipa::path(
    post,
    path = "/v1/orders/{order_id}/cancel",
    tag = "bookings",
    params(("order_id" = String, Path, description = "The order id (A-Z a-z 0-9 - _ = ., 6 to 64 characters)")),
    request_body = crate::bookings::CancelBody,
    responses((status = 200, description = "Cancelled with the policy refund", body = crate::bookings::CancellationBody))
)]
pub async fn cancel(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let services = services(&state);
    let order_id = parse_order_id(&path)?;
    let body: CancelBody = optional_json(&body)?.unwrap_or(CancelBody { emergency: None });
    auth::check_order_access(&state, &request, &order_id).await?;
    let emergency = match body.emergency {
        None => None,
        Some(e) => Some(EmergencyApproval {
            approved_by: acting_admin(&request, e.approved_by.as_deref())?,
            evidence: e.evidence,
            customer_share: BasisPoints::new(e.refund_bps)
                .map_err(|err| ApiError::field("emergency.refundBps", err.to_string()))?,
        }),
    };
    let context = request_context(&request);
    let cancellation = services
        .bookings
        .cancel(&order_id, emergency, &context)
        .await
        .map_err(flow_error)?;
    let c = &cancellation.cancelled;
    Ok(HttpResponse::Ok().json(CancellationBody {
        order_id: order_id.to_string(),
        tier: name_of(&c.decision.tier),
        refund_bps: c.decision.customer_share.get(),
        notice_seconds: c.decision.notice_seconds,
        paid_amount: c.paid_minor,
        refund_amount: c.decision.refund_minor,
        provider_amount: c.decision.provider_minor,
        refunded_now: c.refund_now_minor,
        refund: cancellation.refund.as_ref().map(|(id, status)| RefundRef {
            refund_id: id.to_string(),
            status: name_of(status),
        }),
        emergency_approved_by: c.emergency.as_ref().map(|e| e.approved_by.to_string()),
        cancelled_at: c.at,
        order: OrderBody::from_snapshot(&cancellation.order)?,
        replay: cancellation.replay,
    }))
}

/// `POST /v1/orders/{order_id}/fulfil`: the service was delivered; the payment becomes payable.
#[utoipa::path(
    post,
    path = "/v1/orders/{order_id}/fulfil",
    tag = "bookings",
    params(("order_id" = String, Path, description = "The order id (A-Z a-z 0-9 - _ = ., 6 to 64 characters)")),
    responses((status = 200, description = "The service was delivered", body = crate::dto::OrderBody))
)]
pub async fn fulfil(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let services = services(&state);
    let order_id = parse_order_id(&path)?;
    auth::check_order_access(&state, &request, &order_id).await?;
    let context = request_context(&request);
    let snapshot = services
        .bookings
        .fulfil(&order_id, &context)
        .await
        .map_err(flow_error)?;
    Ok(HttpResponse::Ok().json(OrderBody::from_snapshot(&snapshot)?))
}
