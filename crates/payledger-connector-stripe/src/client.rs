//! Stripe over HTTP: form-encoded requests, a timeout on every attempt, bounded retries with
//! full-jitter backoff and the same `Idempotency-Key`, and a circuit breaker that measures
//! Stripe's health only.
//!
//! What counts against the circuit (provider health): no connection, no answer in time, a 5xx
//! or 424 (a dependency outside Stripe failed), and 429 rate limiting. What does not: any answer in which Stripe judged the request — a 402
//! card error (`processing_error` included: one card's network failed, not Stripe), a 400/404,
//! a 409 `idempotency_key_in_use` (an earlier attempt is still running). One customer's failing
//! card must never close the door for everyone else.
//!
//! Retried (with the same key, so Stripe acts at most once): connection errors, timeouts, 409,
//! 429 and 5xx — unless Stripe answers `Stripe-Should-Retry: false`. Never retried: anything
//! Stripe stored under the key (a 402 replays as the same 402 whatever we do).

use crate::wire::{self, ErrorWire};
use crate::{codes, Counters};
use payledger_domain::provider_failure::{FailureClass, ProviderFailure};
use payledger_gateway::circuit::CircuitBreaker;
use payledger_gateway::GatewayError;
use rand::Rng as _;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode, Url};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Largest response body read from Stripe; a PaymentIntent with its charge is a few kilobytes.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// Longest transport-error description kept in an error.
const MAX_REASON_CHARS: usize = 300;

/// Whether a call may move money: decides what an unanswered request means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallKind {
    MovesMoney,
    Lookup,
}

/// One Stripe call. `operation` names it in logs (never the URL or the body).
pub(crate) struct Call<'a> {
    pub operation: &'static str,
    pub method: Method,
    pub url: Url,
    /// Form parameters, bracket notation already applied (`metadata[order_id]`).
    pub form: Vec<(String, String)>,
    pub idempotency_key: Option<&'a str>,
    pub kind: CallKind,
}

pub(crate) struct Engine {
    pub provider_name: String,
    pub authorization: HeaderValue,
    pub http: reqwest::Client,
    pub timeout: Duration,
    pub lookup_timeout: Duration,
    pub max_attempts: u32,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    pub breaker: CircuitBreaker,
    pub counters: Counters,
}

enum Attempt {
    Answered(Vec<u8>),
    Refused(ProviderFailure),
    Retryable(Retryable),
}

enum Retryable {
    /// Certainly not acted on (no connection, or 429: Stripe did not run the request).
    NotSent(String),
    /// Sent, and no usable answer came back: Stripe may have acted.
    Unknown(String),
    /// A 5xx from Stripe on a lookup.
    Provider(ProviderFailure),
    /// 409: an earlier attempt with this key is still running.
    InProgress(ProviderFailure),
}

impl Retryable {
    fn describe(&self) -> String {
        match self {
            Retryable::NotSent(reason) | Retryable::Unknown(reason) => reason.clone(),
            Retryable::Provider(failure) | Retryable::InProgress(failure) => {
                format!("{}: {}", failure.provider_code, failure.provider_message)
            }
        }
    }

    fn counts_against_health(&self) -> bool {
        !matches!(self, Retryable::InProgress(_))
    }
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Engine {
    pub(crate) async fn execute(&self, call: Call<'_>) -> Result<Vec<u8>, GatewayError> {
        bump(&self.counters.calls);
        let result = self.attempts(&call).await;
        match &result {
            Err(GatewayError::Refused(_)) => bump(&self.counters.refusals),
            Err(GatewayError::OutcomeUnknown { reason }) => {
                bump(&self.counters.outcome_unknown);
                tracing::warn!(
                    provider = %self.provider_name,
                    operation = call.operation,
                    %reason,
                    "provider outcome unknown; a reconciler must ask the provider"
                );
            }
            _ => {}
        }
        result
    }

    async fn attempts(&self, call: &Call<'_>) -> Result<Vec<u8>, GatewayError> {
        let mut unknown_reason: Option<String> = None;
        let mut last_failure: Option<Retryable> = None;
        for attempt in 1..=self.max_attempts {
            if attempt > 1 {
                bump(&self.counters.retries);
                tokio::time::sleep(self.backoff(attempt - 1)).await;
            }
            let permit = match self.breaker.try_acquire() {
                Ok(permit) => permit,
                Err(short) => {
                    bump(&self.counters.short_circuited);
                    return Err(match unknown_reason {
                        Some(reason) => GatewayError::OutcomeUnknown { reason },
                        None => GatewayError::NotSent {
                            reason: format!("circuit open for provider {}", self.provider_name),
                            retry_after_ms: Some(short.retry_after_ms),
                        },
                    });
                }
            };
            bump(&self.counters.attempts);
            let (outcome, should_retry) = self.attempt(call).await;
            match outcome {
                Attempt::Answered(body) => {
                    permit.succeeded();
                    return Ok(body);
                }
                Attempt::Refused(failure) => {
                    permit.succeeded();
                    return Err(GatewayError::Refused(failure));
                }
                Attempt::Retryable(failure) => {
                    if failure.counts_against_health() {
                        bump(&self.counters.failures);
                        permit.failed();
                    } else {
                        permit.succeeded();
                    }
                    let reason = failure.describe();
                    if matches!(failure, Retryable::Unknown(_) | Retryable::InProgress(_)) {
                        unknown_reason = Some(reason.clone());
                    }
                    tracing::warn!(
                        provider = %self.provider_name,
                        operation = call.operation,
                        attempt,
                        max_attempts = self.max_attempts,
                        %reason,
                        "provider call failed"
                    );
                    last_failure = Some(failure);
                    if !should_retry {
                        break;
                    }
                }
            }
        }
        if let Some(reason) = unknown_reason {
            return Err(GatewayError::OutcomeUnknown { reason });
        }
        Err(match last_failure {
            Some(Retryable::Provider(failure)) => GatewayError::Refused(failure),
            Some(failure) => GatewayError::NotSent {
                reason: failure.describe(),
                retry_after_ms: None,
            },
            None => GatewayError::NotSent {
                reason: "no attempt was made".to_owned(),
                retry_after_ms: None,
            },
        })
    }

    /// Full jitter up to the exponential cap, as every connector backs off.
    fn backoff(&self, retry: u32) -> Duration {
        let cap_ms = payledger_gateway::transport::backoff_cap_ms(
            retry,
            self.backoff_base_ms,
            self.backoff_max_ms,
        );
        Duration::from_millis(rand::rng().random_range(0..=cap_ms))
    }

    /// One HTTP attempt, and whether Stripe allows another (`Stripe-Should-Retry`).
    async fn attempt(&self, call: &Call<'_>) -> (Attempt, bool) {
        let timeout = match call.kind {
            CallKind::MovesMoney => self.timeout,
            CallKind::Lookup => self.lookup_timeout,
        };
        let mut request = self
            .http
            .request(call.method.clone(), call.url.clone())
            .timeout(timeout)
            .header(AUTHORIZATION, self.authorization.clone())
            .header("Stripe-Version", crate::STRIPE_API_VERSION);
        if let Some(key) = call.idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        if call.method == Method::GET {
            request = request.query(&call.form);
        } else {
            let body = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(call.form.iter())
                .finish();
            request = request
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(body);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(err) => return (Attempt::Retryable(transport_failure(err, timeout)), true),
        };
        let status = response.status();
        let should_retry = response
            .headers()
            .get("stripe-should-retry")
            .and_then(|value| value.to_str().ok())
            .map(|value| value != "false");
        let body = match read_capped(response).await {
            Ok(body) => body,
            Err(reason) => return (Attempt::Retryable(Retryable::Unknown(reason)), true),
        };
        if status.is_success() {
            return (Attempt::Answered(body), false);
        }
        let outcome = classify_error_answer(status, &body, call.kind);
        let retry = match &outcome {
            Attempt::Retryable(_) => should_retry.unwrap_or(true),
            _ => false,
        };
        (outcome, retry)
    }
}

/// The failure a Stripe error object describes.
pub(crate) fn failure_of(error: &wire::ErrorBody) -> ProviderFailure {
    let class = codes::stripe_code_class(error.code.as_deref(), error.decline_code.as_deref());
    let provider_code = error
        .decline_code
        .clone()
        .or_else(|| error.code.clone())
        .or_else(|| error.kind.clone())
        .unwrap_or_else(|| "unknown".to_owned());
    ProviderFailure {
        class,
        provider_code,
        provider_message: bounded(error.message.clone().unwrap_or_default()),
    }
}

fn classify_error_answer(status: StatusCode, body: &[u8], kind: CallKind) -> Attempt {
    let parsed = serde_json::from_slice::<ErrorWire>(body).ok();
    let failure = match &parsed {
        Some(error) => failure_of(&error.error),
        None => ProviderFailure {
            class: if status.is_server_error() {
                FailureClass::ProviderError
            } else {
                FailureClass::Unclassified
            },
            provider_code: format!("HTTP_{}", status.as_u16()),
            provider_message: format!("Stripe answered {status} without an error object"),
        },
    };
    if status == StatusCode::CONFLICT {
        return Attempt::Retryable(Retryable::InProgress(failure));
    }
    if status == StatusCode::TOO_MANY_REQUESTS {
        // Stripe did not run a rate-limited request.
        return Attempt::Retryable(Retryable::NotSent(format!(
            "rate limited by Stripe: {}",
            failure.provider_message
        )));
    }
    if status.is_server_error() || status == StatusCode::FAILED_DEPENDENCY {
        // Stripe: a 500 is indeterminate; the request may have been acted on. A 424 is a
        // failure of a dependency outside Stripe (a card network) while Stripe worked on it.
        let failure = ProviderFailure {
            class: FailureClass::ProviderError,
            ..failure
        };
        return match kind {
            CallKind::MovesMoney => Attempt::Retryable(Retryable::Unknown(format!(
                "Stripe answered {status}: {}",
                failure.provider_message
            ))),
            CallKind::Lookup => Attempt::Retryable(Retryable::Provider(failure)),
        };
    }
    Attempt::Refused(failure)
}

fn transport_failure(err: reqwest::Error, timeout: Duration) -> Retryable {
    let err = err.without_url();
    if err.is_connect() {
        return Retryable::NotSent(bounded(format!("could not connect to Stripe: {err}")));
    }
    if err.is_timeout() {
        return Retryable::Unknown(format!(
            "no answer from Stripe within {} ms",
            timeout.as_millis()
        ));
    }
    Retryable::Unknown(bounded(format!(
        "the request failed after it may have been sent: {err}"
    )))
}

async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(format!(
                        "Stripe's answer is larger than {MAX_RESPONSE_BYTES} bytes"
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(err) => {
                return Err(bounded(format!(
                    "the answer broke off: {}",
                    err.without_url()
                )))
            }
        }
    }
}

fn bounded(reason: String) -> String {
    if reason.chars().count() <= MAX_REASON_CHARS {
        reason
    } else {
        reason.chars().take(MAX_REASON_CHARS).collect()
    }
}
