//! `POST /v1/subscriptions/{id}/charge`: charging a cycle on demand.

use super::parsing::parse_subscription_id;
use super::{billing_error, services, SubscriptionBody};
use crate::errors::ApiError;
use crate::request_context::request_context;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use payledger_domain::subscription::AttemptTrigger;

/// `POST /v1/subscriptions/{id}/charge`: an admin charges the current cycle now.
#[utoipa::path(
    post,
    path = "/v1/subscriptions/{subscription_id}/charge",
    tag = "subscriptions",
    params(("subscription_id" = String, Path, description = "The subscription id")),
    responses((status = 200, description = "Charged now (or the outcome of the attempt)", body = crate::subscriptions::SubscriptionBody))
)]
pub async fn charge(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let subscription_id = parse_subscription_id(&path)?;
    let snapshot = services(&state)
        .charge(
            &subscription_id,
            AttemptTrigger::Admin,
            &request_context(&request),
        )
        .await
        .map_err(billing_error)?;
    Ok(HttpResponse::Ok().json(SubscriptionBody::from_snapshot(&snapshot)?))
}
