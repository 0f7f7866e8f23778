//! Toss's settlement report (`GET /v1/settlements?startDate&endDate`): what Toss paid the
//! merchant for each transaction, derived from the payments and cancels the sandbox actually
//! made. One line per approval and per cancel (negative), with the fee at the sandbox's
//! [`TossSettlementTerms`] (rate + VAT on it, both rounded down; a cancel gives the fee on its
//! amount back), `payOutAmount = amount − fee`, `soldDate` the transaction's day in Korea and
//! `paidOutDate` `delayDays` later. A line is reported only once its payout date has come.
//!
//! Stripe's side (`GET /stripe/v1/payouts`, `GET /stripe/v1/balance_transactions?payout=`):
//! every captured charge, succeeded refund and dispute is a balance transaction (fee at
//! [`StripeSettlementTerms`], rounded down, plus the fixed part; refunds keep no fee; a dispute
//! costs its dispute fee), available `delayDays` after it was made; each day's available
//! transactions of one currency are paid out as one automatic payout that day (`po_sbx_…`),
//! listed once its arrival date has come.
//!
//! Tests make a line wrong with `POST /sandbox/settlements/{paymentKey}/fault` (or
//! `RunningSandbox::set_settlement_fault`): `shortMinor` pays the approval line out short,
//! `extraFeeMinor` charges more fee on it, `lateDays` pays every line of the payment late,
//! `missing` never reports the payment at all, and (Stripe) `payoutShortMinor` pays the payout
//! holding the charge that much short of the sum of its balance transactions.
//!
//! Paddle's side (`/paddle`, see `paddle::store`) reads the same faults keyed by transaction id
//! (`txn_…`): `shortMinor` lowers the transaction's `payout_totals.earnings`, `extraFeeMinor`
//! raises its `payout_totals.fee` (and lowers its earnings by as much), `lateDays` pays it that
//! many days late, `missing` leaves it out of every payout.

use crate::http::{provider_gate_response, respond_json, Shared};
use crate::store::SoldTransaction;
use crate::stripe::{StripeMovement, StripeMovementKind};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Days, NaiveDate, SecondsFormat};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Mutex;

/// Largest page Toss serves.
pub const MAX_SETTLEMENT_PAGE_SIZE: usize = 5_000;
/// Faults one sandbox remembers.
const MAX_FAULTS: usize = 10_000;
/// Longest late payout a fault may ask for.
pub const MAX_LATE_DAYS: u32 = 60;

/// The fee and delay the sandbox settles Toss payments with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TossSettlementTerms {
    pub fee_rate_bps: u32,
    /// VAT on the fee.
    pub vat_bps: u32,
    /// Days from sale to payout.
    pub delay_days: u32,
}

impl Default for TossSettlementTerms {
    /// 3.2 % + 10 % VAT, paid two days after the sale.
    fn default() -> Self {
        TossSettlementTerms {
            fee_rate_bps: 320,
            vat_bps: 1_000,
            delay_days: 2,
        }
    }
}

/// The fee and delay the sandbox settles Stripe charges with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StripeSettlementTerms {
    pub fee_rate_bps: u32,
    /// Added to each charge's fee, in the charge's minor unit.
    pub fixed_fee_minor: i64,
    /// Days from a charge to its payout.
    pub delay_days: u32,
}

impl Default for StripeSettlementTerms {
    /// 2.9 % + 30, paid out two days later.
    fn default() -> Self {
        StripeSettlementTerms {
            fee_rate_bps: 290,
            fixed_fee_minor: 30,
            delay_days: 2,
        }
    }
}

/// What is wrong with one payment's settlement (all off by default). Keyed by the payment's
/// id at its provider: Toss's `paymentKey`, Stripe's PaymentIntent id.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct SettlementFault {
    pub short_minor: i64,
    pub extra_fee_minor: i64,
    pub late_days: u32,
    pub missing: bool,
    /// Stripe only: the payout that pays the charge arrives this much short while its balance
    /// transactions still add up to more (a short payout seen only at the payout level).
    pub payout_short_minor: i64,
}

pub(crate) struct SettlementDesk {
    pub terms: TossSettlementTerms,
    pub stripe_terms: StripeSettlementTerms,
    faults: SharedFaults,
}

/// The settlement faults, shared with the Paddle store (whose payouts and `payout_totals` they
/// change, keyed by transaction id `txn_…`).
pub(crate) type SharedFaults = std::sync::Arc<Mutex<HashMap<String, SettlementFault>>>;

/// `key`'s fault (none by default).
pub(crate) fn fault_in(faults: &SharedFaults, key: &str) -> SettlementFault {
    faults
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .get(key)
        .copied()
        .unwrap_or_default()
}

impl SettlementDesk {
    pub(crate) fn new(
        terms: TossSettlementTerms,
        stripe_terms: StripeSettlementTerms,
        faults: SharedFaults,
    ) -> SettlementDesk {
        SettlementDesk {
            terms,
            stripe_terms,
            faults,
        }
    }

    fn faults(&self) -> std::sync::MutexGuard<'_, HashMap<String, SettlementFault>> {
        self.faults
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sets (or with the default, clears) a payment's fault. False when the table is full.
    pub(crate) fn set_fault(&self, payment_key: &str, fault: SettlementFault) -> bool {
        let mut faults = self.faults();
        if fault == SettlementFault::default() {
            faults.remove(payment_key);
            return true;
        }
        if faults.len() >= MAX_FAULTS && !faults.contains_key(payment_key) {
            return false;
        }
        faults.insert(payment_key.to_owned(), fault);
        true
    }

    pub(crate) fn reset(&self) {
        self.faults().clear();
    }

    /// The report's lines for `query`, given the store's transactions and today.
    fn lines(&self, sold: &[SoldTransaction], today: NaiveDate, query: &Query) -> Vec<Value> {
        let faults = self.faults();
        let terms = self.terms;
        let mut lines = Vec::new();
        for tx in sold {
            let fault = faults.get(&tx.payment_key).copied().unwrap_or_default();
            if fault.missing {
                continue;
            }
            let sold_date = tx.at.date_naive();
            let delay = u64::from(terms.delay_days) + u64::from(fault.late_days.min(MAX_LATE_DAYS));
            let Some(paid_out_date) = sold_date.checked_add_days(Days::new(delay)) else {
                continue;
            };
            if paid_out_date > today {
                continue;
            }
            let date = match query.date_type {
                DateType::SoldDate => sold_date,
                DateType::PaidOutDate => paid_out_date,
            };
            if date < query.start || date > query.end {
                continue;
            }
            let gross = i128::from(tx.amount.abs());
            let base = (gross * i128::from(terms.fee_rate_bps) / 10_000) as i64;
            let vat = (i128::from(base) * i128::from(terms.vat_bps) / 10_000) as i64;
            let sign = tx.amount.signum();
            let is_approval = tx.amount > 0;
            let mut fee = sign * (base + vat);
            let mut payout = tx.amount - fee;
            if is_approval {
                fee += fault.extra_fee_minor;
                payout -= fault.extra_fee_minor + fault.short_minor;
            }
            lines.push(json!({
                "mId": "sandbox",
                "paymentKey": tx.payment_key,
                "transactionKey": tx.transaction_key,
                "orderId": tx.order_id,
                "currency": "KRW",
                "method": "카드",
                "amount": tx.amount,
                "interestFee": 0,
                "fees": [{"type": "BASE", "fee": sign * base}],
                "vat": sign * vat,
                "fee": fee,
                "payOutAmount": payout,
                "approvedAt": tx.at.to_rfc3339_opts(SecondsFormat::Secs, false),
                "soldDate": sold_date.to_string(),
                "paidOutDate": paid_out_date.to_string(),
                "cancel": if is_approval { Value::Null } else { json!({"cancelAmount": -tx.amount}) },
            }));
        }
        lines
    }
}

#[derive(Clone, Copy)]
enum DateType {
    SoldDate,
    PaidOutDate,
}

struct Query {
    start: NaiveDate,
    end: NaiveDate,
    date_type: DateType,
    page: usize,
    size: usize,
}

fn invalid(message: &str) -> HttpResponse {
    respond_json(400, json!({"code": "INVALID_REQUEST", "message": message}))
}

/// The query, or the message of the 400 refusing it.
fn parse_query(raw: &HashMap<String, String>) -> Result<Query, String> {
    let date = |name: &str| {
        raw.get(name)
            .and_then(|v| NaiveDate::parse_from_str(v, "%Y-%m-%d").ok())
            .ok_or_else(|| format!("{name}는 yyyy-MM-dd 형식이어야 합니다."))
    };
    let start = date("startDate")?;
    let end = date("endDate")?;
    if start > end || (end - start).num_days() > 366 {
        return Err("조회 기간이 올바르지 않습니다.".to_string());
    }
    let date_type = match raw.get("dateType").map(String::as_str) {
        None | Some("soldDate") => DateType::SoldDate,
        Some("paidOutDate") => DateType::PaidOutDate,
        Some(_) => return Err("dateType은 soldDate 또는 paidOutDate입니다.".to_string()),
    };
    let number = |name: &str, default: usize| match raw.get(name) {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| "page, size는 숫자입니다.".to_string()),
    };
    let page = number("page", 1)?;
    let size = number("size", 100)?;
    if page == 0 || size == 0 || size > MAX_SETTLEMENT_PAGE_SIZE {
        return Err("page는 1 이상, size는 1 이상 5000 이하입니다.".to_string());
    }
    Ok(Query {
        start,
        end,
        date_type,
        page,
        size,
    })
}

/// `GET /v1/settlements`.
pub(crate) async fn settlements(
    shared: web::Data<Shared>,
    desk: web::Data<SettlementDesk>,
    req: HttpRequest,
    query: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    if let Some(refused) = provider_gate_response(&shared, &req) {
        return refused;
    }
    let query = match parse_query(&query) {
        Ok(query) => query,
        Err(message) => return invalid(&message),
    };
    let (sold, today) = {
        let store = shared.store();
        (store.transactions(), store.today_kst())
    };
    let lines = desk.lines(&sold, today, &query);
    let page: Vec<Value> = lines
        .into_iter()
        .skip((query.page - 1).saturating_mul(query.size))
        .take(query.size)
        .collect();
    respond_json(200, Value::Array(page))
}

/// `POST /sandbox/settlements/{paymentKey}/fault`.
pub(crate) async fn set_fault(
    shared: web::Data<Shared>,
    desk: web::Data<SettlementDesk>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Json<SettlementFault>,
) -> HttpResponse {
    if let Some(refused) = crate::http::authenticate_request(&shared, &req) {
        return refused;
    }
    let fault = body.into_inner();
    if fault.short_minor < 0
        || fault.extra_fee_minor < 0
        || fault.payout_short_minor < 0
        || fault.late_days > MAX_LATE_DAYS
    {
        return invalid(
            "shortMinor, extraFeeMinor and payoutShortMinor must not be negative, lateDays at most 60",
        );
    }
    if !desk.set_fault(&path.into_inner(), fault) {
        return respond_json(
            503,
            json!({"code": "SANDBOX_CAPACITY_EXCEEDED", "message": "too many settlement faults"}),
        );
    }
    respond_json(200, json!({"fault": fault}))
}

/// One Stripe balance transaction, with the payout it is paid in.
struct StripeTxn {
    json: Value,
    net: i64,
    /// What the payout paying it leaves out (a planted payout-level shortfall).
    payout_short: i64,
    currency: String,
    /// Midnight UTC of the day it becomes available (and is paid out).
    available_on: i64,
}

const DAY_S: i64 = 86_400;

impl SettlementDesk {
    fn stripe_txns(&self, movements: &[StripeMovement], expand_source: bool) -> Vec<StripeTxn> {
        let faults = self.faults();
        let terms = self.stripe_terms;
        let mut txns = Vec::new();
        for m in movements {
            let fault = faults.get(&m.intent_id).copied().unwrap_or_default();
            if fault.missing {
                continue;
            }
            let delay = i64::from(terms.delay_days) + i64::from(fault.late_days.min(MAX_LATE_DAYS));
            let available_on = m.created.div_euclid(DAY_S) * DAY_S + delay * DAY_S;
            let (fee, kind, category, object) = match m.kind {
                StripeMovementKind::Charge => (
                    (i128::from(m.amount) * i128::from(terms.fee_rate_bps) / 10_000) as i64
                        + terms.fixed_fee_minor
                        + fault.extra_fee_minor,
                    "charge",
                    "charge",
                    "charge",
                ),
                StripeMovementKind::Refund => (0, "refund", "refund", "refund"),
                StripeMovementKind::Dispute => (m.dispute_fee, "adjustment", "dispute", "dispute"),
            };
            let short = if m.kind == StripeMovementKind::Charge {
                fault.short_minor
            } else {
                0
            };
            let net = m.amount - fee - short;
            let source = if expand_source {
                json!({
                    "id": m.source_id,
                    "object": object,
                    "payment_intent": m.intent_id,
                    "metadata": m.order_id.as_ref().map_or_else(|| json!({}), |o| json!({"order_id": o})),
                })
            } else {
                Value::String(m.source_id.clone())
            };
            txns.push(StripeTxn {
                json: json!({
                    "id": m.txn_id,
                    "object": "balance_transaction",
                    "amount": m.amount,
                    "available_on": available_on,
                    "created": m.created,
                    "currency": m.currency,
                    "fee": fee,
                    "fee_details": if fee == 0 { json!([]) } else {
                        json!([{"amount": fee, "currency": m.currency, "type": "stripe_fee"}])
                    },
                    "net": net,
                    "reporting_category": category,
                    "source": source,
                    "status": "available",
                    "type": kind,
                }),
                net,
                payout_short: if m.kind == StripeMovementKind::Charge {
                    fault.payout_short_minor
                } else {
                    0
                },
                currency: m.currency.clone(),
                available_on,
            });
        }
        txns
    }

    /// Each day's available transactions per currency, paid out that day, up to `now`:
    /// `(payout, its transactions)`, newest first.
    fn stripe_payouts(
        &self,
        movements: &[StripeMovement],
        now_unix: i64,
        expand_source: bool,
    ) -> Vec<(Value, Vec<Value>)> {
        let mut days: std::collections::BTreeMap<(i64, String), Vec<StripeTxn>> =
            std::collections::BTreeMap::new();
        for txn in self.stripe_txns(movements, expand_source) {
            if txn.available_on <= now_unix {
                days.entry((txn.available_on, txn.currency.clone()))
                    .or_default()
                    .push(txn);
            }
        }
        let mut payouts: Vec<(Value, Vec<Value>)> = days
            .into_iter()
            .map(|((arrival, currency), txns)| {
                let day = DateTime::from_timestamp(arrival, 0)
                    .map(|d| d.format("%Y%m%d").to_string())
                    .unwrap_or_default();
                let id = format!("po_sbx_{day}_{currency}");
                let amount: i64 = txns.iter().map(|t| t.net - t.payout_short).sum();
                let payout_txn = format!("txn_{id}");
                let mut lines: Vec<Value> = txns.into_iter().map(|t| t.json).collect();
                lines.push(json!({
                    "id": payout_txn,
                    "object": "balance_transaction",
                    "amount": -amount,
                    "available_on": arrival,
                    "created": arrival,
                    "currency": currency,
                    "fee": 0,
                    "fee_details": [],
                    "net": -amount,
                    "reporting_category": "payout",
                    "source": id,
                    "status": "available",
                    "type": "payout",
                }));
                let payout = json!({
                    "id": id,
                    "object": "payout",
                    "amount": amount,
                    "arrival_date": arrival,
                    "automatic": true,
                    "balance_transaction": payout_txn,
                    "created": arrival,
                    "currency": currency,
                    "method": "standard",
                    "status": "paid",
                    "type": "bank_account",
                });
                (payout, lines)
            })
            .collect();
        payouts.reverse();
        payouts
    }
}

fn stripe_invalid(message: &str, param: &str) -> HttpResponse {
    respond_json(
        400,
        json!({"error": {"type": "invalid_request_error", "message": message, "param": param}}),
    )
}

/// Stripe's list page: `limit` (1–100, default 10) items after `starting_after`.
fn stripe_page(items: Vec<Value>, raw: &HashMap<String, String>, url: &str) -> HttpResponse {
    let limit = match raw.get("limit").map(|l| l.parse::<usize>()) {
        None => 10,
        Some(Ok(l)) if (1..=100).contains(&l) => l,
        Some(_) => return stripe_invalid("limit must be between 1 and 100", "limit"),
    };
    let start = match raw.get("starting_after") {
        None => 0,
        Some(after) => match items.iter().position(|i| i["id"] == after.as_str()) {
            Some(index) => index + 1,
            None => return stripe_invalid("No such object for starting_after", "starting_after"),
        },
    };
    let page: Vec<Value> = items.iter().skip(start).take(limit).cloned().collect();
    let has_more = start + page.len() < items.len();
    respond_json(
        200,
        json!({"object": "list", "data": page, "has_more": has_more, "url": url}),
    )
}

fn stripe_gate(
    stripe: &crate::stripe::http::StripeShared,
    req: &HttpRequest,
) -> Option<HttpResponse> {
    crate::stripe::http::authenticate(stripe, req)
        .err()
        .map(|reply| respond_json(reply.status, reply.body))
}

/// `GET /stripe/v1/payouts?arrival_date[gte]&arrival_date[lte]&limit&starting_after`.
pub(crate) async fn stripe_payouts(
    shared: web::Data<Shared>,
    stripe: web::Data<crate::stripe::http::StripeShared>,
    desk: web::Data<SettlementDesk>,
    req: HttpRequest,
    query: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    if let Some(refused) = stripe_gate(&stripe, &req) {
        return refused;
    }
    // Each bound, or the name of the parameter that is not an integer.
    let bound = |name: &'static str| match query.get(name) {
        None => Ok(None),
        Some(v) => v.parse::<i64>().map(Some).map_err(|_| name),
    };
    let (gte, lte) = match (bound("arrival_date[gte]"), bound("arrival_date[lte]")) {
        (Ok(gte), Ok(lte)) => (gte, lte),
        (Err(name), _) | (_, Err(name)) => return stripe_invalid("Invalid integer", name),
    };
    let now = shared.store().now_utc().timestamp();
    let movements = stripe.store().balance_movements();
    let payouts: Vec<Value> = desk
        .stripe_payouts(&movements, now, false)
        .into_iter()
        .map(|(payout, _)| payout)
        .filter(|p| {
            let arrival = p["arrival_date"].as_i64().unwrap_or_default();
            gte.is_none_or(|g| arrival >= g) && lte.is_none_or(|l| arrival <= l)
        })
        .collect();
    stripe_page(payouts, &query, "/v1/payouts")
}

/// `GET /stripe/v1/balance_transactions?payout=po_…&expand[]=data.source&limit&starting_after`.
pub(crate) async fn stripe_balance_transactions(
    shared: web::Data<Shared>,
    stripe: web::Data<crate::stripe::http::StripeShared>,
    desk: web::Data<SettlementDesk>,
    req: HttpRequest,
    query: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    if let Some(refused) = stripe_gate(&stripe, &req) {
        return refused;
    }
    let expand = match query.get("expand[]").map(String::as_str) {
        None => false,
        Some("data.source") => true,
        Some(_) => return stripe_invalid("This property cannot be expanded", "expand"),
    };
    let now = shared.store().now_utc().timestamp();
    let movements = stripe.store().balance_movements();
    let payouts = desk.stripe_payouts(&movements, now, expand);
    let txns: Vec<Value> = match query.get("payout") {
        Some(id) => match payouts.into_iter().find(|(p, _)| p["id"] == id.as_str()) {
            Some((_, txns)) => txns,
            None => {
                return respond_json(
                    404,
                    json!({"error": {"type": "invalid_request_error", "code": "resource_missing", "message": format!("No such payout: '{id}'"), "param": "payout"}}),
                )
            }
        },
        None => payouts.into_iter().flat_map(|(_, txns)| txns).collect(),
    };
    stripe_page(txns, &query, "/v1/balance_transactions")
}
