//! The payment flows around the order aggregate: place, confirm, refund, reconcile, expire.
//!
//! The order of steps is what makes them safe:
//! 1. record the intent (`PaymentConfirmationStarted`, `RefundRequested`) with a version check —
//!    only one of several concurrent requests gets through;
//! 2. call the provider with the idempotency key recorded in step 1 — a retry is the same call;
//! 3. record the outcome. If the process dies between 2 and 3, the reconciler asks the provider.

use crate::clock::Clock;
use crate::context::RequestContext;
use crate::executor::{AggregateCache, ExecuteError, Executed, Executor, StoreFailure};
use crate::switches::{SalesCheckError, SalesSwitches};
use chrono::{DateTime, Duration, Utc};
use payledger_domain::ids::{CustomerId, OrderId, PayeeId, PaymentKey, RefundId};
use payledger_domain::money::Money;
use payledger_domain::operations::SalesBlock;
use payledger_domain::order::{
    self, Order, OrderCommand, OrderError, OrderEvent, OrderStatus, OutcomeSource, PlaceOrder,
    ProviderOutcome, RefundOutcome, RefundStatus,
};
use payledger_domain::payee::{self, Payee};
use payledger_domain::provider_failure::{FailureClass, ProviderFailure};
use payledger_gateway::{
    CancelRequest, ClientAction, ConfirmRequest, GatewayError, PaymentGateway, ProviderRegistry,
    RefundAnswer, RegistryError,
};
use std::sync::Arc;
use tracing::Instrument;

mod provider_events;
mod refund_discrepancies;

/// Payees kept in memory per process for the booking check; a payee's state is a few fields.
const PAYEE_CACHE_CAPACITY: usize = 10_000;

#[derive(Debug, Clone)]
pub struct PaymentsConfig {
    /// How long a duplicate confirm waits for the first one's outcome before answering 409.
    pub duplicate_confirm_wait_ms: u64,
    /// Orders kept in memory per process.
    pub order_cache_capacity: usize,
}

impl Default for PaymentsConfig {
    fn default() -> Self {
        PaymentsConfig {
            duplicate_confirm_wait_ms: 15_000,
            order_cache_capacity: 100_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error(transparent)]
    Order(#[from] OrderError),
    #[error("claimed amount {claimed_minor} differs from the order amount {expected_minor}")]
    AmountMismatch {
        claimed_minor: i64,
        expected_minor: i64,
    },
    #[error("the provider refused: {} ({})", .0.provider_code, .0.provider_message)]
    Refused(ProviderFailure),
    #[error("the payment provider is unavailable")]
    ProviderUnavailable { retry_after_ms: u64 },
    #[error("the ledger is unavailable: {0}")]
    Unavailable(String),
    #[error("the order is being changed by other requests; retry")]
    Contention,
    #[error("internal error: {0}")]
    Internal(String),
    /// The provider reports the payment differently from the order (amount, currency, key,
    /// or cancelled there): recorded as a discrepancy, nothing captured, support must review.
    #[error("the provider reports the payment differently ({}); nothing was captured and support must review it", .differences.join(", "))]
    ProviderDiscrepancy { differences: Vec<String> },
    /// The order names a provider this deployment has not configured, or one that cannot take
    /// its currency. At placement nothing is stored.
    #[error(transparent)]
    Provider(#[from] RegistryError),
    /// A kill switch stops new sales (runbook §6); nothing was recorded or charged.
    #[error("{}", crate::switches::describe_block(.0))]
    SalesSuspended(SalesBlock),
    /// The payee serves a penalty suspension (three warnings from claims: seven days) and takes
    /// no new bookings until `until`; nothing was recorded.
    #[error("payee {payee_id} takes no bookings until {until}: suspended after three warnings")]
    BookingsSuspended {
        payee_id: PayeeId,
        until: DateTime<Utc>,
    },
}

impl From<StoreFailure> for PaymentError {
    fn from(failure: StoreFailure) -> Self {
        match failure {
            StoreFailure::Unavailable(e) => PaymentError::Unavailable(e),
            StoreFailure::Contention => PaymentError::Contention,
            StoreFailure::Internal(e) => PaymentError::Internal(e),
        }
    }
}

impl From<ExecuteError<OrderError>> for PaymentError {
    fn from(error: ExecuteError<OrderError>) -> Self {
        match error.into_domain() {
            Ok(OrderError::ProviderDiscrepancy) => PaymentError::ProviderDiscrepancy {
                differences: Vec::new(),
            },
            Ok(refused) => PaymentError::Order(refused),
            Err(failure) => failure.into(),
        }
    }
}

/// An order after a command: the authoritative state, straight from the command side.
#[derive(Debug, Clone)]
pub struct OrderSnapshot {
    pub state: Order,
    pub version: i64,
    /// Global position of the last event this request appended (or read), for read-your-writes.
    pub position: Option<i64>,
    /// The request changed nothing: it repeated one already answered.
    pub replay: bool,
}

/// How a confirm ended.
#[derive(Debug, Clone)]
pub enum ConfirmOutcome {
    Captured(OrderSnapshot),
    /// Sent, but the provider has not charged yet: its answer is unknown (the reconciler will
    /// settle it) or it waits for the customer, with what the client must do
    /// ([`ClientAction`]: Stripe 3-D Secure). The action is never recorded.
    Pending(OrderSnapshot, Option<ClientAction>),
}

#[derive(Debug, Clone)]
pub struct PlaceOrderInput {
    pub order_id: Option<OrderId>,
    pub amount: Money,
    pub customer_id: CustomerId,
    pub payee_id: PayeeId,
    pub order_name: String,
    pub service_starts_at: Option<DateTime<Utc>>,
    /// The provider to pay with (`toss`, `stripe`); `None`: the deployment's default.
    pub provider: Option<String>,
}

/// What the reconciler did with one order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reconciled {
    NothingPending,
    TooRecent,
    Settled(Vec<String>),
    StillUnknown(String),
    /// A refund awaiting the provider whose request, as the provider reports it, differs from
    /// it: recorded on the order (`RefundDiscrepancyRecorded`, once), and it keeps waiting for
    /// support to review it. Each entry names a refund and what differs.
    HeldForReview(Vec<String>),
}

/// Told of every discrepancy recorded between a provider and the ledger, with the provider's
/// name (the binary counts them in its metrics; the app layer knows no metrics).
pub type DiscrepancyObserver = Arc<dyn Fn(&str) + Send + Sync>;

pub struct Payments {
    executor: Arc<Executor>,
    discrepancy_observer: Option<DiscrepancyObserver>,
    orders: AggregateCache<Order>,
    /// Payees, for the penalty suspension a booking is checked against.
    payees: AggregateCache<Payee>,
    /// The configured connectors; each order's calls go to the one it was placed with.
    providers: Arc<ProviderRegistry>,
    clock: Arc<dyn Clock>,
    config: PaymentsConfig,
    /// Kill switches checked before a new order or payment; none: every sale goes ahead.
    sales_switches: Option<Arc<SalesSwitches>>,
}

impl Payments {
    /// Payments with one connector (the default for every order).
    pub fn new(
        executor: Arc<Executor>,
        gateway: Arc<dyn PaymentGateway>,
        clock: Arc<dyn Clock>,
        config: PaymentsConfig,
    ) -> Payments {
        Payments::with_providers(
            executor,
            Arc::new(ProviderRegistry::new(gateway)),
            clock,
            config,
        )
    }

    /// Payments over every connector in `providers`.
    pub fn with_providers(
        executor: Arc<Executor>,
        providers: Arc<ProviderRegistry>,
        clock: Arc<dyn Clock>,
        config: PaymentsConfig,
    ) -> Payments {
        Payments {
            orders: AggregateCache::new(config.order_cache_capacity),
            payees: AggregateCache::new(PAYEE_CACHE_CAPACITY),
            executor,
            providers,
            clock,
            config,
            sales_switches: None,
            discrepancy_observer: None,
        }
    }

    /// Calls `observer` with the provider's name for every discrepancy recorded.
    pub fn with_discrepancy_observer(mut self, observer: DiscrepancyObserver) -> Payments {
        self.discrepancy_observer = Some(observer);
        self
    }

    /// Records what the provider said about the pending confirmation; a discrepancy is logged
    /// and counted where it is recorded.
    async fn record_confirmation_outcome(
        &self,
        order_id: &OrderId,
        outcome: ProviderOutcome,
        source: OutcomeSource,
        context: &RequestContext,
    ) -> Result<Executed<Order>, PaymentError> {
        let recorded = self
            .execute(
                order_id,
                OrderCommand::RecordConfirmationOutcome {
                    outcome,
                    source,
                    at: self.clock.now(),
                },
                context,
            )
            .await?;
        for event in &recorded.events {
            if let OrderEvent::PaymentDiscrepancyRecorded(differs) = event {
                tracing::warn!(
                    %order_id,
                    provider = %differs.provider,
                    provider_status = %differs.provider_status,
                    provider_amount_minor = differs.provider_amount_minor,
                    expected_amount_minor = differs.expected_amount_minor,
                    differences = ?differs.differences,
                    "the provider's payment differs from the order; nothing was captured, support must review"
                );
                if let Some(observer) = &self.discrepancy_observer {
                    observer(&differs.provider);
                }
            }
        }
        Ok(recorded)
    }

    /// Makes new orders and payments respect the kill switches.
    pub fn with_sales_switches(mut self, switches: Arc<SalesSwitches>) -> Payments {
        self.sales_switches = Some(switches);
        self
    }

    async fn check_sale(&self, payee_id: &PayeeId) -> Result<(), PaymentError> {
        match &self.sales_switches {
            Some(switches) => switches.check_sale(payee_id).await.map_err(|e| match e {
                SalesCheckError::Suspended(block) => PaymentError::SalesSuspended(block),
                SalesCheckError::Unavailable(e) => PaymentError::Unavailable(e),
            }),
            None => Ok(()),
        }
    }

    /// Records a payment made outside payledger as the order's capture (source `manual`).
    /// Callers claim the provider transaction id first (`Operations::record_external_payment`).
    pub async fn record_manual_payment(
        &self,
        order_id: &OrderId,
        provider_transaction_id: PaymentKey,
        amount_minor: i64,
        method: Option<String>,
        context: &RequestContext,
    ) -> Result<OrderSnapshot, PaymentError> {
        let executed = self
            .execute(
                order_id,
                OrderCommand::RecordManualPayment {
                    provider_transaction_id,
                    amount_minor,
                    method,
                    at: self.clock.now(),
                },
                context,
            )
            .await?;
        let replay = executed.events.is_empty();
        Ok(Self::snapshot(executed, replay))
    }

    /// Cancels the enrollment an order paid for (no refund by itself).
    pub async fn cancel_enrollment(
        &self,
        order_id: &OrderId,
        reason: String,
        context: &RequestContext,
    ) -> Result<OrderSnapshot, PaymentError> {
        let executed = self
            .execute(
                order_id,
                OrderCommand::CancelEnrollment {
                    reason,
                    at: self.clock.now(),
                },
                context,
            )
            .await?;
        Ok(Self::snapshot(executed, false))
    }

    /// The default provider's connector (billing keys and subscriptions use it).
    pub fn gateway(&self) -> &Arc<dyn PaymentGateway> {
        self.providers.default_connector()
    }

    pub fn providers(&self) -> &Arc<ProviderRegistry> {
        &self.providers
    }

    /// The connector of the provider an order was placed with.
    pub fn gateway_for(&self, order: &Order) -> Result<&Arc<dyn PaymentGateway>, PaymentError> {
        let placed = order
            .placed
            .as_ref()
            .ok_or(PaymentError::Order(OrderError::NotFound))?;
        Ok(self.providers.get(&placed.provider)?)
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    async fn execute(
        &self,
        order_id: &OrderId,
        command: OrderCommand,
        context: &RequestContext,
    ) -> Result<Executed<Order>, PaymentError> {
        Ok(self
            .executor
            .execute(&self.orders, &order::stream_id(order_id), command, context)
            .await?)
    }

    fn snapshot(executed: Executed<Order>, replay: bool) -> OrderSnapshot {
        OrderSnapshot {
            position: executed.append.as_ref().map(|a| a.last_position),
            state: executed.state,
            version: executed.version,
            replay,
        }
    }

    /// The order as the command side knows it; `None` when it does not exist.
    /// The order as this process last saw it, without reading the store (see
    /// [`AggregateCache::peek`]: only for facts that never change once recorded).
    pub fn peek_order(&self, order_id: &OrderId) -> Option<OrderSnapshot> {
        let (version, state) = self.orders.peek(&order::stream_id(order_id))?;
        Some(OrderSnapshot {
            state,
            version,
            position: None,
            replay: false,
        })
    }

    pub async fn load_order(
        &self,
        order_id: &OrderId,
    ) -> Result<Option<OrderSnapshot>, PaymentError> {
        let (version, state) = self
            .executor
            .load(&self.orders, &order::stream_id(order_id))
            .await?;
        Ok((version > 0).then_some(OrderSnapshot {
            state,
            version,
            position: None,
            replay: false,
        }))
    }

    /// A booking (an order with a service time) is a sale the payee's penalty suspension stops,
    /// whichever door it comes through.
    async fn check_bookings_allowed(&self, payee_id: &PayeeId) -> Result<(), PaymentError> {
        match self.booking_suspension(payee_id, self.clock.now()).await? {
            None => Ok(()),
            Some(until) => Err(PaymentError::BookingsSuspended {
                payee_id: payee_id.clone(),
                until,
            }),
        }
    }

    /// When `payee_id` may take a new booking again, if a penalty suspension (three warnings:
    /// seven days) runs at `at`; `None` when it may take one now.
    pub async fn booking_suspension(
        &self,
        payee_id: &PayeeId,
        at: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, PaymentError> {
        let payee = self.payee(payee_id).await?;
        Ok(payee.suspended_until.filter(|_| payee.is_suspended_at(at)))
    }

    /// A payee's warnings and suspension, from its stream.
    pub async fn payee(&self, payee_id: &PayeeId) -> Result<Payee, PaymentError> {
        let (_, state) = self
            .executor
            .load(&self.payees, &payee::stream_id(payee_id))
            .await
            .map_err(|e| {
                e.into_domain().map_or_else(PaymentError::from, |refused| {
                    PaymentError::Internal(format!("loading a payee was refused: {refused}"))
                })
            })?;
        Ok(state)
    }

    pub async fn place_order(
        &self,
        input: PlaceOrderInput,
        context: &RequestContext,
    ) -> Result<OrderSnapshot, PaymentError> {
        self.check_sale(&input.payee_id).await?;
        if input.service_starts_at.is_some() {
            self.check_bookings_allowed(&input.payee_id).await?;
        }
        // Refused before anything is stored: an order its provider cannot charge could never be
        // paid.
        let provider = self
            .providers
            .for_new_order(input.provider.as_deref(), input.amount.currency())?
            .provider_name()
            .to_string();
        let order_id = input.order_id.unwrap_or_else(OrderId::generate);
        let command = OrderCommand::Place(PlaceOrder {
            order_id: order_id.clone(),
            amount: input.amount,
            customer_id: input.customer_id,
            payee_id: input.payee_id,
            order_name: input.order_name,
            provider,
            service_starts_at: input.service_starts_at,
            placed_at: self.clock.now(),
        });
        let executed = self.execute(&order_id, command, context).await?;
        Ok(Self::snapshot(executed, false))
    }

    /// Confirms a payment the customer authorised at the provider (Toss `paymentKey`, `orderId`,
    /// `amount`). Concurrent and repeated confirms of one order charge the provider once and get
    /// the same answer.
    pub async fn confirm(
        &self,
        order_id: &OrderId,
        payment_key: PaymentKey,
        claimed_amount_minor: i64,
        context: &RequestContext,
    ) -> Result<ConfirmOutcome, PaymentError> {
        // Where each database call stands (every one bounded per call, `call_bounds`; the command
        // is never given up as a whole): the order's load and the kill-switch read (stream loads)
        // come before anything is stored or sent, so a time-out there is a 503 that stored and
        // charged nothing. `StartConfirmation`'s append is the durable intent; after it the
        // provider is called, and a time-out while recording its answer (the vault's sealing,
        // the writer) is a 503 with the attempt left started: the client's retry waits for the
        // outcome, and the reconciler settles it by asking the provider, never by charging again.
        if self.sales_switches.is_some() {
            // Only a confirmation that would start a new charge is stopped: a repeated confirm
            // of a paid order still answers its success. The state this process holds is good
            // enough when it says a charge would start (the payee never changes, and a status
            // seen as ready or failed can only have moved on to one that also gets checked or
            // refuses the confirm); any other answer is checked against the store.
            let held = self.peek_order(order_id).filter(|snapshot| {
                matches!(
                    snapshot.state.status,
                    OrderStatus::Ready | OrderStatus::Failed
                )
            });
            let snapshot = match held {
                Some(snapshot) => Some(snapshot),
                None => self.load_order(order_id).await?,
            };
            if let Some(snapshot) = snapshot {
                let starts_a_charge = matches!(
                    snapshot.state.status,
                    OrderStatus::Ready | OrderStatus::Failed
                );
                if let (true, Some(placed)) = (starts_a_charge, snapshot.state.placed.as_ref()) {
                    self.check_sale(&placed.payee_id).await?;
                }
            }
        }
        let command = OrderCommand::StartConfirmation {
            payment_key: payment_key.clone(),
            claimed_amount_minor,
            at: self.clock.now(),
        };
        let executed = match self.execute(order_id, command, context).await {
            Ok(executed) => executed,
            Err(PaymentError::Order(OrderError::AlreadyPaid)) => {
                return self.answer_repeat(order_id, &payment_key).await
            }
            Err(PaymentError::Order(OrderError::ConfirmationInProgress)) => {
                return self.wait_for_outcome(order_id, &payment_key).await
            }
            Err(other) => return Err(other),
        };
        let started = match executed.events.first() {
            Some(OrderEvent::ConfirmationRejected(rejected)) => {
                return Err(PaymentError::AmountMismatch {
                    claimed_minor: rejected.claimed_amount_minor,
                    expected_minor: rejected.expected_amount_minor,
                })
            }
            Some(OrderEvent::PaymentConfirmationStarted(started)) => started.clone(),
            _ => {
                return Err(PaymentError::Internal(
                    "confirmation started no attempt".into(),
                ))
            }
        };
        let placed = executed
            .state
            .placed
            .clone()
            .ok_or_else(|| PaymentError::Internal("confirmed order has no placement".into()))?;
        let gateway = match self.gateway_for(&executed.state) {
            Ok(gateway) => gateway.clone(),
            Err(error) => {
                // The order's provider was configured when it was placed and is not now: nothing
                // is sent, the attempt ends, and the operator sees why.
                self.record_confirmation_outcome(
                    order_id,
                    ProviderOutcome::Refused {
                        failure: ProviderFailure {
                            class: FailureClass::ProviderError,
                            provider_code: "PROVIDER_NOT_CONFIGURED".into(),
                            provider_message: error.to_string(),
                        },
                    },
                    OutcomeSource::Request,
                    context,
                )
                .await?;
                return Err(error);
            }
        };
        let request = ConfirmRequest {
            payment_key: payment_key.to_string(),
            order_id: order_id.to_string(),
            amount_minor: started.amount_minor,
            currency: placed.amount.currency(),
            idempotency_key: started.idempotency_key,
        };
        let mut client_action = None;
        let (outcome, retry_after_ms) = match gateway
            .confirm(&request)
            .instrument(provider_call_span("confirm", order_id, context))
            .await
        {
            Ok(payment) => {
                client_action = payment.client_action.clone();
                (
                    ProviderOutcome::Observed {
                        fact: payment.fact(),
                    },
                    None,
                )
            }
            Err(GatewayError::Refused(failure))
                if failure.class == FailureClass::AlreadyProcessed =>
            {
                (outcome_from_lookup(gateway.as_ref(), order_id).await, None)
            }
            Err(GatewayError::Refused(failure)) => (ProviderOutcome::Refused { failure }, None),
            Err(GatewayError::OutcomeUnknown { reason }) => {
                (ProviderOutcome::Unknown { reason }, None)
            }
            Err(GatewayError::NotSent {
                reason,
                retry_after_ms,
            }) => (
                // Certainly not charged: the attempt ends and the customer may try again.
                ProviderOutcome::Refused {
                    failure: ProviderFailure {
                        class: FailureClass::ProviderError,
                        provider_code: "PROVIDER_UNAVAILABLE".into(),
                        provider_message: reason,
                    },
                },
                Some(retry_after_ms.unwrap_or(1_000)),
            ),
        };
        let recorded = match self
            .record_confirmation_outcome(order_id, outcome, OutcomeSource::Request, context)
            .await
        {
            Ok(recorded) => recorded,
            // The reconciler (or a webhook) settled this attempt while the provider call was in
            // flight: what is recorded is the truth, answer from it.
            Err(PaymentError::Order(OrderError::NoConfirmationPending)) => {
                return self.wait_for_outcome(order_id, &payment_key).await;
            }
            Err(other) => return Err(other),
        };
        match recorded.state.status {
            OrderStatus::Paid | OrderStatus::PartiallyRefunded | OrderStatus::Refunded => {
                Ok(ConfirmOutcome::Captured(Self::snapshot(recorded, false)))
            }
            OrderStatus::NeedsReview => Err(discrepancy_of(&recorded.state)),
            OrderStatus::Failed => {
                let failure = recorded
                    .state
                    .last_failure
                    .clone()
                    .unwrap_or(ProviderFailure {
                        class: FailureClass::Unclassified,
                        provider_code: "UNKNOWN".into(),
                        provider_message: String::new(),
                    });
                match retry_after_ms {
                    Some(retry_after_ms) => {
                        Err(PaymentError::ProviderUnavailable { retry_after_ms })
                    }
                    None => Err(PaymentError::Refused(failure)),
                }
            }
            _ => Ok(ConfirmOutcome::Pending(
                Self::snapshot(recorded, false),
                client_action,
            )),
        }
    }

    /// A confirm of an order that is already paid: success again for the same payment key (the
    /// customer refreshed the success page), a conflict for another one.
    async fn answer_repeat(
        &self,
        order_id: &OrderId,
        payment_key: &PaymentKey,
    ) -> Result<ConfirmOutcome, PaymentError> {
        let snapshot = self
            .load_order(order_id)
            .await?
            .ok_or(PaymentError::Order(OrderError::NotFound))?;
        if snapshot.state.is_payment_key(payment_key) {
            Ok(ConfirmOutcome::Captured(OrderSnapshot {
                replay: true,
                ..snapshot
            }))
        } else {
            Err(PaymentError::Order(OrderError::AlreadyPaid))
        }
    }

    /// Another request is confirming this order: wait for its outcome and answer the same.
    async fn wait_for_outcome(
        &self,
        order_id: &OrderId,
        payment_key: &PaymentKey,
    ) -> Result<ConfirmOutcome, PaymentError> {
        let deadline = tokio::time::Instant::now()
            + std::time::Duration::from_millis(self.config.duplicate_confirm_wait_ms);
        loop {
            let snapshot = self
                .load_order(order_id)
                .await?
                .ok_or(PaymentError::Order(OrderError::NotFound))?;
            let same_key = snapshot.state.is_payment_key(payment_key);
            match snapshot.state.status {
                OrderStatus::Paid | OrderStatus::PartiallyRefunded | OrderStatus::Refunded => {
                    return if same_key {
                        Ok(ConfirmOutcome::Captured(OrderSnapshot {
                            replay: true,
                            ..snapshot
                        }))
                    } else {
                        Err(PaymentError::Order(OrderError::AlreadyPaid))
                    };
                }
                OrderStatus::Failed if same_key => {
                    if let Some(failure) = snapshot.state.last_failure.clone() {
                        return Err(PaymentError::Refused(failure));
                    }
                }
                OrderStatus::OutcomeUnknown if same_key => {
                    // The customer may still have to act (3-D Secure): what they must do is
                    // asked of the provider again, never kept.
                    let action = self.client_action_now(&snapshot.state, order_id).await;
                    return Ok(ConfirmOutcome::Pending(
                        OrderSnapshot {
                            replay: true,
                            ..snapshot
                        },
                        action,
                    ));
                }
                OrderStatus::Confirming => {}
                OrderStatus::NeedsReview => return Err(discrepancy_of(&snapshot.state)),
                _ => return Err(PaymentError::Order(OrderError::ConfirmationInProgress)),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(PaymentError::Order(OrderError::ConfirmationInProgress));
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }

    /// What the customer must still do for the order's payment, as the provider says now;
    /// `None` when nothing, or when the provider cannot be asked (the answer stays a 202).
    async fn client_action_now(&self, order: &Order, order_id: &OrderId) -> Option<ClientAction> {
        let gateway = self.gateway_for(order).ok()?;
        let payment = gateway
            .payment_by_order_id(order_id.as_str())
            .instrument(tracing::info_span!("provider_call", operation = "client_action", order_id = %order_id))
            .await
            .ok()??;
        (payment.status == payledger_gateway::PaymentFactStatus::Pending)
            .then_some(payment.client_action)
            .flatten()
    }

    /// Refunds all (`amount_minor: None`) or part of a captured payment. Repeating a refund id
    /// repeats nothing: a settled refund is answered as it was, an unsettled one is driven on
    /// with the same provider idempotency key.
    pub async fn refund(
        &self,
        order_id: &OrderId,
        refund_id: Option<RefundId>,
        amount_minor: Option<i64>,
        reason: String,
        context: &RequestContext,
    ) -> Result<(RefundId, OrderSnapshot), PaymentError> {
        let refund_id = refund_id.unwrap_or_else(RefundId::generate);
        // The reason is sealed on its way into the log; a retry is compared by this digest.
        let reason_digest = self.executor.vault().map(|vault| {
            vault.digest(
                crate::privacy::REFUND_REASON_DIGEST,
                &format!("{order_id}:{refund_id}"),
                &reason,
            )
        });
        let requested = self
            .execute(
                order_id,
                OrderCommand::RequestRefund {
                    refund_id: refund_id.clone(),
                    amount_minor,
                    reason,
                    reason_digest,
                    at: self.clock.now(),
                },
                context,
            )
            .await?;
        let replay = requested.events.is_empty();
        let refund = requested
            .state
            .refunds
            .get(&refund_id)
            .cloned()
            .ok_or_else(|| PaymentError::Internal("requested refund is missing".into()))?;
        if matches!(
            refund.status,
            RefundStatus::Completed | RefundStatus::Failed | RefundStatus::AwaitingProvider
        ) {
            return Ok((refund_id, Self::snapshot(requested, replay)));
        }
        let settled = self
            .drive_refund(
                order_id,
                &refund_id,
                &requested.state,
                OutcomeSource::Request,
                context,
            )
            .await?;
        Ok((refund_id, Self::snapshot(settled, replay)))
    }

    async fn drive_refund(
        &self,
        order_id: &OrderId,
        refund_id: &RefundId,
        state: &Order,
        source: OutcomeSource,
        context: &RequestContext,
    ) -> Result<Executed<Order>, PaymentError> {
        let refund = state
            .refunds
            .get(refund_id)
            .ok_or(PaymentError::Order(OrderError::RefundNotFound))?;
        let payment_key = state
            .payment_key
            .as_ref()
            .ok_or(PaymentError::Order(OrderError::NotPaid))?;
        // The provider is told the reason in clear (or `[erased]` after an erasure). The vault's
        // key read is bounded (`PrivacyVault::with_call_timeout_ms`) and comes after the refund's
        // durable request and before the provider is asked: a time-out is a 503 that sent
        // nothing, and a retry with the same refund id drives the stored request on with the
        // same provider idempotency key.
        let cancel_reason = match self.executor.vault() {
            Some(vault) => vault
                .reveal_text(&refund.reason)
                .await
                .map_err(|e| match e {
                    crate::privacy::PrivacyError::Database(e) => {
                        PaymentError::Unavailable(e.to_string())
                    }
                    other => PaymentError::Internal(other.to_string()),
                })?,
            None => refund.reason.clone(),
        };
        let request = CancelRequest {
            payment_key: payment_key.to_string(),
            cancel_amount_minor: Some(refund.amount_minor),
            cancel_reason,
            idempotency_key: refund.idempotency_key.clone(),
        };
        let outcome = match self
            .gateway_for(state)?
            .request_refund(&request)
            .instrument(provider_call_span("cancel", order_id, context))
            .await
        {
            Ok(RefundAnswer::AwaitingApproval { provider_refund_id }) => {
                RefundOutcome::AwaitingProvider { provider_refund_id }
            }
            Ok(RefundAnswer::Refunded(payment)) => RefundOutcome::Completed {
                transaction_key: payment
                    .cancels
                    .last()
                    .map(|c| c.transaction_key.clone())
                    .unwrap_or_else(|| refund.idempotency_key.clone()),
            },
            Err(GatewayError::Refused(failure)) => RefundOutcome::Refused { failure },
            Err(GatewayError::OutcomeUnknown { reason }) => RefundOutcome::Unknown { reason },
            Err(GatewayError::NotSent { reason, .. }) => RefundOutcome::Refused {
                failure: ProviderFailure {
                    class: FailureClass::ProviderError,
                    provider_code: "PROVIDER_UNAVAILABLE".into(),
                    provider_message: reason,
                },
            },
        };
        self.execute(
            order_id,
            OrderCommand::RecordRefundOutcome {
                refund_id: refund_id.clone(),
                outcome,
                source,
                at: self.clock.now(),
            },
            context,
        )
        .await
    }

    /// Settles what this order left unknown: a confirmation or refunds with no recorded outcome
    /// for longer than `older_than`. Asks the provider; never guesses.
    pub async fn reconcile_order(
        &self,
        order_id: &OrderId,
        older_than: Duration,
    ) -> Result<Reconciled, PaymentError> {
        let context = RequestContext::system("reconciler");
        let Some(snapshot) = self.load_order(order_id).await? else {
            return Ok(Reconciled::NothingPending);
        };
        let now = self.clock.now();
        let mut settled = Vec::new();
        let mut too_recent = false;
        let state = snapshot.state;
        if matches!(
            state.status,
            OrderStatus::Confirming | OrderStatus::OutcomeUnknown
        ) {
            let started_at = state.confirmation_started_at.unwrap_or(now);
            if now - started_at < older_than {
                too_recent = true;
            } else if state.payment_key.is_some() {
                let outcome =
                    outcome_from_lookup(self.gateway_for(&state)?.as_ref(), order_id).await;
                if let ProviderOutcome::Unknown { reason } = &outcome {
                    return Ok(Reconciled::StillUnknown(reason.clone()));
                }
                let recorded = self
                    .record_confirmation_outcome(
                        order_id,
                        outcome,
                        OutcomeSource::Reconciler,
                        &context,
                    )
                    .await?;
                if matches!(
                    recorded.state.status,
                    OrderStatus::Confirming | OrderStatus::OutcomeUnknown
                ) {
                    // The provider has not decided yet (a pending payment): still unknown.
                    return Ok(Reconciled::StillUnknown(
                        "the provider has not decided yet".into(),
                    ));
                }
                settled.push("confirmation".to_string());
            }
        }
        let pending_refunds: Vec<RefundId> = state
            .refunds
            .iter()
            .filter(|(_, r)| {
                matches!(
                    r.status,
                    RefundStatus::Requested | RefundStatus::OutcomeUnknown
                )
            })
            .filter(|(_, r)| {
                let old_enough = now - r.requested_at >= older_than;
                too_recent |= !old_enough;
                old_enough
            })
            .map(|(id, _)| id.clone())
            .collect();
        if !pending_refunds.is_empty() {
            let (_, current) = self
                .executor
                .load(&self.orders, &order::stream_id(order_id))
                .await?;
            for refund_id in pending_refunds {
                let after = self
                    .drive_refund(
                        order_id,
                        &refund_id,
                        &current,
                        OutcomeSource::Reconciler,
                        &context,
                    )
                    .await?;
                if after
                    .state
                    .refunds
                    .get(&refund_id)
                    .is_some_and(|r| r.status == RefundStatus::OutcomeUnknown)
                {
                    return Ok(Reconciled::StillUnknown(format!("refund {refund_id}")));
                }
                settled.push(format!("refund {refund_id}"));
            }
        }
        // Refunds the provider approves later (Paddle): its decision normally arrives as a
        // webhook; one whose notification was lost is found here by looking the request up by
        // its id (approved or rejected alike). The order judges the request against the refund
        // awaited: a fitting decision completes or fails it; a request that does not fit is
        // recorded once as a `RefundDiscrepancyRecorded` (the refund keeps waiting), and the
        // pass reports it held for review.
        let awaiting: Vec<String> = state
            .refunds
            .values()
            .filter(|r| r.status == RefundStatus::AwaitingProvider)
            .filter(|r| now - r.requested_at >= older_than)
            .filter_map(|r| r.provider_refund_id.clone())
            .collect();
        let mut held: Vec<String> = Vec::new();
        if !awaiting.is_empty() {
            let gateway = self.gateway_for(&state)?;
            for provider_refund_id in &awaiting {
                // Not reached or not answered: asked again on the next pass.
                let Ok(Some(request)) = gateway.refund_request(provider_refund_id).await else {
                    continue;
                };
                let recorded = self
                    .record_provider_refund_decision(
                        order_id,
                        provider_refund_id,
                        request,
                        OutcomeSource::Reconciler,
                    )
                    .await?;
                let Some(refund) = recorded
                    .state
                    .refunds
                    .values()
                    .find(|r| r.provider_refund_id.as_deref() == Some(provider_refund_id))
                else {
                    continue;
                };
                match (&refund.status, &refund.discrepancy) {
                    // An admin's acknowledgement (`RefundDiscrepancyResolved`) takes it off the
                    // review list; it is still held until the provider decides it.
                    (RefundStatus::AwaitingProvider, Some(discrepancy))
                        if refund.discrepancy_open() =>
                    {
                        held.push(format!(
                            "refund {provider_refund_id} held for review: {}",
                            discrepancy
                                .differences
                                .iter()
                                .map(|d| d.fact.name())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    }
                    (RefundStatus::Completed | RefundStatus::Failed, _) if !recorded.replay => {
                        settled.push(format!("refund {provider_refund_id}"));
                    }
                    _ => {}
                }
            }
        }
        if !held.is_empty() && settled.is_empty() {
            return Ok(Reconciled::HeldForReview(held));
        }
        Ok(match (settled.is_empty(), too_recent) {
            (false, _) => Reconciled::Settled(settled),
            (true, true) => Reconciled::TooRecent,
            (true, false) => Reconciled::NothingPending,
        })
    }

    /// Expires an order whose payment window closed unpaid.
    pub async fn expire(&self, order_id: &OrderId) -> Result<OrderSnapshot, PaymentError> {
        let executed = self
            .execute(
                order_id,
                OrderCommand::Expire {
                    at: self.clock.now(),
                },
                &RequestContext::system("expiry"),
            )
            .await?;
        Ok(Self::snapshot(executed, false))
    }
}

/// The error a confirm answers when the order's payment is under review for a discrepancy.
fn discrepancy_of(order: &Order) -> PaymentError {
    PaymentError::ProviderDiscrepancy {
        differences: order
            .discrepancy
            .iter()
            .flatten()
            .map(|d| d.name().to_string())
            .collect(),
    }
}

/// What the provider says about an order's payment, as an outcome to record. The fact is judged
/// by the order itself (`provider_fact::judge`), never interpreted here.
async fn outcome_from_lookup(gateway: &dyn PaymentGateway, order_id: &OrderId) -> ProviderOutcome {
    let span = tracing::info_span!("provider_call", operation = "lookup", order_id = %order_id);
    match gateway
        .payment_by_order_id(order_id.as_str())
        .instrument(span)
        .await
    {
        Ok(Some(payment)) => ProviderOutcome::Observed {
            fact: payment.fact(),
        },
        Ok(None) => ProviderOutcome::Refused {
            failure: ProviderFailure {
                class: FailureClass::NotFound,
                provider_code: "NOT_FOUND_PAYMENT".into(),
                provider_message: "the provider has no payment for this order".into(),
            },
        },
        Err(error) => ProviderOutcome::Unknown {
            reason: format!("lookup failed: {error}"),
        },
    }
}

/// Every line the gateway logs during a provider call (warnings, "provider call failed") carries
/// the order and the request it serves, so that it can be tied to both.
fn provider_call_span(
    operation: &'static str,
    order_id: &OrderId,
    context: &RequestContext,
) -> tracing::Span {
    tracing::info_span!(
        "provider_call",
        operation,
        order_id = %order_id,
        request_id = context.request_id.as_deref().unwrap_or(""),
        actor = %context.actor,
    )
}
