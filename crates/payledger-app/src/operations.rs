//! Operating the ledger: kill switches, outside payments, enrollment cancellations and the admin
//! audit trail (runbook §5–6). Each is a command recorded as events, with the admin as actor.

use crate::clock::Clock;
use crate::context::RequestContext;
use crate::executor::{AggregateCache, ExecuteError, Executor};
use crate::payments::{OrderSnapshot, PaymentError, Payments};
pub use crate::switches::{describe_block, Flipped, SalesSwitches, SWITCHES_MAX_AGE_MS};
use payledger_domain::codec;
use payledger_domain::ids::{OrderId, PaymentKey, RefundId};
use payledger_domain::operations::{
    provider_transaction_stream, AdminAction, AdminAuditEvent, ExternalPaymentRecorded,
    ProviderTransaction, ProviderTransactionCommand, ProviderTransactionError, SwitchError,
    ADMIN_AUDIT_STREAM,
};
use payledger_domain::order::{OrderError, OrderStatus};
use payledger_store::{ExpectedVersion, NewEvent};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum OperationError {
    #[error(transparent)]
    Switch(#[from] SwitchError),
    #[error(transparent)]
    ProviderTransaction(#[from] ProviderTransactionError),
    #[error(transparent)]
    Payment(#[from] PaymentError),
    #[error("the currency {given} differs from the order's {expected}")]
    CurrencyMismatch { given: String, expected: String },
}

impl<E: std::error::Error + Into<OperationError>> From<ExecuteError<E>> for OperationError {
    fn from(error: ExecuteError<E>) -> Self {
        match error.into_domain() {
            Ok(refused) => refused.into(),
            Err(failure) => OperationError::Payment(failure.into()),
        }
    }
}

/// An outside payment to record.
#[derive(Debug, Clone)]
pub struct ExternalPaymentInput {
    pub order_id: OrderId,
    pub provider: String,
    pub provider_transaction_id: PaymentKey,
    pub amount_minor: i64,
    pub currency: payledger_domain::money::Currency,
    pub method: Option<String>,
    pub reason: String,
}

/// Manual operations and the admin audit trail.
pub struct Operations {
    executor: Arc<Executor>,
    payments: Arc<Payments>,
    switches: Arc<SalesSwitches>,
    provider_transactions: AggregateCache<ProviderTransaction>,
    clock: Arc<dyn Clock>,
}

impl Operations {
    pub fn new(
        executor: Arc<Executor>,
        payments: Arc<Payments>,
        switches: Arc<SalesSwitches>,
        clock: Arc<dyn Clock>,
    ) -> Operations {
        Operations {
            executor,
            payments,
            switches,
            provider_transactions: AggregateCache::new(1_000),
            clock,
        }
    }

    pub fn switches(&self) -> &Arc<SalesSwitches> {
        &self.switches
    }

    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }

    /// Records a payment made outside payledger. The provider transaction id is claimed first in
    /// its own stream, so it can pay for one order only; a retry of the same request after a
    /// crash between the two steps goes on where it stopped.
    pub async fn record_external_payment(
        &self,
        input: ExternalPaymentInput,
        context: &RequestContext,
    ) -> Result<OrderSnapshot, OperationError> {
        let snapshot = self
            .payments
            .load_order(&input.order_id)
            .await?
            .ok_or(PaymentError::Order(OrderError::NotFound))?;
        let placed = snapshot
            .state
            .placed
            .as_ref()
            .ok_or(PaymentError::Order(OrderError::NotFound))?;
        if placed.amount.currency() != input.currency {
            return Err(OperationError::CurrencyMismatch {
                given: input.currency.code().to_string(),
                expected: placed.amount.currency().code().to_string(),
            });
        }
        let amount = payledger_domain::money::Money::new(input.amount_minor, input.currency)
            .map_err(|_| {
                PaymentError::Order(OrderError::ManualPaymentAmountMismatch {
                    recorded_minor: input.amount_minor,
                    expected_minor: placed.amount.amount_minor(),
                })
            })?;
        if amount != placed.amount {
            return Err(
                PaymentError::Order(OrderError::ManualPaymentAmountMismatch {
                    recorded_minor: input.amount_minor,
                    expected_minor: placed.amount.amount_minor(),
                })
                .into(),
            );
        }
        // Check the order can take it before burning the transaction id on it.
        let retry_of_this_payment = snapshot.state.is_paid()
            && snapshot.state.payment_key.as_ref() == Some(&input.provider_transaction_id);
        let payable = matches!(
            snapshot.state.status,
            OrderStatus::Ready
                | OrderStatus::Failed
                | OrderStatus::Expired
                | OrderStatus::NeedsReview
        );
        if !retry_of_this_payment && !payable {
            return Err(PaymentError::Order(OrderError::ManualPaymentNotAllowed).into());
        }
        let at = self.clock.now();
        let stream = provider_transaction_stream(&input.provider, &input.provider_transaction_id);
        self.executor
            .execute(
                &self.provider_transactions,
                &stream,
                ProviderTransactionCommand::Claim(ExternalPaymentRecorded {
                    provider: input.provider.clone(),
                    provider_transaction_id: input.provider_transaction_id.clone(),
                    order_id: input.order_id.clone(),
                    amount,
                    reason: input.reason.clone(),
                    at,
                }),
                context,
            )
            .await?;
        Ok(self
            .payments
            .record_manual_payment(
                &input.order_id,
                input.provider_transaction_id,
                input.amount_minor,
                input.method,
                context,
            )
            .await?)
    }

    /// Cancels the enrollment an order paid for; with `refund`, refunds what is still
    /// refundable (refund id `enrollment-cancel`, so a retry refunds once).
    pub async fn cancel_enrollment(
        &self,
        order_id: &OrderId,
        reason: String,
        refund: bool,
        context: &RequestContext,
    ) -> Result<OrderSnapshot, OperationError> {
        let snapshot = match self
            .payments
            .cancel_enrollment(order_id, reason.clone(), context)
            .await
        {
            Ok(snapshot) => snapshot,
            // A retry of a cancellation whose refund did not finish: drive the refund on.
            Err(PaymentError::Order(OrderError::EnrollmentAlreadyCancelled)) if refund => self
                .payments
                .load_order(order_id)
                .await?
                .ok_or(PaymentError::Order(OrderError::NotFound))?,
            Err(other) => return Err(other.into()),
        };
        let refund_id = RefundId::parse("enrollment-cancel")
            .map_err(|e| PaymentError::Internal(e.to_string()))?;
        let already_refunding = snapshot.state.refunds.contains_key(&refund_id);
        if !refund || (snapshot.state.refundable_minor() == 0 && !already_refunding) {
            return Ok(snapshot);
        }
        let (_, refunded) = self
            .payments
            .refund(order_id, Some(refund_id), None, reason, context)
            .await?;
        Ok(refunded)
    }

    /// Appends an admin action to `audit-admin`. Who acted is the context's actor.
    pub async fn record_admin_action(
        &self,
        action: AdminAction,
        context: &RequestContext,
    ) -> Result<(), PaymentError> {
        let (event_type, payload) = codec::encode(&AdminAuditEvent::AdminActionRecorded(action))
            .map_err(|e| PaymentError::Internal(e.to_string()))?;
        self.executor
            .store()
            .append(
                ADMIN_AUDIT_STREAM,
                ExpectedVersion::Any,
                vec![NewEvent::new(event_type, payload, context.metadata())],
                false,
            )
            .await
            .map_err(|e| PaymentError::Unavailable(e.to_string()))?;
        Ok(())
    }
}
