//! The HTTP surface of payledger (actix-web). The only crate that knows HTTP and JSON bodies.
//!
//! Handlers parse requests into domain types (`dto`), call the application layer, and map every
//! failure to one row of the error table (`errors`). Bad input is a 4xx before anything is
//! stored; a 500 means a bug.

pub mod admin;
pub mod auth;
pub mod booking_confirmations;
pub mod bookings;
pub mod claims;
pub mod constraints;
pub mod deadline;
pub mod dto;
pub mod errors;
pub mod idempotency;
pub mod log;
pub mod metrics;
pub mod openapi;
pub mod orders;
pub mod payment_status;
pub mod privacy;
pub mod reads;
pub mod reconciliation;
pub mod refund_discrepancies;
pub mod request_context;
pub mod routing;
pub mod screen;
pub mod settlements;
pub mod state;
pub mod subscriptions;
pub mod test_clock;
pub mod webhooks;

// Modules take these from their own modules, never from the crate root (the architecture test
// checks it); the re-exports are for the binary, the console and the tests.
pub use request_context::{request_context, LoggedOrderId, LoggedWebhookEventId, RequestId};
pub use state::AppState;

use actix_web::dev::{Service, ServiceResponse};
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{web, HttpMessage, HttpResponse};
use errors::{ApiError, ErrorCode};
use request_context::{request_id_of, REQUEST_ID_HEADER};
use std::time::Instant;

/// Mounts every route on `config`.
pub fn configure(config: &mut web::ServiceConfig) {
    config
        .app_data(
            web::JsonConfig::default()
                .limit(dto::MAX_BODY_BYTES)
                .error_handler(|error, _| json_error(error).into()),
        )
        .app_data(web::QueryConfig::default().error_handler(|error, _| query_error(error).into()))
        .app_data(web::PathConfig::default().error_handler(|error, _| path_error(error).into()))
        .route("/healthz", web::get().to(log::healthz))
        .route("/readyz", web::get().to(log::readyz))
        .route("/metrics", web::get().to(metrics::scrape))
        .route("/openapi.json", web::get().to(openapi::openapi_json))
        .route("/docs", web::get().to(openapi::docs_page))
        .service(
            web::scope("/v1")
                .route("/orders", web::post().to(orders::place_order))
                .route("/orders", web::get().to(orders::search_orders))
                .route("/orders/{order_id}", web::get().to(orders::get_order))
                .route(
                    "/orders/{order_id}/timeline",
                    web::get().to(orders::timeline),
                )
                .route("/orders/{order_id}/refunds", web::post().to(orders::refund))
                .route("/payments/confirm", web::post().to(orders::confirm_payment))
                .route(
                    "/billing-keys",
                    web::post().to(subscriptions::register_billing_key),
                )
                .route(
                    "/billing-keys/{billing_key_id}",
                    web::delete().to(subscriptions::revoke_billing_key),
                )
                .route(
                    "/subscriptions",
                    web::post().to(subscriptions::start_subscription),
                )
                .route(
                    "/subscriptions",
                    web::get().to(subscriptions::list_subscriptions),
                )
                .route(
                    "/subscriptions/{subscription_id}",
                    web::get().to(subscriptions::get_subscription),
                )
                .route(
                    "/subscriptions/{subscription_id}/charge",
                    web::post().to(subscriptions::charge),
                )
                .route(
                    "/subscriptions/{subscription_id}/payment-method",
                    web::post().to(subscriptions::change_payment_method),
                )
                .route(
                    "/subscriptions/{subscription_id}/cancel",
                    web::post().to(subscriptions::cancel),
                )
                .route(
                    "/subscriptions/{subscription_id}/resume",
                    web::post().to(subscriptions::resume),
                )
                .route(
                    "/wallets/{customer_id}",
                    web::get().to(subscriptions::get_wallet),
                )
                .route(
                    "/wallets/{customer_id}/credits",
                    web::post().to(subscriptions::purchase_credits),
                )
                .route(
                    "/wallets/{customer_id}/spend",
                    web::post().to(subscriptions::spend_credits),
                )
                .route("/streams/{stream_id}", web::get().to(log::read_stream))
                .route("/events", web::get().to(log::read_events))
                .route("/audit/checkpoints", web::get().to(log::read_checkpoints))
                .route("/audit/proofs/{position}", web::get().to(log::read_proof))
                .route(
                    "/orders/{order_id}/cancel",
                    web::post().to(bookings::cancel),
                )
                .route(
                    "/orders/{order_id}/fulfil",
                    web::post().to(bookings::fulfil),
                )
                .route("/claims", web::post().to(claims::file_claim))
                .route("/claims", web::get().to(claims::list_claims))
                .route("/claims/stats", web::get().to(claims::claim_stats))
                .route("/claims/{claim_id}", web::get().to(claims::get_claim))
                .route(
                    "/claims/{claim_id}/statements",
                    web::post().to(claims::submit_statement),
                )
                .route("/claims/{claim_id}/assign", web::post().to(claims::assign))
                .route(
                    "/claims/{claim_id}/resolve",
                    web::post().to(claims::resolve),
                )
                .route("/claims/{claim_id}/appeal", web::post().to(claims::appeal))
                .route("/settlements", web::get().to(settlements::list_statements))
                .route(
                    "/settlements/{statement_id}/confirm",
                    web::post().to(settlements::confirm),
                )
                .route(
                    "/settlements/{statement_id}/payout",
                    web::post().to(settlements::payout),
                )
                .route(
                    "/journal/trial-balance",
                    web::get().to(settlements::trial_balance),
                )
                .route("/webhooks/{provider}", web::post().to(webhooks::receive))
                .route(
                    "/admin/webhooks/dead-letters",
                    web::get().to(webhooks::inbound_dead_letters),
                )
                .route(
                    "/admin/webhooks/dead-letters/{id}/replay",
                    web::post().to(webhooks::replay_inbound),
                )
                .route(
                    "/admin/notifications/dead-letters",
                    web::get().to(webhooks::outbound_dead_letters),
                )
                .route(
                    "/admin/notifications/dead-letters/{id}/replay",
                    web::post().to(webhooks::replay_outbound),
                )
                .route(
                    "/orders/{order_id}/payment-status",
                    web::get().to(payment_status::payment_status),
                )
                .route("/admin/switches", web::get().to(admin::get_switches))
                .route(
                    "/admin/switches/payments/suspend",
                    web::post().to(admin::suspend_payments),
                )
                .route(
                    "/admin/switches/payments/resume",
                    web::post().to(admin::resume_payments),
                )
                .route(
                    "/admin/switches/payees/{payee_id}/suspend",
                    web::post().to(admin::suspend_payee),
                )
                .route(
                    "/admin/switches/payees/{payee_id}/resume",
                    web::post().to(admin::resume_payee),
                )
                .route(
                    "/admin/orders/{order_id}/external-payments",
                    web::post().to(admin::record_external_payment),
                )
                .route(
                    "/admin/orders/{order_id}/cancel-enrollment",
                    web::post().to(admin::cancel_enrollment),
                )
                .route("/admin/test-clock", web::get().to(test_clock::get_clock))
                .route(
                    "/admin/test-clock/advance",
                    web::post().to(test_clock::advance),
                )
                .route("/admin/test-clock/set", web::post().to(test_clock::set))
                .route(
                    "/admin/privacy/customers/{customer_id}/erase",
                    web::post().to(privacy::erase_customer),
                )
                .route(
                    "/admin/privacy/payees/{payee_id}/erase",
                    web::post().to(privacy::erase_payee),
                )
                .route(
                    "/admin/reconciliation/imports",
                    web::post().to(reconciliation::import),
                )
                .route(
                    "/admin/reconciliation/unsettled-checks",
                    web::post().to(reconciliation::unsettled_check),
                )
                .route(
                    "/reconciliation/exceptions",
                    web::get().to(reconciliation::exceptions),
                )
                .route(
                    "/reconciliation/exceptions/{stream_id}/{kind}/resolve",
                    web::post().to(reconciliation::resolve),
                )
                .route("/reconciliation", web::get().to(reconciliation::report))
                .route(
                    "/orders/{order_id}/booking",
                    web::get().to(booking_confirmations::get_booking),
                )
                .route(
                    "/orders/{order_id}/confirm-booking",
                    web::post().to(booking_confirmations::confirm_booking),
                )
                .route(
                    "/orders/{order_id}/session-notes",
                    web::post().to(booking_confirmations::record_session_notes),
                )
                .route(
                    "/orders/{order_id}/reschedule",
                    web::post().to(booking_confirmations::reschedule),
                )
                .route(
                    "/admin/bookings/unconfirmed",
                    web::get().to(booking_confirmations::unconfirmed_queue),
                )
                .route(
                    "/admin/bookings/{order_id}/manual-confirm",
                    web::post().to(booking_confirmations::manual_confirm),
                )
                .route(
                    "/admin/bookings/{order_id}/force-cancel",
                    web::post().to(booking_confirmations::force_cancel),
                )
                .route(
                    "/customers/{customer_id}/membership",
                    web::get().to(subscriptions::get_membership),
                )
                .route(
                    "/orders/{order_id}/refunds/{refund_id}/discrepancy/resolve",
                    web::post().to(refund_discrepancies::resolve),
                ),
        )
        .default_service(web::to(|| async {
            Err::<HttpResponse, ApiError>(ApiError::new(ErrorCode::NotFound, "no such route"))
        }));
}

fn json_error(error: JsonPayloadError) -> ApiError {
    match error {
        JsonPayloadError::Overflow { limit }
        | JsonPayloadError::OverflowKnownLength { limit, .. } => ApiError::new(
            ErrorCode::BodyTooLarge,
            format!("the body is larger than {limit} bytes"),
        ),
        JsonPayloadError::ContentType => ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "send the body as application/json",
        ),
        JsonPayloadError::Deserialize(e) => {
            ApiError::new(ErrorCode::InvalidJson, describe_json_error(&e))
        }
        other => ApiError::new(ErrorCode::InvalidJson, other.to_string()),
    }
}

/// serde's message names the problem (unknown field, missing field, wrong type) and where.
fn describe_json_error(error: &serde_json::Error) -> String {
    let text = error.to_string();
    text.chars().take(300).collect()
}

fn query_error(error: QueryPayloadError) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidQuery,
        error.to_string().chars().take(300).collect::<String>(),
    )
}

fn path_error(error: PathError) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidField,
        error.to_string().chars().take(300).collect::<String>(),
    )
}

/// Gives every request an id (echoed as `x-request-id`) and logs one structured line per request.
pub fn request_logging<S, B>(
    request: actix_web::dev::ServiceRequest,
    service: &S,
) -> impl std::future::Future<Output = Result<ServiceResponse<B>, actix_web::Error>>
where
    S: Service<
        actix_web::dev::ServiceRequest,
        Response = ServiceResponse<B>,
        Error = actix_web::Error,
    >,
{
    let started = Instant::now();
    let request_id = request_id_of(&request);
    request
        .extensions_mut()
        .insert(RequestId(request_id.clone()));
    let method = request.method().to_string();
    let path = request.path().to_string();
    let future = service.call(request);
    async move {
        let mut response = match future.await {
            Ok(response) => response,
            Err(error) => {
                // An error no middleware turned into a response (a read past its deadline,
                // `deadline`): actix renders it; the line is logged here, without the request's
                // extensions, which went down with it.
                let status = error.as_response_error().status_code().as_u16();
                let error_code = error.as_error::<ApiError>().map(|e| e.code.as_str());
                let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
                tracing::error!(
                    request_id, method, path, status, error_code, latency_ms, "request"
                );
                return Err(error);
            }
        };
        let status = response.status().as_u16();
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response
                .headers_mut()
                .insert(HeaderName::from_static(REQUEST_ID_HEADER), value);
        }
        let error_code = response
            .response()
            .error()
            .and_then(|e| e.as_error::<ApiError>())
            .map(|e| e.code.as_str());
        // Ids only (validated by their parsers before they are used); never a header or a body.
        let http_request = response.request();
        // A request the screen refused may hold a card number in its path: log the pattern.
        let path = if http_request
            .extensions()
            .get::<screen::Withheld>()
            .is_some()
        {
            http_request
                .match_pattern()
                .unwrap_or_else(|| "(withheld)".to_string())
        } else {
            path
        };
        let actor = auth::principal(http_request).map(|p| p.actor());
        let order_id = http_request
            .extensions()
            .get::<LoggedOrderId>()
            .map(|o| o.0.clone())
            .or_else(|| {
                http_request
                    .match_info()
                    .get("order_id")
                    .filter(|id| payledger_domain::ids::OrderId::parse(*id).is_ok())
                    .map(str::to_string)
            });
        let event_id = http_request
            .extensions()
            .get::<LoggedWebhookEventId>()
            .map(|e| e.0.clone());
        if status >= 500 {
            tracing::error!(
                request_id, method, path, status, error_code, latency_ms, actor, order_id,
                event_id, "request"
            );
        } else {
            tracing::info!(
                request_id, method, path, status, error_code, latency_ms, actor, order_id,
                event_id, "request"
            );
        }
        Ok(response)
    }
}
