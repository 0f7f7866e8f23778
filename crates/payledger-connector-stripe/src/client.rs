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

use crate::codes;
use crate::wire::{self, ErrorWire};
use payledger_domain::provider_failure::{FailureClass, ProviderFailure};
use payledger_gateway::provider_client::ProviderTransport;
use payledger_gateway::retries::{Attempt, Retryable};
use payledger_gateway::GatewayError;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode, Url};
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

/// Stripe's transport, with the reading of Stripe's answers below.
pub(crate) struct Engine(pub ProviderTransport);

impl std::ops::Deref for Engine {
    type Target = ProviderTransport;

    fn deref(&self) -> &ProviderTransport {
        &self.0
    }
}

impl Engine {
    /// Runs a call: attempts, retries with backoff, the circuit, and the final verdict
    /// (`payledger_gateway::retries`, the loop every connector shares).
    pub(crate) async fn execute(&self, call: Call<'_>) -> Result<Vec<u8>, GatewayError> {
        self.retry_loop()
            .run(call.operation, || self.attempt(&call))
            .await
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
