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
