//! Paying a payee what a settlement statement owes: the [`PayoutProvider`] trait. Its first
//! implementation is Toss's 지급대행 (`payledger_connector_toss::TossPayouts`, which the sandbox
//! speaks). A statement's id is the payout's reference, so asking twice pays once.

use async_trait::async_trait;
use payledger_domain::money::Currency;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutRequest {
    /// Our id of the payout (the statement id): the provider's idempotency.
    pub reference_id: String,
    /// Who is paid (the payee id, the seller at the provider).
    pub destination: String,
    pub amount_minor: i64,
    pub currency: Currency,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutReceipt {
    /// The provider's payout id, recorded on the statement.
    pub payout_reference: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayoutError {
    /// The provider said no (its code and message); retrying the same request will not help.
    #[error("the provider refused the payout: {code}: {message}")]
    Refused { code: String, message: String },
    /// No answer, or the provider failed: nothing is known, the same request may be retried
    /// (it is idempotent by `reference_id`).
    #[error("the payout provider is unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait PayoutProvider: Send + Sync + 'static {
    /// Pays `request` once; asking again with the same `reference_id` answers the first payout.
    async fn pay_out(&self, request: &PayoutRequest) -> Result<PayoutReceipt, PayoutError>;
}
