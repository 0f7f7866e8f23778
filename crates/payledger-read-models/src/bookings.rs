//! Read model "bookings": each booking's confirmation and cancellation. The confirmation job
//! reads what is due from it ([`confirmations_due`]) and admins read the queue of bookings still
//! unconfirmed after 24 hours ([`unconfirmed_queue`]). Folded with the booking aggregate's own
//! `apply`; the aggregate state is stored beside the row (streams are short and rarely read).

use crate::fold::{bad, distinct_ids, ensure_follows};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use payledger_domain::booking::{Booking, BookingEvent};
use payledger_domain::codec;
use payledger_domain::streams::StreamKind;
use payledger_projector::{Projection, ProjectionError};
use payledger_store::RecordedEvent;
use sqlx::{PgConnection, PgPool, Row};
use std::collections::BTreeMap;

/// Rows one page of the admins' queue may hold.
pub const MAX_QUEUE_PAGE: i64 = 100;

pub struct BookingsProjection;

/// A booking in the admins' queue of unconfirmed bookings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnconfirmedBooking {
    pub order_id: String,
    pub customer_id: String,
    pub payee_id: String,
    pub service_starts_at: DateTime<Utc>,
    pub requested_at: DateTime<Utc>,
    pub confirm_by: DateTime<Utc>,
    pub reminded_at: Option<DateTime<Utc>>,
    pub overdue_at: DateTime<Utc>,
}

struct Folding {
    booking: Booking,
    stream_version: i64,
    last_position: i64,
    updated_at: DateTime<Utc>,
}

fn order_id_of(stream_id: &str) -> Option<&str> {
    StreamKind::Booking.id_of(stream_id)
}

#[async_trait]
impl Projection for BookingsProjection {
    fn name(&self) -> &'static str {
        "bookings"
    }

    fn schema_sql(&self) -> &'static str {
        include_str!("../../../projections/bookings.sql")
    }

    fn tables(&self) -> &'static [&'static str] {
        &["bookings"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let relevant: Vec<&RecordedEvent> = events
            .iter()
            .filter(|e| order_id_of(&e.stream_id).is_some())
            .collect();
        if relevant.is_empty() {
            return Ok(());
        }
        let mut folding = load(conn, &relevant).await?;
        for event in relevant {
            let order_id = order_id_of(&event.stream_id).unwrap_or_default();
            let decoded: BookingEvent = codec::decode(&event.event_type, &event.payload)
                .map_err(|e| bad(event, e.to_string()))?;
            let row = folding
                .entry(order_id.to_string())
                .or_insert_with(|| Folding {
                    booking: Booking::default(),
                    stream_version: 0,
                    last_position: 0,
                    updated_at: event.recorded_at,
                });
            ensure_follows(event, row.stream_version)?;
            row.booking.apply(decoded);
            row.stream_version = event.stream_version;
            row.last_position = event.global_position;
            row.updated_at = event.recorded_at;
        }
        for (order_id, row) in folding {
            save(conn, &order_id, &row).await?;
        }
        Ok(())
    }
}

async fn load(
    conn: &mut PgConnection,
    events: &[&RecordedEvent],
) -> Result<BTreeMap<String, Folding>, ProjectionError> {
    let ids = distinct_ids(events.iter().filter_map(|e| order_id_of(&e.stream_id)));
    let rows = sqlx::query(
        "SELECT order_id, state, stream_version, last_position, updated_at FROM bookings \
         WHERE order_id = ANY($1)",
    )
    .persistent(false)
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut folding = BTreeMap::new();
    for row in rows {
        let state: serde_json::Value = row.try_get("state")?;
        let last_position: i64 = row.try_get("last_position")?;
        let booking: Booking =
            serde_json::from_value(state).map_err(|e| ProjectionError::BadEvent {
                position: last_position,
                reason: format!("stored booking state does not decode: {e}"),
            })?;
        folding.insert(
            row.try_get("order_id")?,
            Folding {
                booking,
                stream_version: row.try_get("stream_version")?,
                last_position,
                updated_at: row.try_get("updated_at")?,
            },
        );
    }
    Ok(folding)
}

async fn save(
    conn: &mut PgConnection,
    order_id: &str,
    row: &Folding,
) -> Result<(), ProjectionError> {
    let booking = &row.booking;
    let confirmation = booking.confirmation.as_ref();
    let requested = confirmation.map(|c| &c.requested);
    let confirmed = confirmation.and_then(|c| c.confirmed.as_ref());
    let cancelled = booking.cancelled.as_ref();
    let state = serde_json::to_value(booking).map_err(|e| ProjectionError::BadEvent {
        position: row.last_position,
        reason: format!("booking state does not serialise: {e}"),
    })?;
    sqlx::query(
        "INSERT INTO bookings (order_id, customer_id, payee_id, service_starts_at, \
            confirmation_status, requested_at, remind_at, confirm_by, reminded_at, overdue_at, \
            confirmed_at, confirmed_by, cancelled_at, stream_version, last_position, updated_at, \
            state, reschedule_count) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) \
         ON CONFLICT (order_id) DO UPDATE SET customer_id = EXCLUDED.customer_id, \
            payee_id = EXCLUDED.payee_id, service_starts_at = EXCLUDED.service_starts_at, \
            confirmation_status = EXCLUDED.confirmation_status, \
            requested_at = EXCLUDED.requested_at, remind_at = EXCLUDED.remind_at, \
            confirm_by = EXCLUDED.confirm_by, reminded_at = EXCLUDED.reminded_at, \
            overdue_at = EXCLUDED.overdue_at, confirmed_at = EXCLUDED.confirmed_at, \
            confirmed_by = EXCLUDED.confirmed_by, cancelled_at = EXCLUDED.cancelled_at, \
            stream_version = EXCLUDED.stream_version, last_position = EXCLUDED.last_position, \
            updated_at = EXCLUDED.updated_at, state = EXCLUDED.state, \
            reschedule_count = EXCLUDED.reschedule_count",
    )
    .bind(order_id)
    .bind(requested.map(|r| r.customer_id.to_string()).or_else(|| {
        booking
            .reschedules
            .last()
            .map(|r| r.customer_id.to_string())
    }))
    .bind(
        requested
            .map(|r| r.payee_id.to_string())
            .or_else(|| booking.reschedules.last().map(|r| r.payee_id.to_string()))
            .or_else(|| cancelled.map(|c| c.payee_id.to_string())),
    )
    .bind(
        booking
            .rescheduled_start()
            .or_else(|| requested.map(|r| r.service_starts_at))
            .or_else(|| cancelled.map(|c| c.service_starts_at)),
    )
    .bind(booking.confirmation_status().map(|s| codec::wire_name(&s)))
    .bind(requested.map(|r| r.at))
    .bind(requested.map(|r| r.remind_at))
    .bind(requested.map(|r| r.confirm_by))
    .bind(confirmation.and_then(|c| c.reminded_at))
    .bind(confirmation.and_then(|c| c.overdue_at))
    .bind(confirmed.map(|c| c.at))
    .bind(confirmed.map(|c| c.confirmed_by.clone()))
    .bind(cancelled.map(|c| c.at))
    .bind(row.stream_version)
    .bind(row.last_position)
    .bind(row.updated_at)
    .bind(state)
    .bind(booking.reschedules.len() as i32)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Bookings awaiting their provider whose 12-hour reminder or 24-hour deadline has come by
/// `now`, oldest first. Each is re-checked by the booking itself.
pub async fn confirmations_due(
    pool: &PgPool,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT order_id FROM rm.bookings WHERE confirmation_status = 'awaiting' \
           AND ((reminded_at IS NULL AND remind_at <= $1) OR confirm_by <= $1) \
         ORDER BY remind_at, order_id LIMIT $2",
    )
    .bind(now)
    .bind(limit.clamp(1, 10_000))
    .fetch_all(pool)
    .await
}

/// One page of the admins' queue: bookings unconfirmed after 24 hours, the longest overdue
/// first; and how many there are in all.
pub async fn unconfirmed_queue(
    pool: &PgPool,
    page: i64,
    limit: i64,
) -> Result<(Vec<UnconfirmedBooking>, i64), sqlx::Error> {
    let limit = limit.clamp(1, MAX_QUEUE_PAGE);
    let offset = (page.max(1) - 1).saturating_mul(limit);
    let total: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM rm.bookings WHERE confirmation_status = 'overdue'",
    )
    .fetch_one(pool)
    .await?;
    let rows = sqlx::query(
        "SELECT order_id, customer_id, payee_id, service_starts_at, requested_at, confirm_by, \
                reminded_at, overdue_at \
         FROM rm.bookings WHERE confirmation_status = 'overdue' \
         ORDER BY confirm_by, order_id LIMIT $1 OFFSET $2",
    )
    .bind(limit)
    .bind(offset)
    .fetch_all(pool)
    .await?;
    let mut queue = Vec::with_capacity(rows.len());
    for row in rows {
        queue.push(UnconfirmedBooking {
            order_id: row.try_get("order_id")?,
            customer_id: row.try_get("customer_id")?,
            payee_id: row.try_get("payee_id")?,
            service_starts_at: row.try_get("service_starts_at")?,
            requested_at: row.try_get("requested_at")?,
            confirm_by: row.try_get("confirm_by")?,
            reminded_at: row.try_get("reminded_at")?,
            overdue_at: row.try_get("overdue_at")?,
        });
    }
    Ok((queue, total))
}

/// Rescheduled bookings, not cancelled, whose new start is in `(from, to]`: the reminder job's
/// candidates beside the orders' own service times.
pub async fn rescheduled_starting_between(
    pool: &PgPool,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT order_id FROM rm.bookings WHERE reschedule_count > 0 AND cancelled_at IS NULL \
           AND service_starts_at > $1 AND service_starts_at <= $2 \
         ORDER BY service_starts_at LIMIT $3",
    )
    .bind(from)
    .bind(to)
    .bind(limit.clamp(1, 10_000))
    .fetch_all(pool)
    .await
}
