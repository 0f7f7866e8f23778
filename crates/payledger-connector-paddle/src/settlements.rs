//! What Paddle paid the platform, as a [`SettlementSource`]. Paddle is the merchant of record:
//! it collects the customer's total, remits the tax and keeps its fee, and pays the merchant
//! the rest (`details.payout_totals.earnings` of each transaction) in payouts.
//!
//! Paddle Billing has no payouts endpoint. What its API states, and what is read:
//! - **Payouts**: the `payout.created` (status `unpaid`) and `payout.paid` (status `paid`)
//!   events — `id`, `status`, `amount`, `currency_code`, `remittance_reference` — read from
//!   Paddle's event log (`GET /events?event_type=payout.created,payout.paid`, cursor pages via
//!   `meta.pagination.next`), the same facts Paddle notifies, signed, to the destination. A
//!   payout's `payout.created` moment closes the balance it pays.
//! - **Per-transaction money**: the completed transactions billed in that balance period —
//!   from the previous `payout.created` of the same currency to this one's —
//!   (`GET /transactions?status=completed&billed_at[GTE]=…&billed_at[LT]=…&per_page=200`,
//!   cursor pages), each with `details.payout_totals` (`subtotal`, `tax`, `total`, `fee`,
//!   `earnings`, `currency_code`, strings of minor units).
//! - **Refunds and chargebacks**: the approved adjustments (`GET /adjustments?status=approved&
//!   action=refund,chargeback`, cursor pages; the list has no date filter), each taken from the
//!   payout whose balance period holds the moment Paddle approved it (`updated_at`), with its
//!   `payout_totals` (`total`, `tax`, `fee`, `earnings`, and a chargeback's `chargeback_fee`).
//!
//! One [`SettlementLine`] per transaction of a payout paid within the period: its id and
//! payment are the transaction id (`txn_…`, what a Paddle order is confirmed with), its order
//! `custom_data.orderId`, its amount `payout_totals.total − tax` (the price the ledger captured;
//! the tax is never the platform's), its fee `payout_totals.fee`, its payout `earnings`, sold on
//! `billed_at`'s day, paid out on the day of the payout's `payout.paid`, and its
//! `subscription_id` when the transaction billed a subscription. One line per adjustment too
//! (`adjustment_line`: a refund, or a chargeback as a dispute line), negative. Each payout's
//! stated `amount` is a [`PayoutTotal`]: when it is not the sum of its lines' payouts
//! (transactions' `earnings` less adjustments') the ledger flags `payout_mismatch` (a short
//! payout at the payout's level).
//!
//! What this does not read: which payout paid which transaction. Paddle states that only in its
//! payout reconciliation report (`POST /reports` `type: payout_reconciliation`, CSV), whose
//! columns payledger could not confirm from a published source (docs/operations.md, "Provider
//! settlements"). So a transaction Paddle leaves out of its payout, or pays in a later one, is
//! seen as the payout's difference, not on the order.

use crate::wire::{fee_given_back_minor, parse_amount};
use crate::PaddleApiKey;
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use payledger_domain::money::Currency;
use payledger_gateway::settlements::{
    PayoutTotal, SettlementError, SettlementLine, SettlementLineKind, SettlementPeriod,
    SettlementReport, SettlementSource, MAX_IMPORT_DAYS, MAX_LINES_PER_IMPORT,
};
use serde::Deserialize;
use std::time::Duration;

const TIMEOUT_MS: u64 = 30_000;
/// Paddle's largest page.
pub const PER_PAGE: usize = 200;
/// Most pages one listing reads (of events or of one payout's transactions).
const MAX_PAGES: usize = 250;
/// Most payouts one import reads.
const MAX_PAYOUTS: usize = 1_000;
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
const MAX_REASON_CHARS: usize = 300;
/// The payout events, as Paddle names them.
const PAYOUT_EVENTS: &str = "payout.created,payout.paid";

/// Paddle payouts and transactions over HTTP.
pub struct PaddleSettlements {
    base_url: String,
    authorization: String,
    provider_name: String,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct Page<T> {
    data: Vec<T>,
    #[serde(default)]
    meta: Option<PageMeta>,
}

#[derive(Deserialize)]
struct PageMeta {
    pagination: Option<Pagination>,
}

#[derive(Deserialize)]
struct Pagination {
    next: Option<String>,
    #[serde(default)]
    has_more: bool,
}

#[derive(Deserialize)]
struct WireEvent {
    event_type: String,
    occurred_at: String,
    data: WirePayout,
}

#[derive(Deserialize)]
struct WirePayout {
    id: String,
    status: String,
    amount: String,
    currency_code: String,
}

/// One payout as its events state it.
struct Payout {
    id: String,
    currency: Currency,
    amount_minor: i64,
    created_at: Option<DateTime<Utc>>,
    paid_at: Option<DateTime<Utc>>,
}
#[derive(Deserialize)]
struct WireTransaction {
    id: String,
    status: String,
    billed_at: Option<String>,
    #[serde(default)]
    subscription_id: Option<String>,
    custom_data: Option<serde_json::Value>,
    details: WireDetails,
}

#[derive(Deserialize)]
struct WireDetails {
    payout_totals: Option<WirePayoutTotals>,
}

#[derive(Deserialize)]
struct WirePayoutTotals {
    total: String,
    tax: String,
    fee: String,
    earnings: String,
    currency_code: String,
}

/// An approved refund or chargeback, as `GET /adjustments` answers it.
#[derive(Deserialize)]
struct WireAdjustment {
    id: String,
    action: String,
    status: String,
    transaction_id: String,
    #[serde(default)]
    subscription_id: Option<String>,
    updated_at: String,
    payout_totals: Option<WireAdjustmentTotals>,
}

#[derive(Deserialize)]
struct WireAdjustmentTotals {
    total: String,
    tax: String,
    fee: String,
    earnings: String,
    currency_code: String,
    /// The part of `fee` Paddle keeps; the rest it gives back (read as the webhook relay reads
    /// it, `crate::wire::fee_given_back_minor`). Absent: nothing retained.
    #[serde(default)]
    retained_fee: Option<String>,
    #[serde(default)]
    chargeback_fee: Option<WireChargebackFee>,
}

#[derive(Deserialize)]
struct WireChargebackFee {
    amount: String,
}

/// What a transaction's listing says about the order an adjustment takes money back from.
#[derive(Deserialize)]
struct WireTransactionRef {
    id: String,
    custom_data: Option<serde_json::Value>,
    #[serde(default)]
    subscription_id: Option<String>,
}

/// The adjustments whose money moves a payout (Paddle's `action` names).
const PAYOUT_ADJUSTMENTS: &str = "refund,chargeback";
/// Paddle's largest page of adjustments.
const ADJUSTMENTS_PER_PAGE: usize = 50;
/// Most transaction ids asked for in one `GET /transactions?id=…`.
const IDS_PER_REQUEST: usize = 50;

fn clip(text: &str) -> String {
    text.chars().take(MAX_REASON_CHARS).collect()
}

fn time_of(text: &str, what: &str) -> Result<DateTime<Utc>, SettlementError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| SettlementError::Malformed(format!("{what} {}", clip(text))))
}

fn day_of(text: &str, what: &str) -> Result<NaiveDate, SettlementError> {
    time_of(text, what).map(|t| t.date_naive())
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Reads the payouts from Paddle's payout events, in the order Paddle logged them: the latest
/// event of a payout states its amount; `payout.created` gives the moment its balance closed,
/// `payout.paid` the moment it was paid.
fn payouts_of(events: Vec<WireEvent>) -> Result<Vec<Payout>, SettlementError> {
    let mut payouts: Vec<Payout> = Vec::new();
    for event in events {
        let at = time_of(&event.occurred_at, "occurred_at")?;
        let payout = event.data;
        let amount_minor = parse_amount(&payout.amount, "payout amount")
            .map_err(|e| SettlementError::Malformed(clip(&e.0)))?;
        let currency =
            Currency::parse(&payout.currency_code.to_ascii_uppercase()).map_err(|_| {
                SettlementError::Malformed(format!("currency {}", clip(&payout.currency_code)))
            })?;
        let expected_status = match event.event_type.as_str() {
            "payout.created" => "unpaid",
            "payout.paid" => "paid",
            _ => continue,
        };
        if payout.status != expected_status {
            return Err(SettlementError::Malformed(format!(
                "{} of payout {} says status {}",
                clip(&event.event_type),
                clip(&payout.id),
                clip(&payout.status)
            )));
        }
        let index = match payouts.iter().position(|p| p.id == payout.id) {
            Some(index) => index,
            None => {
                if payouts.len() >= MAX_PAYOUTS {
                    return Err(SettlementError::TooManyLines);
                }
                payouts.push(Payout {
                    id: payout.id.clone(),
                    currency,
                    amount_minor,
                    created_at: None,
                    paid_at: None,
                });
                payouts.len() - 1
            }
        };
        let known = &mut payouts[index];
        if known.currency != currency {
            return Err(SettlementError::Malformed(format!(
                "payout {} changed its currency",
                clip(&payout.id)
            )));
        }
        known.amount_minor = amount_minor;
        if expected_status == "unpaid" {
            known.created_at = Some(at);
        } else {
            known.paid_at = Some(at);
        }
    }
    Ok(payouts)
}

impl PaddleSettlements {
    pub fn new(
        base_url: &str,
        api_key: &PaddleApiKey,
        provider_name: &str,
    ) -> Result<PaddleSettlements, SettlementError> {
        let http = payledger_gateway::transport::provider_client_builder()
            .timeout(Duration::from_millis(TIMEOUT_MS))
            .build()
            .map_err(|e| SettlementError::Unavailable(e.without_url().to_string()))?;
        Ok(PaddleSettlements {
            base_url: base_url.trim_end_matches('/').to_owned(),
            authorization: format!("Bearer {}", api_key.expose()),
            provider_name: provider_name.to_owned(),
            http,
        })
    }

    /// Every item of a Paddle list, following `meta.pagination.next` (which must stay on the
    /// configured base URL: the API key is sent only there).
    async fn list_all<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        most_items: usize,
    ) -> Result<Vec<T>, SettlementError> {
        let mut url = reqwest::Url::parse(&format!("{}{path}", self.base_url))
            .map_err(|e| SettlementError::Unavailable(clip(&e.to_string())))?;
        url.query_pairs_mut()
            .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        let mut items = Vec::new();
        for _ in 0..MAX_PAGES {
            let page: Page<T> = self.get(url.as_str()).await?;
            let fetched = page.data.len();
            items.extend(page.data);
            if items.len() > most_items {
                return Err(SettlementError::TooManyLines);
            }
            let pagination = page.meta.and_then(|m| m.pagination);
            let Some(next) = pagination
                .filter(|p| p.has_more && fetched > 0)
                .and_then(|p| p.next)
            else {
                return Ok(items);
            };
            if !next.starts_with(&format!("{}/", self.base_url))
                && !next.starts_with(&format!("{}?", self.base_url))
            {
                return Err(SettlementError::Malformed(format!(
                    "Paddle's next page is elsewhere: {}",
                    clip(&next)
                )));
            }
            url = reqwest::Url::parse(&next)
                .map_err(|_| SettlementError::Malformed(format!("next page {}", clip(&next))))?;
        }
        Err(SettlementError::TooManyLines)
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, SettlementError> {
        let unavailable =
            |e: reqwest::Error| SettlementError::Unavailable(clip(&e.without_url().to_string()));
        let response = self
            .http
            .get(url)
            .header(reqwest::header::AUTHORIZATION, &self.authorization)
            .send()
            .await
            .map_err(unavailable)?;
        let status = response.status();
        let body = response.bytes().await.map_err(unavailable)?;
        if body.len() > MAX_BODY_BYTES {
            return Err(SettlementError::Malformed("the answer is too large".into()));
        }
        if !status.is_success() {
            let answer: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            return Err(SettlementError::Unavailable(clip(&format!(
                "{status}: {}",
                answer["error"]["code"].as_str().unwrap_or_default()
            ))));
        }
        serde_json::from_slice(&body).map_err(|e| SettlementError::Malformed(clip(&e.to_string())))
    }

    fn line(
        &self,
        txn: WireTransaction,
        payout: &Payout,
        paid_out_on: NaiveDate,
    ) -> Result<SettlementLine, SettlementError> {
        let malformed = |e: crate::wire::UnreadableAnswer| SettlementError::Malformed(clip(&e.0));
        if txn.status != "completed" {
            return Err(SettlementError::Malformed(format!(
                "payout {} pays transaction {} that is {}",
                clip(&payout.id),
                clip(&txn.id),
                clip(&txn.status)
            )));
        }
        let totals = txn.details.payout_totals.ok_or_else(|| {
            SettlementError::Malformed(format!(
                "transaction {} has no payout_totals",
                clip(&txn.id)
            ))
        })?;
        let total = parse_amount(&totals.total, "payout_totals.total").map_err(malformed)?;
        let tax = parse_amount(&totals.tax, "payout_totals.tax").map_err(malformed)?;
        let fee = parse_amount(&totals.fee, "payout_totals.fee").map_err(malformed)?;
        let earnings =
            parse_amount(&totals.earnings, "payout_totals.earnings").map_err(malformed)?;
        let currency =
            Currency::parse(&totals.currency_code.to_ascii_uppercase()).map_err(|_| {
                SettlementError::Malformed(format!("currency {}", clip(&totals.currency_code)))
            })?;
        let billed_at = txn.billed_at.as_deref().ok_or_else(|| {
            SettlementError::Malformed(format!("transaction {} was never billed", clip(&txn.id)))
        })?;
        let line = SettlementLine {
            provider: self.provider_name.clone(),
            line_id: txn.id.clone(),
            kind: SettlementLineKind::Payment,
            payment_key: txn.id,
            order_id: txn
                .custom_data
                .as_ref()
                .and_then(|c| c[crate::CUSTOM_DATA_ORDER_ID].as_str())
                .map(str::to_owned),
            amount_minor: total - tax,
            fee_minor: fee,
            vat_minor: 0,
            payout_minor: earnings,
            currency,
            sold_on: day_of(billed_at, "billed_at")?,
            paid_out_on,
            payout_id: Some(payout.id.clone()),
            method: None,
            // A subscription's payment (its first period or a renewal Paddle billed) is matched
            // to the subscription's charge, not to an order.
            subscription_id: txn.subscription_id.filter(|id| !id.is_empty()),
        };
        line.validate()
            .map_err(|e| SettlementError::Malformed(e.to_string()))?;
        Ok(line)
    }
}

/// A refund (or chargeback) Paddle took from `payout` as a settlement line: its id the
/// adjustment's, its payment the transaction's, its amount `−(total − tax)`, its fee what Paddle
/// gave back of its fee (`−(fee − retained_fee)`) plus, on a chargeback, the `chargeback_fee` it passed on, its
/// payout `−earnings`, on the day Paddle approved it (`updated_at`).
fn adjustment_line(
    provider: &str,
    adjustment: WireAdjustment,
    order_id: Option<String>,
    payout: &Payout,
    paid_out_on: NaiveDate,
) -> Result<SettlementLine, SettlementError> {
    let malformed = |e: crate::wire::UnreadableAnswer| SettlementError::Malformed(clip(&e.0));
    let totals = adjustment.payout_totals.ok_or_else(|| {
        SettlementError::Malformed(format!(
            "approved adjustment {} has no payout_totals",
            clip(&adjustment.id)
        ))
    })?;
    let total = parse_amount(&totals.total, "payout_totals.total").map_err(malformed)?;
    let tax = parse_amount(&totals.tax, "payout_totals.tax").map_err(malformed)?;
    let fee_on_amount = parse_amount(&totals.fee, "payout_totals.fee").map_err(malformed)?;
    let retained_fee = match &totals.retained_fee {
        Some(text) => parse_amount(text, "payout_totals.retained_fee").map_err(malformed)?,
        None => 0,
    };
    let fee = fee_given_back_minor(fee_on_amount, retained_fee).map_err(malformed)?;
    let earnings = parse_amount(&totals.earnings, "payout_totals.earnings").map_err(malformed)?;
    let chargeback_fee = match &totals.chargeback_fee {
        Some(c) => {
            parse_amount(&c.amount, "payout_totals.chargeback_fee.amount").map_err(malformed)?
        }
        None => 0,
    };
    let kind = match adjustment.action.as_str() {
        "refund" => SettlementLineKind::Refund,
        "chargeback" => SettlementLineKind::Dispute,
        other => {
            return Err(SettlementError::Malformed(format!(
                "adjustment {} is a {}",
                clip(&adjustment.id),
                clip(other)
            )))
        }
    };
    let currency = Currency::parse(&totals.currency_code.to_ascii_uppercase()).map_err(|_| {
        SettlementError::Malformed(format!("currency {}", clip(&totals.currency_code)))
    })?;
    let line = SettlementLine {
        provider: provider.to_owned(),
        line_id: adjustment.id,
        kind,
        payment_key: adjustment.transaction_id,
        order_id,
        amount_minor: -(total - tax),
        fee_minor: chargeback_fee - fee,
        vat_minor: 0,
        payout_minor: -earnings,
        currency,
        sold_on: day_of(&adjustment.updated_at, "updated_at")?,
        paid_out_on,
        payout_id: Some(payout.id.clone()),
        method: None,
        subscription_id: adjustment.subscription_id.filter(|id| !id.is_empty()),
    };
    line.validate()
        .map_err(|e| SettlementError::Malformed(e.to_string()))?;
    Ok(line)
}

impl PaddleSettlements {
    /// Every approved refund and chargeback in Paddle (`GET /adjustments` has no date filter:
    /// each payout takes those approved within its balance period).
    async fn approved_adjustments(&self) -> Result<Vec<WireAdjustment>, SettlementError> {
        let adjustments: Vec<WireAdjustment> = self
            .list_all(
                "/adjustments",
                &[
                    ("status", "approved".to_owned()),
                    ("action", PAYOUT_ADJUSTMENTS.to_owned()),
                    ("per_page", ADJUSTMENTS_PER_PAGE.to_string()),
                ],
                MAX_LINES_PER_IMPORT,
            )
            .await?;
        for adjustment in &adjustments {
            if adjustment.status != "approved" {
                return Err(SettlementError::Malformed(format!(
                    "Paddle listed adjustment {} as {} when asked for approved ones",
                    clip(&adjustment.id),
                    clip(&adjustment.status)
                )));
            }
        }
        Ok(adjustments)
    }

    /// The order id (`custom_data.orderId`) and subscription of each transaction `ids` names.
    async fn orders_of(
        &self,
        ids: &[String],
    ) -> Result<std::collections::HashMap<String, (Option<String>, Option<String>)>, SettlementError>
    {
        let mut found = std::collections::HashMap::new();
        for chunk in ids.chunks(IDS_PER_REQUEST) {
            let listed: Vec<WireTransactionRef> = self
                .list_all(
                    "/transactions",
                    &[("id", chunk.join(",")), ("per_page", PER_PAGE.to_string())],
                    IDS_PER_REQUEST,
                )
                .await?;
            for txn in listed {
                let order_id = txn
                    .custom_data
                    .as_ref()
                    .and_then(|c| c[crate::CUSTOM_DATA_ORDER_ID].as_str())
                    .map(str::to_owned);
                found.insert(txn.id, (order_id, txn.subscription_id));
            }
        }
        Ok(found)
    }
}

#[async_trait]
impl SettlementSource for PaddleSettlements {
    fn provider(&self) -> &str {
        &self.provider_name
    }

    async fn settlement_lines(
        &self,
        period: SettlementPeriod,
    ) -> Result<Vec<SettlementLine>, SettlementError> {
        Ok(self.settlement_report(period).await?.lines)
    }

    /// The payouts paid within `period` (their `payout.paid` day) and the transactions of the
    /// balance each closed.
    async fn settlement_report(
        &self,
        period: SettlementPeriod,
    ) -> Result<SettlementReport, SettlementError> {
        if period.from > period.to || (period.to - period.from).num_days() >= MAX_IMPORT_DAYS {
            return Err(SettlementError::Malformed(format!(
                "a period is 1 to {MAX_IMPORT_DAYS} days"
            )));
        }
        let events: Vec<WireEvent> = self
            .list_all(
                "/events",
                &[
                    ("event_type", PAYOUT_EVENTS.to_owned()),
                    ("per_page", PER_PAGE.to_string()),
                ],
                MAX_PAYOUTS * 2,
            )
            .await?;
        let payouts = payouts_of(events)?;
        let mut report = SettlementReport::default();
        let any_paid_in_period = payouts.iter().any(|p| {
            p.paid_at
                .is_some_and(|at| (period.from..=period.to).contains(&at.date_naive()))
        });
        let mut adjustments = if any_paid_in_period {
            self.approved_adjustments().await?
        } else {
            Vec::new()
        };
        for payout in &payouts {
            let Some(paid_at) = payout.paid_at else {
                continue;
            };
            let paid_out_on = paid_at.date_naive();
            if paid_out_on < period.from || paid_out_on > period.to {
                continue;
            }
            let closed_at = payout.created_at.ok_or_else(|| {
                SettlementError::Malformed(format!(
                    "payout {} was paid with no payout.created in Paddle's event log",
                    clip(&payout.id)
                ))
            })?;
            // The balance this payout closed began where the same currency's last one closed.
            let opened_at = payouts
                .iter()
                .filter(|p| p.currency == payout.currency)
                .filter_map(|p| p.created_at)
                .filter(|at| *at < closed_at)
                .max();
            let mut query = vec![
                ("status", "completed".to_owned()),
                ("billed_at[LT]", rfc3339(closed_at)),
                ("per_page", PER_PAGE.to_string()),
            ];
            if let Some(opened_at) = opened_at {
                query.push(("billed_at[GTE]", rfc3339(opened_at)));
            }
            let left = MAX_LINES_PER_IMPORT.saturating_sub(report.lines.len());
            let transactions: Vec<WireTransaction> =
                self.list_all("/transactions", &query, left).await?;
            for txn in transactions {
                let in_currency =
                    txn.details.payout_totals.as_ref().is_some_and(|t| {
                        t.currency_code.eq_ignore_ascii_case(payout.currency.code())
                    });
                if in_currency {
                    report.lines.push(self.line(txn, payout, paid_out_on)?);
                }
            }
            // The refunds and chargebacks Paddle approved within the same balance period: it
            // takes each one's earnings from this payout.
            let mut taken = Vec::new();
            let mut kept = Vec::new();
            for adjustment in adjustments {
                let approved_at = time_of(&adjustment.updated_at, "updated_at")?;
                let in_period = approved_at < closed_at
                    && opened_at.is_none_or(|opened| approved_at >= opened)
                    && adjustment.payout_totals.as_ref().is_some_and(|t| {
                        t.currency_code.eq_ignore_ascii_case(payout.currency.code())
                    });
                if in_period {
                    taken.push(adjustment);
                } else {
                    kept.push(adjustment);
                }
            }
            adjustments = kept;
            if report.lines.len() + taken.len() > MAX_LINES_PER_IMPORT {
                return Err(SettlementError::TooManyLines);
            }
            let mut ids: Vec<String> = taken.iter().map(|a| a.transaction_id.clone()).collect();
            ids.sort();
            ids.dedup();
            let orders = self.orders_of(&ids).await?;
            for mut adjustment in taken {
                let (order_id, subscription_id) = orders
                    .get(&adjustment.transaction_id)
                    .cloned()
                    .unwrap_or_default();
                if adjustment.subscription_id.is_none() {
                    adjustment.subscription_id = subscription_id;
                }
                report.lines.push(adjustment_line(
                    &self.provider_name,
                    adjustment,
                    order_id,
                    payout,
                    paid_out_on,
                )?);
            }
            report.payouts.push(PayoutTotal {
                payout_id: payout.id.clone(),
                currency: payout.currency,
                amount_minor: payout.amount_minor,
                paid_out_on,
            });
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(event_type: &str, at: &str, id: &str, status: &str, amount: &str) -> WireEvent {
        serde_json::from_value(serde_json::json!({
            "event_id": "evt_01", "event_type": event_type, "occurred_at": at,
            "data": {"id": id, "status": status, "amount": amount, "currency_code": "USD",
                     "remittance_reference": "ref-1"}
        }))
        .unwrap()
    }

    #[test]
    fn a_payout_is_its_created_and_paid_events_with_the_latest_amount() {
        let payouts = payouts_of(vec![
            event(
                "payout.created",
                "2026-10-01T00:00:00Z",
                "po_1",
                "unpaid",
                "1800",
            ),
            event(
                "payout.paid",
                "2026-10-02T00:00:00.000000Z",
                "po_1",
                "paid",
                "1800",
            ),
            event(
                "payout.created",
                "2026-11-01T00:00:00Z",
                "po_2",
                "unpaid",
                "900",
            ),
        ])
        .unwrap();
        assert_eq!(payouts.len(), 2);
        assert_eq!(payouts[0].amount_minor, 1800);
        assert_eq!(payouts[0].currency, Currency::parse("USD").unwrap());
        assert_eq!(
            payouts[0].paid_at.map(|t| t.date_naive()),
            NaiveDate::from_ymd_opt(2026, 10, 2)
        );
        assert!(payouts[0].created_at.is_some());
        assert_eq!(payouts[1].paid_at, None, "po_2 is not paid yet");
    }

    fn adjustment(action: &str, payout_totals: serde_json::Value) -> WireAdjustment {
        serde_json::from_value(serde_json::json!({
            "id": "adj_01", "action": action, "status": "approved", "transaction_id": "txn_01",
            "subscription_id": null, "updated_at": "2026-10-05T09:00:00.000000Z",
            "payout_totals": payout_totals
        }))
        .unwrap()
    }

    fn paid_payout() -> Payout {
        Payout {
            id: "po_1".into(),
            currency: Currency::parse("USD").unwrap(),
            amount_minor: 0,
            created_at: None,
            paid_at: None,
        }
    }

    #[test]
    fn a_refund_and_a_chargeback_are_lines_taken_from_the_payout() {
        let paid_out_on = NaiveDate::from_ymd_opt(2026, 10, 7).unwrap();
        let refund = adjustment_line(
            "paddle",
            adjustment(
                "refund",
                serde_json::json!({"subtotal": "1000", "tax": "0", "total": "1000",
                    "fee": "0", "earnings": "1000", "currency_code": "USD"}),
            ),
            Some("order-1".into()),
            &paid_payout(),
            paid_out_on,
        )
        .unwrap();
        assert_eq!(refund.kind, SettlementLineKind::Refund);
        assert_eq!(
            (refund.line_id.as_str(), refund.payment_key.as_str()),
            ("adj_01", "txn_01")
        );
        assert_eq!(
            (refund.amount_minor, refund.fee_minor, refund.payout_minor),
            (-1000, 0, -1000)
        );
        assert_eq!(
            refund.sold_on,
            NaiveDate::from_ymd_opt(2026, 10, 5).unwrap()
        );
        assert_eq!(refund.payout_id.as_deref(), Some("po_1"));
        assert_eq!(refund.order_id.as_deref(), Some("order-1"));

        // Paddle passes its chargeback fee on: the line's fee, and more taken from the payout.
        let chargeback = adjustment_line(
            "paddle",
            adjustment(
                "chargeback",
                serde_json::json!({"subtotal": "1100", "tax": "100", "total": "1100",
                    "fee": "0", "earnings": "2500", "currency_code": "USD",
                    "chargeback_fee": {"amount": "1500", "original": null}}),
            ),
            None,
            &paid_payout(),
            paid_out_on,
        )
        .unwrap();
        assert_eq!(chargeback.kind, SettlementLineKind::Dispute);
        assert_eq!(
            (
                chargeback.amount_minor,
                chargeback.fee_minor,
                chargeback.payout_minor
            ),
            (-1000, 1500, -2500)
        );
    }

    #[test]
    fn an_adjustment_without_payout_totals_or_of_another_action_is_refused() {
        let paid_out_on = NaiveDate::from_ymd_opt(2026, 10, 7).unwrap();
        let no_totals = adjustment_line(
            "paddle",
            adjustment("refund", serde_json::Value::Null),
            None,
            &paid_payout(),
            paid_out_on,
        );
        assert!(matches!(no_totals, Err(SettlementError::Malformed(_))));
        let credit = adjustment_line(
            "paddle",
            adjustment(
                "credit",
                serde_json::json!({"subtotal": "10", "tax": "0", "total": "10",
                    "fee": "0", "earnings": "10", "currency_code": "USD"}),
            ),
            None,
            &paid_payout(),
            paid_out_on,
        );
        assert!(matches!(credit, Err(SettlementError::Malformed(_))));
    }

    #[test]
    fn an_event_whose_status_is_not_its_type_is_refused() {
        let refused = payouts_of(vec![event(
            "payout.paid",
            "2026-10-02T00:00:00Z",
            "po_1",
            "unpaid",
            "1800",
        )]);
        assert!(matches!(refused, Err(SettlementError::Malformed(_))));
        let bad_amount = payouts_of(vec![event(
            "payout.created",
            "2026-10-01T00:00:00Z",
            "po_1",
            "unpaid",
            "18.00",
        )]);
        assert!(matches!(bad_amount, Err(SettlementError::Malformed(_))));
    }
}
