//! Read model "reconciliation": provider settlement lines as imported, the flags raised on them
//! (open until resolved), the daily report per provider and the aged `provider_clearing`
//! balance: what each provider still owes for captures it has not settled, by age — orders'
//! captures (from the orders read model) and subscription charges (read here from the
//! subscription streams' `SubscriptionStarted`, `ChargeSucceeded` and `ProviderChargeReversed`),
//! less what else the journal takes out of `provider_clearing` (orders' `DisputeLost` and
//! `DisputeWon`, write-offs).

use crate::fold::bad;
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use payledger_domain::codec;
use payledger_domain::order::OrderEvent;
use payledger_domain::reconciliation::ReconciliationEvent;
use payledger_domain::streams::StreamKind;
use payledger_domain::subscription::SubscriptionEvent;
use payledger_projector::{Projection, ProjectionError};
use payledger_store::RecordedEvent;
use serde::Serialize;
use sqlx::{PgConnection, PgPool, Row};

pub struct ReconciliationProjection;

#[async_trait]
impl Projection for ReconciliationProjection {
    fn name(&self) -> &'static str {
        "reconciliation"
    }

    fn schema_sql(&self) -> &'static str {
        include_str!("../../../projections/reconciliation.sql")
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "reconciliation_clearing_taken",
            "reconciliation_flags",
            "reconciliation_lines",
            "reconciliation_subscription_charges",
            "reconciliation_subscriptions",
        ]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        for event in events {
            if StreamKind::Reconciliation.holds(&event.stream_id) {
                let decoded: ReconciliationEvent = codec::decode(&event.event_type, &event.payload)
                    .map_err(|e| bad(event, e.to_string()))?;
                apply_one(conn, event, decoded).await?;
            } else if let Some(subscription_id) = StreamKind::Subscription.id_of(&event.stream_id) {
                apply_subscription(conn, event, subscription_id).await?;
            } else if let Some(order_id) = StreamKind::Order.id_of(&event.stream_id) {
                apply_order(conn, event, order_id).await?;
            }
        }
        Ok(())
    }
}

/// What a decided dispute takes out of `provider_clearing` for its order, as the journal posts
/// it: a lost dispute's withdrawn amount and its fee, a won dispute's fee.
async fn apply_order(
    conn: &mut PgConnection,
    event: &RecordedEvent,
    order_id: &str,
) -> Result<(), ProjectionError> {
    if !matches!(event.event_type.as_str(), "DisputeLost" | "DisputeWon") {
        return Ok(());
    }
    let decoded: OrderEvent =
        codec::decode(&event.event_type, &event.payload).map_err(|e| bad(event, e.to_string()))?;
    let (closed, taken_minor) = match decoded {
        OrderEvent::DisputeLost(d) => {
            let taken = d.withdrawn_minor.checked_add(d.fee_minor);
            (d, taken)
        }
        OrderEvent::DisputeWon(d) => {
            let fee = d.fee_minor;
            (d, Some(fee))
        }
        _ => return Ok(()),
    };
    let taken_minor =
        taken_minor.ok_or_else(|| bad(event, "dispute amounts overflow".to_string()))?;
    insert_taken(
        conn,
        event,
        &closed.provider,
        closed.currency.code(),
        Some(order_id),
        taken_minor,
        closed.at,
    )
    .await
}

/// One row of `reconciliation_clearing_taken` (nothing when nothing was taken).
async fn insert_taken(
    conn: &mut PgConnection,
    event: &RecordedEvent,
    provider: &str,
    currency: &str,
    order_id: Option<&str>,
    taken_minor: i64,
    at: DateTime<Utc>,
) -> Result<(), ProjectionError> {
    if taken_minor == 0 {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO reconciliation_clearing_taken (global_position, provider, currency, \
         order_id, taken_minor, at) VALUES ($1,$2,$3,$4,$5,$6) \
         ON CONFLICT (global_position) DO NOTHING",
    )
    .bind(event.global_position)
    .bind(provider)
    .bind(currency)
    .bind(order_id)
    .bind(taken_minor)
    .bind(at)
    .execute(&mut *conn)
    .await
    .map_err(ProjectionError::Database)?;
    Ok(())
}

/// A subscription's paid periods and what the provider took back of them: what the provider
/// owes for them until their settlement lines arrive (the aged `provider_clearing`).
async fn apply_subscription(
    conn: &mut PgConnection,
    event: &RecordedEvent,
    subscription_id: &str,
) -> Result<(), ProjectionError> {
    let db = |e: sqlx::Error| ProjectionError::Database(e);
    if !matches!(
        event.event_type.as_str(),
        "SubscriptionStarted" | "ChargeSucceeded" | "ProviderChargeReversed"
    ) {
        return Ok(());
    }
    let decoded: SubscriptionEvent =
        codec::decode(&event.event_type, &event.payload).map_err(|e| bad(event, e.to_string()))?;
    match decoded {
        SubscriptionEvent::SubscriptionStarted(started) => {
            sqlx::query(
                "INSERT INTO reconciliation_subscriptions (subscription_id, billing_key_id, \
                 billed_by) VALUES ($1,$2,$3) ON CONFLICT (subscription_id) DO NOTHING",
            )
            .bind(subscription_id)
            .bind(started.billing_key_id.to_string())
            .bind(started.billed_by.map(|b| b.provider))
            .execute(&mut *conn)
            .await
            .map_err(db)?;
        }
        SubscriptionEvent::ChargeSucceeded(charged) => {
            sqlx::query(
                "INSERT INTO reconciliation_subscription_charges (subscription_id, payment_key, \
                 currency, charged_minor, recorded_fee_minor, reversed_minor, charged_at, \
                 global_position) VALUES ($1,$2,$3,$4,$5,0,$6,$7) \
                 ON CONFLICT (subscription_id, payment_key) DO NOTHING",
            )
            .bind(subscription_id)
            .bind(charged.payment_key.to_string())
            .bind(charged.currency.code())
            .bind(charged.amount_minor)
            .bind(charged.provider_fee_minor)
            .bind(charged.approved_at)
            .bind(event.global_position)
            .execute(&mut *conn)
            .await
            .map_err(db)?;
        }
        SubscriptionEvent::ProviderChargeReversed(reversed) => {
            sqlx::query(
                "UPDATE reconciliation_subscription_charges \
                 SET reversed_minor = reversed_minor + $3, global_position = $4 \
                 WHERE subscription_id = $1 AND payment_key = $2",
            )
            .bind(subscription_id)
            .bind(reversed.payment_key.to_string())
            // The journal gives the returned part of the fee back to clearing.
            .bind(reversed.amount_minor - reversed.provider_fee_returned_minor)
            .bind(event.global_position)
            .execute(&mut *conn)
            .await
            .map_err(db)?;
        }
        _ => {}
    }
    Ok(())
}

async fn apply_one(
    conn: &mut PgConnection,
    event: &RecordedEvent,
    decoded: ReconciliationEvent,
) -> Result<(), ProjectionError> {
    let db = |e: sqlx::Error| ProjectionError::Database(e);
    match decoded {
        ReconciliationEvent::SettlementLineMatched(_)
        | ReconciliationEvent::SettlementLineUnmatched(_)
        | ReconciliationEvent::SubscriptionChargeSettled(_) => {
            let (line, order_id, matched) = match decoded {
                ReconciliationEvent::SubscriptionChargeSettled(s) => (s.line, None, true),
                ReconciliationEvent::SettlementLineMatched(m) => {
                    (m.line, Some(m.order_id.to_string()), true)
                }
                ReconciliationEvent::SettlementLineUnmatched(u) => {
                    (u.line, u.order_id.map(|o| o.to_string()), false)
                }
                _ => unreachable!("matched above"),
            };
            sqlx::query(
                "INSERT INTO reconciliation_lines (stream_id, provider, line_id, kind, \
                 payment_key, order_id, matched, amount_minor, fee_minor, payout_minor, currency, \
                 sold_on, paid_out_on, global_position) \
                 VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14) \
                 ON CONFLICT (stream_id) DO UPDATE SET order_id = EXCLUDED.order_id, \
                 matched = EXCLUDED.matched, global_position = EXCLUDED.global_position",
            )
            .bind(&event.stream_id)
            .bind(&line.provider)
            .bind(&line.line_id)
            .bind(codec::wire_name(&line.kind))
            .bind(&line.payment_key)
            .bind(order_id)
            .bind(matched)
            .bind(line.amount_minor)
            .bind(line.fee_minor)
            .bind(line.payout_minor)
            .bind(line.currency.code())
            .bind(line.sold_on)
            .bind(line.paid_out_on)
            .bind(event.global_position)
            .execute(&mut *conn)
            .await
            .map_err(db)?;
        }
        ReconciliationEvent::ReconciliationFlagged(flag) => {
            sqlx::query(
                "INSERT INTO reconciliation_flags (stream_id, kind, provider, order_id, line_id, \
                 currency, expected_minor, actual_minor, detail, flagged_at, flagged_position) \
                 VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)",
            )
            .bind(&event.stream_id)
            .bind(flag.kind.name())
            .bind(&flag.provider)
            .bind(flag.order_id.map(|o| o.to_string()))
            .bind(flag.line_id)
            .bind(flag.currency.code())
            .bind(flag.expected_minor)
            .bind(flag.actual_minor)
            .bind(flag.detail)
            .bind(flag.at)
            .bind(event.global_position)
            .execute(&mut *conn)
            .await
            .map_err(db)?;
        }
        ReconciliationEvent::ReconciliationResolved(resolved) => {
            let actor = event.metadata.get("actor").and_then(|a| a.as_str());
            let updated = sqlx::query(
                "UPDATE reconciliation_flags SET resolution = $3, note = $4, resolved_by = $5, \
                 resolved_at = $6, resolved_position = $7 \
                 WHERE stream_id = $1 AND kind = $2 AND resolved_at IS NULL",
            )
            .bind(&event.stream_id)
            .bind(resolved.kind.name())
            .bind(codec::wire_name(&resolved.resolution))
            .bind(&resolved.note)
            .bind(actor)
            .bind(resolved.at)
            .bind(event.global_position)
            .execute(&mut *conn)
            .await
            .map_err(db)?;
            // Pair assertion: the aggregate resolves only an open flag.
            if updated.rows_affected() != 1 {
                return Err(bad(event, "resolves a flag that is not open".to_string()));
            }
            if resolved.written_off_minor != 0 {
                let provider: String = sqlx::query_scalar(
                    "SELECT provider FROM reconciliation_flags WHERE stream_id = $1 AND kind = $2",
                )
                .bind(&event.stream_id)
                .bind(resolved.kind.name())
                .fetch_one(&mut *conn)
                .await
                .map_err(db)?;
                let order_id = resolved.order_id.as_ref().map(|o| o.to_string());
                insert_taken(
                    conn,
                    event,
                    &provider,
                    resolved.currency.code(),
                    order_id.as_deref(),
                    resolved.written_off_minor,
                    resolved.at,
                )
                .await?;
            }
        }
    }
    Ok(())
}

/// One flag, as `GET /v1/reconciliation/exceptions` lists it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconciliationException {
    /// `{streamId}/{kind}`: what an admin resolves.
    pub exception_id: String,
    pub stream_id: String,
    pub kind: String,
    pub provider: String,
    pub order_id: Option<String>,
    pub line_id: Option<String>,
    pub currency: String,
    pub expected_minor: i64,
    pub actual_minor: i64,
    pub detail: String,
    pub flagged_at: DateTime<Utc>,
    pub position: i64,
    pub resolution: Option<String>,
    pub note: Option<String>,
    pub resolved_by: Option<String>,
    pub resolved_at: Option<DateTime<Utc>>,
}

/// Which exceptions to list.
#[derive(Debug, Clone, Default)]
pub struct ExceptionFilter {
    pub provider: Option<String>,
    pub kind: Option<String>,
    pub order_id: Option<String>,
    /// Resolved ones too.
    pub include_resolved: bool,
    /// Only after this position (paging).
    pub after_position: i64,
    pub limit: i64,
}

pub async fn exceptions(
    pool: &PgPool,
    filter: &ExceptionFilter,
) -> Result<Vec<ReconciliationException>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT stream_id, kind, provider, order_id, line_id, currency, expected_minor, \
         actual_minor, detail, flagged_at, flagged_position, resolution, note, resolved_by, \
         resolved_at FROM rm.reconciliation_flags \
         WHERE ($1::text IS NULL OR provider = $1) AND ($2::text IS NULL OR kind = $2) \
           AND ($3::text IS NULL OR order_id = $3) AND ($4 OR resolved_at IS NULL) \
           AND flagged_position > $5 \
         ORDER BY flagged_position, kind LIMIT $6",
    )
    .bind(&filter.provider)
    .bind(&filter.kind)
    .bind(&filter.order_id)
    .bind(filter.include_resolved)
    .bind(filter.after_position)
    .bind(filter.limit)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let stream_id: String = row.try_get("stream_id")?;
            let kind: String = row.try_get("kind")?;
            Ok(ReconciliationException {
                exception_id: format!("{stream_id}/{kind}"),
                stream_id,
                kind,
                provider: row.try_get("provider")?,
                order_id: row.try_get("order_id")?,
                line_id: row.try_get("line_id")?,
                currency: row.try_get("currency")?,
                expected_minor: row.try_get("expected_minor")?,
                actual_minor: row.try_get("actual_minor")?,
                detail: row.try_get("detail")?,
                flagged_at: row.try_get("flagged_at")?,
                position: row.try_get("flagged_position")?,
                resolution: row.try_get("resolution")?,
                note: row.try_get("note")?,
                resolved_by: row.try_get("resolved_by")?,
                resolved_at: row.try_get("resolved_at")?,
            })
        })
        .collect()
}

/// Open exceptions per kind, for the metrics.
pub async fn open_exception_counts(
    pool: &PgPool,
) -> Result<Vec<(String, String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT provider, kind, count(*) FROM rm.reconciliation_flags WHERE resolved_at IS NULL \
         GROUP BY provider, kind ORDER BY provider, kind",
    )
    .fetch_all(pool)
    .await
}

/// One provider's day in the report: what it paid out on `day`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportDay {
    pub provider: String,
    pub day: NaiveDate,
    pub currency: String,
    pub lines: i64,
    pub unmatched_lines: i64,
    /// Sum of matched lines' amounts (what the ledger expected the provider to settle).
    pub settled_minor: i64,
    pub fees_minor: i64,
    pub payouts_minor: i64,
    /// Flags on that day's lines, open and resolved.
    pub discrepancies: i64,
    pub open_discrepancies: i64,
}

pub async fn report(
    pool: &PgPool,
    provider: Option<&str>,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<ReportDay>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT l.provider, l.paid_out_on, l.currency, count(*) AS lines, \
                count(*) FILTER (WHERE NOT l.matched) AS unmatched, \
                coalesce(sum(l.amount_minor) FILTER (WHERE l.matched), 0)::bigint AS settled, \
                coalesce(sum(l.fee_minor), 0)::bigint AS fees, \
                coalesce(sum(l.payout_minor), 0)::bigint AS payouts, \
                coalesce(sum(f.flags), 0)::bigint AS flags, \
                coalesce(sum(f.open), 0)::bigint AS open \
         FROM rm.reconciliation_lines l \
         LEFT JOIN (SELECT stream_id, count(*) AS flags, \
                           count(*) FILTER (WHERE resolved_at IS NULL) AS open \
                      FROM rm.reconciliation_flags GROUP BY stream_id) f \
                ON f.stream_id = l.stream_id \
         WHERE ($1::text IS NULL OR l.provider = $1) AND l.paid_out_on BETWEEN $2 AND $3 \
         GROUP BY l.provider, l.paid_out_on, l.currency \
         ORDER BY l.provider, l.paid_out_on, l.currency",
    )
    .bind(provider)
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(ReportDay {
                provider: row.try_get("provider")?,
                day: row.try_get("paid_out_on")?,
                currency: row.try_get("currency")?,
                lines: row.try_get("lines")?,
                unmatched_lines: row.try_get("unmatched")?,
                settled_minor: row.try_get("settled")?,
                fees_minor: row.try_get("fees")?,
                payouts_minor: row.try_get("payouts")?,
                discrepancies: row.try_get("flags")?,
                open_discrepancies: row.try_get("open")?,
            })
        })
        .collect()
}

/// What a provider still owes for captured payments, by age of the capture.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgedClearing {
    pub provider: String,
    pub currency: String,
    /// Captures up to 2 days old, 3–7, 8–30 and older.
    pub days_0_2_minor: i64,
    pub days_3_7_minor: i64,
    pub days_8_30_minor: i64,
    pub older_minor: i64,
    pub total_minor: i64,
}

/// Per provider and currency, as the journal posts `provider_clearing`: captured − refunded −
/// settled (payout + fee of the matched lines; payout only of a dispute line, whose fee the
/// dispute already took) − a decided dispute's withdrawal and fee − what was written off, of
/// every paid order; of every subscription charge (charged − taken back net of the fee given
/// back − its settled line's payout + fee, or − the provider fee the charge recorded while no
/// line settled it); and write-offs naming no order (by the day written off); whose difference
/// is not zero, bucketed by the age of its capture at `as_of`.
pub async fn aged_clearing(
    pool: &PgPool,
    as_of: DateTime<Utc>,
) -> Result<Vec<AgedClearing>, sqlx::Error> {
    let rows = sqlx::query(
        "WITH owed AS ( \
           SELECT o.provider, o.currency, o.paid_at, \
                  o.captured_minor - o.refunded_minor - coalesce(s.settled, 0) \
                    - coalesce(d.taken, 0) AS owed \
             FROM rm.orders o \
             LEFT JOIN (SELECT order_id, \
                               sum(payout_minor \
                                   + CASE WHEN kind = 'dispute' THEN 0 ELSE fee_minor END) \
                                 AS settled \
                          FROM rm.reconciliation_lines WHERE matched GROUP BY order_id) s \
                    ON s.order_id = o.order_id \
             LEFT JOIN (SELECT order_id, sum(taken_minor) AS taken \
                          FROM rm.reconciliation_clearing_taken WHERE order_id IS NOT NULL \
                         GROUP BY order_id) d ON d.order_id = o.order_id \
            WHERE o.captured_minor > 0 AND o.paid_at IS NOT NULL \
           UNION ALL \
           SELECT provider, currency, at AS paid_at, -taken_minor AS owed \
             FROM rm.reconciliation_clearing_taken WHERE order_id IS NULL \
           UNION ALL \
           SELECT coalesce(t.billed_by, k.provider) AS provider, c.currency, \
                  c.charged_at AS paid_at, \
                  c.charged_minor - c.reversed_minor \
                    - coalesce(s.settled, c.recorded_fee_minor) AS owed \
             FROM rm.reconciliation_subscription_charges c \
             JOIN rm.reconciliation_subscriptions t ON t.subscription_id = c.subscription_id \
             LEFT JOIN rm.billing_keys k ON k.billing_key_id = t.billing_key_id \
             LEFT JOIN (SELECT payment_key, sum(payout_minor + fee_minor) AS settled \
                          FROM rm.reconciliation_lines WHERE matched AND order_id IS NULL \
                         GROUP BY payment_key) s ON s.payment_key = c.payment_key \
            WHERE coalesce(t.billed_by, k.provider) IS NOT NULL) \
         SELECT provider, currency, \
           coalesce(sum(owed) FILTER (WHERE paid_at > $1 - interval '3 days'), 0)::bigint AS d0, \
           coalesce(sum(owed) FILTER (WHERE paid_at <= $1 - interval '3 days' \
                                        AND paid_at > $1 - interval '8 days'), 0)::bigint AS d3, \
           coalesce(sum(owed) FILTER (WHERE paid_at <= $1 - interval '8 days' \
                                        AND paid_at > $1 - interval '31 days'), 0)::bigint AS d8, \
           coalesce(sum(owed) FILTER (WHERE paid_at <= $1 - interval '31 days'), 0)::bigint AS old, \
           coalesce(sum(owed), 0)::bigint AS total \
         FROM owed WHERE owed <> 0 GROUP BY provider, currency ORDER BY provider, currency",
    )
    .bind(as_of)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(AgedClearing {
                provider: row.try_get("provider")?,
                currency: row.try_get("currency")?,
                days_0_2_minor: row.try_get("d0")?,
                days_3_7_minor: row.try_get("d3")?,
                days_8_30_minor: row.try_get("d8")?,
                older_minor: row.try_get("old")?,
                total_minor: row.try_get("total")?,
            })
        })
        .collect()
}

/// A capture with no matched settlement line for its payment.
#[derive(Debug, Clone)]
pub struct UnsettledRow {
    pub provider: String,
    pub order_id: String,
    pub currency: String,
    pub captured_minor: i64,
    pub captured_at: DateTime<Utc>,
}

/// Captures of `provider` paid from `captured_after` to before `captured_before` that no
/// matched payment line settles. The lower bound keeps captures made before settlements were
/// imported (a first deployment) from all being flagged at once.
pub async fn unsettled_captures(
    pool: &PgPool,
    provider: &str,
    captured_after: DateTime<Utc>,
    captured_before: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<UnsettledRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT o.provider, o.order_id, o.currency, o.captured_minor, o.paid_at \
           FROM rm.orders o \
          WHERE o.provider = $1 AND o.captured_minor > 0 AND o.paid_at < $2 AND o.paid_at >= $4 \
            AND NOT EXISTS (SELECT 1 FROM rm.reconciliation_lines l \
                             WHERE l.order_id = o.order_id AND l.matched AND l.kind = 'payment') \
          ORDER BY o.paid_at, o.order_id LIMIT $3",
    )
    .bind(provider)
    .bind(captured_before)
    .bind(limit)
    .bind(captured_after)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(UnsettledRow {
                provider: row.try_get("provider")?,
                order_id: row.try_get("order_id")?,
                currency: row.try_get("currency")?,
                captured_minor: row.try_get("captured_minor")?,
                captured_at: row.try_get("paid_at")?,
            })
        })
        .collect()
}
