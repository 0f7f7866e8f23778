//! Admin operations (runbook, source document 2 §5–6): kill switches and manual operations.
//! Admin-only by the route table; each request is also recorded in `audit-admin`.

use crate::dto::OrderBody;
use crate::dto::{parse_amount, parse_currency, parse_order_id, parse_payee_id, parse_payment_key};
use crate::errors::{ApiError, ErrorCode};
use crate::orders::payment_error;
use crate::request_context::request_context;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use payledger_app::operations::{ExternalPaymentInput, Flipped, OperationError};
use payledger_domain::operations::{
    KillSwitches, ProviderTransactionError, SwitchCommand, SwitchError,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SuspendBody {
    /// Why, for the audit trail and for the clients that are refused (shown in their errors).
    pub reason: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExternalPaymentBody {
    /// Who took the money (`toss`, `bank_transfer`, …): 1–32 of `a-z 0-9 _ -`.
    pub provider: String,
    /// The provider's transaction id: recorded once across all orders.
    pub provider_transaction_id: String,
    #[schema(value_type = i64)]
    pub amount: serde_json::Number,
    pub currency: String,
    pub method: Option<String>,
    pub reason: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CancelEnrollmentBody {
    pub reason: String,
    /// Also refund what is still refundable (refund id `enrollment-cancel`). Default false.
    #[serde(default)]
    pub refund: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SuspensionBody {
    pub reason: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PayeeSuspensionBody {
    pub payee_id: String,
    pub reason: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SwitchesBody {
    pub payments_suspended: Option<SuspensionBody>,
    pub suspended_payees: Vec<PayeeSuspensionBody>,
    /// Whether this request changed a switch (false: it already stood that way).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
}

impl SwitchesBody {
    fn of(switches: &KillSwitches) -> SwitchesBody {
        SwitchesBody {
            payments_suspended: switches
                .payments_suspended
                .as_ref()
                .map(|s| SuspensionBody {
                    reason: s.reason.clone(),
                    at: s.at,
                }),
            suspended_payees: switches
                .suspended_payees
                .iter()
                .map(|(payee_id, s)| PayeeSuspensionBody {
                    payee_id: payee_id.to_string(),
                    reason: s.reason.clone(),
                    at: s.at,
                })
                .collect(),
            changed: None,
            position: None,
        }
    }

    fn flipped(flipped: &Flipped) -> SwitchesBody {
        SwitchesBody {
            changed: Some(flipped.changed),
            position: flipped.position,
            ..SwitchesBody::of(&flipped.switches)
        }
    }
}

pub fn operation_error(error: OperationError) -> ApiError {
    match error {
        OperationError::Switch(SwitchError::InvalidReason) => {
            ApiError::field("reason", "the reason must be 1 to 200 characters")
        }
        OperationError::Switch(e @ SwitchError::TooManySuspendedPayees) => {
            ApiError::new(ErrorCode::InvalidField, e.to_string())
        }
        OperationError::ProviderTransaction(ProviderTransactionError::AlreadyRecorded(
            order_id,
        )) => ApiError::new(
            ErrorCode::ProviderTransactionAlreadyRecorded,
            "this provider transaction id is already recorded for another order",
        )
        .with("orderId", order_id.to_string()),
        OperationError::ProviderTransaction(e @ ProviderTransactionError::InvalidProvider) => {
            ApiError::field("provider", e.to_string())
        }
        OperationError::ProviderTransaction(e @ ProviderTransactionError::TransactionIdTooLong) => {
            ApiError::field("providerTransactionId", e.to_string())
        }
        OperationError::ProviderTransaction(e @ ProviderTransactionError::InvalidReason) => {
            ApiError::field("reason", e.to_string())
        }
        OperationError::Payment(e) => payment_error(e),
        OperationError::CurrencyMismatch { given, expected } => ApiError::new(
            ErrorCode::InvalidField,
            format!("the currency {given} differs from the order's {expected}"),
        )
        .with("field", "currency"),
    }
}

#[utoipa::path(
    get,
    path = "/v1/admin/switches",
    tag = "operations",
    responses((status = 200, description = "The kill switches", body = crate::admin::SwitchesBody))
)]
pub async fn get_switches(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let switches = state
        .operations
        .switches()
        .current()
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    Ok(HttpResponse::Ok().json(SwitchesBody::of(&switches)))
}

async fn flip(
    state: &AppState,
    request: &HttpRequest,
    command: SwitchCommand,
) -> Result<HttpResponse, ApiError> {
    let flipped = state
        .operations
        .switches()
        .flip(command, &request_context(request))
        .await
        .map_err(|e| operation_error(e.into()))?;
    Ok(HttpResponse::Ok().json(SwitchesBody::flipped(&flipped)))
}

#[utoipa::path(
    post,
    path = "/v1/admin/switches/payments/suspend",
    tag = "operations",
    request_body = crate::admin::SuspendBody,
    responses((status = 200, description = "New payments are refused", body = crate::admin::SwitchesBody))
)]
pub async fn suspend_payments(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Json<SuspendBody>,
) -> Result<HttpResponse, ApiError> {
    let at = state.operations.now();
    let reason = body.into_inner().reason;
    flip(
        &state,
        &request,
        SwitchCommand::SuspendPayments { reason, at },
    )
    .await
}

#[utoipa::path(
    post,
    path = "/v1/admin/switches/payments/resume",
    tag = "operations",
    responses((status = 200, description = "New payments are accepted again", body = crate::admin::SwitchesBody))
)]
pub async fn resume_payments(
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let at = state.operations.now();
    flip(&state, &request, SwitchCommand::ResumePayments { at }).await
}

#[utoipa::path(
    post,
    path = "/v1/admin/switches/payees/{payee_id}/suspend",
    tag = "operations",
    params(("payee_id" = String, Path, description = "The payee id")),
    request_body = crate::admin::SuspendBody,
    responses((status = 200, description = "The payee's sales are stopped", body = crate::admin::SwitchesBody))
)]
pub async fn suspend_payee(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    body: web::Json<SuspendBody>,
) -> Result<HttpResponse, ApiError> {
    let payee_id = parse_payee_id(&path)?;
    let at = state.operations.now();
    let reason = body.into_inner().reason;
    flip(
        &state,
        &request,
        SwitchCommand::SuspendPayee {
            payee_id,
            reason,
            at,
        },
    )
    .await
}

#[utoipa::path(
    post,
    path = "/v1/admin/switches/payees/{payee_id}/resume",
    tag = "operations",
    params(("payee_id" = String, Path, description = "The payee id")),
    responses((status = 200, description = "The payee's sales resume", body = crate::admin::SwitchesBody))
)]
pub async fn resume_payee(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let payee_id = parse_payee_id(&path)?;
    let at = state.operations.now();
    flip(
        &state,
        &request,
        SwitchCommand::ResumePayee { payee_id, at },
    )
    .await
}

#[utoipa::path(
    post,
    path = "/v1/admin/orders/{order_id}/external-payments",
    tag = "operations",
    params(("order_id" = String, Path, description = "The order id (A-Z a-z 0-9 - _ = ., 6 to 64 characters)")),
    request_body = crate::admin::ExternalPaymentBody,
    responses((status = 201, description = "Recorded", body = Object), (status = 200, description = "Already recorded with this transaction id", body = Object))
)]
pub async fn record_external_payment(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    body: web::Json<ExternalPaymentBody>,
) -> Result<HttpResponse, ApiError> {
    let order_id = parse_order_id(&path)?;
    let body = body.into_inner();
    let method = body
        .method
        .map(|m| {
            let ok = (1..=50).contains(&m.chars().count()) && !m.chars().any(char::is_control);
            ok.then_some(m)
                .ok_or_else(|| ApiError::field("method", "method must be 1 to 50 characters"))
        })
        .transpose()?;
    let input = ExternalPaymentInput {
        order_id,
        provider: body.provider,
        provider_transaction_id: parse_payment_key(&body.provider_transaction_id).map_err(
            |_| {
                ApiError::field(
                    "providerTransactionId",
                    "providerTransactionId must be 1 to 150 characters of A-Z a-z 0-9 - _ = .",
                )
            },
        )?,
        amount_minor: parse_amount(&body.amount, "amount")?,
        currency: parse_currency(&body.currency)?,
        method,
        reason: body.reason,
    };
    let snapshot = state
        .operations
        .record_external_payment(input, &request_context(&request))
        .await
        .map_err(operation_error)?;
    let body = OrderBody::from_snapshot(&snapshot)?;
    Ok(if snapshot.replay {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::Created().json(body)
    })
}

#[utoipa::path(
    post,
    path = "/v1/admin/orders/{order_id}/cancel-enrollment",
    tag = "operations",
    params(("order_id" = String, Path, description = "The order id (A-Z a-z 0-9 - _ = ., 6 to 64 characters)")),
    request_body = crate::admin::CancelEnrollmentBody,
    responses((status = 200, description = "The enrollment is cancelled", body = crate::dto::OrderBody))
)]
pub async fn cancel_enrollment(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    body: web::Json<CancelEnrollmentBody>,
) -> Result<HttpResponse, ApiError> {
    let order_id = parse_order_id(&path)?;
    let body = body.into_inner();
    let snapshot = state
        .operations
        .cancel_enrollment(
            &order_id,
            body.reason,
            body.refund,
            &request_context(&request),
        )
        .await
        .map_err(operation_error)?;
    Ok(HttpResponse::Ok().json(OrderBody::from_snapshot(&snapshot)?))
}
