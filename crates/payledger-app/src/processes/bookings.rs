//! The booking process: reserves the slot of a paid booking and asks the provider to confirm it,
//! refunds the payment that lost its slot, and finishes cancellations.

use super::*;
use payledger_domain::slot::ReservationOutcome;

/// Reserves slots of paid bookings, refunds those that lost theirs, finishes cancellations.
pub struct BookingProcess {
    bookings: Arc<Bookings>,
}

impl BookingProcess {
    pub const NAME: &'static str = "bookings";

    pub fn new(bookings: Arc<Bookings>) -> BookingProcess {
        BookingProcess { bookings }
    }
}

#[async_trait]
impl ProcessManager for BookingProcess {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn wants(&self, event: &RecordedEvent) -> bool {
        let stream = event.stream_id.as_str();
        match event.event_type.as_str() {
            "PaymentCaptured" | "PaymentFailed" => StreamKind::Order.holds(stream),
            "SlotReservationRefused" => StreamKind::Slot.holds(stream),
            "BookingCancelled" | "BookingRescheduled" => StreamKind::Booking.holds(stream),
            _ => false,
        }
    }

    async fn handle(
        &self,
        _state: &mut PgConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProcessError> {
        let context = system_context(Self::NAME);
        let payments = self.bookings.payments();
        if let Some(order_id) = StreamKind::Order.id_of(&event.stream_id) {
            if event.event_type == "PaymentFailed" {
                let OrderEvent::PaymentFailed(failed) = decode(event)? else {
                    return Ok(());
                };
                let order_id = parse_id(OrderId::parse(order_id))?;
                return self
                    .bookings
                    .hold_slot_for_retry(&order_id, failed.at, &context)
                    .await
                    .map_err(flow_error);
            }
            if event.event_type != "PaymentCaptured" {
                return Ok(());
            }
            let order_id = parse_id(OrderId::parse(order_id))?;
            let outcome = self
                .bookings
                .reserve_slot(&order_id, &context)
                .await
                .map_err(flow_error)?;
            if outcome == Some(ReservationOutcome::Holds) {
                // The booking is the customer's: the provider is asked to confirm it (24 h).
                self.bookings
                    .request_confirmation(&order_id, &context)
                    .await
                    .map_err(flow_error)?;
            }
        } else if StreamKind::Slot.holds(&event.stream_id) {
            if let SlotEvent::SlotReservationRefused(refused) = decode(event)? {
                ensure_refund(
                    payments,
                    &refused.order_id,
                    SLOT_TAKEN_REFUND_ID,
                    None,
                    SLOT_TAKEN_REASON,
                    &context,
                )
                .await?;
            }
        } else if StreamKind::Booking.holds(&event.stream_id) {
            let cancelled = match decode(event)? {
                BookingEvent::BookingCancelled(cancelled) => cancelled,
                BookingEvent::BookingRescheduled(moved) => {
                    // The old slot goes back (the command did it already unless it crashed).
                    return self
                        .bookings
                        .finish_reschedule(&moved, &context)
                        .await
                        .map_err(flow_error);
                }
                _ => return Ok(()),
            };
            if cancelled.refund_now_minor > 0 {
                ensure_refund(
                    payments,
                    &cancelled.order_id,
                    CANCEL_REFUND_ID,
                    Some(cancelled.refund_now_minor),
                    &payledger_domain::booking::refund_reason(&cancelled.decision),
                    &context,
                )
                .await?;
            }
            // The slot the booking held when it was cancelled (after a schedule change, the new one).
            self.bookings
                .release_slot_at(
                    &cancelled.order_id,
                    &cancelled.payee_id,
                    cancelled.service_starts_at,
                    payledger_domain::slot::RELEASE_REASON_CANCELLED,
                    &context,
                )
                .await
                .map_err(flow_error)?;
        }
        Ok(())
    }
}
