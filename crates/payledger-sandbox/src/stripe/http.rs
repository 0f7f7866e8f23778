//! Stripe's HTTP surface under `/stripe`: its API under `/stripe/v1`, the sandbox's controls
//! (what would happen at Stripe without payledger asking) under `/stripe/sandbox`.
//!
//! Every route asks for the Stripe secret key. Writes honour `Idempotency-Key` as Stripe
//! documents it: the first answer of an endpoint that began executing is stored, failures
//! included, and replayed with `Idempotent-Replayed: true`; the same key with other parameters
//! or on another endpoint is an `idempotency_error`; a key whose first request is still running
//! answers 409 `idempotency_key_in_use`.

use super::form;
use super::store::{Origin, StripeReply, StripeStore};
use super::webhooks::Deliverer;
use super::{Operation, API_VERSION};
use actix_web::http::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine as _;
use serde_json::{Map, Value};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

/// The most requests one `POST /stripe/sandbox/rate_limit` may refuse.
const MAX_RATE_LIMITED_REQUESTS: u32 = 100;

/// Stripe's documented maximum length of an `Idempotency-Key`.
const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;

/// What every worker shares for Stripe.
pub(crate) struct StripeShared {
    pub store: Mutex<StripeStore>,
    pub secret_key: String,
    pub deliverer: Deliverer,
    pub max_body_bytes: usize,
    /// How many of the next API requests answer 429 (`POST /stripe/sandbox/rate_limit`).
    pub rate_limited_requests: AtomicU32,
}

impl StripeShared {
    /// The store, even after a panic elsewhere poisoned the lock (as for Toss).
    pub(crate) fn store(&self) -> MutexGuard<'_, StripeStore> {
        self.store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

type Toss = web::Data<crate::http::Shared>;
type Shared = web::Data<StripeShared>;

macro_rules! route {
    ($config:expr, $method:ident, $path:literal, $operation:expr) => {
        $config.route(
            $path,
            web::$method().to(
                |shared: Shared, toss: Toss, req: HttpRequest, body: web::Payload| async move {
                    let operation: fn(&HttpRequest) -> Operation = $operation;
                    handle(operation(&req), &shared, &toss, &req, body).await
                },
            ),
        )
    };
}

fn id(req: &HttpRequest) -> String {
    req.match_info().get("id").unwrap_or_default().to_owned()
}

pub(crate) fn routes(config: &mut web::ServiceConfig) {
    route!(config, post, "/v1/payment_intents", |_| {
        Operation::CreateIntent
    });
    route!(config, get, "/v1/payment_intents", |_| {
        Operation::ListIntents
    });
    route!(config, get, "/v1/payment_intents/search", |_| {
        Operation::SearchIntents
    });
    route!(config, get, "/v1/payment_intents/{id}", |req| {
        Operation::RetrieveIntent(id(req))
    });
    route!(config, post, "/v1/payment_intents/{id}/confirm", |req| {
        Operation::ConfirmIntent(id(req))
    });
    route!(config, post, "/v1/payment_intents/{id}/capture", |req| {
        Operation::CaptureIntent(id(req))
    });
    route!(config, post, "/v1/payment_intents/{id}/cancel", |req| {
        Operation::CancelIntent(id(req))
    });
    route!(config, get, "/v1/charges/{id}", |req| {
        Operation::RetrieveCharge(id(req))
    });
    route!(config, post, "/v1/refunds", |_| Operation::CreateRefund);
    route!(config, get, "/v1/refunds", |_| Operation::ListRefunds);
    route!(config, get, "/v1/refunds/{id}", |req| {
        Operation::RetrieveRefund(id(req))
    });
    route!(config, get, "/v1/disputes", |_| Operation::ListDisputes);
    route!(config, get, "/v1/disputes/{id}", |req| {
        Operation::RetrieveDispute(id(req))
    });
    route!(config, post, "/v1/disputes/{id}", |req| {
        Operation::UpdateDispute(id(req))
    });
    route!(config, post, "/v1/disputes/{id}/close", |req| {
        Operation::CloseDispute(id(req))
    });
    route!(config, get, "/v1/events/{id}", |req| {
        Operation::RetrieveEvent(id(req))
    });
    route!(config, post, "/v1/webhook_endpoints", |_| {
        Operation::CreateWebhookEndpoint
    });
    route!(
        config,
        post,
        "/sandbox/payment_intents/{id}/authenticate",
        |req| Operation::SandboxAuthenticate(id(req))
    );
    route!(
        config,
        post,
        "/sandbox/payment_intents/{id}/refunds",
        |req| { Operation::SandboxDashboardRefund(id(req)) }
    );
    route!(
        config,
        post,
        "/sandbox/payment_intents/{id}/disputes",
        |req| { Operation::SandboxOpenDispute(id(req)) }
    );
    route!(config, post, "/sandbox/refunds/{id}/settle", |req| {
        Operation::SandboxSettleRefund(id(req))
    });
    route!(config, get, "/sandbox/stats", |_| Operation::SandboxStats);
    config
        .route("/sandbox/deliveries", web::get().to(deliveries))
        .route("/sandbox/rate_limit", web::post().to(rate_limit))
        .default_service(web::to(not_found));
}

async fn deliveries(shared: Shared, req: HttpRequest) -> HttpResponse {
    if let Err(reply) = authenticate(&shared, &req) {
        return respond(reply, &Headers::default());
    }
    HttpResponse::Ok().json(serde_json::json!({
        "object": "list",
        "data": shared.deliverer.records(),
    }))
}

/// The next `requests` API requests answer 429, as Stripe does past an account's rate limit.
async fn rate_limit(shared: Shared, req: HttpRequest, payload: web::Payload) -> HttpResponse {
    if let Err(reply) = authenticate(&shared, &req) {
        return respond(reply, &Headers::default());
    }
    let params = match read_params(&req, payload, shared.max_body_bytes, true).await {
        Ok(params) => params,
        Err(reply) => return respond(reply, &Headers::default()),
    };
    let Some(requests) = params
        .get("requests")
        .and_then(Value::as_str)
        .and_then(|text| text.parse::<u32>().ok())
    else {
        return respond(
            StripeReply::invalid(
                Some("parameter_missing"),
                "Missing required param: requests.",
            ),
            &Headers::default(),
        );
    };
    let requests = requests.min(MAX_RATE_LIMITED_REQUESTS);
    shared
        .rate_limited_requests
        .store(requests, Ordering::SeqCst);
    HttpResponse::Ok().json(serde_json::json!({ "requests": requests }))
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    respond(
        StripeReply {
            status: 404,
            ..StripeReply::invalid(
                None,
                &format!(
                    "Unrecognized request URL ({}: {}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/.",
                    req.method(),
                    req.path().strip_prefix("/stripe").unwrap_or(req.path())
                ),
            )
        },
        &Headers::default(),
    )
}

/// Response headers Stripe sends that clients read.
#[derive(Debug, Default)]
struct Headers {
    request_id: Option<String>,
    idempotency_key: Option<String>,
    replayed: bool,
}

async fn handle(
    operation: Operation,
    shared: &StripeShared,
    toss: &crate::http::Shared,
    req: &HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let request_id = format!("req_{}", &uuid::Uuid::new_v4().simple().to_string()[..14]);
    let mut headers = Headers {
        request_id: Some(request_id.clone()),
        ..Headers::default()
    };
    if let Err(reply) = authenticate(shared, req) {
        return respond(reply, &headers);
    }
    if !is_sandbox_control(&operation)
        && shared
            .rate_limited_requests
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok()
    {
        return respond(
            StripeReply {
                status: 429,
                storable: false,
                ..StripeReply::error(
                    429,
                    "invalid_request_error",
                    Some("rate_limit"),
                    "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.",
                )
            },
            &headers,
        );
    }
    if toss.store().in_outage(Instant::now()) {
        return respond(
            StripeReply {
                status: 503,
                storable: false,
                ..StripeReply::error(
                    503,
                    "api_error",
                    None,
                    "An unknown error occurred (sandbox outage). Try again later.",
                )
            },
            &headers,
        );
    }
    let params = match read_params(req, payload, shared.max_body_bytes, operation.is_write()).await
    {
        Ok(params) => params,
        Err(reply) => return respond(reply, &headers),
    };
    let key = if operation.is_write() {
        match idempotency_key(req) {
            Ok(key) => key,
            Err(reply) => return respond(reply, &headers),
        }
    } else {
        None
    };
    headers.idempotency_key = key.clone();
    let scope = req
        .path()
        .strip_prefix("/stripe")
        .unwrap_or(req.path())
        .to_owned();
    // The sandbox's clock (the embedding ledger's, or a test's), as for Toss.
    let now_unix = toss.store().now_utc().timestamp();
    let (reply, deliveries) = {
        let mut store = shared.store();
        let now = Instant::now();
        let reply = match &key {
            Some(key) => match store.replay(key, &scope, &params, now) {
                Some(replayed) => {
                    headers.replayed = replayed.status != 409
                        && replayed.body["error"]["type"].as_str() != Some("idempotency_error");
                    replayed
                }
                None if !store.idempotency_has_room() => {
                    StripeReply::capacity_exceeded("idempotency records")
                }
                None => {
                    let reply = store.execute(&operation, &params, now_unix);
                    if reply.storable {
                        store.remember(key, &scope, params, &reply, now);
                    }
                    reply
                }
            },
            None => store.execute(&operation, &params, now_unix),
        };
        let origin = if is_sandbox_control(&operation) {
            // What the sandbox's controls stand for happened in Stripe's dashboard or at the
            // card network, not in an API request: Stripe's events say `request.id: null`.
            Origin::default()
        } else {
            Origin {
                request_id: Some(request_id),
                idempotency_key: key,
            }
        };
        let deliveries = store.publish(&origin, now_unix);
        (reply, deliveries)
    };
    shared.deliverer.enqueue(deliveries);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    respond(reply, &headers)
}

fn is_sandbox_control(operation: &Operation) -> bool {
    matches!(
        operation,
        Operation::SandboxAuthenticate(_)
            | Operation::SandboxDashboardRefund(_)
            | Operation::SandboxOpenDispute(_)
            | Operation::SandboxSettleRefund(_)
    )
}

/// `Bearer {key}` (what the official libraries send) or `Basic base64({key}:)` (curl's `-u`).
pub(crate) fn authenticate(shared: &StripeShared, req: &HttpRequest) -> Result<(), StripeReply> {
    let unauthorized = |message: &str| StripeReply {
        status: 401,
        ..StripeReply::invalid(None, message)
    };
    let Some(header) = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
    else {
        return Err(unauthorized(
            "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, or we can help at https://support.stripe.com/.",
        ));
    };
    let given = if let Some(token) = header.strip_prefix("Bearer ") {
        token.trim().to_owned()
    } else if let Some(encoded) = header.strip_prefix("Basic ") {
        base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .map(|pair| pair.split(':').next().unwrap_or_default().to_owned())
            .unwrap_or_default()
    } else {
        String::new()
    };
    if constant_time_eq(given.as_bytes(), shared.secret_key.as_bytes()) {
        Ok(())
    } else {
        // Stripe echoes the last characters of a wrong key; the sandbox echoes none of it.
        Err(unauthorized("Invalid API Key provided."))
    }
}

fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    left.len() == right.len()
        && left
            .iter()
            .zip(right)
            .fold(0u8, |acc, (l, r)| acc | (l ^ r))
            == 0
}

fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, StripeReply> {
    let Some(value) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .map_err(|_| StripeReply::invalid(None, "Idempotency-Key must be printable ASCII."))?;
    if key.is_empty() || key.chars().count() > MAX_IDEMPOTENCY_KEY_CHARS {
        return Err(StripeReply::invalid(
            None,
            &format!("Invalid Idempotency-Key: keys must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters long."),
        ));
    }
    Ok(Some(key.to_owned()))
}

/// Parameters from the form body of a write, or the query string of a read.
async fn read_params(
    req: &HttpRequest,
    payload: web::Payload,
    max_body_bytes: usize,
    is_write: bool,
) -> Result<Map<String, Value>, StripeReply> {
    let raw = if is_write {
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("application/x-www-form-urlencoded");
        if !content_type.starts_with("application/x-www-form-urlencoded") {
            return Err(StripeReply::invalid(
                None,
                &format!("Invalid request: unsupported Content-Type {content_type}. If error persists and you need assistance, please contact support@stripe.com."),
            ));
        }
        match payload.to_bytes_limited(max_body_bytes).await {
            Ok(Ok(bytes)) => bytes.to_vec(),
            Ok(Err(_)) => {
                return Err(StripeReply::invalid(
                    None,
                    "The request body could not be read.",
                ))
            }
            Err(_) => {
                return Err(StripeReply {
                    status: 413,
                    ..StripeReply::invalid(
                        None,
                        &format!("The request body is above {max_body_bytes} bytes."),
                    )
                })
            }
        }
    } else {
        req.query_string().as_bytes().to_vec()
    };
    form::parse(&raw).map_err(|err| StripeReply::invalid(None, &err.0))
}

fn respond(reply: StripeReply, headers: &Headers) -> HttpResponse {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = HttpResponse::build(status);
    response.insert_header(("Stripe-Version", HeaderValue::from_static(API_VERSION)));
    if let Some(request_id) = &headers.request_id {
        response.insert_header(("Request-Id", request_id.as_str()));
    }
    if let Some(key) = &headers.idempotency_key {
        response.insert_header(("Idempotency-Key", key.as_str()));
    }
    if headers.replayed {
        response.insert_header(("Idempotent-Replayed", "true"));
    }
    response.json(reply.body)
}
