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
        }
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

    // -----------------------------------------------------------------------------------------
    // Billing keys
    // -----------------------------------------------------------------------------------------

    /// Issues a billing key at the provider from the auth key its card window returned, and keeps
    /// it encrypted with the card facts. The key itself is never returned, logged or stored in
    /// clear.
    pub async fn register_billing_key(
        &self,
        customer_id: &CustomerId,
        auth_key: &str,
        context: &RequestContext,
    ) -> Result<BillingKeyInfo, BillingError> {
        let issued = self
            .gateway
            .issue_billing_key(&IssueBillingKeyRequest {
                customer_key: customer_id.to_string(),
                auth_key: auth_key.to_string(),
            })
            .await
            .map_err(|error| match error {
                GatewayError::Refused(failure) => BillingError::Refused(failure),
                // Issuing moves no money: whatever happened, the client may simply ask again
                // with the same auth key.
                GatewayError::OutcomeUnknown { .. } => BillingError::ProviderUnavailable {
                    retry_after_ms: 1_000,
                },
                GatewayError::NotSent { retry_after_ms, .. } => BillingError::ProviderUnavailable {
                    retry_after_ms: retry_after_ms.unwrap_or(1_000),
                },
            })?;
        let billing_key_id = BillingKeyId::generate();
        let card = CardSummary {
            issuer_code: issued.card.issuer_code.chars().take(16).collect(),
            last4: issued.card.last4.chars().take(4).collect(),
            card_type: issued.card.card_type.chars().take(16).collect(),
            expiry: issued.card.expiry.clone(),
        };
        let registered = BillingKeyRegistered {
            secret: self
                .cipher
                .encrypt(&issued.billing_key, customer_id, &billing_key_id),
            billing_key_id: billing_key_id.clone(),
            provider: self.gateway.provider_name().to_string(),
            customer_key: issued.customer_key,
            card,
            at: self.clock.now(),
        };
        let executed = self
            .executor
            .execute(
                &self.customers,
                &customer::stream_id(customer_id),
                CustomerCommand::RegisterBillingKey(registered),
                context,
            )
            .await?;
        tracing::info!(%customer_id, %billing_key_id, "billing key registered");
        key_info(customer_id, &billing_key_id, &executed.state, false)
    }

    pub async fn revoke_billing_key(
        &self,
        customer_id: &CustomerId,
        billing_key_id: &BillingKeyId,
        reason: String,
        context: &RequestContext,
    ) -> Result<BillingKeyInfo, BillingError> {
        let executed = self
            .executor
            .execute(
                &self.customers,
                &customer::stream_id(customer_id),
                CustomerCommand::RevokeBillingKey {
                    billing_key_id: billing_key_id.clone(),
                    reason,
                    at: self.clock.now(),
                },
                context,
            )
            .await?;
        key_info(
            customer_id,
            billing_key_id,
            &executed.state,
            executed.events.is_empty(),
        )
    }

    pub async fn billing_key(
        &self,
        customer_id: &CustomerId,
        billing_key_id: &BillingKeyId,
    ) -> Result<BillingKeyInfo, BillingError> {
        let (_, state) = self
            .executor
            .load(&self.customers, &customer::stream_id(customer_id))
            .await?;
        key_info(customer_id, billing_key_id, &state, false)
    }

    // -----------------------------------------------------------------------------------------
    // Subscriptions
    // -----------------------------------------------------------------------------------------

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

    /// The subscription as the command side knows it; `None` when it does not exist.
    pub async fn load_subscription(
        &self,
        subscription_id: &SubscriptionId,
    ) -> Result<Option<SubscriptionSnapshot>, BillingError> {
        let (version, state) = self
            .executor
            .load(
                &self.subscriptions,
                &subscription::stream_id(subscription_id),
            )
            .await?;
        if version == 0 {
            return Ok(None);
        }
        let snapshot = self
            .snapshot(
                Executed {
                    state,
                    version,
                    events: vec![],
                    append: None,
                },
                false,
            )
            .await?;
        Ok(Some(snapshot))
    }

    /// Starts a subscription. With no anchor (or an anchor now) the first cycle is charged before
    /// the answer, so the answer says whether it was paid.
    pub async fn start(
        &self,
        input: StartSubscriptionInput,
        context: &RequestContext,
    ) -> Result<SubscriptionSnapshot, BillingError> {
        let level = self
            .config
            .catalogue
            .level_of(&input.plan_id)
            .ok_or_else(|| BillingError::UnknownPlan(input.plan_id.to_string()))?;
        let (_, customer) = self
            .executor
            .load(&self.customers, &customer::stream_id(&input.customer_id))
            .await?;
        customer.active_billing_key(&input.billing_key_id)?;
        let now = self.clock.now();
        if input.anchor.unwrap_or(now) <= now {
            // Its first charge is due at once: refuse the whole start rather than record a
            // subscription whose charge the kill switch would then hold back.
            self.check_payments_allowed().await?;
        }
        let subscription_id = input
            .subscription_id
            .unwrap_or_else(SubscriptionId::generate);
        if self.load_subscription(&subscription_id).await?.is_some() {
            return Err(BillingError::Subscription(SubscriptionError::AlreadyExists));
        }
        // Linked first: if the process dies before the subscription starts, the link points at
        // an empty stream, which every reader treats as no subscription.
        self.executor
            .execute(
                &self.customers,
                &customer::stream_id(&input.customer_id),
                CustomerCommand::LinkSubscription {
                    subscription_id: subscription_id.clone(),
                    at: now,
                },
                context,
            )
            .await?;
        let anchor = input.anchor.unwrap_or(now);
        let order_name = input
            .order_name
            .unwrap_or_else(|| format!("{} subscription", input.plan_id));
        let executed = self
            .execute(
                &subscription_id,
                SubscriptionCommand::Start(SubscriptionStarted {
                    subscription_id: subscription_id.clone(),
                    customer_id: input.customer_id,
                    plan_id: input.plan_id,
                    membership_level: level,
                    amount: input.amount,
                    interval: input.interval,
                    billing_key_id: input.billing_key_id,
                    anchor,
                    order_name,
                    at: now,
                }),
                context,
            )
            .await?;
        tracing::info!(%subscription_id, %anchor, "subscription started");
        if anchor <= now {
            return self
                .charge(&subscription_id, AttemptTrigger::Scheduled, context)
                .await;
        }
        self.snapshot(executed, false).await
    }

    /// Charges the current cycle now: `Admin` whenever the cycle has started (retry timing and
    /// review states do not hold an admin back), `Scheduled` only when a charge is due.
    pub async fn charge(
        &self,
        subscription_id: &SubscriptionId,
        trigger: AttemptTrigger,
        context: &RequestContext,
    ) -> Result<SubscriptionSnapshot, BillingError> {
        self.check_payments_allowed().await?;
        let now = self.clock.now();
        let executed = self
            .execute(
                subscription_id,
                SubscriptionCommand::StartChargeAttempt { trigger, at: now },
                context,
            )
            .await?;
        let attempt =
            executed.state.in_flight.clone().ok_or_else(|| {
                BillingError::Internal("attempt started but not in flight".into())
            })?;
        self.drive_attempt(subscription_id, &executed.state, &attempt, now, context)
            .await?;
        self.current_with_position(subscription_id).await
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

    /// A new payment method; a subscription that waits for money is charged at once.
    pub async fn change_payment_method(
        &self,
        subscription_id: &SubscriptionId,
        billing_key_id: BillingKeyId,
        context: &RequestContext,
    ) -> Result<SubscriptionSnapshot, BillingError> {
        let snapshot = self.current(subscription_id).await?;
        let terms = snapshot
            .state
            .terms
            .as_ref()
            .ok_or(BillingError::Subscription(SubscriptionError::NotFound))?;
        let (_, customer) = self
            .executor
            .load(&self.customers, &customer::stream_id(&terms.customer_id))
            .await?;
        customer.active_billing_key(&billing_key_id)?;
        let executed = self
            .execute(
                subscription_id,
                SubscriptionCommand::ChangePaymentMethod {
                    billing_key_id,
                    at: self.clock.now(),
                },
                context,
            )
            .await?;
        let charge_now = executed.events.iter().any(
            |e| matches!(e, SubscriptionEvent::PaymentMethodChanged(changed) if changed.charge_now),
        );
        if charge_now {
            match self
                .charge(
                    subscription_id,
                    AttemptTrigger::PaymentMethodChanged,
                    context,
                )
                .await
            {
                // A scheduler got there first, or the cycle is already paid: fine either way.
                Err(BillingError::Subscription(
                    SubscriptionError::AttemptInProgress | SubscriptionError::NothingDue,
                )) => {}
                other => return other,
            }
            return self.current_with_position(subscription_id).await;
        }
        let replay = executed.events.is_empty();
        self.snapshot(executed, replay).await
    }

    /// Cancels at the end of the paid period (at once when nothing paid is left).
    pub async fn cancel_at_period_end(
        &self,
        subscription_id: &SubscriptionId,
        context: &RequestContext,
    ) -> Result<SubscriptionSnapshot, BillingError> {
        let executed = self
            .execute(
                subscription_id,
                SubscriptionCommand::CancelAtPeriodEnd {
                    at: self.clock.now(),
                },
                context,
            )
            .await?;
        let replay = executed.events.is_empty();
        self.snapshot(executed, replay).await
    }

    pub async fn resume(
        &self,
        subscription_id: &SubscriptionId,
        context: &RequestContext,
    ) -> Result<SubscriptionSnapshot, BillingError> {
        let executed = self
            .execute(
                subscription_id,
                SubscriptionCommand::Resume {
                    at: self.clock.now(),
                },
                context,
            )
            .await?;
        let replay = executed.events.is_empty();
        self.snapshot(executed, replay).await
    }

    pub async fn end_now(
        &self,
        subscription_id: &SubscriptionId,
        context: &RequestContext,
    ) -> Result<SubscriptionSnapshot, BillingError> {
        let executed = self
            .execute(
                subscription_id,
                SubscriptionCommand::EndNow {
                    at: self.clock.now(),
                },
                context,
            )
            .await?;
        let replay = executed.events.is_empty();
        self.snapshot(executed, replay).await
    }

    /// Calls the provider for an attempt recorded in `state` and records the outcome at `at`.
    async fn drive_attempt(
        &self,
        subscription_id: &SubscriptionId,
        state: &Subscription,
        attempt: &InFlightAttempt,
        at: DateTime<Utc>,
        context: &RequestContext,
    ) -> Result<Driven, BillingError> {
        let terms = state
            .terms
            .as_ref()
            .ok_or(BillingError::Subscription(SubscriptionError::NotFound))?;
        let outcome = match self.billing_key_for(terms, attempt).await? {
            Err(failure) => ChargeOutcome::Refused { failure },
            Ok((secret, customer_key)) => {
                let request = ChargeBillingKeyRequest {
                    billing_key: secret,
                    customer_key,
                    order_id: attempt.provider_order_id.clone(),
                    order_name: terms.order_name.clone(),
                    amount_minor: attempt.amount_minor,
                    currency: attempt.currency,
                    idempotency_key: attempt.idempotency_key.clone(),
                };
                match self.gateway.charge_billing_key(&request).await {
                    Ok(payment) => charge_outcome(attempt, &payment.fact(), at).unwrap_or(
                        ChargeOutcome::Unknown {
                            reason: format!(
                                "the provider reports the charge {}",
                                payment.provider_status
                            ),
                        },
                    ),
                    Err(GatewayError::Refused(failure))
                        if failure.class == FailureClass::AlreadyProcessed =>
                    {
                        self.outcome_from_lookup(attempt)
                            .await
                            .unwrap_or(ChargeOutcome::Unknown {
                                reason: format!(
                                    "provider reports {}; the charge is not found yet",
                                    failure.provider_code
                                ),
                            })
                    }
                    Err(GatewayError::Refused(failure)) => ChargeOutcome::Refused { failure },
                    Err(GatewayError::OutcomeUnknown { reason }) => {
                        ChargeOutcome::Unknown { reason }
                    }
                    Err(GatewayError::NotSent { reason, .. }) => ChargeOutcome::Refused {
                        // Certainly not charged: a provider error, retried in minutes.
                        failure: ProviderFailure {
                            class: FailureClass::ProviderError,
                            provider_code: CODE_PROVIDER_UNAVAILABLE.into(),
                            provider_message: reason,
                        },
                    },
                }
            }
        };
        self.record_outcome(
            subscription_id,
            terms,
            attempt,
            outcome,
            OutcomeSource::Request,
            at,
            context,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn record_outcome(
        &self,
        subscription_id: &SubscriptionId,
        terms: &SubscriptionStarted,
        attempt: &InFlightAttempt,
        outcome: ChargeOutcome,
        source: OutcomeSource,
        at: DateTime<Utc>,
        context: &RequestContext,
    ) -> Result<Driven, BillingError> {
        if let ChargeOutcome::Refused { failure } = &outcome {
            if failure.class == FailureClass::BillingKeyInvalid
                && failure.provider_code != CODE_BILLING_KEY_REVOKED
            {
                self.mark_key_expired(terms, attempt, &failure.provider_code, at, context)
                    .await;
            }
        }
        let driven = match &outcome {
            ChargeOutcome::Approved { .. } => Driven::Succeeded,
            ChargeOutcome::Refused { failure }
                if failure.class != FailureClass::AlreadyProcessed =>
            {
                Driven::Failed
            }
            _ => Driven::Unknown,
        };
        let recorded = self
            .execute(
                subscription_id,
                SubscriptionCommand::RecordChargeOutcome {
                    cycle: attempt.cycle,
                    attempt: attempt.attempt,
                    outcome,
                    source,
                    policy: self.config.dunning.clone(),
                    at,
                },
                context,
            )
            .await?;
        for event in &recorded.events {
            match event {
                SubscriptionEvent::ChargeSucceeded(s) => tracing::info!(
                    %subscription_id, cycle = s.cycle, attempt = s.attempt, amount_minor = s.amount_minor,
                    "subscription charged"
                ),
                SubscriptionEvent::ChargeFailed(f) => tracing::info!(
                    %subscription_id, cycle = f.cycle, attempt = f.attempt,
                    error_code = %f.failure.provider_code, status = recorded.state.status.as_str(),
                    "subscription charge failed"
                ),
                SubscriptionEvent::ChargeOutcomeUnknown(u) => tracing::warn!(
                    %subscription_id, cycle = u.cycle, attempt = u.attempt, reason = %u.reason,
                    "subscription charge outcome unknown; it will be looked up"
                ),
                _ => {}
            }
        }
        Ok(driven)
    }

    /// The clear billing key and customer key for an attempt, or the failure to record when the
    /// key cannot be charged (revoked, expired, missing, undecryptable): the provider is not
    /// called then.
    async fn billing_key_for(
        &self,
        terms: &SubscriptionStarted,
        attempt: &InFlightAttempt,
    ) -> Result<Result<(payledger_gateway::BillingKeySecret, String), ProviderFailure>, BillingError>
    {
        let (_, customer) = self
            .executor
            .load(&self.customers, &customer::stream_id(&terms.customer_id))
            .await?;
        let refusal = |class, code: &str, message: &str| ProviderFailure {
            class,
            provider_code: code.to_string(),
            provider_message: message.to_string(),
        };
        let Some(key) = customer.billing_keys.get(&attempt.billing_key_id) else {
            return Ok(Err(refusal(
                FailureClass::BillingKeyInvalid,
                CODE_BILLING_KEY_NOT_FOUND,
                "the subscription's billing key is not registered for this customer",
            )));
        };
        match key.status {
            BillingKeyStatus::Active => {}
            BillingKeyStatus::Revoked => {
                return Ok(Err(refusal(
                    FailureClass::BillingKeyInvalid,
                    CODE_BILLING_KEY_REVOKED,
                    "the billing key was revoked",
                )))
            }
            BillingKeyStatus::Expired => {
                return Ok(Err(refusal(
                    FailureClass::BillingKeyInvalid,
                    CODE_BILLING_KEY_EXPIRED,
                    "the provider reported the billing key invalid",
                )))
            }
        }
        match self
            .cipher
            .decrypt(&key.secret, &terms.customer_id, &attempt.billing_key_id)
        {
            Ok(secret) => Ok(Ok((secret, key.customer_key.clone()))),
            Err(error) => {
                // Our configuration, not the customer's card: a person has to look.
                tracing::error!(
                    subscription_id = %terms.subscription_id,
                    billing_key_id = %attempt.billing_key_id,
                    %error,
                    "billing key cannot be decrypted"
                );
                let message = match error {
                    CipherError::UnknownKeyId(_) => "encrypted with a key no longer configured",
                    _ => "the stored billing key does not decrypt",
                };
                Ok(Err(refusal(
                    FailureClass::Unclassified,
                    CODE_BILLING_KEY_UNDECRYPTABLE,
                    message,
                )))
            }
        }
    }

    async fn mark_key_expired(
        &self,
        terms: &SubscriptionStarted,
        attempt: &InFlightAttempt,
        provider_code: &str,
        at: DateTime<Utc>,
        context: &RequestContext,
    ) {
        let result = self
            .executor
            .execute(
                &self.customers,
                &customer::stream_id(&terms.customer_id),
                CustomerCommand::MarkBillingKeyExpired {
                    billing_key_id: attempt.billing_key_id.clone(),
                    provider_code: provider_code.chars().take(200).collect(),
                    at,
                },
                context,
            )
            .await;
        if let Err(error) = result {
            // The subscription's own record of the failure is what matters; this is bookkeeping.
            tracing::warn!(billing_key_id = %attempt.billing_key_id, %error, "failed to mark the billing key expired");
        }
    }

    /// What the provider has for the attempt's cycle: `Some(Approved)` when it charged it,
    /// `Some(Refused)` when it certainly did not, `None` when it cannot tell now.
    async fn outcome_from_lookup(&self, attempt: &InFlightAttempt) -> Option<ChargeOutcome> {
        match self
            .gateway
            .payment_by_order_id(&attempt.provider_order_id)
            .await
        {
            Ok(Some(payment)) => charge_outcome(attempt, &payment.fact(), self.clock.now()),
            Ok(None) => Some(not_charged("the provider has no payment for this cycle")),
            Err(error) => {
                tracing::warn!(order_id = %attempt.provider_order_id, %error, "subscription charge lookup failed");
                None
            }
        }
    }

    /// Settles a stale attempt: what the provider charged is recorded; when it has no payment the
    /// same attempt (same idempotency key) is sent again, or given up as a provider error after
    /// too many sends.
    async fn resolve(
        &self,
        subscription_id: &SubscriptionId,
        state: &Subscription,
        at: DateTime<Utc>,
        context: &RequestContext,
    ) -> Result<Driven, BillingError> {
        let terms = state
            .terms
            .as_ref()
            .ok_or(BillingError::Subscription(SubscriptionError::NotFound))?;
        let attempt = state.in_flight.clone().ok_or(BillingError::Subscription(
            SubscriptionError::NoAttemptInFlight,
        ))?;
        let Some(looked_up) = self.outcome_from_lookup(&attempt).await else {
            return Ok(Driven::Unknown);
        };
        if matches!(looked_up, ChargeOutcome::Approved { .. })
            || matches!(&looked_up, ChargeOutcome::Refused { failure } if failure.provider_code == CODE_PROVIDER_DIFFERS)
        {
            return self
                .record_outcome(
                    subscription_id,
                    terms,
                    &attempt,
                    looked_up,
                    OutcomeSource::Reconciler,
                    at,
                    context,
                )
                .await;
        }
        match self
            .execute(
                subscription_id,
                SubscriptionCommand::RedriveAttempt { at },
                context,
            )
            .await
        {
            Ok(redriven) => {
                tracing::info!(%subscription_id, cycle = attempt.cycle, attempt = attempt.attempt, "stale subscription charge sent again");
                self.drive_attempt(subscription_id, &redriven.state, &attempt, at, context)
                    .await
            }
            Err(BillingError::Subscription(SubscriptionError::RedrivesExhausted)) => {
                self.record_outcome(
                    subscription_id,
                    terms,
                    &attempt,
                    looked_up,
                    OutcomeSource::Reconciler,
                    at,
                    context,
                )
                .await
            }
            Err(other) => Err(other),
        }
    }

    // -----------------------------------------------------------------------------------------
    // The scheduler
    // -----------------------------------------------------------------------------------------

    /// One scheduler pass as of `as_of`: charges what is due (each cycle and attempt once, even
    /// with several processes running passes), settles stale attempts, ends cancelled
    /// subscriptions and suspends those whose grace ran out, catching up on everything missed
    /// while no pass ran; then claws back credits of refunded purchases. Events record `as_of`
    /// as their time.
    pub async fn run_due(
        &self,
        index: &dyn BillingIndex,
        as_of: DateTime<Utc>,
    ) -> Result<RunDueReport, BillingError> {
        let context = RequestContext::system("scheduler");
        let mut report = RunDueReport {
            as_of: Some(as_of),
            ..RunDueReport::default()
        };
        let due = index
            .due_subscriptions(as_of, self.config.max_due_per_pass)
            .await
            .map_err(BillingError::Index)?;
        for subscription_id in due {
            report.examined += 1;
            if let Err(error) = self
                .advance(&subscription_id, as_of, &context, &mut report)
                .await
            {
                report.errors += 1;
                tracing::warn!(%subscription_id, %error, "scheduler failed to advance a subscription");
            }
        }
        let purchases = index
            .purchases_with_unapplied_refunds(self.config.max_refund_syncs_per_pass)
            .await
            .map_err(BillingError::Index)?;
        for (customer_id, purchase_id) in purchases {
            match self
                .sync_purchase_refund(&customer_id, &purchase_id, &context)
                .await
            {
                Ok(true) => report.refunds_clawed_back += 1,
                Ok(false) => {}
                Err(error) => {
                    report.errors += 1;
                    tracing::warn!(%customer_id, %purchase_id, %error, "failed to claw back credits");
                }
            }
        }
        Ok(report)
    }

    /// Does whatever is due for one subscription at `as_of`, repeatedly (missed cycles), within
    /// the per-subscription bound.
    async fn advance(
        &self,
        subscription_id: &SubscriptionId,
        as_of: DateTime<Utc>,
        context: &RequestContext,
        report: &mut RunDueReport,
    ) -> Result<(), BillingError> {
        for _ in 0..self.config.max_actions_per_subscription {
            let (_, state) = self
                .executor
                .load(
                    &self.subscriptions,
                    &subscription::stream_id(subscription_id),
                )
                .await?;
            let Some(action) = state.due_action(as_of) else {
                return Ok(());
            };
            let result = match action {
                DueAction::Charge => {
                    if let Err(BillingError::PaymentsSuspended(_)) =
                        self.check_payments_allowed().await
                    {
                        // Not an attempt: nothing is recorded, no retry is counted, and the
                        // charge stays due for the first pass after the switch is off.
                        report.held_by_kill_switch += 1;
                        return Ok(());
                    }
                    match self
                        .execute(
                            subscription_id,
                            SubscriptionCommand::StartChargeAttempt {
                                trigger: AttemptTrigger::Scheduled,
                                at: as_of,
                            },
                            context,
                        )
                        .await
                    {
                        Ok(executed) => {
                            report.attempts += 1;
                            let attempt = executed.state.in_flight.clone().ok_or_else(|| {
                                BillingError::Internal("attempt started but not in flight".into())
                            })?;
                            self.drive_attempt(
                                subscription_id,
                                &executed.state,
                                &attempt,
                                as_of,
                                context,
                            )
                            .await
                            .map(Some)
                        }
                        Err(e) => Err(e),
                    }
                }
                DueAction::Resolve { .. } => {
                    report.resolved += 1;
                    match self.resolve(subscription_id, &state, as_of, context).await {
                        // Nothing more can be done until the provider answers lookups again.
                        Ok(Driven::Unknown) => {
                            report.outcome_unknown += 1;
                            return Ok(());
                        }
                        other => other.map(Some),
                    }
                }
                DueAction::EndAtPeriodEnd => self
                    .execute(
                        subscription_id,
                        SubscriptionCommand::EndAtPeriodEnd { at: as_of },
                        context,
                    )
                    .await
                    .map(|_| {
                        report.ended += 1;
                        None
                    }),
                DueAction::SuspendAfterGrace => self
                    .execute(
                        subscription_id,
                        SubscriptionCommand::SuspendAfterGrace { at: as_of },
                        context,
                    )
                    .await
                    .map(|_| {
                        report.suspended += 1;
                        None
                    }),
            };
            match result {
                Ok(Some(Driven::Succeeded)) => report.succeeded += 1,
                Ok(Some(Driven::Failed)) => report.failed += 1,
                Ok(Some(Driven::Unknown)) => {
                    report.outcome_unknown += 1;
                    return Ok(());
                }
                Ok(None) => {}
                // Another process did it first (the version check let only one through).
                Err(BillingError::Subscription(
                    SubscriptionError::AttemptInProgress | SubscriptionError::NothingDue,
                ))
                | Err(BillingError::Contention) => {
                    report.skipped += 1;
                    return Ok(());
                }
                Err(other) => return Err(other),
            }
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Membership and wallets
    // -----------------------------------------------------------------------------------------

    /// The highest membership level the customer's subscriptions give now (0: none).
    pub async fn membership_level(&self, customer_id: &CustomerId) -> Result<u8, BillingError> {
        let (_, customer) = self
            .executor
            .load(&self.customers, &customer::stream_id(customer_id))
            .await?;
        let now = self.clock.now();
        let mut level = 0;
        for subscription_id in &customer.subscriptions {
            let (_, state) = self
                .executor
                .load(
                    &self.subscriptions,
                    &subscription::stream_id(subscription_id),
                )
                .await?;
            // Only the customer's own: a link can point at a subscription id another customer
            // started first (the start that linked it then failed).
            let owned = state
                .terms
                .as_ref()
                .is_some_and(|terms| &terms.customer_id == customer_id);
            if owned {
                level = level.max(state.membership_level(now));
            }
        }
        Ok(level)
    }

    async fn execute_wallet(
        &self,
        customer_id: &CustomerId,
        command: WalletCommand,
        context: &RequestContext,
    ) -> Result<WalletSnapshot, BillingError> {
        let executed = self
            .executor
            .execute(
                &self.wallets,
                &wallet::stream_id(customer_id),
                command,
                context,
            )
            .await?;
        Ok(WalletSnapshot {
            customer_id: customer_id.clone(),
            replay: executed.events.is_empty(),
            position: executed.append.as_ref().map(|a| a.last_position),
            membership_level: self.membership_level(customer_id).await?,
            state: executed.state,
            version: executed.version,
        })
    }

    pub async fn wallet(&self, customer_id: &CustomerId) -> Result<WalletSnapshot, BillingError> {
        let (version, state) = self
            .executor
            .load(&self.wallets, &wallet::stream_id(customer_id))
            .await?;
        Ok(WalletSnapshot {
            customer_id: customer_id.clone(),
            state,
            version,
            position: None,
            membership_level: self.membership_level(customer_id).await?,
            replay: false,
        })
    }

    async fn paid_order(
        &self,
        order_id: &OrderId,
        customer_id: &CustomerId,
    ) -> Result<Order, BillingError> {
        let (version, order) = self
            .executor
            .load(&self.orders, &order::stream_id(order_id))
            .await?;
        let placed = order
            .placed
            .as_ref()
            .filter(|_| version > 0)
            .ok_or(BillingError::OrderNotFound)?;
        if &placed.customer_id != customer_id {
            return Err(BillingError::CustomerMismatch("order"));
        }
        if order.captured_minor <= 0 {
            return Err(BillingError::OrderNotPaid);
        }
        Ok(order)
    }

    /// Credits bought with a paid order of the customer. Needs membership level ≥ 1.
    pub async fn purchase_credits(
        &self,
        customer_id: &CustomerId,
        purchase_id: Option<CreditOperationId>,
        credits: i64,
        order_id: &OrderId,
        context: &RequestContext,
    ) -> Result<WalletSnapshot, BillingError> {
        let order = self.paid_order(order_id, customer_id).await?;
        let currency = order
            .placed
            .as_ref()
            .map(|p| p.amount.currency())
            .ok_or(BillingError::OrderNotFound)?;
        let paid = Money::new(order.captured_minor, currency)
            .map_err(|e| BillingError::Internal(e.to_string()))?;
        let purchase_id = purchase_id.unwrap_or_else(CreditOperationId::generate);
        let membership_level = self.membership_level(customer_id).await?;
        let snapshot = self
            .execute_wallet(
                customer_id,
                WalletCommand::PurchaseCredits {
                    purchase_id: purchase_id.clone(),
                    credits,
                    membership_level,
                    order_id: order_id.clone(),
                    paid,
                    at: self.clock.now(),
                },
                context,
            )
            .await?;
        if order.refunded_minor > 0 {
            // Refunded before the credits were bought: take back its share at once.
            self.sync_purchase_refund(customer_id, &purchase_id, context)
                .await?;
            let replay = snapshot.replay;
            return Ok(WalletSnapshot {
                replay,
                ..self.wallet(customer_id).await?
            });
        }
        Ok(snapshot)
    }

    pub async fn spend_credits(
        &self,
        customer_id: &CustomerId,
        spend_id: Option<CreditOperationId>,
        credits: i64,
        reason: String,
        context: &RequestContext,
    ) -> Result<WalletSnapshot, BillingError> {
        self.execute_wallet(
            customer_id,
            WalletCommand::SpendCredits {
                spend_id: spend_id.unwrap_or_else(CreditOperationId::generate),
                credits,
                reason,
                at: self.clock.now(),
            },
            context,
        )
        .await
    }

    /// Claws back the credits of a purchase whose paying order was refunded since; `true` when
    /// something was recorded.
    pub async fn sync_purchase_refund(
        &self,
        customer_id: &CustomerId,
        purchase_id: &CreditOperationId,
        context: &RequestContext,
    ) -> Result<bool, BillingError> {
        let (_, wallet_state) = self
            .executor
            .load(&self.wallets, &wallet::stream_id(customer_id))
            .await?;
        let purchase = wallet_state
            .purchases
            .get(purchase_id)
            .ok_or(BillingError::Wallet(WalletError::PurchaseNotFound))?;
        let order = self.paid_order(&purchase.order_id, customer_id).await?;
        let snapshot = self
            .execute_wallet(
                customer_id,
                WalletCommand::ApplyRefund {
                    purchase_id: purchase_id.clone(),
                    refunded_minor_total: order.refunded_minor.min(purchase.paid_minor),
                    at: self.clock.now(),
                },
                context,
            )
            .await?;
        Ok(!snapshot.replay)
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
