//! Settlement that runs by itself (source document 5 §5.1): statements are confirmed on Monday
//! and paid out on Wednesday, at configured days and times in the settlement time zone, through
//! a [`PayoutProvider`]; the provider's payout id is recorded on the statement.
//!
//! Candidates come from the settlements read model; each is re-checked by the statement itself
//! (confirming twice answers the first confirmation; a payout is idempotent at the provider by
//! the statement id and in the ledger by its reference), so several `serve` processes may run
//! these passes at once.

use chrono::{DateTime, Duration, NaiveTime, Utc, Weekday};
use payledger_app::context::RequestContext;
use payledger_app::settlements::Settlements;
use payledger_domain::settlement::{local_midnight, StatementKey};
use payledger_gateway::payouts::{PayoutError, PayoutProvider, PayoutRequest};
use serde::Serialize;
use sqlx::PgPool;
use std::sync::Arc;

/// Statements looked at per pass.
const MAX_STATEMENTS_PER_PASS: i64 = 500;
/// How often `serve` looks for statements to confirm or pay.
pub const SETTLEMENT_PASS_INTERVAL_MS: u64 = 60_000;
/// Recorded as the payout reference of a statement with nothing to pay (no money moved).
pub const NOTHING_TO_PAY_REFERENCE: &str = "no-payout:nothing-payable";

/// When, after its week, a statement is confirmed and paid (local time of the settlement zone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementSchedule {
    pub confirm_day: Weekday,
    pub confirm_time: NaiveTime,
    pub payout_day: Weekday,
    pub payout_time: NaiveTime,
}

impl Default for SettlementSchedule {
    /// Monday 10:00 and Wednesday 10:00 (정산 확정 매주 월요일, 입금 완료 매주 수요일).
    fn default() -> Self {
        let ten = NaiveTime::from_hms_opt(10, 0, 0).unwrap_or_default();
        SettlementSchedule {
            confirm_day: Weekday::Mon,
            confirm_time: ten,
            payout_day: Weekday::Wed,
            payout_time: ten,
        }
    }
}

fn parse_day_time(name: &str, value: &str) -> anyhow::Result<(Weekday, NaiveTime)> {
    let mut parts = value.split_whitespace();
    let (Some(day), Some(time), None) = (parts.next(), parts.next(), parts.next()) else {
        anyhow::bail!("{name} must be a day and a time such as 'Mon 10:00', got '{value}'");
    };
    let day: Weekday = day
        .parse()
        .map_err(|_| anyhow::anyhow!("{name}: '{day}' is not a weekday (Mon … Sun)"))?;
    let time = NaiveTime::parse_from_str(time, "%H:%M")
        .map_err(|_| anyhow::anyhow!("{name}: '{time}' is not HH:MM"))?;
    Ok((day, time))
}

impl SettlementSchedule {
    /// The defaults, overridden by `PAYLEDGER_SETTLEMENT_CONFIRM_AT` and
    /// `PAYLEDGER_SETTLEMENT_PAYOUT_AT` (`"Mon 10:00"`, `"Wed 10:00"`).
    pub fn from_env() -> anyhow::Result<SettlementSchedule> {
        let mut schedule = SettlementSchedule::default();
        if let Ok(value) = crate::settings::var("PAYLEDGER_SETTLEMENT_CONFIRM_AT") {
            (schedule.confirm_day, schedule.confirm_time) =
                parse_day_time("PAYLEDGER_SETTLEMENT_CONFIRM_AT", &value)?;
        }
        if let Ok(value) = crate::settings::var("PAYLEDGER_SETTLEMENT_PAYOUT_AT") {
            (schedule.payout_day, schedule.payout_time) =
                parse_day_time("PAYLEDGER_SETTLEMENT_PAYOUT_AT", &value)?;
        }
        if schedule.payout_offset() < schedule.confirm_offset() {
            anyhow::bail!("the payout must come after the confirmation in the week after");
        }
        Ok(schedule)
    }

    fn confirm_offset(&self) -> Duration {
        Duration::days(i64::from(self.confirm_day.num_days_from_monday()))
            + (self.confirm_time - NaiveTime::MIN)
    }

    fn payout_offset(&self) -> Duration {
        Duration::days(i64::from(self.payout_day.num_days_from_monday()))
            + (self.payout_time - NaiveTime::MIN)
    }

    /// When the statement of the week starting `key.week_start` is confirmed: the configured
    /// day and time of the following week, in `tz`.
    pub fn confirm_at(&self, key: &StatementKey, tz: chrono_tz::Tz) -> DateTime<Utc> {
        local_midnight(key.week_start + Duration::days(7), tz) + self.confirm_offset()
    }

    pub fn payout_at(&self, key: &StatementKey, tz: chrono_tz::Tz) -> DateTime<Utc> {
        local_midnight(key.week_start + Duration::days(7), tz) + self.payout_offset()
    }
}

#[derive(Debug, Default, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SettlementReport {
    pub examined: usize,
    pub confirmed: usize,
    pub paid_out: usize,
    pub payout_refused: usize,
    /// Due but with no payout provider configured: recorded by hand.
    pub awaiting_manual_payout: usize,
    pub errors: usize,
}

pub struct SettlementJobs {
    pub settlements: Arc<Settlements>,
    /// `None`: no automatic payout (Toss keys); statements wait for a payout recorded by hand.
    pub payouts: Option<Arc<dyn PayoutProvider>>,
    pub schedule: SettlementSchedule,
    pub pool: PgPool,
}

impl SettlementJobs {
    fn context() -> RequestContext {
        RequestContext::system("settlement")
    }

    /// Confirms every open statement whose confirmation time has come.
    pub async fn confirm_due(&self) -> Result<SettlementReport, sqlx::Error> {
        let now = self.settlements.now();
        let tz = self.settlements.config().time_zone;
        let mut report = SettlementReport::default();
        let open = payledger_read_models::settlements::statements_ended_before(
            &self.pool,
            "open",
            now,
            MAX_STATEMENTS_PER_PASS,
        )
        .await?;
        for view in open {
            let Ok(key) = StatementKey::parse(&view.statement_id) else {
                continue;
            };
            report.examined += 1;
            if self.schedule.confirm_at(&key, tz) > now {
                continue;
            }
            match self.settlements.confirm(&key, &Self::context()).await {
                Ok(snapshot) if !snapshot.replay => report.confirmed += 1,
                Ok(_) => {}
                Err(error) => {
                    report.errors += 1;
                    tracing::warn!(statement = %view.statement_id, %error, "failed to confirm a statement");
                }
            }
        }
        Ok(report)
    }

    /// Pays every confirmed statement whose payout time has come, and records the payout.
    pub async fn pay_out_due(&self) -> Result<SettlementReport, sqlx::Error> {
        let now = self.settlements.now();
        let tz = self.settlements.config().time_zone;
        let mut report = SettlementReport::default();
        let confirmed = payledger_read_models::settlements::statements_ended_before(
            &self.pool,
            "confirmed",
            now,
            MAX_STATEMENTS_PER_PASS,
        )
        .await?;
        for view in confirmed {
            let Ok(key) = StatementKey::parse(&view.statement_id) else {
                continue;
            };
            report.examined += 1;
            if self.schedule.payout_at(&key, tz) > now {
                continue;
            }
            // The amount is the statement's own (command side), not the read model's copy.
            let Ok(Some(statement)) = self.settlements.load(&key).await else {
                report.errors += 1;
                continue;
            };
            let amount_minor = statement.state.totals().net_payable_minor;
            let reference = if amount_minor == 0 {
                NOTHING_TO_PAY_REFERENCE.to_string()
            } else if let Some(payouts) = &self.payouts {
                let request = PayoutRequest {
                    reference_id: key.id(),
                    destination: key.payee_id.to_string(),
                    amount_minor,
                    currency: key.currency,
                };
                match payouts.pay_out(&request).await {
                    Ok(receipt) => receipt.payout_reference,
                    Err(PayoutError::Refused { code, message }) => {
                        report.payout_refused += 1;
                        tracing::error!(statement = %key.id(), %code, %message, "the provider refused a payout; pay it by hand and record it");
                        continue;
                    }
                    Err(error) => {
                        report.errors += 1;
                        tracing::warn!(statement = %key.id(), %error, "payout failed; retried next pass");
                        continue;
                    }
                }
            } else {
                report.awaiting_manual_payout += 1;
                continue;
            };
            match self
                .settlements
                .record_payout(&key, reference, amount_minor, &Self::context())
                .await
            {
                Ok(snapshot) if !snapshot.replay => report.paid_out += 1,
                Ok(_) => {}
                Err(error) => {
                    report.errors += 1;
                    tracing::warn!(statement = %key.id(), %error, "failed to record a payout");
                }
            }
        }
        Ok(report)
    }

    /// Both passes, every `every`, until aborted.
    pub async fn run(self: Arc<Self>, every: std::time::Duration) {
        loop {
            tokio::time::sleep(every).await;
            for (name, result) in [
                ("confirm", self.confirm_due().await),
                ("payout", self.pay_out_due().await),
            ] {
                match result {
                    Ok(report) if report.confirmed + report.paid_out > 0 => {
                        tracing::info!(pass = name, ?report, "settlement pass");
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(pass = name, %error, "settlement pass failed"),
                }
            }
        }
    }
}
