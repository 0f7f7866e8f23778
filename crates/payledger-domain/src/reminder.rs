//! Session reminders of a paid booking (source document 5 §5.1 세션 리마인드): the day before at
//! 14:00 (in the settlement time zone) and 2 hours before the start. Stream
//! `reminders-{order_id}`, apart from the booking's cancellation stream, so the processes that
//! follow bookings never see them. Each reminder is requested once; the notification relay tells
//! the product (`booking.reminder`, priority normal).

use crate::ids::{CustomerId, OrderId, PayeeId};
use chrono::{DateTime, Duration, NaiveTime, Utc};
use chrono_tz::Tz;
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

/// The day-before reminder's local time.
pub const DAY_BEFORE_LOCAL_HOUR: u32 = 14;
/// The last reminder, before the start.
pub const HOURS_BEFORE: i64 = 2;

pub fn stream_id(order_id: &OrderId) -> String {
    crate::streams::StreamKind::Reminders.name(order_id)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReminderKind {
    /// The day before the session, at 14:00 local time.
    DayBefore,
    /// Two hours before the start.
    TwoHoursBefore,
}

impl ReminderKind {
    pub const ALL: [ReminderKind; 2] = [ReminderKind::DayBefore, ReminderKind::TwoHoursBefore];

    /// When this reminder is due for a session starting at `starts_at`.
    pub fn due_at(self, starts_at: DateTime<Utc>, time_zone: Tz) -> DateTime<Utc> {
        match self {
            ReminderKind::DayBefore => {
                let day_before =
                    starts_at.with_timezone(&time_zone).date_naive() - Duration::days(1);
                let local = day_before.and_time(
                    NaiveTime::from_hms_opt(DAY_BEFORE_LOCAL_HOUR, 0, 0).unwrap_or_default(),
                );
                local
                    .and_local_timezone(time_zone)
                    .earliest()
                    .map_or(starts_at - Duration::days(1), |t| t.with_timezone(&Utc))
            }
            ReminderKind::TwoHoursBefore => starts_at - Duration::hours(HOURS_BEFORE),
        }
    }

    /// Until when sending it still makes sense: the day-before reminder gives way to the
    /// two-hour one, the two-hour one to the session itself.
    pub fn useful_until(self, starts_at: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            ReminderKind::DayBefore => starts_at - Duration::hours(HOURS_BEFORE),
            ReminderKind::TwoHoursBefore => starts_at,
        }
    }
}

/// What the application knows about the booking when a reminder is due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemindedBooking {
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    pub payee_id: PayeeId,
    pub service_starts_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReminderCommand {
    Request {
        booking: RemindedBooking,
        kind: ReminderKind,
        time_zone: Tz,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReminderEvent {
    SessionReminderRequested(SessionReminderRequested),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionReminderRequested {
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    pub payee_id: PayeeId,
    pub kind: ReminderKind,
    pub service_starts_at: DateTime<Utc>,
    pub at: DateTime<Utc>,
}

impl DomainEvent for ReminderEvent {
    fn event_type(&self) -> String {
        match self {
            ReminderEvent::SessionReminderRequested(_) => "SessionReminderRequested".to_string(),
        }
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReminderError {
    #[error("the reminder is due at {due_at}")]
    NotDue { due_at: DateTime<Utc> },
    #[error("this stream belongs to another order")]
    WrongOrder,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reminders {
    pub order_id: Option<OrderId>,
    pub sent: Vec<ReminderKind>,
    /// Each reminder with the start it was for: a rescheduled booking is reminded again for
    /// its new start.
    #[serde(default)]
    pub sent_for: Vec<(ReminderKind, DateTime<Utc>)>,
}

impl Reminders {
    fn decide(&self, command: ReminderCommand) -> Result<Vec<ReminderEvent>, ReminderError> {
        let ReminderCommand::Request {
            booking,
            kind,
            time_zone,
            at,
        } = command;
        if self
            .order_id
            .as_ref()
            .is_some_and(|id| *id != booking.order_id)
        {
            return Err(ReminderError::WrongOrder);
        }
        if self.sent_for.contains(&(kind, booking.service_starts_at)) {
            return Ok(vec![]);
        }
        let due_at = kind.due_at(booking.service_starts_at, time_zone);
        if at < due_at {
            return Err(ReminderError::NotDue { due_at });
        }
        if at >= kind.useful_until(booking.service_starts_at) {
            // Too late to be useful (the booking was made later, or the job was down).
            return Ok(vec![]);
        }
        Ok(vec![ReminderEvent::SessionReminderRequested(
            SessionReminderRequested {
                order_id: booking.order_id,
                customer_id: booking.customer_id,
                payee_id: booking.payee_id,
                kind,
                service_starts_at: booking.service_starts_at,
                at,
            },
        )])
    }
}

impl Aggregate for Reminders {
    const TYPE: &'static str = "reminders";
    type Command = ReminderCommand;
    type Event = ReminderEvent;
    type Error = ReminderError;
    type Services = ();

    async fn handle(
        &mut self,
        command: ReminderCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), ReminderError> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: ReminderEvent) {
        match event {
            ReminderEvent::SessionReminderRequested(requested) => {
                self.order_id = Some(requested.order_id);
                self.sent.push(requested.kind);
                self.sent_for
                    .push((requested.kind, requested.service_starts_at));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_day_before_is_14_00_in_seoul_and_the_last_two_hours_before() {
        // Wednesday 2026-10-07 19:00 in Seoul.
        let starts = Utc.with_ymd_and_hms(2026, 10, 7, 10, 0, 0).unwrap();
        let seoul = chrono_tz::Asia::Seoul;
        assert_eq!(
            ReminderKind::DayBefore.due_at(starts, seoul),
            Utc.with_ymd_and_hms(2026, 10, 6, 5, 0, 0).unwrap()
        );
        assert_eq!(
            ReminderKind::TwoHoursBefore.due_at(starts, seoul),
            starts - Duration::hours(2)
        );
        // A session at 01:00 Seoul time: the day before is still the calendar day before.
        let early = Utc.with_ymd_and_hms(2026, 10, 6, 16, 0, 0).unwrap();
        assert_eq!(
            ReminderKind::DayBefore.due_at(early, seoul),
            Utc.with_ymd_and_hms(2026, 10, 6, 5, 0, 0).unwrap()
        );
    }
}
