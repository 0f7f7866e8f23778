//! Read model "journal": every money event's balanced double-entry lines (the posting rules are
//! [`payledger_domain::journal`]), the trial balance at any global position, and the auditor's
//! check that every entry and the whole book balance — recomputed from the event log too, so a
//! journal table edited behind the ledger's back does not verify.

use crate::fold::{bad, distinct_ids};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use payledger_domain::claim::ClaimEvent;
use payledger_domain::codec;
use payledger_domain::ids::PayeeId;
use payledger_domain::journal::{
    post_claim_event, post_order_event, post_reconciliation_event, post_statement_event,
    post_subscription_event, Account, JournalEntry, OrderFacts, Posting, Side, TrialBalance,
};
use payledger_domain::money::Currency;
use payledger_domain::order::OrderEvent;
use payledger_domain::reconciliation::ReconciliationEvent;
use payledger_domain::settlement::StatementEvent;
use payledger_domain::streams::StreamKind;
use payledger_domain::subscription::SubscriptionEvent;
use payledger_projector::copy::CopyRows;
use payledger_projector::{BulkBuild, Projection, ProjectionError};
use payledger_store::{read_all, RecordedEvent, MAX_READ_LIMIT};
use sqlx::{PgConnection, PgPool, Row};
use std::collections::{BTreeMap, HashMap, HashSet};

pub struct JournalProjection;

/// Event types that post (or that the posting rules need facts from). Others are not decoded.
const POSTING_EVENT_TYPES: &[&str] = &[
    "OrderPlaced",
    "PaymentCaptured",
    "RefundRequested",
    "RefundCompleted",
    "RefundFailed",
    "ClaimResolved",
    "StatementConfirmed",
    "StatementPaidOut",
    "ChargeSucceeded",
    "ProviderRefundRecorded",
    "DisputeWon",
    "DisputeLost",
    "SettlementLineMatched",
    "ReconciliationResolved",
    "ProviderChargeReversed",
    "SubscriptionChargeSettled",
];

fn decode<E: serde::de::DeserializeOwned>(event: &RecordedEvent) -> Result<E, ProjectionError> {
    codec::decode(&event.event_type, &event.payload).map_err(|e| bad(event, e.to_string()))
}

/// What posting needs to remember between events: each order's payee and currency.
#[derive(Default)]
struct Facts {
    orders: HashMap<String, OrderFacts>,
}

/// The entries one event posts. `facts` must hold the event's order when it is an order event.
fn entries_of(
    event: &RecordedEvent,
    facts: &mut Facts,
) -> Result<Vec<JournalEntry>, ProjectionError> {
    if !POSTING_EVENT_TYPES.contains(&event.event_type.as_str()) {
        return Ok(vec![]);
    }
    let stream = event.stream_id.as_str();
    if let Some(order_id) = StreamKind::Order.id_of(stream) {
        let decoded: OrderEvent = decode(event)?;
        if let OrderEvent::OrderPlaced(placed) = &decoded {
            facts.orders.insert(
                order_id.to_string(),
                OrderFacts {
                    payee_id: placed.payee_id.clone(),
                    currency: placed.amount.currency(),
                },
            );
        }
        return Ok(post_order_event(&decoded, facts.orders.get(order_id)));
    }
    if StreamKind::Claim.holds(stream) {
        return Ok(post_claim_event(&decode::<ClaimEvent>(event)?));
    }
    if StreamKind::Settlement.holds(stream) {
        return Ok(post_statement_event(&decode::<StatementEvent>(event)?));
    }
    if StreamKind::Subscription.holds(stream) {
        return Ok(post_subscription_event(&decode::<SubscriptionEvent>(
            event,
        )?));
    }
    if StreamKind::Reconciliation.holds(stream) {
        return Ok(post_reconciliation_event(&decode::<ReconciliationEvent>(
            event,
        )?));
    }
    Ok(vec![])
}

#[async_trait]
impl Projection for JournalProjection {
    fn name(&self) -> &'static str {
        "journal"
    }

    fn schema_sql(&self) -> &'static str {
        include_str!("../../../projections/journal.sql")
    }

    fn tables(&self) -> &'static [&'static str] {
        &["journal_lines", "journal_entries", "journal_order_facts"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let relevant = posting_events(events);
        if relevant.is_empty() {
            return Ok(());
        }
        let mut facts = load_facts(conn, &ids_needing_facts(&relevant, |_| true)).await?;
        let known: Vec<String> = facts.orders.keys().cloned().collect();
        let mut e = EntryColumns::default();
        let mut l = LineColumns::default();
        for event in relevant {
            for (entry_no, entry) in balanced_entries(event, &mut facts)?.iter().enumerate() {
                let entry_no = entry_no as i32 + 1;
                let entry_id = entry_id(event, entry_no);
                e.entry_id.push(entry_id.clone());
                e.global_position.push(event.global_position);
                e.entry_no.push(entry_no);
                e.stream_id.push(event.stream_id.clone());
                e.event_type.push(event.event_type.clone());
                e.recorded_at.push(event.recorded_at);
                e.currency.push(entry.currency.code().to_string());
                e.memo.push(entry.memo.clone());
                for (line_no, posting) in entry.postings().iter().enumerate() {
                    let (debit, credit) = debit_and_credit(posting);
                    l.entry_id.push(entry_id.clone());
                    l.line_no.push(line_no as i32 + 1);
                    l.global_position.push(event.global_position);
                    l.account.push(posting.account.name().to_string());
                    l.currency.push(entry.currency.code().to_string());
                    l.debit.push(debit);
                    l.credit.push(credit);
                    l.payee_id
                        .push(posting.payee_id.as_ref().map(|p| p.to_string()));
                }
            }
        }
        l.assert_balanced();
        save_facts(conn, &facts, &known).await?;
        e.insert(conn).await?;
        l.insert(conn).await?;
        Ok(())
    }

    fn bulk_builder(&self) -> Option<Box<dyn BulkBuild>> {
        Some(Box::new(JournalBulk {
            facts: Facts::default(),
            stored: HashSet::new(),
            rows: JournalCopy::new(),
        }))
    }
}

/// The entries one event posts, each checked to balance.
fn balanced_entries(
    event: &RecordedEvent,
    facts: &mut Facts,
) -> Result<Vec<JournalEntry>, ProjectionError> {
    let entries = entries_of(event, facts)?;
    // Pair assertion: the rules build balanced entries; the table must only ever receive
    // balanced ones.
    if let Some(entry) = entries.iter().find(|entry| !entry.is_balanced()) {
        return Err(bad(
            event,
            format!("entry '{}' does not balance", entry.memo),
        ));
    }
    Ok(entries)
}

fn entry_id(event: &RecordedEvent, entry_no: i32) -> String {
    format!("{}-{}", event.global_position, entry_no)
}

fn debit_and_credit(posting: &Posting) -> (i64, i64) {
    match posting.side {
        Side::Debit => (posting.amount_minor, 0),
        Side::Credit => (0, posting.amount_minor),
    }
}

/// Orders whose facts posting `events` needs from an earlier batch (every order event but
/// OrderPlaced, which brings its own), distinct, and for which `missing` holds.
fn ids_needing_facts(events: &[&RecordedEvent], missing: impl Fn(&str) -> bool) -> Vec<String> {
    distinct_ids(
        events
            .iter()
            .filter(|e| e.event_type != "OrderPlaced")
            .filter_map(|e| StreamKind::Order.id_of(&e.stream_id))
            .filter(|id| missing(id)),
    )
}

/// The events of a batch that post to the journal.
fn posting_events(events: &[RecordedEvent]) -> Vec<&RecordedEvent> {
    events
        .iter()
        .filter(|e| POSTING_EVENT_TYPES.contains(&e.event_type.as_str()))
        .collect()
}

/// The rebuild's bulk path: posts many batches in memory and writes the three tables with
/// `COPY`. Order facts an earlier flush wrote are read back when a later event needs them.
struct JournalBulk {
    facts: Facts,
    /// Orders in `facts` that were read back from the build table (not to be written again).
    stored: HashSet<String>,
    /// Entry and line rows since the last flush.
    rows: JournalCopy,
}

/// The rows of `journal_entries` and `journal_lines` being collected for `COPY`.
struct JournalCopy {
    entries: CopyRows,
    lines: CopyRows,
}

const ENTRY_COLUMNS: &str =
    "entry_id, global_position, entry_no, stream_id, event_type, recorded_at, currency, memo";
const LINE_COLUMNS: &str =
    "entry_id, line_no, global_position, account, currency, debit_minor, credit_minor, payee_id";
const JOURNAL_COLUMN_COUNT: i16 = 8;

impl JournalCopy {
    fn new() -> JournalCopy {
        JournalCopy {
            entries: CopyRows::new(JOURNAL_COLUMN_COUNT),
            lines: CopyRows::new(JOURNAL_COLUMN_COUNT),
        }
    }

    /// The rows `apply` writes for `entry`, in [`ENTRY_COLUMNS`] and [`LINE_COLUMNS`] order.
    fn push(
        &mut self,
        event: &RecordedEvent,
        entry_no: i32,
        entry: &JournalEntry,
    ) -> Result<(), ProjectionError> {
        let entry_id = entry_id(event, entry_no);
        let currency = entry.currency.code();
        let e = &mut self.entries;
        e.row();
        e.text(&entry_id)?;
        e.field(&event.global_position)?;
        e.field(&entry_no)?;
        e.text(&event.stream_id)?;
        e.text(&event.event_type)?;
        e.field(&event.recorded_at)?;
        e.text(currency)?;
        e.text(&entry.memo)?;
        for (line_no, posting) in entry.postings().iter().enumerate() {
            let (debit, credit) = debit_and_credit(posting);
            let l = &mut self.lines;
            l.row();
            l.text(&entry_id)?;
            l.field(&(line_no as i32 + 1))?;
            l.field(&event.global_position)?;
            l.text(posting.account.name())?;
            l.text(currency)?;
            l.field(&debit)?;
            l.field(&credit)?;
            l.field(&posting.payee_id.as_ref().map(|p| p.to_string()))?;
        }
        Ok(())
    }
}

#[async_trait]
impl BulkBuild for JournalBulk {
    async fn fold(
        &mut self,
        conn: &mut PgConnection,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let relevant = posting_events(events);
        // Orders placed in this batch bring their facts along; the others' are in memory or
        // were flushed.
        let placed_here: HashSet<&str> = relevant
            .iter()
            .filter(|e| e.event_type == "OrderPlaced")
            .filter_map(|e| StreamKind::Order.id_of(&e.stream_id))
            .collect();
        let flushed = ids_needing_facts(&relevant, |id| {
            !self.facts.orders.contains_key(id) && !placed_here.contains(id)
        });
        if !flushed.is_empty() {
            let loaded = load_facts(conn, &flushed).await?;
            self.stored.extend(loaded.orders.keys().cloned());
            self.facts.orders.extend(loaded.orders);
        }
        for event in relevant {
            for (entry_no, entry) in balanced_entries(event, &mut self.facts)?.iter().enumerate() {
                self.rows.push(event, entry_no as i32 + 1, entry)?;
            }
        }
        Ok(())
    }

    fn keyed_tables(&self) -> &'static [&'static str] {
        &["journal_order_facts"]
    }

    async fn flush(&mut self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        let facts = std::mem::take(&mut self.facts);
        let stored = std::mem::take(&mut self.stored);
        let mut new_facts = CopyRows::new(3);
        for (order_id, f) in facts.orders.iter().filter(|(id, _)| !stored.contains(*id)) {
            new_facts.row();
            new_facts.text(order_id)?;
            new_facts.text(f.payee_id.as_str())?;
            new_facts.text(f.currency.code())?;
        }
        new_facts
            .copy_into(conn, "journal_order_facts (order_id, payee_id, currency)")
            .await?;
        let rows = std::mem::replace(&mut self.rows, JournalCopy::new());
        rows.entries
            .copy_into(conn, &format!("journal_entries ({ENTRY_COLUMNS})"))
            .await?;
        rows.lines
            .copy_into(conn, &format!("journal_lines ({LINE_COLUMNS})"))
            .await?;
        Ok(())
    }
}

/// Facts of the orders `ids` (distinct) stored by earlier batches.
async fn load_facts(conn: &mut PgConnection, ids: &[String]) -> Result<Facts, ProjectionError> {
    let mut facts = Facts::default();
    if ids.is_empty() {
        return Ok(facts);
    }
    let rows = sqlx::query(
        "SELECT order_id, payee_id, currency FROM journal_order_facts WHERE order_id = ANY($1)",
    )
    // Planned per call: docs/architecture.md, "Lookups by many keys".
    .persistent(false)
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    for row in rows {
        let payee: String = row.try_get("payee_id")?;
        let currency: String = row.try_get("currency")?;
        let (Ok(payee_id), Ok(currency)) = (PayeeId::parse(payee), Currency::parse(&currency))
        else {
            continue;
        };
        facts
            .orders
            .insert(row.try_get("order_id")?, OrderFacts { payee_id, currency });
    }
    Ok(facts)
}

async fn save_facts(
    conn: &mut PgConnection,
    facts: &Facts,
    known: &[String],
) -> Result<(), ProjectionError> {
    let mut order_ids = Vec::new();
    let mut payees = Vec::new();
    let mut currencies = Vec::new();
    for (order_id, f) in &facts.orders {
        if known.contains(order_id) {
            continue;
        }
        order_ids.push(order_id.clone());
        payees.push(f.payee_id.to_string());
        currencies.push(f.currency.code().to_string());
    }
    if order_ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO journal_order_facts (order_id, payee_id, currency) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(&order_ids)
    .bind(&payees)
    .bind(&currencies)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[derive(Default)]
struct EntryColumns {
    entry_id: Vec<String>,
    global_position: Vec<i64>,
    entry_no: Vec<i32>,
    stream_id: Vec<String>,
    event_type: Vec<String>,
    recorded_at: Vec<DateTime<Utc>>,
    currency: Vec<String>,
    memo: Vec<String>,
}

impl EntryColumns {
    async fn insert(self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        if self.entry_id.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO journal_entries (entry_id, global_position, entry_no, stream_id, event_type, \
                recorded_at, currency, memo) \
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::int[], $4::text[], $5::text[], \
                $6::timestamptz[], $7::text[], $8::text[])",
        )
        .bind(&self.entry_id)
        .bind(&self.global_position)
        .bind(&self.entry_no)
        .bind(&self.stream_id)
        .bind(&self.event_type)
        .bind(&self.recorded_at)
        .bind(&self.currency)
        .bind(&self.memo)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

#[derive(Default)]
struct LineColumns {
    entry_id: Vec<String>,
    line_no: Vec<i32>,
    global_position: Vec<i64>,
    account: Vec<String>,
    currency: Vec<String>,
    debit: Vec<i64>,
    credit: Vec<i64>,
    payee_id: Vec<Option<String>>,
}

impl LineColumns {
    /// The other half of the pair the posting rules start (`JournalEntry` refuses an unbalanced
    /// entry): what this batch writes balances per currency, so the book does after it.
    fn assert_balanced(&self) {
        let mut per_currency: HashMap<&str, i64> = HashMap::new();
        for ((currency, debit), credit) in self.currency.iter().zip(&self.debit).zip(&self.credit) {
            *per_currency.entry(currency.as_str()).or_default() += debit - credit;
        }
        for (currency, difference) in per_currency {
            assert_eq!(difference, 0, "a journal batch is unbalanced in {currency}");
        }
    }

    async fn insert(self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        if self.entry_id.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO journal_lines (entry_id, line_no, global_position, account, currency, \
                debit_minor, credit_minor, payee_id) \
             SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::text[], $5::text[], \
                $6::bigint[], $7::bigint[], $8::text[])",
        )
        .bind(&self.entry_id)
        .bind(&self.line_no)
        .bind(&self.global_position)
        .bind(&self.account)
        .bind(&self.currency)
        .bind(&self.debit)
        .bind(&self.credit)
        .bind(&self.payee_id)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Queries
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrialBalanceRow {
    pub account: String,
    pub currency: String,
    pub debit_minor: i64,
    pub credit_minor: i64,
    /// Debits less credits: positive for a debit balance.
    pub balance_minor: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrencyTotals {
    pub currency: String,
    pub debit_minor: i64,
    pub credit_minor: i64,
}

impl CurrencyTotals {
    pub fn balanced(&self) -> bool {
        self.debit_minor == self.credit_minor
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrialBalanceView {
    /// The global position the balances are at.
    pub position: i64,
    pub rows: Vec<TrialBalanceRow>,
    pub by_currency: Vec<CurrencyTotals>,
}

impl TrialBalanceView {
    pub fn balanced(&self) -> bool {
        self.by_currency.iter().all(CurrencyTotals::balanced)
    }
}

/// Where the journal read model stands (its checkpoint).
pub async fn journal_position(pool: &PgPool) -> Result<i64, sqlx::Error> {
    let position: Option<i64> =
        sqlx::query_scalar("SELECT position FROM projection_checkpoints WHERE name = 'journal'")
            .fetch_optional(pool)
            .await?;
    Ok(position.unwrap_or(0))
}

/// Balances per account and currency of every line at or before `at` (the journal's position
/// when `None`; never past it — callers wait for the projection first).
pub async fn trial_balance(
    pool: &PgPool,
    at: Option<i64>,
) -> Result<TrialBalanceView, sqlx::Error> {
    let projected = journal_position(pool).await?;
    let position = at.map_or(projected, |a| a.min(projected));
    let rows = sqlx::query(
        "SELECT account, currency, sum(debit_minor)::bigint AS debit, sum(credit_minor)::bigint AS credit \
         FROM rm.journal_lines WHERE global_position <= $1 \
         GROUP BY account, currency ORDER BY currency, account",
    )
    .bind(position)
    .fetch_all(pool)
    .await?;
    let mut view = TrialBalanceView {
        position,
        rows: Vec::with_capacity(rows.len()),
        by_currency: Vec::new(),
    };
    let mut sums: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for row in rows {
        let debit: i64 = row.try_get("debit")?;
        let credit: i64 = row.try_get("credit")?;
        let currency: String = row.try_get("currency")?;
        let sum = sums.entry(currency.clone()).or_default();
        sum.0 += debit;
        sum.1 += credit;
        view.rows.push(TrialBalanceRow {
            account: row.try_get("account")?,
            currency,
            debit_minor: debit,
            credit_minor: credit,
            balance_minor: debit - credit,
        });
    }
    view.by_currency = sums
        .into_iter()
        .map(|(currency, (debit_minor, credit_minor))| CurrencyTotals {
            currency,
            debit_minor,
            credit_minor,
        })
        .collect();
    Ok(view)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntryView {
    pub entry_id: String,
    pub global_position: i64,
    pub stream_id: String,
    pub event_type: String,
    pub recorded_at: DateTime<Utc>,
    pub currency: String,
    pub memo: String,
}

/// Entries after `after_position`, oldest first.
pub async fn entries(
    pool: &PgPool,
    after_position: i64,
    limit: i64,
) -> Result<Vec<JournalEntryView>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT entry_id, global_position, stream_id, event_type, recorded_at, currency, memo \
         FROM rm.journal_entries WHERE global_position > $1 ORDER BY global_position, entry_no LIMIT $2",
    )
    .bind(after_position)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(JournalEntryView {
                entry_id: row.try_get("entry_id")?,
                global_position: row.try_get("global_position")?,
                stream_id: row.try_get("stream_id")?,
                event_type: row.try_get("event_type")?,
                recorded_at: row.try_get("recorded_at")?,
                currency: row.try_get("currency")?,
                memo: row.try_get("memo")?,
            })
        })
        .collect()
}

/// What `audit verify` found in the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalReport {
    /// The journal's position: everything up to it was checked.
    pub position: i64,
    pub entries_checked: i64,
    /// Entries whose debits and credits differ, or that mix currencies (first few).
    pub unbalanced_entries: Vec<String>,
    pub book: Vec<CurrencyTotals>,
    /// Account balances that differ from the ones recomputed from the event log with the
    /// posting rules: `(account, currency, stored, recomputed)`.
    pub mismatches: Vec<(String, String, i64, i64)>,
}

impl JournalReport {
    pub fn ok(&self) -> bool {
        self.unbalanced_entries.is_empty()
            && self.book.iter().all(CurrencyTotals::balanced)
            && self.mismatches.is_empty()
    }
}

/// How many offending entries a report names.
const MAX_REPORTED_ENTRIES: i64 = 20;

/// Checks every journal entry and the whole book, and recomputes the balances from the log.
pub async fn verify(pool: &PgPool) -> Result<JournalReport, payledger_store::ReadError> {
    let position = journal_position(pool).await?;
    let (report, _) = verify_to_head(pool, position, |_, _| {}).await?;
    Ok(report)
}

/// [`verify`], and the trial balance recomputed from the log up to `head` (at least the
/// journal's position), in one pass over the log. `progress(position, head)` is called after
/// every page of the log.
pub async fn verify_to_head(
    pool: &PgPool,
    head: i64,
    progress: impl FnMut(i64, i64),
) -> Result<(JournalReport, TrialBalance), payledger_store::ReadError> {
    let position = journal_position(pool).await?;
    let entries_checked: i64 =
        sqlx::query_scalar("SELECT count(*) FROM rm.journal_entries WHERE global_position <= $1")
            .bind(position)
            .fetch_one(pool)
            .await?;
    let unbalanced_entries: Vec<String> = sqlx::query_scalar(
        "SELECT entry_id FROM rm.journal_lines WHERE global_position <= $1 GROUP BY entry_id \
         HAVING sum(debit_minor) <> sum(credit_minor) OR count(DISTINCT currency) <> 1 \
         ORDER BY min(global_position) LIMIT $2",
    )
    .bind(position)
    .bind(MAX_REPORTED_ENTRIES)
    .fetch_all(pool)
    .await?;
    let stored = trial_balance(pool, Some(position)).await?;
    let (recomputed, at_head) = recompute_to(pool, position, head.max(position), progress).await?;
    let mut mismatches = Vec::new();
    let mut stored_rows: BTreeMap<(String, String), i64> = stored
        .rows
        .iter()
        .map(|r| ((r.account.clone(), r.currency.clone()), r.balance_minor))
        .collect();
    for ((account, currency), (debit, credit)) in &recomputed.rows {
        let key = (account.name().to_string(), currency.code().to_string());
        let stored_balance = stored_rows.remove(&key).unwrap_or(0);
        if stored_balance != debit - credit {
            mismatches.push((key.0, key.1, stored_balance, debit - credit));
        }
    }
    for ((account, currency), balance) in stored_rows {
        if balance != 0 {
            mismatches.push((account, currency, balance, 0));
        }
    }
    let report = JournalReport {
        position,
        entries_checked,
        unbalanced_entries,
        book: stored.by_currency,
        mismatches,
    };
    Ok((report, at_head))
}

/// The trial balance recomputed from the event log up to `position` with the posting rules.
pub async fn recompute(
    pool: &PgPool,
    position: i64,
) -> Result<TrialBalance, payledger_store::ReadError> {
    let (book, _) = recompute_to(pool, position, position, |_, _| {}).await?;
    Ok(book)
}

/// How many orders' facts a recomputation keeps in memory at most. Past it the cache is emptied
/// and facts are read back from the log (each order's `OrderPlaced`) as later events need them,
/// so memory stays bounded however many orders the log holds.
const MAX_CACHED_ORDER_FACTS: usize = 100_000;

/// One pass over the log up to `head`: the trial balances recomputed at `checkpoint`
/// (≤ `head`) and at `head`. Reads the log, never the journal's own tables, so a journal edited
/// behind the ledger's back does not verify.
pub async fn recompute_to(
    pool: &PgPool,
    checkpoint: i64,
    head: i64,
    progress: impl FnMut(i64, i64),
) -> Result<(TrialBalance, TrialBalance), payledger_store::ReadError> {
    recompute_paged(
        pool,
        checkpoint,
        head,
        MAX_READ_LIMIT,
        MAX_CACHED_ORDER_FACTS,
        progress,
    )
    .await
}

/// [`recompute_to`] with the page size and the order-facts cap given (tests make both tiny to
/// prove that facts read back from the log give the same balances).
#[doc(hidden)]
pub async fn recompute_paged(
    pool: &PgPool,
    checkpoint: i64,
    head: i64,
    page_events: i64,
    max_cached_orders: usize,
    mut progress: impl FnMut(i64, i64),
) -> Result<(TrialBalance, TrialBalance), payledger_store::ReadError> {
    let corrupt = |event: &RecordedEvent, reason: String| payledger_store::ReadError::Corrupt {
        position: event.global_position,
        reason,
    };
    let mut facts = Facts::default();
    let mut book = TrialBalance::default();
    let mut at_checkpoint = (checkpoint <= 0).then(|| book.clone());
    let mut after = 0;
    while after < head {
        let page = read_all(pool, after, page_events.min(head - after)).await?;
        let Some(last) = page.last() else { break };
        let last_position = last.global_position;
        if facts.orders.len() > max_cached_orders {
            facts.orders.clear();
        }
        load_placed_orders(pool, &page, &mut facts).await?;
        for event in &page {
            if at_checkpoint.is_none() && event.global_position > checkpoint {
                at_checkpoint = Some(book.clone());
            }
            let entries =
                entries_of(event, &mut facts).map_err(|e| corrupt(event, e.to_string()))?;
            for entry in &entries {
                book.post(entry);
            }
        }
        after = last_position;
        progress(after, head);
    }
    let at_checkpoint = at_checkpoint.unwrap_or_else(|| book.clone());
    Ok((at_checkpoint, book))
}

/// Puts into `facts` the orders that `page`'s events need and that were placed before the page
/// (read from the log: each order's `OrderPlaced`, its stream's first event). Orders placed in
/// the page bring their facts along as the page is walked, as in a walk that kept them all.
async fn load_placed_orders(
    pool: &PgPool,
    page: &[RecordedEvent],
    facts: &mut Facts,
) -> Result<(), payledger_store::ReadError> {
    let Some(first_position) = page.first().map(|e| e.global_position) else {
        return Ok(());
    };
    let relevant = posting_events(page);
    let placed_here: HashSet<&str> = relevant
        .iter()
        .filter(|e| e.event_type == "OrderPlaced")
        .filter_map(|e| StreamKind::Order.id_of(&e.stream_id))
        .collect();
    let missing = ids_needing_facts(&relevant, |id| {
        !facts.orders.contains_key(id) && !placed_here.contains(id)
    });
    let streams: Vec<String> = missing
        .iter()
        .map(|id| StreamKind::Order.name(id))
        .collect();
    for placed in payledger_store::read_first_events(pool, &streams).await? {
        // Only what a walk from the start would have seen before this page.
        if placed.event_type != "OrderPlaced" || placed.global_position >= first_position {
            continue;
        }
        let Some(order_id) = StreamKind::Order.id_of(&placed.stream_id) else {
            continue;
        };
        let decoded: OrderEvent =
            decode(&placed).map_err(|e| payledger_store::ReadError::Corrupt {
                position: placed.global_position,
                reason: e.to_string(),
            })?;
        if let OrderEvent::OrderPlaced(p) = decoded {
            facts.orders.insert(
                order_id.to_string(),
                OrderFacts {
                    payee_id: p.payee_id.clone(),
                    currency: p.amount.currency(),
                },
            );
        }
    }
    Ok(())
}

/// The account names the journal uses, for documentation and CLI output.
pub fn account_names() -> Vec<&'static str> {
    Account::ALL.iter().map(|a| a.name()).collect()
}
