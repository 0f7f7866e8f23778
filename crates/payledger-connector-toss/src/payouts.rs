//! Toss's 지급대행 (`POST /v2/payouts`) as a [`PayoutProvider`]: settlement statements are paid
//! through it. A statement's id is the payout's `refPayoutId`, so asking twice pays once.

use crate::TossSecretKey;
use async_trait::async_trait;
use base64::Engine;
use payledger_gateway::payouts::{PayoutError, PayoutProvider, PayoutReceipt, PayoutRequest};
use std::time::Duration;

/// Whole-request timeout of a payout call.
const PAYOUT_TIMEOUT_MS: u64 = 10_000;
/// Longest provider message kept in an error.
const MAX_REASON_CHARS: usize = 300;

/// Toss payouts over HTTP (the sandbox's `POST /v2/payouts` answers the same way).
pub struct TossPayouts {
    url: String,
    authorization: String,
    http: reqwest::Client,
}

impl TossPayouts {
    pub fn new(base_url: &str, secret_key: &TossSecretKey) -> Result<TossPayouts, PayoutError> {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:", secret_key.expose()));
        let http = payledger_gateway::transport::provider_client_builder()
            .timeout(Duration::from_millis(PAYOUT_TIMEOUT_MS))
            .build()
            .map_err(|e| PayoutError::Unavailable(e.without_url().to_string()))?;
        Ok(TossPayouts {
            url: format!("{}/v2/payouts", base_url.trim_end_matches('/')),
            authorization: format!("Basic {encoded}"),
            http,
        })
    }
}

fn clip(text: &str) -> String {
    text.chars().take(MAX_REASON_CHARS).collect()
}

#[async_trait]
impl PayoutProvider for TossPayouts {
    async fn pay_out(&self, request: &PayoutRequest) -> Result<PayoutReceipt, PayoutError> {
        let body = serde_json::json!({
            "refPayoutId": request.reference_id,
            "destination": request.destination,
            "scheduleType": "EXPRESS",
            "amount": {"currency": request.currency.code(), "value": request.amount_minor},
        });
        let response = self
            .http
            .post(&self.url)
            .header(reqwest::header::AUTHORIZATION, &self.authorization)
            .header("Idempotency-Key", &request.reference_id)
            .json(&body)
            .send()
            .await
            .map_err(|e| PayoutError::Unavailable(clip(&e.without_url().to_string())))?;
        let status = response.status();
        let answer: serde_json::Value = response
            .json()
            .await
            .map_err(|e| PayoutError::Unavailable(clip(&e.without_url().to_string())))?;
        let text = |field: &str| clip(answer[field].as_str().unwrap_or_default());
        if status.is_success() {
            // The provider's answer is checked against what was asked before it is believed.
            let same = answer["refPayoutId"] == request.reference_id.as_str()
                && answer["amount"]["value"] == request.amount_minor
                && answer["amount"]["currency"] == request.currency.code();
            let id = text("id");
            if !same || id.is_empty() {
                return Err(PayoutError::Refused {
                    code: "PAYOUT_ANSWER_DIFFERS".to_string(),
                    message: "the provider's answer does not match the payout asked for"
                        .to_string(),
                });
            }
            return Ok(PayoutReceipt {
                payout_reference: id,
            });
        }
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(PayoutError::Unavailable(format!(
                "{status}: {}",
                text("code")
            )));
        }
        Err(PayoutError::Refused {
            code: text("code"),
            message: text("message"),
        })
    }
}
