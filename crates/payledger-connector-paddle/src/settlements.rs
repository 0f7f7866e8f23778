//! What Paddle paid the platform, as a [`SettlementSource`]. Paddle is the merchant of record:
//! it collects the customer's total, remits the tax and keeps its fee, and pays the merchant
//! the rest (`details.payout_totals.earnings` of each transaction). The payouts of a period
//! (`GET /payouts?paid_at[GTE]&paid_at[LTE]`, each naming the `transaction_ids` it pays; the
//! sandbox's `/paddle` serves it) are read, then their transactions
//! (`GET /transactions?id=…`, Paddle Billing's shape, at most [`IDS_PER_REQUEST`] ids a call).
//! One [`SettlementLine`] per transaction: its id and payment are the transaction id (`txn_…`,
//! what a Paddle order is confirmed with), its order `custom_data.orderId`, its amount
//! `payout_totals.total − tax` (the price the ledger captured; the tax is never the
//! platform's), its fee `payout_totals.fee`, its payout `earnings`, sold on `billed_at`'s day,
//! paid out on the payout's `paid_at` day, and its `subscription_id` when the transaction billed
//! a subscription (its first period or a renewal: matched to the subscription's charge).
//!
//! Known gap: Paddle Billing has no payouts list endpoint; `GET /payouts` is the sandbox's. Real
//! Paddle pays out monthly and itemises payouts in its payout reconciliation report
//! (`POST /reports` `type: payout_reconciliation`, CSV); docs/operations.md, "Provider
//! settlements", says what reading it would take.

use crate::wire::parse_amount;
use crate::PaddleApiKey;
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use payledger_domain::money::Currency;
use payledger_gateway::settlements::{
    SettlementError, SettlementLine, SettlementLineKind, SettlementPeriod, SettlementSource,
    MAX_IMPORT_DAYS, MAX_LINES_PER_IMPORT,
};
use serde::Deserialize;
use std::time::Duration;

const TIMEOUT_MS: u64 = 30_000;
/// Transaction ids asked for in one `GET /transactions?id=` (Paddle's page size).
pub const IDS_PER_REQUEST: usize = 50;
/// Most payouts one import reads.
const MAX_PAYOUTS: usize = 1_000;
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
const MAX_REASON_CHARS: usize = 300;

/// Paddle payouts over HTTP.
pub struct PaddleSettlements {
    base_url: String,
    authorization: String,
    provider_name: String,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct Data<T> {
    data: Vec<T>,
}

#[derive(Deserialize)]
struct WirePayout {
    id: String,
    status: String,
    paid_at: String,
    #[serde(default)]
    transaction_ids: Vec<String>,
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

fn clip(text: &str) -> String {
    text.chars().take(MAX_REASON_CHARS).collect()
}

fn day_of(text: &str, what: &str) -> Result<NaiveDate, SettlementError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc).date_naive())
        .map_err(|_| SettlementError::Malformed(format!("{what} {}", clip(text))))
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
        payout: &WirePayout,
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

#[async_trait]
impl SettlementSource for PaddleSettlements {
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
        let from = period.from.and_time(chrono::NaiveTime::MIN).and_utc();
        let to = period
            .to
            .and_hms_opt(23, 59, 59)
            .unwrap_or_default()
            .and_utc();
        let rfc3339 = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let payouts: Data<WirePayout> = self
            .get(
                "/payouts",
                &[
                    ("paid_at[GTE]", rfc3339(from)),
                    ("paid_at[LTE]", rfc3339(to)),
                ],
            )
            .await?;
        if payouts.data.len() > MAX_PAYOUTS {
            return Err(SettlementError::TooManyLines);
        }
        let mut lines = Vec::new();
        for payout in payouts.data.iter().filter(|p| p.status == "paid") {
            let paid_out_on = day_of(&payout.paid_at, "paid_at")?;
            if payout.transaction_ids.len() > MAX_LINES_PER_IMPORT.saturating_sub(lines.len()) {
                return Err(SettlementError::TooManyLines);
            }
            for ids in payout.transaction_ids.chunks(IDS_PER_REQUEST) {
                let found: Data<WireTransaction> =
                    self.get("/transactions", &[("id", ids.join(","))]).await?;
                if found.data.len() != ids.len() {
                    return Err(SettlementError::Malformed(format!(
                        "payout {} names {} transactions, Paddle returned {}",
                        clip(&payout.id),
                        ids.len(),
                        found.data.len()
                    )));
                }
                for txn in found.data {
                    lines.push(self.line(txn, payout, paid_out_on)?);
                }
            }
        }
        Ok(lines)
    }
}
