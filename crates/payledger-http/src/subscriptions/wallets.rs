//! Credit wallets: buying, spending and reading credits.

use super::parsing::{parse_body, parse_credits, parse_operation_id};
use super::{billing_error, services, PurchaseCreditsBody, SpendCreditsBody, WalletBody};
use crate::dto::{parse_customer_id, parse_order_id};
use crate::errors::ApiError;
use crate::request_context::request_context;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use payledger_domain::billing::CreditOperationId;

/// `POST /v1/wallets/{customer_id}/credits` `{purchaseId?, credits, orderId}`: buy credits with a
/// paid order.
#[utoipa::path(
    post,
    path = "/v1/wallets/{customer_id}/credits",
    tag = "subscriptions",
    params(("customer_id" = String, Path, description = "The customer id")),
    request_body = crate::subscriptions::PurchaseCreditsBody,
    responses((status = 201, description = "Credits purchased", body = crate::subscriptions::WalletBody), (status = 200, description = "A repeated purchase id: the original answer", body = crate::subscriptions::WalletBody))
)]
pub async fn purchase_credits(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    let customer_id = parse_customer_id(&path)?;
    crate::auth::check_customer_access(&state, &request, &customer_id).await?;
    let body: PurchaseCreditsBody = parse_body(body.into_inner())?;
    let credits = parse_credits(&body.credits)?;
    let order_id = parse_order_id(&body.order_id)?;
    let purchase_id = body
        .purchase_id
        .as_deref()
        .map(parse_operation_id)
        .transpose()?;
    let snapshot = services(&state)
        .purchase_credits(
            &customer_id,
            purchase_id,
            credits,
            &order_id,
            &request_context(&request),
        )
        .await
        .map_err(billing_error)?;
    let replay = snapshot.replay;
    let body = WalletBody::from(snapshot);
    Ok(if replay {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::Created().json(body)
    })
}

/// `POST /v1/wallets/{customer_id}/spend` `{spendId?, credits, reason}`.
#[utoipa::path(
    post,
    path = "/v1/wallets/{customer_id}/spend",
    tag = "subscriptions",
    params(("customer_id" = String, Path, description = "The customer id")),
    request_body = crate::subscriptions::SpendCreditsBody,
    responses((status = 200, description = "Credits spent", body = crate::subscriptions::WalletBody))
)]
pub async fn spend_credits(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    let customer_id = parse_customer_id(&path)?;
    crate::auth::check_customer_access(&state, &request, &customer_id).await?;
    let body: SpendCreditsBody = parse_body(body.into_inner())?;
    let credits = parse_credits(&body.credits)?;
    let spend_id = body
        .spend_id
        .as_deref()
        .map(|id| {
            CreditOperationId::parse(id.to_string())
                .map_err(|e| ApiError::field("spendId", e.to_string()))
        })
        .transpose()?;
    let snapshot = services(&state)
        .spend_credits(
            &customer_id,
            spend_id,
            credits,
            body.reason,
            &request_context(&request),
        )
        .await
        .map_err(billing_error)?;
    Ok(HttpResponse::Ok().json(WalletBody::from(snapshot)))
}

/// `GET /v1/wallets/{customer_id}`: the command side's wallet (a customer without purchases has
/// an empty one) and the customer's membership level now.
#[utoipa::path(
    get,
    path = "/v1/wallets/{customer_id}",
    tag = "subscriptions",
    params(("customer_id" = String, Path, description = "The customer id")),
    responses((status = 200, description = "The credit wallet", body = crate::subscriptions::WalletBody))
)]
pub async fn get_wallet(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let customer_id = parse_customer_id(&path)?;
    crate::auth::check_customer_access(&state, &request, &customer_id).await?;
    let snapshot = services(&state)
        .wallet(&customer_id)
        .await
        .map_err(billing_error)?;
    Ok(HttpResponse::Ok().json(WalletBody::from(snapshot)))
}
