//! Stripe's payouts and the balance transactions paid in each as a [`SettlementSource`]:
//! `GET /v1/payouts?arrival_date[gte]&arrival_date[lte]`, then for each payout
//! `GET /v1/balance_transactions?payout=po_…&expand[]=data.source`, page by page. One
//! [`SettlementLine`] per charge, refund or dispute transaction (the payout's own transaction is
//! the batch, not a line): its id is the balance transaction's (`txn_…`), its payment the
//! source's PaymentIntent, its order the PaymentIntent's `metadata[order_id]`, the payout
//! `net`, the paid-out day the payout's `arrival_date`.

use crate::StripeSecretKey;
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate};
use payledger_domain::money::Currency;
use payledger_gateway::settlements::{
    PayoutTotal, SettlementError, SettlementLine, SettlementLineKind, SettlementPeriod,
    SettlementReport, SettlementSource, MAX_IMPORT_DAYS, MAX_LINES_PER_IMPORT,
};
use serde::Deserialize;
use std::time::Duration;

const TIMEOUT_MS: u64 = 30_000;
/// Stripe's largest page.
const PAGE_SIZE: usize = 100;
/// Most pages one import reads (payouts and transactions together).
const MAX_PAGES: usize = 2_000;
const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;
const MAX_REASON_CHARS: usize = 300;

/// Stripe payouts over HTTP (the sandbox's `/stripe` serves the same).
pub struct StripeSettlements {
    base_url: String,
    authorization: String,
    provider_name: String,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct List<T> {
    data: Vec<T>,
    has_more: bool,
}

#[derive(Deserialize)]
struct WirePayout {
    id: String,
    arrival_date: i64,
    amount: i64,
    currency: String,
}

#[derive(Deserialize)]
struct WireTxn {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    amount: i64,
    fee: i64,
    net: i64,
    currency: String,
    created: i64,
    source: Option<serde_json::Value>,
}

fn clip(text: &str) -> String {
    text.chars().take(MAX_REASON_CHARS).collect()
}

fn day_of(unix: i64) -> Result<NaiveDate, SettlementError> {
    DateTime::from_timestamp(unix, 0)
        .map(|d| d.date_naive())
        .ok_or_else(|| SettlementError::Malformed(format!("time {unix}")))
}

impl StripeSettlements {
    pub fn new(
        base_url: &str,
        secret_key: &StripeSecretKey,
        provider_name: &str,
    ) -> Result<StripeSettlements, SettlementError> {
        let http = payledger_gateway::transport::provider_client_builder()
            .timeout(Duration::from_millis(TIMEOUT_MS))
            .build()
            .map_err(|e| SettlementError::Unavailable(e.without_url().to_string()))?;
        Ok(StripeSettlements {
            base_url: base_url.trim_end_matches('/').to_owned(),
            authorization: format!("Bearer {}", secret_key.expose()),
            provider_name: provider_name.to_owned(),
            http,
        })
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, SettlementError> {
        let unavailable =
            |e: reqwest::Error| SettlementError::Unavailable(clip(&e.without_url().to_string()));
        let response = self
            .http
            .get(format!("{}{path}", self.base_url))
            .header(reqwest::header::AUTHORIZATION, &self.authorization)
            .query(query)
            .send()
            .await
            .map_err(unavailable)?;
        let status = response.status();
        let body = response.bytes().await.map_err(unavailable)?;
        if body.len() > MAX_PAGE_BYTES {
            return Err(SettlementError::Malformed("the page is too large".into()));
        }
        if !status.is_success() {
            let answer: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            return Err(SettlementError::Unavailable(clip(&format!(
                "{status}: {}",
                answer["error"]["type"].as_str().unwrap_or_default()
            ))));
        }
        serde_json::from_slice(&body).map_err(|e| SettlementError::Malformed(clip(&e.to_string())))
    }

    fn line(&self, txn: WireTxn, payout: &WirePayout) -> Result<SettlementLine, SettlementError> {
        let source = txn.source.unwrap_or_default();
        let payment_key = source["payment_intent"]
            .as_str()
            .or_else(|| source["id"].as_str())
            .unwrap_or_default()
            .to_owned();
        let order_id = source["metadata"]["order_id"].as_str().map(str::to_owned);
        let kind = match (txn.kind.as_str(), source["object"].as_str()) {
            ("charge" | "payment", _) => SettlementLineKind::Payment,
            ("refund" | "payment_refund", _) => SettlementLineKind::Refund,
            (_, Some("dispute")) => SettlementLineKind::Dispute,
            _ => SettlementLineKind::Adjustment,
        };
        let currency = Currency::parse(&txn.currency.to_ascii_uppercase())
            .map_err(|_| SettlementError::Malformed(format!("currency {}", clip(&txn.currency))))?;
        let line = SettlementLine {
            provider: self.provider_name.clone(),
            line_id: txn.id,
            kind,
            payment_key,
            order_id,
            amount_minor: txn.amount,
            fee_minor: txn.fee,
            vat_minor: 0,
            payout_minor: txn.net,
            currency,
            sold_on: day_of(txn.created)?,
            paid_out_on: day_of(payout.arrival_date)?,
            payout_id: Some(payout.id.clone()),
            // Stripe's fee depends on the card's country and the charge's method, which a
            // balance transaction does not carry; the default schedule applies.
            method: None,
            subscription_id: None,
        };
        line.validate()
            .map_err(|e| SettlementError::Malformed(e.to_string()))?;
        Ok(line)
    }
}

#[async_trait]
impl SettlementSource for StripeSettlements {
    fn provider(&self) -> &str {
        &self.provider_name
    }

    async fn settlement_lines(
        &self,
        period: SettlementPeriod,
    ) -> Result<Vec<SettlementLine>, SettlementError> {
        Ok(self.settlement_report(period).await?.lines)
    }

    /// The lines, and each payout's `amount` to compare with the sum of its lines' `net`.
    async fn settlement_report(
        &self,
        period: SettlementPeriod,
    ) -> Result<SettlementReport, SettlementError> {
        if period.from > period.to || (period.to - period.from).num_days() >= MAX_IMPORT_DAYS {
            return Err(SettlementError::Malformed(format!(
                "a period is 1 to {MAX_IMPORT_DAYS} days"
            )));
        }
        let start = period
            .from
            .and_time(chrono::NaiveTime::MIN)
            .and_utc()
            .timestamp();
        let end = period
            .to
            .and_time(chrono::NaiveTime::MIN)
            .and_utc()
            .timestamp()
            + 86_399;
        let mut pages = 0;
        let mut payouts: Vec<WirePayout> = Vec::new();
        let mut after: Option<String> = None;
        loop {
            pages += 1;
            if pages > MAX_PAGES {
                return Err(SettlementError::TooManyLines);
            }
            let mut query = vec![
                ("arrival_date[gte]", start.to_string()),
                ("arrival_date[lte]", end.to_string()),
                ("limit", PAGE_SIZE.to_string()),
            ];
            if let Some(after) = &after {
                query.push(("starting_after", after.clone()));
            }
            let page: List<WirePayout> = self.get("/v1/payouts", &query).await?;
            after = page.data.last().map(|p| p.id.clone());
            let more = page.has_more && after.is_some();
            payouts.extend(page.data);
            if !more {
                break;
            }
        }
        // Oldest payout first, as the lines are wanted in the order money arrived.
        payouts.sort_by_key(|p| (p.arrival_date, p.id.clone()));
        let mut lines = Vec::new();
        for payout in &payouts {
            let mut after: Option<String> = None;
            loop {
                pages += 1;
                if pages > MAX_PAGES {
                    return Err(SettlementError::TooManyLines);
                }
                let mut query = vec![
                    ("payout", payout.id.clone()),
                    ("expand[]", "data.source".to_string()),
                    ("limit", PAGE_SIZE.to_string()),
                ];
                if let Some(after) = &after {
                    query.push(("starting_after", after.clone()));
                }
                let page: List<WireTxn> = self.get("/v1/balance_transactions", &query).await?;
                after = page.data.last().map(|t| t.id.clone());
                let more = page.has_more && after.is_some();
                for txn in page.data {
                    // The payout's own transaction is the batch itself; zero moves nothing.
                    if txn.kind == "payout" || txn.amount == 0 {
                        continue;
                    }
                    lines.push(self.line(txn, payout)?);
                    if lines.len() > MAX_LINES_PER_IMPORT {
                        return Err(SettlementError::TooManyLines);
                    }
                }
                if !more {
                    break;
                }
            }
        }
        let totals = payouts
            .iter()
            .map(|payout| {
                let id_ok = (1..=200).contains(&payout.id.len())
                    && payout.id.chars().all(|c| c.is_ascii_graphic() && c != '/');
                if !id_ok {
                    return Err(SettlementError::Malformed(format!(
                        "payout id {}",
                        clip(&payout.id)
                    )));
                }
                Ok(PayoutTotal {
                    payout_id: payout.id.clone(),
                    currency: Currency::parse(&payout.currency.to_ascii_uppercase()).map_err(
                        |_| {
                            SettlementError::Malformed(format!(
                                "currency {}",
                                clip(&payout.currency)
                            ))
                        },
                    )?,
                    amount_minor: payout.amount,
                    paid_out_on: day_of(payout.arrival_date)?,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SettlementReport {
            lines,
            payouts: totals,
        })
    }
}
