//! Schedule changes of a paid booking (source document 5, §5.1 일정 변경 확정): the booking
//! moves to another start of the same provider; both sides are notified (`booking.rescheduled`).
//! The rule is the booking aggregate's (`payledger_domain::booking`, 48 hours' notice unless an
//! admin moves it).
//!
//! Order of effects, and why: the booking is asked first (pure, nothing recorded); then the new
//! slot is taken with `ReserveIfFree` (a slot held by another order is an error, never a refusal
//! that would refund this order); then the change is recorded on the booking, version-checked;
//! then the old slot is given back. A crash after the new slot was taken leaves it held by this
//! order until the same request is retried (its idempotency key runs it again: taking a slot one
//! already holds changes nothing); a crash after the change is recorded is finished by the
//! bookings process, which releases the old slot on `BookingRescheduled`.

use crate::bookings::{booked_order, Bookings, FlowError};
use crate::context::RequestContext;
use crate::executor::{ExecuteError, Executed};
use chrono::{DateTime, Utc};
use payledger_domain::booking::{self, Booking, BookingCommand, BookingEvent};
use payledger_domain::ids::{AdminId, OrderId, PayeeId};
use payledger_domain::slot::{self, Slot, SlotCommand, SlotError};

/// A schedule change's answer.
#[derive(Debug, Clone)]
pub struct Rescheduled {
    pub booking: Booking,
    /// The change was recorded before (the same request again).
    pub replay: bool,
}

impl Bookings {
    /// Moves a paid booking to `to`. See the module documentation for the order of effects.
    pub async fn reschedule(
        &self,
        order_id: &OrderId,
        to: DateTime<Utc>,
        admin: Option<AdminId>,
        reason: Option<String>,
        context: &RequestContext,
    ) -> Result<Rescheduled, FlowError> {
        let booked = booked_order(order_id, &self.order(order_id).await?)?;
        let stream = booking::stream_id(order_id);
        let command = |at| BookingCommand::Reschedule {
            order: booked.clone(),
            to,
            requested_by: context.actor.clone(),
            admin: admin.clone(),
            reason: reason.clone(),
            at,
        };
        let (_, current) = self.executor.load(&self.bookings, &stream).await?;
        if current.decide(command(self.clock.now()))?.is_empty() {
            return Ok(Rescheduled {
                booking: current,
                replay: true,
            });
        }
        let payee_id = booked.payee_id.clone();
        let taken: Result<Executed<Slot>, _> = self
            .executor
            .execute(
                &self.slots,
                &slot::stream_id(&payee_id, to),
                SlotCommand::ReserveIfFree {
                    payee_id: payee_id.clone(),
                    starts_at: to,
                    order_id: order_id.clone(),
                    at: self.clock.now(),
                },
                context,
            )
            .await;
        taken?;
        let recorded: Result<Executed<Booking>, _> = self
            .executor
            .execute(&self.bookings, &stream, command(self.clock.now()), context)
            .await;
        let executed = match recorded {
            Ok(executed) => executed,
            Err(error) => {
                // Refused after all (a concurrent change): the new slot goes back.
                self.release_slot_at(order_id, &payee_id, to, "RESCHEDULE_REFUSED", context)
                    .await?;
                return Err(error.into());
            }
        };
        let replay = executed.events.is_empty();
        for event in &executed.events {
            if let BookingEvent::BookingRescheduled(moved) = event {
                self.finish_reschedule(moved, context).await?;
            }
        }
        Ok(Rescheduled {
            booking: executed.state,
            replay,
        })
    }

    /// Gives back the slot a recorded schedule change moved away from. Idempotent.
    pub async fn finish_reschedule(
        &self,
        moved: &booking::BookingRescheduled,
        context: &RequestContext,
    ) -> Result<(), FlowError> {
        self.release_slot_at(
            &moved.order_id,
            &moved.payee_id,
            moved.from,
            slot::RELEASE_REASON_RESCHEDULED,
            context,
        )
        .await
    }

    /// Gives back the slot at `starts_at` if this order holds it; nothing when it does not.
    pub async fn release_slot_at(
        &self,
        order_id: &OrderId,
        payee_id: &PayeeId,
        starts_at: DateTime<Utc>,
        reason: &str,
        context: &RequestContext,
    ) -> Result<(), FlowError> {
        let result: Result<Executed<Slot>, _> = self
            .executor
            .execute(
                &self.slots,
                &slot::stream_id(payee_id, starts_at),
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
}

impl Bookings {
    /// Records that the provider wrote the session's notes (a reference to them). The payee's
    /// settlement line held for their absence is released by the settlements process. Once.
    pub async fn record_session_notes(
        &self,
        order_id: &OrderId,
        reference: String,
        context: &RequestContext,
    ) -> Result<Rescheduled, FlowError> {
        let booked = booked_order(order_id, &self.order(order_id).await?)?;
        let executed: Executed<Booking> = self
            .executor
            .execute(
                &self.bookings,
                &booking::stream_id(order_id),
                BookingCommand::RecordSessionNotes {
                    order: booked,
                    reference,
                    recorded_by: context.actor.clone(),
                    at: self.clock.now(),
                },
                context,
            )
            .await?;
        Ok(Rescheduled {
            replay: executed.events.is_empty(),
            booking: executed.state,
        })
    }
}
