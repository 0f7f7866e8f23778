//! Every time-driven job of `serve` as a [`DueJob`], so moving the scenario clock
//! (`serve --test-clock`) runs each once at the new time. The list is also the "what runs by
//! itself" table of docs/operations.md, in the order a move runs them: things that end
//! (orders, claim deadlines) before things that charge, then settlement, then webhooks.

use crate::settlement_jobs::SettlementJobs;
use async_trait::async_trait;
use payledger_app::claims::Claims;
use payledger_app::payments::Payments;
use payledger_app::scenario_clock::DueJob;
use payledger_app::subscriptions::Subscriptions;
use sqlx::PgPool;
use std::sync::Arc;

fn report(value: impl serde::Serialize) -> Result<serde_json::Value, String> {
    serde_json::to_value(value).map_err(|e| e.to_string())
}

/// Unknown outcomes settled with the provider, and unpaid orders expired after 30 minutes.
pub struct OrdersJob {
    pub payments: Arc<Payments>,
    pub pool: PgPool,
    pub older_than: chrono::Duration,
}

#[async_trait]
impl DueJob for OrdersJob {
    fn name(&self) -> &'static str {
        "orders.reconcile_and_expire"
    }
    async fn run_due(&self) -> Result<serde_json::Value, String> {
        let done = crate::jobs::reconcile_once(&self.payments, &self.pool, self.older_than)
            .await
            .map_err(|e| e.to_string())?;
        report(done)
    }
}

/// Respondents' missed 24-hour deadlines recorded.
pub struct ClaimDeadlinesJob {
    pub claims: Arc<Claims>,
    pub pool: PgPool,
}

#[async_trait]
impl DueJob for ClaimDeadlinesJob {
    fn name(&self) -> &'static str {
        "claims.deadline_sweep"
    }
    async fn run_due(&self) -> Result<serde_json::Value, String> {
        let recorded = crate::booking_jobs::sweep_once(&self.claims, &self.pool)
            .await
            .map_err(|e| e.to_string())?;
        Ok(serde_json::json!({ "deadlinesMissed": recorded }))
    }
}

/// Subscriptions charged, retried (dunning), suspended and ended as of the clock's time.
pub struct BillingJob {
    pub subscriptions: Arc<Subscriptions>,
    pub pool: PgPool,
}

#[async_trait]
impl DueJob for BillingJob {
    fn name(&self) -> &'static str {
        "billing.run_due"
    }
    async fn run_due(&self) -> Result<serde_json::Value, String> {
        let index = crate::billing_jobs::ReadModelBillingIndex {
            pool: self.pool.clone(),
        };
        let as_of = self.subscriptions.clock().now();
        let mut done = self
            .subscriptions
            .run_due(&index, as_of)
            .await
            .map_err(|e| e.to_string())?;
        // The time is in the answer already (`now`); a timestamp would count as work.
        done.as_of = None;
        report(done)
    }
}

/// Open statements confirmed once their confirmation time has come (Monday).
pub struct SettlementConfirmJob(pub Arc<SettlementJobs>);

#[async_trait]
impl DueJob for SettlementConfirmJob {
    fn name(&self) -> &'static str {
        "settlement.confirm"
    }
    async fn run_due(&self) -> Result<serde_json::Value, String> {
        report(self.0.confirm_due().await.map_err(|e| e.to_string())?)
    }
}

/// Confirmed statements paid out through the payout provider (Wednesday).
pub struct SettlementPayoutJob(pub Arc<SettlementJobs>);

#[async_trait]
impl DueJob for SettlementPayoutJob {
    fn name(&self) -> &'static str {
        "settlement.payout"
    }
    async fn run_due(&self) -> Result<serde_json::Value, String> {
        report(self.0.pay_out_due().await.map_err(|e| e.to_string())?)
    }
}

/// Inbound provider webhooks whose next attempt is due, processed.
pub struct InboundWebhooksJob(pub payledger_webhook_relay::InboundWorker);

#[async_trait]
impl DueJob for InboundWebhooksJob {
    fn name(&self) -> &'static str {
        "webhooks.inbound"
    }
    async fn run_due(&self) -> Result<serde_json::Value, String> {
        let processed = self.0.run_once().await.map_err(|e| e.to_string())?;
        Ok(serde_json::json!({ "processed": processed.len() }))
    }
}

/// Outbound notifications whose next attempt is due, sent.
pub struct NotificationsJob(pub payledger_webhook_relay::NotificationSender);

#[async_trait]
impl DueJob for NotificationsJob {
    fn name(&self) -> &'static str {
        "notifications.send"
    }
    async fn run_due(&self) -> Result<serde_json::Value, String> {
        let sent = self.0.run_once().await.map_err(|e| e.to_string())?;
        Ok(serde_json::json!({ "sent": sent.len() }))
    }
}

/// Bookings looked at per reminder pass.
const MAX_REMINDER_CANDIDATES: i64 = 500;
/// How often `serve` sends due reminders.
pub const REMINDER_INTERVAL_MS: u64 = 60_000;

/// Session reminders (the day before at 14:00, 2 hours before) of paid bookings starting within
/// the next two days. Candidates come from the orders read model; each booking is re-checked.
pub struct RemindersJob {
    pub reminders: Arc<payledger_app::reminders::SessionReminders>,
    pub pool: PgPool,
}

#[async_trait]
impl DueJob for RemindersJob {
    fn name(&self) -> &'static str {
        "bookings.reminders"
    }
    async fn run_due(&self) -> Result<serde_json::Value, String> {
        let now = self.reminders.now();
        let candidates = payledger_read_models::orders::bookings_starting_between(
            &self.pool,
            now,
            now + chrono::Duration::days(2),
            MAX_REMINDER_CANDIDATES,
        )
        .await
        .map_err(|e| e.to_string())?;
        // A rescheduled booking is reminded of its new start.
        let moved = payledger_read_models::bookings::rescheduled_starting_between(
            &self.pool,
            now,
            now + chrono::Duration::days(2),
            MAX_REMINDER_CANDIDATES,
        )
        .await
        .map_err(|e| e.to_string())?;
        let mut candidates = candidates;
        candidates.extend(moved);
        candidates.sort_unstable();
        candidates.dedup();
        let mut sent = 0;
        let mut errors = 0;
        for order_id in candidates {
            let Ok(order_id) = payledger_domain::ids::OrderId::parse(order_id) else {
                continue;
            };
            match self.reminders.remind_due(&order_id).await {
                Ok(n) => sent += n,
                Err(error) => {
                    errors += 1;
                    tracing::warn!(%order_id, %error, "failed to request a reminder");
                }
            }
        }
        Ok(serde_json::json!({ "remindersRequested": sent, "errors": errors }))
    }
}

/// Bookings looked at per confirmation pass.
const MAX_CONFIRMATION_CANDIDATES: i64 = 500;

/// The provider's confirmation of paid bookings: the reminder 12 hours after the request and
/// the move to the admins' queue at 24 hours. Candidates come from the bookings read model;
/// each booking re-checks what is due.
pub struct BookingConfirmationsJob {
    pub bookings: Arc<payledger_app::bookings::Bookings>,
    pub pool: PgPool,
}

#[async_trait]
impl DueJob for BookingConfirmationsJob {
    fn name(&self) -> &'static str {
        "bookings.confirmations"
    }
    async fn run_due(&self) -> Result<serde_json::Value, String> {
        let now = self.bookings.payments().clock().now();
        let candidates = payledger_read_models::bookings::confirmations_due(
            &self.pool,
            now,
            MAX_CONFIRMATION_CANDIDATES,
        )
        .await
        .map_err(|e| e.to_string())?;
        let mut done = payledger_app::booking_confirmations::ConfirmationSteps::default();
        let mut errors = 0;
        for order_id in candidates {
            let Ok(order_id) = payledger_domain::ids::OrderId::parse(order_id) else {
                continue;
            };
            match self.bookings.advance_confirmation(&order_id).await {
                Ok(steps) => {
                    done.reminders_requested += steps.reminders_requested;
                    done.marked_overdue += steps.marked_overdue;
                }
                Err(error) => {
                    errors += 1;
                    tracing::warn!(%order_id, %error, "failed to advance a booking confirmation");
                }
            }
        }
        Ok(serde_json::json!({
            "remindersRequested": done.reminders_requested,
            "markedOverdue": done.marked_overdue,
            "errors": errors,
        }))
    }
}

/// Runs `job` every `every` until aborted (the schedule `serve` gives a job of its own).
pub async fn run_every(job: Arc<dyn DueJob>, every: std::time::Duration) {
    loop {
        tokio::time::sleep(every).await;
        match job.run_due().await {
            Ok(report) => tracing::debug!(job = job.name(), %report, "pass"),
            Err(error) => tracing::warn!(job = job.name(), %error, "pass failed"),
        }
    }
}
