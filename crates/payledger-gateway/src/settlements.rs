//! What a provider paid the platform: the [`SettlementSource`] trait each connector implements
//! for its provider's settlement report (Toss `GET /v1/settlements`, Stripe payouts and balance
//! transactions, Paddle's payout events and the transactions of each payout's balance). The lines are
//! read into [`SettlementLine`]s; the ledger judges them (`payledger_domain::reconciliation`).

use async_trait::async_trait;
use chrono::NaiveDate;
pub use payledger_domain::reconciliation::{PayoutTotal, SettlementLine, SettlementLineKind};

/// Most lines one import reads; a longer report is refused rather than cut short, so a period
/// is imported whole or not at all (import it in shorter periods).
pub const MAX_LINES_PER_IMPORT: usize = 50_000;
/// Longest period one import may ask for.
pub const MAX_IMPORT_DAYS: i64 = 31;

/// Which lines to read: those paid out from `from` to `to`, both included (provider dates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettlementPeriod {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettlementError {
    /// The provider could not be asked or failed; nothing was read. Retry later.
    #[error("the provider's settlement report is unavailable: {0}")]
    Unavailable(String),
    /// The provider answered something payledger cannot read as settlement lines.
    #[error("the provider's settlement report is malformed: {0}")]
    Malformed(String),
    /// More than [`MAX_LINES_PER_IMPORT`] lines.
    #[error(
        "the settlement report has more than {MAX_LINES_PER_IMPORT} lines; import a shorter period"
    )]
    TooManyLines,
}

#[async_trait]
pub trait SettlementSource: Send + Sync + 'static {
    /// The provider's name, as orders name it (`toss`, `stripe`).
    fn provider(&self) -> &str;

    /// Every line paid out within `period`, in the provider's order.
    async fn settlement_lines(
        &self,
        period: SettlementPeriod,
    ) -> Result<Vec<SettlementLine>, SettlementError>;

    /// The lines of `period` and the totals of the payouts that pay them, for a provider whose
    /// report states both (Stripe); by default only the lines.
    async fn settlement_report(
        &self,
        period: SettlementPeriod,
    ) -> Result<SettlementReport, SettlementError> {
        Ok(SettlementReport {
            lines: self.settlement_lines(period).await?,
            payouts: Vec::new(),
        })
    }
}

/// What one import reads: the lines, and each payout's stated total when the provider gives it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettlementReport {
    pub lines: Vec<SettlementLine>,
    pub payouts: Vec<PayoutTotal>,
}
