//! The connector seam: the one interface payledger uses to move money at a payment provider.
//!
//! The application layer only ever sees [`PaymentGateway`] and the shared types here; each
//! provider is a **connector** in its own crate (`payledger-connector-toss`, …) that implements
//! the trait and keeps its wire types, status and error-code mapping, and HTTP client to itself.
//! A connector reads its provider's payment object into a [`ProviderPayment`], whose
//! [`ProviderPayment::fact`] the ledger judges (`payledger_domain::provider_fact`). The
//! [`ProviderRegistry`] holds the connectors configured on a deployment by name; every order
//! names its provider at placement and every later call for it goes to that connector.
//!
//! Every call carries payledger's own idempotency key, so a retried or concurrent call can never
//! charge twice, and every error says whether the provider may have acted
//! ([`GatewayError::OutcomeUnknown`]) or certainly did not. [`circuit`] is the breaker each
//! connector keeps for its provider; [`retries`] the one loop every connector runs its calls
//! through (attempts with the same key, backoff, the breaker, the verdict).

pub mod circuit;
pub mod payouts;
pub mod provider_client;
pub mod provider_subscriptions;
pub mod registry;
pub mod retries;
pub mod settlements;
pub mod transport;
pub mod webhooks;

pub use registry::{ProviderRegistry, RegistryError};
pub use webhooks::{WebhookFact, WebhookFactError, WebhookMeaning};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use payledger_domain::money::Currency;
pub use payledger_domain::provider_fact::{PaymentFact, PaymentFactStatus};
use payledger_domain::provider_failure::ProviderFailure;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Confirm (approve) a payment the customer authorised at the provider's checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfirmRequest {
    pub payment_key: String,
    pub order_id: String,
    pub amount_minor: i64,
    pub currency: Currency,
    /// Derived from the order, so every retry of this confirm is the same request to the provider.
    pub idempotency_key: String,
}

/// Cancel all or part of a captured payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelRequest {
    pub payment_key: String,
    /// `None` cancels the whole remaining balance.
    pub cancel_amount_minor: Option<i64>,
    pub cancel_reason: String,
    /// One per refund, so a retried refund is the same cancel.
    pub idempotency_key: String,
}

/// What a provider answered a refund request ([`PaymentGateway::request_refund`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundAnswer {
    /// Refunded now: the payment as it stands after the refund.
    Refunded(Box<ProviderPayment>),
    /// Accepted for the provider's approval, decided later (Paddle's refund adjustments): the
    /// provider's id of the request, which its decision will name.
    AwaitingApproval { provider_refund_id: String },
}

/// A refund the provider was asked to approve ([`RefundAnswer::AwaitingApproval`]), as its API
/// reports it now, looked up by the provider's id of the request: the order's own fact type, so
/// the ledger checks exactly what the connector read against the refund it awaits (payment,
/// kind, amount, currency) before recording the decision.
pub use payledger_domain::provider_refund::{ProviderRefundDecision, ProviderRefundFact};

/// Issue a billing key from the auth key the provider's card-registration window returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueBillingKeyRequest {
    pub customer_key: String,
    pub auth_key: String,
}

/// Charge a billing key (automatic payment).
#[derive(Clone, PartialEq, Eq)]
pub struct ChargeBillingKeyRequest {
    pub billing_key: BillingKeySecret,
    pub customer_key: String,
    pub order_id: String,
    pub order_name: String,
    pub amount_minor: i64,
    pub currency: Currency,
    /// `{subscription}:{cycle}:{attempt}`: a new attempt is a new key.
    pub idempotency_key: String,
}

impl fmt::Debug for ChargeBillingKeyRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChargeBillingKeyRequest")
            .field("billing_key", &self.billing_key)
            .field("order_id", &self.order_id)
            .field("amount_minor", &self.amount_minor)
            .field("currency", &self.currency)
            .field("idempotency_key", &self.idempotency_key)
            .finish_non_exhaustive()
    }
}

/// A billing key. It is a secret (it can be charged without the customer): never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct BillingKeySecret(String);

impl BillingKeySecret {
    pub fn new(value: String) -> BillingKeySecret {
        BillingKeySecret(value)
    }
    /// The only way to read it; call sites are few and greppable.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BillingKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BillingKeySecret(***)")
    }
}

/// Card facts payledger may keep (PCI DSS SAQ A): never the number, only these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CardMetadata {
    pub issuer_code: String,
    pub last4: String,
    pub card_type: String,
    /// `YYYY-MM`, when the provider tells it.
    pub expiry: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillingKeyIssued {
    pub billing_key: BillingKeySecret,
    pub customer_key: String,
    pub card: CardMetadata,
}

/// A payment as the provider sees it, in payledger's words: each connector reads its own
/// payment object into this (Toss: `toss::wire::parse_payment`), the one place its status words
/// are interpreted. [`ProviderPayment::fact`] is what the ledger judges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderPayment {
    /// The connector that reported it (`toss`, `stripe`).
    pub provider: String,
    pub payment_key: String,
    pub order_id: String,
    pub status: PaymentFactStatus,
    /// The provider's own word for the status (`DONE`, `CANCELED`), for the record.
    pub provider_status: String,
    pub total_amount_minor: i64,
    /// What is left after cancels.
    pub balance_amount_minor: i64,
    pub currency: Currency,
    pub approved_at: Option<DateTime<Utc>>,
    pub method: Option<String>,
    pub card: Option<CardMetadata>,
    pub cancels: Vec<ProviderCancel>,
    /// What the paying client must do before the provider can charge (3-D Secure at Stripe:
    /// `requires_action`), set only while `status` is [`PaymentFactStatus::Pending`]: nothing is
    /// captured yet, and the payment settles later on a webhook, a lookup or a confirm again.
    /// Providers without such a step (Toss) leave it `None`.
    pub client_action: Option<ClientAction>,
    /// The key the client handed payledger when the provider's payment id differs from it
    /// ([`PaymentFact::client_key`]; Stripe's PaymentMethod id). `None` for Toss.
    pub client_key: Option<String>,
}

/// What the paying client must do to complete a payment (Stripe's `next_action`), passed back
/// to the client that asked for the confirm and nowhere else.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientAction {
    /// The provider's name for the step: `use_stripe_sdk` (Stripe.js `handleNextAction`) or
    /// `redirect_to_url`.
    pub kind: String,
    /// Where to send the customer, for `redirect_to_url`.
    pub redirect_url: Option<String>,
    /// The secret the client SDK completes this one payment with (Stripe's `client_secret`).
    /// Stripe asks that it reach only the paying customer: it is never logged, stored in events
    /// or shown by `Debug`.
    pub client_secret: Option<String>,
}

impl fmt::Debug for ClientAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientAction")
            .field("kind", &self.kind)
            .field("redirect_url", &self.redirect_url)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "***"))
            .finish()
    }
}

impl ProviderPayment {
    /// The ledger fact: what the ledger compares with what it expects before recording anything.
    pub fn fact(&self) -> PaymentFact {
        PaymentFact {
            provider: self.provider.clone(),
            order_id: self.order_id.clone(),
            payment_key: self.payment_key.clone(),
            status: self.status,
            provider_status: self.provider_status.clone(),
            amount_minor: self.total_amount_minor,
            refunded_minor: (self.total_amount_minor - self.balance_amount_minor).max(0),
            currency: self.currency,
            approved_at: self.approved_at,
            method: self.method.clone(),
            client_key: self.client_key.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderCancel {
    pub transaction_key: String,
    pub cancel_amount_minor: i64,
    pub cancel_reason: String,
    pub canceled_at: DateTime<Utc>,
}

/// Whether the provider's circuit lets calls through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// The provider answered and refused: nothing happened at the provider.
    #[error("provider refused: {} ({})", .0.provider_code, .0.provider_message)]
    Refused(ProviderFailure),
    /// The request may have reached the provider and nobody knows what it did (timeout after
    /// sending, connection reset). Never guessed: a reconciler asks the provider later.
    #[error("provider outcome unknown: {reason}")]
    OutcomeUnknown { reason: String },
    /// The request certainly did not reach the provider (circuit open, connection refused).
    #[error("provider not reached: {reason}")]
    NotSent {
        reason: String,
        retry_after_ms: Option<u64>,
    },
}

/// A gateway's counters since it was made, for the metrics endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStats {
    /// Calls of the trait's methods.
    pub calls: u64,
    /// HTTP requests made (a call makes one per attempt).
    pub attempts: u64,
    /// Attempts that failed in a way that counts against the provider's health: no connection,
    /// no answer in time, a 5xx, 429. Refusals of one payment (a card's `PROVIDER_ERROR` sent
    /// with a 4xx among them) are not failures: the provider answered.
    pub failures: u64,
    /// Attempts after the first within a call.
    pub retries: u64,
    /// Attempts the open circuit refused without calling the provider.
    pub short_circuited: u64,
    /// Calls that ended in a refusal (`GatewayError::Refused`).
    pub refusals: u64,
    /// Calls that ended with an unknown outcome (`GatewayError::OutcomeUnknown`).
    pub outcome_unknown: u64,
}

/// The one interface to a payment provider: what a connector implements.
#[async_trait]
pub trait PaymentGateway: Send + Sync + 'static {
    /// The connector's name: the registry's key, what orders record as their `provider`
    /// (`toss`, `stripe`), and the metrics label. The same in test and live mode.
    fn provider_name(&self) -> &str;

    /// The currencies this connector can charge. An order in any other currency is refused at
    /// placement (`E_CURRENCY_NOT_SUPPORTED`), never accepted and left unpayable.
    fn supported_currencies(&self) -> &[Currency];

    /// `Ok` is the provider's payment as it stands after the confirm, which is not always a
    /// capture: callers judge its [`ProviderPayment::fact`] against the order before recording
    /// anything (`Pending` with a [`ProviderPayment::client_action`] when the customer must act
    /// first).
    async fn confirm(&self, request: &ConfirmRequest) -> Result<ProviderPayment, GatewayError>;

    /// `Ok(None)` when the provider has no payment for this order.
    async fn payment_by_order_id(
        &self,
        order_id: &str,
    ) -> Result<Option<ProviderPayment>, GatewayError>;

    async fn payment_by_key(
        &self,
        payment_key: &str,
    ) -> Result<Option<ProviderPayment>, GatewayError>;

    async fn cancel(&self, request: &CancelRequest) -> Result<ProviderPayment, GatewayError>;

    /// Refunds a payment: a provider that refunds at once answers the payment after the cancel
    /// (the default); one that approves refunds later (Paddle) answers the request's id.
    async fn request_refund(&self, request: &CancelRequest) -> Result<RefundAnswer, GatewayError> {
        self.cancel(request)
            .await
            .map(|payment| RefundAnswer::Refunded(Box::new(payment)))
    }

    /// A refund this provider was asked to approve, looked up by its id whatever its status
    /// (how a reconciler finds a decision whose notification was lost). `Ok(None)` when the
    /// provider has no such request; providers that refund at once never have one (the default).
    async fn refund_request(
        &self,
        _provider_refund_id: &str,
    ) -> Result<Option<ProviderRefundFact>, GatewayError> {
        Ok(None)
    }

    async fn issue_billing_key(
        &self,
        request: &IssueBillingKeyRequest,
    ) -> Result<BillingKeyIssued, GatewayError>;

    async fn charge_billing_key(
        &self,
        request: &ChargeBillingKeyRequest,
    ) -> Result<ProviderPayment, GatewayError>;

    fn circuit_state(&self) -> CircuitState;

    /// The gateway's counters, when it keeps any.
    fn stats(&self) -> Option<GatewayStats> {
        None
    }

    /// Reads a verified webhook body of this provider and re-fetches the object it names from
    /// the provider's API: the connector decides what the event means, the answer says what
    /// is true now. Connectors whose webhooks are not signed facts leave it unsupported.
    async fn recheck_webhook(
        &self,
        _verified_body: &[u8],
    ) -> Result<WebhookFact, WebhookFactError> {
        Err(WebhookFactError::Unsupported)
    }
}
