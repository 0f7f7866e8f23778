//! The deadline of a read: every `GET` and `HEAD` request (the API's reads, raw-log reads,
//! health, metrics, the console's pages) is answered within `database_call_timeout_ms`
//! (`PAYLEDGER_DATABASE_CALL_TIMEOUT_MS`, default 10 s), or it is a 503 `E_UNAVAILABLE` with
//! `Retry-After`.
//!
//! Why per request and here: a read's database calls (read models on the primary or a replica,
//! the raw log, authentication's lookups) run on pooled connections, and sqlx gives a query no
//! deadline of its own; on a connection cut off by a network partition a call waits until the
//! kernel's retransmissions give up, minutes. One timer per request bounds all of them at no
//! cost per query. A read is safe to abandon at any await: it changes nothing (except the
//! payment-status read with `checkProvider=true`, which records the provider's answer to its
//! lookup: abandoned, that answer may or may not be recorded, and the reconciler asks again;
//! docs/operations.md says what a slow provider does to it). The connection
//! it held is released mid-answer, and the pool closes it rather than hand it to the next
//! request (`payledger_store::call_bounds::drain_or_close_on_release`).
//!
//! Commands are not abandoned midway (a provider may be charging); their own database steps
//! are bounded per call instead (`payledger_store::call_bounds::bounded`, the same setting):
//! the stream load (and with it the kill-switch reads), the idempotency key's claim and
//! answer, the API-key lookup, the privacy vault's key reads, the group-commit writer's calls,
//! and the other calls of `POST` handlers ([`call_timeout_ms`]: the webhook inbox, dead-letter
//! replays, the unsettled check's reads, a billing key's owner lookup).

use crate::errors::ApiError;
use crate::state::AppState;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::web;
use std::time::Duration;

/// The middleware: mount it with `actix_web::middleware::from_fn`, inside `request_logging`
/// (which then logs the 503) and outside `authenticate`.
pub async fn read_deadline(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let is_read = matches!(*request.method(), Method::GET | Method::HEAD);
    let timeout_ms = request
        .app_data::<web::Data<AppState>>()
        .map(|state| state.database_call_timeout_ms);
    let (true, Some(timeout_ms)) = (is_read, timeout_ms) else {
        return Ok(next.call(request).await?.map_into_boxed_body());
    };
    let duration = Duration::from_millis(timeout_ms.max(1));
    match tokio::time::timeout(duration, next.call(request)).await {
        Ok(response) => Ok(response?.map_into_boxed_body()),
        Err(_) => {
            payledger_metrics::metrics().read_deadline_exceeded();
            // An error, not a response: a response needs the request, which went down with the
            // abandoned future (and holding a clone of it would break actix's routing, which
            // runs inside). actix renders the error (`ApiError`'s 503 body and `Retry-After`);
            // `request_logging` logs it.
            Err(ApiError::unavailable(format!(
                "the read took longer than {timeout_ms} ms (PAYLEDGER_DATABASE_CALL_TIMEOUT_MS)"
            ))
            .into())
        }
    }
}

/// The bound of one database call for a handler that has only its request: the server's
/// `PAYLEDGER_DATABASE_CALL_TIMEOUT_MS`, or the default where no `AppState` is registered.
pub fn call_timeout_ms(request: &actix_web::HttpRequest) -> u64 {
    request.app_data::<web::Data<AppState>>().map_or(
        payledger_store::call_bounds::DEFAULT_DATABASE_CALL_TIMEOUT_MS,
        |state| state.database_call_timeout_ms,
    )
}
