//! The provider's confirmation of a paid booking (source document 5, §5.1 and §6.1): asked for
//! when the booking holds its slot, a reminder to the provider after 12 hours, the admins' queue
//! after 24 hours, where an admin confirms by hand or force-cancels with a full refund. The rules
//! are the booking aggregate's (`payledger_domain::booking`); this module loads, runs and
//! answers. Every step reads the one clock, so a scenario clock moves them all.

use crate::bookings::{booked_order, Bookings, Cancellation, FlowError};
use crate::context::RequestContext;
use crate::executor::{ExecuteError, Executed};
use crate::payments::{OrderSnapshot, PaymentError};
use payledger_domain::booking::{self, Booking, BookingCommand, BookingError, ConfirmableBooking};
use payledger_domain::ids::{AdminId, OrderId};
use serde::Serialize;

/// What one pass of the confirmation job did for one booking.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfirmationSteps {
    pub reminders_requested: usize,
    pub marked_overdue: usize,
}

/// A confirmation's answer: the booking after it, and whether it was confirmed before.
#[derive(Debug, Clone)]
pub struct Confirmed {
    pub booking: Booking,
    pub order: OrderSnapshot,
    pub replay: bool,
}

impl Bookings {
    /// The booking's state (its confirmation and cancellation).
    pub async fn booking(&self, order_id: &OrderId) -> Result<Booking, FlowError> {
        let (_, state) = self
            .executor
            .load(&self.bookings, &booking::stream_id(order_id))
            .await?;
        Ok(state)
    }

    /// Asks the provider to confirm a paid booking that holds its slot. Asking again, or for a
    /// cancelled booking, changes nothing.
    pub async fn request_confirmation(
        &self,
        order_id: &OrderId,
        context: &RequestContext,
    ) -> Result<(), FlowError> {
        let snapshot = self.order(order_id).await?;
        let Some(placed) = snapshot.state.placed.as_ref() else {
            return Ok(());
        };
        let Some(starts_at) = placed.service_starts_at else {
            return Ok(());
        };
        let booking = ConfirmableBooking {
            order_id: order_id.clone(),
            customer_id: placed.customer_id.clone(),
            payee_id: placed.payee_id.clone(),
            service_starts_at: starts_at,
        };
        let _: Executed<Booking> = self
            .executor
            .execute(
                &self.bookings,
                &booking::stream_id(order_id),
                BookingCommand::RequestConfirmation {
                    booking,
                    at: self.clock.now(),
                },
                context,
            )
            .await?;
        Ok(())
    }

    /// Runs the steps of an unconfirmed booking that are due now: the 12-hour reminder, then
    /// the 24-hour move to the admins' queue. Each is recorded once; a step not due is skipped.
    pub async fn advance_confirmation(
        &self,
        order_id: &OrderId,
    ) -> Result<ConfirmationSteps, FlowError> {
        let context = RequestContext::system("booking-confirmations");
        let mut steps = ConfirmationSteps::default();
        let now = self.clock.now();
        let commands = [
            BookingCommand::RemindConfirmation { at: now },
            BookingCommand::RecordConfirmationOverdue { at: now },
        ];
        for (i, command) in commands.into_iter().enumerate() {
            let result: Result<Executed<Booking>, _> = self
                .executor
                .execute(
                    &self.bookings,
                    &booking::stream_id(order_id),
                    command,
                    &context,
                )
                .await;
            match result {
                Ok(executed) if i == 0 => steps.reminders_requested += executed.events.len(),
                Ok(executed) => steps.marked_overdue += executed.events.len(),
                Err(ExecuteError::Domain(BookingError::NotDue { .. })) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(steps)
    }

    /// Confirms a booking: the provider's confirmation (through the platform's key), or an
    /// admin's by hand with `admin` and notes. Confirming again answers the first confirmation.
    pub async fn confirm(
        &self,
        order_id: &OrderId,
        admin: Option<AdminId>,
        admin_notes: Option<String>,
        context: &RequestContext,
    ) -> Result<Confirmed, FlowError> {
        let order = self.order(order_id).await?;
        if order
            .state
            .placed
            .as_ref()
            .is_some_and(|p| p.service_starts_at.is_none())
        {
            return Err(BookingError::NotABooking.into());
        }
        let executed: Executed<Booking> = self
            .executor
            .execute(
                &self.bookings,
                &booking::stream_id(order_id),
                BookingCommand::Confirm {
                    confirmed_by: context.actor.clone(),
                    admin,
                    admin_notes,
                    at: self.clock.now(),
                },
                context,
            )
            .await?;
        Ok(Confirmed {
            replay: executed.events.is_empty(),
            booking: executed.state,
            order,
        })
    }

    /// An admin cancels a booking the provider has not confirmed: the customer gets the whole
    /// payment back through the ordinary cancellation refund (refund id `cancel`), and the slot
    /// is released. Asking again answers the first cancellation.
    pub async fn force_cancel(
        &self,
        order_id: &OrderId,
        admin: AdminId,
        reason: String,
        context: &RequestContext,
    ) -> Result<Cancellation, FlowError> {
        let booked = booked_order(order_id, &self.order(order_id).await?)?;
        if booked.service_starts_at.is_none() {
            return Err(BookingError::NotABooking.into());
        }
        let executed: Executed<Booking> = self
            .executor
            .execute(
                &self.bookings,
                &booking::stream_id(order_id),
                BookingCommand::ForceCancel {
                    order: booked,
                    admin,
                    reason,
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
}
