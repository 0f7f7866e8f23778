//! Order, payment and refund endpoints.

use crate::dto::*;
use crate::errors::{ApiError, ErrorCode};
use crate::request_context::request_context;
use crate::state::AppState;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use payledger_app::payments::{ConfirmOutcome, PaymentError, PlaceOrderInput};
use payledger_domain::money::Money;
use payledger_domain::operations::SalesBlock;
use payledger_domain::order::{OrderError, RefundStatus};
use payledger_domain::provider_failure::FailureClass;
use payledger_gateway::RegistryError;
use std::time::Duration;

/// How long a read waits for the read model to reach `minPosition`.
const MAX_CONSISTENCY_WAIT_MS: u64 = 5_000;

pub fn payment_error(error: PaymentError) -> ApiError {
    match error {
        PaymentError::Order(e) => order_error(e),
        PaymentError::AmountMismatch { .. } => ApiError::new(
            ErrorCode::AmountMismatch,
            "the amount does not match the order; nothing was charged",
        ),
        // The provider failed, not the card: nothing was charged, the same payment may be retried.
        PaymentError::Refused(failure) if failure.class == FailureClass::ProviderError => {
            ApiError::new(
                ErrorCode::ProviderUnavailable,
                format!("the payment provider failed: {}", failure.provider_message),
            )
            .with("providerCode", failure.provider_code.clone())
            .with("suggestedAction", "RETRY_LATER")
            .retry_after(5)
        }
        PaymentError::Refused(failure) => ApiError::new(
            ErrorCode::PaymentRefused,
            format!(
                "the provider refused the payment: {}",
                failure.provider_message
            ),
        )
        .with("providerCode", failure.provider_code.clone())
        .with(
            "failureClass",
            serde_json::to_value(failure.class).unwrap_or_default(),
        )
        .with(
            "suggestedAction",
            serde_json::to_value(failure.class.suggested_action()).unwrap_or_default(),
        ),
        PaymentError::ProviderUnavailable { retry_after_ms } => ApiError::new(
            ErrorCode::ProviderUnavailable,
            "the payment provider is unavailable; nothing was charged",
        )
        .retry_after(retry_after_ms.div_ceil(1000)),
        PaymentError::ProviderDiscrepancy { differences } => {
            ApiError::new(ErrorCode::ProviderDiscrepancy, error_text(&differences))
                .with("differences", differences)
        }
        PaymentError::Provider(RegistryError::NotConfigured {
            provider,
            configured,
        }) => ApiError::new(
            ErrorCode::ProviderNotConfigured,
            format!("provider {provider} is not configured on this deployment; nothing was stored"),
        )
        .with("field", "provider")
        .with("configuredProviders", configured),
        PaymentError::Provider(RegistryError::CurrencyNotSupported {
            provider,
            currency,
            supported,
        }) => ApiError::new(
            ErrorCode::CurrencyNotSupported,
            format!("provider {provider} cannot charge {currency}; nothing was stored"),
        )
        .with("field", "currency")
        .with("provider", provider)
        .with(
            "supportedCurrencies",
            supported
                .iter()
                .map(|c| c.code().to_string())
                .collect::<Vec<_>>(),
        ),
        PaymentError::Provider(other) => ApiError::internal(other.to_string()),
        PaymentError::Unavailable(e) => ApiError::unavailable(e),
        // Retry-After: a retry may succeed, so an idempotency key does not pin this answer.
        PaymentError::Contention => ApiError::new(
            ErrorCode::Contention,
            "the order kept changing under concurrent requests; retry",
        )
        .retry_after(1),
        PaymentError::Internal(e) => ApiError::internal(e),
        PaymentError::SalesSuspended(block) => {
            let message = payledger_app::operations::describe_block(&block);
            match block {
                SalesBlock::AllPayments { .. } => {
                    ApiError::new(ErrorCode::PaymentsSuspended, message)
                }
                SalesBlock::Payee { payee_id, .. } => {
                    ApiError::new(ErrorCode::PayeeSuspended, message)
                        .with("payeeId", payee_id.to_string())
                }
            }
        }
        PaymentError::BookingsSuspended { payee_id, until } => {
            // The same form as every timestamp in the API (serde's RFC 3339 with `Z`).
            let until = until.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
            ApiError::new(
                ErrorCode::PayeeSuspended,
                format!("payee {payee_id} takes no bookings until {until}: suspended after three warnings"),
            )
            .with("payeeId", payee_id.to_string())
            .with("suspendedUntil", until)
        }
    }
}

fn order_error(error: OrderError) -> ApiError {
    let message = error.to_string();
    match error {
        OrderError::NotFound => ApiError::new(ErrorCode::OrderNotFound, message),
        OrderError::AlreadyExists => ApiError::new(ErrorCode::OrderAlreadyExists, message),
        OrderError::InvalidOrderName => ApiError::field("orderName", message),
        OrderError::ConfirmationInProgress => {
            ApiError::new(ErrorCode::ConfirmationInProgress, message).retry_after(1)
        }
        OrderError::AlreadyPaid => ApiError::new(ErrorCode::AlreadyPaid, message),
        OrderError::Expired => ApiError::new(ErrorCode::OrderExpired, message),
        OrderError::NotPaid => ApiError::new(ErrorCode::OrderNotPaid, message),
        OrderError::RefundExceedsRefundable {
            requested_minor,
            refundable_minor,
        } => ApiError::new(ErrorCode::RefundExceedsRefundable, message)
            .with("requestedAmount", requested_minor)
            .with("refundableAmount", refundable_minor),
        OrderError::RefundAmountNotPositive => {
            ApiError::new(ErrorCode::InvalidAmount, message).with("field", "amount")
        }
        OrderError::NothingToRefund => ApiError::new(ErrorCode::NothingToRefund, message),
        OrderError::RefundIdConflict => ApiError::new(ErrorCode::RefundIdConflict, message),
        OrderError::TooManyRefunds => ApiError::new(ErrorCode::TooManyRefunds, message),
        OrderError::InvalidRefundReason => ApiError::field("reason", message),
        OrderError::RefundNotFound
        | OrderError::NoConfirmationPending
        | OrderError::NotExpirable
        | OrderError::AlreadyFulfilled
        | OrderError::ManualPaymentNotAllowed => {
            ApiError::new(ErrorCode::OrderStateConflict, message)
        }
        OrderError::ManualPaymentAmountMismatch { expected_minor, .. } => {
            ApiError::new(ErrorCode::InvalidAmount, message)
                .with("field", "amount")
                .with("orderAmount", expected_minor)
        }
        OrderError::EnrollmentAlreadyCancelled => {
            ApiError::new(ErrorCode::EnrollmentCancelled, message)
        }
        OrderError::InvalidCancellationReason => ApiError::field("reason", message),
        OrderError::ProviderDiscrepancy => ApiError::new(ErrorCode::ProviderDiscrepancy, message),
        OrderError::DisputeOpen => ApiError::new(ErrorCode::DisputeOpen, message),
        OrderError::InvalidDiscrepancyNote => ApiError::field("note", message),
        OrderError::RefundNotAwaitingProvider | OrderError::NoOpenRefundDiscrepancy => {
            ApiError::new(ErrorCode::RefundDiscrepancyNotOpen, message)
        }
    }
}

fn error_text(differences: &[String]) -> String {
    PaymentError::ProviderDiscrepancy {
        differences: differences.to_vec(),
    }
    .to_string()
}

#[utoipa::path(
    post,
    path = "/v1/orders",
    tag = "orders",
    request_body = crate::dto::PlaceOrderBody,
    responses((status = 201, description = "Placed", body = crate::dto::OrderBody))
)]
pub async fn place_order(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Json<PlaceOrderBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let amount_minor = parse_amount(&body.amount, "amount")?;
    let currency = parse_currency(&body.currency)?;
    let input = PlaceOrderInput {
        // Without an orderId, an Idempotency-Key names the order, so a retried request can
        // never place a second one.
        order_id: match body.order_id.as_deref() {
            Some(id) => Some(parse_order_id(id)?),
            None => crate::idempotency::scope(&request)
                .map(|s| parse_order_id(&s.derived_id("ord")))
                .transpose()?,
        },
        amount: Money::new(amount_minor, currency)
            .map_err(|e| ApiError::new(ErrorCode::InvalidAmount, e.to_string()))?,
        customer_id: parse_customer_id(&body.customer_id)?,
        payee_id: parse_payee_id(&body.payee_id)?,
        order_name: body.order_name,
        service_starts_at: body.service_starts_at,
        provider: body.provider.map(|p| parse_provider(&p)).transpose()?,
    };
    let context = request_context(&request);
    let snapshot = state
        .payments
        .place_order(input, &context)
        .await
        .map_err(payment_error)?;
    if let (false, 1, Some(placed)) = (snapshot.replay, snapshot.version, &snapshot.state.placed) {
        // This request recorded the order's first event, with this caller as its actor.
        state
            .access
            .remember_owner(&placed.order_id, &context.actor);
    }
    let body = OrderBody::from_snapshot(&snapshot)?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/v1/orders/{}", body.order_id)))
        .json(body))
}

#[utoipa::path(
    post,
    path = "/v1/payments/confirm",
    tag = "orders",
    request_body = crate::dto::ConfirmBody,
    responses((status = 200, description = "Captured", body = crate::dto::OrderBody), (status = 202, description = "Sent to the provider, outcome unknown: the reconciler will settle it", body = crate::dto::OrderBody))
)]
pub async fn confirm_payment(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Json<ConfirmBody>,
) -> Result<HttpResponse, ApiError> {
    let amount_minor = parse_amount(&body.amount, "amount")?;
    let order_id = parse_order_id(&body.order_id)?;
    request
        .extensions_mut()
        .insert(crate::request_context::LoggedOrderId(order_id.to_string()));
    let payment_key = parse_payment_key(&body.payment_key)?;
    crate::auth::check_order_access(&state, &request, &order_id).await?;
    let context = request_context(&request);
    let outcome = state
        .payments
        .confirm(&order_id, payment_key, amount_minor, &context)
        .await
        .map_err(payment_error)?;
    Ok(match outcome {
        ConfirmOutcome::Captured(snapshot) => {
            HttpResponse::Ok().json(OrderBody::from_snapshot(&snapshot)?)
        }
        // Accepted, not done: the provider's answer is unknown and the reconciler will record it.
        // With a `clientAction` when the customer must act first (3-D Secure): the provider
        // charges once they did, and a webhook, the reconciler or a confirm again settles it.
        ConfirmOutcome::Pending(snapshot, action) => {
            let mut body = OrderBody::from_snapshot(&snapshot)?;
            body.client_action = action
                .as_ref()
                .map(crate::dto::ClientActionBody::from_action);
            HttpResponse::Accepted().json(body)
        }
    })
}

#[utoipa::path(
    post,
    path = "/v1/orders/{order_id}/refunds",
    tag = "orders",
    params(("order_id" = String, Path, description = "The order id (A-Z a-z 0-9 - _ = ., 6 to 64 characters)")),
    request_body = crate::dto::RefundBody,
    responses((status = 201, description = "Refund requested and settled (or pending)", body = crate::dto::RefundAnswer), (status = 202, description = "Submitted to a provider that approves refunds later (Paddle): `status` is `AWAITING_PROVIDER` until its decision", body = crate::dto::RefundAnswer), (status = 200, description = "A repeated refund id: the original answer", body = crate::dto::RefundAnswer))
)]
pub async fn refund(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    body: web::Json<RefundBody>,
) -> Result<HttpResponse, ApiError> {
    let order_id = parse_order_id(&path)?;
    crate::auth::check_order_access(&state, &request, &order_id).await?;
    let body = body.into_inner();
    let amount_minor = body
        .amount
        .as_ref()
        .map(|a| parse_amount(a, "amount"))
        .transpose()?;
    let refund_id = match body.refund_id.as_deref() {
        Some(id) => Some(parse_refund_id(id)?),
        // An Idempotency-Key names the refund, so a retried request refunds once.
        None => crate::idempotency::scope(&request)
            .map(|s| parse_refund_id(&s.derived_id("rf")))
            .transpose()?,
    };
    let context = request_context(&request);
    let (refund_id, snapshot) = state
        .payments
        .refund(&order_id, refund_id, amount_minor, body.reason, &context)
        .await
        .map_err(payment_error)?;
    let refund = snapshot
        .state
        .refunds
        .get(&refund_id)
        .cloned()
        .ok_or_else(|| ApiError::internal("refund missing after request"))?;
    let replay = snapshot.replay;
    if refund.status == RefundStatus::Failed && !replay {
        let failure = refund.failure.clone();
        let mut error = ApiError::new(
            ErrorCode::RefundRefused,
            "the provider refused the refund; nothing was refunded",
        )
        .with("refundId", refund_id.to_string());
        if let Some(failure) = failure {
            error = error
                .with("providerCode", failure.provider_code)
                .with("providerMessage", failure.provider_message);
        }
        return Err(error);
    }
    let answer = RefundAnswer {
        refund_id: refund_id.to_string(),
        amount: refund.amount_minor,
        status: payledger_domain::codec::wire_name(&refund.status),
        provider_refund_id: refund.provider_refund_id.clone(),
        order: OrderBody::from_snapshot(&snapshot)?,
        replay,
    };
    Ok(if replay {
        HttpResponse::Ok().json(answer)
    } else if refund.status == RefundStatus::AwaitingProvider {
        // Paddle approves refunds later: accepted, not yet refunded.
        HttpResponse::Accepted().json(answer)
    } else {
        HttpResponse::Created().json(answer)
    })
}

#[utoipa::path(
    get,
    path = "/v1/orders/{order_id}",
    tag = "orders",
    params(("order_id" = String, Path, description = "The order id (A-Z a-z 0-9 - _ = ., 6 to 64 characters)"), crate::dto::ConsistencyQuery),
    responses((status = 200, description = "The order", body = crate::dto::OrderBody))
)]
pub async fn get_order(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    query: web::Query<ConsistencyQuery>,
) -> Result<HttpResponse, ApiError> {
    let order_id = parse_order_id(&path)?;
    crate::auth::check_order_access(&state, &request, &order_id).await?;
    let routed = state.route_read(Some("orders"), query.min_position).await?;
    let (view, routed) =
        state
            .run_routed(routed, |pool| {
                let order_id = order_id.clone();
                async move {
                    Ok(payledger_read_models::orders::get_order(&pool, order_id.as_str()).await?)
                }
            })
            .await?;
    let response = crate::reads::projected_or_current(
        async { Ok(view.map(OrderBody::from_view)) },
        async {
            let snapshot = state
                .payments
                .load_order(&order_id)
                .await
                .map_err(payment_error)?;
            snapshot.as_ref().map(OrderBody::from_snapshot).transpose()
        },
        || ApiError::new(ErrorCode::OrderNotFound, "order does not exist"),
    )
    .await?;
    Ok(crate::routing::mark(response, &routed))
}

#[utoipa::path(
    get,
    path = "/v1/orders",
    tag = "orders",
    params(crate::dto::OrderSearchQuery),
    responses((status = 200, description = "`{\"orders\": [Order]}`, newest first", body = Object))
)]
pub async fn search_orders(
    state: web::Data<AppState>,
    request: HttpRequest,
    query: web::Query<OrderSearchQuery>,
) -> Result<HttpResponse, ApiError> {
    if query.payment_key.is_none() && query.customer_id.is_none() {
        return Err(ApiError::new(
            ErrorCode::InvalidQuery,
            "give paymentKey or customerId to search orders",
        ));
    }
    let limit = PageQuery {
        after: None,
        limit: query.limit,
    }
    .limit()?;
    let routed = state.route_read(Some("orders"), None).await?;
    let (orders, routed) = state
        .run_routed(routed, |pool| {
            let query = &query;
            async move {
                Ok(payledger_read_models::orders::find_orders(
                    &pool,
                    query.payment_key.as_deref(),
                    query.customer_id.as_deref(),
                    limit,
                )
                .await?)
            }
        })
        .await?;
    // Clients find only the orders they placed.
    let mut visible = Vec::with_capacity(orders.len());
    for order in orders {
        if crate::auth::may_see_order(&state, &request, &order.order_id).await? {
            visible.push(order);
        }
    }
    let orders: Vec<OrderBody> = visible.into_iter().map(OrderBody::from_view).collect();
    Ok(crate::routing::mark(
        HttpResponse::Ok().json(serde_json::json!({ "orders": orders })),
        &routed,
    ))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TimelineQuery {
    pub after: Option<i64>,
    pub limit: Option<i64>,
    pub min_position: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/v1/orders/{order_id}/timeline",
    tag = "orders",
    params(("order_id" = String, Path, description = "The order id (A-Z a-z 0-9 - _ = ., 6 to 64 characters)"), crate::orders::TimelineQuery),
    responses((status = 200, description = "Every event of the order, provider webhooks included", body = crate::dto::TimelineBody))
)]
pub async fn timeline(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    query: web::Query<TimelineQuery>,
) -> Result<HttpResponse, ApiError> {
    let order_id = parse_order_id(&path)?;
    crate::auth::check_order_access(&state, &request, &order_id).await?;
    let page = PageQuery {
        after: query.after,
        limit: query.limit,
    };
    let (after, limit) = (page.after()?, page.limit()?);
    let routed = state.route_read(Some("orders"), query.min_position).await?;
    let (entries, routed) = state
        .run_routed(routed, |pool| {
            let order_id = order_id.clone();
            async move {
                Ok(
                    payledger_read_models::orders::timeline(&pool, order_id.as_str(), after, limit)
                        .await?,
                )
            }
        })
        .await?;
    if entries.is_empty() && after == 0 {
        let known = state
            .payments
            .load_order(&order_id)
            .await
            .map_err(payment_error)?;
        if known.is_none() {
            return Err(ApiError::new(
                ErrorCode::OrderNotFound,
                "order does not exist",
            ));
        }
    }
    let next_after = (entries.len() as i64 == limit)
        .then(|| entries.last().map(|e| e.global_position))
        .flatten();
    let body = TimelineBody {
        order_id: order_id.to_string(),
        entries: entries.into_iter().map(TimelineEntryBody::from).collect(),
        next_after,
    };
    Ok(crate::routing::mark(HttpResponse::Ok().json(body), &routed))
}

impl AppState {
    /// Waits until projection `name` has reached `min_position`, at most a few seconds.
    pub async fn wait_for_projection(
        &self,
        name: &str,
        min_position: Option<i64>,
    ) -> Result<(), ApiError> {
        let Some(min_position) = min_position else {
            return Ok(());
        };
        if min_position < 0 {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                "minPosition must be >= 0",
            ));
        }
        let mut local = self.projection_positions.get(name).cloned();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(MAX_CONSISTENCY_WAIT_MS);
        loop {
            if local.as_ref().is_some_and(|p| *p.borrow() >= min_position) {
                return Ok(());
            }
            // The runner may live in another process: its checkpoint is the truth.
            // Bounded per call: a command's handler (the unsettled check) waits here too.
            let checkpoint: Option<i64> = payledger_store::call_bounds::bounded(
                "reading a projection's checkpoint",
                self.database_call_timeout_ms,
                sqlx::query_scalar("SELECT position FROM projection_checkpoints WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&self.read_pool),
            )
            .await?;
            if checkpoint.unwrap_or(0) >= min_position {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ApiError::new(
                    ErrorCode::Unavailable,
                    "the read model has not reached minPosition yet",
                )
                .retry_after(1));
            }
            let pause = tokio::time::sleep(Duration::from_millis(25));
            match local.as_mut() {
                Some(positions) => {
                    tokio::select! {
                        _ = positions.changed() => {}
                        _ = pause => {}
                    }
                }
                None => pause.await,
            }
        }
    }
}

/// A provider name as a client sends it: a short lowercase word (`toss`, `stripe`).
fn parse_provider(value: &str) -> Result<String, ApiError> {
    let plain = (1..=32).contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !plain {
        return Err(ApiError::field(
            "provider",
            "provider must be a provider name such as `toss` or `stripe`",
        ));
    }
    Ok(value.to_string())
}
