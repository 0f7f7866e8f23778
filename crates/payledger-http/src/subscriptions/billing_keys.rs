//! `POST /v1/billing-keys` and `DELETE /v1/billing-keys/{id}`.

use super::parsing::{parse_billing_key_id, parse_body};
use super::{
    billing_error, services, BillingKeyBody, RegisterBillingKeyBody, RevokeBillingKeyQuery,
};
use crate::dto::parse_customer_id;
use crate::errors::{ApiError, ErrorCode};
use crate::request_context::request_context;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};

/// `POST /v1/billing-keys` `{customerId, authKey}`.
#[utoipa::path(
    post,
    path = "/v1/billing-keys",
    tag = "subscriptions",
    request_body = crate::subscriptions::RegisterBillingKeyBody,
    responses((status = 201, description = "Issued by the provider and stored encrypted", body = crate::subscriptions::BillingKeyBody))
)]
pub async fn register_billing_key(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    let body: RegisterBillingKeyBody = parse_body(body.into_inner())?;
    let customer_id = parse_customer_id(&body.customer_id)?;
    crate::auth::check_customer_access(&state, &request, &customer_id).await?;
    let auth_key_len = body.auth_key.chars().count();
    if auth_key_len == 0 || auth_key_len > 300 || body.auth_key.chars().any(char::is_control) {
        return Err(ApiError::field(
            "authKey",
            "authKey must be 1 to 300 printable characters",
        ));
    }
    let info = services(&state)
        .register_billing_key(&customer_id, &body.auth_key, &request_context(&request))
        .await
        .map_err(billing_error)?;
    let body = BillingKeyBody::from(info);
    Ok(HttpResponse::Created()
        .insert_header((
            "Location",
            format!("/v1/billing-keys/{}", body.billing_key_id),
        ))
        .json(body))
}

/// `DELETE /v1/billing-keys/{billing_key_id}[?customerId=…]`.
#[utoipa::path(
    delete,
    path = "/v1/billing-keys/{billing_key_id}",
    tag = "subscriptions",
    params(("billing_key_id" = String, Path, description = "The billing key id"), crate::subscriptions::RevokeBillingKeyQuery),
    responses((status = 200, description = "Revoked", body = crate::subscriptions::BillingKeyBody))
)]
pub async fn revoke_billing_key(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    query: web::Query<RevokeBillingKeyQuery>,
) -> Result<HttpResponse, ApiError> {
    let billing_key_id = parse_billing_key_id(&path)?;
    let customer_id = match query.customer_id.as_deref() {
        Some(customer_id) => parse_customer_id(customer_id)?,
        None => {
            // A `DELETE`, outside the read deadline: bounded per call, before anything changes.
            let view = payledger_store::call_bounds::bounded_as::<_, ApiError, _>(
                "looking up a billing key's customer",
                state.database_call_timeout_ms,
                payledger_read_models::subscriptions::get_billing_key(
                    &state.read_pool,
                    billing_key_id.as_str(),
                ),
            )
            .await?
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::BillingKeyNotFound,
                    "no billing key with this id (just registered? pass customerId)",
                )
            })?;
            parse_customer_id(&view.customer_id)?
        }
    };
    crate::auth::check_customer_access(&state, &request, &customer_id).await?;
    let info = services(&state)
        .revoke_billing_key(
            &customer_id,
            &billing_key_id,
            "revoked through the API".into(),
            &request_context(&request),
        )
        .await
        .map_err(billing_error)?;
    Ok(HttpResponse::Ok().json(BillingKeyBody::from(info)))
}
