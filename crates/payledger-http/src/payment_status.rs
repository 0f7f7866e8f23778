//! `GET /v1/orders/{orderId}/payment-status`: the payment-recovery screen of source document 1
//! (§2.2 redirect failure, §5.1 browser crash, §5.2 network loss). After the customer's browser
//! lost track of a payment, the shop asks this and shows one of four screens.
//!
//! Answered from the command side (the order's own events), never from a read model that may be a
//! few milliseconds behind: a customer must not be told "not paid" for a payment that is. With
//! `checkProvider=true`, a payment whose outcome is unknown is settled first by asking the
//! provider (the reconciler's own step), so the answer can be final.

use crate::auth::check_order_access;
use crate::dto::parse_order_id;
use crate::errors::ApiError;
use crate::orders::payment_error;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use payledger_app::payments::Reconciled;
use payledger_domain::order::{Order, OrderStatus};
use payledger_domain::provider_failure::{FailureClass, SuggestedAction};
use serde::{Deserialize, Serialize};

/// A confirmation younger than this is left to the request that is running it; older ones may
/// be settled by `checkProvider` (the request that sent it is presumably gone).
const PROVIDER_CHECK_MIN_AGE_S: i64 = 30;
/// What a `pending` answer tells the client to wait before asking again.
const PENDING_RETRY_AFTER_S: u64 = 3;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PaymentStatusQuery {
    /// Ask the provider about a pending payment before answering.
    #[serde(default)]
    pub check_provider: bool,
}

/// The four answers of the recovery screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecoveryStatus {
    Completed,
    Failed,
    Pending,
    /// The provider's payment differs from the order: recorded, nothing captured, support looks.
    NeedsReview,
    NotFound,
}

/// What the shop should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NextAction {
    /// Paid: show the success page.
    ShowSuccess,
    /// Not paid and not being paid: let the customer pay (again) for this order.
    ContinuePayment,
    /// The outcome is being settled: ask again after `retryAfterSeconds`.
    CheckAgainLater,
    /// This order cannot be paid any more: place a new one.
    StartOver,
    /// Nothing the customer can fix: support must look.
    ContactSupport,
    UseAnotherCard,
    UpdatePaymentMethod,
    RetryLater,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentStatusBody {
    pub order_id: String,
    pub status: RecoveryStatus,
    /// The order's own status (`PAID`, `CONFIRMING`, …); absent when not found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_status: Option<OrderStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub captured_amount: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refunded_amount: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paid_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_class: Option<FailureClass>,
    pub next_action: NextAction,
    /// A sentence the shop can show the customer as is.
    pub customer_message: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
    /// Whether the provider was asked during this request.
    pub checked_provider: bool,
}

fn failed_action(class: FailureClass) -> (NextAction, &'static str) {
    match class.suggested_action() {
        SuggestedAction::ShowSuccess => (
            NextAction::ShowSuccess,
            "Your payment is complete.",
        ),
        SuggestedAction::UseAnotherCard => (
            NextAction::UseAnotherCard,
            "Your card was declined. Please try another card.",
        ),
        SuggestedAction::UpdatePaymentMethod => (
            NextAction::UpdatePaymentMethod,
            "This card cannot be used. Please update your payment method.",
        ),
        SuggestedAction::RetryLater => (
            NextAction::RetryLater,
            "The payment service had a problem and nothing was charged. Please try again in a moment.",
        ),
        SuggestedAction::RestartPayment => (
            NextAction::ContinuePayment,
            "The payment was not completed and nothing was charged. Please start the payment again.",
        ),
        SuggestedAction::ContactSupport => (
            NextAction::ContactSupport,
            "We could not complete the payment. Please contact support; nothing more will be charged.",
        ),
    }
}

/// Maps an order to the recovery screen's answer.
pub fn recovery_of(order_id: &str, order: Option<&Order>) -> PaymentStatusBody {
    let Some((order, placed)) = order.and_then(|o| o.placed.as_ref().map(|p| (o, p))) else {
        return PaymentStatusBody {
            order_id: order_id.to_string(),
            status: RecoveryStatus::NotFound,
            order_status: None,
            amount: None,
            currency: None,
            captured_amount: None,
            refunded_amount: None,
            paid_at: None,
            failure_code: None,
            failure_class: None,
            next_action: NextAction::StartOver,
            customer_message: "We found no payment for this order. Please start again.",
            retry_after_seconds: None,
            checked_provider: false,
        };
    };
    let failure = order.last_failure.as_ref();
    let (status, next_action, customer_message, retry_after_seconds) = match order.status {
        OrderStatus::Paid | OrderStatus::PartiallyRefunded | OrderStatus::Refunded => (
            RecoveryStatus::Completed,
            NextAction::ShowSuccess,
            "Your payment is complete.",
            None,
        ),
        OrderStatus::Confirming | OrderStatus::OutcomeUnknown => (
            RecoveryStatus::Pending,
            NextAction::CheckAgainLater,
            "Your payment is being confirmed. Please do not pay again; this page will update.",
            Some(PENDING_RETRY_AFTER_S),
        ),
        OrderStatus::Failed => {
            let (action, message) =
                failed_action(failure.map_or(FailureClass::Unclassified, |f| f.class));
            (RecoveryStatus::Failed, action, message, None)
        }
        OrderStatus::NeedsReview => (
            RecoveryStatus::NeedsReview,
            NextAction::ContactSupport,
            "The payment provider reports this payment differently from the order. Please do not pay again; support will contact you.",
            None,
        ),
        OrderStatus::Expired => (
            RecoveryStatus::Failed,
            NextAction::StartOver,
            "The payment window closed and nothing was charged. Please place the order again.",
            None,
        ),
        // Placed, never confirmed: the customer has not paid (or the redirect back to the shop
        // failed before the shop confirmed, in which case confirming now completes it).
        OrderStatus::Ready | OrderStatus::New => (
            RecoveryStatus::Pending,
            NextAction::ContinuePayment,
            "The payment has not been completed yet. You can continue with it.",
            None,
        ),
    };
    let cancelled = order.enrollment_cancelled_at.is_some() && status != RecoveryStatus::Completed;
    PaymentStatusBody {
        order_id: order_id.to_string(),
        status: if cancelled {
            RecoveryStatus::Failed
        } else {
            status
        },
        order_status: Some(order.status),
        amount: Some(placed.amount.amount_minor()),
        currency: Some(placed.amount.currency().code().to_string()),
        captured_amount: Some(order.captured_minor),
        refunded_amount: Some(order.refunded_minor),
        paid_at: order.paid_at,
        failure_code: failure.map(|f| f.provider_code.clone()),
        failure_class: failure.map(|f| f.class),
        next_action: if cancelled {
            NextAction::StartOver
        } else {
            next_action
        },
        customer_message: if cancelled {
            "This order was cancelled. Please place a new order."
        } else {
            customer_message
        },
        retry_after_seconds,
        checked_provider: false,
    }
}

#[utoipa::path(
    get,
    path = "/v1/orders/{order_id}/payment-status",
    tag = "orders",
    params(("order_id" = String, Path, description = "The order id (A-Z a-z 0-9 - _ = ., 6 to 64 characters)"), crate::payment_status::PaymentStatusQuery),
    responses((status = 200, description = "completed / failed / pending / not found, with the next action", body = Object))
)]
pub async fn payment_status(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    query: web::Query<PaymentStatusQuery>,
) -> Result<HttpResponse, ApiError> {
    let order_id = parse_order_id(&path)?;
    // Another client's order is "not found", exactly like one that does not exist.
    if check_order_access(&state, &request, &order_id)
        .await
        .is_err()
    {
        return Ok(HttpResponse::Ok().json(recovery_of(order_id.as_str(), None)));
    }
    let mut snapshot = state
        .payments
        .load_order(&order_id)
        .await
        .map_err(payment_error)?;
    let mut checked_provider = false;
    if let Some(current) = snapshot.as_ref() {
        let pending = match current.state.status {
            OrderStatus::OutcomeUnknown => Some(chrono::Duration::zero()),
            OrderStatus::Confirming => Some(chrono::Duration::seconds(PROVIDER_CHECK_MIN_AGE_S)),
            _ => None,
        };
        if let (true, Some(older_than)) = (query.check_provider, pending) {
            checked_provider = true;
            match state.payments.reconcile_order(&order_id, older_than).await {
                Ok(Reconciled::Settled(_)) => {
                    snapshot = state
                        .payments
                        .load_order(&order_id)
                        .await
                        .map_err(payment_error)?;
                }
                Ok(_) => {}
                // The provider could not be asked: the answer stays pending, which is true.
                Err(error) => {
                    tracing::warn!(%order_id, %error, "payment-status provider check failed")
                }
            }
        }
    }
    let mut body = recovery_of(order_id.as_str(), snapshot.as_ref().map(|s| &s.state));
    body.checked_provider = checked_provider;
    Ok(HttpResponse::Ok().json(body))
}
