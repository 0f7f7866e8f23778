//! Read model "orders": the order row and the per-order timeline.

use crate::fold::{bad, ensure_follows};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use payledger_domain::codec;
use payledger_domain::order::{Order, OrderEvent, OrderStatus};
use payledger_domain::reconciliation::ReconciliationEvent;
use payledger_domain::streams::StreamKind;
use payledger_domain::webhook::WebhookDeliveryEvent;
use payledger_projector::copy::CopyRows;
use payledger_projector::{BulkBuild, Projection, ProjectionError};
use payledger_store::RecordedEvent;
use sqlx::{PgConnection, PgPool, Row};
use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};

#[derive(Default)]
pub struct OrdersProjection {
    recent: Mutex<RecentOrders>,
}

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
    /// Refunds awaiting the provider whose request differs from them (a
    /// `RefundDiscrepancyRecorded`): support must review each.
    pub refunds_under_review: i32,
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
    /// The event's hash in its stream's chain (hex), for an auditor to compare.
    pub hash_hex: String,
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
    StreamKind::Order.id_of(stream_id)
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
        push_webhook_rows(events, &mut |order_id, event, summary| {
            timeline.push(order_id, event, summary);
            Ok(())
        })?;
        let relevant: Vec<&RecordedEvent> = events
            .iter()
            .filter(|e| order_id_of(&e.stream_id).is_some())
            .collect();
        if relevant.is_empty() {
            timeline.insert(conn).await?;
            return Ok(());
        }
        let continued = continued_orders(relevant.iter().copied(), |_| false);
        let mut folding = self.take_recent(&continued);
        let missed: Vec<Continued> = continued
            .into_iter()
            .filter(|c| !folding.contains_key(&c.order_id))
            .collect();
        folding.extend(fold_from_log(conn, &missed).await?);
        for event in relevant {
            let order_id = order_id_of(&event.stream_id).unwrap_or_default();
            let summary = fold_event(&mut folding, order_id, event)?;
            timeline.push(order_id, event, summary);
        }
        save(conn, &folding).await?;
        timeline.insert(conn).await?;
        self.keep_recent(folding);
        Ok(())
    }

    fn bulk_builder(&self) -> Option<Box<dyn BulkBuild>> {
        Some(Box::new(OrdersBulk::new()))
    }
}

impl OrdersProjection {
    /// The recent orders `continued` picks up from, at the versions it needs; the others are
    /// left out (and dropped from the cache: an entry at another version is of no use).
    fn take_recent(&self, continued: &[Continued]) -> HashMap<String, Folding> {
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        continued
            .iter()
            .filter_map(|c| {
                let row = recent.take(&c.order_id, c.first_version - 1)?;
                Some((c.order_id.clone(), row))
            })
            .collect()
    }

    fn keep_recent(&self, folding: HashMap<String, Folding>) {
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        for (order_id, row) in folding {
            recent.keep(order_id, row);
        }
    }
}

/// Orders folded lately, so that the next events of an order (placed, then confirmed a few
/// milliseconds later) fold without reading anything back.
///
/// An entry is what the order stream's first `stream_version` events fold to: a fact of the
/// immutable log, true for the live tables, a rebuild and a verify alike. A batch that rolls
/// back after its rows were kept leaves entries ahead of the stored rows; the retry asks for the
/// version before its first event, misses, and folds from the log. Bounded by two generations
/// of [`RECENT_ORDERS_PER_GENERATION`]: when the newer fills up, the older is dropped.
#[derive(Default)]
struct RecentOrders {
    newer: HashMap<String, Folding>,
    older: HashMap<String, Folding>,
}

/// About 10 MiB per generation (a folded order is a few hundred bytes); a generation lasts
/// several seconds at the benchmark's peak, far longer than an order takes to be confirmed.
const RECENT_ORDERS_PER_GENERATION: usize = 16_384;

impl RecentOrders {
    fn take(&mut self, order_id: &str, stream_version: i64) -> Option<Folding> {
        let newer = self.newer.remove(order_id);
        let older = self.older.remove(order_id);
        newer
            .or(older)
            .filter(|row| row.stream_version == stream_version)
    }

    fn keep(&mut self, order_id: String, row: Folding) {
        if self.newer.len() >= RECENT_ORDERS_PER_GENERATION {
            self.older = std::mem::take(&mut self.newer);
        }
        self.newer.insert(order_id, row);
    }
}

/// An order stream a batch continues: its first event in the batch is not the stream's first.
struct Continued {
    order_id: String,
    first_version: i64,
    /// Where that event is, to name in an error.
    position: i64,
}

/// The orders whose first event among `events` has a version after 1, each once, except those
/// `skip` says are already folded.
fn continued_orders<'a>(
    events: impl IntoIterator<Item = &'a RecordedEvent>,
    skip: impl Fn(&str) -> bool,
) -> Vec<Continued> {
    let mut met = HashSet::new();
    let mut continued = Vec::new();
    for event in events {
        let Some(order_id) = order_id_of(&event.stream_id) else {
            continue;
        };
        // Only a stream's first event in the batch tells whether it started earlier.
        if met.insert(order_id) && event.stream_version > 1 && !skip(order_id) {
            continued.push(Continued {
                order_id: order_id.to_string(),
                first_version: event.stream_version,
                position: event.global_position,
            });
        }
    }
    continued
}

/// Folds the events of each `continued` order that come before its batch, read from the log:
/// the same fold a reader that saw them all would have made.
async fn fold_from_log(
    conn: &mut PgConnection,
    continued: &[Continued],
) -> Result<HashMap<String, Folding>, ProjectionError> {
    let prefixes: Vec<(String, i64)> = continued
        .iter()
        .map(|c| (StreamKind::Order.name(&c.order_id), c.first_version))
        .collect();
    let events = payledger_store::read_stream_prefixes(&mut *conn, &prefixes).await?;
    let mut folding = HashMap::with_capacity(continued.len());
    for event in &events {
        let order_id = order_id_of(&event.stream_id).unwrap_or_default();
        fold_event(&mut folding, order_id, event)?;
    }
    for c in continued {
        let folded = folding.get(&c.order_id).map_or(0, |row| row.stream_version);
        if folded != c.first_version - 1 {
            return Err(ProjectionError::BadEvent {
                position: c.position,
                reason: format!(
                    "order {} continues at version {} but the log holds {folded} events before it",
                    c.order_id, c.first_version
                ),
            });
        }
    }
    Ok(folding)
}

/// Folds one order event into its row (created by the stream's first event) and returns the
/// event's timeline summary.
fn fold_event(
    folding: &mut HashMap<String, Folding>,
    order_id: &str,
    event: &RecordedEvent,
) -> Result<String, ProjectionError> {
    let decoded: OrderEvent =
        codec::decode(&event.event_type, &event.payload).map_err(|e| bad(event, e.to_string()))?;
    let row = folding
        .entry(order_id.to_string())
        .or_insert_with(|| Folding {
            order: Order::default(),
            stream_version: 0,
            last_position: 0,
            updated_at: event.recorded_at,
            amount_mismatch_count: 0,
        });
    ensure_follows(event, row.stream_version)?;
    if let OrderEvent::ConfirmationRejected(_) = &decoded {
        row.amount_mismatch_count += 1;
    }
    let summary = summarize(&decoded);
    row.order.apply(decoded);
    row.order.assert_invariants();
    row.stream_version = event.stream_version;
    row.last_position = event.global_position;
    row.updated_at = event.recorded_at;
    Ok(summary)
}

/// The rebuild's bulk path: folds order streams across many batches in memory and writes both
/// tables with `COPY`. Orders whose rows an earlier flush wrote are read back and upserted, as
/// the live path does.
struct OrdersBulk {
    folding: HashMap<String, Folding>,
    /// Orders in `folding` that were read back from the build table.
    stored: HashSet<String>,
    /// Timeline rows since the last flush.
    timeline: CopyRows,
}

#[async_trait]
impl BulkBuild for OrdersBulk {
    async fn fold(
        &mut self,
        conn: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        push_webhook_rows(events, &mut |order_id, event, summary| {
            copy_timeline_row(&mut self.timeline, order_id, event, &summary)
        })?;
        self.read_back_flushed(conn, events).await?;
        for event in events {
            let Some(order_id) = order_id_of(&event.stream_id) else {
                continue;
            };
            let summary = fold_event(&mut self.folding, order_id, event)?;
            copy_timeline_row(&mut self.timeline, order_id, event, &summary)?;
        }
        Ok(())
    }

    fn keyed_tables(&self) -> &'static [&'static str] {
        &["orders"]
    }

    async fn flush(&mut self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        let folding = std::mem::take(&mut self.folding);
        let stored = std::mem::take(&mut self.stored);
        let (old, new): (HashMap<_, _>, HashMap<_, _>) = folding
            .into_iter()
            .partition(|(order_id, _)| stored.contains(order_id));
        save(conn, &old).await?;
        let mut orders = CopyRows::new(ORDER_COLUMN_COUNT);
        for (order_id, row) in &new {
            if let Some(columns) = OrderRow::of(order_id, row) {
                columns.copy(&mut orders)?;
            }
        }
        orders
            .copy_into(conn, &format!("orders ({ORDER_COLUMNS})"))
            .await?;
        std::mem::replace(&mut self.timeline, CopyRows::new(TIMELINE_COLUMN_COUNT))
            .copy_into(conn, &format!("order_timeline ({TIMELINE_COLUMNS})"))
            .await?;
        Ok(())
    }
}

impl OrdersBulk {
    fn new() -> OrdersBulk {
        OrdersBulk {
            folding: HashMap::new(),
            stored: HashSet::new(),
            timeline: CopyRows::new(TIMELINE_COLUMN_COUNT),
        }
    }

    /// Folds again, from the log, the orders that an earlier flush wrote and that `events`
    /// continue: a stream met for the first time at a version after 1 started before that flush.
    async fn read_back_flushed(
        &mut self,
        conn: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let continued = continued_orders(events, |order_id| self.folding.contains_key(order_id));
        if continued.is_empty() {
            return Ok(());
        }
        let loaded = fold_from_log(conn, &continued).await?;
        self.stored.extend(loaded.keys().cloned());
        self.folding.extend(loaded);
        Ok(())
    }
}

/// Webhook deliveries show in the timeline of the order they concern (the order id in the event
/// is one payledger established: signed body or the provider's API), next to the order's own
/// events, so support sees provider-side changes in one place.
fn push_webhook_rows(
    events: &[RecordedEvent],
    push: &mut dyn FnMut(&str, &RecordedEvent, String) -> Result<(), ProjectionError>,
) -> Result<(), ProjectionError> {
    // Reconciliation of the provider's settlement (lines, flags, resolutions) shows on the
    // order the line was matched to, like the provider's webhooks.
    for event in events
        .iter()
        .filter(|e| StreamKind::Reconciliation.holds(&e.stream_id))
    {
        let decoded: ReconciliationEvent = codec::decode(&event.event_type, &event.payload)
            .map_err(|e| bad(event, e.to_string()))?;
        if let Some(order_id) = decoded.order_id() {
            push(order_id.as_str(), event, decoded.summary())?;
        }
    }
    for event in events
        .iter()
        .filter(|e| StreamKind::Webhook.holds(&e.stream_id))
    {
        let decoded: WebhookDeliveryEvent = codec::decode(&event.event_type, &event.payload)
            .map_err(|e| bad(event, e.to_string()))?;
        if let Some(order_id) = decoded.order_id() {
            push(order_id, event, decoded.summary())?;
        }
    }
    Ok(())
}

fn status_name(status: OrderStatus) -> String {
    payledger_domain::codec::wire_name(&status)
}

/// One `orders` row, derived from a folded order: the same values whether it is written by the
/// live upsert or by a rebuild's `COPY`.
struct OrderRow<'a> {
    order_id: &'a str,
    status: String,
    amount_minor: i64,
    currency: &'static str,
    customer_id: String,
    payee_id: String,
    order_name: &'a str,
    provider: &'a str,
    payment_key: Option<String>,
    last_failure_code: Option<&'a str>,
    service_starts_at: Option<DateTime<Utc>>,
    placed_at: DateTime<Utc>,
    row: &'a Folding,
}

impl<'a> OrderRow<'a> {
    /// `None` before OrderPlaced, which cannot happen: the aggregate refuses other events first.
    fn of(order_id: &'a str, row: &'a Folding) -> Option<OrderRow<'a>> {
        let placed = row.order.placed.as_ref()?;
        Some(OrderRow {
            order_id,
            status: status_name(row.order.status),
            amount_minor: placed.amount.amount_minor(),
            currency: placed.amount.currency().code(),
            customer_id: placed.customer_id.to_string(),
            payee_id: placed.payee_id.to_string(),
            order_name: &placed.order_name,
            provider: &placed.provider,
            payment_key: row.order.payment_key.as_ref().map(|k| k.to_string()),
            last_failure_code: row
                .order
                .last_failure
                .as_ref()
                .map(|f| f.provider_code.as_str()),
            service_starts_at: placed.service_starts_at,
            placed_at: placed.placed_at,
            row,
        })
    }

    /// The fields in [`ORDER_COLUMNS`] order.
    fn copy(&self, rows: &mut CopyRows) -> Result<(), ProjectionError> {
        let order = &self.row.order;
        rows.row();
        rows.text(self.order_id)?;
        rows.text(&self.status)?;
        rows.field(&self.amount_minor)?;
        rows.text(self.currency)?;
        rows.text(&self.customer_id)?;
        rows.text(&self.payee_id)?;
        rows.text(self.order_name)?;
        rows.text(self.provider)?;
        rows.field(&self.payment_key)?;
        rows.field(&order.captured_minor)?;
        rows.field(&order.refunded_minor)?;
        rows.field(&order.refund_pending_minor)?;
        rows.field(&order.refundable_minor())?;
        rows.field(&self.last_failure_code)?;
        rows.field(&self.row.amount_mismatch_count)?;
        rows.field(&self.service_starts_at)?;
        rows.field(&self.placed_at)?;
        rows.field(&order.paid_at)?;
        rows.field(&order.fulfilled_at)?;
        rows.field(&self.row.stream_version)?;
        rows.field(&self.row.last_position)?;
        rows.field(&self.row.updated_at)?;
        rows.field(&refunds_under_review(order))
    }
}

/// Fields [`OrderRow::copy`] writes per row: the columns in [`ORDER_COLUMNS`].
const ORDER_COLUMN_COUNT: i16 = 23;

/// The `refunds_under_review` column: a count bounded by `MAX_REFUNDS_PER_ORDER`.
fn refunds_under_review(order: &Order) -> i32 {
    i32::try_from(order.refunds_under_review()).unwrap_or(i32::MAX)
}

/// Writes every folded row with one multi-row upsert.
async fn save(
    conn: &mut PgConnection,
    folding: &HashMap<String, Folding>,
) -> Result<(), ProjectionError> {
    let mut c = Columns::default();
    for (order_id, row) in folding {
        let Some(r) = OrderRow::of(order_id, row) else {
            continue;
        };
        let order = &row.order;
        c.order_id.push(order_id.clone());
        c.status.push(r.status);
        c.amount_minor.push(r.amount_minor);
        c.currency.push(r.currency.to_string());
        c.customer_id.push(r.customer_id);
        c.payee_id.push(r.payee_id);
        c.order_name.push(r.order_name.to_string());
        c.provider.push(r.provider.to_string());
        c.payment_key.push(r.payment_key);
        c.captured_minor.push(order.captured_minor);
        c.refunded_minor.push(order.refunded_minor);
        c.refund_pending_minor.push(order.refund_pending_minor);
        c.refundable_minor.push(order.refundable_minor());
        c.last_failure_code
            .push(r.last_failure_code.map(str::to_string));
        c.amount_mismatch_count.push(row.amount_mismatch_count);
        c.service_starts_at.push(r.service_starts_at);
        c.placed_at.push(r.placed_at);
        c.paid_at.push(order.paid_at);
        c.fulfilled_at.push(order.fulfilled_at);
        c.stream_version.push(row.stream_version);
        c.last_position.push(row.last_position);
        c.updated_at.push(row.updated_at);
        c.refunds_under_review.push(refunds_under_review(order));
    }
    if c.order_id.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO orders (order_id, status, amount_minor, currency, customer_id, payee_id, order_name, \
            provider, payment_key, captured_minor, refunded_minor, refund_pending_minor, refundable_minor, \
            last_failure_code, amount_mismatch_count, service_starts_at, placed_at, paid_at, fulfilled_at, \
            stream_version, last_position, updated_at, refunds_under_review) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], \
            $7::text[], $8::text[], $9::text[], $10::bigint[], $11::bigint[], $12::bigint[], $13::bigint[], \
            $14::text[], $15::int[], $16::timestamptz[], $17::timestamptz[], $18::timestamptz[], \
            $19::timestamptz[], $20::bigint[], $21::bigint[], $22::timestamptz[], $23::int[]) \
         ON CONFLICT (order_id) DO UPDATE SET status = EXCLUDED.status, payment_key = EXCLUDED.payment_key, \
            captured_minor = EXCLUDED.captured_minor, refunded_minor = EXCLUDED.refunded_minor, \
            refund_pending_minor = EXCLUDED.refund_pending_minor, refundable_minor = EXCLUDED.refundable_minor, \
            last_failure_code = EXCLUDED.last_failure_code, amount_mismatch_count = EXCLUDED.amount_mismatch_count, \
            paid_at = EXCLUDED.paid_at, fulfilled_at = EXCLUDED.fulfilled_at, \
            stream_version = EXCLUDED.stream_version, last_position = EXCLUDED.last_position, \
            updated_at = EXCLUDED.updated_at, refunds_under_review = EXCLUDED.refunds_under_review",
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
    .bind(&c.refunds_under_review)
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
    refunds_under_review: Vec<i32>,
}

/// Timeline rows of a batch, written with one multi-row insert.
#[derive(Default)]
pub(crate) struct TimelineRows {
    order_id: Vec<String>,
    global_position: Vec<i64>,
    summary: Vec<String>,
}

impl TimelineRows {
    pub(crate) fn push(&mut self, order_id: &str, event: &RecordedEvent, summary: String) {
        self.order_id.push(order_id.to_string());
        self.global_position.push(event.global_position);
        self.summary.push(summary);
    }

    pub(crate) async fn insert(self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        if self.order_id.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO order_timeline (order_id, global_position, summary) \
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[])",
        )
        .bind(&self.order_id)
        .bind(&self.global_position)
        .bind(&self.summary)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

/// Columns of `order_timeline`, in the order [`copy_timeline_row`] writes them.
const TIMELINE_COLUMNS: &str = "order_id, global_position, summary";
const TIMELINE_COLUMN_COUNT: i16 = 3;

/// The timeline row [`TimelineRows::push`] makes, encoded for `COPY`.
fn copy_timeline_row(
    rows: &mut CopyRows,
    order_id: &str,
    event: &RecordedEvent,
    summary: &str,
) -> Result<(), ProjectionError> {
    rows.row();
    rows.text(order_id)?;
    rows.field(&event.global_position)?;
    rows.text(summary)
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
        OrderEvent::RefundAwaitingProvider(r) => format!(
            "refund {} of {} {} submitted to {} as {}: pending until {} approves or rejects it",
            r.refund_id, r.amount_minor, r.currency, r.provider, r.provider_refund_id, r.provider
        ),
        OrderEvent::OrderExpired(_) => "order expired unpaid".to_string(),
        OrderEvent::OrderFulfilled(_) => "service delivered (fulfilled)".to_string(),
        OrderEvent::EnrollmentCancelled(c) => format!("enrollment cancelled: {}", c.reason),
        OrderEvent::PaymentDiscrepancyRecorded(d) => format!(
            "ATTENTION: {} reports the payment {} for {} {} (refunded {}) while the order expects {} {}; differs in {}; nothing was captured, support must review",
            d.provider,
            d.provider_status,
            d.provider_amount_minor,
            d.provider_currency,
            d.provider_refunded_minor,
            d.expected_amount_minor,
            d.expected_currency,
            d.differences
                .iter()
                .map(|x| x.name())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        OrderEvent::ProviderRefundRecorded(r) => format!(
            "refunded at {} (not asked by payledger): {} {} ({})",
            r.provider, r.amount_minor, r.currency, r.transaction_key
        ),
        OrderEvent::DisputeOpened(d) => format!(
            "dispute {} opened at {}: {} {} ({}); refunds refused and settlement held until it is decided",
            d.dispute_id,
            d.provider,
            d.amount_minor,
            d.currency,
            d.reason.as_deref().unwrap_or("no reason given")
        ),
        OrderEvent::DisputeWon(d) => format!(
            "dispute {} won: {} {} kept, dispute fee {}",
            d.dispute_id, d.amount_minor, d.currency, d.fee_minor
        ),
        OrderEvent::DisputeLost(d) => format!(
            "dispute {} lost: {} {} withdrawn by {}, dispute fee {}",
            d.dispute_id, d.withdrawn_minor, d.currency, d.provider, d.fee_minor
        ),
        OrderEvent::RefundDiscrepancyRecorded(d) => format!(
            "ATTENTION: {} reports refund request {} ({}) differently from refund {}: {}; nothing was refunded, the refund keeps waiting, support must review",
            d.provider,
            d.provider_refund_id,
            d.provider_status,
            d.refund_id,
            d.differences
                .iter()
                .map(|x| format!("{} {} (payledger {})", x.fact.name(), x.provider, x.expected))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        OrderEvent::RefundDiscrepancyResolved(d) => format!(
            "discrepancy of refund {} (request {}) resolved by {}: {}: {}; nothing was refunded, the refund keeps waiting for the provider",
            d.refund_id,
            d.provider_refund_id,
            d.resolved_by,
            d.resolution.name(),
            d.note
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Queries
// ---------------------------------------------------------------------------------------------

const ORDER_COLUMNS: &str =
    "order_id, status, amount_minor, currency, customer_id, payee_id, order_name, \
    provider, payment_key, captured_minor, refunded_minor, refund_pending_minor, refundable_minor, \
    last_failure_code, amount_mismatch_count, service_starts_at, placed_at, paid_at, fulfilled_at, \
    stream_version, last_position, updated_at, refunds_under_review";

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
        refunds_under_review: row.try_get("refunds_under_review")?,
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

/// Candidates for the reconciler: orders whose confirmation or refund has no recorded outcome
/// yet, least recently touched first. Only candidates: each is re-decided against its stream.
pub async fn orders_awaiting_provider_outcome(
    pool: &PgPool,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT order_id FROM rm.orders \
         WHERE status IN ('CONFIRMING', 'OUTCOME_UNKNOWN') OR refund_pending_minor > 0 \
         ORDER BY updated_at LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Candidates for session reminders: paid bookings (something still refundable) whose service
/// starts after `from` and no later than `to`, soonest first.
pub async fn bookings_starting_between(
    pool: &PgPool,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT order_id FROM rm.orders WHERE refundable_minor > 0 \
           AND service_starts_at > $1 AND service_starts_at <= $2 \
         ORDER BY service_starts_at LIMIT $3",
    )
    .bind(from)
    .bind(to)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Of `customers`, those who have orders and whose every order is closed (refunded, expired or
/// fulfilled) and was last touched before `closed_before`, and whose every claim is resolved,
/// was last touched before `closed_before` and can no longer be appealed: the retention job's
/// candidates. A claim still open (or appealable) keeps its customer's texts readable, because
/// an admin still has to read them.
pub async fn customers_with_every_order_closed_before(
    pool: &PgPool,
    customers: &[String],
    closed_before: DateTime<Utc>,
) -> Result<Vec<String>, sqlx::Error> {
    let appeal_window = chrono::Duration::days(payledger_domain::claim::APPEAL_WINDOW_DAYS);
    sqlx::query_scalar(
        "SELECT c.customer_id FROM unnest($1::text[]) AS c(customer_id) \
         WHERE EXISTS (SELECT 1 FROM rm.orders o WHERE o.customer_id = c.customer_id) \
           AND NOT EXISTS (SELECT 1 FROM rm.orders o WHERE o.customer_id = c.customer_id \
               AND NOT ((o.status IN ('REFUNDED', 'EXPIRED') OR o.fulfilled_at IS NOT NULL) \
                        AND o.updated_at < $2)) \
           AND NOT EXISTS (SELECT 1 FROM rm.claims k WHERE k.customer_id = c.customer_id \
               AND NOT (k.status = 'resolved' AND k.updated_at < $2 AND k.resolved_at < $3))",
    )
    .bind(customers)
    .bind(closed_before)
    .bind(closed_before - appeal_window)
    // Planned per call: docs/architecture.md, "Lookups by many keys".
    .persistent(false)
    .fetch_all(pool)
    .await
}

/// Candidates for expiry: unpaid orders placed before `placed_before`, oldest first.
pub async fn unpaid_orders_placed_before(
    pool: &PgPool,
    placed_before: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT order_id FROM rm.orders WHERE status IN ('READY', 'FAILED') AND placed_at < $1 \
         ORDER BY placed_at LIMIT $2",
    )
    .bind(placed_before)
    .bind(limit)
    .fetch_all(pool)
    .await
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

/// What an operator may search orders by; every filter is optional and they combine with AND.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderFilter {
    pub order_id: Option<String>,
    pub payment_key: Option<String>,
    pub customer_id: Option<String>,
    pub payee_id: Option<String>,
    pub status: Option<String>,
    /// Placed at or after.
    pub placed_from: Option<DateTime<Utc>>,
    /// Placed before.
    pub placed_before: Option<DateTime<Utc>>,
}

/// The deepest page an offset search reaches; narrower filters find anything older.
pub const MAX_SEARCH_OFFSET: i64 = 10_000;

/// The console's order search: newest first, `limit` rows from `offset` (at most
/// [`MAX_SEARCH_OFFSET`]).
pub async fn search_orders(
    pool: &PgPool,
    filter: &OrderFilter,
    offset: i64,
    limit: i64,
) -> Result<Vec<OrderView>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {ORDER_COLUMNS} FROM rm.orders \
         WHERE ($1::text IS NULL OR order_id = $1) AND ($2::text IS NULL OR payment_key = $2) \
           AND ($3::text IS NULL OR customer_id = $3) AND ($4::text IS NULL OR payee_id = $4) \
           AND ($5::text IS NULL OR status = $5) \
           AND ($6::timestamptz IS NULL OR placed_at >= $6) \
           AND ($7::timestamptz IS NULL OR placed_at < $7) \
         ORDER BY placed_at DESC, order_id OFFSET $8 LIMIT $9"
    ))
    .bind(filter.order_id.as_deref())
    .bind(filter.payment_key.as_deref())
    .bind(filter.customer_id.as_deref())
    .bind(filter.payee_id.as_deref())
    .bind(filter.status.as_deref())
    .bind(filter.placed_from)
    .bind(filter.placed_before)
    .bind(offset.clamp(0, MAX_SEARCH_OFFSET))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter().map(order_from_row).collect()
}

/// An order's timeline after `after_position`, oldest first: the read model says which events
/// and how to summarise each; the log gives the events themselves.
pub async fn timeline(
    pool: &PgPool,
    order_id: &str,
    after_position: i64,
    limit: i64,
) -> Result<Vec<TimelineEntry>, sqlx::Error> {
    let rows: Vec<(i64, String)> = sqlx::query_as(
        "SELECT global_position, summary FROM rm.order_timeline \
         WHERE order_id = $1 AND global_position > $2 ORDER BY global_position LIMIT $3",
    )
    .bind(order_id)
    .bind(after_position)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let positions: Vec<i64> = rows.iter().map(|(position, _)| *position).collect();
    let mut events = payledger_store::events_at(pool, &positions)
        .await
        .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
    rows.into_iter()
        .map(|(position, summary)| {
            // The log is append-only: a position the read model names is always there.
            let event = events.remove(&position).ok_or_else(|| {
                sqlx::Error::Protocol(format!(
                    "the timeline names position {position}, which the log does not hold"
                ))
            })?;
            Ok(TimelineEntry {
                global_position: position,
                actor: event
                    .metadata
                    .get("actor")
                    .and_then(|a| a.as_str())
                    .map(str::to_string),
                stream_id: event.stream_id,
                stream_version: event.stream_version,
                event_type: event.event_type,
                recorded_at: event.recorded_at,
                summary,
                hash_hex: hex::encode(event.hash),
                payload: event.payload,
            })
        })
        .collect()
}
