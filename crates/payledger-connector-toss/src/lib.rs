//! The Toss Payments connector: [`TossGateway`] implements `payledger_gateway::PaymentGateway`
//! and owns everything Toss-specific — its wire types and the reading of its payment object into
//! a ledger fact (`wire.rs`, `TossPaymentStatus::fact_status`), its error codes and their failure
//! classes (`codes.rs`), its HTTP client with timeouts, retries and its own circuit breaker.
//! Nothing outside this crate sees a Toss wire type.
//!
//! [`TossGateway`] speaks Toss's REST API over HTTPS (or plain HTTP
//! to a sandbox on this machine), with a timeout on every call, bounded retries with full-jitter
//! backoff for retryable failures only, and a circuit breaker.
//!
//! Retrying a payment is safe because every attempt of one call carries the same
//! `Idempotency-Key`: the provider acts at most once and answers the rest with its first answer.

mod codes;
pub mod payouts;
pub mod settlements;
mod wire;

pub use codes::{classify_toss_failure, toss_code_class, TOSS_FAILURE_CODES};
pub use payouts::TossPayouts;

use async_trait::async_trait;
use base64::Engine as _;
use payledger_domain::money::Currency;
use payledger_domain::provider_failure::{FailureClass, ProviderFailure};
use payledger_gateway::circuit::{Clock, MonotonicClock};
use payledger_gateway::{
    BillingKeyIssued, BillingKeySecret, CancelRequest, ChargeBillingKeyRequest, CircuitState,
    ConfirmRequest, GatewayError, GatewayStats, IssueBillingKeyRequest, PaymentGateway,
    ProviderPayment,
};
use reqwest::header::AUTHORIZATION;
use reqwest::{Method, StatusCode, Url};
use serde_json::{json, Value};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Toss's production API.
pub const TOSS_API_BASE_URL: &str = "https://api.tosspayments.com";

/// The secret key the sandbox accepts by default (`payledger-sandbox`'s `DEFAULT_SECRET_KEY`).
pub const SANDBOX_SECRET_KEY: &str = "test_sk_sandbox";

use payledger_gateway::provider_client::{ConnectorConfigError, ProviderTransport};
use payledger_gateway::retries::{bump, Attempt, Retryable};
use payledger_gateway::transport::TransportLimits;
/// Upper bounds on configuration, so a typo cannot make one call retry for an hour: the same
/// for every connector (`payledger_gateway::transport`).
pub use payledger_gateway::transport::{MAX_ATTEMPTS_LIMIT, MAX_BACKOFF_MS, MAX_TIMEOUT_MS};

/// Largest response body read from the provider; a Toss payment is a few kilobytes.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Longest transport-error description kept in an error.
const MAX_REASON_CHARS: usize = 300;

/// A Toss secret key. Never printed: `Debug` shows `***`, and there is no `Display`.
#[derive(Clone)]
pub struct TossSecretKey(String);

impl TossSecretKey {
    pub fn new(value: impl Into<String>) -> TossSecretKey {
        TossSecretKey(value.into())
    }

    /// The only way to read it; used once, to build the `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TossSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TossSecretKey(***)")
    }
}

/// How [`TossGateway`] talks to Toss.
#[derive(Debug, Clone)]
pub struct TossConfig {
    /// `https://api.tosspayments.com`, or a sandbox's `http://127.0.0.1:port`. Plain HTTP is
    /// only accepted for loopback hosts: the secret key travels in every request.
    pub base_url: String,
    pub secret_key: TossSecretKey,
    /// Recorded in events as the provider (`toss`, `sandbox`).
    pub provider_name: String,
    /// Timeouts, attempts, backoff and circuit; `timeout_ms` bounds the calls that move money
    /// (confirm, cancel, billing issue and charge).
    pub transport: TransportLimits,
}

impl TossConfig {
    /// Toss's defaults against `base_url`.
    pub fn new(base_url: impl Into<String>, secret_key: TossSecretKey) -> TossConfig {
        TossConfig {
            base_url: base_url.into(),
            secret_key,
            provider_name: PROVIDER_NAME.to_owned(),
            // Toss's guidance for confirm is to wait generously: card networks can be slow.
            transport: TransportLimits::with_timeout_ms(10_000),
        }
    }

    /// The same client against a `payledger-sandbox` at `base_url`, with its default key.
    pub fn sandbox(base_url: impl Into<String>) -> TossConfig {
        TossConfig {
            provider_name: PROVIDER_NAME.to_owned(),
            ..TossConfig::new(base_url, TossSecretKey::new(SANDBOX_SECRET_KEY))
        }
    }
}

/// Why a [`TossConfig`] was refused.
pub type GatewayConfigError = ConnectorConfigError;

/// The Toss Payments client.
pub struct TossGateway {
    transport: ProviderTransport,
}

impl fmt::Debug for TossGateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TossGateway")
            .field("provider_name", &self.transport.provider_name)
            .field("base_url", &self.transport.base_url.as_str())
            .field("circuit", &self.transport.breaker.state())
            .finish_non_exhaustive()
    }
}

/// Whether a call may move money: decides what an unanswered request means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallKind {
    MovesMoney,
    Lookup,
}

/// One provider call: what to send and how to name it in logs (never the URL: billing keys are
/// part of some paths).
struct Call<'a> {
    operation: &'static str,
    method: Method,
    url: Url,
    body: Option<Value>,
    idempotency_key: Option<&'a str>,
    kind: CallKind,
}

/// The connector's name: what orders record as their `provider`, and the registry's key.
pub const PROVIDER_NAME: &str = "toss";

impl TossGateway {
    pub fn new(config: TossConfig) -> Result<TossGateway, GatewayConfigError> {
        TossGateway::with_clock(config, Arc::new(MonotonicClock::new()))
    }

    /// As [`TossGateway::new`], with the circuit breaker reading `clock`.
    pub fn with_clock(
        config: TossConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<TossGateway, GatewayConfigError> {
        // Basic authentication with the secret key as the user name and no password.
        let encoded = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:", config.secret_key.expose()));
        let transport = ProviderTransport::build(
            config.provider_name,
            &config.base_url,
            &format!("Basic {encoded}"),
            config.transport,
            clock,
        )?;
        Ok(TossGateway { transport })
    }

    /// A snapshot of this gateway's counters.
    pub fn stats(&self) -> GatewayStats {
        self.transport.counters.stats()
    }

    fn url(&self, segments: &[&str]) -> Url {
        self.transport.url(segments)
    }

    /// Runs a call: attempts, retries with backoff, the circuit, and the final verdict
    /// (`payledger_gateway::retries`, the loop every connector shares).
    async fn execute(&self, call: Call<'_>) -> Result<Vec<u8>, GatewayError> {
        // Toss has no "do not retry" answer: every retryable attempt may be tried again.
        self.transport
            .retry_loop()
            .run(call.operation, || async {
                (self.attempt(&call).await, true)
            })
            .await
    }

    async fn attempt(&self, call: &Call<'_>) -> Attempt {
        let timeout = match call.kind {
            CallKind::MovesMoney => self.transport.timeout,
            CallKind::Lookup => self.transport.lookup_timeout,
        };
        let mut request = self
            .transport
            .http
            .request(call.method.clone(), call.url.clone())
            .timeout(timeout)
            .header(AUTHORIZATION, self.transport.authorization.clone());
        if let Some(key) = call.idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(body) = &call.body {
            request = request.json(body);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(err) => return Attempt::Retryable(transport_failure(err, timeout)),
        };
        let status = response.status();
        let body = match read_capped(response).await {
            Ok(body) => body,
            Err(reason) => return Attempt::Retryable(Retryable::Unknown(reason)),
        };
        if status.is_success() {
            return Attempt::Answered(body);
        }
        classify_error_answer(status, &body, call.kind)
    }

    async fn confirm_payment(
        &self,
        request: &ConfirmRequest,
    ) -> Result<ProviderPayment, GatewayError> {
        require_krw(request.currency)?;
        let body = self
            .execute(Call {
                operation: "confirm",
                method: Method::POST,
                url: self.url(&["v1", "payments", "confirm"]),
                body: Some(json!({
                    "paymentKey": request.payment_key,
                    "orderId": request.order_id,
                    "amount": request.amount_minor,
                })),
                idempotency_key: Some(&request.idempotency_key),
                kind: CallKind::MovesMoney,
            })
            .await?;
        let payment = self.read_money_answer("confirm", wire::parse_payment(&body))?;
        self.expect_same("confirm", &payment.order_id, &request.order_id)?;
        Ok(payment)
    }

    async fn lookup(
        &self,
        operation: &'static str,
        url: Url,
    ) -> Result<Option<ProviderPayment>, GatewayError> {
        let result = self
            .execute(Call {
                operation,
                method: Method::GET,
                url,
                body: None,
                idempotency_key: None,
                kind: CallKind::Lookup,
            })
            .await;
        match result {
            Ok(body) => {
                wire::parse_payment(&body)
                    .map(Some)
                    .map_err(|err| GatewayError::OutcomeUnknown {
                        reason: format!("{operation}: {err}"),
                    })
            }
            Err(GatewayError::Refused(failure)) if failure.class == FailureClass::NotFound => {
                Ok(None)
            }
            Err(err) => Err(err),
        }
    }

    /// A 2xx to a money-moving call that cannot be read means the provider acted and payledger
    /// cannot say how: an unknown outcome, never a guess.
    fn read_money_answer<T>(
        &self,
        operation: &'static str,
        parsed: Result<T, wire::UnreadableAnswer>,
    ) -> Result<T, GatewayError> {
        parsed.map_err(|err| {
            bump(&self.transport.counters.outcome_unknown);
            tracing::error!(provider = %self.transport.provider_name, operation, error = %err, "provider answered 2xx with a body payledger cannot read");
            GatewayError::OutcomeUnknown {
                reason: format!("{operation}: {err}"),
            }
        })
    }

    fn expect_same(
        &self,
        operation: &'static str,
        answered: &str,
        asked: &str,
    ) -> Result<(), GatewayError> {
        if answered == asked {
            return Ok(());
        }
        bump(&self.transport.counters.outcome_unknown);
        tracing::error!(provider = %self.transport.provider_name, operation, "provider answered about a different payment than asked");
        Err(GatewayError::OutcomeUnknown {
            reason: format!("{operation}: the provider answered about a different payment"),
        })
    }
}

#[async_trait]
impl PaymentGateway for TossGateway {
    fn provider_name(&self) -> &str {
        &self.transport.provider_name
    }

    fn supported_currencies(&self) -> &[Currency] {
        // Card payments through Toss settle in won; `require_krw` guards each call as well.
        &[Currency::KRW]
    }

    async fn confirm(&self, request: &ConfirmRequest) -> Result<ProviderPayment, GatewayError> {
        self.confirm_payment(request).await
    }

    async fn payment_by_order_id(
        &self,
        order_id: &str,
    ) -> Result<Option<ProviderPayment>, GatewayError> {
        let url = self.url(&["v1", "payments", "orders", order_id]);
        let found = self.lookup("payment_by_order_id", url).await?;
        match found {
            Some(payment) => {
                self.expect_same("payment_by_order_id", &payment.order_id, order_id)?;
                Ok(Some(payment))
            }
            None => Ok(None),
        }
    }

    async fn payment_by_key(
        &self,
        payment_key: &str,
    ) -> Result<Option<ProviderPayment>, GatewayError> {
        let url = self.url(&["v1", "payments", payment_key]);
        let found = self.lookup("payment_by_key", url).await?;
        match found {
            Some(payment) => {
                self.expect_same("payment_by_key", &payment.payment_key, payment_key)?;
                Ok(Some(payment))
            }
            None => Ok(None),
        }
    }

    async fn cancel(&self, request: &CancelRequest) -> Result<ProviderPayment, GatewayError> {
        let mut body = json!({ "cancelReason": request.cancel_reason });
        if let Some(amount) = request.cancel_amount_minor {
            body["cancelAmount"] = json!(amount);
        }
        let answer = self
            .execute(Call {
                operation: "cancel",
                method: Method::POST,
                url: self.url(&["v1", "payments", &request.payment_key, "cancel"]),
                body: Some(body),
                idempotency_key: Some(&request.idempotency_key),
                kind: CallKind::MovesMoney,
            })
            .await?;
        let payment = self.read_money_answer("cancel", wire::parse_payment(&answer))?;
        self.expect_same("cancel", &payment.payment_key, &request.payment_key)?;
        Ok(payment)
    }

    async fn issue_billing_key(
        &self,
        request: &IssueBillingKeyRequest,
    ) -> Result<BillingKeyIssued, GatewayError> {
        // The request carries no key of its own; one per call still makes this call's retries
        // one request to the provider.
        let idempotency_key = format!("billing-issue-{}", uuid::Uuid::new_v4());
        let answer = self
            .execute(Call {
                operation: "issue_billing_key",
                method: Method::POST,
                url: self.url(&["v1", "billing", "authorizations", "issue"]),
                body: Some(json!({
                    "authKey": request.auth_key,
                    "customerKey": request.customer_key,
                })),
                idempotency_key: Some(&idempotency_key),
                kind: CallKind::MovesMoney,
            })
            .await?;
        let issued =
            self.read_money_answer("issue_billing_key", wire::parse_billing_key(&answer))?;
        self.expect_same(
            "issue_billing_key",
            &issued.customer_key,
            &request.customer_key,
        )?;
        Ok(BillingKeyIssued {
            billing_key: BillingKeySecret::new(issued.billing_key),
            customer_key: issued.customer_key,
            card: issued.card,
        })
    }

    async fn charge_billing_key(
        &self,
        request: &ChargeBillingKeyRequest,
    ) -> Result<ProviderPayment, GatewayError> {
        require_krw(request.currency)?;
        let answer = self
            .execute(Call {
                operation: "charge_billing_key",
                method: Method::POST,
                url: self.url(&["v1", "billing", request.billing_key.expose()]),
                body: Some(json!({
                    "customerKey": request.customer_key,
                    "amount": request.amount_minor,
                    "orderId": request.order_id,
                    "orderName": request.order_name,
                })),
                idempotency_key: Some(&request.idempotency_key),
                kind: CallKind::MovesMoney,
            })
            .await?;
        let payment = self.read_money_answer("charge_billing_key", wire::parse_payment(&answer))?;
        self.expect_same("charge_billing_key", &payment.order_id, &request.order_id)?;
        Ok(payment)
    }

    fn circuit_state(&self) -> CircuitState {
        self.transport.breaker.state()
    }

    fn stats(&self) -> Option<GatewayStats> {
        Some(TossGateway::stats(self))
    }
}

/// Toss's card payments through this adapter are in won; anything else is refused before a
/// request is made (nothing reaches the provider, so nothing can have happened there).
fn require_krw(currency: Currency) -> Result<(), GatewayError> {
    if currency == Currency::KRW {
        return Ok(());
    }
    Err(GatewayError::Refused(ProviderFailure {
        class: FailureClass::InvalidRequest,
        provider_code: "PAYLEDGER_UNSUPPORTED_CURRENCY".to_owned(),
        provider_message: format!("the Toss adapter charges in KRW only, not {currency}"),
    }))
}

/// What a non-2xx answer means.
fn classify_error_answer(status: StatusCode, body: &[u8], kind: CallKind) -> Attempt {
    let Ok(error) = serde_json::from_slice::<wire::ErrorWire>(body) else {
        // Not Toss speaking: a proxy or load balancer. A 5xx from one of those (a 502 or 504)
        // may come after Toss acted on a forwarded payment.
        let failure = ProviderFailure {
            class: class_of_status(status),
            provider_code: format!("HTTP_{}", status.as_u16()),
            provider_message: format!("the provider answered {status} without a Toss error body"),
        };
        return match (status.is_server_error(), kind) {
            (true, CallKind::MovesMoney) => {
                Attempt::Retryable(Retryable::Unknown(failure.provider_message))
            }
            (true, CallKind::Lookup) => Attempt::Retryable(Retryable::Provider(failure)),
            (false, _) => Attempt::Refused(failure),
        };
    };
    let failure = ProviderFailure {
        class: classify_toss_failure(&error.code, status.as_u16()),
        provider_code: error.code(),
        provider_message: error.message(),
    };
    if status == StatusCode::CONFLICT && error.code == "IDEMPOTENT_REQUEST_PROCESSING" {
        return Attempt::Retryable(Retryable::InProgress(failure));
    }
    // Only what says the provider itself is unwell counts against its health: a 5xx or rate
    // limiting. A retryable code with a 4xx is about this payment (Toss sends `PROVIDER_ERROR`
    // with 400 for an issuer's trouble with one card).
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return Attempt::Retryable(Retryable::Provider(ProviderFailure {
            class: FailureClass::ProviderError,
            ..failure
        }));
    }
    if failure.class.is_retryable() {
        return Attempt::Retryable(Retryable::PaymentTrouble(failure));
    }
    Attempt::Refused(failure)
}

fn class_of_status(status: StatusCode) -> FailureClass {
    if status.is_server_error() {
        FailureClass::ProviderError
    } else {
        FailureClass::Unclassified
    }
}

/// A transport error, described without its URL (some paths hold a billing key).
fn transport_failure(err: reqwest::Error, timeout: Duration) -> Retryable {
    let err = err.without_url();
    if err.is_connect() {
        return Retryable::NotSent(bounded_reason(format!(
            "could not connect to the provider: {}",
            error_chain(&err)
        )));
    }
    if err.is_timeout() {
        return Retryable::Unknown(format!(
            "no answer from the provider within {} ms",
            timeout.as_millis()
        ));
    }
    Retryable::Unknown(bounded_reason(format!(
        "the request failed after it may have been sent: {}",
        error_chain(&err)
    )))
}

async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(format!(
                        "the provider's answer is larger than {MAX_RESPONSE_BYTES} bytes"
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(err) => {
                let err = err.without_url();
                return Err(if err.is_timeout() {
                    "the provider's answer was cut off by the timeout".to_owned()
                } else {
                    bounded_reason(format!(
                        "reading the provider's answer failed: {}",
                        error_chain(&err)
                    ))
                });
            }
        }
    }
}

fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn bounded_reason(reason: String) -> String {
    if reason.chars().count() <= MAX_REASON_CHARS {
        reason
    } else {
        reason.chars().take(MAX_REASON_CHARS).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_key_never_prints() {
        let config = TossConfig::new(TOSS_API_BASE_URL, TossSecretKey::new("live_sk_very_secret"));
        let printed = format!("{config:?}");
        assert!(!printed.contains("very_secret"), "{printed}");
        let gateway = TossGateway::new(config).unwrap();
        let printed = format!("{gateway:?}");
        assert!(!printed.contains("very_secret"), "{printed}");
    }

    #[test]
    fn plain_http_is_only_for_this_machine() {
        let remote = TossConfig::new("http://api.tosspayments.com", TossSecretKey::new("k"));
        assert_eq!(
            TossGateway::new(remote).unwrap_err(),
            GatewayConfigError::InsecureBaseUrl
        );
        assert!(TossGateway::new(TossConfig::sandbox("http://127.0.0.1:9")).is_ok());
        assert!(TossGateway::new(TossConfig::sandbox("http://localhost:9")).is_ok());
    }

    #[test]
    fn configuration_out_of_bounds_is_refused() {
        let mut config = TossConfig::sandbox("http://127.0.0.1:9");
        config.transport.max_attempts = 0;
        assert!(matches!(
            TossGateway::new(config.clone()),
            Err(GatewayConfigError::OutOfRange(_))
        ));
        config.transport.max_attempts = MAX_ATTEMPTS_LIMIT + 1;
        assert!(matches!(
            TossGateway::new(config.clone()),
            Err(GatewayConfigError::OutOfRange(_))
        ));
        config.transport.max_attempts = 3;
        config.transport.timeout_ms = 0;
        assert!(matches!(
            TossGateway::new(config),
            Err(GatewayConfigError::OutOfRange(_))
        ));
    }

    #[test]
    fn path_segments_are_encoded_so_a_key_cannot_reshape_the_path() {
        let gateway = TossGateway::new(TossConfig::sandbox("http://127.0.0.1:9/")).unwrap();
        let url = gateway.url(&["v1", "payments", "a/../b?c"]);
        assert_eq!(url.path(), "/v1/payments/a%2F..%2Fb%3Fc");
        assert_eq!(url.query(), None);
    }

    #[test]
    fn answers_without_a_toss_body_are_unknown_only_when_money_may_have_moved() {
        let bad_gateway =
            classify_error_answer(StatusCode::BAD_GATEWAY, b"<html>", CallKind::MovesMoney);
        assert!(matches!(
            bad_gateway,
            Attempt::Retryable(Retryable::Unknown(_))
        ));
        let lookup = classify_error_answer(StatusCode::BAD_GATEWAY, b"<html>", CallKind::Lookup);
        assert!(matches!(lookup, Attempt::Retryable(Retryable::Provider(_))));
        let teapot = classify_error_answer(StatusCode::IM_A_TEAPOT, b"", CallKind::MovesMoney);
        assert!(matches!(
            teapot,
            Attempt::Refused(ProviderFailure {
                class: FailureClass::Unclassified,
                ..
            })
        ));
    }

    #[test]
    fn provider_error_is_retryable_whatever_its_status() {
        let body = br#"{"code":"PROVIDER_ERROR","message":"temporary"}"#;
        let answer = classify_error_answer(StatusCode::BAD_REQUEST, body, CallKind::MovesMoney);
        assert!(
            matches!(answer, Attempt::Retryable(Retryable::PaymentTrouble(_))),
            "retried, but one card's trouble is not the provider's health"
        );
        let answer =
            classify_error_answer(StatusCode::SERVICE_UNAVAILABLE, body, CallKind::MovesMoney);
        assert!(matches!(answer, Attempt::Retryable(Retryable::Provider(_))));
        let limited = br#"{"code":"FORBIDDEN_CONSECUTIVE_REQUEST","message":"slow down"}"#;
        let answer =
            classify_error_answer(StatusCode::TOO_MANY_REQUESTS, limited, CallKind::MovesMoney);
        assert!(matches!(answer, Attempt::Retryable(Retryable::Provider(_))));
        let busy = br#"{"code":"IDEMPOTENT_REQUEST_PROCESSING","message":"busy"}"#;
        let answer = classify_error_answer(StatusCode::CONFLICT, busy, CallKind::MovesMoney);
        assert!(matches!(
            answer,
            Attempt::Retryable(Retryable::InProgress(_))
        ));
        let declined = br#"{"code":"REJECT_CARD_COMPANY","message":"no"}"#;
        let answer = classify_error_answer(StatusCode::FORBIDDEN, declined, CallKind::MovesMoney);
        assert!(matches!(
            answer,
            Attempt::Refused(ProviderFailure {
                class: FailureClass::SoftDecline,
                ..
            })
        ));
    }
}
