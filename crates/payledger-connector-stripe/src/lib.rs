//! The Stripe connector: [`StripeGateway`] implements payledger's [`PaymentGateway`] with
//! PaymentIntents and refunds, and [`webhook`] says which Stripe events mean what for which
//! ledger object and re-checks them against the API.
//!
//! Payments follow Stripe's server-side confirmation: the client collects the card with
//! Stripe.js and sends payledger the PaymentMethod id (`pm_…`) — or a PaymentIntent it already
//! has (`pi_…`) — as the payment key; [`PaymentGateway::confirm`] creates and confirms one
//! PaymentIntent with `metadata[order_id]` and the `Idempotency-Key` payledger derived from the
//! recorded confirmation attempt, so a retried or concurrent confirm charges at most once. When
//! 3-D Secure is needed the answer is [`PaymentFactStatus::Pending`] with a
//! [`payledger_gateway::ClientAction`]; the payment settles on the webhook, a lookup or a confirm
//! again. The payment key payledger keeps afterwards is the PaymentIntent id.
//!
//! Wire types are hand-written (`wire.rs`), not a Stripe client crate: payledger reads a dozen
//! fields of five objects, and needs its own retries, idempotency keys and circuit breaker
//! around every call, which a generated client of Stripe's whole API would only duplicate at a
//! build cost of minutes on this project's 2-core machine.
//!
//! ```no_run
//! # async fn demo(order: payledger_gateway::ConfirmRequest) {
//! use payledger_connector_stripe::{StripeConfig, StripeGateway};
//! use payledger_gateway::PaymentGateway;
//!
//! // Production: StripeConfig::new(STRIPE_API_BASE_URL, StripeSecretKey::new(key_from_env)).
//! let gateway = StripeGateway::new(StripeConfig::sandbox("http://127.0.0.1:8081/stripe"))
//!     .expect("valid configuration");
//! match gateway.confirm(&order).await {
//!     Ok(payment) => println!("{:?} {:?}", payment.status, payment.client_action),
//!     Err(error) => println!("{error}"),
//! }
//! # }
//! ```

mod client;
mod codes;
pub mod settlements;
pub mod webhook;
mod wire;

pub use codes::{stripe_code_class, STRIPE_FAILURE_CODES};
pub use wire::{BalanceTransactionWire, DisputeWire, RefundWire, UnreadableAnswer};

use async_trait::async_trait;
use client::{Call, CallKind, Engine};
use payledger_domain::money::Currency;
use payledger_domain::provider_failure::{FailureClass, ProviderFailure};
use payledger_gateway::circuit::{Clock, MonotonicClock};
use payledger_gateway::retries::bump;
use payledger_gateway::{
    BillingKeyIssued, CancelRequest, ChargeBillingKeyRequest, CircuitState, ConfirmRequest,
    GatewayError, GatewayStats, IssueBillingKeyRequest, PaymentFactStatus, PaymentGateway,
    ProviderPayment, WebhookFact, WebhookFactError,
};
use reqwest::{Method, Url};
use std::fmt;
use std::sync::Arc;

/// The provider name recorded in facts and events.
pub const PROVIDER_NAME: &str = "stripe";

/// Stripe's production API.
pub const STRIPE_API_BASE_URL: &str = "https://api.stripe.com";
/// The API version every request pins (`Stripe-Version`), so answers keep the shapes `wire.rs`
/// reads whatever the account's default is.
pub const STRIPE_API_VERSION: &str = "2024-06-20";
/// The secret key the sandbox accepts by default (`payledger-sandbox`'s
/// `DEFAULT_STRIPE_SECRET_KEY`).
pub const SANDBOX_SECRET_KEY: &str = "sk_test_sandbox";

use payledger_gateway::provider_client::{ConnectorConfigError, ProviderTransport};
use payledger_gateway::transport::TransportLimits;
/// Upper bounds on configuration, so a typo cannot make one call retry for an hour: the same
/// for every connector (`payledger_gateway::transport`).
pub use payledger_gateway::transport::{MAX_ATTEMPTS_LIMIT, MAX_BACKOFF_MS, MAX_TIMEOUT_MS};

/// Stripe's limit on a metadata value.
const MAX_METADATA_VALUE_CHARS: usize = 500;

/// What every expanded PaymentIntent read asks for: the charge and its refunds, so one call
/// answers captured, refunded and card facts.
const EXPAND_CHARGE: [&str; 2] = ["latest_charge", "latest_charge.refunds"];

/// A Stripe secret key (`sk_live_…`, `sk_test_…` or a restricted `rk_…`). Never printed.
#[derive(Clone)]
pub struct StripeSecretKey(String);

impl StripeSecretKey {
    pub fn new(value: impl Into<String>) -> StripeSecretKey {
        StripeSecretKey(value.into())
    }

    /// The only way to read it; used once, to build the `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether it is a test-mode key (`sk_test_` / `rk_test_`).
    pub fn is_test_mode(&self) -> bool {
        self.0.starts_with("sk_test_") || self.0.starts_with("rk_test_")
    }
}

impl fmt::Debug for StripeSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StripeSecretKey(***)")
    }
}

/// How [`StripeGateway`] talks to Stripe.
#[derive(Debug, Clone)]
pub struct StripeConfig {
    /// `https://api.stripe.com`, or a sandbox's `http://127.0.0.1:port/stripe`. Plain HTTP only
    /// for loopback hosts: the secret key travels in every request.
    pub base_url: String,
    pub secret_key: StripeSecretKey,
    /// Recorded in events as the provider.
    pub provider_name: String,
    /// Timeouts, attempts, backoff and circuit; `timeout_ms` bounds the calls that move money
    /// (create/confirm, refunds).
    pub transport: TransportLimits,
}

impl StripeConfig {
    /// Stripe's defaults against `base_url`. Stripe's own libraries time out after 80 s; a
    /// checkout cannot wait that long, and an unanswered confirm is settled by the reconciler.
    pub fn new(base_url: impl Into<String>, secret_key: StripeSecretKey) -> StripeConfig {
        StripeConfig {
            base_url: base_url.into(),
            secret_key,
            provider_name: "stripe".to_owned(),
            transport: TransportLimits::with_timeout_ms(15_000),
        }
    }

    /// The same client against a `payledger-sandbox`'s `/stripe` base, with its default key.
    pub fn sandbox(base_url: impl Into<String>) -> StripeConfig {
        StripeConfig::new(base_url, StripeSecretKey::new(SANDBOX_SECRET_KEY))
    }
}

/// Why a [`StripeConfig`] was refused.
pub type StripeConfigError = ConnectorConfigError;

/// Every currency payledger settles in; Stripe charges all of them (KRW and JPY zero-decimal).
const SUPPORTED_CURRENCIES: [Currency; 5] = [
    Currency::KRW,
    Currency::JPY,
    Currency::USD,
    Currency::EUR,
    Currency::GBP,
];

/// The Stripe client.
pub struct StripeGateway {
    engine: Engine,
}

impl fmt::Debug for StripeGateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeGateway")
            .field("provider_name", &self.engine.provider_name)
            .field("base_url", &self.engine.base_url.as_str())
            .field("circuit", &self.engine.breaker.state())
            .finish_non_exhaustive()
    }
}

impl StripeGateway {
    pub fn new(config: StripeConfig) -> Result<StripeGateway, StripeConfigError> {
        StripeGateway::with_clock(config, Arc::new(MonotonicClock::new()))
    }

    /// As [`StripeGateway::new`], with the circuit breaker reading `clock`.
    pub fn with_clock(
        config: StripeConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<StripeGateway, StripeConfigError> {
        let authorization = format!("Bearer {}", config.secret_key.expose());
        let transport = ProviderTransport::build(
            config.provider_name,
            &config.base_url,
            &authorization,
            config.transport,
            clock,
        )?;
        Ok(StripeGateway {
            engine: Engine(transport),
        })
    }

    /// A snapshot of this gateway's counters.
    pub fn stats(&self) -> GatewayStats {
        self.engine.counters.stats()
    }

    fn url(&self, segments: &[&str]) -> Url {
        self.engine.url(segments)
    }

    fn unreadable(&self, operation: &'static str, err: UnreadableAnswer) -> GatewayError {
        bump(&self.engine.counters.outcome_unknown);
        tracing::error!(provider = %self.engine.provider_name, operation, error = %err, "Stripe answered with a body payledger cannot read");
        GatewayError::OutcomeUnknown {
            reason: format!("{operation}: {err}"),
        }
    }

    /// A PaymentIntent by id, its charge and refunds expanded; `None` when Stripe has none.
    pub async fn payment_intent(
        &self,
        intent_id: &str,
    ) -> Result<Option<ProviderPayment>, GatewayError> {
        let result = self
            .engine
            .execute(Call {
                operation: "retrieve_payment_intent",
                method: Method::GET,
                url: self.url(&["v1", "payment_intents", intent_id]),
                form: expand_params(""),
                idempotency_key: None,
                kind: CallKind::Lookup,
            })
            .await;
        let body = match result {
            Ok(body) => body,
            Err(GatewayError::Refused(failure)) if failure.class == FailureClass::NotFound => {
                return Ok(None)
            }
            Err(err) => return Err(err),
        };
        let intent = wire::parse::<wire::PaymentIntentWire>(&body, "PaymentIntent")
            .map_err(|err| self.unreadable("retrieve_payment_intent", err))?;
        let payment = wire::provider_payment(intent)
            .map_err(|err| self.unreadable("retrieve_payment_intent", err))?;
        if payment.payment_key != intent_id {
            return Err(self.unreadable(
                "retrieve_payment_intent",
                UnreadableAnswer("Stripe answered about another PaymentIntent".to_owned()),
            ));
        }
        Ok(Some(payment))
    }

    /// A refund by id (to re-check `refund.updated` and `charge.refunded` webhooks).
    pub async fn refund(&self, refund_id: &str) -> Result<Option<RefundWire>, GatewayError> {
        let result = self
            .engine
            .execute(Call {
                operation: "retrieve_refund",
                method: Method::GET,
                url: self.url(&["v1", "refunds", refund_id]),
                form: Vec::new(),
                idempotency_key: None,
                kind: CallKind::Lookup,
            })
            .await;
        match result {
            Ok(body) => wire::parse::<RefundWire>(&body, "Refund")
                .map(Some)
                .map_err(|err| self.unreadable("retrieve_refund", err)),
            Err(GatewayError::Refused(failure)) if failure.class == FailureClass::NotFound => {
                Ok(None)
            }
            Err(err) => Err(err),
        }
    }

    /// A dispute by id (to re-check `charge.dispute.*` webhooks): its status, amount and the
    /// balance transactions with Stripe's dispute fee.
    pub async fn dispute(&self, dispute_id: &str) -> Result<Option<DisputeWire>, GatewayError> {
        let result = self
            .engine
            .execute(Call {
                operation: "retrieve_dispute",
                method: Method::GET,
                url: self.url(&["v1", "disputes", dispute_id]),
                form: Vec::new(),
                idempotency_key: None,
                kind: CallKind::Lookup,
            })
            .await;
        match result {
            Ok(body) => wire::parse::<DisputeWire>(&body, "Dispute")
                .map(Some)
                .map_err(|err| self.unreadable("retrieve_dispute", err)),
            Err(GatewayError::Refused(failure)) if failure.class == FailureClass::NotFound => {
                Ok(None)
            }
            Err(err) => Err(err),
        }
    }

    /// Creates and confirms a PaymentIntent for the order with the client's PaymentMethod.
    async fn create_and_confirm(
        &self,
        request: &ConfirmRequest,
        payment_method: &str,
    ) -> Result<ProviderPayment, GatewayError> {
        let mut form = vec![
            ("amount".to_owned(), request.amount_minor.to_string()),
            ("currency".to_owned(), stripe_currency(request.currency)),
            ("payment_method".to_owned(), payment_method.to_owned()),
            ("confirm".to_owned(), "true".to_owned()),
            // Cards only: with automatic payment methods Stripe would ask for a return_url.
            ("payment_method_types[]".to_owned(), "card".to_owned()),
            ("metadata[order_id]".to_owned(), request.order_id.clone()),
            (
                format!("metadata[{}]", wire::CLIENT_KEY_METADATA),
                payment_method.to_owned(),
            ),
        ];
        form.extend(expand_params(""));
        let body = self
            .engine
            .execute(Call {
                operation: "confirm",
                method: Method::POST,
                url: self.url(&["v1", "payment_intents"]),
                form,
                idempotency_key: Some(&request.idempotency_key),
                kind: CallKind::MovesMoney,
            })
            .await?;
        self.read_confirmed(&body, request)
    }

    /// Confirms a PaymentIntent the client already has (created through payledger earlier).
    async fn confirm_existing(
        &self,
        request: &ConfirmRequest,
        intent_id: &str,
    ) -> Result<ProviderPayment, GatewayError> {
        let current = self.payment_intent(intent_id).await?.ok_or_else(|| {
            GatewayError::Refused(ProviderFailure {
                class: FailureClass::NotFound,
                provider_code: "resource_missing".to_owned(),
                provider_message: "Stripe has no such PaymentIntent".to_owned(),
            })
        })?;
        check_same_order(&current, request)?;
        let awaits_confirmation = matches!(
            current.provider_status.as_str(),
            "requires_confirmation" | "requires_payment_method"
        );
        match current.status {
            PaymentFactStatus::Pending if awaits_confirmation => {}
            // Charged, refunded, waiting for the customer, in progress: nothing to confirm; the
            // caller judges what Stripe holds against the order.
            PaymentFactStatus::NotCompleted => {
                return Err(GatewayError::Refused(ProviderFailure {
                    class: FailureClass::InvalidRequest,
                    provider_code: "payment_intent_unexpected_state".to_owned(),
                    provider_message:
                        "the PaymentIntent was canceled or its last attempt failed; restart the payment"
                            .to_owned(),
                }))
            }
            _ => return Ok(current),
        }
        let form = expand_params("");
        let body = self
            .engine
            .execute(Call {
                operation: "confirm",
                method: Method::POST,
                url: self.url(&["v1", "payment_intents", intent_id, "confirm"]),
                form,
                idempotency_key: Some(&request.idempotency_key),
                kind: CallKind::MovesMoney,
            })
            .await?;
        self.read_confirmed(&body, request)
    }

    fn read_confirmed(
        &self,
        body: &[u8],
        request: &ConfirmRequest,
    ) -> Result<ProviderPayment, GatewayError> {
        let intent = wire::parse::<wire::PaymentIntentWire>(body, "PaymentIntent")
            .map_err(|err| self.unreadable("confirm", err))?;
        let payment =
            wire::provider_payment(intent).map_err(|err| self.unreadable("confirm", err))?;
        if payment.order_id != request.order_id {
            return Err(self.unreadable(
                "confirm",
                UnreadableAnswer("Stripe answered about another order's payment".to_owned()),
            ));
        }
        Ok(payment)
    }
}

#[async_trait]
impl PaymentGateway for StripeGateway {
    fn provider_name(&self) -> &str {
        &self.engine.provider_name
    }

    fn supported_currencies(&self) -> &[Currency] {
        &SUPPORTED_CURRENCIES
    }

    async fn confirm(&self, request: &ConfirmRequest) -> Result<ProviderPayment, GatewayError> {
        let key = request.payment_key.as_str();
        if key.starts_with("pi_") {
            self.confirm_existing(request, key).await
        } else if key.starts_with("pm_") {
            self.create_and_confirm(request, key).await
        } else {
            Err(GatewayError::Refused(ProviderFailure {
                class: FailureClass::InvalidRequest,
                provider_code: "PAYLEDGER_INVALID_PAYMENT_KEY".to_owned(),
                provider_message:
                    "a Stripe payment key is a PaymentMethod id (pm_…) or a PaymentIntent id (pi_…)"
                        .to_owned(),
            }))
        }
    }

    /// Stripe's search by `metadata['order_id']`. At Stripe, search results can lag writes by
    /// up to a minute, so the reconciler's grace period must be longer than that; a lookup by
    /// PaymentIntent id has no lag.
    async fn payment_by_order_id(
        &self,
        order_id: &str,
    ) -> Result<Option<ProviderPayment>, GatewayError> {
        if order_id.contains(['\'', '"', '\\']) {
            return Err(GatewayError::Refused(ProviderFailure {
                class: FailureClass::InvalidRequest,
                provider_code: "PAYLEDGER_INVALID_ORDER_ID".to_owned(),
                provider_message: "an order id with quotes cannot be searched for".to_owned(),
            }));
        }
        let mut form = vec![
            (
                "query".to_owned(),
                format!("metadata['order_id']:'{order_id}'"),
            ),
            ("limit".to_owned(), "10".to_owned()),
        ];
        form.extend(expand_params("data."));
        let body = self
            .engine
            .execute(Call {
                operation: "payment_by_order_id",
                method: Method::GET,
                url: self.url(&["v1", "payment_intents", "search"]),
                form,
                idempotency_key: None,
                kind: CallKind::Lookup,
            })
            .await?;
        let found = wire::parse::<wire::ListWire<wire::PaymentIntentWire>>(&body, "search")
            .map_err(|err| self.unreadable("payment_by_order_id", err))?;
        let mut payments = Vec::new();
        for intent in found.data {
            if wire::order_id_of(&intent) != Some(order_id) {
                return Err(self.unreadable(
                    "payment_by_order_id",
                    UnreadableAnswer("the search answered another order's payment".to_owned()),
                ));
            }
            payments.push(
                wire::provider_payment(intent)
                    .map_err(|err| self.unreadable("payment_by_order_id", err))?,
            );
        }
        let charged: Vec<&ProviderPayment> = payments
            .iter()
            .filter(|payment| payment.approved_at.is_some())
            .collect();
        if charged.len() > 1 {
            // Two charges for one order: a fact payledger must not pick from.
            return Err(self.unreadable(
                "payment_by_order_id",
                UnreadableAnswer(format!(
                    "Stripe holds {} charged PaymentIntents for one order",
                    charged.len()
                )),
            ));
        }
        if let Some(charged) = charged.first() {
            return Ok(Some((*charged).clone()));
        }
        // Nothing charged: the most recent attempt says where the order stands.
        Ok(payments.into_iter().next())
    }

    async fn payment_by_key(
        &self,
        payment_key: &str,
    ) -> Result<Option<ProviderPayment>, GatewayError> {
        if !payment_key.starts_with("pi_") {
            return Ok(None);
        }
        self.payment_intent(payment_key).await
    }

    /// A refund of the PaymentIntent (`payment_key`). Answers the payment with this refund as
    /// the last cancel once Stripe reports it `succeeded`; a `pending` refund is an unknown
    /// outcome (settled by `refund.updated` or the reconciler), a `failed` or `canceled` one a
    /// refusal.
    async fn cancel(&self, request: &CancelRequest) -> Result<ProviderPayment, GatewayError> {
        if !request.payment_key.starts_with("pi_") {
            return Err(GatewayError::Refused(ProviderFailure {
                class: FailureClass::InvalidRequest,
                provider_code: "PAYLEDGER_INVALID_PAYMENT_KEY".to_owned(),
                provider_message: "Stripe refunds need the PaymentIntent id".to_owned(),
            }));
        }
        let mut form = vec![
            ("payment_intent".to_owned(), request.payment_key.clone()),
            ("reason".to_owned(), "requested_by_customer".to_owned()),
            (
                "metadata[payledger_reason]".to_owned(),
                request
                    .cancel_reason
                    .chars()
                    .take(MAX_METADATA_VALUE_CHARS)
                    .collect(),
            ),
        ];
        if let Some(amount) = request.cancel_amount_minor {
            form.push(("amount".to_owned(), amount.to_string()));
        }
        let body = self
            .engine
            .execute(Call {
                operation: "cancel",
                method: Method::POST,
                url: self.url(&["v1", "refunds"]),
                form,
                idempotency_key: Some(&request.idempotency_key),
                kind: CallKind::MovesMoney,
            })
            .await?;
        let refund = wire::parse::<RefundWire>(&body, "Refund")
            .map_err(|err| self.unreadable("cancel", err))?;
        if refund.payment_intent.as_deref() != Some(request.payment_key.as_str())
            || request
                .cancel_amount_minor
                .is_some_and(|amount| amount != refund.amount)
        {
            return Err(self.unreadable(
                "cancel",
                UnreadableAnswer("Stripe's refund is not the one asked for".to_owned()),
            ));
        }
        match refund.status.as_str() {
            "succeeded" => {}
            "pending" | "requires_action" => {
                bump(&self.engine.counters.outcome_unknown);
                return Err(GatewayError::OutcomeUnknown {
                    reason: format!("Stripe refund {} is {}", refund.id, refund.status),
                });
            }
            _ => {
                return Err(GatewayError::Refused(ProviderFailure {
                    class: FailureClass::NotCancelable,
                    provider_code: format!("refund_{}", refund.status),
                    provider_message: refund
                        .failure_reason
                        .unwrap_or_else(|| "Stripe did not make the refund".to_owned()),
                }))
            }
        }
        let mut payment = self
            .payment_intent(&request.payment_key)
            .await?
            .ok_or_else(|| GatewayError::OutcomeUnknown {
                reason: "the refunded PaymentIntent could not be read back".to_owned(),
            })?;
        // The caller reads the last cancel as this refund: put it there whatever the order of
        // Stripe's list.
        let Some(position) = payment
            .cancels
            .iter()
            .position(|cancel| cancel.transaction_key == refund.id)
        else {
            return Err(self.unreadable(
                "cancel",
                UnreadableAnswer("the refund is missing from the payment's refunds".to_owned()),
            ));
        };
        let this_refund = payment.cancels.remove(position);
        payment.cancels.push(this_refund);
        Ok(payment)
    }

    async fn issue_billing_key(
        &self,
        _request: &IssueBillingKeyRequest,
    ) -> Result<BillingKeyIssued, GatewayError> {
        Err(unsupported("billing keys"))
    }

    async fn charge_billing_key(
        &self,
        _request: &ChargeBillingKeyRequest,
    ) -> Result<ProviderPayment, GatewayError> {
        Err(unsupported("billing-key charges"))
    }

    fn circuit_state(&self) -> CircuitState {
        self.engine.breaker.state()
    }

    fn stats(&self) -> Option<GatewayStats> {
        Some(StripeGateway::stats(self))
    }

    async fn recheck_webhook(&self, verified_body: &[u8]) -> Result<WebhookFact, WebhookFactError> {
        webhook::webhook_fact(self, verified_body).await
    }
}

/// Subscriptions stay with Toss's billing keys; nothing is sent to Stripe.
fn unsupported(what: &str) -> GatewayError {
    GatewayError::Refused(ProviderFailure {
        class: FailureClass::InvalidRequest,
        provider_code: "PAYLEDGER_UNSUPPORTED_OPERATION".to_owned(),
        provider_message: format!("the Stripe connector does not do {what}"),
    })
}

/// An existing PaymentIntent must be this order's, for this amount and currency.
fn check_same_order(
    payment: &ProviderPayment,
    request: &ConfirmRequest,
) -> Result<(), GatewayError> {
    let same = payment.order_id == request.order_id
        && payment.currency == request.currency
        && (payment.total_amount_minor == request.amount_minor);
    if same {
        return Ok(());
    }
    Err(GatewayError::Refused(ProviderFailure {
        class: FailureClass::InvalidRequest,
        provider_code: "PAYLEDGER_PAYMENT_INTENT_MISMATCH".to_owned(),
        provider_message: "the PaymentIntent belongs to another order, amount or currency"
            .to_owned(),
    }))
}

/// Stripe's currency code. Amounts need no conversion: Stripe's zero-decimal currencies (KRW,
/// JPY) are zero-digit in payledger too, and USD, EUR, GBP count cents in both.
pub fn stripe_currency(currency: Currency) -> String {
    currency.code().to_ascii_lowercase()
}

fn expand_params(prefix: &str) -> Vec<(String, String)> {
    EXPAND_CHARGE
        .iter()
        .map(|path| ("expand[]".to_owned(), format!("{prefix}{path}")))
        .collect()
}
