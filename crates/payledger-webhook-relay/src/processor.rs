//! The inbound worker: applies stored deliveries, retries on the Standard Webhooks schedule,
//! dead-letters after the last attempt, and records each step in the delivery's stream.
//!
//! Rows are claimed by pushing `next_attempt_at` ahead by a lease (`FOR UPDATE SKIP LOCKED`
//! inside one short statement, no transaction held during provider calls), so several `serve`
//! processes share the queue and a crashed worker's rows come back when the lease ends.
//! Applying is idempotent (re-fetch and version-checked commands), so the rare second run of a
//! delivery after a lost lease changes nothing.

use chrono::{DateTime, Utc};
use payledger_app::payments::Payments;
use payledger_domain::webhook::{
    VerificationMethod, WebhookApplied, WebhookAttemptFailed, WebhookDeadLettered,
    WebhookDeliveryEvent, WebhookOutcome, WebhookReceived, WebhookVerified,
};
use payledger_metrics::metrics;
use sha2::{Digest, Sha256};
use sqlx::Row;
use std::sync::Arc;
use std::time::Duration;

pub(crate) use crate::applied::{Applied, Failure};
use crate::deliveries;
use crate::inbox::Relay;
use crate::provider::Provider;
use crate::short;

/// Deliveries claimed per round.
const CLAIM_BATCH: i64 = 20;
/// How long a claimed delivery is held before another worker may take it.
const LEASE_SECONDS: i64 = 300;
const ACTOR: &str = "system:webhooks";

struct Claimed {
    id: i64,
    provider: String,
    event_id: String,
    event_type: Option<String>,
    delivery_id: Option<String>,
    scheme: String,
    secret_index: Option<i16>,
    must_refetch: bool,
    raw_body: Vec<u8>,
    attempts: i32,
    received_at: DateTime<Utc>,
    /// The request that delivered it, carried by its events' metadata.
    request_id: Option<String>,
}

/// What happened to one delivery in one round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Processed {
    Applied,
    Retry,
    DeadLettered,
    /// Its events could not be recorded; the lease brings it back.
    Deferred,
}

pub struct InboundWorker {
    relay: Arc<Relay>,
    payments: Arc<Payments>,
    /// Re-fetches of unsigned deliveries; `None`: the payments' own gateway.
    lookups: Option<Arc<dyn payledger_gateway::PaymentGateway>>,
}

impl InboundWorker {
    pub fn new(relay: Arc<Relay>, payments: Arc<Payments>) -> InboundWorker {
        InboundWorker {
            relay,
            payments,
            lookups: None,
        }
    }

    /// Re-fetches through `gateway` (a second instance with its own circuit breaker), so that
    /// a flood of unsigned deliveries cannot open the circuit real payments go through.
    pub fn with_lookup_gateway(
        mut self,
        gateway: Arc<dyn payledger_gateway::PaymentGateway>,
    ) -> InboundWorker {
        self.lookups = Some(gateway);
        self
    }

    /// Processes due deliveries forever; wakes on new deliveries or every poll interval.
    pub async fn run(self) {
        let poll = Duration::from_millis(self.relay.settings.poll_interval_ms.max(10));
        loop {
            match self.run_once().await {
                Ok(processed) if processed.len() as i64 == CLAIM_BATCH => continue,
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "webhook worker round failed"),
            }
            tokio::select! {
                _ = self.relay.wakeup.notified() => {}
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// One round: claims due deliveries and processes them.
    pub async fn run_once(&self) -> Result<Vec<Processed>, sqlx::Error> {
        let now = self.relay.clock.now();
        let rows = sqlx::query(
            "UPDATE webhook_inbox SET next_attempt_at = $2 \
             WHERE id IN (SELECT id FROM webhook_inbox \
                WHERE status = 'pending' AND next_attempt_at <= $1 \
                ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED) \
             RETURNING id, provider, event_id, event_type, delivery_id, scheme, secret_index, \
                must_refetch, raw_body, attempts, received_at, headers",
        )
        .bind(now)
        .bind(now + chrono::Duration::seconds(LEASE_SECONDS))
        .bind(CLAIM_BATCH)
        .fetch_all(&self.relay.pool)
        .await?;
        let mut processed = Vec::with_capacity(rows.len());
        for row in rows {
            let claimed = Claimed {
                id: row.try_get("id")?,
                provider: row.try_get("provider")?,
                event_id: row.try_get("event_id")?,
                event_type: row.try_get("event_type")?,
                delivery_id: row.try_get("delivery_id")?,
                scheme: row.try_get("scheme")?,
                secret_index: row.try_get("secret_index")?,
                must_refetch: row.try_get("must_refetch")?,
                raw_body: row.try_get("raw_body")?,
                attempts: row.try_get("attempts")?,
                received_at: row.try_get("received_at")?,
                request_id: row
                    .try_get::<serde_json::Value, _>("headers")?
                    .get("requestId")
                    .and_then(|v| v.as_str())
                    .map(str::to_string),
            };
            processed.push(self.process(claimed).await?);
        }
        Ok(processed)
    }

    async fn process(&self, row: Claimed) -> Result<Processed, sqlx::Error> {
        let now = self.relay.clock.now();
        let attempt = u32::try_from(row.attempts).unwrap_or(0) + 1;
        let result = match Provider::parse(&row.provider) {
            Some(Provider::Toss) if row.must_refetch => {
                let lookups = self.lookups.as_ref().unwrap_or(self.payments.gateway());
                crate::toss::apply_payment_status(
                    &self.payments,
                    lookups.as_ref(),
                    &row.event_id,
                    &row.raw_body,
                    now,
                )
                .await
            }
            // Signed deliveries of a provider whose connector interprets its webhooks: acted on
            // after the connector re-checks them against the provider's API (`rechecked`).
            Some(provider @ Provider::Stripe) => {
                match self.payments.providers().get(provider.as_str()) {
                    Ok(connector) => {
                        let delivery = crate::rechecked::Delivery {
                            provider: &row.provider,
                            event_id: &row.event_id,
                            scheme: &row.scheme,
                            secret_index: row.secret_index.and_then(|i| u8::try_from(i).ok()),
                            raw_body: &row.raw_body,
                        };
                        crate::rechecked::apply(&self.payments, connector.as_ref(), &delivery, now)
                            .await
                    }
                    // No connector to re-check with: kept on record, as before one existed.
                    Err(_) => Ok(record_signed(provider, &row, now)),
                }
            }
            Some(Provider::Paddle) => match self.relay.paddle.get() {
                Some(paddle) => {
                    paddle
                        .apply(
                            &row.event_id,
                            &row.scheme,
                            row.secret_index.and_then(|i| u8::try_from(i).ok()),
                            &row.raw_body,
                            now,
                        )
                        .await
                }
                None => Ok(record_signed(Provider::Paddle, &row, now)),
            },
            Some(provider) => Ok(record_signed(provider, &row, now)),
            None => Err(Failure::permanent(None, "no such provider")),
        };
        let next_attempt_at = match &result {
            Ok(_) => None,
            Err(failure) if failure.permanent => None,
            Err(_) => self
                .relay
                .settings
                .retry
                .inbound_delay_after(attempt)
                .and_then(|delay| chrono::Duration::from_std(delay).ok())
                .map(|delay| now + delay),
        };
        let outcome = match (&result, next_attempt_at) {
            (Ok(_), _) => Processed::Applied,
            (Err(_), Some(_)) => Processed::Retry,
            (Err(_), None) => Processed::DeadLettered,
        };
        let body_sha256 = hex::encode(Sha256::digest(&row.raw_body));
        let recorded = deliveries::append(
            &self.relay.store,
            &row.provider,
            &row.event_id,
            ACTOR,
            row.request_id.as_deref(),
            |recorded| {
                let order_id = match &result {
                    Ok(applied) => applied.order_id.clone(),
                    Err(failure) => failure.order_id.clone(),
                }
                .or_else(|| recorded.order_id.clone());
                let mut events = Vec::new();
                if !recorded.received {
                    events.push(WebhookDeliveryEvent::WebhookReceived(WebhookReceived {
                        provider: row.provider.clone(),
                        event_id: row.event_id.clone(),
                        event_type: row.event_type.clone(),
                        delivery_id: row.delivery_id.clone(),
                        inbox_id: row.id,
                        body_sha256: body_sha256.clone(),
                        body_bytes: row.raw_body.len() as i64,
                        received_at: row.received_at,
                        order_id: order_id.clone(),
                    }));
                }
                match &result {
                    Ok(applied) => {
                        if let (false, Some(verified)) = (recorded.verified, &applied.verified) {
                            events.push(WebhookDeliveryEvent::WebhookVerified(verified.clone()));
                        }
                        if let Some(differs) = &applied.differs {
                            events
                                .push(WebhookDeliveryEvent::ProviderStateDiffers(differs.clone()));
                        }
                        events.push(WebhookDeliveryEvent::WebhookApplied(WebhookApplied {
                            provider: row.provider.clone(),
                            event_id: row.event_id.clone(),
                            outcome: applied.outcome,
                            detail: short(&applied.detail),
                            order_id: order_id.clone(),
                            at: now,
                        }));
                    }
                    Err(failure) => {
                        events.push(WebhookDeliveryEvent::WebhookAttemptFailed(
                            WebhookAttemptFailed {
                                provider: row.provider.clone(),
                                event_id: row.event_id.clone(),
                                attempt,
                                error: short(&failure.error),
                                next_attempt_at,
                                order_id: order_id.clone(),
                                at: now,
                            },
                        ));
                        if next_attempt_at.is_none() {
                            events.push(WebhookDeliveryEvent::WebhookDeadLettered(
                                WebhookDeadLettered {
                                    provider: row.provider.clone(),
                                    event_id: row.event_id.clone(),
                                    attempts: attempt,
                                    last_error: short(&failure.error),
                                    order_id: order_id.clone(),
                                    at: now,
                                },
                            ));
                        }
                    }
                }
                events
            },
        )
        .await;
        if let Err(error) = recorded {
            tracing::warn!(inbox_id = row.id, %error, "failed to record a webhook's events; retrying after the lease");
            return Ok(Processed::Deferred);
        }
        let error_text = result.as_ref().err().map(|f| short(&f.error));
        let provider_label = Provider::parse(&row.provider).map_or("unknown", Provider::as_str);
        match outcome {
            Processed::Applied => {
                sqlx::query(
                    "UPDATE webhook_inbox SET status = 'applied', attempts = $2, processed_at = $3, \
                        last_error = NULL WHERE id = $1 AND status = 'pending'",
                )
                .bind(row.id)
                .bind(attempt as i32)
                .bind(now)
                .execute(&self.relay.pool)
                .await?;
                metrics().webhook_processed(provider_label, "applied");
            }
            Processed::Retry => {
                sqlx::query(
                    "UPDATE webhook_inbox SET attempts = $2, next_attempt_at = $3, last_error = $4 \
                     WHERE id = $1 AND status = 'pending'",
                )
                .bind(row.id)
                .bind(attempt as i32)
                .bind(next_attempt_at)
                .bind(&error_text)
                .execute(&self.relay.pool)
                .await?;
                metrics().webhook_processed(provider_label, "retry");
                tracing::info!(
                    inbox_id = row.id,
                    attempt,
                    error = error_text,
                    "webhook processing will be retried"
                );
            }
            Processed::DeadLettered | Processed::Deferred => {
                sqlx::query(
                    "UPDATE webhook_inbox SET status = 'dead', attempts = $2, dead_lettered_at = $3, \
                        last_error = $4 WHERE id = $1 AND status = 'pending'",
                )
                .bind(row.id)
                .bind(attempt as i32)
                .bind(now)
                .bind(&error_text)
                .execute(&self.relay.pool)
                .await?;
                metrics().webhook_processed(provider_label, "dead_lettered");
                tracing::warn!(
                    inbox_id = row.id,
                    provider = row.provider,
                    attempts = attempt,
                    error = error_text,
                    "webhook dead-lettered"
                );
            }
        }
        Ok(outcome)
    }
}

/// Signed deliveries of senders payledger takes no ledger action for (Paddle, Standard Webhooks
/// senders, Toss payout and seller events, Stripe on a deployment without the Stripe connector): verified, kept on record, and
/// shown in the timeline of the order their signed body names.
fn record_signed(provider: Provider, row: &Claimed, now: DateTime<Utc>) -> Applied {
    let body: serde_json::Value = serde_json::from_slice(&row.raw_body).unwrap_or_default();
    let order_id = provider.body_order_id(&body).map(|id| id.to_string());
    Applied {
        verified: Some(WebhookVerified {
            provider: row.provider.clone(),
            event_id: row.event_id.clone(),
            method: VerificationMethod::Signature,
            scheme: row.scheme.clone(),
            secret_index: row.secret_index.and_then(|i| u8::try_from(i).ok()),
            provider_status: None,
            order_id: order_id.clone(),
            at: now,
        }),
        order_id,
        differs: None,
        outcome: WebhookOutcome::Recorded,
        detail: format!(
            "payledger takes no ledger action on {} events; the delivery is kept on record",
            row.event_type.as_deref().unwrap_or("untyped")
        ),
    }
}
