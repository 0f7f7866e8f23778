//! Toss's settlement report (`GET /v1/settlements?startDate&endDate&dateType=paidOutDate`) as a
//! [`SettlementSource`]: one [`SettlementLine`] per approval or cancel Toss paid out in the
//! period, read page by page. The line's id is Toss's `transactionKey`, unique per transaction.

use crate::TossSecretKey;
use async_trait::async_trait;
use base64::Engine;
use chrono::NaiveDate;
use payledger_domain::money::Currency;
use payledger_gateway::settlements::{
    SettlementError, SettlementLine, SettlementLineKind, SettlementPeriod, SettlementSource,
    MAX_IMPORT_DAYS, MAX_LINES_PER_IMPORT,
};
use serde::Deserialize;
use std::time::Duration;

/// Whole-request timeout of one page.
const SETTLEMENT_TIMEOUT_MS: u64 = 30_000;
/// Toss's largest page.
const PAGE_SIZE: usize = 5_000;
/// Largest page body read (5 000 lines of about 600 bytes).
const MAX_PAGE_BYTES: usize = 8 * 1024 * 1024;
const MAX_REASON_CHARS: usize = 300;

/// Toss settlements over HTTP (the sandbox serves the same report).
pub struct TossSettlements {
    url: String,
    authorization: String,
    provider_name: String,
    http: reqwest::Client,
}

impl TossSettlements {
    /// `provider_name` is what orders paid through this connector name as their provider.
    pub fn new(
        base_url: &str,
        secret_key: &TossSecretKey,
        provider_name: &str,
    ) -> Result<TossSettlements, SettlementError> {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:", secret_key.expose()));
        let http = payledger_gateway::transport::provider_client_builder()
            .timeout(Duration::from_millis(SETTLEMENT_TIMEOUT_MS))
            .build()
            .map_err(|e| SettlementError::Unavailable(e.without_url().to_string()))?;
        Ok(TossSettlements {
            url: format!("{}/v1/settlements", base_url.trim_end_matches('/')),
            authorization: format!("Basic {encoded}"),
            provider_name: provider_name.to_owned(),
            http,
        })
    }

    async fn page(
        &self,
        period: SettlementPeriod,
        page: usize,
    ) -> Result<Vec<WireSettlement>, SettlementError> {
        let unavailable =
            |e: reqwest::Error| SettlementError::Unavailable(clip(&e.without_url().to_string()));
        let response = self
            .http
            .get(&self.url)
            .header(reqwest::header::AUTHORIZATION, &self.authorization)
            .query(&[
                ("startDate", period.from.to_string()),
                ("endDate", period.to.to_string()),
                ("dateType", "paidOutDate".to_string()),
                ("page", page.to_string()),
                ("size", PAGE_SIZE.to_string()),
            ])
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
                answer["code"].as_str().unwrap_or_default()
            ))));
        }
        serde_json::from_slice(&body).map_err(|e| SettlementError::Malformed(clip(&e.to_string())))
    }

    fn line(&self, wire: WireSettlement) -> Result<SettlementLine, SettlementError> {
        let currency = Currency::parse(&wire.currency).map_err(|_| {
            SettlementError::Malformed(format!("currency {}", clip(&wire.currency)))
        })?;
        let date = |text: &str| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .map_err(|_| SettlementError::Malformed(format!("date {}", clip(text))))
        };
        let line = SettlementLine {
            provider: self.provider_name.clone(),
            line_id: wire.transaction_key,
            kind: if wire.cancel.is_some() || wire.amount < 0 {
                SettlementLineKind::Refund
            } else {
                SettlementLineKind::Payment
            },
            payment_key: wire.payment_key,
            order_id: wire.order_id,
            amount_minor: wire.amount,
            fee_minor: wire.fee,
            vat_minor: wire.vat.unwrap_or(0),
            payout_minor: wire.pay_out_amount,
            currency,
            sold_on: date(&wire.sold_date)?,
            paid_out_on: date(&wire.paid_out_date)?,
            payout_id: None,
            method: wire
                .method
                .filter(|m| !m.is_empty() && m.chars().count() <= 40),
            subscription_id: None,
        };
        line.validate()
            .map_err(|e| SettlementError::Malformed(e.to_string()))?;
        Ok(line)
    }
}

/// The fields of Toss's settlement object payledger reads.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireSettlement {
    payment_key: String,
    transaction_key: String,
    order_id: Option<String>,
    currency: String,
    amount: i64,
    fee: i64,
    vat: Option<i64>,
    pay_out_amount: i64,
    sold_date: String,
    paid_out_date: String,
    cancel: Option<serde_json::Value>,
    method: Option<String>,
}

fn clip(text: &str) -> String {
    text.chars().take(MAX_REASON_CHARS).collect()
}

#[async_trait]
impl SettlementSource for TossSettlements {
    fn provider(&self) -> &str {
        &self.provider_name
    }

    async fn settlement_lines(
        &self,
        period: SettlementPeriod,
    ) -> Result<Vec<SettlementLine>, SettlementError> {
        if period.from > period.to || (period.to - period.from).num_days() >= MAX_IMPORT_DAYS {
            return Err(SettlementError::Malformed(format!(
                "a period is 1 to {MAX_IMPORT_DAYS} days"
            )));
        }
        let mut lines = Vec::new();
        for page in 1.. {
            let wire = self.page(period, page).await?;
            let full = wire.len() == PAGE_SIZE;
            for line in wire {
                // Toss's cancel lines carry a negative amount, approval lines a positive one;
                // a zero-amount line moves no money.
                if line.amount == 0 {
                    continue;
                }
                lines.push(self.line(line)?);
                if lines.len() > MAX_LINES_PER_IMPORT {
                    return Err(SettlementError::TooManyLines);
                }
            }
            if !full {
                break;
            }
        }
        Ok(lines)
    }
}
