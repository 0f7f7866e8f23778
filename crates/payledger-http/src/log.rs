//! The raw log for auditors (streams and the global log, with positions and hashes) and health.

use crate::dto::{EventPage, EventQuery, PageQuery};
use crate::errors::{ApiError, ErrorCode};
use crate::state::AppState;
use actix_web::{web, HttpResponse};

#[utoipa::path(
    get,
    path = "/v1/streams/{stream_id}",
    tag = "log",
    params(("stream_id" = String, Path, description = "A stream id, e.g. `order-{order_id}`"), crate::dto::PageQuery),
    responses((status = 200, description = "The stream's events with versions, positions and hashes", body = crate::dto::EventPage))
)]
pub async fn read_stream(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let stream_id = path.into_inner();
    if stream_id.is_empty() || stream_id.len() > 200 {
        return Err(ApiError::field(
            "streamId",
            "stream id must be 1 to 200 characters",
        ));
    }
    let (after, limit) = (query.after()?, query.limit()?);
    let routed = state.route_read(None, None).await?;
    let (events, routed) = state
        .run_routed(routed, |pool| {
            let stream_id = stream_id.clone();
            async move { Ok(payledger_store::read_stream(&pool, &stream_id, after, limit).await?) }
        })
        .await?;
    if events.is_empty() && after == 0 {
        return Err(ApiError::new(
            ErrorCode::StreamNotFound,
            "no events in this stream",
        ));
    }
    let next_after = (events.len() as i64 == limit)
        .then(|| events.last().map(|e| e.stream_version))
        .flatten();
    Ok(crate::routing::mark(
        HttpResponse::Ok().json(EventPage { events, next_after }),
        &routed,
    ))
}

#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "log",
    params(crate::dto::EventQuery),
    responses(
        (status = 200, description = "The global log in commit order. With a filter (`type`, `from`, `to`, `status`) only matching events, at most 50,000 positions looked at per page: follow `nextAfter` (the last position looked at) until it is absent", body = crate::dto::EventPage),
        (status = 400, description = "A malformed filter (`field` names it) or paging parameter", body = Object)
    )
)]
pub async fn read_events(
    state: web::Data<AppState>,
    query: web::Query<EventQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = query.page();
    let (after, limit) = (page.after()?, page.limit()?);
    let routed = state.route_read(None, None).await?;
    let Some(filter) = query.filter()? else {
        let (events, routed) = state
            .run_routed(routed, |pool| async move {
                Ok(payledger_store::read_all(&pool, after, limit).await?)
            })
            .await?;
        let next_after = (events.len() as i64 == limit)
            .then(|| events.last().map(|e| e.global_position))
            .flatten();
        return Ok(crate::routing::mark(
            HttpResponse::Ok().json(EventPage { events, next_after }),
            &routed,
        ));
    };
    let (page, routed) = state
        .run_routed(routed, |pool| {
            let filter = &filter;
            async move { Ok(payledger_store::read_all_filtered(&pool, after, limit, filter).await?) }
        })
        .await?;
    let more = page.events.len() as i64 == limit || page.scanned_to < page.head;
    Ok(crate::routing::mark(
        HttpResponse::Ok().json(EventPage {
            events: page.events,
            next_after: more.then_some(page.scanned_to),
        }),
        &routed,
    ))
}

/// `GET /v1/audit/checkpoints?after=SEQUENCE&limit=N` (auditors, admins): the signed
/// checkpoints of the global log, oldest first. Save them: a copy held elsewhere proves a later
/// rewrite (`payledger audit verify --checkpoints FILE`, docs/auditing.md).
#[utoipa::path(
    get,
    path = "/v1/audit/checkpoints",
    tag = "log",
    params(crate::dto::PageQuery),
    responses((status = 200, description = "Signed checkpoints after the `after` sequence number", body = Object))
)]
pub async fn read_checkpoints(
    state: web::Data<AppState>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let (after, limit) = (query.after()?, query.limit()?);
    let checkpoints =
        payledger_store::checkpoint::list_checkpoints(&state.read_pool, after, limit).await?;
    let next_after = (checkpoints.len() as i64 == limit)
        .then(|| checkpoints.last().map(|c| c.sequence))
        .flatten();
    let mut body = serde_json::json!({ "checkpoints": checkpoints });
    if let Some(next_after) = next_after {
        body["nextAfter"] = next_after.into();
    }
    Ok(HttpResponse::Ok().json(body))
}

/// `GET /v1/audit/proofs/{position}` (auditors, admins): the proof that the event at `position`
/// is part of a signed checkpoint, without any other event: its leaf, its RFC 6962 audit path
/// to the checkpoint's `eventsRoot`, and the checkpoint (docs/auditing.md, "Inclusion proofs";
/// `docs/auditing/verify_proof.py` checks one).
#[utoipa::path(
    get,
    path = "/v1/audit/proofs/{position}",
    tag = "log",
    params(("position" = i64, Path, description = "The event's global position")),
    responses((status = 200, description = "The event's inclusion proof", body = Object))
)]
pub async fn read_proof(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let position: i64 =
        path.parse().ok().filter(|p| *p >= 1).ok_or_else(|| {
            ApiError::field("position", "position must be a global position >= 1")
        })?;
    let head = payledger_store::head_position(&state.read_pool).await?;
    if position > head {
        return Err(ApiError::new(
            ErrorCode::PositionBeyondHead,
            format!("position {position} is beyond the head of the log ({head})"),
        )
        .with("headPosition", head));
    }
    use payledger_store::checkpoint::ProofError;
    match payledger_store::checkpoint::inclusion_proof(&state.read_pool, position).await {
        Ok(proof) => Ok(HttpResponse::Ok().json(proof)),
        Err(ProofError::Read(error)) => Err(error.into()),
        Err(error @ ProofError::LogDiffers(_)) => Err(ApiError::internal(error)),
        Err(error) => Err(ApiError::new(
            ErrorCode::ProofUnavailable,
            error.to_string(),
        )),
    }
}

/// The process is up.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "service",
    responses((status = 200, description = "The process is up", body = Object))
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// The process can serve: the database answers.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "service",
    responses((status = 200, description = "The database answers; `headPosition` is the log's head", body = Object))
)]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let head = payledger_store::head_position(&state.read_pool).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "status": "ready", "headPosition": head })))
}
