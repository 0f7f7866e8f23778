//! Paddle's HTTP surface under `/paddle`: its API at the root of the prefix, the sandbox's
//! controls (what happens at Paddle without payledger asking) under `/paddle/sandbox`.
//!
//! Every route asks for the API key as `Authorization: Bearer {key}` (403 `forbidden` when it
//! is wrong, 401 `authentication_missing` when absent). Bodies are JSON; answers are Paddle's
//! `{data, meta}` envelope or `{error, meta}`.

use super::store::{PaddleReply, PaddleStore};
use super::webhooks::PaddleDeliverer;
use actix_web::http::header::AUTHORIZATION;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};

/// The most requests one `POST /paddle/sandbox/outage` may fail.
const MAX_OUTAGE_REQUESTS: u32 = 1_000;

/// What every worker shares for Paddle.
pub(crate) struct PaddleShared {
    pub store: Mutex<PaddleStore>,
    pub api_key: String,
    pub deliverer: PaddleDeliverer,
    pub max_body_bytes: usize,
    /// How many of the next API requests answer 503 (`POST /paddle/sandbox/outage`).
    pub failing_requests: AtomicU32,
    /// How many of the next API requests answer 403 `forbidden`, as Paddle answers a wrong or
    /// revoked API key (`POST /paddle/sandbox/api-key-refused`).
    pub refused_key_requests: AtomicU32,
}

impl PaddleShared {
    pub(crate) fn store(&self) -> MutexGuard<'_, PaddleStore> {
        self.store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

type Shared = web::Data<PaddleShared>;

/// One route's operation.
enum Operation {
    GetPrice(String),
    CreatePrice,
    CreateProduct,
    CreateCustomer,
    GetCustomer(String),
    GetTransaction(String),
    ListTransactions,
    GetSubscription(String),
    CancelSubscription(String),
    CreateAdjustment,
    ListAdjustments,
    ListEvents,
    ReplayNotification(String),
    // Sandbox controls.
    Checkout,
    Advance(String),
    Dunning(String),
    Approve(String),
    Reject(String),
    Chargeback(String),
    Notifications,
    Outage,
    KeyRefused,
}

impl Operation {
    fn is_control(&self) -> bool {
        matches!(
            self,
            Operation::Checkout
                | Operation::Advance(_)
                | Operation::Dunning(_)
                | Operation::Approve(_)
                | Operation::Reject(_)
                | Operation::Chargeback(_)
                | Operation::Notifications
                | Operation::Outage
                | Operation::KeyRefused
        )
    }
}

macro_rules! route {
    ($config:expr, $method:ident, $path:literal, $operation:expr) => {
        $config.route(
            $path,
            web::$method().to(
                |shared: Shared, req: HttpRequest, body: web::Payload| async move {
                    let operation: fn(&HttpRequest) -> Operation = $operation;
                    handle(operation(&req), &shared, &req, body).await
                },
            ),
        )
    };
}

fn id(req: &HttpRequest) -> String {
    req.match_info().get("id").unwrap_or_default().to_owned()
}

pub(crate) fn routes(config: &mut web::ServiceConfig) {
    route!(config, get, "/prices/{id}", |req| Operation::GetPrice(id(
        req
    )));
    route!(config, post, "/prices", |_| Operation::CreatePrice);
    route!(config, post, "/products", |_| Operation::CreateProduct);
    route!(config, post, "/customers", |_| Operation::CreateCustomer);
    route!(config, get, "/customers/{id}", |req| {
        Operation::GetCustomer(id(req))
    });
    route!(config, get, "/transactions", |_| {
        Operation::ListTransactions
    });
    route!(config, get, "/transactions/{id}", |req| {
        Operation::GetTransaction(id(req))
    });
    route!(config, get, "/subscriptions/{id}", |req| {
        Operation::GetSubscription(id(req))
    });
    route!(config, post, "/subscriptions/{id}/cancel", |req| {
        Operation::CancelSubscription(id(req))
    });
    route!(config, post, "/adjustments", |_| {
        Operation::CreateAdjustment
    });
    route!(config, get, "/adjustments", |_| Operation::ListAdjustments);
    route!(config, get, "/events", |_| Operation::ListEvents);
    route!(config, post, "/notifications/{id}/replay", |req| {
        Operation::ReplayNotification(id(req))
    });
    route!(config, post, "/sandbox/checkout", |_| Operation::Checkout);
    route!(config, post, "/sandbox/subscriptions/{id}/advance", |req| {
        Operation::Advance(id(req))
    });
    route!(config, post, "/sandbox/subscriptions/{id}/dunning", |req| {
        Operation::Dunning(id(req))
    });
    route!(config, post, "/sandbox/adjustments/{id}/approve", |req| {
        Operation::Approve(id(req))
    });
    route!(config, post, "/sandbox/adjustments/{id}/reject", |req| {
        Operation::Reject(id(req))
    });
    route!(
        config,
        post,
        "/sandbox/transactions/{id}/chargeback",
        |req| { Operation::Chargeback(id(req)) }
    );
    route!(config, get, "/sandbox/notifications", |_| {
        Operation::Notifications
    });
    route!(config, post, "/sandbox/outage", |_| Operation::Outage);
    route!(config, post, "/sandbox/api-key-refused", |_| {
        Operation::KeyRefused
    });
    config
        .route("/sandbox/deliveries", web::get().to(deliveries))
        .default_service(web::to(not_found));
}

async fn deliveries(shared: Shared, req: HttpRequest) -> HttpResponse {
    if let Err(reply) = authenticate(&shared, &req) {
        return respond(reply);
    }
    respond(PaddleReply::ok(json!(shared.deliverer.records())))
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    respond(PaddleReply::error(
        404,
        "not_found",
        &format!("no route for {} {}", req.method(), req.path()),
    ))
}

async fn handle(
    operation: Operation,
    shared: &PaddleShared,
    req: &HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    if let Err(reply) = authenticate(shared, req) {
        return respond(reply);
    }
    if !operation.is_control()
        && shared
            .failing_requests
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok()
    {
        return respond(PaddleReply::error(
            503,
            "service_unavailable",
            "Paddle is unavailable (sandbox outage); try again later",
        ));
    }
    if !operation.is_control()
        && shared
            .refused_key_requests
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok()
    {
        // What Paddle answers a key that is wrong, revoked or lacks the permission.
        return respond(PaddleReply::error(
            403,
            "forbidden",
            "You aren't permitted to perform this request.",
        ));
    }
    let body = match payload.to_bytes_limited(shared.max_body_bytes).await {
        Ok(Ok(bytes)) if bytes.is_empty() => Value::Null,
        Ok(Ok(bytes)) => match serde_json::from_slice::<Value>(&bytes) {
            Ok(value) => value,
            Err(_) => return respond(PaddleReply::error(400, "bad_request", "invalid JSON body")),
        },
        Ok(Err(_)) => {
            return respond(PaddleReply::error(
                400,
                "bad_request",
                "the body could not be read",
            ))
        }
        Err(_) => {
            return respond(PaddleReply::error(
                413,
                "request_body_too_large",
                "the body is too large",
            ))
        }
    };
    let query: BTreeMap<String, String> = form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .take(20)
        .collect();
    if let Operation::KeyRefused = operation {
        let requests = body["requests"]
            .as_u64()
            .unwrap_or(0)
            .min(u64::from(MAX_OUTAGE_REQUESTS)) as u32;
        shared
            .refused_key_requests
            .store(requests, Ordering::SeqCst);
        return respond(PaddleReply::ok(json!({ "requests": requests })));
    }
    if let Operation::Outage = operation {
        let requests = body["requests"]
            .as_u64()
            .unwrap_or(0)
            .min(u64::from(MAX_OUTAGE_REQUESTS)) as u32;
        shared.failing_requests.store(requests, Ordering::SeqCst);
        return respond(PaddleReply::ok(json!({ "requests": requests })));
    }
    let (reply, events) = {
        let mut store = shared.store();
        let reply = match operation {
            Operation::GetPrice(id) => store.get_price(&id),
            Operation::CreatePrice => store.create_price(&body),
            Operation::CreateProduct => store.create_product(&body),
            Operation::CreateCustomer => store.create_customer(&body),
            Operation::GetCustomer(id) => store.get_customer(&id),
            Operation::GetTransaction(id) => store.get_transaction(&id),
            Operation::ListTransactions => store.list_transactions(&query),
            Operation::GetSubscription(id) => store.get_subscription(&id),
            Operation::CancelSubscription(id) => store.cancel_subscription(&id, &body),
            Operation::CreateAdjustment => store.create_adjustment(&body),
            Operation::ListAdjustments => store.list_adjustments(&query),
            Operation::ListEvents => store.list_events(&query),
            Operation::ReplayNotification(id) => store.replay_notification(&id),
            Operation::Checkout => store.checkout(&body),
            Operation::Advance(id) => store.advance_subscription(&id, &body),
            Operation::Dunning(id) => store.dunning_outcome(&id, &body),
            Operation::Approve(id) => store.review_adjustment(&id, true, &body),
            Operation::Reject(id) => store.review_adjustment(&id, false, &body),
            Operation::Chargeback(id) => store.chargeback(&id),
            Operation::Notifications => PaddleReply::ok(store.notifications()),
            Operation::Outage | Operation::KeyRefused => unreachable!("answered above"),
        };
        (reply, store.take_events())
    };
    shared.deliverer.enqueue(events);
    respond(with_next_url(reply, req))
}

/// Paddle's `meta.pagination.next` is the URL of the next page: the store gives its query.
fn with_next_url(mut reply: PaddleReply, req: &HttpRequest) -> PaddleReply {
    let pagination = &mut reply.body["meta"]["pagination"];
    if let Some(query) = pagination["next"].as_str().map(str::to_owned) {
        let info = req.connection_info();
        pagination["next"] = Value::String(format!(
            "{}://{}{}{query}",
            info.scheme(),
            info.host(),
            req.path()
        ));
    }
    reply
}

/// How often the sandbox looks for subscriptions whose period ended on its clock.
pub(crate) const RENEWAL_SWEEP_MS: u64 = 200;

/// Runs until aborted: renews what is due ([`PaddleStore::renew_due`]) and sends the
/// notifications, as Paddle's own billing does without being asked.
pub(crate) async fn renew_periodically(shared: Shared) {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(RENEWAL_SWEEP_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let events = {
            let mut store = shared.store();
            store.renew_due();
            store.settle_payouts();
            store.take_events()
        };
        if !events.is_empty() {
            shared.deliverer.enqueue(events);
        }
    }
}

fn authenticate(shared: &PaddleShared, req: &HttpRequest) -> Result<(), PaddleReply> {
    let Some(header) = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
    else {
        return Err(PaddleReply::error(
            401,
            "authentication_missing",
            "Authentication header missing",
        ));
    };
    let given = header.strip_prefix("Bearer ").unwrap_or_default().trim();
    if constant_time_eq(given.as_bytes(), shared.api_key.as_bytes()) {
        Ok(())
    } else {
        Err(PaddleReply::error(
            403,
            "forbidden",
            "You aren't permitted to perform this request.",
        ))
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

/// Adds Paddle's `meta` (a request id; lists a pagination block) and sends the answer.
fn respond(mut reply: PaddleReply) -> HttpResponse {
    let request_id = uuid::Uuid::new_v4().to_string();
    let mut meta = json!({ "request_id": request_id });
    if let Some(pagination) = reply.body["meta"].get("pagination") {
        meta["pagination"] = pagination.clone();
    } else if let Some(list) = reply.body["data"].as_array() {
        meta["pagination"] = json!({"per_page": 50, "next": null, "has_more": false,
            "estimated_total": list.len()});
    }
    if let Some(object) = reply.body.as_object_mut() {
        object.insert("meta".to_owned(), meta);
    }
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(status).json(reply.body)
}
