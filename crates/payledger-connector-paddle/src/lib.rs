//! The Paddle Billing connector.
//!
//! Paddle is a merchant of record that runs the subscription itself: the customer pays in
//! Paddle's checkout, Paddle bills every later cycle, and payledger learns what happened from
//! signed webhooks ([`webhook`]) that it confirms against Paddle's API before anything moves.
//! [`PaddleGateway`] is that API — transactions, subscriptions (get, cancel), adjustments
//! (refunds, credits; chargebacks are Paddle's), customers — with timeouts, bounded retries
//! (`payledger_gateway::transport`) and its own circuit breaker, and it implements
//! [`PaymentGateway`] so that an order placed with `"provider": "paddle"` is confirmed by looking
//! up the Paddle transaction its checkout completed (Paddle captures in the checkout; a confirm
//! moves no money). Paddle bills its own subscriptions, so billing keys are refused.
//!
//! Wire types are hand-written (`wire.rs`): payledger reads a few fields of five objects.
//!
//! ```no_run
//! # async fn demo() {
//! use payledger_connector_paddle::{PaddleConfig, PaddleGateway};
//!
//! // Production: PaddleConfig::new(PADDLE_API_BASE_URL, PaddleApiKey::new(key_from_env)).
//! let paddle = PaddleGateway::new(PaddleConfig::sandbox("http://127.0.0.1:8081/paddle"))
//!     .expect("valid configuration");
//! match paddle.subscription("sub_01h…").await {
//!     Ok(Some(subscription)) => println!("{:?}", subscription.status),
//!     Ok(None) => println!("no such subscription"),
//!     Err(error) => println!("{error}"),
//! }
//! # }
//! ```

mod client;
pub mod ledger;
pub mod settlements;
pub mod webhook;
pub mod wire;

pub use client::paddle_code_class;

use async_trait::async_trait;
use client::{Call, CallKind, Engine};
use payledger_domain::money::Currency;
use payledger_domain::provider_failure::{FailureClass, ProviderFailure};
use payledger_gateway::circuit::{Clock, MonotonicClock};
use payledger_gateway::provider_client::{ConnectorConfigError, ProviderTransport};
use payledger_gateway::retries::bump;
use payledger_gateway::transport::TransportLimits;
use payledger_gateway::{
    BillingKeyIssued, CancelRequest, CardMetadata, ChargeBillingKeyRequest, CircuitState,
    ConfirmRequest, GatewayError, GatewayStats, IssueBillingKeyRequest, PaymentFactStatus,
    PaymentGateway, ProviderCancel, ProviderPayment, ProviderRefundDecision, ProviderRefundFact,
    RefundAnswer,
};
use reqwest::{Method, Url};
use serde_json::json;
use std::fmt;
use std::sync::Arc;
use wire::{
    AdjustmentAction, AdjustmentStatus, AdjustmentWire, CustomerWire, SubscriptionWire,
    TransactionWire, UnreadableAnswer,
};

/// The provider name recorded in facts and events.
pub const PROVIDER_NAME: &str = "paddle";
/// Paddle Billing's live API.
pub const PADDLE_API_BASE_URL: &str = "https://api.paddle.com";
/// Paddle Billing's own test environment.
pub const PADDLE_SANDBOX_API_BASE_URL: &str = "https://sandbox-api.paddle.com";
/// The key payledger's sandbox accepts by default (`payledger-sandbox`'s
/// `DEFAULT_PADDLE_API_KEY`).
pub const SANDBOX_API_KEY: &str = "pdl_sdbx_apikey_sandbox";
/// The `custom_data` key a checkout carries the payledger order id in.
pub const CUSTOM_DATA_ORDER_ID: &str = "orderId";
/// The `custom_data` key a checkout carries the payledger customer id in.
pub const CUSTOM_DATA_CUSTOMER_ID: &str = "customerId";
/// The `custom_data` key a checkout carries the payledger API client in (the name of its key,
/// `e2e` for `client:e2e`): the client that owns a customer Paddle's notification names first.
pub const CUSTOM_DATA_API_CLIENT: &str = "apiClient";
/// Longest refund reason sent to Paddle.
const MAX_REASON_CHARS: usize = 200;
/// Most ids one list request filters by.
const MAX_IDS_PER_LIST: usize = 50;

/// A Paddle API key (`pdl_live_apikey_…`, `pdl_sdbx_apikey_…`). Never printed.
#[derive(Clone)]
pub struct PaddleApiKey(String);

impl PaddleApiKey {
    pub fn new(value: impl Into<String>) -> PaddleApiKey {
        PaddleApiKey(value.into())
    }

    /// The only way to read it; used once, to build the `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PaddleApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PaddleApiKey(***)")
    }
}

/// How [`PaddleGateway`] talks to Paddle.
#[derive(Debug, Clone)]
pub struct PaddleConfig {
    /// `https://api.paddle.com`, `https://sandbox-api.paddle.com`, or payledger's sandbox at
    /// `http://127.0.0.1:port/paddle`. Plain HTTP only for loopback hosts.
    pub base_url: String,
    pub api_key: PaddleApiKey,
    pub provider_name: String,
    /// Timeouts, attempts, backoff and circuit; `timeout_ms` bounds the calls that change state
    /// (cancel, adjustments).
    pub transport: TransportLimits,
}

impl PaddleConfig {
    pub fn new(base_url: impl Into<String>, api_key: PaddleApiKey) -> PaddleConfig {
        PaddleConfig {
            base_url: base_url.into(),
            api_key,
            provider_name: PROVIDER_NAME.to_owned(),
            transport: TransportLimits::with_timeout_ms(15_000),
        }
    }

    /// The same client against a `payledger-sandbox`'s `/paddle` base, with its default key.
    pub fn sandbox(base_url: impl Into<String>) -> PaddleConfig {
        PaddleConfig::new(base_url, PaddleApiKey::new(SANDBOX_API_KEY))
    }
}

/// The failure a refund adjustment Paddle rejected records, whether the rejection is read from
/// Paddle's API (the reconciler) or from its `adjustment.updated` notification.
pub fn refund_rejected(provider_status: &str) -> ProviderFailure {
    ProviderFailure {
        class: FailureClass::InvalidRequest,
        provider_code: "PADDLE_REFUND_REJECTED".to_owned(),
        provider_message: format!("Paddle {provider_status} the refund adjustment"),
    }
}

/// Why a [`PaddleConfig`] was refused.
pub type PaddleConfigError = ConnectorConfigError;

/// Paddle sells in these of payledger's currencies (KRW and JPY zero-decimal).
const SUPPORTED_CURRENCIES: [Currency; 5] = [
    Currency::USD,
    Currency::EUR,
    Currency::GBP,
    Currency::KRW,
    Currency::JPY,
];

/// When a cancel takes effect (`effective_from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelFrom {
    /// At the end of the current billing period (benefits stay until then).
    NextBillingPeriod,
    Immediately,
}

impl CancelFrom {
    pub fn as_str(self) -> &'static str {
        match self {
            CancelFrom::NextBillingPeriod => "next_billing_period",
            CancelFrom::Immediately => "immediately",
        }
    }
}

/// A refund (or credit) to ask Paddle for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdjustmentRequest {
    pub transaction_id: String,
    /// `Refund` or `Credit`; chargebacks are Paddle's to record.
    pub action: AdjustmentAction,
    pub reason: String,
    /// `None`: everything left of the transaction (`type: full`).
    pub amount_minor: Option<i64>,
}

/// The Paddle client.
pub struct PaddleGateway {
    engine: Engine,
}

impl fmt::Debug for PaddleGateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PaddleGateway")
            .field("provider_name", &self.engine.provider_name)
            .field("base_url", &self.engine.base_url.as_str())
            .field("circuit", &self.engine.breaker.state())
            .finish_non_exhaustive()
    }
}

impl PaddleGateway {
    pub fn new(config: PaddleConfig) -> Result<PaddleGateway, PaddleConfigError> {
        PaddleGateway::with_clock(config, Arc::new(MonotonicClock::new()))
    }

    /// As [`PaddleGateway::new`], with the circuit breaker reading `clock`.
    pub fn with_clock(
        config: PaddleConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<PaddleGateway, PaddleConfigError> {
        let authorization = format!("Bearer {}", config.api_key.expose());
        let transport = ProviderTransport::build(
            config.provider_name,
            &config.base_url,
            &authorization,
            config.transport,
            clock,
        )?;
        Ok(PaddleGateway {
            engine: Engine(transport),
        })
    }

    pub fn stats(&self) -> GatewayStats {
        self.engine.counters.stats()
    }

    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut url = self.engine.url(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    fn unreadable(&self, operation: &'static str, err: UnreadableAnswer) -> GatewayError {
        bump(&self.engine.counters.outcome_unknown);
        tracing::error!(provider = %self.engine.provider_name, operation, error = %err, "Paddle answered with a body payledger cannot read");
        GatewayError::OutcomeUnknown {
            reason: format!("{operation}: {err}"),
        }
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        operation: &'static str,
        url: Url,
    ) -> Result<Option<T>, GatewayError> {
        let result = self
            .engine
            .execute(Call {
                operation,
                method: Method::GET,
                url,
                body: None,
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
        wire::parse_data::<T>(&body, operation)
            .map(Some)
            .map_err(|err| self.unreadable(operation, err))
    }

    /// A transaction by id (`txn_…`); `None` when Paddle has none.
    pub async fn transaction(&self, id: &str) -> Result<Option<TransactionWire>, GatewayError> {
        let found: Option<TransactionWire> = self
            .get("get_transaction", self.url(&["transactions", id], &[]))
            .await?;
        check_id("get_transaction", found.as_ref().map(|t| t.id.as_str()), id)
            .map_err(|err| self.unreadable("get_transaction", err))?;
        Ok(found)
    }

    /// The transactions Paddle billed for a subscription (its checkout and every renewal).
    pub async fn transactions_of_subscription(
        &self,
        subscription_id: &str,
    ) -> Result<Vec<TransactionWire>, GatewayError> {
        let listed: Option<Vec<TransactionWire>> = self
            .get(
                "list_transactions",
                self.url(&["transactions"], &[("subscription_id", subscription_id)]),
            )
            .await?;
        let listed = listed.unwrap_or_default();
        if listed
            .iter()
            .any(|t| t.subscription_id.as_deref() != Some(subscription_id))
        {
            return Err(self.unreadable(
                "list_transactions",
                UnreadableAnswer("Paddle listed another subscription's transaction".to_owned()),
            ));
        }
        Ok(listed)
    }

    /// A subscription by id (`sub_…`); `None` when Paddle has none.
    pub async fn subscription(&self, id: &str) -> Result<Option<SubscriptionWire>, GatewayError> {
        let found: Option<SubscriptionWire> = self
            .get("get_subscription", self.url(&["subscriptions", id], &[]))
            .await?;
        check_id(
            "get_subscription",
            found.as_ref().map(|s| s.id.as_str()),
            id,
        )
        .map_err(|err| self.unreadable("get_subscription", err))?;
        Ok(found)
    }

    /// `POST /subscriptions/{id}/cancel`: the subscription as Paddle has it afterwards (with a
    /// scheduled change for [`CancelFrom::NextBillingPeriod`], `canceled` for `Immediately`).
    /// Asking twice asks for the same state, so it is retried like a lookup.
    pub async fn cancel_subscription(
        &self,
        id: &str,
        from: CancelFrom,
    ) -> Result<SubscriptionWire, GatewayError> {
        let body = self
            .engine
            .execute(Call {
                operation: "cancel_subscription",
                method: Method::POST,
                url: self.url(&["subscriptions", id, "cancel"], &[]),
                body: Some(json!({ "effective_from": from.as_str() })),
                kind: CallKind::Repeatable,
            })
            .await?;
        let subscription: SubscriptionWire = wire::parse_data(&body, "cancel_subscription")
            .map_err(|err| self.unreadable("cancel_subscription", err))?;
        check_id("cancel_subscription", Some(&subscription.id), id)
            .map_err(|err| self.unreadable("cancel_subscription", err))?;
        Ok(subscription)
    }

    /// `POST /adjustments`: a refund waits for Paddle's approval (`pending_approval`). Paddle
    /// takes no idempotency key, so an unknown outcome is [`GatewayError::OutcomeUnknown`]: look
    /// the transaction's adjustments up before asking again.
    pub async fn create_adjustment(
        &self,
        request: &AdjustmentRequest,
    ) -> Result<AdjustmentWire, GatewayError> {
        if !matches!(
            request.action,
            AdjustmentAction::Refund | AdjustmentAction::Credit
        ) {
            return Err(GatewayError::Refused(ProviderFailure {
                class: FailureClass::InvalidRequest,
                provider_code: "PADDLE_ADJUSTMENT_ACTION".to_owned(),
                provider_message: "only refunds and credits can be requested".to_owned(),
            }));
        }
        let action = match request.action {
            AdjustmentAction::Refund => "refund",
            _ => "credit",
        };
        let reason: String = request.reason.chars().take(MAX_REASON_CHARS).collect();
        let body = match request.amount_minor {
            None => json!({"action": action, "transaction_id": request.transaction_id,
                "reason": reason, "type": "full"}),
            Some(amount) => {
                let transaction = self
                    .transaction(&request.transaction_id)
                    .await?
                    .ok_or_else(|| {
                        GatewayError::Refused(ProviderFailure {
                            class: FailureClass::NotFound,
                            provider_code: "not_found".to_owned(),
                            provider_message: "no such transaction".to_owned(),
                        })
                    })?;
                let item_id = transaction_item_id(&transaction);
                json!({"action": action, "transaction_id": request.transaction_id,
                    "reason": reason, "type": "partial",
                    "items": [{"item_id": item_id, "type": "partial",
                               "amount": amount.to_string()}]})
            }
        };
        let answer = self
            .engine
            .execute(Call {
                operation: "create_adjustment",
                method: Method::POST,
                url: self.url(&["adjustments"], &[]),
                body: Some(body),
                kind: CallKind::Creates,
            })
            .await?;
        let adjustment: AdjustmentWire = wire::parse_data(&answer, "create_adjustment")
            .map_err(|err| self.unreadable("create_adjustment", err))?;
        if adjustment.transaction_id != request.transaction_id {
            return Err(self.unreadable(
                "create_adjustment",
                UnreadableAnswer("Paddle adjusted another transaction".to_owned()),
            ));
        }
        Ok(adjustment)
    }

    /// A refund payledger asks for (`request.idempotency_key` names it), as a `refund`
    /// adjustment of the transaction (the payment key): `type: full` when it is the whole
    /// transaction, else `partial` on its line item. Paddle takes no idempotency key, so the
    /// request's key is written at the end of the adjustment's reason, and a request whose
    /// adjustment already exists (a retry after an unknown outcome) answers that adjustment
    /// instead of asking twice.
    pub async fn request_refund_adjustment(
        &self,
        request: &CancelRequest,
    ) -> Result<AdjustmentWire, GatewayError> {
        let marker = refund_marker(&request.idempotency_key);
        let existing = self
            .adjustments_of_transaction(&request.payment_key)
            .await?;
        if let Some(found) = existing
            .iter()
            .find(|a| a.action == AdjustmentAction::Refund && a.reason.ends_with(&marker))
        {
            return Ok(found.clone());
        }
        let transaction = self
            .transaction(&request.payment_key)
            .await?
            .ok_or_else(|| {
                GatewayError::Refused(ProviderFailure {
                    class: FailureClass::NotFound,
                    provider_code: "not_found".to_owned(),
                    provider_message: "Paddle has no such transaction".to_owned(),
                })
            })?;
        let total_minor = transaction
            .money()
            .map_err(|err| self.unreadable("get_transaction", err))?
            .total_minor;
        let adjusted_before = existing.iter().any(|a| {
            a.returns_money()
                && matches!(
                    a.status,
                    AdjustmentStatus::Approved | AdjustmentStatus::PendingApproval
                )
        });
        let amount_minor = match request.cancel_amount_minor {
            Some(amount) if amount == total_minor && !adjusted_before => None,
            None if !adjusted_before => None,
            Some(amount) => Some(amount),
            None => {
                return Err(GatewayError::Refused(ProviderFailure {
                    class: FailureClass::InvalidRequest,
                    provider_code: "PADDLE_REFUND_AMOUNT_REQUIRED".to_owned(),
                    provider_message: "a refund after an earlier one names its amount".to_owned(),
                }))
            }
        };
        let room = MAX_REASON_CHARS.saturating_sub(marker.chars().count() + 1);
        let reason: String = request.cancel_reason.chars().take(room).collect();
        self.create_adjustment(&AdjustmentRequest {
            transaction_id: request.payment_key.clone(),
            action: AdjustmentAction::Refund,
            reason: format!("{reason} {marker}"),
            amount_minor,
        })
        .await
    }

    /// An adjustment by id (`adj_…`); `None` when Paddle has none.
    pub async fn adjustment(&self, id: &str) -> Result<Option<AdjustmentWire>, GatewayError> {
        let listed: Option<Vec<AdjustmentWire>> = self
            .get(
                "list_adjustments",
                self.url(&["adjustments"], &[("id", id)]),
            )
            .await?;
        Ok(listed
            .unwrap_or_default()
            .into_iter()
            .find(|adjustment| adjustment.id == id))
    }

    /// Every adjustment of a transaction (refunds, credits, chargebacks).
    pub async fn adjustments_of_transaction(
        &self,
        transaction_id: &str,
    ) -> Result<Vec<AdjustmentWire>, GatewayError> {
        let listed: Option<Vec<AdjustmentWire>> = self
            .get(
                "list_adjustments",
                self.url(&["adjustments"], &[("transaction_id", transaction_id)]),
            )
            .await?;
        let listed = listed.unwrap_or_default();
        if listed.len() > MAX_IDS_PER_LIST * 4
            || listed.iter().any(|a| a.transaction_id != transaction_id)
        {
            return Err(self.unreadable(
                "list_adjustments",
                UnreadableAnswer("Paddle listed another transaction's adjustment".to_owned()),
            ));
        }
        Ok(listed)
    }

    /// A customer by id (`ctm_…`); `None` when Paddle has none.
    pub async fn customer(&self, id: &str) -> Result<Option<CustomerWire>, GatewayError> {
        let found: Option<CustomerWire> = self
            .get("get_customer", self.url(&["customers", id], &[]))
            .await?;
        check_id("get_customer", found.as_ref().map(|c| c.id.as_str()), id)
            .map_err(|err| self.unreadable("get_customer", err))?;
        Ok(found)
    }

    /// `POST /customers`.
    pub async fn create_customer(&self, email: &str) -> Result<CustomerWire, GatewayError> {
        let answer = self
            .engine
            .execute(Call {
                operation: "create_customer",
                method: Method::POST,
                url: self.url(&["customers"], &[]),
                body: Some(json!({ "email": email })),
                kind: CallKind::Creates,
            })
            .await?;
        wire::parse_data(&answer, "create_customer")
            .map_err(|err| self.unreadable("create_customer", err))
    }

    /// A subscription and its transactions in the ledger's words (`ledger::read_subscription`),
    /// looked at `now`; `None` when Paddle has no such subscription.
    pub async fn subscription_reading(
        &self,
        id: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<ledger::SubscriptionReading>, GatewayError> {
        let Some(subscription) = self.subscription(id).await? else {
            return Ok(None);
        };
        let transactions = self.transactions_of_subscription(id).await?;
        ledger::read_subscription(&subscription, &transactions, now)
            .map(Some)
            .map_err(|err| self.unreadable("get_subscription", err))
    }

    /// An adjustment by id in the ledger's words ([`ledger::read_adjustment`]); `None` when
    /// Paddle has none.
    pub async fn adjustment_reading(
        &self,
        id: &str,
    ) -> Result<Option<ledger::AdjustmentReading>, GatewayError> {
        let Some(adjustment) = self.adjustment(id).await? else {
            return Ok(None);
        };
        ledger::read_adjustment(&adjustment)
            .map(Some)
            .map_err(|err| self.unreadable("list_adjustments", err))
    }

    /// A transaction with its adjustments, in payledger's words: approved refunds and
    /// chargebacks reduce the balance.
    pub async fn transaction_payment(
        &self,
        id: &str,
    ) -> Result<Option<ProviderPayment>, GatewayError> {
        let Some(transaction) = self.transaction(id).await? else {
            return Ok(None);
        };
        let adjustments = self.adjustments_of_transaction(id).await?;
        provider_payment(&self.engine.provider_name, &transaction, &adjustments)
            .map(Some)
            .map_err(|err| self.unreadable("get_transaction", err))
    }
}

/// What a refund payledger asked for carries at the end of its Paddle reason.
fn refund_marker(idempotency_key: &str) -> String {
    format!("[payledger {idempotency_key}]")
}

fn check_id(operation: &str, found: Option<&str>, asked: &str) -> Result<(), UnreadableAnswer> {
    match found {
        Some(found) if found != asked => Err(UnreadableAnswer(format!(
            "{operation}: Paddle answered about another object"
        ))),
        _ => Ok(()),
    }
}

/// The first line item's id (`txnitm_…`), which a partial adjustment names.
fn transaction_item_id(transaction: &TransactionWire) -> String {
    transaction
        .details
        .line_items
        .first()
        .map(|item| item.id.clone())
        .unwrap_or_default()
}

/// A transaction and its adjustments as a [`ProviderPayment`]: the one reading of them.
pub fn provider_payment(
    provider: &str,
    transaction: &TransactionWire,
    adjustments: &[AdjustmentWire],
) -> Result<ProviderPayment, UnreadableAnswer> {
    let money = transaction.money()?;
    let mut cancels = Vec::new();
    let mut returned = 0i64;
    for adjustment in adjustments {
        if adjustment.status != AdjustmentStatus::Approved || !adjustment.returns_money() {
            continue;
        }
        let adjusted = adjustment.money()?;
        returned += adjusted.total_minor;
        cancels.push(ProviderCancel {
            transaction_key: adjustment.id.clone(),
            cancel_amount_minor: adjusted.total_minor,
            cancel_reason: adjustment.reason.clone(),
            canceled_at: adjustment.created_at,
        });
    }
    if returned > money.total_minor {
        return Err(UnreadableAnswer(
            "Paddle returned more than the transaction's total".to_owned(),
        ));
    }
    let mut status = transaction.status.fact_status();
    if status == PaymentFactStatus::Captured && returned > 0 {
        status = if returned == money.total_minor {
            PaymentFactStatus::Refunded
        } else {
            PaymentFactStatus::PartiallyRefunded
        };
    }
    let card = transaction
        .payments
        .iter()
        .find(|p| p.status == "captured")
        .and_then(|p| p.method_details.as_ref())
        .and_then(|details| {
            let card = details.get("card")?;
            Some(CardMetadata {
                issuer_code: card.get("type")?.as_str()?.to_owned(),
                last4: card.get("last4")?.as_str()?.to_owned(),
                card_type: "card".to_owned(),
                expiry: match (
                    card.get("expiry_year").and_then(|y| y.as_u64()),
                    card.get("expiry_month").and_then(|m| m.as_u64()),
                ) {
                    (Some(year), Some(month)) => Some(format!("{year:04}-{month:02}")),
                    _ => None,
                },
            })
        });
    Ok(ProviderPayment {
        provider: provider.to_owned(),
        payment_key: transaction.id.clone(),
        order_id: transaction
            .custom_text(CUSTOM_DATA_ORDER_ID)
            .unwrap_or_default()
            .to_owned(),
        status,
        provider_status: transaction.status.as_str().to_owned(),
        total_amount_minor: money.total_minor,
        balance_amount_minor: money.total_minor - returned,
        currency: money.currency,
        approved_at: if status.was_charged() {
            transaction.captured_at()
        } else {
            None
        },
        method: card.as_ref().map(|_| "card".to_owned()),
        card,
        cancels,
        client_action: None,
        client_key: None,
    })
}

fn not_supported(code: &str, message: &str) -> GatewayError {
    GatewayError::Refused(ProviderFailure {
        class: FailureClass::InvalidRequest,
        provider_code: code.to_owned(),
        provider_message: message.to_owned(),
    })
}

#[async_trait]
impl PaymentGateway for PaddleGateway {
    fn provider_name(&self) -> &str {
        &self.engine.provider_name
    }

    fn supported_currencies(&self) -> &[Currency] {
        &SUPPORTED_CURRENCIES
    }

    /// Paddle captures in its checkout: a confirm looks the transaction (the payment key) up
    /// and answers it as it stands, for the ledger to judge against the order. No money moves.
    async fn confirm(&self, request: &ConfirmRequest) -> Result<ProviderPayment, GatewayError> {
        match self.transaction_payment(&request.payment_key).await? {
            Some(payment) => Ok(payment),
            None => Err(GatewayError::Refused(ProviderFailure {
                class: FailureClass::NotFound,
                provider_code: "not_found".to_owned(),
                provider_message: "Paddle has no such transaction".to_owned(),
            })),
        }
    }

    /// Paddle finds transactions by their id, not by payledger's order id: the caller must
    /// look up by payment key (the transaction id the checkout or a webhook named).
    async fn payment_by_order_id(
        &self,
        _order_id: &str,
    ) -> Result<Option<ProviderPayment>, GatewayError> {
        Err(not_supported(
            "PADDLE_LOOKUP_BY_ORDER_ID_UNSUPPORTED",
            "Paddle transactions are looked up by transaction id",
        ))
    }

    async fn payment_by_key(
        &self,
        payment_key: &str,
    ) -> Result<Option<ProviderPayment>, GatewayError> {
        self.transaction_payment(payment_key).await
    }

    /// Paddle approves refunds asynchronously: a refund is never answered as done; ask with
    /// [`PaymentGateway::request_refund`], which submits an adjustment for Paddle's approval.
    async fn cancel(&self, _request: &CancelRequest) -> Result<ProviderPayment, GatewayError> {
        Err(not_supported(
            "PADDLE_REFUND_IS_ASYNCHRONOUS",
            "Paddle refunds are adjustments approved by Paddle; request them as adjustments",
        ))
    }

    /// A refund is a `refund` adjustment (`POST /adjustments`) that waits for Paddle's approval:
    /// answered with the adjustment's id, decided later by `adjustment.updated`.
    async fn request_refund(&self, request: &CancelRequest) -> Result<RefundAnswer, GatewayError> {
        self.request_refund_adjustment(request)
            .await
            .map(|adjustment| RefundAnswer::AwaitingApproval {
                provider_refund_id: adjustment.id,
            })
    }

    /// `GET /adjustments?id=…`: Paddle lists an adjustment whatever its status (pending
    /// approval, approved, rejected, reversed), so a decision whose notification was lost is
    /// found here.
    async fn refund_request(
        &self,
        provider_refund_id: &str,
    ) -> Result<Option<ProviderRefundFact>, GatewayError> {
        let Some(adjustment) = self.adjustment(provider_refund_id).await? else {
            return Ok(None);
        };
        let money = adjustment
            .money()
            .map_err(|err| self.unreadable("list_adjustments", err))?;
        let provider_status = serde_json::to_value(adjustment.status)
            .ok()
            .and_then(|status| status.as_str().map(str::to_owned))
            .unwrap_or_default();
        let decision = match adjustment.status {
            AdjustmentStatus::PendingApproval => ProviderRefundDecision::Pending,
            AdjustmentStatus::Approved => ProviderRefundDecision::Approved,
            AdjustmentStatus::Rejected => ProviderRefundDecision::Rejected {
                failure: refund_rejected(&provider_status),
            },
            AdjustmentStatus::Reversed => ProviderRefundDecision::Unrecognised,
        };
        let action = serde_json::to_value(adjustment.action)
            .ok()
            .and_then(|action| action.as_str().map(str::to_owned))
            .unwrap_or_default();
        Ok(Some(ProviderRefundFact {
            provider_refund_id: adjustment.id,
            payment_key: adjustment.transaction_id,
            is_refund: adjustment.action == AdjustmentAction::Refund,
            action,
            amount_minor: money.total_minor,
            currency: money.currency,
            decision,
            provider_status,
        }))
    }

    async fn issue_billing_key(
        &self,
        _request: &IssueBillingKeyRequest,
    ) -> Result<BillingKeyIssued, GatewayError> {
        Err(not_supported(
            "PADDLE_BILLS_ITS_OWN_SUBSCRIPTIONS",
            "Paddle keeps the payment method and bills each cycle itself",
        ))
    }

    async fn charge_billing_key(
        &self,
        _request: &ChargeBillingKeyRequest,
    ) -> Result<ProviderPayment, GatewayError> {
        Err(not_supported(
            "PADDLE_BILLS_ITS_OWN_SUBSCRIPTIONS",
            "Paddle keeps the payment method and bills each cycle itself",
        ))
    }

    fn circuit_state(&self) -> CircuitState {
        self.engine.breaker.state()
    }

    fn stats(&self) -> Option<GatewayStats> {
        Some(PaddleGateway::stats(self))
    }
}

#[async_trait]
impl payledger_gateway::provider_subscriptions::ProviderSubscriptions for PaddleGateway {
    fn provider_name(&self) -> &str {
        &self.engine.provider_name
    }

    async fn cancel_subscription(
        &self,
        provider_subscription_id: &str,
        at_period_end: bool,
    ) -> Result<payledger_gateway::provider_subscriptions::ProviderCancelState, GatewayError> {
        let from = if at_period_end {
            CancelFrom::NextBillingPeriod
        } else {
            CancelFrom::Immediately
        };
        let subscription =
            PaddleGateway::cancel_subscription(self, provider_subscription_id, from).await?;
        let canceled = subscription.status == wire::SubscriptionStatus::Canceled;
        Ok(
            payledger_gateway::provider_subscriptions::ProviderCancelState {
                cancel_effective_at: subscription.cancel_effective_at(),
                canceled_at: if canceled {
                    Some(subscription.canceled_at.unwrap_or_else(|| {
                        subscription
                            .current_billing_period
                            .as_ref()
                            .map_or(chrono::DateTime::<chrono::Utc>::MIN_UTC, |p| p.ends_at)
                    }))
                } else {
                    None
                },
            },
        )
    }
}
