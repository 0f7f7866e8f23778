//! Read model "orders": the order row and the per-order timeline.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use payledger_domain::codec;
use payledger_domain::order::{Order, OrderEvent, OrderStatus};
use payledger_domain::webhook::{self, WebhookDeliveryEvent};
use payledger_projector::{Projection, ProjectionError};
use payledger_store::RecordedEvent;
use sqlx::{PgConnection, PgPool, Row};
use std::collections::HashMap;

pub const ORDER_STREAM_PREFIX: &str = "order-";

pub struct OrdersProjection;

/// An order as support and API clients see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderView {
    pub order_id: String,
    pub status: String,
    pub amount_minor: i64,
    pub currency: String,
    pub customer_id: String,
    pub payee_id: String,
    pub order_name: String,
    pub provider: String,
    pub payment_key: Option<String>,
    pub captured_minor: i64,
    pub refunded_minor: i64,
    pub refund_pending_minor: i64,
    pub refundable_minor: i64,
    pub last_failure_code: Option<String>,
    pub amount_mismatch_count: i32,
    pub service_starts_at: Option<DateTime<Utc>>,
    pub placed_at: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
    pub fulfilled_at: Option<DateTime<Utc>>,
    pub stream_version: i64,
    pub last_position: i64,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineEntry {
    pub global_position: i64,
    pub stream_id: String,
    pub stream_version: i64,
    pub event_type: String,
    pub recorded_at: DateTime<Utc>,
    pub actor: Option<String>,
    pub summary: String,
    pub payload: serde_json::Value,
}

/// The row being folded: the aggregate state plus what only the read model keeps.
struct Folding {
    order: Order,
    stream_version: i64,
    last_position: i64,
    updated_at: DateTime<Utc>,
    amount_mismatch_count: i32,
}

fn order_id_of(stream_id: &str) -> Option<&str> {
    stream_id.strip_prefix(ORDER_STREAM_PREFIX)
}

#[async_trait]
impl Projection for OrdersProjection {
    fn name(&self) -> &'static str {
        "orders"
    }

    fn schema_sql(&self) -> &'static str {
        include_str!("../../../projections/orders.sql")
    }

    fn tables(&self) -> &'static [&'static str] {
        &["order_timeline", "orders"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let mut timeline = TimelineRows::default();
        push_webhook_rows(events, &mut timeline)?;
        let relevant: Vec<&RecordedEvent> = events
            .iter()
            .filter(|e| order_id_of(&e.stream_id).is_some())
            .collect();
        if relevant.is_empty() {
            timeline.insert(conn).await?;
            return Ok(());
        }
        let mut folding = load(conn, &relevant).await?;
        for event in &relevant {
            let order_id = order_id_of(&event.stream_id).unwrap_or_default();
            let decoded: OrderEvent = codec::decode(&event.event_type, &event.payload)
                .map_err(|e| bad(event, e.to_string()))?;
            let row = folding
                .entry(order_id.to_string())
                .or_insert_with(|| Folding {
                    order: Order::default(),
                    stream_version: 0,
                    last_position: 0,
                    updated_at: event.recorded_at,
                    amount_mismatch_count: 0,
                });
            // Pair assertion: the log hands each stream's events over contiguously.
            if event.stream_version != row.stream_version + 1 {
                return Err(bad(
                    event,
                    format!(
                        "version {} follows {}",
                        event.stream_version, row.stream_version
                    ),
                ));
            }
            if let OrderEvent::ConfirmationRejected(_) = &decoded {
                row.amount_mismatch_count += 1;
            }
            timeline.push(order_id, event, summarize(&decoded));
            row.order.apply(decoded);
            row.stream_version = event.stream_version;
            row.last_position = event.global_position;
            row.updated_at = event.recorded_at;
        }
        save(conn, folding).await?;
        timeline.insert(conn).await?;
        Ok(())
    }
}

/// Webhook deliveries show in the timeline of the order they concern (the order id in the event
/// is one payledger established: signed body or the provider's API), next to the order's own
/// events, so support sees provider-side changes in one place.
fn push_webhook_rows(
    events: &[RecordedEvent],
    timeline: &mut TimelineRows,
) -> Result<(), ProjectionError> {
    for event in events
        .iter()
        .filter(|e| e.stream_id.starts_with(webhook::STREAM_PREFIX))
    {
        let decoded: WebhookDeliveryEvent = codec::decode(&event.event_type, &event.payload)
            .map_err(|e| bad(event, e.to_string()))?;
        if let Some(order_id) = decoded.order_id() {
            timeline.push(order_id, event, decoded.summary());
        }
    }
    Ok(())
}

fn bad(event: &RecordedEvent, reason: String) -> ProjectionError {
    ProjectionError::BadEvent {
        position: event.global_position,
        reason,
    }
}

async fn load(
    conn: &mut PgConnection,
    events: &[&RecordedEvent],
) -> Result<HashMap<String, Folding>, ProjectionError> {
    let mut ids: Vec<String> = events
        .iter()
        .filter_map(|e| order_id_of(&e.stream_id).map(str::to_string))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let rows = sqlx::query(
        "SELECT order_id, state, stream_version, last_position, updated_at, amount_mismatch_count \
         FROM orders WHERE order_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut folding = HashMap::with_capacity(ids.len());
    for row in rows {
        let state: serde_json::Value = row.try_get("state")?;
        let order: Order =
            serde_json::from_value(state).map_err(|e| ProjectionError::BadEvent {
                position: row.try_get("last_position").unwrap_or_default(),
                reason: format!("stored order state does not decode: {e}"),
            })?;
        folding.insert(
            row.try_get("order_id")?,
            Folding {
                order,
                stream_version: row.try_get("stream_version")?,
                last_position: row.try_get("last_position")?,
                updated_at: row.try_get("updated_at")?,
                amount_mismatch_count: row.try_get("amount_mismatch_count")?,
            },
        );
    }
    Ok(folding)
}

fn status_name(status: OrderStatus) -> String {
    payledger_domain::codec::wire_name(&status)
}

/// Writes every folded row with one multi-row upsert.
async fn save(
    conn: &mut PgConnection,
    folding: HashMap<String, Folding>,
) -> Result<(), ProjectionError> {
    let mut c = Columns::default();
    for (order_id, row) in folding {
        let Some(placed) = row.order.placed.as_ref() else {
            // Events before OrderPlaced cannot exist (the aggregate refuses them).
            continue;
        };
        c.order_id.push(order_id);
        c.status.push(status_name(row.order.status));
        c.amount_minor.push(placed.amount.amount_minor());
        c.currency.push(placed.amount.currency().code().to_string());
        c.customer_id.push(placed.customer_id.to_string());
        c.payee_id.push(placed.payee_id.to_string());
        c.order_name.push(placed.order_name.clone());
        c.provider.push(placed.provider.clone());
        c.payment_key
            .push(row.order.payment_key.as_ref().map(|k| k.to_string()));
        c.captured_minor.push(row.order.captured_minor);
        c.refunded_minor.push(row.order.refunded_minor);
        c.refund_pending_minor.push(row.order.refund_pending_minor);
        c.refundable_minor.push(row.order.refundable_minor());
        c.last_failure_code.push(
            row.order
                .last_failure
                .as_ref()
                .map(|f| f.provider_code.clone()),
        );
        c.amount_mismatch_count.push(row.amount_mismatch_count);
        c.service_starts_at.push(placed.service_starts_at);
        c.placed_at.push(placed.placed_at);
        c.paid_at.push(row.order.paid_at);
        c.fulfilled_at.push(row.order.fulfilled_at);
        c.stream_version.push(row.stream_version);
        c.last_position.push(row.last_position);
        c.updated_at.push(row.updated_at);
        c.state.push(
            serde_json::to_value(&row.order).map_err(|e| ProjectionError::BadEvent {
                position: row.last_position,
                reason: format!("order state does not serialise: {e}"),
            })?,
        );
    }
    if c.order_id.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO orders (order_id, status, amount_minor, currency, customer_id, payee_id, order_name, \
            provider, payment_key, captured_minor, refunded_minor, refund_pending_minor, refundable_minor, \
            last_failure_code, amount_mismatch_count, service_starts_at, placed_at, paid_at, fulfilled_at, \
            stream_version, last_position, updated_at, state) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], \
            $7::text[], $8::text[], $9::text[], $10::bigint[], $11::bigint[], $12::bigint[], $13::bigint[], \
            $14::text[], $15::int[], $16::timestamptz[], $17::timestamptz[], $18::timestamptz[], \
            $19::timestamptz[], $20::bigint[], $21::bigint[], $22::timestamptz[], $23::jsonb[]) \
         ON CONFLICT (order_id) DO UPDATE SET status = EXCLUDED.status, payment_key = EXCLUDED.payment_key, \
            captured_minor = EXCLUDED.captured_minor, refunded_minor = EXCLUDED.refunded_minor, \
            refund_pending_minor = EXCLUDED.refund_pending_minor, refundable_minor = EXCLUDED.refundable_minor, \
            last_failure_code = EXCLUDED.last_failure_code, amount_mismatch_count = EXCLUDED.amount_mismatch_count, \
            paid_at = EXCLUDED.paid_at, fulfilled_at = EXCLUDED.fulfilled_at, \
            stream_version = EXCLUDED.stream_version, last_position = EXCLUDED.last_position, \
            updated_at = EXCLUDED.updated_at, state = EXCLUDED.state",
    )
    .bind(&c.order_id)
    .bind(&c.status)
    .bind(&c.amount_minor)
    .bind(&c.currency)
    .bind(&c.customer_id)
    .bind(&c.payee_id)
    .bind(&c.order_name)
    .bind(&c.provider)
    .bind(&c.payment_key)
    .bind(&c.captured_minor)
    .bind(&c.refunded_minor)
    .bind(&c.refund_pending_minor)
    .bind(&c.refundable_minor)
    .bind(&c.last_failure_code)
    .bind(&c.amount_mismatch_count)
    .bind(&c.service_starts_at)
    .bind(&c.placed_at)
    .bind(&c.paid_at)
    .bind(&c.fulfilled_at)
    .bind(&c.stream_version)
    .bind(&c.last_position)
    .bind(&c.updated_at)
    .bind(&c.state)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[derive(Default)]
struct Columns {
    order_id: Vec<String>,
    status: Vec<String>,
    amount_minor: Vec<i64>,
    currency: Vec<String>,
    customer_id: Vec<String>,
    payee_id: Vec<String>,
    order_name: Vec<String>,
    provider: Vec<String>,
    payment_key: Vec<Option<String>>,
    captured_minor: Vec<i64>,
    refunded_minor: Vec<i64>,
    refund_pending_minor: Vec<i64>,
    refundable_minor: Vec<i64>,
    last_failure_code: Vec<Option<String>>,
    amount_mismatch_count: Vec<i32>,
    service_starts_at: Vec<Option<DateTime<Utc>>>,
    placed_at: Vec<DateTime<Utc>>,
    paid_at: Vec<Option<DateTime<Utc>>>,
    fulfilled_at: Vec<Option<DateTime<Utc>>>,
    stream_version: Vec<i64>,
    last_position: Vec<i64>,
    updated_at: Vec<DateTime<Utc>>,
    state: Vec<serde_json::Value>,
}

/// Timeline rows of a batch, written with one multi-row insert.
#[derive(Default)]
pub(crate) struct TimelineRows {
    order_id: Vec<String>,
    global_position: Vec<i64>,
    stream_id: Vec<String>,
    stream_version: Vec<i64>,
    event_type: Vec<String>,
    recorded_at: Vec<DateTime<Utc>>,
    actor: Vec<Option<String>>,
    summary: Vec<String>,
}

impl TimelineRows {
    pub(crate) fn push(&mut self, order_id: &str, event: &RecordedEvent, summary: String) {
        self.order_id.push(order_id.to_string());
        self.global_position.push(event.global_position);
        self.stream_id.push(event.stream_id.clone());
        self.stream_version.push(event.stream_version);
        self.event_type.push(event.event_type.clone());
        self.recorded_at.push(event.recorded_at);
        self.actor.push(
            event
                .metadata
                .get("actor")
                .and_then(|a| a.as_str())
                .map(str::to_string),
        );
        self.summary.push(summary);
    }

    pub(crate) async fn insert(self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        if self.order_id.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO order_timeline (order_id, global_position, stream_id, stream_version, event_type, \
                recorded_at, actor, summary) \
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::text[], \
                $6::timestamptz[], $7::text[], $8::text[])",
        )
        .bind(&self.order_id)
        .bind(&self.global_position)
        .bind(&self.stream_id)
        .bind(&self.stream_version)
        .bind(&self.event_type)
        .bind(&self.recorded_at)
        .bind(&self.actor)
        .bind(&self.summary)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

/// One line a support person can read.
fn summarize(event: &OrderEvent) -> String {
    match event {
        OrderEvent::OrderPlaced(p) => format!("order placed: {} for '{}'", p.amount, p.order_name),
        OrderEvent::ConfirmationRejected(r) => format!(
            "confirmation rejected: claimed {} but the order is {} (E_AMOUNT_MISMATCH)",
            r.claimed_amount_minor, r.expected_amount_minor
        ),
        OrderEvent::PaymentConfirmationStarted(s) => {
            format!("confirmation attempt {} sent to the provider", s.attempt)
        }
        OrderEvent::PaymentCaptured(c) => format!(
            "payment captured: {} {} ({:?})",
            c.amount_minor, c.currency, c.source
        ),
        OrderEvent::PaymentFailed(f) => format!(
            "payment failed: {} ({})",
            f.failure.provider_code, f.failure.provider_message
        ),
        OrderEvent::PaymentOutcomeUnknown(u) => {
            format!(
                "payment outcome unknown, reconciliation pending: {}",
                u.reason
            )
        }
        OrderEvent::RefundRequested(r) => format!(
            "refund {} requested: {} {} ({})",
            r.refund_id, r.amount_minor, r.currency, r.reason
        ),
        OrderEvent::RefundCompleted(r) => format!(
            "refund {} completed: {} {}",
            r.refund_id, r.amount_minor, r.currency
        ),
        OrderEvent::RefundFailed(r) => {
            format!("refund {} failed: {}", r.refund_id, r.failure.provider_code)
        }
        OrderEvent::RefundOutcomeUnknown(r) => {
            format!(
                "refund {} outcome unknown, reconciliation pending",
                r.refund_id
            )
        }
        OrderEvent::OrderExpired(_) => "order expired unpaid".to_string(),
        OrderEvent::OrderFulfilled(_) => "service delivered (fulfilled)".to_string(),
        OrderEvent::EnrollmentCancelled(c) => format!("enrollment cancelled: {}", c.reason),
    }
}

// ---------------------------------------------------------------------------------------------
// Queries
// ---------------------------------------------------------------------------------------------

const ORDER_COLUMNS: &str =
    "order_id, status, amount_minor, currency, customer_id, payee_id, order_name, \
    provider, payment_key, captured_minor, refunded_minor, refund_pending_minor, refundable_minor, \
    last_failure_code, amount_mismatch_count, service_starts_at, placed_at, paid_at, fulfilled_at, \
    stream_version, last_position, updated_at";

fn order_from_row(row: &sqlx::postgres::PgRow) -> Result<OrderView, sqlx::Error> {
    Ok(OrderView {
        order_id: row.try_get("order_id")?,
        status: row.try_get("status")?,
        amount_minor: row.try_get("amount_minor")?,
        currency: row.try_get("currency")?,
        customer_id: row.try_get("customer_id")?,
        payee_id: row.try_get("payee_id")?,
        order_name: row.try_get("order_name")?,
        provider: row.try_get("provider")?,
        payment_key: row.try_get("payment_key")?,
        captured_minor: row.try_get("captured_minor")?,
        refunded_minor: row.try_get("refunded_minor")?,
        refund_pending_minor: row.try_get("refund_pending_minor")?,
        refundable_minor: row.try_get("refundable_minor")?,
        last_failure_code: row.try_get("last_failure_code")?,
        amount_mismatch_count: row.try_get("amount_mismatch_count")?,
        service_starts_at: row.try_get("service_starts_at")?,
        placed_at: row.try_get("placed_at")?,
        paid_at: row.try_get("paid_at")?,
        fulfilled_at: row.try_get("fulfilled_at")?,
        stream_version: row.try_get("stream_version")?,
        last_position: row.try_get("last_position")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub async fn get_order(pool: &PgPool, order_id: &str) -> Result<Option<OrderView>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {ORDER_COLUMNS} FROM rm.orders WHERE order_id = $1"
    ))
    .bind(order_id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(order_from_row).transpose()
}

/// Support's lookups: by payment key or by customer, newest first.
pub async fn find_orders(
    pool: &PgPool,
    payment_key: Option<&str>,
    customer_id: Option<&str>,
    limit: i64,
) -> Result<Vec<OrderView>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {ORDER_COLUMNS} FROM rm.orders \
         WHERE ($1::text IS NULL OR payment_key = $1) AND ($2::text IS NULL OR customer_id = $2) \
         ORDER BY placed_at DESC, order_id LIMIT $3"
    ))
    .bind(payment_key)
    .bind(customer_id)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter().map(order_from_row).collect()
}

pub async fn timeline(
    pool: &PgPool,
    order_id: &str,
    after_position: i64,
    limit: i64,
) -> Result<Vec<TimelineEntry>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT global_position, stream_id, stream_version, event_type, recorded_at, actor, summary \
         FROM rm.order_timeline WHERE order_id = $1 AND global_position > $2 \
         ORDER BY global_position LIMIT $3",
    )
    .bind(order_id)
    .bind(after_position)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let positions: Vec<i64> = rows
        .iter()
        .map(|row| row.try_get("global_position"))
        .collect::<Result<_, _>>()?;
    // Each entry's data is the event itself, read from the log.
    let payloads = payledger_store::payloads_at(pool, &positions)
        .await
        .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
    rows.iter()
        .map(|row| {
            let global_position: i64 = row.try_get("global_position")?;
            Ok(TimelineEntry {
                global_position,
                stream_id: row.try_get("stream_id")?,
                stream_version: row.try_get("stream_version")?,
                event_type: row.try_get("event_type")?,
                recorded_at: row.try_get("recorded_at")?,
                actor: row.try_get("actor")?,
                summary: row.try_get("summary")?,
                payload: payloads
                    .get(&global_position)
                    .cloned()
                    .unwrap_or(serde_json::Value::Null),
            })
        })
        .collect()
}
