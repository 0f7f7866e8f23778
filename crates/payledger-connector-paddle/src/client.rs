//! Paddle over HTTP: JSON requests with the API key as a bearer token, a timeout on every
//! attempt, bounded retries with full-jitter backoff (`payledger_gateway::transport`), and a
//! circuit breaker that measures Paddle's health only.
//!
//! Paddle Billing's API takes no idempotency key, so what may be retried depends on the call:
//! - lookups and calls whose repetition is harmless ([`CallKind::Lookup`],
//!   [`CallKind::Repeatable`]: cancelling a subscription twice asks for the same state) retry
//!   on connection errors, timeouts, 429 and 5xx;
//! - a call that creates something ([`CallKind::Creates`]: an adjustment) retries only when the
//!   request certainly did not reach Paddle (no connection, 429); after a timeout or a 5xx its
//!   outcome is unknown and is looked up, never sent again blindly.
//!
//! What counts against the circuit: no connection, no answer in time, a 5xx, a 429. A 4xx is
//! Paddle judging the request, which says nothing about Paddle's health.

use crate::wire::ErrorEnvelope;
use payledger_domain::provider_failure::{FailureClass, ProviderFailure};
use payledger_gateway::provider_client::ProviderTransport;
use payledger_gateway::retries::bump;
use payledger_gateway::GatewayError;
use rand::Rng as _;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode, Url};
use std::time::Duration;

/// Largest answer read from Paddle; a list of 50 transactions is well below it.
const MAX_RESPONSE_BYTES: usize = 2 * 1024 * 1024;
/// Longest transport-error description kept in an error.
const MAX_REASON_CHARS: usize = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallKind {
    Lookup,
    /// Changes state at Paddle, and asking twice is asking for the same state.
    Repeatable,
    /// Creates something at Paddle: never sent twice unless the first certainly did not arrive.
    Creates,
}

pub(crate) struct Call {
    pub operation: &'static str,
    pub method: Method,
    pub url: Url,
    pub body: Option<serde_json::Value>,
    pub kind: CallKind,
}

/// Paddle's transport, with Paddle's own retry rules below (no idempotency key, so they depend
/// on the call's kind).
pub(crate) struct Engine(pub ProviderTransport);

impl std::ops::Deref for Engine {
    type Target = ProviderTransport;

    fn deref(&self) -> &ProviderTransport {
        &self.0
    }
}

enum Attempt {
    Answered(Vec<u8>),
    Refused(ProviderFailure),
    /// Certainly not acted on (no connection, 429).
    NotSent(String),
    /// Sent, and no usable answer came back (timeout, broken answer, 5xx).
    Unknown(String, ProviderFailure),
}

impl Engine {
    pub(crate) async fn execute(&self, call: Call) -> Result<Vec<u8>, GatewayError> {
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
                    "provider outcome unknown; the object must be looked up at Paddle"
                );
            }
            Err(GatewayError::NotSent { reason, .. }) => {
                tracing::warn!(
                    provider = %self.provider_name,
                    operation = call.operation,
                    %reason,
                    "[PADDLE] API request failed"
                );
            }
            Ok(_) => {}
        }
        result
    }

    async fn attempts(&self, call: &Call) -> Result<Vec<u8>, GatewayError> {
        let mut last: Option<Attempt> = None;
        for attempt in 1..=self.max_attempts {
            if attempt > 1 {
                bump(&self.counters.retries);
                tokio::time::sleep(self.backoff(attempt - 1)).await;
            }
            let permit = match self.breaker.try_acquire() {
                Ok(permit) => permit,
                Err(short) => {
                    bump(&self.counters.short_circuited);
                    return Err(match last {
                        Some(Attempt::Unknown(reason, _)) if call.kind != CallKind::Lookup => {
                            GatewayError::OutcomeUnknown { reason }
                        }
                        _ => GatewayError::NotSent {
                            reason: format!("circuit open for provider {}", self.provider_name),
                            retry_after_ms: Some(short.retry_after_ms),
                        },
                    });
                }
            };
            bump(&self.counters.attempts);
            let outcome = self.attempt(call).await;
            match outcome {
                Attempt::Answered(body) => {
                    permit.succeeded();
                    return Ok(body);
                }
                Attempt::Refused(failure) => {
                    permit.succeeded();
                    return Err(GatewayError::Refused(failure));
                }
                failed => {
                    bump(&self.counters.failures);
                    permit.failed();
                    let (reason, may_retry) = match &failed {
                        Attempt::NotSent(reason) => (reason.clone(), true),
                        Attempt::Unknown(reason, _) => {
                            (reason.clone(), call.kind != CallKind::Creates)
                        }
                        _ => unreachable!("answered above"),
                    };
                    tracing::warn!(
                        provider = %self.provider_name,
                        operation = call.operation,
                        attempt,
                        max_attempts = self.max_attempts,
                        %reason,
                        "provider call failed"
                    );
                    last = Some(failed);
                    if !may_retry {
                        break;
                    }
                }
            }
        }
        Err(match last {
            Some(Attempt::Unknown(_, failure)) if call.kind == CallKind::Lookup => {
                GatewayError::Refused(failure)
            }
            Some(Attempt::Unknown(reason, _)) => GatewayError::OutcomeUnknown { reason },
            Some(Attempt::NotSent(reason)) => GatewayError::NotSent {
                reason,
                retry_after_ms: None,
            },
            _ => GatewayError::NotSent {
                reason: "no attempt was made".to_owned(),
                retry_after_ms: None,
            },
        })
    }

    fn backoff(&self, retry: u32) -> Duration {
        let cap_ms = payledger_gateway::transport::backoff_cap_ms(
            retry,
            self.backoff_base_ms,
            self.backoff_max_ms,
        );
        Duration::from_millis(rand::rng().random_range(0..=cap_ms))
    }

    async fn attempt(&self, call: &Call) -> Attempt {
        let timeout = match call.kind {
            CallKind::Lookup => self.lookup_timeout,
            CallKind::Repeatable | CallKind::Creates => self.timeout,
        };
        let mut request = self
            .http
            .request(call.method.clone(), call.url.clone())
            .timeout(timeout)
            .header(AUTHORIZATION, self.authorization.clone());
        if let Some(body) = &call.body {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(err) => return transport_failure(err, timeout),
        };
        let status = response.status();
        let body = match read_capped(response).await {
            Ok(body) => body,
            Err(reason) => return Attempt::Unknown(reason, provider_error("BROKEN_ANSWER", "")),
        };
        if status.is_success() {
            return Attempt::Answered(body);
        }
        classify_error_answer(status, &body)
    }
}

fn provider_error(code: &str, message: &str) -> ProviderFailure {
    ProviderFailure {
        class: FailureClass::ProviderError,
        provider_code: code.to_owned(),
        provider_message: bounded(message.to_owned()),
    }
}

/// The failure class of a Paddle error code (4xx answers).
pub fn paddle_code_class(status: StatusCode, code: &str) -> FailureClass {
    match code {
        "not_found" | "entity_archived" => FailureClass::NotFound,
        "subscription_update_when_canceled"
        | "subscription_locked_pending_changes"
        | "subscription_locked_renewal"
        | "subscription_locked_processing" => FailureClass::NotCancelable,
        code if code.starts_with("adjustment_") => FailureClass::InvalidRequest,
        // The API key is missing, wrong or lacks a permission: payledger's configuration, not
        // the customer's request; it cannot succeed on retry either.
        "forbidden" | "authentication_missing" | "authentication_malformed" | "invalid_token" => {
            FailureClass::InvalidRequest
        }
        _ if status == StatusCode::NOT_FOUND => FailureClass::NotFound,
        _ if status.is_client_error() => FailureClass::InvalidRequest,
        _ => FailureClass::Unclassified,
    }
}

fn classify_error_answer(status: StatusCode, body: &[u8]) -> Attempt {
    let parsed = serde_json::from_slice::<ErrorEnvelope>(body).ok();
    let code = parsed
        .as_ref()
        .and_then(|e| e.error.code.clone())
        .unwrap_or_else(|| format!("HTTP_{}", status.as_u16()));
    let message = parsed
        .as_ref()
        .and_then(|e| e.error.detail.clone())
        .unwrap_or_else(|| format!("Paddle answered {status} without an error object"));
    if status == StatusCode::TOO_MANY_REQUESTS {
        return Attempt::NotSent(bounded(format!("rate limited by Paddle: {message}")));
    }
    if status.is_server_error() {
        return Attempt::Unknown(
            bounded(format!("Paddle answered {status}: {message}")),
            provider_error(&code, &message),
        );
    }
    Attempt::Refused(ProviderFailure {
        class: paddle_code_class(status, &code),
        provider_code: code,
        provider_message: bounded(message),
    })
}

fn transport_failure(err: reqwest::Error, timeout: Duration) -> Attempt {
    let err = err.without_url();
    if err.is_connect() {
        return Attempt::NotSent(bounded(format!("could not connect to Paddle: {err}")));
    }
    let reason = if err.is_timeout() {
        format!("no answer from Paddle within {} ms", timeout.as_millis())
    } else {
        bounded(format!(
            "the request failed after it may have been sent: {err}"
        ))
    };
    Attempt::Unknown(reason.clone(), provider_error("NO_ANSWER", &reason))
}

async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(format!(
                        "Paddle's answer is larger than {MAX_RESPONSE_BYTES} bytes"
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

pub(crate) fn bounded(reason: String) -> String {
    if reason.chars().count() <= MAX_REASON_CHARS {
        reason
    } else {
        reason.chars().take(MAX_REASON_CHARS).collect()
    }
}
