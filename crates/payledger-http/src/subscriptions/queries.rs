//! `GET /v1/subscriptions` and `GET /v1/subscriptions/{id}`.

use super::parsing::parse_subscription_id;
use super::{
    billing_error, check_subscription_access, services, SubscriptionBody, SubscriptionGetQuery,
    SubscriptionListQuery,
};
use crate::dto::{page_limit, parse_customer_id};
use crate::errors::{ApiError, ErrorCode};
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use payledger_domain::subscription::SubscriptionStatus;
use payledger_read_models::subscriptions::SubscriptionFilter;

/// `GET /v1/subscriptions/{id}`: the read model (with the wallet balance), or the command side
/// when the subscription is not projected yet.
#[utoipa::path(
    get,
    path = "/v1/subscriptions/{subscription_id}",
    tag = "subscriptions",
    params(("subscription_id" = String, Path, description = "The subscription id"), crate::subscriptions::SubscriptionGetQuery),
    responses((status = 200, description = "The subscription", body = crate::subscriptions::SubscriptionBody))
)]
pub async fn get_subscription(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    query: web::Query<SubscriptionGetQuery>,
) -> Result<HttpResponse, ApiError> {
    let subscription_id = parse_subscription_id(&path)?;
    check_subscription_access(&state, &request, &subscription_id).await?;
    let services = services(&state);
    state
        .wait_for_projection("subscriptions", query.min_position)
        .await?;
    let now = services.clock().now();
    crate::reads::projected_or_current(
        async {
            Ok(payledger_read_models::subscriptions::get_subscription(
                &state.read_pool,
                subscription_id.as_str(),
                now,
            )
            .await?
            .map(SubscriptionBody::from_view))
        },
        async {
            let snapshot = services
                .load_subscription(&subscription_id)
                .await
                .map_err(billing_error)?;
            snapshot
                .as_ref()
                .map(SubscriptionBody::from_snapshot)
                .transpose()
        },
        || {
            ApiError::new(
                ErrorCode::SubscriptionNotFound,
                "subscription does not exist",
            )
        },
    )
    .await
}

/// `GET /v1/subscriptions?status=past_due&customerId=…&after=…&limit=…`.
#[utoipa::path(
    get,
    path = "/v1/subscriptions",
    tag = "subscriptions",
    params(crate::subscriptions::SubscriptionListQuery),
    responses((status = 200, description = "`{\"subscriptions\": [Subscription], \"nextAfter\"}`", body = Object))
)]
pub async fn list_subscriptions(
    state: web::Data<AppState>,
    query: web::Query<SubscriptionListQuery>,
) -> Result<HttpResponse, ApiError> {
    let services = services(&state);
    if let Some(status) = query.status.as_deref() {
        if SubscriptionStatus::parse(status).is_none() {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                "status must be active, past_due, requires_payment_method, needs_review, suspended or ended",
            ));
        }
    }
    if let Some(customer_id) = query.customer_id.as_deref() {
        parse_customer_id(customer_id)?;
    }
    if let Some(after) = query.after.as_deref() {
        parse_subscription_id(after)?;
    }
    let limit = page_limit(query.limit)?;
    state
        .wait_for_projection("subscriptions", query.min_position)
        .await?;
    let views = payledger_read_models::subscriptions::list_subscriptions(
        &state.read_pool,
        &SubscriptionFilter {
            status: query.status.as_deref(),
            customer_id: query.customer_id.as_deref(),
            after_subscription_id: query.after.as_deref(),
        },
        limit,
        services.clock().now(),
    )
    .await?;
    let next_after = (views.len() as i64 == limit)
        .then(|| views.last().map(|v| v.subscription_id.clone()))
        .flatten();
    let subscriptions: Vec<SubscriptionBody> =
        views.into_iter().map(SubscriptionBody::from_view).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "subscriptions": subscriptions,
        "nextAfter": next_after,
    })))
}
