//! `POST /v1/orders/{order_id}/refunds/{refund_id}/discrepancy/resolve` (admins): an admin
//! resolves a refund's open discrepancy (`RefundDiscrepancyRecorded`) with an audited note.
//! Nothing moves: the refund keeps waiting for the provider with its amount held.

use crate::dto::{parse_order_id, parse_refund_id, OrderBody};
use crate::errors::ApiError;
use crate::orders::payment_error;
use crate::request_context::request_context;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use payledger_domain::order::DiscrepancyResolution;
use serde::Deserialize;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RefundDiscrepancyResolveBody {
    /// `acknowledged`: the admin has taken it up with the provider; the refund keeps waiting
    /// for the provider's next fact.
    pub resolution: String,
    /// Why (1 to 500 characters, no control characters); kept in the event with who resolved
    /// it. Not sealed: keep personal data out of it.
    pub note: String,
}

#[utoipa::path(
    post,
    path = "/v1/orders/{order_id}/refunds/{refund_id}/discrepancy/resolve",
    tag = "orders",
    params(
        ("order_id" = String, Path, description = "The order id (A-Z a-z 0-9 - _ = ., 6 to 64 characters)"),
        ("refund_id" = String, Path, description = "The refund whose discrepancy is resolved"),
    ),
    request_body = crate::refund_discrepancies::RefundDiscrepancyResolveBody,
    responses((status = 200, description = "Resolved: the order, `refundsUnderReview` less this refund; the refund still `AWAITING_PROVIDER`", body = crate::dto::OrderBody))
)]
pub async fn resolve(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Json<RefundDiscrepancyResolveBody>,
) -> Result<HttpResponse, ApiError> {
    let (order_id, refund_id) = path.into_inner();
    let order_id = parse_order_id(&order_id)?;
    let refund_id = parse_refund_id(&refund_id)?;
    let body = body.into_inner();
    let resolution = DiscrepancyResolution::parse(&body.resolution)
        .ok_or_else(|| ApiError::field("resolution", "resolution must be acknowledged"))?;
    let snapshot = state
        .payments
        .resolve_refund_discrepancy(
            &order_id,
            refund_id,
            resolution,
            body.note,
            &request_context(&request),
        )
        .await
        .map_err(payment_error)?;
    Ok(HttpResponse::Ok().json(OrderBody::from_snapshot(&snapshot)?))
}
