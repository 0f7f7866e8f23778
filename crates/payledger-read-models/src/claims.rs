//! Read model "claims": the admins' queue (by status, type and age), each claim's detail and the
//! statistics (count by type and outcome, median time to resolve).

use crate::fold::{bad, distinct_ids, load_stored, state_json, Folded};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use payledger_domain::claim::{Claim, ClaimEvent};
use payledger_domain::codec;
use payledger_domain::streams::StreamKind;
use payledger_projector::{Projection, ProjectionError};
use payledger_store::RecordedEvent;
use sqlx::{PgConnection, PgPool, Row};
use std::collections::HashMap;

pub struct ClaimsProjection;

/// A claim as admins and support see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimView {
    pub claim_id: String,
    pub order_id: String,
    pub customer_id: String,
    pub payee_id: String,
    pub currency: String,
    pub claim_type: String,
    pub filed_by: String,
    pub status: String,
    pub description: String,
    /// References (URLs, document ids), never the files themselves.
    pub evidence: serde_json::Value,
    pub amount_at_stake_minor: i64,
    pub service_starts_at: Option<DateTime<Utc>>,
    pub filed_at: DateTime<Utc>,
    pub respond_by: DateTime<Utc>,
    pub claimant_statement: Option<serde_json::Value>,
    pub respondent_statement: Option<serde_json::Value>,
    pub deadline_missed_at: Option<DateTime<Utc>>,
    pub assigned_to: Option<String>,
    pub outcome: Option<String>,
    pub decision: Option<serde_json::Value>,
    pub resolution_round: i32,
    pub resolved_at: Option<DateTime<Utc>>,
    pub seconds_to_resolve: Option<i64>,
    pub appealed_at: Option<DateTime<Utc>>,
    pub stream_version: i64,
    pub last_position: i64,
    pub updated_at: DateTime<Utc>,
}

/// Claims by type and outcome (`None`: not resolved yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimCount {
    pub claim_type: String,
    pub outcome: Option<String>,
    pub count: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimStats {
    pub counts: Vec<ClaimCount>,
    pub total: i64,
    pub open: i64,
    pub resolved: i64,
    /// Median seconds from filing to the first resolution, over resolved claims (the lower
    /// median for an even count, so it is always a time a claim actually took).
    pub median_seconds_to_resolve: Option<i64>,
}

fn claim_id_of(stream_id: &str) -> Option<&str> {
    StreamKind::Claim.id_of(stream_id)
}

fn name_of<T: serde::Serialize + std::fmt::Debug>(value: &T) -> String {
    payledger_domain::codec::wire_name(value)
}

#[async_trait]
impl Projection for ClaimsProjection {
    fn name(&self) -> &'static str {
        "claims"
    }

    fn schema_sql(&self) -> &'static str {
        include_str!("../../../projections/claims.sql")
    }

    fn tables(&self) -> &'static [&'static str] {
        &["claims"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let relevant: Vec<&RecordedEvent> = events
            .iter()
            .filter(|e| claim_id_of(&e.stream_id).is_some())
            .collect();
        if relevant.is_empty() {
            return Ok(());
        }
        let mut folding = load(conn, &relevant).await?;
        for event in relevant {
            let claim_id = claim_id_of(&event.stream_id).unwrap_or_default();
            let decoded: ClaimEvent = codec::decode(&event.event_type, &event.payload)
                .map_err(|e| bad(event, e.to_string()))?;
            let row = folding
                .entry(claim_id.to_string())
                .or_insert_with(|| Folded::new(event.recorded_at));
            row.advance(event)?;
            row.state.apply(decoded);
            row.state.assert_invariants();
        }
        save(conn, folding).await
    }
}

async fn load(
    conn: &mut PgConnection,
    events: &[&RecordedEvent],
) -> Result<HashMap<String, Folded<Claim>>, ProjectionError> {
    let ids = distinct_ids(events.iter().filter_map(|e| claim_id_of(&e.stream_id)));
    load_stored(conn, "claims", "claim_id", &ids, "claim").await
}

/// Writes every folded claim with one multi-row upsert.
async fn save(
    conn: &mut PgConnection,
    folding: HashMap<String, Folded<Claim>>,
) -> Result<(), ProjectionError> {
    let mut c = Columns::default();
    for (claim_id, row) in folding {
        let Some(filed) = row.state.filed.as_ref() else {
            continue;
        };
        let position = row.last_position;
        let last = row.state.resolutions.last();
        c.claim_id.push(claim_id);
        c.order_id.push(filed.order_id.to_string());
        c.customer_id.push(filed.customer_id.to_string());
        c.payee_id.push(filed.payee_id.to_string());
        c.currency.push(filed.currency.code().to_string());
        c.claim_type.push(name_of(&filed.claim_type));
        c.filed_by.push(name_of(&filed.filed_by));
        c.status.push(name_of(&row.state.status));
        c.description.push(filed.description.clone());
        c.evidence.push(state_json(&filed.evidence, position)?);
        c.amount_at_stake_minor.push(filed.amount_at_stake_minor);
        c.service_starts_at.push(filed.service_starts_at);
        c.filed_at.push(filed.at);
        c.respond_by.push(filed.respond_by);
        c.claimant_statement.push(
            row.state
                .claimant_statement
                .as_ref()
                .map(|s| state_json(s, position))
                .transpose()?,
        );
        c.respondent_statement.push(
            row.state
                .respondent_statement
                .as_ref()
                .map(|s| state_json(s, position))
                .transpose()?,
        );
        c.deadline_missed_at
            .push(row.state.deadline_missed.as_ref().map(|m| m.at));
        c.assigned_to
            .push(row.state.assigned_to.as_ref().map(|a| a.to_string()));
        c.outcome.push(last.map(|r| name_of(&r.outcome)));
        c.decision
            .push(last.map(|r| state_json(r, position)).transpose()?);
        c.resolution_round.push(row.state.resolutions.len() as i32);
        c.resolved_at.push(last.map(|r| r.at));
        c.seconds_to_resolve
            .push(row.state.resolutions.first().map(|r| r.seconds_to_resolve));
        c.appealed_at.push(row.state.appeal.as_ref().map(|a| a.at));
        c.stream_version.push(row.stream_version);
        c.last_position.push(position);
        c.updated_at.push(row.updated_at);
        c.state.push(state_json(&row.state, position)?);
    }
    if c.claim_id.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO claims (claim_id, order_id, customer_id, payee_id, currency, claim_type, filed_by, \
            status, description, evidence, amount_at_stake_minor, service_starts_at, filed_at, respond_by, \
            claimant_statement, respondent_statement, deadline_missed_at, assigned_to, outcome, decision, \
            resolution_round, resolved_at, seconds_to_resolve, appealed_at, stream_version, last_position, \
            updated_at, state) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
            $7::text[], $8::text[], $9::text[], $10::jsonb[], $11::bigint[], $12::timestamptz[], \
            $13::timestamptz[], $14::timestamptz[], $15::jsonb[], $16::jsonb[], $17::timestamptz[], \
            $18::text[], $19::text[], $20::jsonb[], $21::int[], $22::timestamptz[], $23::bigint[], \
            $24::timestamptz[], $25::bigint[], $26::bigint[], $27::timestamptz[], $28::jsonb[]) \
         ON CONFLICT (claim_id) DO UPDATE SET status = EXCLUDED.status, \
            claimant_statement = EXCLUDED.claimant_statement, \
            respondent_statement = EXCLUDED.respondent_statement, \
            deadline_missed_at = EXCLUDED.deadline_missed_at, assigned_to = EXCLUDED.assigned_to, \
            outcome = EXCLUDED.outcome, decision = EXCLUDED.decision, \
            resolution_round = EXCLUDED.resolution_round, resolved_at = EXCLUDED.resolved_at, \
            seconds_to_resolve = EXCLUDED.seconds_to_resolve, appealed_at = EXCLUDED.appealed_at, \
            stream_version = EXCLUDED.stream_version, last_position = EXCLUDED.last_position, \
            updated_at = EXCLUDED.updated_at, state = EXCLUDED.state",
    )
    .bind(&c.claim_id)
    .bind(&c.order_id)
    .bind(&c.customer_id)
    .bind(&c.payee_id)
    .bind(&c.currency)
    .bind(&c.claim_type)
    .bind(&c.filed_by)
    .bind(&c.status)
    .bind(&c.description)
    .bind(&c.evidence)
    .bind(&c.amount_at_stake_minor)
    .bind(&c.service_starts_at)
    .bind(&c.filed_at)
    .bind(&c.respond_by)
    .bind(&c.claimant_statement)
    .bind(&c.respondent_statement)
    .bind(&c.deadline_missed_at)
    .bind(&c.assigned_to)
    .bind(&c.outcome)
    .bind(&c.decision)
    .bind(&c.resolution_round)
    .bind(&c.resolved_at)
    .bind(&c.seconds_to_resolve)
    .bind(&c.appealed_at)
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
    claim_id: Vec<String>,
    order_id: Vec<String>,
    customer_id: Vec<String>,
    payee_id: Vec<String>,
    currency: Vec<String>,
    claim_type: Vec<String>,
    filed_by: Vec<String>,
    status: Vec<String>,
    description: Vec<String>,
    evidence: Vec<serde_json::Value>,
    amount_at_stake_minor: Vec<i64>,
    service_starts_at: Vec<Option<DateTime<Utc>>>,
    filed_at: Vec<DateTime<Utc>>,
    respond_by: Vec<DateTime<Utc>>,
    claimant_statement: Vec<Option<serde_json::Value>>,
    respondent_statement: Vec<Option<serde_json::Value>>,
    deadline_missed_at: Vec<Option<DateTime<Utc>>>,
    assigned_to: Vec<Option<String>>,
    outcome: Vec<Option<String>>,
    decision: Vec<Option<serde_json::Value>>,
    resolution_round: Vec<i32>,
    resolved_at: Vec<Option<DateTime<Utc>>>,
    seconds_to_resolve: Vec<Option<i64>>,
    appealed_at: Vec<Option<DateTime<Utc>>>,
    stream_version: Vec<i64>,
    last_position: Vec<i64>,
    updated_at: Vec<DateTime<Utc>>,
    state: Vec<serde_json::Value>,
}

// ---------------------------------------------------------------------------------------------
// Queries
// ---------------------------------------------------------------------------------------------

const CLAIM_COLUMNS: &str = "claim_id, order_id, customer_id, payee_id, currency, claim_type, \
    filed_by, status, description, evidence, amount_at_stake_minor, service_starts_at, filed_at, \
    respond_by, claimant_statement, respondent_statement, deadline_missed_at, assigned_to, outcome, \
    decision, resolution_round, resolved_at, seconds_to_resolve, appealed_at, stream_version, \
    last_position, updated_at";

fn claim_from_row(row: &sqlx::postgres::PgRow) -> Result<ClaimView, sqlx::Error> {
    Ok(ClaimView {
        claim_id: row.try_get("claim_id")?,
        order_id: row.try_get("order_id")?,
        customer_id: row.try_get("customer_id")?,
        payee_id: row.try_get("payee_id")?,
        currency: row.try_get("currency")?,
        claim_type: row.try_get("claim_type")?,
        filed_by: row.try_get("filed_by")?,
        status: row.try_get("status")?,
        description: row.try_get("description")?,
        evidence: row.try_get("evidence")?,
        amount_at_stake_minor: row.try_get("amount_at_stake_minor")?,
        service_starts_at: row.try_get("service_starts_at")?,
        filed_at: row.try_get("filed_at")?,
        respond_by: row.try_get("respond_by")?,
        claimant_statement: row.try_get("claimant_statement")?,
        respondent_statement: row.try_get("respondent_statement")?,
        deadline_missed_at: row.try_get("deadline_missed_at")?,
        assigned_to: row.try_get("assigned_to")?,
        outcome: row.try_get("outcome")?,
        decision: row.try_get("decision")?,
        resolution_round: row.try_get("resolution_round")?,
        resolved_at: row.try_get("resolved_at")?,
        seconds_to_resolve: row.try_get("seconds_to_resolve")?,
        appealed_at: row.try_get("appealed_at")?,
        stream_version: row.try_get("stream_version")?,
        last_position: row.try_get("last_position")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub async fn get_claim(pool: &PgPool, claim_id: &str) -> Result<Option<ClaimView>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {CLAIM_COLUMNS} FROM rm.claims WHERE claim_id = $1"
    ))
    .bind(claim_id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(claim_from_row).transpose()
}

/// Which claims the queue shows.
#[derive(Debug, Clone, Default)]
pub struct ClaimFilter<'a> {
    pub status: Option<&'a str>,
    pub claim_type: Option<&'a str>,
    pub order_id: Option<&'a str>,
    /// Only claims filed at or before this time (older than an age).
    pub filed_before: Option<DateTime<Utc>>,
    /// Keyset paging: claims after this (filed_at, claim_id).
    pub after: Option<(DateTime<Utc>, &'a str)>,
}

/// The queue: oldest first, so the claim that waited longest is on top.
pub async fn list_claims(
    pool: &PgPool,
    filter: &ClaimFilter<'_>,
    limit: i64,
) -> Result<Vec<ClaimView>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {CLAIM_COLUMNS} FROM rm.claims \
         WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR claim_type = $2) \
           AND ($3::text IS NULL OR order_id = $3) AND ($4::timestamptz IS NULL OR filed_at <= $4) \
           AND ($5::timestamptz IS NULL OR (filed_at, claim_id) > ($5, $6)) \
         ORDER BY filed_at, claim_id LIMIT $7"
    ))
    .bind(filter.status)
    .bind(filter.claim_type)
    .bind(filter.order_id)
    .bind(filter.filed_before)
    .bind(filter.after.map(|(at, _)| at))
    .bind(filter.after.map(|(_, id)| id))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter().map(claim_from_row).collect()
}

/// Open claims whose respondent let the deadline pass unrecorded (the deadline sweep's work).
pub async fn overdue_claims(
    pool: &PgPool,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT claim_id FROM rm.claims \
         WHERE status IN ('filed', 'under_review', 'appealed') AND respond_by < $1 \
           AND respondent_statement IS NULL AND deadline_missed_at IS NULL \
         ORDER BY respond_by LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(pool)
    .await
}

pub async fn claim_stats(pool: &PgPool) -> Result<ClaimStats, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT claim_type, outcome, count(*) AS n FROM rm.claims \
         GROUP BY claim_type, outcome ORDER BY claim_type, outcome NULLS FIRST",
    )
    .fetch_all(pool)
    .await?;
    let counts = rows
        .iter()
        .map(|row| {
            Ok(ClaimCount {
                claim_type: row.try_get("claim_type")?,
                outcome: row.try_get("outcome")?,
                count: row.try_get("n")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let row = sqlx::query(
        "SELECT count(*) AS total, \
                count(*) FILTER (WHERE status IN ('filed', 'under_review', 'appealed')) AS open, \
                count(*) FILTER (WHERE resolution_round > 0) AS resolved, \
                percentile_disc(0.5) WITHIN GROUP (ORDER BY seconds_to_resolve) \
                    FILTER (WHERE seconds_to_resolve IS NOT NULL) AS median \
         FROM rm.claims",
    )
    .fetch_one(pool)
    .await?;
    Ok(ClaimStats {
        counts,
        total: row.try_get("total")?,
        open: row.try_get("open")?,
        resolved: row.try_get("resolved")?,
        median_seconds_to_resolve: row.try_get("median")?,
    })
}
