//! A booking: the provider's confirmation and its cancellation under the refund policy. Stream
//! `booking-{order_id}`.
//!
//! **Confirmation** (source document 5, §5.1 예약 확인): a paid booking that holds its slot awaits
//! the provider's confirmation for [`CONFIRMATION_WINDOW_HOURS`]; the provider is reminded after
//! [`CONFIRMATION_REMINDER_HOURS`]; a booking still unconfirmed at the end of the window is
//! recorded overdue and waits in the admins' queue, where an admin confirms it by hand or
//! force-cancels it (a full refund: the provider never accepted the booking). Each step is
//! recorded once; asking again changes nothing.
//!
//! The order stream records money (captures and refunds); this stream records the *decision*
//! a cancellation made — which policy tier applied, what the customer gets back and what the
//! provider keeps — once, with a version check, before any refund is sent. The refund that
//! follows (refund id [`CANCEL_REFUND_ID`]) is driven from this fact, so a crash between the two
//! is finished by the process manager and a repeated cancel refunds nothing more.

use crate::ids::{AdminId, CustomerId, OrderId, PayeeId};
use crate::money::{split_by_basis_points, BasisPoints, Currency};
use crate::refund_policy::{
    self, EmergencyApproval, RefundDecision, RefundPolicyError, RefundTier,
};
use chrono::{DateTime, Duration, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

/// The refund id of a cancellation's refund on the order (unique within the order).
pub const CANCEL_REFUND_ID: &str = "cancel";

/// How long the provider has to confirm a paid booking before it goes to the admins' queue.
pub const CONFIRMATION_WINDOW_HOURS: i64 = 24;
/// When the provider is reminded of a booking it has not confirmed (예약 확인 12시간 경과).
pub const CONFIRMATION_REMINDER_HOURS: i64 = 12;
/// Reschedules one booking may have: each moves the provider's calendar and both sides hear of it.
pub const MAX_RESCHEDULES: usize = 3;
/// Length of an admin's note or reason, in characters.
pub const MAX_ADMIN_NOTE_CHARS: usize = 500;

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

/// A paid booking that holds its slot, as its confirmation is asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfirmableBooking {
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    pub payee_id: PayeeId,
    pub service_starts_at: DateTime<Utc>,
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
    /// The booking was paid and holds its slot: the provider is asked to confirm it.
    RequestConfirmation {
        booking: ConfirmableBooking,
        at: DateTime<Utc>,
    },
    /// 12 hours passed without the provider's confirmation: remind the provider.
    RemindConfirmation { at: DateTime<Utc> },
    /// 24 hours passed without the provider's confirmation: the booking goes to the admins.
    RecordConfirmationOverdue { at: DateTime<Utc> },
    /// The provider (through the platform) or an admin confirms the booking.
    Confirm {
        /// `client:…` or `admin:…`, for the record.
        confirmed_by: String,
        /// Set when an admin confirms by hand from the queue.
        admin: Option<AdminId>,
        admin_notes: Option<String>,
        at: DateTime<Utc>,
    },
    /// Move the booking to another start (the new slot was taken for it already).
    Reschedule {
        order: BookedOrder,
        to: DateTime<Utc>,
        /// `client:…` or `admin:…`, for the record.
        requested_by: String,
        /// Set when an admin moves it (allowed with less than 48 hours' notice).
        admin: Option<AdminId>,
        reason: Option<String>,
        at: DateTime<Utc>,
    },
    /// The provider wrote the session's notes (상담일지); `reference` points at them (a document
    /// id or URL: the notes are personal data and stay out of the ledger).
    RecordSessionNotes {
        order: BookedOrder,
        reference: String,
        recorded_by: String,
        at: DateTime<Utc>,
    },
    /// An admin cancels an unconfirmed booking: the customer gets everything back.
    ForceCancel {
        order: BookedOrder,
        admin: AdminId,
        reason: String,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BookingEvent {
    BookingCancelled(BookingCancelled),
    BookingConfirmationRequested(BookingConfirmationRequested),
    BookingConfirmationReminderRequested(BookingConfirmationReminderRequested),
    BookingConfirmationOverdue(BookingConfirmationOverdue),
    BookingConfirmed(BookingConfirmed),
    BookingRescheduled(BookingRescheduled),
    SessionNotesRecorded(SessionNotesRecorded),
}

/// The session's notes exist: the payee's settlement line held for their absence is released.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionNotesRecorded {
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    pub payee_id: PayeeId,
    pub reference: String,
    pub recorded_by: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BookingRescheduled {
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    pub payee_id: PayeeId,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub requested_by: String,
    pub admin: Option<AdminId>,
    pub reason: Option<String>,
    /// Notice given before the start it moves from, in whole seconds.
    pub notice_seconds: i64,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BookingConfirmationRequested {
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    pub payee_id: PayeeId,
    pub service_starts_at: DateTime<Utc>,
    /// When the provider is reminded if it has not confirmed.
    pub remind_at: DateTime<Utc>,
    /// When an unconfirmed booking goes to the admins' queue.
    pub confirm_by: DateTime<Utc>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BookingConfirmationReminderRequested {
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    pub payee_id: PayeeId,
    pub service_starts_at: DateTime<Utc>,
    pub confirm_by: DateTime<Utc>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BookingConfirmationOverdue {
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    pub payee_id: PayeeId,
    pub service_starts_at: DateTime<Utc>,
    pub requested_at: DateTime<Utc>,
    pub confirm_by: DateTime<Utc>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BookingConfirmed {
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    pub payee_id: PayeeId,
    pub service_starts_at: DateTime<Utc>,
    pub confirmed_by: String,
    /// The admin who confirmed by hand, from the queue.
    pub admin: Option<AdminId>,
    pub admin_notes: Option<String>,
    /// Confirmed after the 24-hour window (it had gone to the admins' queue).
    pub overdue: bool,
    pub at: DateTime<Utc>,
}

/// Where a booking's confirmation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfirmationStatus {
    /// Waiting for the provider, within 24 hours.
    Awaiting,
    /// Unconfirmed after 24 hours: in the admins' queue.
    Overdue,
    Confirmed,
    Cancelled,
}

/// The confirmation of a booking, folded from its events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Confirmation {
    pub requested: BookingConfirmationRequested,
    pub reminded_at: Option<DateTime<Utc>>,
    pub overdue_at: Option<DateTime<Utc>>,
    pub confirmed: Option<BookingConfirmed>,
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
    /// Why an admin force-cancelled an unconfirmed booking (absent for other cancellations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_cancel_reason: Option<String>,
    pub at: DateTime<Utc>,
    /// Whose personal data the evidence is. From schema version 2 on; `None` in version 1.
    #[serde(default)]
    pub customer_id: Option<CustomerId>,
}

impl DomainEvent for BookingEvent {
    fn event_type(&self) -> String {
        match self {
            BookingEvent::BookingCancelled(_) => "BookingCancelled",
            BookingEvent::BookingConfirmationRequested(_) => "BookingConfirmationRequested",
            BookingEvent::BookingConfirmationReminderRequested(_) => {
                "BookingConfirmationReminderRequested"
            }
            BookingEvent::BookingConfirmationOverdue(_) => "BookingConfirmationOverdue",
            BookingEvent::BookingConfirmed(_) => "BookingConfirmed",
            BookingEvent::BookingRescheduled(_) => "BookingRescheduled",
            BookingEvent::SessionNotesRecorded(_) => "SessionNotesRecorded",
        }
        .to_string()
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
    #[error("the booking does not await a confirmation (not paid, or it lost its slot)")]
    NotAwaitingConfirmation,
    #[error("the booking was confirmed: cancel it under the refund policy instead")]
    AlreadyConfirmed,
    #[error("the booking was cancelled")]
    Cancelled,
    #[error("this step is due at {due_at}")]
    NotDue { due_at: DateTime<Utc> },
    #[error("a booking moves at least 48 hours before its start ({starts_at}); with less notice an admin moves it")]
    RescheduleTooLate { starts_at: DateTime<Utc> },
    #[error("the new start must be in the future and differ from the current one")]
    InvalidNewStart,
    #[error("the booking was moved {MAX_RESCHEDULES} times already")]
    TooManyReschedules,
    #[error("a note or reason must be 1 to {MAX_ADMIN_NOTE_CHARS} characters without control characters")]
    InvalidNote,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Booking {
    pub cancelled: Option<BookingCancelled>,
    #[serde(default)]
    pub confirmation: Option<Confirmation>,
    /// Every schedule change, in order; the last `to` is the booking's start.
    #[serde(default)]
    pub reschedules: Vec<BookingRescheduled>,
    #[serde(default)]
    pub session_notes: Option<SessionNotesRecorded>,
}

fn check_note(note: &str) -> Result<(), BookingError> {
    let len = note.chars().count();
    if len == 0 || len > MAX_ADMIN_NOTE_CHARS || note.chars().any(char::is_control) {
        return Err(BookingError::InvalidNote);
    }
    Ok(())
}

impl Booking {
    /// The booking's start after its schedule changes; `None` when it was never moved (the
    /// order's `serviceStartsAt` stands).
    pub fn rescheduled_start(&self) -> Option<DateTime<Utc>> {
        self.reschedules.last().map(|r| r.to)
    }

    /// Where the confirmation stands; `None` when none was asked for (not paid, lost its slot,
    /// or paid before confirmations existed).
    pub fn confirmation_status(&self) -> Option<ConfirmationStatus> {
        let confirmation = self.confirmation.as_ref()?;
        Some(if self.cancelled.is_some() {
            ConfirmationStatus::Cancelled
        } else if confirmation.confirmed.is_some() {
            ConfirmationStatus::Confirmed
        } else if confirmation.overdue_at.is_some() {
            ConfirmationStatus::Overdue
        } else {
            ConfirmationStatus::Awaiting
        })
    }

    /// The confirmation still waiting for the provider (awaiting or overdue), if any.
    fn unconfirmed(&self) -> Option<&Confirmation> {
        match self.confirmation_status()? {
            ConfirmationStatus::Awaiting | ConfirmationStatus::Overdue => {
                self.confirmation.as_ref()
            }
            _ => None,
        }
    }

    /// What the booking would record for `command` (pure: the application asks before it
    /// takes a new slot for a schedule change).
    pub fn decide(&self, command: BookingCommand) -> Result<Vec<BookingEvent>, BookingError> {
        match command {
            BookingCommand::Cancel {
                order,
                cancelled_by,
                emergency,
                at,
            } => self.cancel(order, cancelled_by, emergency, at),
            BookingCommand::RequestConfirmation { booking, at } => {
                if self.confirmation.is_some() || self.cancelled.is_some() {
                    return Ok(vec![]);
                }
                Ok(vec![BookingEvent::BookingConfirmationRequested(
                    BookingConfirmationRequested {
                        order_id: booking.order_id,
                        customer_id: booking.customer_id,
                        payee_id: booking.payee_id,
                        service_starts_at: booking.service_starts_at,
                        remind_at: at + Duration::hours(CONFIRMATION_REMINDER_HOURS),
                        confirm_by: at + Duration::hours(CONFIRMATION_WINDOW_HOURS),
                        at,
                    },
                )])
            }
            BookingCommand::RemindConfirmation { at } => {
                let Some(c) = self.unconfirmed() else {
                    return Ok(vec![]);
                };
                if c.reminded_at.is_some() || c.overdue_at.is_some() {
                    return Ok(vec![]);
                }
                let r = &c.requested;
                if at < r.remind_at {
                    return Err(BookingError::NotDue {
                        due_at: r.remind_at,
                    });
                }
                if at >= r.confirm_by {
                    // The window closed unseen (the job was down): the queue takes over.
                    return Ok(vec![]);
                }
                Ok(vec![BookingEvent::BookingConfirmationReminderRequested(
                    BookingConfirmationReminderRequested {
                        order_id: r.order_id.clone(),
                        customer_id: r.customer_id.clone(),
                        payee_id: r.payee_id.clone(),
                        service_starts_at: r.service_starts_at,
                        confirm_by: r.confirm_by,
                        at,
                    },
                )])
            }
            BookingCommand::RecordConfirmationOverdue { at } => {
                let Some(c) = self.unconfirmed() else {
                    return Ok(vec![]);
                };
                if c.overdue_at.is_some() {
                    return Ok(vec![]);
                }
                let r = &c.requested;
                if at < r.confirm_by {
                    return Err(BookingError::NotDue {
                        due_at: r.confirm_by,
                    });
                }
                Ok(vec![BookingEvent::BookingConfirmationOverdue(
                    BookingConfirmationOverdue {
                        order_id: r.order_id.clone(),
                        customer_id: r.customer_id.clone(),
                        payee_id: r.payee_id.clone(),
                        service_starts_at: r.service_starts_at,
                        requested_at: r.at,
                        confirm_by: r.confirm_by,
                        at,
                    },
                )])
            }
            BookingCommand::Confirm {
                confirmed_by,
                admin,
                admin_notes,
                at,
            } => {
                if self.cancelled.is_some() {
                    return Err(BookingError::Cancelled);
                }
                let Some(c) = self.confirmation.as_ref() else {
                    return Err(BookingError::NotAwaitingConfirmation);
                };
                if c.confirmed.is_some() {
                    // Confirmed before: the first confirmation stands.
                    return Ok(vec![]);
                }
                if let Some(note) = &admin_notes {
                    check_note(note)?;
                }
                let r = &c.requested;
                Ok(vec![BookingEvent::BookingConfirmed(BookingConfirmed {
                    order_id: r.order_id.clone(),
                    customer_id: r.customer_id.clone(),
                    payee_id: r.payee_id.clone(),
                    service_starts_at: r.service_starts_at,
                    confirmed_by,
                    admin,
                    admin_notes,
                    overdue: c.overdue_at.is_some(),
                    at,
                })])
            }
            BookingCommand::Reschedule {
                order,
                to,
                requested_by,
                admin,
                reason,
                at,
            } => {
                if self.cancelled.is_some() {
                    return Err(BookingError::Cancelled);
                }
                let original = order.service_starts_at.ok_or(BookingError::NotABooking)?;
                if order.captured_minor <= 0 || order.refunded_minor >= order.captured_minor {
                    return Err(BookingError::NotPaid);
                }
                let from = self.rescheduled_start().unwrap_or(original);
                if let Some(last) = self.reschedules.last() {
                    if last.to == to && last.requested_by == requested_by {
                        // The same change asked again: it stands.
                        return Ok(vec![]);
                    }
                }
                if to <= at || to == from {
                    return Err(BookingError::InvalidNewStart);
                }
                if self.reschedules.len() >= MAX_RESCHEDULES {
                    return Err(BookingError::TooManyReschedules);
                }
                let notice = from - at;
                if admin.is_none()
                    && notice < Duration::hours(refund_policy::FULL_REFUND_NOTICE_HOURS)
                {
                    return Err(BookingError::RescheduleTooLate { starts_at: from });
                }
                if let Some(reason) = &reason {
                    check_note(reason)?;
                }
                Ok(vec![BookingEvent::BookingRescheduled(BookingRescheduled {
                    order_id: order.order_id,
                    customer_id: order.customer_id,
                    payee_id: order.payee_id,
                    from,
                    to,
                    requested_by,
                    admin,
                    reason,
                    notice_seconds: notice.num_seconds(),
                    at,
                })])
            }
            BookingCommand::RecordSessionNotes {
                order,
                reference,
                recorded_by,
                at,
            } => {
                if self.session_notes.is_some() {
                    return Ok(vec![]);
                }
                if self.cancelled.is_some() {
                    return Err(BookingError::Cancelled);
                }
                if order.service_starts_at.is_none() {
                    return Err(BookingError::NotABooking);
                }
                if order.captured_minor <= 0 {
                    return Err(BookingError::NotPaid);
                }
                check_note(&reference)?;
                Ok(vec![BookingEvent::SessionNotesRecorded(
                    SessionNotesRecorded {
                        order_id: order.order_id,
                        customer_id: order.customer_id,
                        payee_id: order.payee_id,
                        reference,
                        recorded_by,
                        at,
                    },
                )])
            }
            BookingCommand::ForceCancel {
                order,
                admin,
                reason,
                at,
            } => {
                if self.cancelled.is_some() {
                    return self.cancel(order, String::new(), None, at);
                }
                let Some(c) = self.confirmation.as_ref() else {
                    return Err(BookingError::NotAwaitingConfirmation);
                };
                if c.confirmed.is_some() {
                    return Err(BookingError::AlreadyConfirmed);
                }
                check_note(&reason)?;
                if order.order_id != c.requested.order_id {
                    return Err(BookingError::WrongOrder);
                }
                if order.captured_minor <= 0 {
                    return Err(BookingError::NotPaid);
                }
                let starts_at = c.requested.service_starts_at;
                let (refund_minor, provider_minor) =
                    split_by_basis_points(order.captured_minor, BasisPoints::FULL);
                let decision = RefundDecision {
                    tier: RefundTier::Unconfirmed,
                    customer_share: BasisPoints::FULL,
                    refund_minor,
                    provider_minor,
                    notice_seconds: (starts_at - at).num_seconds(),
                };
                let refund_now_minor = (decision.refund_minor - order.refunded_minor).max(0);
                Ok(vec![BookingEvent::BookingCancelled(BookingCancelled {
                    order_id: order.order_id,
                    payee_id: order.payee_id,
                    currency: order.currency,
                    service_starts_at: starts_at,
                    paid_minor: order.captured_minor,
                    decision,
                    refund_now_minor,
                    emergency: None,
                    cancelled_by: format!("admin:{admin}"),
                    force_cancel_reason: Some(reason),
                    customer_id: Some(order.customer_id),
                    at,
                })])
            }
        }
    }

    fn cancel(
        &self,
        order: BookedOrder,
        cancelled_by: String,
        emergency: Option<EmergencyApproval>,
        at: DateTime<Utc>,
    ) -> Result<Vec<BookingEvent>, BookingError> {
        if let Some(cancelled) = &self.cancelled {
            if cancelled.order_id != order.order_id {
                return Err(BookingError::WrongOrder);
            }
            // Cancelled already: the first decision stands, asking again changes nothing.
            return Ok(vec![]);
        }
        let starts_at = self
            .rescheduled_start()
            .or(order.service_starts_at)
            .ok_or(BookingError::NotABooking)?;
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
            force_cancel_reason: None,
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
            BookingEvent::BookingConfirmationRequested(requested) => {
                self.confirmation = Some(Confirmation {
                    requested,
                    reminded_at: None,
                    overdue_at: None,
                    confirmed: None,
                });
            }
            BookingEvent::BookingConfirmationReminderRequested(reminded) => {
                if let Some(c) = self.confirmation.as_mut() {
                    c.reminded_at = Some(reminded.at);
                }
            }
            BookingEvent::BookingConfirmationOverdue(overdue) => {
                if let Some(c) = self.confirmation.as_mut() {
                    c.overdue_at = Some(overdue.at);
                }
            }
            BookingEvent::BookingConfirmed(confirmed) => {
                if let Some(c) = self.confirmation.as_mut() {
                    c.confirmed = Some(confirmed);
                }
            }
            BookingEvent::SessionNotesRecorded(recorded) => self.session_notes = Some(recorded),
            BookingEvent::BookingRescheduled(rescheduled) => {
                if let Some(c) = self.confirmation.as_mut() {
                    c.requested.service_starts_at = rescheduled.to;
                }
                self.reschedules.push(rescheduled);
            }
        }
    }
}
