//! Webhooks in (`POST /v1/webhooks/{provider}`) and the dead-letter queues of webhooks in and
//! notifications out (`/v1/admin/webhooks/…`, `/v1/admin/notifications/…`).
//!
//! The inbound route is open (no API key): each delivery proves itself with its provider's
//! signature, checked on the raw bytes before anything is parsed. It answers 200 as soon as the
//! raw delivery is stored; processing happens in the background (`payledger-webhook-relay`).

use crate::dto::PageQuery;
use crate::errors::{ApiError, ErrorCode};
use crate::request_context::request_context;
use actix_web::http::header::CONTENT_LENGTH;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use payledger_webhook_relay::config::MAX_WEBHOOK_BODY_BYTES;
use payledger_webhook_relay::outbox::{self, OutboundDeadLetter};
use payledger_webhook_relay::{AcceptError, InboundDeadLetter, Provider, Relay, ReplayError};
use payledger_webhooks::SignatureError;
use serde::Serialize;

/// What a sender gets back for a stored delivery.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookReceipt {
    pub received: bool,
    /// The event id payledger de-duplicates on.
    pub event_id: String,
    /// True when this event was delivered before: it is not applied again.
    pub duplicate: bool,
}

#[utoipa::path(
    post,
    path = "/v1/webhooks/{provider}",
    tag = "webhooks",
    params(("provider" = String, Path, description = "`toss`, `stripe`, `paddle` or `standard`")),
    request_body = Object,
    responses((status = 200, description = "Verified and stored; processed in the background", body = crate::webhooks::WebhookReceipt))
)]
pub async fn receive(
    relay: web::Data<Relay>,
    path: web::Path<String>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let Some(provider) = Provider::parse(&path) else {
        payledger_metrics::metrics().webhook_rejected("unknown", "E_WEBHOOK_PROVIDER_UNKNOWN");
        return Err(ApiError::new(
            ErrorCode::WebhookProviderUnknown,
            "webhooks are accepted at /v1/webhooks/toss, /stripe, /paddle and /standard",
        ));
    };
    let remote_addr = request.peer_addr().map(|a| a.ip().to_string());
    let body = match read_bounded(&request, payload).await {
        Ok(body) => body,
        Err(error) => {
            if matches!(error, AcceptError::BodyTooLarge) {
                relay.reject(provider, &error, remote_addr.as_deref()).await;
            }
            return Err(accept_error(error));
        }
    };
    let headers = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
    let request_id = request
        .extensions()
        .get::<crate::request_context::RequestId>()
        .map(|r| r.0.clone());
    // Bounded (`call_bounds`): no provider is called here. A store given up may still land;
    // the provider delivers again and the inbox answers that delivery as a duplicate.
    let accepted = payledger_store::call_bounds::bounded(
        "storing a webhook delivery",
        crate::deadline::call_timeout_ms(&request),
        relay.accept_request(
            provider,
            &headers,
            &body,
            remote_addr.as_deref(),
            request_id.as_deref(),
        ),
    )
    .await
    .map_err(accept_error)?;
    // The request log line names the delivery.
    request
        .extensions_mut()
        .insert(crate::request_context::LoggedWebhookEventId(
            accepted.event_id.clone(),
        ));
    Ok(HttpResponse::Ok().json(WebhookReceipt {
        received: true,
        event_id: accepted.event_id,
        duplicate: accepted.duplicate,
    }))
}

/// Reads the raw body, refusing it as soon as it passes the limit.
async fn read_bounded(
    request: &HttpRequest,
    mut payload: web::Payload,
) -> Result<Vec<u8>, AcceptError> {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > MAX_WEBHOOK_BODY_BYTES) {
        return Err(AcceptError::BodyTooLarge);
    }
    let mut body = Vec::with_capacity(declared.unwrap_or(4096).min(MAX_WEBHOOK_BODY_BYTES));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| AcceptError::PayloadInvalid("the body could not be read"))?;
        if body.len() + chunk.len() > MAX_WEBHOOK_BODY_BYTES {
            return Err(AcceptError::BodyTooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn accept_error(error: AcceptError) -> ApiError {
    let code = match &error {
        AcceptError::Signature(signature) => match signature {
            SignatureError::MissingHeader { .. } => ErrorCode::WebhookSignatureMissing,
            SignatureError::MalformedHeader { .. } => ErrorCode::WebhookSignatureMalformed,
            SignatureError::BadSignatureEncoding { .. } => ErrorCode::WebhookSignatureEncoding,
            SignatureError::TimestampTooOld { .. } | SignatureError::TimestampInFuture { .. } => {
                ErrorCode::WebhookTimestampOutOfTolerance
            }
            SignatureError::SignatureMismatch => ErrorCode::WebhookSignatureMismatch,
            SignatureError::Misconfigured { .. } => {
                tracing::error!(error = %signature, "webhook verification is misconfigured");
                ErrorCode::WebhookVerifierMisconfigured
            }
        },
        AcceptError::PayloadInvalid(_) => ErrorCode::WebhookPayloadInvalid,
        AcceptError::BodyTooLarge => ErrorCode::BodyTooLarge,
        AcceptError::RateLimited(_) => {
            return ApiError::new(ErrorCode::WebhookRateLimited, error.to_string()).retry_after(60)
        }
        AcceptError::Database(_) => {
            return match error {
                AcceptError::Database(e) => e.into(),
                _ => ApiError::internal("unreachable"),
            }
        }
    };
    let api_error = ApiError::new(code, error.to_string());
    if code == ErrorCode::WebhookVerifierMisconfigured {
        api_error.retry_after(60)
    } else {
        api_error
    }
}

fn replay_error(error: ReplayError) -> ApiError {
    match error {
        ReplayError::NotFound => {
            ApiError::new(ErrorCode::DeadLetterNotFound, "no dead letter with this id")
        }
        ReplayError::NotDeadLettered => {
            ApiError::new(ErrorCode::NotDeadLettered, error.to_string())
        }
        ReplayError::Database(e) => e.into(),
        ReplayError::Stream(e) => ApiError::unavailable(e),
    }
}

/// A dead-lettered inbound webhook.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InboundDeadLetterBody {
    /// Pass to the replay route.
    pub id: i64,
    pub provider: String,
    pub event_id: String,
    pub event_type: Option<String>,
    /// `dead`, or `pending` right after a replay.
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub received_at: DateTime<Utc>,
    pub dead_lettered_at: Option<DateTime<Utc>>,
    /// The stream that records what happened to it (`GET /v1/streams/{streamId}`).
    pub stream_id: String,
}

impl From<InboundDeadLetter> for InboundDeadLetterBody {
    fn from(d: InboundDeadLetter) -> Self {
        InboundDeadLetterBody {
            stream_id: payledger_domain::webhook::stream_id(&d.provider, &d.event_id),
            id: d.id,
            provider: d.provider,
            event_id: d.event_id,
            event_type: d.event_type,
            status: d.status,
            attempts: d.attempts,
            last_error: d.last_error,
            received_at: d.received_at,
            dead_lettered_at: d.dead_lettered_at,
        }
    }
}

/// A dead-lettered outbound notification.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutboundDeadLetterBody {
    pub id: i64,
    /// The `webhook-id` every attempt carried (the event id).
    pub message_id: String,
    pub endpoint_url: String,
    pub notification_type: String,
    pub priority: String,
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub last_status_code: Option<i32>,
    pub created_at: DateTime<Utc>,
    pub dead_lettered_at: Option<DateTime<Utc>>,
}

impl From<OutboundDeadLetter> for OutboundDeadLetterBody {
    fn from(d: OutboundDeadLetter) -> Self {
        OutboundDeadLetterBody {
            id: d.id,
            message_id: d.message_id,
            endpoint_url: d.endpoint_url,
            notification_type: d.notification_type,
            priority: d.priority,
            status: d.status,
            attempts: d.attempts,
            last_error: d.last_error,
            last_status_code: d.last_status_code,
            created_at: d.created_at,
            dead_lettered_at: d.dead_lettered_at,
        }
    }
}

macro_rules! dead_letter_page {
    ($name:ident, $item:ty) => {
        /// One page of dead letters.
        #[derive(Debug, Serialize, utoipa::ToSchema)]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            pub dead_letters: Vec<$item>,
            /// Pass as `after` for the next page; absent on the last page.
            #[serde(skip_serializing_if = "Option::is_none")]
            pub next_after: Option<i64>,
        }

        impl $name {
            fn of<T>(items: Vec<T>, limit: i64) -> $name
            where
                $item: From<T>,
            {
                let dead_letters: Vec<$item> = items.into_iter().map(<$item>::from).collect();
                let next_after = (dead_letters.len() as i64 == limit)
                    .then(|| dead_letters.last().map(|d| d.id))
                    .flatten();
                $name {
                    dead_letters,
                    next_after,
                }
            }
        }
    };
}

dead_letter_page!(InboundDeadLetterPage, InboundDeadLetterBody);
dead_letter_page!(OutboundDeadLetterPage, OutboundDeadLetterBody);

fn dead_letter_id(path: &str) -> Result<i64, ApiError> {
    path.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::field("id", "a dead letter id is a positive integer"))
}

#[utoipa::path(
    get,
    path = "/v1/admin/webhooks/dead-letters",
    tag = "webhooks",
    params(crate::dto::PageQuery),
    responses((status = 200, description = "Dead-lettered inbound webhooks, oldest first", body = crate::webhooks::InboundDeadLetterPage))
)]
pub async fn inbound_dead_letters(
    relay: web::Data<Relay>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let (after, limit) = (query.after()?, query.limit()?);
    let letters = relay.inbound_dead_letters(after, limit).await?;
    Ok(HttpResponse::Ok().json(InboundDeadLetterPage::of(letters, limit)))
}

#[utoipa::path(
    post,
    path = "/v1/admin/webhooks/dead-letters/{id}/replay",
    tag = "webhooks",
    params(("id" = String, Path, description = "The dead letter's id (from the list)")),
    responses((status = 202, description = "Queued for processing from attempt 1", body = crate::webhooks::InboundDeadLetterBody))
)]
pub async fn replay_inbound(
    relay: web::Data<Relay>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = dead_letter_id(&path)?;
    let actor = request_context(&request).actor;
    // Bounded: a replay given up may still have been queued; asking again then answers that
    // the delivery is no longer dead-lettered.
    let letter = payledger_store::call_bounds::bounded(
        "replaying a dead-lettered webhook",
        crate::deadline::call_timeout_ms(&request),
        relay.replay_inbound(id, &actor),
    )
    .await
    .map_err(replay_error)?;
    relay.wakeup.notify_one();
    Ok(HttpResponse::Accepted().json(InboundDeadLetterBody::from(letter)))
}

#[utoipa::path(
    get,
    path = "/v1/admin/notifications/dead-letters",
    tag = "webhooks",
    params(crate::dto::PageQuery),
    responses((status = 200, description = "Dead-lettered notifications, oldest first", body = crate::webhooks::OutboundDeadLetterPage))
)]
pub async fn outbound_dead_letters(
    relay: web::Data<Relay>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let (after, limit) = (query.after()?, query.limit()?);
    let letters = outbox::outbound_dead_letters(&relay.pool, after, limit).await?;
    Ok(HttpResponse::Ok().json(OutboundDeadLetterPage::of(letters, limit)))
}

#[utoipa::path(
    post,
    path = "/v1/admin/notifications/dead-letters/{id}/replay",
    tag = "webhooks",
    params(("id" = String, Path, description = "The dead letter's id (from the list)")),
    responses((status = 202, description = "Queued for delivery from attempt 1, same webhook-id", body = crate::webhooks::OutboundDeadLetterBody))
)]
pub async fn replay_outbound(
    relay: web::Data<Relay>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = dead_letter_id(&path)?;
    // Bounded like the inbound replay.
    let letter = payledger_store::call_bounds::bounded(
        "replaying a dead-lettered notification",
        crate::deadline::call_timeout_ms(&request),
        outbox::replay_outbound(&relay.pool, id, relay.clock.now()),
    )
    .await
    .map_err(replay_error)?;
    Ok(HttpResponse::Accepted().json(OutboundDeadLetterBody::from(letter)))
}
