//! A provider's bookable time slot. Stream `slot-{payee}-{start}` (start in UTC, `YYYYMMDDTHHMMSSZ`).
//!
//! Two customers who pay for the same slot at the same moment both get their payment captured
//! (source document 5, §1.2); the slot decides who keeps it. Its stream is the unit of
//! consistency: the first `SlotReserved` appended wins through the event store's expected-version
//! check, and a second order is then answered "taken" — recorded as `SlotReservationRefused`
//! (not returned as an error) so the refund that follows has a fact to point at. No lock spans a
//! request: two processes reserving at once both decide "free", one append wins, and the loser
//! re-decides on the new state.
//!
//! The slot remembers every order it has answered, so asking again for the same order (a retried
//! or replayed command) changes nothing.

use crate::ids::{OrderId, PayeeId};
use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Orders one slot remembers; a bound so a slot's state stays small.
pub const MAX_ORDERS_PER_SLOT: usize = 10_000;

/// How long a slot waits for a customer whose payment for it just failed (source document 5,
/// §4.1: the payer retries with another card while nobody else can take the slot).
pub const PAYMENT_RETRY_HOLD_MINUTES: i64 = 5;

/// Why a slot was given back, in words people and reports branch on.
pub const RELEASE_REASON_CANCELLED: &str = "BOOKING_CANCELLED";
/// The booking moved to another slot.
pub const RELEASE_REASON_RESCHEDULED: &str = "BOOKING_RESCHEDULED";

pub fn stream_id(payee_id: &PayeeId, starts_at: DateTime<Utc>) -> String {
    crate::streams::StreamKind::Slot.name(format_args!(
        "{payee_id}-{}",
        starts_at.format("%Y%m%dT%H%M%SZ")
    ))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotCommand {
    /// Reserve the slot for a paid order.
    Reserve {
        payee_id: PayeeId,
        starts_at: DateTime<Utc>,
        order_id: OrderId,
        at: DateTime<Utc>,
    },
    /// Keep the slot for `order_id` until `until` while its payer retries a failed payment:
    /// another order's reservation before then is refused. Nothing happens when the slot is
    /// taken or held for another order already.
    Hold {
        payee_id: PayeeId,
        starts_at: DateTime<Utc>,
        order_id: OrderId,
        until: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// Take the slot for a booking that moves here (a reschedule) if nobody holds it; a slot
    /// held by another order is an error, never a refusal (a refusal refunds the order).
    ReserveIfFree {
        payee_id: PayeeId,
        starts_at: DateTime<Utc>,
        order_id: OrderId,
        at: DateTime<Utc>,
    },
    /// Give the slot back (the holding booking was cancelled). Only the holder can release it.
    Release {
        order_id: OrderId,
        reason: String,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SlotEvent {
    SlotReserved(SlotReserved),
    /// An order asked for a slot another order holds: its payment is to be refunded.
    SlotReservationRefused(SlotReservationRefused),
    SlotReleased(SlotReleased),
    /// The slot waits for this order's payer to retry a failed payment, until `until`.
    SlotHeldForRetry(SlotHeldForRetry),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlotHeldForRetry {
    pub payee_id: PayeeId,
    pub starts_at: DateTime<Utc>,
    pub order_id: OrderId,
    pub until: DateTime<Utc>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlotReserved {
    pub payee_id: PayeeId,
    pub starts_at: DateTime<Utc>,
    pub order_id: OrderId,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlotReservationRefused {
    pub payee_id: PayeeId,
    pub starts_at: DateTime<Utc>,
    pub order_id: OrderId,
    pub held_by: OrderId,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlotReleased {
    pub order_id: OrderId,
    pub reason: String,
    pub at: DateTime<Utc>,
}

impl DomainEvent for SlotEvent {
    fn event_type(&self) -> String {
        match self {
            SlotEvent::SlotReserved(_) => "SlotReserved",
            SlotEvent::SlotReservationRefused(_) => "SlotReservationRefused",
            SlotEvent::SlotReleased(_) => "SlotReleased",
            SlotEvent::SlotHeldForRetry(_) => "SlotHeldForRetry",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    #[error("the reservation is for another slot than this stream's")]
    WrongSlot,
    #[error("order {0} does not hold this slot")]
    NotHolder(OrderId),
    #[error("the release reason must be 1 to 200 characters")]
    InvalidReason,
    #[error("the slot has answered {MAX_ORDERS_PER_SLOT} orders; refusing more")]
    TooManyOrders,
    #[error("the slot is held by another booking")]
    Taken,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Slot {
    pub payee_id: Option<PayeeId>,
    pub starts_at: Option<DateTime<Utc>>,
    pub held_by: Option<OrderId>,
    /// Every order that reserved, was refused or released: a second answer for one is a no-op.
    pub answered: BTreeSet<OrderId>,
    /// The order whose payer is retrying a failed payment, and until when the slot waits.
    #[serde(default)]
    pub retry_hold: Option<(OrderId, DateTime<Utc>)>,
}

/// What a reservation came to, read from the slot after the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReservationOutcome {
    Holds,
    Taken { held_by: Option<OrderId> },
}

impl Slot {
    pub fn outcome_for(&self, order_id: &OrderId) -> ReservationOutcome {
        if self.held_by.as_ref() == Some(order_id) {
            ReservationOutcome::Holds
        } else {
            ReservationOutcome::Taken {
                held_by: self.held_by.clone(),
            }
        }
    }

    fn decide(&self, command: SlotCommand) -> Result<Vec<SlotEvent>, SlotError> {
        match command {
            SlotCommand::Reserve {
                payee_id,
                starts_at,
                order_id,
                at,
            } => {
                let same_slot = self.payee_id.as_ref().is_none_or(|p| *p == payee_id)
                    && self.starts_at.is_none_or(|s| s == starts_at);
                if !same_slot {
                    return Err(SlotError::WrongSlot);
                }
                if self.answered.contains(&order_id) {
                    return Ok(vec![]);
                }
                if self.answered.len() >= MAX_ORDERS_PER_SLOT {
                    return Err(SlotError::TooManyOrders);
                }
                // A payer retrying a failed payment keeps the slot for a few minutes.
                let held_for_retry = self
                    .retry_hold
                    .as_ref()
                    .filter(|(holder, until)| *holder != order_id && at < *until)
                    .map(|(holder, _)| holder.clone());
                Ok(vec![match self.held_by.clone().or(held_for_retry) {
                    None => SlotEvent::SlotReserved(SlotReserved {
                        payee_id,
                        starts_at,
                        order_id,
                        at,
                    }),
                    Some(held_by) => SlotEvent::SlotReservationRefused(SlotReservationRefused {
                        payee_id,
                        starts_at,
                        order_id,
                        held_by,
                        at,
                    }),
                }])
            }
            SlotCommand::Hold {
                payee_id,
                starts_at,
                order_id,
                until,
                at,
            } => {
                let same_slot = self.payee_id.as_ref().is_none_or(|p| *p == payee_id)
                    && self.starts_at.is_none_or(|s| s == starts_at);
                if !same_slot {
                    return Err(SlotError::WrongSlot);
                }
                let held_by_other = self
                    .retry_hold
                    .as_ref()
                    .is_some_and(|(holder, until)| *holder != order_id && at < *until);
                let already = self
                    .retry_hold
                    .as_ref()
                    .is_some_and(|(holder, held_until)| {
                        *holder == order_id && *held_until >= until
                    });
                if self.held_by.is_some() || held_by_other || already || until <= at {
                    return Ok(vec![]);
                }
                Ok(vec![SlotEvent::SlotHeldForRetry(SlotHeldForRetry {
                    payee_id,
                    starts_at,
                    order_id,
                    until,
                    at,
                })])
            }
            SlotCommand::ReserveIfFree {
                payee_id,
                starts_at,
                order_id,
                at,
            } => {
                let same_slot = self.payee_id.as_ref().is_none_or(|p| *p == payee_id)
                    && self.starts_at.is_none_or(|s| s == starts_at);
                if !same_slot {
                    return Err(SlotError::WrongSlot);
                }
                if self.held_by.as_ref() == Some(&order_id) {
                    return Ok(vec![]);
                }
                let held_for_retry = self
                    .retry_hold
                    .as_ref()
                    .is_some_and(|(holder, until)| *holder != order_id && at < *until);
                if self.held_by.is_some() || held_for_retry {
                    return Err(SlotError::Taken);
                }
                if self.answered.len() >= MAX_ORDERS_PER_SLOT {
                    return Err(SlotError::TooManyOrders);
                }
                Ok(vec![SlotEvent::SlotReserved(SlotReserved {
                    payee_id,
                    starts_at,
                    order_id,
                    at,
                })])
            }
            SlotCommand::Release {
                order_id,
                reason,
                at,
            } => {
                let len = reason.chars().count();
                if len == 0 || len > 200 || reason.chars().any(char::is_control) {
                    return Err(SlotError::InvalidReason);
                }
                if self.held_by.as_ref() == Some(&order_id) {
                    return Ok(vec![SlotEvent::SlotReleased(SlotReleased {
                        order_id,
                        reason,
                        at,
                    })]);
                }
                if self.answered.contains(&order_id) {
                    // Released before, or never held it: nothing is left to give back.
                    return Ok(vec![]);
                }
                Err(SlotError::NotHolder(order_id))
            }
        }
    }
}

impl Aggregate for Slot {
    const TYPE: &'static str = "slot";
    type Command = SlotCommand;
    type Event = SlotEvent;
    type Error = SlotError;
    type Services = ();

    async fn handle(
        &mut self,
        command: SlotCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), SlotError> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: SlotEvent) {
        match event {
            SlotEvent::SlotReserved(reserved) => {
                self.payee_id = Some(reserved.payee_id);
                self.starts_at = Some(reserved.starts_at);
                self.answered.insert(reserved.order_id.clone());
                self.held_by = Some(reserved.order_id);
            }
            SlotEvent::SlotReservationRefused(refused) => {
                self.payee_id = Some(refused.payee_id);
                self.starts_at = Some(refused.starts_at);
                self.answered.insert(refused.order_id);
            }
            SlotEvent::SlotReleased(released) => {
                if self.held_by.as_ref() == Some(&released.order_id) {
                    self.held_by = None;
                }
            }
            SlotEvent::SlotHeldForRetry(held) => {
                self.payee_id = Some(held.payee_id);
                self.starts_at = Some(held.starts_at);
                self.retry_hold = Some((held.order_id, held.until));
            }
        }
    }
}
