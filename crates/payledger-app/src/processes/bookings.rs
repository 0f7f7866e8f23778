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

    /// What `event` may touch: its order and the slot it books, gives back or lost. Events that
    /// share one are handled in log order (the first paid order gets a slot); the rest at once.
    /// Empty when the event cannot be read: it is then handled alone, and fails there. An error
    /// when its order cannot be read now: the batch waits rather than risk the slot's order.
    async fn keys(&self, event: &RecordedEvent) -> Result<Vec<String>, ProcessError> {
        let slot_of = |placed: Option<&payledger_domain::order::PlaceOrder>| {
            placed.and_then(|placed| {
                placed
                    .service_starts_at
                    .map(|starts_at| payledger_domain::slot::stream_id(&placed.payee_id, starts_at))
            })
        };
        if let Some(order_id) = StreamKind::Order.id_of(&event.stream_id) {
            let mut keys = vec![event.stream_id.clone()];
            let Ok(order_id) = OrderId::parse(order_id) else {
                return Ok(keys);
            };
            // Who placed an order and for which slot never changes: what this process holds
            // is enough, else one read (a catch-up reads each order here, all at once).
            let order = match self.bookings.payments().peek_order(&order_id) {
                Some(order) => Some(order),
                None => self
                    .bookings
                    .payments()
                    .load_order(&order_id)
                    .await
                    .map_err(|e| flow_error(e.into()))?,
            };
            keys.extend(order.and_then(|order| slot_of(order.state.placed.as_ref())));
            return Ok(keys);
        }
        let order_key = |order_id: &OrderId| payledger_domain::order::stream_id(order_id);
        if StreamKind::Slot.holds(&event.stream_id) {
            return Ok(match decode::<SlotEvent>(event) {
                Ok(SlotEvent::SlotReservationRefused(refused)) => {
                    vec![event.stream_id.clone(), order_key(&refused.order_id)]
                }
                _ => Vec::new(),
            });
        }
        Ok(match decode::<BookingEvent>(event) {
            Ok(BookingEvent::BookingCancelled(cancelled)) => vec![
                order_key(&cancelled.order_id),
                payledger_domain::slot::stream_id(&cancelled.payee_id, cancelled.service_starts_at),
            ],
            Ok(BookingEvent::BookingRescheduled(moved)) => vec![
                order_key(&moved.order_id),
                payledger_domain::slot::stream_id(&moved.payee_id, moved.from),
            ],
            _ => Vec::new(),
        })
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

    /// The batch's decisions in chains ([`BookingProcess::keys`]), many at once: each waits for a
    /// command's commit, and together they share the store's group commits. The keys are found
    /// at once too (reads of orders this process does not hold yet).
    async fn handle_many(
        &self,
        _state: &mut PgConnection,
        events: &[&RecordedEvent],
    ) -> Result<(), Unhandled> {
        // Made before they are streamed: a closure inside the stream would keep this method's
        // future from being `Send`.
        let reads: Vec<_> = events.iter().map(|event| self.keys(event)).collect();
        let found: Vec<Result<Vec<String>, ProcessError>> = futures::stream::iter(reads)
            .buffered(process::MAX_CHAINS_IN_FLIGHT)
            .collect()
            .await;
        let mut keys = Vec::with_capacity(events.len());
        for (event, found) in events.iter().zip(found) {
            keys.push(match found {
                Ok(keys) => keys,
                // Its handler fails the same way, and the event is dead-lettered there.
                Err(ProcessError::GiveUp(_)) => vec![event.stream_id.clone()],
                // Nothing is handled yet: the whole batch is tried again.
                Err(error) => return Err(Unhandled { index: 0, error }),
            });
        }
        process::handle_in_chains(events, &keys, process::MAX_CHAINS_IN_FLIGHT, |event| {
            self.handle_event(event)
        })
        .await
    }

    async fn handle(
        &self,
        _state: &mut PgConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProcessError> {
        self.handle_event(event).await
    }
}

impl BookingProcess {
    /// One event's decisions; needs no state of its own (the streams hold it).
    async fn handle_event(&self, event: &RecordedEvent) -> Result<(), ProcessError> {
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
