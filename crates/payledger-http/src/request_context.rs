//! Who is asking and which request this is: the request id, the event metadata of a request
//! ([`request_context`]) and what handlers leave in a request's extensions for the request log.

use actix_web::{HttpMessage, HttpRequest};
use payledger_app::api_keys::Principal;
use payledger_app::context::RequestContext;

/// The request id of a request: the caller's `x-request-id` when it is sane, otherwise new.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

pub(crate) const REQUEST_ID_HEADER: &str = "x-request-id";

pub(crate) fn request_id_of(request: &actix_web::dev::ServiceRequest) -> String {
    request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                && !has_card_like_digits(v)
        })
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string())
}

/// A caller's request id is logged and stored in event metadata, so it must not smuggle a card
/// number (PAN: 12 to 19 digits) into either: such ids are replaced by a generated one.
fn has_card_like_digits(text: &str) -> bool {
    let mut run = 0;
    for c in text.chars() {
        run = if c.is_ascii_digit() { run + 1 } else { 0 };
        if run >= 12 {
            return true;
        }
    }
    false
}

/// Who is asking and which request this is, for event metadata. The actor is the API key's
/// (`client:NAME`, `admin:NAME`, …); `anonymous` only on open routes.
pub fn request_context(request: &HttpRequest) -> RequestContext {
    let request_id = request.extensions().get::<RequestId>().map(|r| r.0.clone());
    // The principal `auth::authenticate` set; read here so that `auth` can use this module.
    let actor = request
        .extensions()
        .get::<Principal>()
        .map_or_else(|| "anonymous".to_string(), |p| p.actor());
    RequestContext::new(actor, request_id)
}

/// The order a request is about, for the request log: set by handlers whose order id is in the
/// body (`/v1/payments/confirm`); routes with `{order_id}` in the path are read from it.
#[derive(Debug, Clone)]
pub struct LoggedOrderId(pub String);

/// The event id of the webhook delivery a request carried, for the request log.
#[derive(Debug, Clone)]
pub struct LoggedWebhookEventId(pub String);
