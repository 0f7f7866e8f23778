//! Starting a subscription, changing its card, cancelling and resuming it.

use super::parsing::{
    parse_billing_key_id, parse_body, parse_interval, parse_plan_id, parse_subscription_id,
};
use super::{
    billing_error, check_subscription_access, services, CancelBody, PaymentMethodBody,
    StartSubscriptionBody, SubscriptionBody,
};
use crate::dto::{parse_amount, parse_currency, parse_customer_id};
use crate::errors::{ApiError, ErrorCode};
use crate::request_context::request_context;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use payledger_app::subscriptions::StartSubscriptionInput;
use payledger_domain::money::Money;

/// `POST /v1/subscriptions`.
#[utoipa::path(
    post,
    path = "/v1/subscriptions",
    tag = "subscriptions",
    request_body = crate::subscriptions::StartSubscriptionBody,
    responses((status = 201, description = "Started", body = crate::subscriptions::SubscriptionBody))
)]
pub async fn start_subscription(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    let body: StartSubscriptionBody = parse_body(body.into_inner())?;
    let amount_minor = parse_amount(&body.amount, "amount")?;
    let currency = parse_currency(&body.currency)?;
    let input = StartSubscriptionInput {
        subscription_id: body
            .subscription_id
            .as_deref()
            .map(parse_subscription_id)
            .transpose()?,
        customer_id: parse_customer_id(&body.customer_id)?,
        plan_id: parse_plan_id(&body.plan_id)?,
        amount: Money::new(amount_minor, currency)
            .map_err(|e| ApiError::new(ErrorCode::InvalidAmount, e.to_string()))?,
        interval: parse_interval(&body.interval, body.interval_count)?,
        billing_key_id: parse_billing_key_id(&body.billing_key_id)?,
        anchor: body.anchor,
        order_name: body.order_name,
    };
    crate::auth::check_customer_access(&state, &request, &input.customer_id).await?;
    let snapshot = services(&state)
        .start(input, &request_context(&request))
        .await
        .map_err(billing_error)?;
    let body = SubscriptionBody::from_snapshot(&snapshot)?;
    Ok(HttpResponse::Created()
        .insert_header((
            "Location",
            format!("/v1/subscriptions/{}", body.subscription_id),
        ))
        .json(body))
}

/// `POST /v1/subscriptions/{id}/payment-method` `{billingKeyId}`.
#[utoipa::path(
    post,
    path = "/v1/subscriptions/{subscription_id}/payment-method",
    tag = "subscriptions",
    params(("subscription_id" = String, Path, description = "The subscription id")),
    request_body = crate::subscriptions::PaymentMethodBody,
    responses((status = 200, description = "The new billing key is used from now on", body = crate::subscriptions::SubscriptionBody))
)]
pub async fn change_payment_method(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    let subscription_id = parse_subscription_id(&path)?;
    check_subscription_access(&state, &request, &subscription_id).await?;
    let body: PaymentMethodBody = parse_body(body.into_inner())?;
    let billing_key_id = parse_billing_key_id(&body.billing_key_id)?;
    let snapshot = services(&state)
        .change_payment_method(&subscription_id, billing_key_id, &request_context(&request))
        .await
        .map_err(billing_error)?;
    Ok(HttpResponse::Ok().json(SubscriptionBody::from_snapshot(&snapshot)?))
}

/// `POST /v1/subscriptions/{id}/cancel` `{mode?}`.
#[utoipa::path(
    post,
    path = "/v1/subscriptions/{subscription_id}/cancel",
    tag = "subscriptions",
    params(("subscription_id" = String, Path, description = "The subscription id")),
    request_body = crate::subscriptions::CancelBody,
    responses((status = 200, description = "Cancelled (at period end unless `mode` says otherwise)", body = crate::subscriptions::SubscriptionBody))
)]
pub async fn cancel(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    body: Option<web::Json<serde_json::Value>>,
) -> Result<HttpResponse, ApiError> {
    let subscription_id = parse_subscription_id(&path)?;
    check_subscription_access(&state, &request, &subscription_id).await?;
    let body: CancelBody = match body {
        Some(body) => parse_body(body.into_inner())?,
        None => CancelBody::default(),
    };
    let services = services(&state);
    let context = request_context(&request);
    let result = match body.mode.as_deref() {
        None | Some("at_period_end") => {
            services
                .cancel_at_period_end(&subscription_id, &context)
                .await
        }
        Some("immediately") => services.end_now(&subscription_id, &context).await,
        Some(_) => {
            return Err(ApiError::field(
                "mode",
                "mode must be at_period_end or immediately",
            ))
        }
    };
    let snapshot = result.map_err(billing_error)?;
    Ok(HttpResponse::Ok().json(SubscriptionBody::from_snapshot(&snapshot)?))
}

/// `POST /v1/subscriptions/{id}/resume`: withdraws a cancellation at period end.
#[utoipa::path(
    post,
    path = "/v1/subscriptions/{subscription_id}/resume",
    tag = "subscriptions",
    params(("subscription_id" = String, Path, description = "The subscription id")),
    responses((status = 200, description = "A scheduled cancellation is withdrawn", body = crate::subscriptions::SubscriptionBody))
)]
pub async fn resume(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let subscription_id = parse_subscription_id(&path)?;
    check_subscription_access(&state, &request, &subscription_id).await?;
    let snapshot = services(&state)
        .resume(&subscription_id, &request_context(&request))
        .await
        .map_err(billing_error)?;
    Ok(HttpResponse::Ok().json(SubscriptionBody::from_snapshot(&snapshot)?))
}
