//! The alert channel: the runbook's alarms reach people, not only Prometheus. Every minute
//! `serve` checks the conditions below and posts a signed Standard Webhooks message to
//! `PAYLEDGER_ALERT_WEBHOOK_URL` (a chat tool's incoming webhook, a pager) when one starts
//! (`alert.firing`) and when it ends (`alert.resolved`), never repeatedly while it lasts.
//!
//! | alert | fires when (source) |
//! | --- | --- |
//! | `dead_letters` | a webhook, notification or process-manager event is in a dead-letter queue |
//! | `circuit_open` | the payment provider's circuit breaker is open (runbook §4.2) |
//! | `amount_mismatch_rate` | more than 0.1 % of confirmations in the last 24 h were amount mismatches, over at least 100 (runbook §7 SLO < 0.1 %) |
//! | `webhook_signature_failure_rate` | more than 2 % of inbound webhooks in the last 5 minutes failed their signature or timestamp check, over at least 20 (runbook §4.4 "E_WEBHOOK_INVALID_SIG 비율 >2%/5분") |
//! | `projector_lag` | a read model or process manager is more than 30 s behind the log |
//!
//! Rates come from this process's counters (the same ones `/metrics` exposes), sampled at
//! each check: with several `serve` processes each judges its own traffic.

use anyhow::Context;
use payledger_app::clock::{Clock, SystemClock};
use payledger_gateway::{CircuitState, PaymentGateway};
use payledger_webhooks::{sign_standard_webhook, StandardWebhookKey, WebhookSecret};
use serde::Serialize;
use sqlx::PgPool;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

/// How often `serve` checks.
pub const ALERT_CHECK_INTERVAL_MS: u64 = 60_000;
/// Samples kept: a day of checks, the longest window.
const MAX_SAMPLES: usize = 24 * 60 + 1;
const ALERT_TIMEOUT_MS: u64 = 10_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertThresholds {
    /// Mismatches per 10,000 confirmations above which `amount_mismatch_rate` fires (10 = 0.1 %).
    pub mismatch_rate_bps: u64,
    pub mismatch_window_s: i64,
    pub mismatch_min_attempts: u64,
    /// Signature failures per 10,000 inbound webhooks (200 = 2 %).
    pub signature_failure_rate_bps: u64,
    pub signature_window_s: i64,
    pub signature_min_deliveries: u64,
    pub projector_lag_ms: i64,
}

impl Default for AlertThresholds {
    fn default() -> Self {
        AlertThresholds {
            mismatch_rate_bps: 10,
            mismatch_window_s: 24 * 3600,
            mismatch_min_attempts: 100,
            signature_failure_rate_bps: 200,
            signature_window_s: 5 * 60,
            signature_min_deliveries: 20,
            projector_lag_ms: 30_000,
        }
    }
}

/// Where alerts go; `None` url: the channel is off (Prometheus rules still apply).
#[derive(Clone, Default)]
pub struct AlertSettings {
    pub url: Option<String>,
    pub key: Option<Arc<StandardWebhookKey>>,
    pub thresholds: AlertThresholds,
    pub interval_ms: u64,
}

impl std::fmt::Debug for AlertSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertSettings")
            .field("url", &self.url.as_ref().map(|_| "***"))
            .field("thresholds", &self.thresholds)
            .field("interval_ms", &self.interval_ms)
            .finish()
    }
}

impl AlertSettings {
    /// `PAYLEDGER_ALERT_WEBHOOK_URL` and `PAYLEDGER_ALERT_WEBHOOK_SECRET` (`whsec_…`, required
    /// with the URL: every alert is signed).
    pub fn from_env() -> anyhow::Result<AlertSettings> {
        let url = crate::settings::var("PAYLEDGER_ALERT_WEBHOOK_URL")
            .ok()
            .filter(|u| !u.trim().is_empty());
        let Some(url) = url else {
            return Ok(AlertSettings {
                interval_ms: ALERT_CHECK_INTERVAL_MS,
                ..AlertSettings::default()
            });
        };
        let secret = crate::settings::var("PAYLEDGER_ALERT_WEBHOOK_SECRET").context(
            "PAYLEDGER_ALERT_WEBHOOK_SECRET must be set with PAYLEDGER_ALERT_WEBHOOK_URL",
        )?;
        AlertSettings::new(url, &WebhookSecret::new(secret))
    }

    pub fn new(url: String, secret: &WebhookSecret) -> anyhow::Result<AlertSettings> {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            anyhow::bail!("the alert webhook URL must be http(s)");
        }
        let key = StandardWebhookKey::from_secret(secret)
            .map_err(|e| anyhow::anyhow!("the alert webhook secret: {e}"))?;
        Ok(AlertSettings {
            url: Some(url),
            key: Some(Arc::new(key)),
            thresholds: AlertThresholds::default(),
            interval_ms: ALERT_CHECK_INTERVAL_MS,
        })
    }
}

/// One alert as sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub alert: &'static str,
    /// `critical` or `warning`.
    pub severity: &'static str,
    pub summary: String,
    /// What was measured (a count, basis points of a rate, milliseconds of lag).
    pub value: i64,
    pub threshold: i64,
    /// The operations.md playbook to follow.
    pub runbook: &'static str,
}

#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    at_s: i64,
    confirmations: u64,
    mismatches: u64,
    webhooks: u64,
    signature_failures: u64,
}

fn signature_failures() -> u64 {
    let metrics = payledger_metrics::metrics();
    let mut total = 0;
    for provider in ["toss", "stripe", "paddle", "standard"] {
        for code in [
            "E_WEBHOOK_SIGNATURE_MISMATCH",
            "E_WEBHOOK_TIMESTAMP_OUT_OF_TOLERANCE",
        ] {
            total += metrics
                .webhooks_rejected
                .get_or_create(&payledger_metrics::RejectionLabels { provider, code })
                .get();
        }
    }
    total
}

fn webhooks_received() -> u64 {
    let metrics = payledger_metrics::metrics();
    let mut total = 0;
    for provider in ["toss", "stripe", "paddle", "standard"] {
        for outcome in ["accepted", "duplicate", "rejected"] {
            total += metrics
                .webhooks_received
                .get_or_create(&payledger_metrics::WebhookLabels { provider, outcome })
                .get();
        }
    }
    total
}

pub struct AlertMonitor {
    settings: AlertSettings,
    pool: PgPool,
    gateway: Arc<dyn PaymentGateway>,
    http: reqwest::Client,
    samples: VecDeque<Sample>,
    /// Alerts firing now, by name (sent once when they started).
    firing: BTreeMap<&'static str, Alert>,
}

/// `numerator / denominator` in basis points, rounded down; 0 for no traffic.
fn rate_bps(numerator: u64, denominator: u64) -> u64 {
    numerator
        .saturating_mul(10_000)
        .checked_div(denominator)
        .unwrap_or(0)
}

/// The change of the counters over the last `window_s` (from the oldest sample in it).
fn delta(samples: &VecDeque<Sample>, window_s: i64) -> Sample {
    let Some(last) = samples.back() else {
        return Sample::default();
    };
    let Some(first) = samples.iter().find(|s| s.at_s >= last.at_s - window_s) else {
        return Sample::default();
    };
    Sample {
        at_s: last.at_s - first.at_s,
        confirmations: last.confirmations.saturating_sub(first.confirmations),
        mismatches: last.mismatches.saturating_sub(first.mismatches),
        webhooks: last.webhooks.saturating_sub(first.webhooks),
        signature_failures: last
            .signature_failures
            .saturating_sub(first.signature_failures),
    }
}

impl AlertMonitor {
    pub fn new(
        settings: AlertSettings,
        pool: PgPool,
        gateway: Arc<dyn PaymentGateway>,
    ) -> anyhow::Result<AlertMonitor> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(ALERT_TIMEOUT_MS))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("failed to build the alert HTTP client")?;
        Ok(AlertMonitor {
            settings,
            pool,
            gateway,
            http,
            samples: VecDeque::new(),
            firing: BTreeMap::new(),
        })
    }

    fn sample(&mut self, at_s: i64) {
        let metrics = payledger_metrics::metrics();
        self.samples.push_back(Sample {
            at_s,
            confirmations: metrics.confirmation_attempts.get(),
            mismatches: metrics.amount_mismatches.get(),
            webhooks: webhooks_received(),
            signature_failures: signature_failures(),
        });
        while self.samples.len() > MAX_SAMPLES {
            self.samples.pop_front();
        }
    }

    /// What is wrong now.
    pub async fn conditions(&mut self) -> Result<Vec<Alert>, sqlx::Error> {
        let t = self.settings.thresholds.clone();
        self.sample(SystemClock.now().timestamp());
        let mut alerts = Vec::new();

        let dead: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM webhook_inbox WHERE status = 'dead') \
                  + (SELECT count(*) FROM webhook_outbox WHERE status = 'dead') \
                  + (SELECT count(*) FROM process_dead_letters)",
        )
        .fetch_one(&self.pool)
        .await?;
        if dead > 0 {
            alerts.push(Alert {
                alert: "dead_letters",
                severity: "critical",
                summary: format!("{dead} item(s) in the dead-letter queues: payledger webhooks dlq list, payledger notifications dlq list, process_dead_letters"),
                value: dead,
                threshold: 0,
                runbook: "docs/operations.md#webhooks",
            });
        }
        if self.gateway.circuit_state() == CircuitState::Open {
            alerts.push(Alert {
                alert: "circuit_open",
                severity: "critical",
                summary: "the payment provider's circuit breaker is open: new payments fail fast with 503".into(),
                value: 1,
                threshold: 0,
                runbook: "docs/operations.md#provider-5xx-storm-e_provider_unavailable-provider-failures-circuit-open",
            });
        }
        let day = delta(&self.samples, t.mismatch_window_s);
        let mismatch_bps = rate_bps(day.mismatches, day.confirmations);
        if day.confirmations >= t.mismatch_min_attempts && mismatch_bps > t.mismatch_rate_bps {
            alerts.push(Alert {
                alert: "amount_mismatch_rate",
                severity: "warning",
                summary: format!(
                    "{} of {} confirmations were amount mismatches ({}.{:02} %, SLO < 0.1 %)",
                    day.mismatches,
                    day.confirmations,
                    mismatch_bps / 100,
                    mismatch_bps % 100
                ),
                value: mismatch_bps as i64,
                threshold: t.mismatch_rate_bps as i64,
                runbook: "docs/operations.md#amount-mismatch-surge-e_amount_mismatch-alert-on-payledger_amount_mismatches_total",
            });
        }
        let recent = delta(&self.samples, t.signature_window_s);
        let signature_bps = rate_bps(recent.signature_failures, recent.webhooks);
        if recent.webhooks >= t.signature_min_deliveries
            && signature_bps > t.signature_failure_rate_bps
        {
            alerts.push(Alert {
                alert: "webhook_signature_failure_rate",
                severity: "warning",
                summary: format!(
                    "{} of {} inbound webhooks failed their signature in 5 minutes (> 2 %)",
                    recent.signature_failures, recent.webhooks
                ),
                value: signature_bps as i64,
                threshold: t.signature_failure_rate_bps as i64,
                runbook: "docs/operations.md#signature-forgery-attempts-e_webhook_signature_mismatch-payledger_webhooks_rejected_total",
            });
        }
        let lag_ms = payledger_projector::status(&self.pool)
            .await
            .map(|s| s.iter().map(|p| p.lag_ms).max().unwrap_or(0))
            .unwrap_or(0);
        if lag_ms > t.projector_lag_ms {
            alerts.push(Alert {
                alert: "projector_lag",
                severity: "warning",
                summary: format!("a read model is {} s behind the log", lag_ms / 1000),
                value: lag_ms,
                threshold: t.projector_lag_ms,
                runbook: "docs/operations.md#a-read-model-looks-wrong-support-sees-an-order-or-a-statement-that-disagrees-with-its-timeline",
            });
        }
        Ok(alerts)
    }

    /// One check: sends what started and what ended; returns what was sent.
    pub async fn check_once(&mut self) -> Result<Vec<(String, Alert)>, sqlx::Error> {
        let now: BTreeMap<&'static str, Alert> = self
            .conditions()
            .await?
            .into_iter()
            .map(|a| (a.alert, a))
            .collect();
        let mut changes = Vec::new();
        for (name, alert) in &now {
            if !self.firing.contains_key(name) {
                changes.push(("alert.firing".to_string(), alert.clone()));
            }
        }
        for (name, alert) in &self.firing {
            if !now.contains_key(name) {
                changes.push(("alert.resolved".to_string(), alert.clone()));
            }
        }
        let mut sent = Vec::new();
        for (kind, alert) in changes {
            match self.send(&kind, &alert).await {
                Ok(()) => {
                    if kind == "alert.firing" {
                        self.firing.insert(alert.alert, alert.clone());
                    } else {
                        self.firing.remove(alert.alert);
                    }
                    sent.push((kind, alert));
                }
                // Not marked as sent: the next check tries again.
                Err(error) => {
                    tracing::error!(alert = alert.alert, %error, "failed to send an alert")
                }
            }
        }
        Ok(sent)
    }

    async fn send(&self, kind: &str, alert: &Alert) -> anyhow::Result<()> {
        let (Some(url), Some(key)) = (&self.settings.url, &self.settings.key) else {
            return Ok(());
        };
        let timestamp = SystemClock.now().timestamp();
        // Unique per alert, change and second; a receiver de-duplicates retries on it.
        let message_id = format!("alert_{}_{kind}_{timestamp}", alert.alert);
        let body = serde_json::json!({
            "type": kind,
            "timestamp": SystemClock.now().to_rfc3339(),
            "data": alert,
        })
        .to_string();
        let signature = sign_standard_webhook(key, &message_id, timestamp, body.as_bytes());
        let response = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &message_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.without_url()))?;
        if !response.status().is_success() {
            anyhow::bail!("the alert endpoint answered {}", response.status());
        }
        Ok(())
    }

    /// Checks every `interval_ms` until aborted.
    pub async fn run(mut self) {
        let every = Duration::from_millis(self.settings.interval_ms.max(1_000));
        loop {
            tokio::time::sleep(every).await;
            match self.check_once().await {
                Ok(sent) if !sent.is_empty() => tracing::warn!(sent = sent.len(), "alerts sent"),
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "alert check failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_s: i64, confirmations: u64, mismatches: u64) -> Sample {
        Sample {
            at_s,
            confirmations,
            mismatches,
            ..Sample::default()
        }
    }

    #[test]
    fn a_rate_is_the_change_within_the_window_not_a_count_since_start() {
        // 10 mismatches long ago, then 1,000 clean confirmations and 2 mismatches in the window.
        let samples: VecDeque<Sample> = [
            sample(0, 100, 10),
            sample(3_600, 200, 10),
            sample(7_200, 1_200, 12),
        ]
        .into();
        let window = delta(&samples, 3_600);
        assert_eq!((window.confirmations, window.mismatches), (1_000, 2));
        // 0.2 % in the window (above the 0.1 % SLO); counted since the start it would read 1 %:
        // the window is what counts.
        assert_eq!(rate_bps(window.mismatches, window.confirmations), 20);
        assert_eq!(rate_bps(12, 1_200), 100);
        assert_eq!(rate_bps(1, 0), 0, "no traffic is no rate");
        assert_eq!(delta(&VecDeque::new(), 60).confirmations, 0);
    }
}
