//! The HTTP surface: Toss's routes under `/v1`, the sandbox's controls under `/sandbox`.
//!
//! Every route asks for Toss's Basic auth. Provider routes also honour outages and the
//! `Idempotency-Key` header; the store decides everything else.

use crate::behaviour::Behaviour;
use crate::store::{Reply, Store};
use crate::wire::{BillingIssueBody, CancelBody, ChargeBody, ConfirmBody, OutageBody};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Toss's documented maximum length of an `Idempotency-Key`.
const MAX_IDEMPOTENCY_KEY_CHARS: usize = 300;

/// The longest outage one `POST /sandbox/outage` may start.
const MAX_OUTAGE_MS: u64 = 10 * 60 * 1000;

/// What every worker shares.
pub(crate) struct Shared {
    pub store: Mutex<Store>,
    /// `Basic base64(secret_key + ":")`, compared with the request's `Authorization` header.
    pub expected_authorization: String,
    pub max_body_bytes: usize,
}

impl Shared {
    /// The store, even after a panic elsewhere poisoned the lock: every store operation leaves
    /// it consistent before anything can panic, and a sandbox that stops answering helps no one.
    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        self.store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub(crate) fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/v1/payments/confirm", web::post().to(confirm))
        .route(
            "/v1/payments/orders/{order_id}",
            web::get().to(payment_by_order_id),
        )
        .route("/v1/payments/{payment_key}", web::get().to(payment_by_key))
        .route("/v1/payments/{payment_key}/cancel", web::post().to(cancel))
        .route(
            "/v1/billing/authorizations/issue",
            web::post().to(issue_billing_key),
        )
        .route(
            "/v1/billing/{billing_key}",
            web::post().to(charge_billing_key),
        )
        .route("/sandbox/stats", web::get().to(stats))
        .route("/sandbox/outage", web::post().to(outage))
        .route(
            "/sandbox/billing-keys/{billing_key}/behaviour",
            web::post().to(set_behaviour),
        )
        .default_service(web::to(not_found));
}

async fn confirm(
    shared: web::Data<Shared>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    provider_post(&shared, &req, payload, |store, body| {
        parse::<ConfirmBody>(body).map_or_else(|reply| reply, |body| store.confirm(body))
    })
    .await
}

async fn cancel(
    shared: web::Data<Shared>,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let payment_key = path.into_inner();
    provider_post(&shared, &req, payload, |store, body| {
        parse::<CancelBody>(body)
            .map_or_else(|reply| reply, |body| store.cancel(&payment_key, body))
    })
    .await
}

async fn issue_billing_key(
    shared: web::Data<Shared>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    provider_post(&shared, &req, payload, |store, body| {
        parse::<BillingIssueBody>(body)
            .map_or_else(|reply| reply, |body| store.issue_billing_key(body))
    })
    .await
}

async fn charge_billing_key(
    shared: web::Data<Shared>,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let billing_key = path.into_inner();
    provider_post(&shared, &req, payload, |store, body| {
        parse::<ChargeBody>(body).map_or_else(
            |reply| reply,
            |body| store.charge_billing_key(&billing_key, body),
        )
    })
    .await
}

async fn payment_by_key(
    shared: web::Data<Shared>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    if let Err(reply) = provider_gate(&shared, &req) {
        return respond(reply);
    }
    respond(shared.store().payment_by_key(&path.into_inner()))
}

async fn payment_by_order_id(
    shared: web::Data<Shared>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    if let Err(reply) = provider_gate(&shared, &req) {
        return respond(reply);
    }
    respond(shared.store().payment_by_order_id(&path.into_inner()))
}

async fn stats(shared: web::Data<Shared>, req: HttpRequest) -> HttpResponse {
    if let Err(reply) = authenticate(&shared, &req) {
        return respond(reply);
    }
    let stats = shared.store().stats();
    HttpResponse::Ok().json(stats)
}

async fn outage(
    shared: web::Data<Shared>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    if let Err(reply) = authenticate(&shared, &req) {
        return respond(reply);
    }
    let body = match read_json(payload, shared.max_body_bytes)
        .await
        .and_then(parse::<OutageBody>)
    {
        Ok(body) => body,
        Err(reply) => return respond(reply),
    };
    let duration_ms = body.duration_ms.min(MAX_OUTAGE_MS);
    shared
        .store()
        .start_outage(Duration::from_millis(duration_ms), Instant::now());
    tracing::info!(duration_ms, "sandbox outage started");
    HttpResponse::Ok().json(serde_json::json!({ "durationMs": duration_ms }))
}

async fn set_behaviour(
    shared: web::Data<Shared>,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    if let Err(reply) = authenticate(&shared, &req) {
        return respond(reply);
    }
    let behaviour = match read_json(payload, shared.max_body_bytes)
        .await
        .and_then(parse::<Behaviour>)
    {
        Ok(behaviour) => behaviour.bounded(),
        Err(reply) => return respond(reply),
    };
    if shared
        .store()
        .set_billing_key_behaviour(&path.into_inner(), behaviour)
    {
        HttpResponse::Ok().json(behaviour)
    } else {
        respond(Reply::error(
            404,
            "NOT_FOUND_BILLING",
            "존재하지 않는 빌링 결제 인증 정보 입니다.",
        ))
    }
}

async fn not_found() -> HttpResponse {
    respond(Reply::error(404, "NOT_FOUND", "존재하지 않는 정보 입니다."))
}

/// A provider `POST`: gate, body, then the store's decision under one lock, idempotency
/// included, then the scripted delay with the lock released.
async fn provider_post(
    shared: &Shared,
    req: &HttpRequest,
    payload: web::Payload,
    decide: impl FnOnce(&mut Store, Value) -> Reply,
) -> HttpResponse {
    if let Err(reply) = provider_gate(shared, req) {
        return respond(reply);
    }
    let body = match read_json(payload, shared.max_body_bytes).await {
        Ok(body) => body,
        Err(reply) => return respond(reply),
    };
    let key = match idempotency_key(req) {
        Ok(key) => key,
        Err(reply) => return respond(reply),
    };
    let scope = format!("{} {}", req.method(), req.path());
    let reply = {
        let mut store = shared.store();
        let now = Instant::now();
        match key {
            None => decide(&mut store, body),
            Some(key) => match store.replay(&scope, &key, &body, now) {
                Some(replayed) => replayed,
                // Checked before deciding, so a charge is never made whose answer is lost.
                None if !store.idempotency_has_room() => {
                    Reply::capacity_exceeded("idempotency records")
                }
                None => {
                    let reply = decide(&mut store, body.clone());
                    if reply.storable {
                        if let Err(full) = store.remember(&scope, &key, body, &reply, now) {
                            return respond(full);
                        }
                    }
                    reply
                }
            },
        }
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    respond(reply)
}

/// Auth, then the outage switch.
fn provider_gate(shared: &Shared, req: &HttpRequest) -> Result<(), Reply> {
    authenticate(shared, req)?;
    if shared.store().in_outage(Instant::now()) {
        return Err(Reply::error(
            503,
            "FAILED_INTERNAL_SYSTEM_PROCESSING",
            "내부 시스템 처리 작업이 실패했습니다. 잠시 후 다시 시도해주세요. (sandbox outage)",
        ));
    }
    Ok(())
}

fn authenticate(shared: &Shared, req: &HttpRequest) -> Result<(), Reply> {
    let given = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .map(|value| value.as_bytes());
    if given.is_some_and(|given| constant_time_eq(given, shared.expected_authorization.as_bytes()))
    {
        Ok(())
    } else {
        Err(Reply::error(
            401,
            "UNAUTHORIZED_KEY",
            "인증되지 않은 시크릿 키 혹은 클라이언트 키 입니다.",
        ))
    }
}

/// Compares without an early exit, so response time says nothing about the secret.
fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    left.len() == right.len()
        && left
            .iter()
            .zip(right)
            .fold(0u8, |acc, (l, r)| acc | (l ^ r))
            == 0
}

fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, Reply> {
    let Some(value) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    let invalid = || {
        Reply::error(
            400,
            "INVALID_IDEMPOTENCY_KEY",
            "멱등키는 1자 이상 300자 이하여야 합니다.",
        )
    };
    let key = value.to_str().map_err(|_| invalid())?;
    if key.is_empty() || key.chars().count() > MAX_IDEMPOTENCY_KEY_CHARS {
        return Err(invalid());
    }
    Ok(Some(key.to_owned()))
}

async fn read_json(payload: web::Payload, max_body_bytes: usize) -> Result<Value, Reply> {
    let bytes = match payload.to_bytes_limited(max_body_bytes).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => {
            return Err(Reply::error(
                400,
                "INVALID_REQUEST",
                "요청 본문을 읽지 못했습니다.",
            ))
        }
        Err(_) => {
            return Err(Reply::error(
                413,
                "INVALID_REQUEST",
                &format!("요청 본문이 너무 큽니다. (body above {max_body_bytes} bytes)"),
            ))
        }
    };
    serde_json::from_slice(&bytes).map_err(|err| {
        Reply::error(
            400,
            "INVALID_REQUEST",
            &format!("잘못된 요청입니다. (body is not JSON: {err})"),
        )
    })
}

fn parse<T: DeserializeOwned>(body: Value) -> Result<T, Reply> {
    serde_json::from_value(body).map_err(|err| {
        Reply::error(
            400,
            "INVALID_REQUEST",
            &format!("잘못된 요청입니다. ({err})"),
        )
    })
}

/// For provider routes outside the store ([`crate::settlements`]): auth and outage as an answer.
pub(crate) fn provider_gate_response(shared: &Shared, req: &HttpRequest) -> Option<HttpResponse> {
    provider_gate(shared, req).err().map(respond)
}

/// For routes outside the store ([`crate::payouts`]): the auth check as an answer.
pub(crate) fn authenticate_request(shared: &Shared, req: &HttpRequest) -> Option<HttpResponse> {
    authenticate(shared, req).err().map(respond)
}

/// For routes outside the store: the body as JSON, or the answer refusing it.
pub(crate) async fn read_body(
    payload: web::Payload,
    max_body_bytes: usize,
) -> Result<Value, HttpResponse> {
    read_json(payload, max_body_bytes).await.map_err(respond)
}

pub(crate) fn respond_json(status: u16, body: Value) -> HttpResponse {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(status).json(body)
}

fn respond(reply: Reply) -> HttpResponse {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(status).json(reply.body)
}
