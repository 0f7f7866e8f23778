//! Paddle's payouts, on the sandbox's clock, as Paddle Billing exposes them: no list endpoint,
//! only the `payout.created` (status `unpaid`) and `payout.paid` (status `paid`) notifications
//! — entity `id`, `status`, `amount`, `currency_code`, `remittance_reference` — which are also
//! in Paddle's event log (`GET /events?event_type=payout.created,payout.paid`).
//!
//! Paddle creates a payout on the 1st for the balance of the month before and pays it by the
//! 15th. The sandbox's cadence is daily so that a week of scenario time settles: the payout of
//! a day's completed transactions (per currency) is **created at 00:00 the next day** (that
//! moment closes the day's balance) and **paid at 00:00 the day after** (so money billed on day
//! D is paid out on D + [`super::PAYOUT_DELAY_DAYS`]). Its amount is the sum of the
//! transactions' `payout_totals.earnings` (as planted faults make them: short, extra fee).
//! A transaction planted `missing` is in no payout; one planted `late` by N days is paid in the
//! payout of day D + N instead of D's (a payout holding only it is created when that day has
//! none) — Paddle states neither per transaction, so payledger sees both as payouts whose
//! amount is not the earnings of the transactions billed in their balance period.
//!
//! An approved refund or chargeback takes its `payout_totals.earnings` (the refunded amount, or
//! the charged-back amount plus the chargeback fee) from the balance of the day Paddle approved
//! it (`updated_at`); a balance taken to zero or below is not paid but carried into the next
//! day's of the same currency.
//!
//! Payouts are settled whenever the renewal sweep runs and before the event log is read, so an
//! import right after a move of the clock sees every payout due by then.

use super::{new_id, PaddleReply, PaddleStore, PAYOUT_DELAY_DAYS};
use chrono::{DateTime, Days, NaiveDate, NaiveTime, Utc};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The most events one `GET /events` page holds (Paddle's `per_page` maximum).
pub const MAX_PER_PAGE: usize = 200;
/// Paddle's default page size.
pub const DEFAULT_PER_PAGE: usize = 50;

/// One payout of the sandbox's Paddle.
#[derive(Debug, Clone)]
pub(crate) struct SandboxPayout {
    pub id: String,
    pub amount_minor: i64,
    pub currency_code: String,
    pub remittance_reference: String,
    pub paid_at: DateTime<Utc>,
    pub paid: bool,
}

impl SandboxPayout {
    fn entity(&self) -> Value {
        json!({
            "id": self.id,
            "status": if self.paid { "paid" } else { "unpaid" },
            "amount": self.amount_minor.to_string(),
            "currency_code": self.currency_code,
            "remittance_reference": self.remittance_reference,
        })
    }
}

fn midnight(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(NaiveTime::MIN).and_utc()
}

/// `per_page` of a list request: Paddle's default 50, at most 200.
pub(crate) fn per_page(query: &BTreeMap<String, String>) -> Result<usize, PaddleReply> {
    match query.get("per_page") {
        None => Ok(DEFAULT_PER_PAGE),
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PER_PAGE).contains(n))
            .ok_or_else(|| {
                PaddleReply::error(400, "bad_request", "per_page must be between 1 and 200")
            }),
    }
}

/// One page of `items` (already in the list's order, each with its `id` at `id_of`) after the
/// cursor `after`, with Paddle's `meta.pagination`: `next` is the query to ask for the next
/// page (the HTTP layer makes it a URL), `has_more`, `estimated_total`.
pub(crate) fn page(
    items: Vec<Value>,
    id_of: &str,
    query: &BTreeMap<String, String>,
) -> PaddleReply {
    let per_page = match per_page(query) {
        Ok(n) => n,
        Err(reply) => return reply,
    };
    let total = items.len();
    let start = match query.get("after") {
        None => 0,
        Some(after) => items
            .iter()
            .position(|item| item[id_of].as_str() == Some(after.as_str()))
            .map_or(total, |at| at + 1),
    };
    let data: Vec<Value> = items.into_iter().skip(start).take(per_page).collect();
    let has_more = start + data.len() < total;
    let mut next_query: Vec<(String, String)> = query
        .iter()
        .filter(|(k, _)| k.as_str() != "after")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(last) = data.last().and_then(|item| item[id_of].as_str()) {
        next_query.push(("after".to_owned(), last.to_owned()));
    }
    let next = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(next_query)
        .finish();
    PaddleReply {
        status: 200,
        body: json!({
            "data": data,
            "meta": {"pagination": {
                "per_page": per_page,
                "next": format!("?{next}"),
                "has_more": has_more,
                "estimated_total": total,
            }},
        }),
    }
}

impl PaddleStore {
    /// Creates and pays the payouts due by the clock, notifying `payout.created` and
    /// `payout.paid` (each at the moment it happened on the scenario clock).
    pub(crate) fn settle_payouts(&mut self) {
        let now = self.now();
        // Each balance day's earnings per currency, as Paddle pays them.
        let mut due: BTreeMap<(NaiveDate, String), i64> = BTreeMap::new();
        for txn in self
            .transactions
            .values()
            .filter(|t| t.status == "completed")
        {
            let Some(billed) = txn
                .billed_at
                .as_deref()
                .and_then(|b| DateTime::parse_from_rfc3339(b).ok())
            else {
                continue;
            };
            let fault = crate::settlements::fault_in(&self.settlement_faults, &txn.id);
            if fault.missing {
                continue;
            }
            let late = u64::from(fault.late_days.min(crate::settlements::MAX_LATE_DAYS));
            let Some(day) = billed
                .with_timezone(&Utc)
                .date_naive()
                .checked_add_days(Days::new(late))
            else {
                continue;
            };
            let earnings = self.answer(txn)["details"]["payout_totals"]["earnings"]
                .as_str()
                .and_then(|e| e.parse::<i64>().ok())
                .unwrap_or(0);
            *due.entry((day, txn.currency_code.clone())).or_default() += earnings;
        }
        // Paddle deducts an approved refund or chargeback (and its chargeback fee) from the
        // balance of the day it was approved: its `payout_totals.earnings`.
        for adjustment in self.adjustments.values() {
            let Some(totals) = adjustment.payout_totals.as_ref() else {
                continue;
            };
            let Some(approved) = DateTime::parse_from_rfc3339(&adjustment.updated_at).ok() else {
                continue;
            };
            let earnings = totals["earnings"]
                .as_str()
                .and_then(|e| e.parse::<i64>().ok())
                .unwrap_or(0);
            let day = approved.with_timezone(&Utc).date_naive();
            *due.entry((day, adjustment.currency_code.clone()))
                .or_default() -= earnings;
        }
        // A balance its refunds and chargebacks took to zero or below is not paid: Paddle
        // carries it into the next day's balance of the same currency.
        let mut carried: BTreeMap<String, i64> = BTreeMap::new();
        for ((day, currency), amount_minor) in due {
            let carry = carried.entry(currency.clone()).or_default();
            let amount_minor = amount_minor + std::mem::take(carry);
            if amount_minor <= 0 {
                *carry = amount_minor;
                continue;
            }
            let Some(created_at) = day.checked_add_days(Days::new(1)).map(midnight) else {
                continue;
            };
            let key = (day, currency.clone());
            if created_at > now || self.payouts.contains_key(&key) || self.full().is_some() {
                continue;
            }
            let paid_at = day
                .checked_add_days(Days::new(PAYOUT_DELAY_DAYS))
                .map_or(created_at, midnight);
            let payout = SandboxPayout {
                id: new_id("po"),
                amount_minor,
                currency_code: currency.clone(),
                remittance_reference: format!("PDL-{}-{currency}", day.format("%Y%m%d")),
                paid_at,
                paid: false,
            };
            self.notify_at("payout.created", payout.entity(), created_at);
            self.payouts.insert(key, payout);
        }
        let mut paid_now = Vec::new();
        for payout in self.payouts.values_mut() {
            if !payout.paid && payout.paid_at <= now {
                payout.paid = true;
                paid_now.push((payout.entity(), payout.paid_at));
            }
        }
        for (entity, at) in paid_now {
            self.notify_at("payout.paid", entity, at);
        }
    }

    /// `GET /events?event_type=…&after=…&per_page=…`: Paddle's event log, oldest first.
    pub(crate) fn list_events(&mut self, query: &BTreeMap<String, String>) -> PaddleReply {
        self.settle_payouts();
        let wanted = |event_type: &str| {
            query
                .get("event_type")
                .is_none_or(|list| list.split(',').any(|w| w == event_type))
        };
        let events: Vec<Value> = self
            .event_log
            .iter()
            .filter(|event| wanted(event["event_type"].as_str().unwrap_or_default()))
            .cloned()
            .collect();
        page(events, "event_id", query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn pages_follow_the_cursor_and_say_when_there_is_more() {
        let items: Vec<Value> = (0..5).map(|i| json!({"id": format!("x{i}")})).collect();
        let first = page(items.clone(), "id", &query(&[("per_page", "2")]));
        assert_eq!(first.body["data"].as_array().unwrap().len(), 2);
        assert_eq!(first.body["meta"]["pagination"]["has_more"], true);
        assert_eq!(
            first.body["meta"]["pagination"]["next"],
            "?per_page=2&after=x1"
        );
        let last = page(items, "id", &query(&[("per_page", "2"), ("after", "x3")]));
        assert_eq!(last.body["data"][0]["id"], "x4");
        assert_eq!(last.body["meta"]["pagination"]["has_more"], false);
        let refused = per_page(&query(&[("per_page", "201")])).unwrap_err();
        assert_eq!(refused.status, 400);
    }
}
