//! Read model "subscriptions": subscriptions with their dunning state, credit wallets, credit
//! purchases and billing keys (card facts only).
//!
//! Admins list subscriptions by status (`past_due`, …); the scheduler asks which subscriptions
//! are due ([`due_subscriptions`]) and which credit purchases have refunds not yet clawed back
//! ([`purchases_with_unapplied_refunds`]). Both are only indexes: every candidate is re-checked
//! against its event stream by the command it receives.

use crate::fold::{bad, distinct_ids, load_stored, state_json, Folded};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use payledger_domain::codec;
use payledger_domain::customer::{BillingKeyStatus, CustomerEvent};
use payledger_domain::streams::StreamKind;
use payledger_domain::subscription::{Subscription, SubscriptionEvent};
use payledger_domain::wallet::{Wallet, WalletEvent};
use payledger_projector::{Projection, ProjectionError};
use payledger_store::RecordedEvent;
use sqlx::{PgConnection, PgPool, Row};
use std::collections::{BTreeMap, HashMap};

/// Subscriptions one customer may have (the domain's bound), read when computing a membership.
const MAX_SUBSCRIPTIONS_READ_PER_CUSTOMER: i64 = 100;

pub struct SubscriptionsProjection;

/// A subscription as admins and API clients see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionView {
    pub subscription_id: String,
    pub customer_id: String,
    pub plan_id: String,
    pub status: String,
    pub amount_minor: i64,
    pub currency: String,
    pub interval_unit: String,
    pub interval_count: i32,
    pub billing_key_id: String,
    pub anchor: DateTime<Utc>,
    pub cycle: i32,
    pub paid_cycles: i32,
    pub paid_through: Option<DateTime<Utc>>,
    pub next_charge_at: Option<DateTime<Utc>>,
    pub retry_count: i32,
    pub next_retry_at: Option<DateTime<Utc>>,
    pub last_failure_code: Option<String>,
    pub grace_ends_at: Option<DateTime<Utc>>,
    pub cancel_effective_at: Option<DateTime<Utc>>,
    pub suspended_reason: Option<String>,
    pub attempt_in_flight: bool,
    pub next_due_at: Option<DateTime<Utc>>,
    /// The membership this subscription gives at the time the query was asked for.
    pub membership_level: u8,
    /// The customer's credit balance (0 without a wallet).
    pub wallet_balance: i64,
    pub started_at: DateTime<Utc>,
    pub stream_version: i64,
    pub last_position: i64,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletView {
    pub customer_id: String,
    pub balance: i64,
    pub purchased_total: i64,
    pub spent_total: i64,
    pub clawed_back_total: i64,
    pub shortfall_total: i64,
    pub stream_version: i64,
    pub last_position: i64,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillingKeyView {
    pub billing_key_id: String,
    pub customer_id: String,
    pub status: String,
    pub provider: String,
    pub issuer_code: String,
    pub last4: String,
    pub card_type: String,
    pub expiry: Option<String>,
    pub registered_at: DateTime<Utc>,
    pub changed_at: DateTime<Utc>,
}

/// Which subscriptions to list.
#[derive(Debug, Clone, Default)]
pub struct SubscriptionFilter<'a> {
    pub status: Option<&'a str>,
    pub customer_id: Option<&'a str>,
    /// Keyset paging: subscriptions with an id after this one.
    pub after_subscription_id: Option<&'a str>,
}

#[async_trait]
impl Projection for SubscriptionsProjection {
    fn name(&self) -> &'static str {
        "subscriptions"
    }

    fn schema_sql(&self) -> &'static str {
        include_str!("../../../projections/subscriptions.sql")
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "billing_customers",
            "billing_keys",
            "credit_purchases",
            "wallets",
            "subscriptions",
        ]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let mut subscriptions = Vec::new();
        let mut wallets = Vec::new();
        let mut customers = Vec::new();
        for event in events {
            if let Some(id) = StreamKind::Subscription.id_of(&event.stream_id) {
                subscriptions.push((id, event));
            } else if let Some(id) = StreamKind::Wallet.id_of(&event.stream_id) {
                wallets.push((id, event));
            } else if let Some(id) = StreamKind::Customer.id_of(&event.stream_id) {
                customers.push((id, event));
            }
        }
        if !subscriptions.is_empty() {
            project_subscriptions(conn, &subscriptions).await?;
        }
        if !wallets.is_empty() {
            project_wallets(conn, &wallets).await?;
        }
        if !customers.is_empty() {
            project_customers(conn, &customers).await?;
        }
        Ok(())
    }
}

/// The distinct ids of the streams `events` belong to, sorted.
fn ids_of(events: &[(&str, &RecordedEvent)]) -> Vec<String> {
    distinct_ids(events.iter().map(|(id, _)| *id))
}

// ---------------------------------------------------------------------------------------------
// Subscriptions
// ---------------------------------------------------------------------------------------------

async fn project_subscriptions(
    conn: &mut PgConnection,
    events: &[(&str, &RecordedEvent)],
) -> Result<(), ProjectionError> {
    let ids = ids_of(events);
    let mut folding: HashMap<String, Folded<Subscription>> = load_stored(
        conn,
        "subscriptions",
        "subscription_id",
        &ids,
        "subscription",
    )
    .await?;
    for (id, event) in events {
        let decoded: SubscriptionEvent = codec::decode(&event.event_type, &event.payload)
            .map_err(|e| bad(event, e.to_string()))?;
        let row = folding
            .entry(id.to_string())
            .or_insert_with(|| Folded::new(event.recorded_at));
        row.advance(event)?;
        row.state.apply(decoded);
    }
    let mut c = SubscriptionColumns::default();
    for (id, row) in folding {
        let Some(terms) = row.state.terms.as_ref() else {
            // Events before SubscriptionStarted cannot exist (the aggregate refuses them).
            continue;
        };
        let state = &row.state;
        c.subscription_id.push(id);
        c.customer_id.push(terms.customer_id.to_string());
        c.plan_id.push(terms.plan_id.to_string());
        c.plan_level.push(i16::from(terms.membership_level));
        c.status.push(state.status.as_str().to_string());
        c.amount_minor.push(terms.amount.amount_minor());
        c.currency.push(terms.amount.currency().code().to_string());
        c.interval_unit
            .push(terms.interval.unit().as_str().to_string());
        c.interval_count
            .push(i32::try_from(terms.interval.count()).unwrap_or(i32::MAX));
        c.billing_key_id.push(
            state
                .billing_key_id
                .as_ref()
                .unwrap_or(&terms.billing_key_id)
                .to_string(),
        );
        c.anchor.push(terms.anchor);
        c.cycle.push(i32::try_from(state.cycle).unwrap_or(i32::MAX));
        c.paid_cycles
            .push(i32::try_from(state.paid_cycles).unwrap_or(i32::MAX));
        c.paid_through.push(state.paid_through);
        c.next_charge_at.push(state.next_charge_at);
        c.retry_count
            .push(i32::try_from(state.retry_count()).unwrap_or(i32::MAX));
        c.next_retry_at.push(state.next_retry_at());
        c.last_failure_code
            .push(state.last_failure.as_ref().map(|f| f.provider_code.clone()));
        c.grace_ends_at.push(state.grace_ends_at);
        c.cancel_effective_at.push(state.cancel_effective_at);
        c.suspended_reason.push(state.suspended_reason.clone());
        c.attempt_in_flight.push(state.in_flight.is_some());
        c.next_due_at.push(state.next_due().map(|(at, _)| at));
        c.started_at.push(terms.at);
        c.stream_version.push(row.stream_version);
        c.last_position.push(row.last_position);
        c.updated_at.push(row.updated_at);
        c.state.push(state_json(state, row.last_position)?);
    }
    c.upsert(conn).await
}

#[derive(Default)]
struct SubscriptionColumns {
    subscription_id: Vec<String>,
    customer_id: Vec<String>,
    plan_id: Vec<String>,
    plan_level: Vec<i16>,
    status: Vec<String>,
    amount_minor: Vec<i64>,
    currency: Vec<String>,
    interval_unit: Vec<String>,
    interval_count: Vec<i32>,
    billing_key_id: Vec<String>,
    anchor: Vec<DateTime<Utc>>,
    cycle: Vec<i32>,
    paid_cycles: Vec<i32>,
    paid_through: Vec<Option<DateTime<Utc>>>,
    next_charge_at: Vec<Option<DateTime<Utc>>>,
    retry_count: Vec<i32>,
    next_retry_at: Vec<Option<DateTime<Utc>>>,
    last_failure_code: Vec<Option<String>>,
    grace_ends_at: Vec<Option<DateTime<Utc>>>,
    cancel_effective_at: Vec<Option<DateTime<Utc>>>,
    suspended_reason: Vec<Option<String>>,
    attempt_in_flight: Vec<bool>,
    next_due_at: Vec<Option<DateTime<Utc>>>,
    started_at: Vec<DateTime<Utc>>,
    stream_version: Vec<i64>,
    last_position: Vec<i64>,
    updated_at: Vec<DateTime<Utc>>,
    state: Vec<serde_json::Value>,
}

impl SubscriptionColumns {
    async fn upsert(self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        if self.subscription_id.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO subscriptions (subscription_id, customer_id, plan_id, plan_level, status, \
                amount_minor, currency, interval_unit, interval_count, billing_key_id, anchor, cycle, \
                paid_cycles, paid_through, next_charge_at, retry_count, next_retry_at, last_failure_code, \
                grace_ends_at, cancel_effective_at, suspended_reason, attempt_in_flight, next_due_at, \
                started_at, stream_version, last_position, updated_at, state) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::smallint[], $5::text[], \
                $6::bigint[], $7::text[], $8::text[], $9::int[], $10::text[], $11::timestamptz[], \
                $12::int[], $13::int[], $14::timestamptz[], $15::timestamptz[], $16::int[], \
                $17::timestamptz[], $18::text[], $19::timestamptz[], $20::timestamptz[], $21::text[], \
                $22::bool[], $23::timestamptz[], $24::timestamptz[], $25::bigint[], $26::bigint[], \
                $27::timestamptz[], $28::jsonb[]) \
             ON CONFLICT (subscription_id) DO UPDATE SET status = EXCLUDED.status, \
                billing_key_id = EXCLUDED.billing_key_id, cycle = EXCLUDED.cycle, \
                paid_cycles = EXCLUDED.paid_cycles, paid_through = EXCLUDED.paid_through, \
                next_charge_at = EXCLUDED.next_charge_at, retry_count = EXCLUDED.retry_count, \
                next_retry_at = EXCLUDED.next_retry_at, last_failure_code = EXCLUDED.last_failure_code, \
                grace_ends_at = EXCLUDED.grace_ends_at, cancel_effective_at = EXCLUDED.cancel_effective_at, \
                suspended_reason = EXCLUDED.suspended_reason, attempt_in_flight = EXCLUDED.attempt_in_flight, \
                next_due_at = EXCLUDED.next_due_at, stream_version = EXCLUDED.stream_version, \
                last_position = EXCLUDED.last_position, updated_at = EXCLUDED.updated_at, \
                state = EXCLUDED.state",
        )
        .bind(&self.subscription_id)
        .bind(&self.customer_id)
        .bind(&self.plan_id)
        .bind(&self.plan_level)
        .bind(&self.status)
        .bind(&self.amount_minor)
        .bind(&self.currency)
        .bind(&self.interval_unit)
        .bind(&self.interval_count)
        .bind(&self.billing_key_id)
        .bind(&self.anchor)
        .bind(&self.cycle)
        .bind(&self.paid_cycles)
        .bind(&self.paid_through)
        .bind(&self.next_charge_at)
        .bind(&self.retry_count)
        .bind(&self.next_retry_at)
        .bind(&self.last_failure_code)
        .bind(&self.grace_ends_at)
        .bind(&self.cancel_effective_at)
        .bind(&self.suspended_reason)
        .bind(&self.attempt_in_flight)
        .bind(&self.next_due_at)
        .bind(&self.started_at)
        .bind(&self.stream_version)
        .bind(&self.last_position)
        .bind(&self.updated_at)
        .bind(&self.state)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Wallets and credit purchases
// ---------------------------------------------------------------------------------------------

async fn project_wallets(
    conn: &mut PgConnection,
    events: &[(&str, &RecordedEvent)],
) -> Result<(), ProjectionError> {
    let ids = ids_of(events);
    let mut folding: HashMap<String, Folded<Wallet>> =
        load_stored(conn, "wallets", "customer_id", &ids, "wallet").await?;
    // Purchases this batch touched, with the time they were bought when the batch bought them.
    let mut touched: BTreeMap<(String, String), Option<DateTime<Utc>>> = BTreeMap::new();
    for (customer_id, event) in events {
        let decoded: WalletEvent = codec::decode(&event.event_type, &event.payload)
            .map_err(|e| bad(event, e.to_string()))?;
        match &decoded {
            WalletEvent::CreditsPurchased(p) => {
                touched.insert(
                    (customer_id.to_string(), p.purchase_id.to_string()),
                    Some(p.at),
                );
            }
            WalletEvent::CreditsClawedBack(c) => {
                touched
                    .entry((customer_id.to_string(), c.purchase_id.to_string()))
                    .or_insert(None);
            }
            WalletEvent::CreditsSpent(_) => {}
        }
        let row = folding
            .entry(customer_id.to_string())
            .or_insert_with(|| Folded::new(event.recorded_at));
        row.advance(event)?;
        row.state.apply(decoded);
    }

    let mut w = WalletColumns::default();
    for (customer_id, row) in &folding {
        let s = &row.state;
        w.customer_id.push(customer_id.clone());
        w.balance.push(s.balance);
        w.purchased_total.push(s.purchased_total);
        w.spent_total.push(s.spent_total);
        w.clawed_back_total.push(s.clawed_back_total);
        w.shortfall_total.push(s.shortfall_total);
        w.stream_version.push(row.stream_version);
        w.last_position.push(row.last_position);
        w.updated_at.push(row.updated_at);
        w.state.push(state_json(s, row.last_position)?);
    }
    w.upsert(conn).await?;

    let mut p = PurchaseColumns::default();
    for ((customer_id, purchase_id), bought_at) in touched {
        let Some(row) = folding.get(&customer_id) else {
            continue;
        };
        let Some(purchase) = row
            .state
            .purchases
            .iter()
            .find(|(id, _)| id.as_str() == purchase_id)
            .map(|(_, p)| p)
        else {
            continue;
        };
        p.customer_id.push(customer_id);
        p.purchase_id.push(purchase_id);
        p.order_id.push(purchase.order_id.to_string());
        p.credits.push(purchase.credits);
        p.paid_minor.push(purchase.paid_minor);
        p.currency.push(purchase.currency.code().to_string());
        p.refunded_minor_applied
            .push(purchase.refunded_minor_applied);
        // A clawback of a purchase from an earlier batch updates the stored row, whose purchase
        // time the upsert leaves alone; this value is only written for new rows.
        p.purchased_at.push(bought_at.unwrap_or(row.updated_at));
    }
    p.upsert(conn).await
}

#[derive(Default)]
struct WalletColumns {
    customer_id: Vec<String>,
    balance: Vec<i64>,
    purchased_total: Vec<i64>,
    spent_total: Vec<i64>,
    clawed_back_total: Vec<i64>,
    shortfall_total: Vec<i64>,
    stream_version: Vec<i64>,
    last_position: Vec<i64>,
    updated_at: Vec<DateTime<Utc>>,
    state: Vec<serde_json::Value>,
}

impl WalletColumns {
    async fn upsert(self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        if self.customer_id.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO wallets (customer_id, balance, purchased_total, spent_total, clawed_back_total, \
                shortfall_total, stream_version, last_position, updated_at, state) \
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], \
                $6::bigint[], $7::bigint[], $8::bigint[], $9::timestamptz[], $10::jsonb[]) \
             ON CONFLICT (customer_id) DO UPDATE SET balance = EXCLUDED.balance, \
                purchased_total = EXCLUDED.purchased_total, spent_total = EXCLUDED.spent_total, \
                clawed_back_total = EXCLUDED.clawed_back_total, shortfall_total = EXCLUDED.shortfall_total, \
                stream_version = EXCLUDED.stream_version, last_position = EXCLUDED.last_position, \
                updated_at = EXCLUDED.updated_at, state = EXCLUDED.state",
        )
        .bind(&self.customer_id)
        .bind(&self.balance)
        .bind(&self.purchased_total)
        .bind(&self.spent_total)
        .bind(&self.clawed_back_total)
        .bind(&self.shortfall_total)
        .bind(&self.stream_version)
        .bind(&self.last_position)
        .bind(&self.updated_at)
        .bind(&self.state)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

#[derive(Default)]
struct PurchaseColumns {
    customer_id: Vec<String>,
    purchase_id: Vec<String>,
    order_id: Vec<String>,
    credits: Vec<i64>,
    paid_minor: Vec<i64>,
    currency: Vec<String>,
    refunded_minor_applied: Vec<i64>,
    purchased_at: Vec<DateTime<Utc>>,
}

impl PurchaseColumns {
    async fn upsert(self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        if self.customer_id.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO credit_purchases (customer_id, purchase_id, order_id, credits, paid_minor, \
                currency, refunded_minor_applied, purchased_at) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], \
                $6::text[], $7::bigint[], $8::timestamptz[]) \
             ON CONFLICT (customer_id, purchase_id) DO UPDATE SET \
                refunded_minor_applied = EXCLUDED.refunded_minor_applied",
        )
        .bind(&self.customer_id)
        .bind(&self.purchase_id)
        .bind(&self.order_id)
        .bind(&self.credits)
        .bind(&self.paid_minor)
        .bind(&self.currency)
        .bind(&self.refunded_minor_applied)
        .bind(&self.purchased_at)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Billing keys
// ---------------------------------------------------------------------------------------------

fn key_status_name(status: BillingKeyStatus) -> &'static str {
    match status {
        BillingKeyStatus::Active => "active",
        BillingKeyStatus::Revoked => "revoked",
        BillingKeyStatus::Expired => "expired",
    }
}

async fn project_customers(
    conn: &mut PgConnection,
    events: &[(&str, &RecordedEvent)],
) -> Result<(), ProjectionError> {
    let ids = ids_of(events);
    let rows = sqlx::query(
        "SELECT customer_id, stream_version, last_position FROM billing_customers \
         WHERE customer_id = ANY($1)",
    )
    // Planned per call: docs/architecture.md, "Lookups by many keys".
    .persistent(false)
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut versions: HashMap<String, Folded<()>> = HashMap::with_capacity(ids.len());
    for row in rows {
        versions.insert(
            row.try_get("customer_id")?,
            Folded {
                state: (),
                stream_version: row.try_get("stream_version")?,
                last_position: row.try_get("last_position")?,
                updated_at: DateTime::<Utc>::default(),
            },
        );
    }
    let mut keys = KeyColumns::default();
    // Status changes of keys registered in earlier batches: (key id, status, at), in log order.
    let mut changes: Vec<(String, &'static str, DateTime<Utc>)> = Vec::new();
    for (customer_id, event) in events {
        let decoded: CustomerEvent = codec::decode(&event.event_type, &event.payload)
            .map_err(|e| bad(event, e.to_string()))?;
        versions
            .entry(customer_id.to_string())
            .or_insert_with(|| Folded::new(event.recorded_at))
            .advance(event)?;
        match decoded {
            CustomerEvent::BillingKeyRegistered(registered) => {
                keys.billing_key_id
                    .push(registered.billing_key_id.to_string());
                keys.customer_id.push(customer_id.to_string());
                keys.status.push("active");
                keys.provider.push(registered.provider);
                keys.issuer_code.push(registered.card.issuer_code);
                keys.last4.push(registered.card.last4);
                keys.card_type.push(registered.card.card_type);
                keys.expiry.push(registered.card.expiry);
                keys.registered_at.push(registered.at);
            }
            CustomerEvent::BillingKeyRevoked(revoked) => changes.push((
                revoked.billing_key_id.to_string(),
                key_status_name(BillingKeyStatus::Revoked),
                revoked.at,
            )),
            CustomerEvent::BillingKeyExpired(expired) => changes.push((
                expired.billing_key_id.to_string(),
                key_status_name(BillingKeyStatus::Expired),
                expired.at,
            )),
            CustomerEvent::SubscriptionLinked(_) => {}
        }
    }
    keys.insert(conn).await?;
    for (billing_key_id, status, at) in changes {
        sqlx::query(
            "UPDATE billing_keys SET status = $2, changed_at = $3 WHERE billing_key_id = $1",
        )
        .bind(&billing_key_id)
        .bind(status)
        .bind(at)
        .execute(&mut *conn)
        .await?;
    }
    let mut customer_ids = Vec::with_capacity(versions.len());
    let mut stream_versions = Vec::with_capacity(versions.len());
    let mut positions = Vec::with_capacity(versions.len());
    for (customer_id, folded) in versions {
        customer_ids.push(customer_id);
        stream_versions.push(folded.stream_version);
        positions.push(folded.last_position);
    }
    sqlx::query(
        "INSERT INTO billing_customers (customer_id, stream_version, last_position) \
         SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[]) \
         ON CONFLICT (customer_id) DO UPDATE SET stream_version = EXCLUDED.stream_version, \
            last_position = EXCLUDED.last_position",
    )
    .bind(&customer_ids)
    .bind(&stream_versions)
    .bind(&positions)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[derive(Default)]
struct KeyColumns {
    billing_key_id: Vec<String>,
    customer_id: Vec<String>,
    status: Vec<&'static str>,
    provider: Vec<String>,
    issuer_code: Vec<String>,
    last4: Vec<String>,
    card_type: Vec<String>,
    expiry: Vec<Option<String>>,
    registered_at: Vec<DateTime<Utc>>,
}

impl KeyColumns {
    async fn insert(self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        if self.billing_key_id.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO billing_keys (billing_key_id, customer_id, status, provider, issuer_code, last4, \
                card_type, expiry, registered_at, changed_at) \
             SELECT k, c, s, p, i, l, t, e, r, r FROM unnest($1::text[], $2::text[], $3::text[], \
                $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::timestamptz[]) \
                AS u(k, c, s, p, i, l, t, e, r)",
        )
        .bind(&self.billing_key_id)
        .bind(&self.customer_id)
        .bind(&self.status)
        .bind(&self.provider)
        .bind(&self.issuer_code)
        .bind(&self.last4)
        .bind(&self.card_type)
        .bind(&self.expiry)
        .bind(&self.registered_at)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Queries
// ---------------------------------------------------------------------------------------------

const SUBSCRIPTION_COLUMNS: &str = "s.subscription_id, s.customer_id, s.plan_id, s.status, \
    s.amount_minor, s.currency, s.interval_unit, s.interval_count, s.billing_key_id, s.anchor, \
    s.cycle, s.paid_cycles, s.paid_through, s.next_charge_at, s.retry_count, s.next_retry_at, \
    s.last_failure_code, s.grace_ends_at, s.cancel_effective_at, s.suspended_reason, \
    s.attempt_in_flight, s.next_due_at, s.started_at, s.stream_version, s.last_position, \
    s.updated_at, s.state, COALESCE(w.balance, 0) AS wallet_balance";

fn decode_error(what: &str, error: serde_json::Error) -> sqlx::Error {
    sqlx::Error::Decode(format!("stored {what} state does not decode: {error}").into())
}

fn subscription_from_row(
    row: &sqlx::postgres::PgRow,
    at: DateTime<Utc>,
) -> Result<SubscriptionView, sqlx::Error> {
    let state: Subscription = serde_json::from_value(row.try_get("state")?)
        .map_err(|e| decode_error("subscription", e))?;
    Ok(SubscriptionView {
        subscription_id: row.try_get("subscription_id")?,
        customer_id: row.try_get("customer_id")?,
        plan_id: row.try_get("plan_id")?,
        status: row.try_get("status")?,
        amount_minor: row.try_get("amount_minor")?,
        currency: row.try_get("currency")?,
        interval_unit: row.try_get("interval_unit")?,
        interval_count: row.try_get("interval_count")?,
        billing_key_id: row.try_get("billing_key_id")?,
        anchor: row.try_get("anchor")?,
        cycle: row.try_get("cycle")?,
        paid_cycles: row.try_get("paid_cycles")?,
        paid_through: row.try_get("paid_through")?,
        next_charge_at: row.try_get("next_charge_at")?,
        retry_count: row.try_get("retry_count")?,
        next_retry_at: row.try_get("next_retry_at")?,
        last_failure_code: row.try_get("last_failure_code")?,
        grace_ends_at: row.try_get("grace_ends_at")?,
        cancel_effective_at: row.try_get("cancel_effective_at")?,
        suspended_reason: row.try_get("suspended_reason")?,
        attempt_in_flight: row.try_get("attempt_in_flight")?,
        next_due_at: row.try_get("next_due_at")?,
        membership_level: state.membership_level(at),
        wallet_balance: row.try_get("wallet_balance")?,
        started_at: row.try_get("started_at")?,
        stream_version: row.try_get("stream_version")?,
        last_position: row.try_get("last_position")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// One subscription, with its membership level as of `at`.
pub async fn get_subscription(
    pool: &PgPool,
    subscription_id: &str,
    at: DateTime<Utc>,
) -> Result<Option<SubscriptionView>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {SUBSCRIPTION_COLUMNS} FROM rm.subscriptions s \
         LEFT JOIN rm.wallets w ON w.customer_id = s.customer_id \
         WHERE s.subscription_id = $1"
    ))
    .bind(subscription_id)
    .fetch_optional(pool)
    .await?;
    row.as_ref()
        .map(|row| subscription_from_row(row, at))
        .transpose()
}

/// Subscriptions in id order, filtered by status and/or customer (admins: "all `past_due`").
pub async fn list_subscriptions(
    pool: &PgPool,
    filter: &SubscriptionFilter<'_>,
    limit: i64,
    at: DateTime<Utc>,
) -> Result<Vec<SubscriptionView>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {SUBSCRIPTION_COLUMNS} FROM rm.subscriptions s \
         LEFT JOIN rm.wallets w ON w.customer_id = s.customer_id \
         WHERE ($1::text IS NULL OR s.status = $1) AND ($2::text IS NULL OR s.customer_id = $2) \
           AND ($3::text IS NULL OR s.subscription_id > $3) \
         ORDER BY s.subscription_id LIMIT $4"
    ))
    .bind(filter.status)
    .bind(filter.customer_id)
    .bind(filter.after_subscription_id)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| subscription_from_row(row, at))
        .collect()
}

/// Subscriptions with something due at or before `as_of`, the longest-waiting first.
pub async fn due_subscriptions(
    pool: &PgPool,
    as_of: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT subscription_id FROM rm.subscriptions WHERE next_due_at <= $1 \
         ORDER BY next_due_at, subscription_id LIMIT $2",
    )
    .bind(as_of)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Credit purchases whose paying order has more refunded (in the orders read model) than the
/// wallet has clawed back for: `(customer_id, purchase_id)`.
pub async fn purchases_with_unapplied_refunds(
    pool: &PgPool,
    limit: i64,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT p.customer_id, p.purchase_id FROM rm.credit_purchases p \
         JOIN rm.orders o ON o.order_id = p.order_id \
         WHERE o.refunded_minor > p.refunded_minor_applied \
         ORDER BY p.purchased_at, p.customer_id, p.purchase_id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await
}

pub async fn get_wallet(
    pool: &PgPool,
    customer_id: &str,
) -> Result<Option<WalletView>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT customer_id, balance, purchased_total, spent_total, clawed_back_total, \
            shortfall_total, stream_version, last_position, updated_at \
         FROM rm.wallets WHERE customer_id = $1",
    )
    .bind(customer_id)
    .fetch_optional(pool)
    .await?;
    row.map(|row| {
        Ok(WalletView {
            customer_id: row.try_get("customer_id")?,
            balance: row.try_get("balance")?,
            purchased_total: row.try_get("purchased_total")?,
            spent_total: row.try_get("spent_total")?,
            clawed_back_total: row.try_get("clawed_back_total")?,
            shortfall_total: row.try_get("shortfall_total")?,
            stream_version: row.try_get("stream_version")?,
            last_position: row.try_get("last_position")?,
            updated_at: row.try_get("updated_at")?,
        })
    })
    .transpose()
}

/// The highest membership level the customer's subscriptions give at `at` (0: none).
pub async fn membership_level(
    pool: &PgPool,
    customer_id: &str,
    at: DateTime<Utc>,
) -> Result<u8, sqlx::Error> {
    let states: Vec<serde_json::Value> = sqlx::query_scalar(
        "SELECT state FROM rm.subscriptions WHERE customer_id = $1 ORDER BY subscription_id LIMIT $2",
    )
    .bind(customer_id)
    .bind(MAX_SUBSCRIPTIONS_READ_PER_CUSTOMER)
    .fetch_all(pool)
    .await?;
    let mut level = 0;
    for state in states {
        let state: Subscription =
            serde_json::from_value(state).map_err(|e| decode_error("subscription", e))?;
        level = level.max(state.membership_level(at));
    }
    Ok(level)
}

const BILLING_KEY_COLUMNS: &str = "billing_key_id, customer_id, status, provider, issuer_code, \
    last4, card_type, expiry, registered_at, changed_at";

fn billing_key_from_row(row: &sqlx::postgres::PgRow) -> Result<BillingKeyView, sqlx::Error> {
    Ok(BillingKeyView {
        billing_key_id: row.try_get("billing_key_id")?,
        customer_id: row.try_get("customer_id")?,
        status: row.try_get("status")?,
        provider: row.try_get("provider")?,
        issuer_code: row.try_get("issuer_code")?,
        last4: row.try_get("last4")?,
        card_type: row.try_get("card_type")?,
        expiry: row.try_get("expiry")?,
        registered_at: row.try_get("registered_at")?,
        changed_at: row.try_get("changed_at")?,
    })
}

pub async fn get_billing_key(
    pool: &PgPool,
    billing_key_id: &str,
) -> Result<Option<BillingKeyView>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {BILLING_KEY_COLUMNS} FROM rm.billing_keys WHERE billing_key_id = $1"
    ))
    .bind(billing_key_id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(billing_key_from_row).transpose()
}

pub async fn billing_keys_of(
    pool: &PgPool,
    customer_id: &str,
) -> Result<Vec<BillingKeyView>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {BILLING_KEY_COLUMNS} FROM rm.billing_keys WHERE customer_id = $1 \
         ORDER BY registered_at, billing_key_id LIMIT 100"
    ))
    .bind(customer_id)
    .fetch_all(pool)
    .await?;
    rows.iter().map(billing_key_from_row).collect()
}
