//! Accepting inbound deliveries: verify on the raw body, store, answer. And the dead-letter queue.

use chrono::{DateTime, Utc};
use payledger_app::clock::Clock;
use payledger_domain::webhook::{WebhookDeliveryEvent, WebhookReplayRequested};
use payledger_metrics::metrics;
use payledger_store::EventStore;
use payledger_webhooks::{verify, HeaderSource, Scheme, SignatureError};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Row};
use std::sync::Arc;

use crate::config::{WebhookSettings, MAX_WEBHOOK_BODY_BYTES};
use crate::deliveries::{self, StreamError};
use crate::intake::{self, IntakeLimiter, LimitHit};
use crate::provider::{usable_event_id, Provider};
use crate::short;
use crate::toss::RefetchKey;

const TOSS_SIGNATURE_HEADER: &str = "tosspayments-webhook-signature";
const TOSS_TRANSMISSION_TIME_HEADER: &str = "tosspayments-webhook-transmission-time";

/// Shared by the HTTP handlers, the worker and the CLI.
pub struct Relay {
    pub pool: PgPool,
    pub store: EventStore,
    pub settings: WebhookSettings,
    pub clock: Arc<dyn Clock>,
    /// Wakes this process's inbound worker when a delivery is stored.
    pub wakeup: tokio::sync::Notify,
    /// Counts unsigned deliveries per source and in total (`intake`).
    pub limiter: IntakeLimiter,
    /// Applies Paddle notifications once set ([`Relay::apply_paddle_with`]); until then they are
    /// verified and kept on record only.
    pub(crate) paddle: std::sync::OnceLock<Arc<crate::paddle::PaddleApplier>>,
    started: std::time::Instant,
}

/// A delivery stored (or found stored already).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub inbox_id: i64,
    pub event_id: String,
    /// The event was delivered before: nothing new was stored.
    pub duplicate: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// Forged, stale or malformed signature headers, or payledger's own misconfiguration
    /// ([`SignatureError::is_misconfiguration`]).
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error("the webhook body is not usable: {0}")]
    PayloadInvalid(&'static str),
    #[error("the webhook body is larger than {MAX_WEBHOOK_BODY_BYTES} bytes")]
    BodyTooLarge,
    #[error("too many unsigned deliveries {}; try again in a minute", limit_scope(*.0))]
    RateLimited(LimitHit),
    #[error("failed to store the webhook: {0}")]
    Database(#[from] sqlx::Error),
}

fn limit_scope(hit: LimitHit) -> &'static str {
    match hit {
        LimitHit::PerSource => "from this source",
        LimitHit::Total => "in total",
    }
}

impl AcceptError {
    /// The stable error code answered and counted.
    pub fn code(&self) -> &'static str {
        match self {
            AcceptError::Signature(e) => e.code(),
            AcceptError::PayloadInvalid(_) => "E_WEBHOOK_PAYLOAD_INVALID",
            AcceptError::BodyTooLarge => "E_BODY_TOO_LARGE",
            AcceptError::RateLimited(_) => "E_WEBHOOK_RATE_LIMITED",
            AcceptError::Database(_) => "E_UNAVAILABLE",
        }
    }
}

/// What verification and parsing established before storing.
struct Checked {
    scheme: Scheme,
    secret_index: Option<usize>,
    must_refetch: bool,
    delivery_id: Option<String>,
    event_id: String,
    event_type: Option<String>,
    /// Unsigned Toss: the payment to re-fetch, the only thing kept of the delivery.
    refetch: Option<RefetchKey>,
}

impl Relay {
    pub fn new(
        pool: PgPool,
        store: EventStore,
        settings: WebhookSettings,
        clock: Arc<dyn Clock>,
    ) -> Relay {
        Relay {
            pool,
            store,
            settings,
            clock,
            wakeup: tokio::sync::Notify::new(),
            limiter: IntakeLimiter::default(),
            paddle: std::sync::OnceLock::new(),
            started: std::time::Instant::now(),
        }
    }

    /// Every inbound worker of this relay applies Paddle notifications through `applier`
    /// (Paddle's API and the subscriptions). Set once, at startup.
    pub fn apply_paddle_with(&self, applier: Arc<crate::paddle::PaddleApplier>) {
        if self.paddle.set(applier).is_err() {
            tracing::warn!("the Paddle applier was set twice; the first one stays");
        }
    }

    /// Verifies one delivery against its raw body and stores it for the worker. Refusals are
    /// counted (metrics) and recorded (`webhook_rejections`, one row per code and minute).
    pub async fn accept(
        &self,
        provider: Provider,
        headers: &dyn HeaderSource<'_>,
        raw_body: &[u8],
        remote_addr: Option<&str>,
    ) -> Result<Accepted, AcceptError> {
        self.accept_request(provider, headers, raw_body, remote_addr, None)
            .await
    }

    /// [`Relay::accept`] for an HTTP request: `request_id` is kept with the delivery and carried
    /// by every event recorded for it.
    pub async fn accept_request(
        &self,
        provider: Provider,
        headers: &dyn HeaderSource<'_>,
        raw_body: &[u8],
        remote_addr: Option<&str>,
        request_id: Option<&str>,
    ) -> Result<Accepted, AcceptError> {
        let now = self.clock.now();
        let result = match self.check(provider, headers, raw_body) {
            Ok(checked) => match checked.refetch.clone() {
                Some(key) => match self.admit_unsigned(remote_addr) {
                    Ok(()) => {
                        self.store_refetch(provider, checked, &key, request_id, now)
                            .await
                    }
                    Err(error) => Err(error),
                },
                None => {
                    self.store_delivery(provider, checked, raw_body, request_id, now)
                        .await
                }
            },
            Err(error) => Err(error),
        };
        match &result {
            Ok(accepted) => tracing::info!(
                provider = provider.as_str(),
                event_id = accepted.event_id,
                duplicate = accepted.duplicate,
                remote_addr,
                "webhook accepted"
            ),
            Err(error) => tracing::debug!(
                provider = provider.as_str(),
                code = error.code(),
                "webhook not accepted"
            ),
        }
        match &result {
            Ok(accepted) if accepted.duplicate => {
                metrics().webhook_received(provider.as_str(), "duplicate")
            }
            Ok(_) => {
                metrics().webhook_received(provider.as_str(), "accepted");
                self.wakeup.notify_one();
            }
            Err(AcceptError::Database(_)) => {}
            Err(error) => {
                self.record_rejection(provider, error, remote_addr, now)
                    .await
            }
        }
        result
    }

    /// Counts a refusal the HTTP layer made before calling [`Relay::accept`] (body too large).
    pub async fn reject(&self, provider: Provider, error: &AcceptError, remote_addr: Option<&str>) {
        self.record_rejection(provider, error, remote_addr, self.clock.now())
            .await;
    }

    fn check(
        &self,
        provider: Provider,
        headers: &dyn HeaderSource<'_>,
        raw_body: &[u8],
    ) -> Result<Checked, AcceptError> {
        if raw_body.len() > MAX_WEBHOOK_BODY_BYTES {
            return Err(AcceptError::BodyTooLarge);
        }
        let scheme = match provider {
            Provider::Toss if headers.header(TOSS_SIGNATURE_HEADER).is_none() => {
                Scheme::TossUnsigned
            }
            other => other.signed_scheme(),
        };
        let verified = verify(
            scheme,
            headers,
            raw_body,
            self.settings.inbound.secrets_for(provider),
            // Replay protection is about real time: the sender signs with its wall clock, so the
            // tolerance is checked against ours, also when a scenario clock runs the ledger.
            payledger_app::clock::SystemClock.now(),
            match provider {
                Provider::Paddle => self.settings.inbound.paddle_tolerance,
                _ => self.settings.inbound.tolerance,
            },
        )?;
        // Parsed only after the signature held: nothing from an unverified body is looked at.
        let body: Value = serde_json::from_slice(raw_body)
            .map_err(|_| AcceptError::PayloadInvalid("the body is not a JSON object"))?;
        if !body.is_object() {
            return Err(AcceptError::PayloadInvalid("the body is not a JSON object"));
        }
        let event_id = match (provider, provider.body_event_id(&body)) {
            (_, Some(id)) => id.to_string(),
            (Provider::Standard, None) => verified
                .delivery_id
                .clone()
                .ok_or(AcceptError::PayloadInvalid("webhook-id is missing"))?,
            // Unsigned: decided when stored (`store_refetch`), never by the unsigned header.
            (Provider::Toss, None) if verified.must_refetch => "refetch".to_string(),
            // Signed Toss events (payout, seller): the signature covers the body and the
            // transmission time, not the transmission id, so the id is a digest of what was
            // signed: a redelivery is a duplicate, an unsigned header decides nothing.
            (Provider::Toss, None) => {
                let time = headers
                    .header(TOSS_TRANSMISSION_TIME_HEADER)
                    .unwrap_or_default();
                let mut signed = Sha256::new();
                signed.update(raw_body);
                signed.update(b":");
                signed.update(time.as_bytes());
                format!("sha256-{}", hex::encode(signed.finalize()))
            }
            (Provider::Stripe | Provider::Paddle, None) => {
                return Err(AcceptError::PayloadInvalid("the body has no event id"))
            }
        };
        if !usable_event_id(&event_id) {
            return Err(AcceptError::PayloadInvalid(
                "the event id must be 1 to 128 characters of A-Z a-z 0-9 - _ . : =",
            ));
        }
        let refetch = if verified.must_refetch {
            Some(
                crate::toss::refetch_key(&body).ok_or(AcceptError::PayloadInvalid(
                    "an unsigned Toss event must name a paymentKey or an orderId to re-fetch",
                ))?,
            )
        } else {
            None
        };
        Ok(Checked {
            refetch,
            scheme,
            secret_index: verified.secret_index,
            must_refetch: verified.must_refetch,
            delivery_id: verified.delivery_id,
            event_type: provider
                .body_event_type(&body)
                .map(|t| t.chars().take(200).collect()),
            event_id,
        })
    }

    /// Counts an unsigned delivery against the per-source and total limits.
    fn admit_unsigned(&self, remote_addr: Option<&str>) -> Result<(), AcceptError> {
        let now_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.limiter
            .admit(self.settings.inbound.unsigned_limits, remote_addr, now_ms)
            .map_err(AcceptError::RateLimited)
    }

    /// Stores a re-fetch prompt (unsigned Toss): only the key, and only when no re-fetch of that
    /// payment is already waiting unclaimed (then the delivery is a duplicate of it). Each new
    /// prompt after that one was claimed is a new generation, re-fetched on its own: a forged
    /// prompt can delay nothing and block nothing.
    async fn store_refetch(
        &self,
        provider: Provider,
        mut checked: Checked,
        key: &RefetchKey,
        request_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Accepted, AcceptError> {
        let prefix = intake::refetch_prefix(key);
        let pattern = format!("{prefix}-%");
        let waiting: Option<(i64, String)> = sqlx::query_as(
            "UPDATE webhook_inbox SET redeliveries = redeliveries + 1 \
             WHERE id = (SELECT id FROM webhook_inbox WHERE provider = $1 AND event_id LIKE $2 \
                AND status = 'pending' AND attempts = 0 AND next_attempt_at = received_at \
                ORDER BY id LIMIT 1) \
             RETURNING id, event_id",
        )
        .bind(provider.as_str())
        .bind(&pattern)
        .fetch_optional(&self.pool)
        .await?;
        if let Some((inbox_id, event_id)) = waiting {
            return Ok(Accepted {
                inbox_id,
                event_id,
                duplicate: true,
            });
        }
        let generations: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM webhook_inbox WHERE provider = $1 AND event_id LIKE $2",
        )
        .bind(provider.as_str())
        .bind(&pattern)
        .fetch_one(&self.pool)
        .await?;
        checked.event_id = format!("{prefix}-{}", generations + 1);
        // The unsigned transmission id is neither stored nor used.
        checked.delivery_id = None;
        checked.event_type = None;
        let body = intake::refetch_body(key);
        self.store_delivery(provider, checked, &body, request_id, now)
            .await
    }

    async fn store_delivery(
        &self,
        provider: Provider,
        checked: Checked,
        raw_body: &[u8],
        request_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Accepted, AcceptError> {
        let scheme_name = serde_json::to_value(checked.scheme)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let headers = json!({ "deliveryId": checked.delivery_id, "requestId": request_id });
        let row = sqlx::query(
            "INSERT INTO webhook_inbox (provider, event_id, event_type, delivery_id, scheme, \
                secret_index, must_refetch, raw_body, headers, status, attempts, next_attempt_at, \
                received_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', 0, $10, $10) \
             ON CONFLICT (provider, event_id) \
                DO UPDATE SET redeliveries = webhook_inbox.redeliveries + 1 \
             RETURNING id, (xmax = 0) AS inserted",
        )
        .bind(provider.as_str())
        .bind(&checked.event_id)
        .bind(&checked.event_type)
        .bind(&checked.delivery_id)
        .bind(scheme_name)
        .bind(checked.secret_index.map(|i| i as i16))
        .bind(checked.must_refetch)
        .bind(raw_body)
        .bind(headers)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        let inserted: bool = row.try_get("inserted")?;
        Ok(Accepted {
            inbox_id: row.try_get("id")?,
            event_id: checked.event_id,
            duplicate: !inserted,
        })
    }

    async fn record_rejection(
        &self,
        provider: Provider,
        error: &AcceptError,
        remote_addr: Option<&str>,
        now: DateTime<Utc>,
    ) {
        let code = error.code();
        metrics().webhook_rejected(provider.as_str(), code);
        // The message is payledger's own text (the verifier's errors never quote the request).
        let reason = short(error);
        tracing::warn!(
            provider = provider.as_str(),
            code,
            reason,
            remote_addr,
            "webhook refused"
        );
        let stored = sqlx::query(
            "INSERT INTO webhook_rejections (provider, code, minute, count, last_reason, \
                last_remote_addr, last_seen_at) \
             VALUES ($1, $2, date_trunc('minute', $3), 1, $4, $5, $3) \
             ON CONFLICT (provider, code, minute) DO UPDATE SET \
                count = webhook_rejections.count + 1, last_reason = EXCLUDED.last_reason, \
                last_remote_addr = EXCLUDED.last_remote_addr, last_seen_at = EXCLUDED.last_seen_at",
        )
        .bind(provider.as_str())
        .bind(code)
        .bind(now)
        .bind(&reason)
        .bind(remote_addr.map(|a| a.chars().take(100).collect::<String>()))
        .execute(&self.pool)
        .await;
        if let Err(error) = stored {
            tracing::warn!(%error, "failed to record a webhook rejection");
        }
    }

    /// Dead-lettered inbound deliveries, oldest first, after inbox id `after_id`.
    pub async fn inbound_dead_letters(
        &self,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<InboundDeadLetter>, sqlx::Error> {
        let rows = sqlx::query(&format!(
            "SELECT {DEAD_LETTER_COLUMNS} FROM webhook_inbox \
             WHERE status = 'dead' AND id > $1 ORDER BY id LIMIT $2"
        ))
        .bind(after_id)
        .bind(limit.clamp(1, 1_000))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(InboundDeadLetter::from_row).collect()
    }

    /// The body of inbox row `inbox_id` exactly as received (for an operator reading a dead
    /// letter before replaying it); `None` when there is no such row.
    pub async fn inbound_body(&self, inbox_id: i64) -> Result<Option<Vec<u8>>, sqlx::Error> {
        sqlx::query_scalar("SELECT raw_body FROM webhook_inbox WHERE id = $1")
            .bind(inbox_id)
            .fetch_optional(&self.pool)
            .await
    }

    /// Puts a dead-lettered delivery back in the queue, to be processed from attempt 1 again,
    /// and records who asked in its stream.
    pub async fn replay_inbound(
        &self,
        inbox_id: i64,
        requested_by: &str,
    ) -> Result<InboundDeadLetter, ReplayError> {
        let row = sqlx::query(&format!(
            "SELECT {DEAD_LETTER_COLUMNS} FROM webhook_inbox WHERE id = $1"
        ))
        .bind(inbox_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(ReplayError::NotFound)?;
        let letter = InboundDeadLetter::from_row(&row)?;
        if letter.status != "dead" {
            return Err(ReplayError::NotDeadLettered);
        }
        let now = self.clock.now();
        let provider = letter.provider.clone();
        let event_id = letter.event_id.clone();
        deliveries::append(
            &self.store,
            &provider,
            &event_id,
            requested_by,
            None,
            |recorded| {
                vec![WebhookDeliveryEvent::WebhookReplayRequested(
                    WebhookReplayRequested {
                        provider: provider.clone(),
                        event_id: event_id.clone(),
                        requested_by: requested_by.to_string(),
                        order_id: recorded.order_id.clone(),
                        at: now,
                    },
                )]
            },
        )
        .await?;
        let updated = sqlx::query(
            "UPDATE webhook_inbox SET status = 'pending', attempts = 0, next_attempt_at = $2, \
                dead_lettered_at = NULL \
             WHERE id = $1 AND status = 'dead'",
        )
        .bind(inbox_id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        if updated.rows_affected() != 1 {
            return Err(ReplayError::NotDeadLettered);
        }
        tracing::info!(inbox_id, provider, requested_by, "webhook replay requested");
        Ok(InboundDeadLetter {
            status: "pending".into(),
            attempts: 0,
            dead_lettered_at: None,
            ..letter
        })
    }
}

const DEAD_LETTER_COLUMNS: &str = "id, provider, event_id, event_type, status, attempts, \
    last_error, received_at, dead_lettered_at";

/// A dead-lettered inbound delivery (what the admin API and the CLI list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundDeadLetter {
    pub id: i64,
    pub provider: String,
    pub event_id: String,
    pub event_type: Option<String>,
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub received_at: DateTime<Utc>,
    pub dead_lettered_at: Option<DateTime<Utc>>,
}

impl InboundDeadLetter {
    fn from_row(row: &sqlx::postgres::PgRow) -> Result<InboundDeadLetter, sqlx::Error> {
        Ok(InboundDeadLetter {
            id: row.try_get("id")?,
            provider: row.try_get("provider")?,
            event_id: row.try_get("event_id")?,
            event_type: row.try_get("event_type")?,
            status: row.try_get("status")?,
            attempts: row.try_get("attempts")?,
            last_error: row.try_get("last_error")?,
            received_at: row.try_get("received_at")?,
            dead_lettered_at: row.try_get("dead_lettered_at")?,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("no dead letter with this id")]
    NotFound,
    #[error("this delivery is not dead-lettered (pending, applied or delivered)")]
    NotDeadLettered,
    #[error("failed to replay: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Stream(#[from] StreamError),
}
