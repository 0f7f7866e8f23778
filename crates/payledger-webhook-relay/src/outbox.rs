//! The outbox follower: a [`Projection`] over the global log whose "read model" is the durable
//! queue of outbound notifications. The projector runtime commits its rows and its checkpoint in
//! one transaction, so each notifiable event enters the outbox exactly once, whatever crashes.
//!
//! It is deliberately *not* in `payledger_read_models::all_projections()`: rebuilding it from
//! position 0 would notify products of the whole history again. `serve` runs it next to the
//! read models; migration 0004 starts its checkpoint at the head of the log at that time.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use payledger_domain::streams::StreamKind;
use payledger_metrics::metrics;
use payledger_projector::{Projection, ProjectionError};
use payledger_store::RecordedEvent;
use serde_json::json;
use sqlx::{PgConnection, PgPool, Row};

use crate::notifications::{priority_for, priority_name, rule_for};

pub const OUTBOX_PROJECTION_NAME: &str = "webhook_outbox";

/// Puts notifications for `endpoints` into `webhook_outbox`.
pub struct OutboxProjection {
    endpoints: Vec<String>,
}

impl OutboxProjection {
    pub fn new(endpoints: Vec<String>) -> OutboxProjection {
        OutboxProjection { endpoints }
    }
}

/// The exact body sent (and signed) for `event`: Standard Webhooks' `type`, `timestamp` and
/// `data`, plus payledger's `priority`. Built only from the stored event, so it is the same
/// however often it is built.
pub fn notification_body(
    event: &RecordedEvent,
    notification_type: &str,
    priority: &str,
) -> serde_json::Value {
    let order_id = StreamKind::Order.id_of(&event.stream_id);
    json!({
        "type": notification_type,
        "timestamp": event.recorded_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "priority": priority,
        "data": {
            "eventId": event.event_id.to_string(),
            "eventType": event.event_type,
            "streamId": event.stream_id,
            "streamVersion": event.stream_version,
            "position": event.global_position,
            "orderId": order_id,
            "event": event.payload,
        }
    })
}

/// Business counters taken from the log as the follower passes each event once: the payment
/// success rate, the amount-mismatch rate and billing charge outcomes. Counted where the event
/// is followed, so a cluster counts each event once in all (summed over instances).
fn observe(event: &RecordedEvent) {
    let m = metrics();
    match event.event_type.as_str() {
        "PaymentConfirmationStarted" => {
            m.confirmation_attempts.inc();
        }
        "ConfirmationRejected" => {
            m.confirmation_attempts.inc();
            m.amount_mismatches.inc();
        }
        "PaymentCaptured" => m.payment_outcome("captured"),
        "PaymentFailed" => m.payment_outcome("failed"),
        "PaymentOutcomeUnknown" => m.payment_outcome("unknown"),
        "ChargeSucceeded" => m.billing_charge("succeeded"),
        "ChargeFailed" => m.billing_charge("failed"),
        "ChargeOutcomeUnknown" => m.billing_charge("unknown"),
        _ => {}
    }
}

#[async_trait]
impl Projection for OutboxProjection {
    fn name(&self) -> &'static str {
        OUTBOX_PROJECTION_NAME
    }

    /// The outbox table belongs to migration 0004 (it must survive any rebuild), so there is
    /// nothing to create here.
    fn schema_sql(&self) -> &'static str {
        "SELECT 1"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let mut rows = OutboxRows::default();
        for event in events {
            observe(event);
            let Some(rule) = rule_for(&event.event_type) else {
                continue;
            };
            if self.endpoints.is_empty() {
                // Nowhere to send it: the event still counted in `observe`, no body to build.
                continue;
            }
            let priority = priority_name(priority_for(rule, &event.payload));
            let body = notification_body(event, rule.notification_type, priority).to_string();
            for endpoint in &self.endpoints {
                rows.message_id.push(event.event_id.to_string());
                rows.endpoint_url.push(endpoint.clone());
                rows.notification_type
                    .push(rule.notification_type.to_string());
                rows.priority.push(priority.to_string());
                rows.source_position.push(event.global_position);
                rows.body.push(body.clone());
                rows.created_at.push(event.recorded_at);
                metrics().notification_enqueued(rule.notification_type, priority);
            }
        }
        if rows.message_id.is_empty() {
            return Ok(());
        }
        // Qualified: the runtime points search_path at the read-model schema.
        sqlx::query(
            "INSERT INTO public.webhook_outbox (message_id, endpoint_url, notification_type, \
                priority, source_position, body, status, attempts, next_attempt_at, created_at) \
             SELECT m, e, t, p, s, b, 'pending', 0, c, c \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], \
                $6::text[], $7::timestamptz[]) AS x(m, e, t, p, s, b, c) \
             ON CONFLICT (message_id, endpoint_url) DO NOTHING",
        )
        .bind(&rows.message_id)
        .bind(&rows.endpoint_url)
        .bind(&rows.notification_type)
        .bind(&rows.priority)
        .bind(&rows.source_position)
        .bind(&rows.body)
        .bind(&rows.created_at)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

#[derive(Default)]
struct OutboxRows {
    message_id: Vec<String>,
    endpoint_url: Vec<String>,
    notification_type: Vec<String>,
    priority: Vec<String>,
    source_position: Vec<i64>,
    body: Vec<String>,
    created_at: Vec<DateTime<Utc>>,
}

/// A dead-lettered notification (what the admin API and the CLI list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundDeadLetter {
    pub id: i64,
    pub message_id: String,
    pub endpoint_url: String,
    pub notification_type: String,
    pub priority: String,
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub last_status_code: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub dead_lettered_at: Option<DateTime<Utc>>,
}

const OUTBOUND_COLUMNS: &str = "id, message_id, endpoint_url, notification_type, priority, \
    status, attempts, last_error, last_status_code, created_at, dead_lettered_at";

impl OutboundDeadLetter {
    fn from_row(row: &sqlx::postgres::PgRow) -> Result<OutboundDeadLetter, sqlx::Error> {
        Ok(OutboundDeadLetter {
            id: row.try_get("id")?,
            message_id: row.try_get("message_id")?,
            endpoint_url: row.try_get("endpoint_url")?,
            notification_type: row.try_get("notification_type")?,
            priority: row.try_get("priority")?,
            status: row.try_get("status")?,
            attempts: row.try_get("attempts")?,
            last_error: row.try_get("last_error")?,
            last_status_code: row.try_get("last_status_code")?,
            created_at: row.try_get("created_at")?,
            dead_lettered_at: row.try_get("dead_lettered_at")?,
        })
    }
}

/// Dead-lettered notifications, oldest first, after outbox id `after_id`.
pub async fn outbound_dead_letters(
    pool: &PgPool,
    after_id: i64,
    limit: i64,
) -> Result<Vec<OutboundDeadLetter>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {OUTBOUND_COLUMNS} FROM webhook_outbox \
         WHERE status = 'dead' AND id > $1 ORDER BY id LIMIT $2"
    ))
    .bind(after_id)
    .bind(limit.clamp(1, 1_000))
    .fetch_all(pool)
    .await?;
    rows.iter().map(OutboundDeadLetter::from_row).collect()
}

/// Sends a dead-lettered notification again from attempt 1, with the same `webhook-id`.
pub async fn replay_outbound(
    pool: &PgPool,
    outbox_id: i64,
    now: DateTime<Utc>,
) -> Result<OutboundDeadLetter, crate::ReplayError> {
    let row = sqlx::query(&format!(
        "UPDATE webhook_outbox SET status = 'pending', attempts = 0, next_attempt_at = $2, \
            dead_lettered_at = NULL \
         WHERE id = $1 AND status = 'dead' RETURNING {OUTBOUND_COLUMNS}"
    ))
    .bind(outbox_id)
    .bind(now)
    .fetch_optional(pool)
    .await?;
    match row {
        Some(row) => Ok(OutboundDeadLetter::from_row(&row)?),
        None => {
            let exists: Option<i64> =
                sqlx::query_scalar("SELECT id FROM webhook_outbox WHERE id = $1")
                    .bind(outbox_id)
                    .fetch_optional(pool)
                    .await?;
            Err(match exists {
                Some(_) => crate::ReplayError::NotDeadLettered,
                None => crate::ReplayError::NotFound,
            })
        }
    }
}

/// How many deliveries are dead-lettered now, inbound and outbound (for the metrics gauge).
pub async fn dead_letter_counts(pool: &PgPool) -> Result<(i64, i64), sqlx::Error> {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM webhook_inbox WHERE status = 'dead'), \
                (SELECT count(*) FROM webhook_outbox WHERE status = 'dead')",
    )
    .fetch_one(pool)
    .await
}
