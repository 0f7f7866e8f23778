//! Session reminders: the day before at 14:00 and 2 hours before a paid booking's start, each
//! requested once on the stream `reminders-{order_id}` (payledger_domain::reminder). The booking
//! must still stand: paid, not cancelled, something left unrefunded.

use crate::bookings::{Bookings, CACHE_CAPACITY};
use crate::clock::Clock;
use crate::context::RequestContext;
use crate::executor::{AggregateCache, Executor};
use chrono_tz::Tz;
use payledger_domain::ids::OrderId;
use payledger_domain::reminder::{
    self, RemindedBooking, ReminderCommand, ReminderError, ReminderKind, Reminders,
};
use std::sync::Arc;

pub struct SessionReminders {
    executor: Arc<Executor>,
    bookings: Arc<Bookings>,
    reminders: AggregateCache<Reminders>,
    clock: Arc<dyn Clock>,
    time_zone: Tz,
}

#[derive(Debug, thiserror::Error)]
pub enum RemindError {
    #[error("the ledger is unavailable: {0}")]
    Unavailable(String),
}

impl SessionReminders {
    pub fn new(
        executor: Arc<Executor>,
        bookings: Arc<Bookings>,
        time_zone: Tz,
    ) -> SessionReminders {
        SessionReminders {
            clock: bookings.payments().clock().clone(),
            executor,
            bookings,
            reminders: AggregateCache::new(CACHE_CAPACITY),
            time_zone,
        }
    }

    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }

    /// Requests every reminder of the booking that is due now; returns how many were recorded.
    pub async fn remind_due(&self, order_id: &OrderId) -> Result<usize, RemindError> {
        let unavailable = |e: &dyn std::fmt::Display| RemindError::Unavailable(e.to_string());
        let Some(order) = self
            .bookings
            .payments()
            .load_order(order_id)
            .await
            .map_err(|e| unavailable(&e))?
        else {
            return Ok(0);
        };
        let Some(placed) = order.state.placed.clone() else {
            return Ok(0);
        };
        let Some(placed_start) = placed.service_starts_at else {
            return Ok(0);
        };
        let booking = self
            .bookings
            .booking(order_id)
            .await
            .map_err(|e| unavailable(&e))?;
        // After a schedule change, the new start is the one reminded of.
        let starts_at = booking.rescheduled_start().unwrap_or(placed_start);
        let still_booked = order.state.captured_minor > 0
            && order.state.refundable_minor() > 0
            && booking.cancelled.is_none();
        if !still_booked {
            return Ok(0);
        }
        let now = self.clock.now();
        let booking = RemindedBooking {
            order_id: order_id.clone(),
            customer_id: placed.customer_id,
            payee_id: placed.payee_id,
            service_starts_at: starts_at,
        };
        let mut recorded = 0;
        for kind in ReminderKind::ALL {
            if kind.due_at(starts_at, self.time_zone) > now {
                continue;
            }
            let command = ReminderCommand::Request {
                booking: booking.clone(),
                kind,
                time_zone: self.time_zone,
                at: now,
            };
            match self
                .executor
                .execute(
                    &self.reminders,
                    &reminder::stream_id(order_id),
                    command,
                    &RequestContext::system("reminders"),
                )
                .await
            {
                Ok(executed) => recorded += executed.events.len(),
                Err(crate::executor::ExecuteError::Domain(ReminderError::NotDue { .. })) => {}
                Err(error) => return Err(unavailable(&error)),
            }
        }
        Ok(recorded)
    }
}
