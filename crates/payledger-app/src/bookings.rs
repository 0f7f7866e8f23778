//! Bookings: an order with a service time holds the provider's slot, can be cancelled under the
//! refund policy, and is fulfilled when the service was delivered.
//!
//! **Where the slot is reserved, and why.** At capture, by the `bookings` process manager
//! ([`crate::processes::BookingProcess`]), not when the order is placed and not inside the
//! confirm request:
//! - reserving at placement would let an unpaid order block a slot (and need expiry of holds);
//! - two customers paying at the same moment both get their money captured (source document 5,
//!   §1.2); the slot's stream decides who keeps it — the first `SlotReserved` appended, through
//!   the store's expected-version check — and the loser is recorded as refused and refunded
//!   automatically with reason `SLOT_TAKEN`, by a process that survives restarts;
//! - the confirm request stays exactly as fast and as safe as for any payment: no lock spans it
//!   and a crash after the capture still reserves the slot (the process manager follows the log).
//!
//! Cancellation records the policy's decision first (`booking-{order}`, once, version-checked),
//! then refunds with refund id `cancel` and gives the slot back. If the process dies in between,
//! the process manager finishes from the recorded decision; a repeated cancel refunds nothing more.

use crate::clock::Clock;
use crate::context::RequestContext;
use crate::executor::{AggregateCache, ExecuteError, Executed, Executor};
use crate::payments::{OrderSnapshot, PaymentError, Payments};
use chrono::{DateTime, Utc};
use payledger_domain::booking::{
    self, BookedOrder, Booking, BookingCancelled, BookingCommand, BookingError, CANCEL_REFUND_ID,
};
use payledger_domain::claim::ClaimError;
use payledger_domain::ids::{OrderId, RefundId};
use payledger_domain::order::{self, Order, OrderCommand, OrderError, RefundStatus};
use payledger_domain::payee::PayeeError;
use payledger_domain::refund_policy::EmergencyApproval;
use payledger_domain::settlement::StatementError;
use payledger_domain::slot::{self, ReservationOutcome, Slot, SlotCommand, SlotError};
use std::sync::Arc;

/// Aggregates of one kind kept in memory per service.
pub const CACHE_CAPACITY: usize = 100_000;

/// Everything a booking, claim or settlement command can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// Order errors, provider refusals, an unavailable database or contention.
    #[error(transparent)]
    Payment(#[from] PaymentError),
    #[error(transparent)]
    Booking(#[from] BookingError),
    #[error(transparent)]
    Slot(#[from] SlotError),
    #[error(transparent)]
    Claim(#[from] ClaimError),
    #[error(transparent)]
    Payee(#[from] PayeeError),
    #[error(transparent)]
    Statement(#[from] StatementError),
    #[error("the booking was cancelled: it cannot be fulfilled")]
    BookingCancelled,
    #[error("the order was refunded in full: there is nothing to fulfil")]
    FullyRefunded,
}

impl From<OrderError> for FlowError {
    fn from(error: OrderError) -> Self {
        FlowError::Payment(PaymentError::Order(error))
    }
}

impl<E: std::error::Error + Into<FlowError>> From<ExecuteError<E>> for FlowError {
    fn from(error: ExecuteError<E>) -> Self {
        match error.into_domain() {
            Ok(refused) => refused.into(),
            Err(failure) => FlowError::Payment(failure.into()),
        }
    }
}

impl FlowError {
    /// Whether trying again later may succeed (the database or provider, not the request).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            FlowError::Payment(
                PaymentError::Unavailable(_)
                    | PaymentError::Contention
                    | PaymentError::ProviderUnavailable { .. }
            )
        )
    }
}

/// What a booking command knows of its order.
pub(crate) fn booked_order(
    order_id: &OrderId,
    snapshot: &OrderSnapshot,
) -> Result<BookedOrder, FlowError> {
    let placed = snapshot
        .state
        .placed
        .clone()
        .ok_or(FlowError::Payment(PaymentError::Order(
            OrderError::NotFound,
        )))?;
    Ok(BookedOrder {
        order_id: order_id.clone(),
        customer_id: placed.customer_id,
        payee_id: placed.payee_id,
        currency: placed.amount.currency(),
        service_starts_at: placed.service_starts_at,
        captured_minor: snapshot.state.captured_minor,
        refunded_minor: snapshot.state.refunded_minor + snapshot.state.refund_pending_minor,
    })
}

/// A cancellation's answer.
#[derive(Debug, Clone)]
pub struct Cancellation {
    pub cancelled: BookingCancelled,
    /// The refund sent for it, when there is one.
    pub refund: Option<(RefundId, RefundStatus)>,
    pub order: OrderSnapshot,
    /// The booking was cancelled before: nothing new happened.
    pub replay: bool,
}

pub struct Bookings {
    pub(crate) executor: Arc<Executor>,
    payments: Arc<Payments>,
    orders: AggregateCache<Order>,
    pub(crate) slots: AggregateCache<Slot>,
    pub(crate) bookings: AggregateCache<Booking>,
    pub(crate) clock: Arc<dyn Clock>,
}

impl Bookings {
    pub fn new(executor: Arc<Executor>, payments: Arc<Payments>) -> Bookings {
        Bookings {
            clock: payments.clock().clone(),
            executor,
            payments,
            orders: AggregateCache::new(CACHE_CAPACITY),
            slots: AggregateCache::new(CACHE_CAPACITY),
            bookings: AggregateCache::new(CACHE_CAPACITY),
        }
    }

    pub fn payments(&self) -> &Arc<Payments> {
        &self.payments
    }

    pub(crate) async fn order(&self, order_id: &OrderId) -> Result<OrderSnapshot, FlowError> {
        self.payments
            .load_order(order_id)
            .await?
            .ok_or(FlowError::Payment(PaymentError::Order(
                OrderError::NotFound,
            )))
    }

    /// The booking's cancellation, if it was cancelled.
    pub async fn cancellation(
        &self,
        order_id: &OrderId,
    ) -> Result<Option<BookingCancelled>, FlowError> {
        let (_, state) = self
            .executor
            .load(&self.bookings, &booking::stream_id(order_id))
            .await?;
        Ok(state.cancelled)
    }

    /// Cancels a paid booking under the refund policy (or an admin-approved emergency), refunds
    /// the customer's share and gives the slot back. Asking again answers the first decision.
    pub async fn cancel(
        &self,
        order_id: &OrderId,
        emergency: Option<EmergencyApproval>,
        context: &RequestContext,
    ) -> Result<Cancellation, FlowError> {
        let booked = booked_order(order_id, &self.order(order_id).await?)?;
        let executed: Executed<Booking> = self
            .executor
            .execute(
                &self.bookings,
                &booking::stream_id(order_id),
                BookingCommand::Cancel {
                    order: booked,
                    cancelled_by: context.actor.clone(),
                    emergency,
                    at: self.clock.now(),
                },
                context,
            )
            .await?;
        let replay = executed.events.is_empty();
        let cancelled = executed
            .state
            .cancelled
            .ok_or_else(|| PaymentError::Internal("cancellation not recorded".into()))?;
        let (refund, order) = self.finish_cancellation(&cancelled, context).await?;
        Ok(Cancellation {
            cancelled,
            refund,
            order: OrderSnapshot { replay, ..order },
            replay,
        })
    }

    /// Refunds what a recorded cancellation gives back and releases the slot. Idempotent: the
    /// refund id is fixed and the slot remembers its holder.
    pub async fn finish_cancellation(
        &self,
        cancelled: &BookingCancelled,
        context: &RequestContext,
    ) -> Result<(Option<(RefundId, RefundStatus)>, OrderSnapshot), FlowError> {
        let order_id = &cancelled.order_id;
        let mut refund = None;
        if cancelled.refund_now_minor > 0 {
            let refund_id = RefundId::parse(CANCEL_REFUND_ID)
                .map_err(|e| PaymentError::Internal(e.to_string()))?;
            let (refund_id, after) = self
                .payments
                .refund(
                    order_id,
                    Some(refund_id),
                    Some(cancelled.refund_now_minor),
                    booking::refund_reason(&cancelled.decision),
                    context,
                )
                .await?;
            let status = after
                .state
                .refunds
                .get(&refund_id)
                .map(|r| r.status)
                .unwrap_or(RefundStatus::Requested);
            refund = Some((refund_id, status));
        }
        self.release_slot_at(
            order_id,
            &cancelled.payee_id,
            cancelled.service_starts_at,
            slot::RELEASE_REASON_CANCELLED,
            context,
        )
        .await?;
        Ok((refund, self.order(order_id).await?))
    }

    /// Records that the service was delivered: the payment becomes payable to the payee.
    /// Fulfilling twice answers the first fulfilment.
    pub async fn fulfil(
        &self,
        order_id: &OrderId,
        context: &RequestContext,
    ) -> Result<OrderSnapshot, FlowError> {
        let snapshot = self.order(order_id).await?;
        if snapshot.state.fulfilled_at.is_some() {
            return Ok(OrderSnapshot {
                replay: true,
                ..snapshot
            });
        }
        if self.cancellation(order_id).await?.is_some() {
            return Err(FlowError::BookingCancelled);
        }
        let state = &snapshot.state;
        if state.captured_minor > 0 && state.refunded_minor >= state.captured_minor {
            return Err(FlowError::FullyRefunded);
        }
        let executed: Executed<Order> = self
            .executor
            .execute(
                &self.orders,
                &order::stream_id(order_id),
                OrderCommand::RecordFulfilment {
                    at: self.clock.now(),
                },
                context,
            )
            .await?;
        Ok(OrderSnapshot {
            position: executed.append.as_ref().map(|a| a.last_position),
            state: executed.state,
            version: executed.version,
            replay: false,
        })
    }

    /// Reserves the slot of a paid booking. `None` when the order is not a booking, or was
    /// refunded in full before it got here (it no longer wants the slot).
    pub async fn reserve_slot(
        &self,
        order_id: &OrderId,
        context: &RequestContext,
    ) -> Result<Option<ReservationOutcome>, FlowError> {
        // Whether an order books a slot is fixed when it is placed: an order this process knows
        // books none needs no read of its stream (most orders under load).
        let books_no_slot = self.payments.peek_order(order_id).is_some_and(|held| {
            held.state
                .placed
                .as_ref()
                .is_some_and(|placed| placed.service_starts_at.is_none())
        });
        if books_no_slot {
            return Ok(None);
        }
        let snapshot = self.order(order_id).await?;
        let Some(placed) = snapshot.state.placed.as_ref() else {
            return Ok(None);
        };
        let Some(starts_at) = placed.service_starts_at else {
            return Ok(None);
        };
        let state = &snapshot.state;
        let refunded_in_full = state.captured_minor > 0
            && state.refunded_minor + state.refund_pending_minor >= state.captured_minor;
        if state.captured_minor == 0 || refunded_in_full {
            return Ok(None);
        }
        let executed: Executed<Slot> = self
            .executor
            .execute(
                &self.slots,
                &slot::stream_id(&placed.payee_id, starts_at),
                SlotCommand::Reserve {
                    payee_id: placed.payee_id.clone(),
                    starts_at,
                    order_id: order_id.clone(),
                    at: self.clock.now(),
                },
                context,
            )
            .await?;
        Ok(Some(executed.state.outcome_for(order_id)))
    }

    /// Keeps the booking's slot for its payer for 5 minutes after a payment failed at
    /// `failed_at`, so a retry with another card finds it free (source document 5, §4.1).
    pub async fn hold_slot_for_retry(
        &self,
        order_id: &OrderId,
        failed_at: DateTime<Utc>,
        context: &RequestContext,
    ) -> Result<(), FlowError> {
        let snapshot = self.order(order_id).await?;
        let Some(placed) = snapshot.state.placed.as_ref() else {
            return Ok(());
        };
        let Some(starts_at) = placed.service_starts_at else {
            return Ok(());
        };
        self.executor
            .execute(
                &self.slots,
                &slot::stream_id(&placed.payee_id, starts_at),
                SlotCommand::Hold {
                    payee_id: placed.payee_id.clone(),
                    starts_at,
                    order_id: order_id.clone(),
                    until: failed_at + chrono::Duration::minutes(slot::PAYMENT_RETRY_HOLD_MINUTES),
                    at: self.clock.now(),
                },
                context,
            )
            .await?;
        Ok(())
    }

    /// Gives the slot back if this order holds it; nothing when it does not.
    pub async fn release_slot(
        &self,
        order_id: &OrderId,
        reason: &str,
        context: &RequestContext,
    ) -> Result<(), FlowError> {
        let snapshot = self.order(order_id).await?;
        let Some(placed) = snapshot.state.placed.as_ref() else {
            return Ok(());
        };
        let Some(starts_at) = placed.service_starts_at else {
            return Ok(());
        };
        let result = self
            .executor
            .execute(
                &self.slots,
                &slot::stream_id(&placed.payee_id, starts_at),
                SlotCommand::Release {
                    order_id: order_id.clone(),
                    reason: reason.to_string(),
                    at: self.clock.now(),
                },
                context,
            )
            .await;
        match result {
            Ok(_) | Err(ExecuteError::Domain(SlotError::NotHolder(_))) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// The slot's state (tests and support).
    pub async fn slot(
        &self,
        payee_id: &payledger_domain::ids::PayeeId,
        starts_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Slot, FlowError> {
        let (_, state) = self
            .executor
            .load(&self.slots, &slot::stream_id(payee_id, starts_at))
            .await?;
        Ok(state)
    }
}
