//! How a read endpoint answers for one object: from its read model when the object is projected,
//! else from the command side (it was just written and the projector has not caught up), else
//! 404. One place, so every such endpoint falls back the same way.

use crate::errors::ApiError;
use actix_web::HttpResponse;
use serde::Serialize;
use std::future::Future;

/// The projected body if there is one; else the command side's (only then is `current` run);
/// else `not_found`.
pub async fn projected_or_current<B: Serialize>(
    projected: impl Future<Output = Result<Option<B>, ApiError>>,
    current: impl Future<Output = Result<Option<B>, ApiError>>,
    not_found: impl FnOnce() -> ApiError,
) -> Result<HttpResponse, ApiError> {
    if let Some(body) = projected.await? {
        return Ok(HttpResponse::Ok().json(body));
    }
    match current.await? {
        Some(body) => Ok(HttpResponse::Ok().json(body)),
        None => Err(not_found()),
    }
}
