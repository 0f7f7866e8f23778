//! Recurring billing: billing keys, subscriptions, the scheduler pass, membership and credit
//! wallets.
//!
//! A charge follows the order flow's discipline:
//! 1. record the attempt (`ChargeAttemptStarted`) with the subscription's version check — of
//!    several schedulers (processes) only one gets through;
//! 2. call the provider with the attempt's idempotency key and the cycle's order id;
//! 3. record the outcome. If the process dies between 2 and 3, or the answer is lost, the attempt
//!    goes stale and a later pass looks the cycle's order up at the provider, then records what it
//!    says or sends the same attempt again. Nothing is guessed.
//!
//! The scheduler finds candidates in an index ([`BillingIndex`], the subscriptions read model in
//! production); each candidate is re-decided on its own stream, so a stale index can only cause a
//! wasted look, never a second charge.

use crate::billing_key_cipher::{BillingKeyCipher, CipherError};
use crate::clock::Clock;
use crate::context::RequestContext;
use crate::executor::{AggregateCache, ExecuteError, Executed, Executor, StoreFailure};
use crate::switches::{SalesCheckError, SalesSwitches};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use payledger_domain::billing::{
    BillingInterval, BillingKeyId, CreditOperationId, DunningPolicy, PlanCatalogue, PlanId,
    SubscriptionId,
};
use payledger_domain::customer::{
    self, BillingKeyRegistered, BillingKeyStatus, CardSummary, Customer, CustomerCommand,
    CustomerError,
};
use payledger_domain::ids::{CustomerId, OrderId, PaymentKey};
use payledger_domain::money::Money;
use payledger_domain::operations::SalesBlock;
use payledger_domain::order::{self, Order, OutcomeSource};
use payledger_domain::provider_fact::{self, Difference, ExpectedPayment, PaymentFact, Verdict};
use payledger_domain::provider_failure::{FailureClass, ProviderFailure};
use payledger_domain::subscription::{
    self, AttemptTrigger, ChargeOutcome, DueAction, InFlightAttempt, Subscription,
    SubscriptionCommand, SubscriptionError, SubscriptionEvent, SubscriptionStarted,
};
use payledger_domain::wallet::{self, Wallet, WalletCommand, WalletError};
use payledger_gateway::{
    ChargeBillingKeyRequest, GatewayError, IssueBillingKeyRequest, PaymentGateway,
};
use serde::Serialize;
use std::sync::Arc;

mod billing_keys;
mod charging;
mod lifecycle;
mod provider_billed;
pub use provider_billed::ProviderBilledStart;
mod scheduler;
mod wallets;

/// Provider failure codes payledger itself reports when it does not call the provider.
pub const CODE_BILLING_KEY_REVOKED: &str = "BILLING_KEY_REVOKED";
pub const CODE_BILLING_KEY_EXPIRED: &str = "BILLING_KEY_EXPIRED";
pub const CODE_BILLING_KEY_NOT_FOUND: &str = "BILLING_KEY_NOT_FOUND";
pub const CODE_BILLING_KEY_UNDECRYPTABLE: &str = "BILLING_KEY_UNDECRYPTABLE";
pub const CODE_PROVIDER_UNAVAILABLE: &str = "PROVIDER_UNAVAILABLE";
pub const CODE_NOT_CHARGED: &str = "NOT_CHARGED";
/// The provider's payment for a cycle differs from the attempt (amount, currency, order,
/// or refunded there): never recorded as the charge; the subscription goes to review.
pub const CODE_PROVIDER_DIFFERS: &str = "PROVIDER_STATE_DIFFERS";

#[derive(Debug, Clone)]
pub struct SubscriptionsConfig {
    /// The dunning policy in force; each failure copies what it schedules into its event.
    pub dunning: DunningPolicy,
    /// Which plans exist and the membership level each gives.
    pub catalogue: PlanCatalogue,
    /// Subscriptions, customers and wallets kept in memory per process, each.
    pub cache_capacity: usize,
    /// Subscriptions looked at per scheduler pass.
    pub max_due_per_pass: i64,
    /// Actions per subscription per pass: enough to catch up on missed cycles after downtime,
    /// bounded so one subscription cannot hold the pass.
    pub max_actions_per_subscription: u32,
    /// Credit purchases whose refunds are clawed back per pass.
    pub max_refund_syncs_per_pass: i64,
}

impl Default for SubscriptionsConfig {
    fn default() -> Self {
        SubscriptionsConfig {
            dunning: DunningPolicy::default(),
            catalogue: PlanCatalogue::default(),
            cache_capacity: 100_000,
            max_due_per_pass: 500,
            max_actions_per_subscription: 24,
            max_refund_syncs_per_pass: 500,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    #[error(transparent)]
    Customer(#[from] CustomerError),
    #[error(transparent)]
    Subscription(#[from] SubscriptionError),
    #[error(transparent)]
    Wallet(#[from] WalletError),
    #[error("plan '{0}' is not in the plan catalogue")]
    UnknownPlan(String),
    #[error("the {0} belongs to another customer")]
    CustomerMismatch(&'static str),
    #[error("no order with this id")]
    OrderNotFound,
    #[error("the order has no captured payment")]
    OrderNotPaid,
    #[error("the provider refused: {} ({})", .0.provider_code, .0.provider_message)]
    Refused(ProviderFailure),
    #[error("the payment provider is unavailable")]
    ProviderUnavailable { retry_after_ms: u64 },
    #[error("the ledger is unavailable: {0}")]
    Unavailable(String),
    #[error("the stream is being changed by other requests; retry")]
    Contention,
    #[error("the scheduler's index failed: {0}")]
    Index(String),
    /// The "all payments" kill switch is on: no charge was attempted or recorded.
    #[error("new payments are suspended: {0}")]
    PaymentsSuspended(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl<E: std::error::Error + Into<BillingError>> From<ExecuteError<E>> for BillingError {
    fn from(error: ExecuteError<E>) -> Self {
        match error.into_domain() {
            Ok(refused) => refused.into(),
            Err(StoreFailure::Unavailable(e)) => BillingError::Unavailable(e),
            Err(StoreFailure::Contention) => BillingError::Contention,
            Err(StoreFailure::Internal(e)) => BillingError::Internal(e),
        }
    }
}

impl From<payledger_domain::order::OrderError> for BillingError {
    fn from(error: payledger_domain::order::OrderError) -> Self {
        BillingError::Internal(format!("order: {error}"))
    }
}

/// Where the scheduler finds its candidates. Only an index: each candidate is re-checked on its
/// own stream, so the index may lag or repeat itself without harm.
#[async_trait]
pub trait BillingIndex: Send + Sync {
    /// Subscriptions with something due at or before `as_of`.
    async fn due_subscriptions(
        &self,
        as_of: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<SubscriptionId>, String>;

    /// Credit purchases whose paying order was refunded more than the wallet has clawed back.
    async fn purchases_with_unapplied_refunds(
        &self,
        limit: i64,
    ) -> Result<Vec<(CustomerId, CreditOperationId)>, String>;
}

/// A billing key as APIs may show it: never the key itself, not even encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillingKeyInfo {
    pub billing_key_id: BillingKeyId,
    pub customer_id: CustomerId,
    pub status: BillingKeyStatus,
    pub provider: String,
    pub card: CardSummary,
    pub registered_at: DateTime<Utc>,
    pub changed_at: DateTime<Utc>,
    pub replay: bool,
}

/// A subscription after a command, straight from the command side.
#[derive(Debug, Clone)]
pub struct SubscriptionSnapshot {
    pub state: Subscription,
    pub version: i64,
    /// Global position of the last event this request appended, for read-your-writes.
    pub position: Option<i64>,
    /// The customer's membership level now.
    pub membership_level: u8,
    pub replay: bool,
}

#[derive(Debug, Clone)]
pub struct WalletSnapshot {
    pub customer_id: CustomerId,
    pub state: Wallet,
    pub version: i64,
    pub position: Option<i64>,
    pub membership_level: u8,
    pub replay: bool,
}

#[derive(Debug, Clone)]
pub struct StartSubscriptionInput {
    pub subscription_id: Option<SubscriptionId>,
    pub customer_id: CustomerId,
    pub plan_id: PlanId,
    pub amount: Money,
    pub interval: BillingInterval,
    pub billing_key_id: BillingKeyId,
    /// The first charge; `None` is now (charged before the answer).
    pub anchor: Option<DateTime<Utc>>,
    pub order_name: Option<String>,
}

/// What one scheduler pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunDueReport {
    pub as_of: Option<DateTime<Utc>>,
    pub examined: usize,
    /// Attempts this pass started and sent.
    pub attempts: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub outcome_unknown: usize,
    /// Stale attempts settled from a lookup or sent again.
    pub resolved: usize,
    pub ended: usize,
    pub suspended: usize,
    /// Candidates another process got to first.
    pub skipped: usize,
    pub refunds_clawed_back: usize,
    /// Charges due but held back by the "all payments" kill switch; they stay due and are
    /// charged by the first pass after the switch is turned off.
    pub held_by_kill_switch: usize,
    pub errors: usize,
}

pub struct Subscriptions {
    executor: Arc<Executor>,
    subscriptions: AggregateCache<Subscription>,
    customers: AggregateCache<Customer>,
    wallets: AggregateCache<Wallet>,
    orders: AggregateCache<Order>,
    gateway: Arc<dyn PaymentGateway>,
    cipher: Arc<BillingKeyCipher>,
    clock: Arc<dyn Clock>,
    config: SubscriptionsConfig,
    switches: Option<Arc<SalesSwitches>>,
    /// The providers that bill their own subscriptions (Paddle), by name.
    provider_billing:
        Vec<Arc<dyn payledger_gateway::provider_subscriptions::ProviderSubscriptions>>,
}

/// How an attempt ended, for the pass report.
enum Driven {
    Succeeded,
    Failed,
    Unknown,
}

impl Subscriptions {
    pub fn new(
        executor: Arc<Executor>,
        gateway: Arc<dyn PaymentGateway>,
        cipher: Arc<BillingKeyCipher>,
        clock: Arc<dyn Clock>,
        config: SubscriptionsConfig,
    ) -> Subscriptions {
        Subscriptions {
            subscriptions: AggregateCache::new(config.cache_capacity),
            customers: AggregateCache::new(config.cache_capacity),
            wallets: AggregateCache::new(config.cache_capacity),
            orders: AggregateCache::new(config.cache_capacity),
            executor,
            gateway,
            cipher,
            clock,
            config,
            switches: None,
            provider_billing: Vec::new(),
        }
    }

    /// Cancels of subscriptions `provider` bills go through it (Paddle's cancel API).
    pub fn with_provider_billing(
        mut self,
        provider: Arc<dyn payledger_gateway::provider_subscriptions::ProviderSubscriptions>,
    ) -> Subscriptions {
        self.provider_billing.push(provider);
        self
    }

    /// Billing-key charges obey the "all payments" kill switch (source document 2, §6): while it
    /// is on, no attempt is recorded or sent. Without switches nothing is held back (tests).
    pub fn with_sales_switches(mut self, switches: Arc<SalesSwitches>) -> Subscriptions {
        self.switches = Some(switches);
        self
    }

    /// Refuses when the "all payments" kill switch is on. Per-payee switches do not apply:
    /// subscriptions are the platform's own sales, not a payee's.
    async fn check_payments_allowed(&self) -> Result<(), BillingError> {
        let Some(switches) = &self.switches else {
            return Ok(());
        };
        switches.check_payments().await.map_err(|e| match e {
            SalesCheckError::Suspended(SalesBlock::AllPayments { reason }) => {
                BillingError::PaymentsSuspended(reason)
            }
            other => BillingError::Unavailable(other.to_string()),
        })
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn config(&self) -> &SubscriptionsConfig {
        &self.config
    }

    async fn execute(
        &self,
        subscription_id: &SubscriptionId,
        command: SubscriptionCommand,
        context: &RequestContext,
    ) -> Result<Executed<Subscription>, BillingError> {
        Ok(self
            .executor
            .execute(
                &self.subscriptions,
                &subscription::stream_id(subscription_id),
                command,
                context,
            )
            .await?)
    }

    async fn snapshot(
        &self,
        executed: Executed<Subscription>,
        replay: bool,
    ) -> Result<SubscriptionSnapshot, BillingError> {
        let membership_level = match executed.state.terms.as_ref() {
            Some(terms) => self.membership_level(&terms.customer_id).await?,
            None => 0,
        };
        Ok(SubscriptionSnapshot {
            position: executed.append.as_ref().map(|a| a.last_position),
            state: executed.state,
            version: executed.version,
            membership_level,
            replay,
        })
    }

    async fn current(
        &self,
        subscription_id: &SubscriptionId,
    ) -> Result<SubscriptionSnapshot, BillingError> {
        self.load_subscription(subscription_id)
            .await?
            .ok_or(BillingError::Subscription(SubscriptionError::NotFound))
    }

    /// The subscription after a flow that appended several times, with the global position of
    /// its last event (for the client's read-your-writes `minPosition`).
    async fn current_with_position(
        &self,
        subscription_id: &SubscriptionId,
    ) -> Result<SubscriptionSnapshot, BillingError> {
        let snapshot = self.current(subscription_id).await?;
        let last = self
            .executor
            .store()
            .read_stream(
                &subscription::stream_id(subscription_id),
                snapshot.version - 1,
                1,
            )
            .await
            .map_err(|e| BillingError::Unavailable(e.to_string()))?;
        Ok(SubscriptionSnapshot {
            position: last.first().map(|e| e.global_position),
            ..snapshot
        })
    }
}

fn key_info(
    customer_id: &CustomerId,
    billing_key_id: &BillingKeyId,
    customer: &Customer,
    replay: bool,
) -> Result<BillingKeyInfo, BillingError> {
    let key = customer
        .billing_keys
        .get(billing_key_id)
        .ok_or(BillingError::Customer(CustomerError::BillingKeyNotFound))?;
    Ok(BillingKeyInfo {
        billing_key_id: billing_key_id.clone(),
        customer_id: customer_id.clone(),
        status: key.status,
        provider: key.provider.clone(),
        card: key.card.clone(),
        registered_at: key.registered_at,
        changed_at: key.changed_at,
        replay,
    })
}

fn not_charged(message: &str) -> ChargeOutcome {
    ChargeOutcome::Refused {
        failure: ProviderFailure {
            class: FailureClass::ProviderError,
            provider_code: CODE_NOT_CHARGED.into(),
            provider_message: message.into(),
        },
    }
}

/// A provider's payment for a cycle, judged against the attempt (`provider_fact::judge`, the
/// same comparison an order's confirmation gets): `None` while the provider has not decided.
fn charge_outcome(
    attempt: &InFlightAttempt,
    fact: &PaymentFact,
    now: DateTime<Utc>,
) -> Option<ChargeOutcome> {
    let Ok(amount) = Money::new(attempt.amount_minor, attempt.currency) else {
        return Some(differs(fact, &[Difference::Amount], attempt));
    };
    let expected = ExpectedPayment {
        order_id: &attempt.provider_order_id,
        payment_key: None,
        amount,
    };
    match provider_fact::judge(&expected, fact) {
        Verdict::Captured => match PaymentKey::parse(fact.payment_key.clone()) {
            Ok(payment_key) => Some(ChargeOutcome::Approved {
                payment_key,
                approved_at: fact.approved_at.unwrap_or(now),
            }),
            Err(_) => Some(differs(fact, &[Difference::PaymentKey], attempt)),
        },
        Verdict::NotCompleted => Some(not_charged(
            "the provider reports the charge was not completed",
        )),
        Verdict::Pending => None,
        Verdict::Differs(differences) => Some(differs(fact, &differences, attempt)),
    }
}

fn differs(
    fact: &PaymentFact,
    differences: &[Difference],
    attempt: &InFlightAttempt,
) -> ChargeOutcome {
    let names: Vec<&str> = differences.iter().map(|d| d.name()).collect();
    ChargeOutcome::Refused {
        failure: ProviderFailure {
            class: FailureClass::Unclassified,
            provider_code: CODE_PROVIDER_DIFFERS.into(),
            provider_message: format!(
                "the provider reports {} {} {} for this cycle, not {} {} ({} differ)",
                fact.provider_status,
                fact.amount_minor,
                fact.currency,
                attempt.amount_minor,
                attempt.currency,
                names.join(", ")
            ),
        },
    }
}
