//! `GET /metrics` (Prometheus, OpenMetrics text) and the middleware that times every request.
//!
//! The registry itself lives in `payledger-metrics` so the workers (webhooks, projections) can
//! count too; it is re-exported here: `payledger_http::metrics::metrics().idempotency_replay()`.
//! Values that live elsewhere are read at scrape time: the gateway's counters and circuit state,
//! projection positions and lag, the head of the log and the dead-letter queues.

use crate::errors::{ApiError, ErrorCode};
use crate::state::AppState;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::{web, HttpResponse};
pub use payledger_metrics::{metrics, Metrics, CONTENT_TYPE};
use payledger_metrics::{CircuitLabels, ProjectionLabels, ProviderTotals};
use std::time::Instant;

/// Times a request and counts it as a command when it changes state.
pub fn track<S, B>(
    request: ServiceRequest,
    service: &S,
) -> impl std::future::Future<Output = Result<ServiceResponse<B>, actix_web::Error>>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
{
    let started = Instant::now();
    let method = request.method().clone();
    // Taken before the call: a request that ends in an error (a read past its deadline,
    // `deadline`) is gone with it, and its answer must be timed and counted all the same.
    let pattern = request.match_pattern();
    let future = service.call(request);
    async move {
        let response = match future.await {
            Ok(response) => response,
            Err(error) => {
                let route = pattern.unwrap_or_else(|| "unmatched".to_string());
                let status = error.as_response_error().status_code().as_u16();
                let m = metrics();
                m.observe_http(
                    method.as_str(),
                    &route,
                    status,
                    started.elapsed().as_secs_f64(),
                );
                if error.as_error::<ApiError>().map(|e| e.code) == Some(ErrorCode::Unavailable) {
                    m.database_errors.inc();
                }
                return Err(error);
            }
        };
        let seconds = started.elapsed().as_secs_f64();
        // The route *pattern*: bounded, and free of ids.
        let route = response
            .request()
            .match_pattern()
            .unwrap_or_else(|| "unmatched".to_string());
        let status = response.status();
        let m = metrics();
        m.observe_http(method.as_str(), &route, status.as_u16(), seconds);
        let code = response
            .response()
            .error()
            .and_then(|e| e.as_error::<ApiError>())
            .map(|e| e.code);
        if code == Some(ErrorCode::Unavailable) {
            m.database_errors.inc();
        }
        let is_command = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS)
            && route != "unmatched"
            && !route.starts_with("/v1/webhooks/");
        if is_command {
            let outcome = match code {
                Some(code) => code.as_str().to_string(),
                None if status.is_success() => "ok".to_string(),
                None => format!("HTTP_{}", status.as_u16()),
            };
            m.command(format!("{method} {route}"), &outcome);
        }
        Ok(response)
    }
}

/// The Prometheus scrape.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "service",
    responses((status = 200, description = "Prometheus metrics (OpenMetrics text)", content_type = "application/openmetrics-text", body = String))
)]
pub async fn scrape(state: web::Data<AppState>) -> HttpResponse {
    refresh(&state).await;
    HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .body(metrics().encode())
}

/// Reads what other parts own into gauges and counters. A failed read leaves the previous values
/// (and is logged): a scrape never fails because one source is down.
async fn refresh(state: &AppState) {
    let m = metrics();
    let projections = payledger_projector::status(&state.read_pool).await;
    let dead_letters = payledger_webhook_relay::outbox::dead_letter_counts(&state.read_pool).await;
    let open_exceptions =
        payledger_read_models::reconciliation::open_exception_counts(&state.read_pool).await;
    // Everything below is synchronous: the guard is never held across an await.
    let _guard = m.scrape_guard();
    for replica in state.replicas.replicas() {
        let labels = payledger_metrics::ReplicaLabels {
            replica: replica.name.clone(),
        };
        let health = replica.health();
        if let Some(lag) = health.lag_now() {
            m.replica_lag_seconds
                .get_or_create(&labels)
                .set(lag.as_secs_f64());
        }
        m.replica_usable
            .get_or_create(&labels)
            .set(i64::from(state.replicas.is_fresh(replica)));
    }
    for gateway in state.payments.providers().connectors() {
        let provider = gateway.provider_name().to_string();
        let current = match gateway.circuit_state() {
            payledger_gateway::CircuitState::Closed => "closed",
            payledger_gateway::CircuitState::Open => "open",
            payledger_gateway::CircuitState::HalfOpen => "half_open",
        };
        for state_name in ["closed", "open", "half_open"] {
            m.provider_circuit_state
                .get_or_create(&CircuitLabels {
                    provider: provider.clone(),
                    state: state_name,
                })
                .set(i64::from(state_name == current));
        }
        if let Some(stats) = gateway.stats() {
            m.sync_provider_totals(
                &provider,
                &ProviderTotals {
                    calls: stats.calls,
                    attempts: stats.attempts,
                    failures: stats.failures,
                    retries: stats.retries,
                    short_circuited: stats.short_circuited,
                    refusals: stats.refusals,
                    outcome_unknown: stats.outcome_unknown,
                },
            );
        }
    }
    match projections {
        Ok(statuses) => {
            for status in statuses {
                let labels = ProjectionLabels {
                    projection: status.name,
                };
                m.projection_position
                    .get_or_create(&labels)
                    .set(status.position);
                m.projection_lag_events
                    .get_or_create(&labels)
                    .set(status.lag_events);
                m.projection_lag_seconds
                    .get_or_create(&labels)
                    .set(status.lag_ms as f64 / 1000.0);
                m.event_store_head_position.set(status.head_position);
            }
        }
        Err(error) => tracing::warn!(%error, "metrics: failed to read projection status"),
    }
    match dead_letters {
        Ok((inbound, outbound)) => {
            for (direction, count) in [("inbound", inbound), ("outbound", outbound)] {
                m.dead_letters
                    .get_or_create(&payledger_metrics::DirectionLabels { direction })
                    .set(count);
            }
        }
        Err(error) => tracing::warn!(%error, "metrics: failed to count dead letters"),
    }
    match open_exceptions {
        Ok(counts) => {
            // A kind resolved to zero must read 0, not keep its last count.
            m.reconciliation_open_exceptions.clear();
            for (provider, kind, count) in counts {
                m.reconciliation_open_exceptions
                    .get_or_create(&payledger_metrics::ReconciliationLabels { provider, kind })
                    .set(count);
            }
        }
        Err(error) => tracing::warn!(%error, "metrics: failed to count reconciliation exceptions"),
    }
}
