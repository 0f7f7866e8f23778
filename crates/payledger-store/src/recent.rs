//! The recent events of chosen types, by commit time: what a dashboard charts from the log
//! (the console's service-level figures over the last hours). Only the stream, type and commit
//! time are read, never payloads, and "recent" is measured against the database's clock (the
//! same clock that stamped `recorded_at`), so no process reads its own wall clock for it.

use crate::ReadError;
use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};

/// Events one read returns at most; a period with more is reported `truncated`.
pub const MAX_RECENT_EVENTS: i64 = 200_000;
/// The longest period one read covers: a week.
pub const MAX_RECENT_PERIOD_S: i64 = 7 * 24 * 3600;

/// One event, without its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedEvent {
    pub stream_id: String,
    pub event_type: String,
    pub recorded_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct RecentEvents {
    /// The database's now when the read began: the period is `[now - period, now]`.
    pub now: DateTime<Utc>,
    /// In log order.
    pub events: Vec<TimedEvent>,
    /// More events of these types fall in the period than were read.
    pub truncated: bool,
}

/// Events of `event_types` committed in the last `period_s` seconds (at most
/// [`MAX_RECENT_PERIOD_S`]), in log order, at most `limit` (at most [`MAX_RECENT_EVENTS`]).
/// The BRIN index on `recorded_at` (migration 0050) keeps this from reading the whole log.
pub async fn recent_events_of_types(
    pool: &PgPool,
    event_types: &[&str],
    period_s: i64,
    limit: i64,
) -> Result<RecentEvents, ReadError> {
    let period_s = period_s.clamp(1, MAX_RECENT_PERIOD_S);
    let limit = limit.clamp(1, MAX_RECENT_EVENTS);
    let now: DateTime<Utc> = sqlx::query_scalar("SELECT now()").fetch_one(pool).await?;
    let from = now - chrono::Duration::seconds(period_s);
    let types: Vec<String> = event_types.iter().map(|t| t.to_string()).collect();
    let rows = sqlx::query(
        "SELECT stream_id, event_type, recorded_at FROM events \
         WHERE recorded_at >= $1 AND recorded_at <= $2 AND event_type = ANY($3) \
         ORDER BY global_position LIMIT $4",
    )
    .bind(from)
    .bind(now)
    .bind(&types)
    .bind(limit + 1)
    .fetch_all(pool)
    .await?;
    let truncated = rows.len() as i64 > limit;
    let events = rows
        .iter()
        .take(limit as usize)
        .map(|row| {
            Ok(TimedEvent {
                stream_id: row.try_get("stream_id")?,
                event_type: row.try_get("event_type")?,
                recorded_at: row.try_get("recorded_at")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(RecentEvents {
        now,
        events,
        truncated,
    })
}
