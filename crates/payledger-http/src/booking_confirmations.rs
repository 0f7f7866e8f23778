//! The provider's confirmation of a booking (source document 5, §5.1 and §6.1): the platform
//! confirms for its provider; admins see the queue of bookings unconfirmed after 24 hours and
//! confirm them by hand or force-cancel them (a full refund through the ordinary cancellation
//! refund).

use crate::auth;
use crate::bookings::{
    acting_admin, flow_error, optional_json, services, CancellationBody, RefundRef,
};
use crate::dto::{parse_order_id, OrderBody};
use crate::errors::{ApiError, ErrorCode};
use crate::request_context::request_context;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use payledger_app::bookings::FlowError;
use payledger_domain::booking::{Booking, BookingError};
use serde::{Deserialize, Serialize};

/// Rows a page of the queue holds unless `limit` says otherwise.
const DEFAULT_QUEUE_PAGE: i64 = 20;

fn name_of<T: Serialize + std::fmt::Debug>(value: &T) -> String {
    payledger_domain::codec::wire_name(value)
}

/// A booking's confirmation as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BookingConfirmationBody {
    pub order_id: String,
    /// `awaiting`, `overdue` (in the admins' queue), `confirmed`, `cancelled`; `null` when no
    /// confirmation was asked for (not paid, or the booking lost its slot).
    pub status: Option<String>,
    pub requested_at: Option<DateTime<Utc>>,
    /// When the provider is (or was) reminded.
    pub remind_at: Option<DateTime<Utc>>,
    /// The end of the provider's 24 hours.
    pub confirm_by: Option<DateTime<Utc>>,
    pub reminded_at: Option<DateTime<Utc>>,
    pub overdue_at: Option<DateTime<Utc>>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub confirmed_by: Option<String>,
    pub admin_notes: Option<String>,
    pub cancelled_at: Option<DateTime<Utc>>,
    /// The start after the last schedule change; `null` when it was never moved (the order's
    /// `serviceStartsAt` stands).
    pub rescheduled_to: Option<DateTime<Utc>>,
    pub reschedules: usize,
    /// When the provider's session notes were recorded (their reference is in the event).
    pub session_notes_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub replay: bool,
}

impl BookingConfirmationBody {
    fn from_booking(order_id: &str, booking: &Booking, replay: bool) -> Self {
        let confirmation = booking.confirmation.as_ref();
        let requested = confirmation.map(|c| &c.requested);
        let confirmed = confirmation.and_then(|c| c.confirmed.as_ref());
        BookingConfirmationBody {
            order_id: order_id.to_string(),
            status: booking.confirmation_status().map(|s| name_of(&s)),
            requested_at: requested.map(|r| r.at),
            remind_at: requested.map(|r| r.remind_at),
            confirm_by: requested.map(|r| r.confirm_by),
            reminded_at: confirmation.and_then(|c| c.reminded_at),
            overdue_at: confirmation.and_then(|c| c.overdue_at),
            confirmed_at: confirmed.map(|c| c.at),
            confirmed_by: confirmed.map(|c| c.confirmed_by.clone()),
            admin_notes: confirmed.and_then(|c| c.admin_notes.clone()),
            cancelled_at: booking.cancelled.as_ref().map(|c| c.at),
            rescheduled_to: booking.rescheduled_start(),
            reschedules: booking.reschedules.len(),
            session_notes_at: booking.session_notes.as_ref().map(|n| n.at),
            replay,
        }
    }
}

/// `GET /v1/orders/{order_id}/booking`: where the booking's confirmation stands.
#[utoipa::path(
    get,
    path = "/v1/orders/{order_id}/booking",
    tag = "bookings",
    params(("order_id" = String, Path, description = "The order id")),
    responses((status = 200, description = "The booking's confirmation", body = crate::booking_confirmations::BookingConfirmationBody))
)]
pub async fn get_booking(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let order_id = parse_order_id(&path)?;
    auth::check_order_access(&state, &request, &order_id).await?;
    let booking = services(&state)
        .bookings
        .booking(&order_id)
        .await
        .map_err(flow_error)?;
    Ok(
        HttpResponse::Ok().json(BookingConfirmationBody::from_booking(
            order_id.as_str(),
            &booking,
            false,
        )),
    )
}

/// `POST /v1/orders/{order_id}/confirm-booking`: the provider confirms the booking (the
/// platform calls for its provider). Confirming again answers the first confirmation.
#[utoipa::path(
    post,
    path = "/v1/orders/{order_id}/confirm-booking",
    tag = "bookings",
    params(("order_id" = String, Path, description = "The order id")),
    responses((status = 200, description = "Confirmed", body = crate::booking_confirmations::BookingConfirmationBody))
)]
pub async fn confirm_booking(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let order_id = parse_order_id(&path)?;
    auth::check_order_access(&state, &request, &order_id).await?;
    let confirmed = services(&state)
        .bookings
        .confirm(&order_id, None, None, &request_context(&request))
        .await
        .map_err(flow_error)?;
    Ok(
        HttpResponse::Ok().json(BookingConfirmationBody::from_booking(
            order_id.as_str(),
            &confirmed.booking,
            confirmed.replay,
        )),
    )
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RescheduleBody {
    /// The new start (RFC 3339), with the same provider.
    pub service_starts_at: String,
    /// Why, 1 to 500 characters (optional).
    pub reason: Option<String>,
}

/// `POST /v1/orders/{order_id}/reschedule`: moves a paid booking to another start of the same
/// provider, at least 48 hours before its current start (an admin key may move it later). The
/// new slot must be free; both sides are notified (`booking.rescheduled`).
#[utoipa::path(
    post,
    path = "/v1/orders/{order_id}/reschedule",
    tag = "bookings",
    params(("order_id" = String, Path, description = "The order id")),
    request_body = crate::booking_confirmations::RescheduleBody,
    responses((status = 200, description = "Moved", body = crate::booking_confirmations::BookingConfirmationBody))
)]
pub async fn reschedule(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let order_id = parse_order_id(&path)?;
    let body: RescheduleBody = optional_json(&body)?
        .ok_or_else(|| ApiError::field("serviceStartsAt", "serviceStartsAt is required"))?;
    let to = DateTime::parse_from_rfc3339(&body.service_starts_at)
        .map_err(|_| {
            ApiError::field(
                "serviceStartsAt",
                "serviceStartsAt must be an RFC 3339 time",
            )
        })?
        .with_timezone(&Utc);
    auth::check_order_access(&state, &request, &order_id).await?;
    // An admin key moves it with any notice; a client's request follows the 48-hour rule.
    let admin = match auth::principal(&request) {
        Some(p) if p.role == payledger_app::api_keys::Role::Admin => {
            Some(acting_admin(&request, None)?)
        }
        _ => None,
    };
    let moved = services(&state)
        .bookings
        .reschedule(
            &order_id,
            to,
            admin,
            body.reason,
            &request_context(&request),
        )
        .await
        .map_err(|error| match error {
            FlowError::Booking(BookingError::InvalidNote) => {
                ApiError::field("reason", error.to_string())
            }
            other => flow_error(other),
        })?;
    Ok(
        HttpResponse::Ok().json(BookingConfirmationBody::from_booking(
            order_id.as_str(),
            &moved.booking,
            moved.replay,
        )),
    )
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManualConfirmBody {
    /// Why and how (e.g. "confirmed by phone with the provider"), 1 to 500 characters.
    pub admin_notes: String,
    /// Who confirms (ignored when an admin key is used: the key's name is recorded).
    pub admin_id: Option<String>,
}

/// `POST /v1/admin/bookings/{order_id}/manual-confirm`: an admin confirms an unconfirmed
/// booking by hand.
#[utoipa::path(
    post,
    path = "/v1/admin/bookings/{order_id}/manual-confirm",
    tag = "bookings",
    params(("order_id" = String, Path, description = "The order id")),
    request_body = crate::booking_confirmations::ManualConfirmBody,
    responses((status = 200, description = "Confirmed by an admin", body = crate::booking_confirmations::BookingConfirmationBody))
)]
pub async fn manual_confirm(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let order_id = parse_order_id(&path)?;
    let body: ManualConfirmBody = optional_json(&body)?
        .ok_or_else(|| ApiError::field("adminNotes", "adminNotes is required"))?;
    let admin = acting_admin(&request, body.admin_id.as_deref())?;
    let confirmed = services(&state)
        .bookings
        .confirm(
            &order_id,
            Some(admin),
            Some(body.admin_notes),
            &request_context(&request),
        )
        .await
        .map_err(flow_error)?;
    Ok(
        HttpResponse::Ok().json(BookingConfirmationBody::from_booking(
            order_id.as_str(),
            &confirmed.booking,
            confirmed.replay,
        )),
    )
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ForceCancelBody {
    /// Why (e.g. "the provider did not answer"), 1 to 500 characters.
    pub reason: String,
    /// Who cancels (ignored when an admin key is used: the key's name is recorded).
    pub admin_id: Option<String>,
}

/// `POST /v1/admin/bookings/{order_id}/force-cancel`: an admin cancels a booking the provider
/// has not confirmed; the customer gets the whole payment back (refund id `cancel`).
#[utoipa::path(
    post,
    path = "/v1/admin/bookings/{order_id}/force-cancel",
    tag = "bookings",
    params(("order_id" = String, Path, description = "The order id")),
    request_body = crate::booking_confirmations::ForceCancelBody,
    responses((status = 200, description = "Cancelled with a full refund", body = crate::bookings::CancellationBody))
)]
pub async fn force_cancel(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let order_id = parse_order_id(&path)?;
    let body: ForceCancelBody =
        optional_json(&body)?.ok_or_else(|| ApiError::field("reason", "reason is required"))?;
    let admin = acting_admin(&request, body.admin_id.as_deref())?;
    let cancellation = services(&state)
        .bookings
        .force_cancel(&order_id, admin, body.reason, &request_context(&request))
        .await
        .map_err(|error| match error {
            FlowError::Booking(BookingError::InvalidNote) => {
                ApiError::field("reason", error.to_string())
            }
            other => flow_error(other),
        })?;
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
        emergency_approved_by: None,
        cancelled_at: c.at,
        order: OrderBody::from_snapshot(&cancellation.order)?,
        replay: cancellation.replay,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct QueueQuery {
    /// 1-based page.
    pub page: Option<i64>,
    /// Rows per page, 1 to 100 (default 20).
    pub limit: Option<i64>,
    /// Wait until the read model has reached this global position.
    pub min_position: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnconfirmedBody {
    pub order_id: String,
    pub customer_id: String,
    pub payee_id: String,
    pub service_starts_at: DateTime<Utc>,
    pub requested_at: DateTime<Utc>,
    pub confirm_by: DateTime<Utc>,
    pub reminded_at: Option<DateTime<Utc>>,
    pub overdue_at: DateTime<Utc>,
    /// Seconds since the end of the provider's 24 hours, on the ledger's clock.
    pub overdue_seconds: i64,
}

/// `GET /v1/admin/bookings/unconfirmed`: the admins' queue of bookings unconfirmed after
/// 24 hours, the longest overdue first.
#[utoipa::path(
    get,
    path = "/v1/admin/bookings/unconfirmed",
    tag = "bookings",
    params(crate::booking_confirmations::QueueQuery),
    responses((status = 200, description = "`{\"unconfirmed\": [Unconfirmed], \"total\", \"page\", \"totalPages\"}`", body = Object))
)]
pub async fn unconfirmed_queue(
    state: web::Data<AppState>,
    query: web::Query<QueueQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let max = payledger_read_models::bookings::MAX_QUEUE_PAGE;
    let limit = match query.limit {
        None => DEFAULT_QUEUE_PAGE,
        Some(l) if (1..=max).contains(&l) => l,
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                format!("limit must be between 1 and {max}"),
            ))
        }
    };
    let page = match query.page {
        None => 1,
        Some(p) if (1..=1_000_000).contains(&p) => p,
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                "page must be between 1 and 1000000",
            ))
        }
    };
    state
        .wait_for_projection("bookings", query.min_position)
        .await?;
    let (rows, total) =
        payledger_read_models::bookings::unconfirmed_queue(&state.read_pool, page, limit).await?;
    let now = state.payments.clock().now();
    let unconfirmed: Vec<UnconfirmedBody> = rows
        .into_iter()
        .map(|r| UnconfirmedBody {
            overdue_seconds: (now - r.confirm_by).num_seconds().max(0),
            order_id: r.order_id,
            customer_id: r.customer_id,
            payee_id: r.payee_id,
            service_starts_at: r.service_starts_at,
            requested_at: r.requested_at,
            confirm_by: r.confirm_by,
            reminded_at: r.reminded_at,
            overdue_at: r.overdue_at,
        })
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "unconfirmed": unconfirmed,
        "total": total,
        "page": page,
        "totalPages": (total + limit - 1) / limit,
    })))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionNotesBody {
    /// Where the notes are (a document id or URL), 1 to 500 characters: the notes themselves
    /// are personal data and stay out of the ledger.
    pub reference: String,
}

/// `POST /v1/orders/{order_id}/session-notes`: the provider wrote the session's notes (상담일지).
/// A fulfilled booking's payment is held on the payee's statement until they are recorded.
#[utoipa::path(
    post,
    path = "/v1/orders/{order_id}/session-notes",
    tag = "bookings",
    params(("order_id" = String, Path, description = "The order id")),
    request_body = crate::booking_confirmations::SessionNotesBody,
    responses((status = 200, description = "Recorded", body = crate::booking_confirmations::BookingConfirmationBody))
)]
pub async fn record_session_notes(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let order_id = parse_order_id(&path)?;
    let body: SessionNotesBody = optional_json(&body)?
        .ok_or_else(|| ApiError::field("reference", "reference is required"))?;
    auth::check_order_access(&state, &request, &order_id).await?;
    let recorded = services(&state)
        .bookings
        .record_session_notes(&order_id, body.reference, &request_context(&request))
        .await
        .map_err(|error| match error {
            FlowError::Booking(BookingError::InvalidNote) => {
                ApiError::field("reference", error.to_string())
            }
            other => flow_error(other),
        })?;
    Ok(
        HttpResponse::Ok().json(BookingConfirmationBody::from_booking(
            order_id.as_str(),
            &recorded.booking,
            recorded.replay,
        )),
    )
}
