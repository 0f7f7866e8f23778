//! Toss's settlement report (`GET /v1/settlements?startDate&endDate`): what Toss paid the
//! merchant for each transaction, derived from the payments and cancels the sandbox actually
//! made. One line per approval and per cancel (negative), with the fee at the sandbox's
//! [`TossSettlementTerms`] (rate + VAT on it, both rounded down; a cancel gives the fee on its
//! amount back), `payOutAmount = amount − fee`, `soldDate` the transaction's day in Korea and
//! `paidOutDate` `delayDays` later. A line is reported only once its payout date has come.
//!
//! Tests make a line wrong with `POST /sandbox/settlements/{paymentKey}/fault` (or
//! `RunningSandbox::set_settlement_fault`): `shortMinor` pays the approval line out short,
//! `extraFeeMinor` charges more fee on it, `lateDays` pays every line of the payment late, and
//! `missing` never reports the payment at all.

use crate::http::{provider_gate_response, respond_json, Shared};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Days, FixedOffset, NaiveDate, SecondsFormat};
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

/// What is wrong with one payment's settlement (all off by default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct SettlementFault {
    pub short_minor: i64,
    pub extra_fee_minor: i64,
    pub late_days: u32,
    pub missing: bool,
}

/// One approval or cancel, as the store made it.
pub(crate) struct SoldTransaction {
    pub payment_key: String,
    pub order_id: String,
    pub transaction_key: String,
    /// Negative for a cancel.
    pub amount: i64,
    pub at: DateTime<FixedOffset>,
}

pub(crate) struct SettlementDesk {
    pub terms: TossSettlementTerms,
    faults: Mutex<HashMap<String, SettlementFault>>,
}

impl SettlementDesk {
    pub(crate) fn new(terms: TossSettlementTerms) -> SettlementDesk {
        SettlementDesk {
            terms,
            faults: Mutex::new(HashMap::new()),
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

fn parse_query(raw: &HashMap<String, String>) -> Result<Query, HttpResponse> {
    let date = |name: &str| {
        raw.get(name)
            .and_then(|v| NaiveDate::parse_from_str(v, "%Y-%m-%d").ok())
            .ok_or_else(|| invalid(&format!("{name}는 yyyy-MM-dd 형식이어야 합니다.")))
    };
    let start = date("startDate")?;
    let end = date("endDate")?;
    if start > end || (end - start).num_days() > 366 {
        return Err(invalid("조회 기간이 올바르지 않습니다."));
    }
    let date_type = match raw.get("dateType").map(String::as_str) {
        None | Some("soldDate") => DateType::SoldDate,
        Some("paidOutDate") => DateType::PaidOutDate,
        Some(_) => return Err(invalid("dateType은 soldDate 또는 paidOutDate입니다.")),
    };
    let number = |name: &str, default: usize| match raw.get(name) {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| invalid("page, size는 숫자입니다.")),
    };
    let page = number("page", 1)?;
    let size = number("size", 100)?;
    if page == 0 || size == 0 || size > MAX_SETTLEMENT_PAGE_SIZE {
        return Err(invalid("page는 1 이상, size는 1 이상 5000 이하입니다."));
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
        Err(refused) => return refused,
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
    if fault.short_minor < 0 || fault.extra_fee_minor < 0 || fault.late_days > MAX_LATE_DAYS {
        return invalid("shortMinor and extraFeeMinor must not be negative, lateDays at most 60");
    }
    if !desk.set_fault(&path.into_inner(), fault) {
        return respond_json(
            503,
            json!({"code": "SANDBOX_CAPACITY_EXCEEDED", "message": "too many settlement faults"}),
        );
    }
    respond_json(200, json!({"fault": fault}))
}
