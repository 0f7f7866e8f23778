//! The notification sender: delivers outbox rows as Standard Webhooks.
//!
//! Each attempt sends the row's fixed body with `webhook-id` = the event id (the same on every
//! retry, so the receiver de-duplicates), `webhook-timestamp` = now (so a retry hours later is
//! not refused as stale) and `webhook-signature` over both (two signatures while a secret
//! rotates). A 2xx answer delivers it; anything else, or no answer within the timeout, is retried
//! on the Standard Webhooks schedule and dead-lettered after the last attempt. Rows are claimed
//! with a lease like inbound deliveries, so several `serve` processes share the work; delivery is
//! at least once (a crash after the receiver's 2xx, before the row is updated, sends it again).

use chrono::{DateTime, Utc};
use futures::StreamExt;
use payledger_app::clock::Clock;
use payledger_metrics::metrics;
use payledger_webhooks::sign_standard_webhook;
use sqlx::{PgPool, Row};
use std::sync::Arc;
use std::time::Duration;

use crate::config::WebhookSettings;
use crate::short;

const CLAIM_BATCH: i64 = 50;
/// Deliveries in flight at once per process.
const MAX_CONCURRENT_DELIVERIES: usize = 8;
/// Bytes of a failed answer kept for the dead-letter list.
const MAX_ERROR_BODY_BYTES: usize = 200;

struct Due {
    id: i64,
    message_id: String,
    endpoint_url: String,
    body: String,
    attempts: i32,
}

/// How one delivery attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    Delivered,
    Retry,
    DeadLettered,
}

pub struct NotificationSender {
    pool: PgPool,
    settings: WebhookSettings,
    clock: Arc<dyn Clock>,
    client: reqwest::Client,
}

impl NotificationSender {
    pub fn new(
        pool: PgPool,
        settings: WebhookSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<NotificationSender, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.outbound.timeout_ms.max(100)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("payledger-webhooks/1")
            .build()?;
        Ok(NotificationSender {
            pool,
            settings,
            clock,
            client,
        })
    }

    /// Delivers due notifications forever.
    pub async fn run(self) {
        let poll = Duration::from_millis(self.settings.poll_interval_ms.max(10));
        loop {
            match self.run_once().await {
                Ok(sent) if sent.len() as i64 == CLAIM_BATCH => continue,
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "notification sender round failed"),
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// One round: claims due rows and delivers them, a few at a time.
    pub async fn run_once(&self) -> Result<Vec<Sent>, sqlx::Error> {
        let now = self.clock.now();
        // The lease outlasts one attempt by far, so a live sender never loses its row.
        let lease = chrono::Duration::milliseconds(self.settings.outbound.timeout_ms as i64 * 4)
            + chrono::Duration::seconds(30);
        let rows = sqlx::query(
            "UPDATE webhook_outbox SET next_attempt_at = $2 \
             WHERE id IN (SELECT id FROM webhook_outbox \
                WHERE status = 'pending' AND next_attempt_at <= $1 \
                ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED) \
             RETURNING id, message_id, endpoint_url, body, attempts",
        )
        .bind(now)
        .bind(now + lease)
        .bind(CLAIM_BATCH)
        .fetch_all(&self.pool)
        .await?;
        let due = rows
            .iter()
            .map(|row| {
                Ok(Due {
                    id: row.try_get("id")?,
                    message_id: row.try_get("message_id")?,
                    endpoint_url: row.try_get("endpoint_url")?,
                    body: row.try_get("body")?,
                    attempts: row.try_get("attempts")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let results: Vec<Result<Sent, sqlx::Error>> = futures::stream::iter(due)
            .map(|row| self.deliver(row))
            .buffer_unordered(MAX_CONCURRENT_DELIVERIES)
            .collect()
            .await;
        results.into_iter().collect()
    }

    async fn deliver(&self, row: Due) -> Result<Sent, sqlx::Error> {
        let attempt = u32::try_from(row.attempts).unwrap_or(0) + 1;
        let answer = self.post(&row).await;
        let now = self.clock.now();
        match answer {
            Ok(()) => {
                sqlx::query(
                    "UPDATE webhook_outbox SET status = 'delivered', attempts = $2, \
                        delivered_at = $3, last_error = NULL, last_status_code = NULL \
                     WHERE id = $1 AND status = 'pending'",
                )
                .bind(row.id)
                .bind(attempt as i32)
                .bind(now)
                .execute(&self.pool)
                .await?;
                metrics().notification_delivery("delivered");
                Ok(Sent::Delivered)
            }
            Err((status_code, error)) => self.failed(&row, attempt, status_code, &error, now).await,
        }
    }

    async fn failed(
        &self,
        row: &Due,
        attempt: u32,
        status_code: Option<u16>,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<Sent, sqlx::Error> {
        let next = self
            .settings
            .retry
            .delay_after(attempt)
            .and_then(|delay| chrono::Duration::from_std(delay).ok())
            .map(|delay| now + delay);
        let status_code = status_code.map(i32::from);
        match next {
            Some(next_attempt_at) => {
                sqlx::query(
                    "UPDATE webhook_outbox SET attempts = $2, next_attempt_at = $3, \
                        last_error = $4, last_status_code = $5 \
                     WHERE id = $1 AND status = 'pending'",
                )
                .bind(row.id)
                .bind(attempt as i32)
                .bind(next_attempt_at)
                .bind(error)
                .bind(status_code)
                .execute(&self.pool)
                .await?;
                metrics().notification_delivery("failed");
                tracing::info!(
                    outbox_id = row.id,
                    attempt,
                    error,
                    "notification delivery failed; will retry"
                );
                Ok(Sent::Retry)
            }
            None => {
                sqlx::query(
                    "UPDATE webhook_outbox SET status = 'dead', attempts = $2, \
                        dead_lettered_at = $3, last_error = $4, last_status_code = $5 \
                     WHERE id = $1 AND status = 'pending'",
                )
                .bind(row.id)
                .bind(attempt as i32)
                .bind(now)
                .bind(error)
                .bind(status_code)
                .execute(&self.pool)
                .await?;
                metrics().notification_delivery("dead_lettered");
                tracing::warn!(
                    outbox_id = row.id,
                    attempts = attempt,
                    error,
                    "notification dead-lettered"
                );
                Ok(Sent::DeadLettered)
            }
        }
    }

    /// One HTTP attempt. `Err((status, description))` when it did not deliver.
    async fn post(&self, row: &Due) -> Result<(), (Option<u16>, String)> {
        // The receiver checks this against its wall clock (replay tolerance), so it is ours too,
        // also when a scenario clock runs the ledger.
        let timestamp = payledger_app::clock::SystemClock.now().timestamp();
        let signature = self
            .settings
            .outbound
            .keys
            .iter()
            .map(|key| sign_standard_webhook(key, &row.message_id, timestamp, row.body.as_bytes()))
            .collect::<Vec<_>>()
            .join(" ");
        if signature.is_empty() {
            return Err((None, "no signing secret is configured".into()));
        }
        let response = self
            .client
            .post(&row.endpoint_url)
            .header("content-type", "application/json")
            .header("webhook-id", &row.message_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(row.body.clone())
            .send()
            .await
            .map_err(|e| {
                let kind = if e.is_timeout() {
                    "no answer within the timeout"
                } else if e.is_connect() {
                    "the endpoint refused the connection"
                } else {
                    "the request failed"
                };
                (None, kind.to_string())
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let bytes = response.bytes().await.unwrap_or_default();
        let excerpt = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_ERROR_BODY_BYTES)])
            .chars()
            .filter(|c| !c.is_control())
            .collect::<String>();
        Err((
            Some(status.as_u16()),
            short(format!(
                "the endpoint answered {}: {excerpt}",
                status.as_u16()
            )),
        ))
    }
}
