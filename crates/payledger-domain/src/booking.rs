//! A booking's cancellation under the refund policy. Stream `booking-{order_id}`.
//!
//! The order stream records money (captures and refunds); this stream records the *decision*
//! a cancellation made — which policy tier applied, what the customer gets back and what the
//! provider keeps — once, with a version check, before any refund is sent. The refund that
//! follows (refund id [`CANCEL_REFUND_ID`]) is driven from this fact, so a crash between the two
//! is finished by the process manager and a repeated cancel refunds nothing more.

use crate::ids::{CustomerId, OrderId, PayeeId};
use crate::money::Currency;
use crate::refund_policy::{self, EmergencyApproval, RefundDecision, RefundPolicyError};
use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

/// The refund id of a cancellation's refund on the order (unique within the order).
pub const CANCEL_REFUND_ID: &str = "cancel";

pub fn stream_id(order_id: &OrderId) -> String {
    crate::streams::StreamKind::Booking.name(order_id)
}

/// The refund reason recorded on the order for a policy cancellation.
pub fn refund_reason(decision: &RefundDecision) -> String {
    let tier = crate::codec::wire_name(&decision.tier);
    format!("BOOKING_CANCELLED_{tier}")
}

/// What the application knows about the order when a cancellation is asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BookedOrder {
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    pub payee_id: PayeeId,
    pub currency: Currency,
    pub service_starts_at: Option<DateTime<Utc>>,
    /// Captured by the provider; 0 when the order is not paid.
    pub captured_minor: i64,
    /// Refunded or being refunded already (support refunds before the cancellation).
    pub refunded_minor: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BookingCommand {
    Cancel {
        order: BookedOrder,
        /// `client:…` or `admin:…`, for the record.
        cancelled_by: String,
        emergency: Option<EmergencyApproval>,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BookingEvent {
    BookingCancelled(BookingCancelled),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BookingCancelled {
    pub order_id: OrderId,
    pub payee_id: PayeeId,
    pub currency: Currency,
    pub service_starts_at: DateTime<Utc>,
    pub paid_minor: i64,
    pub decision: RefundDecision,
    /// What is still to be refunded now: the customer's share less what was refunded before.
    pub refund_now_minor: i64,
    /// Personal: `emergency.evidence` is sealed under `customer_id`.
    pub emergency: Option<EmergencyApproval>,
    pub cancelled_by: String,
    pub at: DateTime<Utc>,
    /// Whose personal data the evidence is. From schema version 2 on; `None` in version 1.
    #[serde(default)]
    pub customer_id: Option<CustomerId>,
}

impl DomainEvent for BookingEvent {
    fn event_type(&self) -> String {
        match self {
            BookingEvent::BookingCancelled(_) => "BookingCancelled".to_string(),
        }
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BookingError {
    #[error("the order has no service time: it is not a booking")]
    NotABooking,
    #[error("the order has no captured payment to cancel")]
    NotPaid,
    #[error("this stream belongs to another order")]
    WrongOrder,
    #[error(transparent)]
    Policy(#[from] RefundPolicyError),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Booking {
    pub cancelled: Option<BookingCancelled>,
}

impl Booking {
    fn decide(&self, command: BookingCommand) -> Result<Vec<BookingEvent>, BookingError> {
        let BookingCommand::Cancel {
            order,
            cancelled_by,
            emergency,
            at,
        } = command;
        if let Some(cancelled) = &self.cancelled {
            if cancelled.order_id != order.order_id {
                return Err(BookingError::WrongOrder);
            }
            // Cancelled already: the first decision stands, asking again changes nothing.
            return Ok(vec![]);
        }
        let starts_at = order.service_starts_at.ok_or(BookingError::NotABooking)?;
        if order.captured_minor <= 0 {
            return Err(BookingError::NotPaid);
        }
        let decision =
            refund_policy::decide(order.captured_minor, starts_at, at, emergency.as_ref())?;
        let refund_now_minor = (decision.refund_minor - order.refunded_minor).max(0);
        Ok(vec![BookingEvent::BookingCancelled(BookingCancelled {
            order_id: order.order_id,
            payee_id: order.payee_id,
            currency: order.currency,
            service_starts_at: starts_at,
            paid_minor: order.captured_minor,
            decision,
            refund_now_minor,
            emergency,
            cancelled_by,
            at,
            customer_id: Some(order.customer_id),
        })])
    }
}

impl Aggregate for Booking {
    const TYPE: &'static str = "booking";
    type Command = BookingCommand;
    type Event = BookingEvent;
    type Error = BookingError;
    type Services = ();

    async fn handle(
        &mut self,
        command: BookingCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), BookingError> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: BookingEvent) {
        match event {
            BookingEvent::BookingCancelled(cancelled) => self.cancelled = Some(cancelled),
        }
    }
}
