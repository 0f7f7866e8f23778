//! Read model "settlements": weekly statements per payee and currency, with each line, the
//! totals, the net payable and the status (open, confirmed, paid out).

use crate::fold::{bad, distinct_ids, ensure_follows};
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use payledger_domain::codec;
use payledger_domain::money::BasisPoints;
use payledger_domain::settlement::{StatementEvent, StatementLine, StatementSums, StatementTotals};
use payledger_domain::streams::StreamKind;
use payledger_projector::{Projection, ProjectionError};
use payledger_store::RecordedEvent;
use sqlx::{PgConnection, PgPool, Row};
use std::collections::HashMap;

pub struct SettlementsProjection;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementView {
    pub statement_id: String,
    pub payee_id: String,
    pub week_start: NaiveDate,
    pub currency: String,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub time_zone: String,
    pub status: String,
    pub line_count: i32,
    pub totals: StatementTotals,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub paid_out_at: Option<DateTime<Utc>>,
    pub payout_reference: Option<String>,
    pub stream_version: i64,
    pub last_position: i64,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementLineView {
    pub line_no: i32,
    pub line_id: String,
    pub kind: String,
    pub order_id: Option<String>,
    pub claim_id: Option<String>,
    pub amount_minor: i64,
    pub occurred_at: DateTime<Utc>,
    pub carried_from: Option<NaiveDate>,
    pub memo: String,
    pub global_position: i64,
}

/// A statement being folded.
struct Folding {
    view: StatementView,
    fee_bps: u32,
    sums: StatementSums,
    lines: Vec<(i32, StatementLine, i64)>,
}

fn name_of<T: serde::Serialize + std::fmt::Debug>(value: &T) -> String {
    payledger_domain::codec::wire_name(value)
}

#[async_trait]
impl Projection for SettlementsProjection {
    fn name(&self) -> &'static str {
        "settlements"
    }

    fn schema_sql(&self) -> &'static str {
        include_str!("../../../projections/settlements.sql")
    }

    fn tables(&self) -> &'static [&'static str] {
        &["settlement_lines", "settlement_statements"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let relevant: Vec<&RecordedEvent> = events
            .iter()
            .filter(|e| StreamKind::Settlement.holds(&e.stream_id))
            .collect();
        if relevant.is_empty() {
            return Ok(());
        }
        let mut folding = load(conn, &relevant).await?;
        for event in relevant {
            let decoded: StatementEvent = codec::decode(&event.event_type, &event.payload)
                .map_err(|e| bad(event, e.to_string()))?;
            let statement_id = StreamKind::Settlement
                .id_of(&event.stream_id)
                .unwrap_or_default()
                .to_string();
            if let StatementEvent::StatementOpened(opened) = &decoded {
                if event.stream_version != 1 || folding.contains_key(&statement_id) {
                    return Err(bad(event, "a statement is opened once, first".into()));
                }
                folding.insert(
                    statement_id.clone(),
                    Folding {
                        view: StatementView {
                            statement_id: opened.statement_id.clone(),
                            payee_id: opened.payee_id.to_string(),
                            week_start: opened.week_start,
                            currency: opened.currency.code().to_string(),
                            period_start: opened.period_start,
                            period_end: opened.period_end,
                            time_zone: opened.time_zone.clone(),
                            status: "open".into(),
                            line_count: 0,
                            totals: StatementTotals::default(),
                            confirmed_at: None,
                            paid_out_at: None,
                            payout_reference: None,
                            stream_version: 0,
                            last_position: 0,
                            updated_at: event.recorded_at,
                        },
                        fee_bps: opened.platform_fee_bps,
                        sums: StatementSums::default(),
                        lines: Vec::new(),
                    },
                );
            }
            let row = folding
                .get_mut(&statement_id)
                .ok_or_else(|| bad(event, "statement event before it was opened".into()))?;
            ensure_follows(event, row.view.stream_version)?;
            match decoded {
                StatementEvent::StatementOpened(_) => {}
                StatementEvent::StatementLineAdded(added) => {
                    row.sums.add(&added.line);
                    row.view.line_count += 1;
                    row.lines
                        .push((row.view.line_count, added.line, event.global_position));
                }
                StatementEvent::StatementConfirmed(confirmed) => {
                    row.view.status = "confirmed".into();
                    row.view.confirmed_at = Some(confirmed.at);
                    // The frozen totals are the truth from now on; the fold must agree.
                    let fee =
                        BasisPoints::new(row.fee_bps).map_err(|e| bad(event, e.to_string()))?;
                    if row.sums.totals(fee) != confirmed.totals {
                        return Err(bad(event, "confirmed totals differ from the lines".into()));
                    }
                }
                StatementEvent::StatementPaidOut(paid) => {
                    row.view.status = "paid_out".into();
                    row.view.paid_out_at = Some(paid.at);
                    row.view.payout_reference = Some(paid.reference);
                }
            }
            row.view.stream_version = event.stream_version;
            row.view.last_position = event.global_position;
            row.view.updated_at = event.recorded_at;
        }
        save(conn, folding).await
    }
}

async fn load(
    conn: &mut PgConnection,
    events: &[&RecordedEvent],
) -> Result<HashMap<String, Folding>, ProjectionError> {
    let ids = distinct_ids(
        events
            .iter()
            .filter_map(|e| StreamKind::Settlement.id_of(&e.stream_id)),
    );
    let rows = sqlx::query(&format!(
        "SELECT {STATEMENT_COLUMNS} FROM settlement_statements WHERE statement_id = ANY($1)"
    ))
    // Planned per call: docs/architecture.md, "Lookups by many keys".
    .persistent(false)
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut folding = HashMap::with_capacity(ids.len());
    for row in rows {
        let view = statement_from_row(&row)?;
        let fee_bps: i32 = row.try_get("platform_fee_bps")?;
        let sums = StatementSums {
            payments_minor: view.totals.payments_minor,
            refunds_minor: view.totals.refunds_minor,
            compensations_minor: view.totals.compensations_minor,
            held_minor: view.totals.held_minor,
            released_minor: view.totals.released_minor,
            carried_minor: view.totals.carried_minor,
        };
        folding.insert(
            view.statement_id.clone(),
            Folding {
                view,
                fee_bps: u32::try_from(fee_bps).unwrap_or_default(),
                sums,
                lines: Vec::new(),
            },
        );
    }
    Ok(folding)
}

async fn save(
    conn: &mut PgConnection,
    folding: HashMap<String, Folding>,
) -> Result<(), ProjectionError> {
    let mut s = StatementColumns::default();
    let mut l = LineColumns::default();
    for (_, row) in folding {
        let fee = BasisPoints::new(row.fee_bps).unwrap_or(BasisPoints::ZERO);
        let t = row.sums.totals(fee);
        let v = &row.view;
        s.statement_id.push(v.statement_id.clone());
        s.payee_id.push(v.payee_id.clone());
        s.week_start.push(v.week_start);
        s.currency.push(v.currency.clone());
        s.period_start.push(v.period_start);
        s.period_end.push(v.period_end);
        s.time_zone.push(v.time_zone.clone());
        s.platform_fee_bps.push(row.fee_bps as i32);
        s.status.push(v.status.clone());
        s.line_count.push(v.line_count);
        s.payments.push(t.payments_minor);
        s.refunds.push(t.refunds_minor);
        s.compensations.push(t.compensations_minor);
        s.held.push(t.held_minor);
        s.released.push(t.released_minor);
        s.carried.push(t.carried_minor);
        s.net_sales.push(t.net_sales_minor);
        s.fee.push(t.platform_fee_minor);
        s.net.push(t.net_minor);
        s.net_payable.push(t.net_payable_minor);
        s.carry_forward.push(t.carry_forward_minor);
        s.confirmed_at.push(v.confirmed_at);
        s.paid_out_at.push(v.paid_out_at);
        s.payout_reference.push(v.payout_reference.clone());
        s.stream_version.push(v.stream_version);
        s.last_position.push(v.last_position);
        s.updated_at.push(v.updated_at);
        for (line_no, line, position) in row.lines {
            l.statement_id.push(v.statement_id.clone());
            l.line_no.push(line_no);
            l.line_id.push(line.line_id);
            l.kind.push(name_of(&line.kind));
            l.order_id.push(line.order_id.map(|o| o.to_string()));
            l.claim_id.push(line.claim_id.map(|c| c.to_string()));
            l.amount_minor.push(line.amount_minor);
            l.occurred_at.push(line.occurred_at);
            l.carried_from.push(line.carried_from);
            l.memo.push(line.memo);
            l.global_position.push(position);
        }
    }
    if !s.statement_id.is_empty() {
        sqlx::query(
            "INSERT INTO settlement_statements (statement_id, payee_id, week_start, currency, period_start, \
                period_end, time_zone, platform_fee_bps, status, line_count, payments_minor, refunds_minor, \
                compensations_minor, held_minor, released_minor, carried_minor, net_sales_minor, \
                platform_fee_minor, net_minor, net_payable_minor, carry_forward_minor, confirmed_at, \
                paid_out_at, payout_reference, stream_version, last_position, updated_at) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::date[], $4::text[], $5::timestamptz[], \
                $6::timestamptz[], $7::text[], $8::int[], $9::text[], $10::int[], $11::bigint[], \
                $12::bigint[], $13::bigint[], $14::bigint[], $15::bigint[], $16::bigint[], $17::bigint[], \
                $18::bigint[], $19::bigint[], $20::bigint[], $21::bigint[], $22::timestamptz[], \
                $23::timestamptz[], $24::text[], $25::bigint[], $26::bigint[], $27::timestamptz[]) \
             ON CONFLICT (statement_id) DO UPDATE SET status = EXCLUDED.status, \
                line_count = EXCLUDED.line_count, payments_minor = EXCLUDED.payments_minor, \
                refunds_minor = EXCLUDED.refunds_minor, compensations_minor = EXCLUDED.compensations_minor, \
                held_minor = EXCLUDED.held_minor, released_minor = EXCLUDED.released_minor, \
                carried_minor = EXCLUDED.carried_minor, net_sales_minor = EXCLUDED.net_sales_minor, \
                platform_fee_minor = EXCLUDED.platform_fee_minor, net_minor = EXCLUDED.net_minor, \
                net_payable_minor = EXCLUDED.net_payable_minor, \
                carry_forward_minor = EXCLUDED.carry_forward_minor, confirmed_at = EXCLUDED.confirmed_at, \
                paid_out_at = EXCLUDED.paid_out_at, payout_reference = EXCLUDED.payout_reference, \
                stream_version = EXCLUDED.stream_version, last_position = EXCLUDED.last_position, \
                updated_at = EXCLUDED.updated_at",
        )
        .bind(&s.statement_id)
        .bind(&s.payee_id)
        .bind(&s.week_start)
        .bind(&s.currency)
        .bind(&s.period_start)
        .bind(&s.period_end)
        .bind(&s.time_zone)
        .bind(&s.platform_fee_bps)
        .bind(&s.status)
        .bind(&s.line_count)
        .bind(&s.payments)
        .bind(&s.refunds)
        .bind(&s.compensations)
        .bind(&s.held)
        .bind(&s.released)
        .bind(&s.carried)
        .bind(&s.net_sales)
        .bind(&s.fee)
        .bind(&s.net)
        .bind(&s.net_payable)
        .bind(&s.carry_forward)
        .bind(&s.confirmed_at)
        .bind(&s.paid_out_at)
        .bind(&s.payout_reference)
        .bind(&s.stream_version)
        .bind(&s.last_position)
        .bind(&s.updated_at)
        .execute(&mut *conn)
        .await?;
    }
    if !l.statement_id.is_empty() {
        sqlx::query(
            "INSERT INTO settlement_lines (statement_id, line_no, line_id, kind, order_id, claim_id, \
                amount_minor, occurred_at, carried_from, memo, global_position) \
             SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::text[], $6::text[], \
                $7::bigint[], $8::timestamptz[], $9::date[], $10::text[], $11::bigint[])",
        )
        .bind(&l.statement_id)
        .bind(&l.line_no)
        .bind(&l.line_id)
        .bind(&l.kind)
        .bind(&l.order_id)
        .bind(&l.claim_id)
        .bind(&l.amount_minor)
        .bind(&l.occurred_at)
        .bind(&l.carried_from)
        .bind(&l.memo)
        .bind(&l.global_position)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

#[derive(Default)]
struct StatementColumns {
    statement_id: Vec<String>,
    payee_id: Vec<String>,
    week_start: Vec<NaiveDate>,
    currency: Vec<String>,
    period_start: Vec<DateTime<Utc>>,
    period_end: Vec<DateTime<Utc>>,
    time_zone: Vec<String>,
    platform_fee_bps: Vec<i32>,
    status: Vec<String>,
    line_count: Vec<i32>,
    payments: Vec<i64>,
    refunds: Vec<i64>,
    compensations: Vec<i64>,
    held: Vec<i64>,
    released: Vec<i64>,
    carried: Vec<i64>,
    net_sales: Vec<i64>,
    fee: Vec<i64>,
    net: Vec<i64>,
    net_payable: Vec<i64>,
    carry_forward: Vec<i64>,
    confirmed_at: Vec<Option<DateTime<Utc>>>,
    paid_out_at: Vec<Option<DateTime<Utc>>>,
    payout_reference: Vec<Option<String>>,
    stream_version: Vec<i64>,
    last_position: Vec<i64>,
    updated_at: Vec<DateTime<Utc>>,
}

#[derive(Default)]
struct LineColumns {
    statement_id: Vec<String>,
    line_no: Vec<i32>,
    line_id: Vec<String>,
    kind: Vec<String>,
    order_id: Vec<Option<String>>,
    claim_id: Vec<Option<String>>,
    amount_minor: Vec<i64>,
    occurred_at: Vec<DateTime<Utc>>,
    carried_from: Vec<Option<NaiveDate>>,
    memo: Vec<String>,
    global_position: Vec<i64>,
}

// ---------------------------------------------------------------------------------------------
// Queries
// ---------------------------------------------------------------------------------------------

const STATEMENT_COLUMNS: &str = "statement_id, payee_id, week_start, currency, period_start, \
    period_end, time_zone, platform_fee_bps, status, line_count, payments_minor, refunds_minor, \
    compensations_minor, held_minor, released_minor, carried_minor, net_sales_minor, \
    platform_fee_minor, net_minor, net_payable_minor, carry_forward_minor, confirmed_at, \
    paid_out_at, payout_reference, stream_version, last_position, updated_at";

fn statement_from_row(row: &sqlx::postgres::PgRow) -> Result<StatementView, sqlx::Error> {
    let fee_bps: i32 = row.try_get("platform_fee_bps")?;
    Ok(StatementView {
        statement_id: row.try_get("statement_id")?,
        payee_id: row.try_get("payee_id")?,
        week_start: row.try_get("week_start")?,
        currency: row.try_get("currency")?,
        period_start: row.try_get("period_start")?,
        period_end: row.try_get("period_end")?,
        time_zone: row.try_get("time_zone")?,
        status: row.try_get("status")?,
        line_count: row.try_get("line_count")?,
        totals: StatementTotals {
            payments_minor: row.try_get("payments_minor")?,
            refunds_minor: row.try_get("refunds_minor")?,
            compensations_minor: row.try_get("compensations_minor")?,
            held_minor: row.try_get("held_minor")?,
            released_minor: row.try_get("released_minor")?,
            carried_minor: row.try_get("carried_minor")?,
            net_sales_minor: row.try_get("net_sales_minor")?,
            platform_fee_bps: u32::try_from(fee_bps).unwrap_or_default(),
            platform_fee_minor: row.try_get("platform_fee_minor")?,
            net_minor: row.try_get("net_minor")?,
            net_payable_minor: row.try_get("net_payable_minor")?,
            carry_forward_minor: row.try_get("carry_forward_minor")?,
        },
        confirmed_at: row.try_get("confirmed_at")?,
        paid_out_at: row.try_get("paid_out_at")?,
        payout_reference: row.try_get("payout_reference")?,
        stream_version: row.try_get("stream_version")?,
        last_position: row.try_get("last_position")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Statements of a payee (and optionally one week), newest week first.
pub async fn list_statements(
    pool: &PgPool,
    payee_id: Option<&str>,
    week_start: Option<NaiveDate>,
    status: Option<&str>,
    limit: i64,
) -> Result<Vec<StatementView>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {STATEMENT_COLUMNS} FROM rm.settlement_statements \
         WHERE ($1::text IS NULL OR payee_id = $1) AND ($2::date IS NULL OR week_start = $2) \
           AND ($3::text IS NULL OR status = $3) \
         ORDER BY week_start DESC, payee_id, currency LIMIT $4"
    ))
    .bind(payee_id)
    .bind(week_start)
    .bind(status)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter().map(statement_from_row).collect()
}

/// Statements in `status` whose week ended before `period_end_before`, oldest week first: the
/// settlement jobs' candidates (each is re-checked by the statement itself).
pub async fn statements_ended_before(
    pool: &PgPool,
    status: &str,
    period_end_before: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<StatementView>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {STATEMENT_COLUMNS} FROM rm.settlement_statements \
         WHERE status = $1 AND period_end <= $2 ORDER BY period_end, statement_id LIMIT $3"
    ))
    .bind(status)
    .bind(period_end_before)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter().map(statement_from_row).collect()
}

pub async fn get_statement(
    pool: &PgPool,
    statement_id: &str,
) -> Result<Option<StatementView>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {STATEMENT_COLUMNS} FROM rm.settlement_statements WHERE statement_id = $1"
    ))
    .bind(statement_id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(statement_from_row).transpose()
}

pub async fn statement_lines(
    pool: &PgPool,
    statement_id: &str,
    limit: i64,
) -> Result<Vec<StatementLineView>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT line_no, line_id, kind, order_id, claim_id, amount_minor, occurred_at, carried_from, \
            memo, global_position \
         FROM rm.settlement_lines WHERE statement_id = $1 ORDER BY line_no LIMIT $2",
    )
    .bind(statement_id)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(StatementLineView {
                line_no: row.try_get("line_no")?,
                line_id: row.try_get("line_id")?,
                kind: row.try_get("kind")?,
                order_id: row.try_get("order_id")?,
                claim_id: row.try_get("claim_id")?,
                amount_minor: row.try_get("amount_minor")?,
                occurred_at: row.try_get("occurred_at")?,
                carried_from: row.try_get("carried_from")?,
                memo: row.try_get("memo")?,
                global_position: row.try_get("global_position")?,
            })
        })
        .collect()
}
