//! Personal data on the way out, and erasure (docs/events.md, "Personal data and erasure").
//!
//! Personal fields are sealed in the log (payledger-app's `privacy`). Every JSON response except
//! the raw log is revealed here, on the way out: a sealed token becomes its text, or `[erased]`
//! once the subject's key was destroyed. The raw log (`/v1/events`, `/v1/streams/…`) keeps the
//! tokens: that is what the hashes cover and what auditors verify.

use crate::errors::{ApiError, ErrorCode};
use crate::state::AppState;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::CONTENT_TYPE;
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest, HttpResponse};
use payledger_app::privacy::{ErasureOutcome, PrivacyVault, SubjectKind, TOKEN_PREFIX};
use serde::Deserialize;

/// Responses larger than this are passed on as they are (pages are bounded far below it).
const MAX_REVEALED_BODY_BYTES: usize = 32 * 1024 * 1024;

/// Routes whose answers keep the sealed tokens: the hashed log itself.
fn keeps_tokens(pattern: Option<&str>) -> bool {
    matches!(pattern, Some("/v1/events" | "/v1/streams/{stream_id}"))
}

/// Reveals sealed personal fields in JSON responses (middleware).
pub async fn reveal_personal_fields(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let keep = keeps_tokens(request.match_pattern().as_deref());
    let vault = request.app_data::<web::Data<PrivacyVault>>().cloned();
    let response = next.call(request).await?.map_into_boxed_body();
    let Some(vault) = vault else {
        return Ok(response);
    };
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if keep || !is_json {
        return Ok(response);
    }
    let (request, response) = response.into_parts();
    let (head, body) = response.into_parts();
    let bytes = match actix_web::body::to_bytes_limited(body, MAX_REVEALED_BODY_BYTES).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(error)) => return Err(ApiError::internal(error).into()),
        Err(_) => return Err(ApiError::internal("response too large to reveal").into()),
    };
    let contains_token = bytes
        .windows(TOKEN_PREFIX.len())
        .any(|w| w == TOKEN_PREFIX.as_bytes());
    if !contains_token {
        return Ok(ServiceResponse::new(
            request,
            head.set_body(BoxBody::new(bytes)),
        ));
    }
    // Revealing runs after the handler, so for a command after its append (and after any
    // provider call): its key reads are bounded (`PrivacyVault::with_call_timeout_ms`), and one
    // given up answers 503 without undoing anything. The command is durable; its stored answer
    // (the idempotency store, inside this middleware, keeps the sealed tokens) is replayed and
    // revealed again when the client retries with its `Idempotency-Key`.
    let failed = |error| -> actix_web::Error {
        match error {
            payledger_app::privacy::PrivacyError::Database(e) => ApiError::unavailable(e),
            other => ApiError::internal(other),
        }
        .into()
    };
    // The answer as written, its tokens replaced in place: no tree is built and written again.
    let in_place = match std::str::from_utf8(&bytes) {
        Ok(text) => vault.reveal_json_text(text).await.map_err(failed)?,
        Err(_) => None,
    };
    let revealed = match in_place {
        Some(text) => text.into_bytes(),
        None => {
            let mut value: serde_json::Value = match serde_json::from_slice(&bytes) {
                Ok(value) => value,
                Err(error) => return Err(ApiError::internal(error).into()),
            };
            vault.reveal_json(&mut value).await.map_err(failed)?;
            serde_json::to_vec(&value).map_err(ApiError::internal)?
        }
    };
    Ok(ServiceResponse::new(
        request,
        head.set_body(BoxBody::new(revealed)),
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EraseBody {
    /// Why (a request under GDPR art. 17 / PIPA art. 36, …): 1–200 characters, recorded in the
    /// event; never personal data itself.
    pub reason: String,
}

/// `POST /v1/admin/privacy/customers/{customer_id}/erase` (admins): destroys the customer's keys
/// and records `SubjectErased`. Idempotent: asking again destroys and records nothing.
#[utoipa::path(
    post,
    path = "/v1/admin/privacy/customers/{customer_id}/erase",
    tag = "operations",
    params(("customer_id" = String, Path, description = "The customer id")),
    request_body = crate::privacy::EraseBody,
    responses((status = 200, description = "The customer's personal fields are erased", body = Object))
)]
pub async fn erase_customer(
    state: web::Data<AppState>,
    vault: Option<web::Data<PrivacyVault>>,
    request: HttpRequest,
    path: web::Path<String>,
    body: web::Json<EraseBody>,
) -> Result<HttpResponse, ApiError> {
    let customer_id = payledger_domain::ids::CustomerId::parse(path.into_inner())
        .map_err(|e| ApiError::field("customerId", e.to_string()))?;
    let outcome = erase(
        &state,
        vault,
        &request,
        SubjectKind::Customer,
        customer_id.as_str(),
        body.into_inner(),
    )
    .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "customerId": customer_id.as_str(),
        "erased": true,
        "keysDestroyed": outcome.keys_destroyed,
        "recorded": outcome.recorded,
    })))
}

/// `POST /v1/admin/privacy/payees/{payee_id}/erase` (admins): destroys the payee's own keys
/// (its warnings' and sales suspensions' reasons) and records `SubjectErased`. Idempotent.
#[utoipa::path(
    post,
    path = "/v1/admin/privacy/payees/{payee_id}/erase",
    tag = "operations",
    params(("payee_id" = String, Path, description = "The payee id")),
    request_body = crate::privacy::EraseBody,
    responses((status = 200, description = "The payee's personal fields are erased", body = Object))
)]
pub async fn erase_payee(
    state: web::Data<AppState>,
    vault: Option<web::Data<PrivacyVault>>,
    request: HttpRequest,
    path: web::Path<String>,
    body: web::Json<EraseBody>,
) -> Result<HttpResponse, ApiError> {
    let payee_id = payledger_domain::ids::PayeeId::parse(path.into_inner())
        .map_err(|e| ApiError::field("payeeId", e.to_string()))?;
    let outcome = erase(
        &state,
        vault,
        &request,
        SubjectKind::Payee,
        payee_id.as_str(),
        body.into_inner(),
    )
    .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "payeeId": payee_id.as_str(),
        "erased": true,
        "keysDestroyed": outcome.keys_destroyed,
        "recorded": outcome.recorded,
    })))
}

/// Checks the reason, destroys the subject's keys and records it (answers once no process can
/// still hold them).
async fn erase(
    state: &AppState,
    vault: Option<web::Data<PrivacyVault>>,
    request: &HttpRequest,
    kind: SubjectKind,
    subject_id: &str,
    body: EraseBody,
) -> Result<ErasureOutcome, ApiError> {
    let reason = body.reason;
    if reason.trim().is_empty()
        || reason.chars().count() > 200
        || reason.chars().any(char::is_control)
    {
        return Err(ApiError::field(
            "reason",
            "reason must be 1 to 200 characters without control characters",
        ));
    }
    let Some(vault) = vault else {
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            "personal data is not sealed on this server: nothing to erase",
        ));
    };
    payledger_app::privacy::erase_subject(
        &vault,
        &state.store,
        kind,
        subject_id,
        &reason,
        state.operations.now(),
        &crate::request_context::request_context(request),
    )
    .await
    .map_err(|e| match e {
        payledger_app::privacy::ErasureError::Append(e) if e.is_unavailable() => {
            ApiError::unavailable(e)
        }
        payledger_app::privacy::ErasureError::Privacy(
            payledger_app::privacy::PrivacyError::Database(e),
        ) => ApiError::unavailable(e),
        other => ApiError::internal(other),
    })
}
