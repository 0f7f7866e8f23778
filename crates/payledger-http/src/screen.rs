//! THE screen every request passes through before anything reads, stores or logs it.
//!
//! Mounted outside authentication, idempotency and every handler (the webhook intake included),
//! so it runs before an idempotency row, an admin audit event, a webhook inbox row or a provider
//! call can exist. It refuses:
//! - a card number (the rule of `payledger_domain::card_numbers`) in a path segment, a query
//!   parameter (name or value), a header that is stored or logged (every header but the
//!   credentials and signatures in [`UNSCREENED_HEADERS`]), or the body: every JSON string,
//!   number and key at any depth; every name and value of a form body; the raw text of any other
//!   body → 400 `E_CARD_DATA_REJECTED`, naming where, never echoing the value;
//! - a NUL character in a path segment or query parameter (→ 400 `E_INVALID_FIELD` /
//!   `E_INVALID_QUERY`) or in a JSON string or key of the body (→ 400 `E_INVALID_FIELD`, the
//!   message says it is a NUL): PostgreSQL stores no NUL in text, so letting one through would
//!   end in a 500 wherever the value meets the database.
//!
//! A request it refuses is marked [`Withheld`], so the request log prints the route pattern
//! instead of a path that may hold the card number.

use crate::errors::{ApiError, ErrorCode};
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::CONTENT_TYPE;
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::HttpMessage;
use futures::StreamExt;
use payledger_domain::card_numbers::contains_card_number;
use serde_json::Value;

/// Headers that carry credentials or signatures: never stored and never logged, and a signature
/// (hex or base64) may hold a digit run by chance, which must not fail a genuine delivery.
pub const UNSCREENED_HEADERS: &[&str] = &[
    "authorization",
    "x-api-key",
    "cookie",
    "stripe-signature",
    "paddle-signature",
    "webhook-signature",
    "tosspayments-webhook-signature",
];

/// The largest body any route accepts (webhooks: 256 KiB); a larger one is refused here.
pub const MAX_SCREENED_BODY_BYTES: usize = {
    let json = crate::dto::MAX_BODY_BYTES;
    let webhook = payledger_webhook_relay::config::MAX_WEBHOOK_BODY_BYTES;
    if json > webhook {
        json
    } else {
        webhook
    }
};

/// JSON nesting the screen walks; deeper bodies are refused (no route takes more than a few).
pub const MAX_SCREENED_DEPTH: usize = 32;

/// Marks a request the screen refused: its path and query are not to be logged.
#[derive(Debug, Clone, Copy)]
pub struct Withheld;

const CARD_MESSAGE: &str = "card numbers are never accepted (payledger keeps no card data): \
    register cards in the provider's window and send only its keys";

/// What the screen found.
#[derive(Debug)]
enum Finding {
    Card { place: String },
    Nul { place: String, code: ErrorCode },
    TooDeep,
}

impl Finding {
    fn into_error(self) -> ApiError {
        match self {
            Finding::Card { place } => {
                ApiError::new(ErrorCode::CardDataRejected, CARD_MESSAGE).with("field", place)
            }
            Finding::Nul { place, code } => ApiError::new(
                code,
                format!("{place} contains a NUL character (\\u0000), which payledger accepts in no text"),
            )
            .with("field", place),
            Finding::TooDeep => ApiError::new(
                ErrorCode::InvalidJson,
                format!("the body is nested deeper than {MAX_SCREENED_DEPTH} levels"),
            ),
        }
    }
}

/// The middleware: mount it with `actix_web::middleware::from_fn`, inside `request_logging` and
/// outside `authenticate`.
pub async fn screen(
    mut request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let finding = match screen_head(&request) {
        Some(finding) => Some(finding),
        None => match screen_body(&mut request).await {
            Ok(finding) => finding,
            Err(error) => {
                if error.code == ErrorCode::BodyTooLarge {
                    record_webhook_refusal(&request).await;
                }
                return Ok(refuse(request, error));
            }
        },
    };
    if let Some(finding) = finding {
        return Ok(refuse(request, finding.into_error()));
    }
    Ok(next.call(request).await?.map_into_boxed_body())
}

/// A webhook delivery too large to screen is a webhook refusal too: counted and recorded in
/// `webhook_rejections` as the intake records the ones it refuses itself.
async fn record_webhook_refusal(request: &ServiceRequest) {
    use payledger_webhook_relay::{AcceptError, Provider, Relay};
    if request.match_pattern().as_deref() != Some("/v1/webhooks/{provider}") {
        return;
    }
    let Some(relay) = request.app_data::<actix_web::web::Data<Relay>>() else {
        return;
    };
    // The router has not run yet (this is App-level middleware): read the segment directly.
    let Some(provider) = request
        .path()
        .strip_prefix("/v1/webhooks/")
        .and_then(Provider::parse)
    else {
        return;
    };
    let remote_addr = request.peer_addr().map(|a| a.ip().to_string());
    relay
        .reject(provider, &AcceptError::BodyTooLarge, remote_addr.as_deref())
        .await;
}

fn refuse(request: ServiceRequest, error: ApiError) -> ServiceResponse<BoxBody> {
    request.extensions_mut().insert(Withheld);
    request.error_response(error).map_into_boxed_body()
}

/// Path, query and headers.
fn screen_head(request: &ServiceRequest) -> Option<Finding> {
    for segment in request.path().split('/') {
        let decoded = percent_decode(segment, false);
        if let Some(finding) = screen_text(
            &decoded,
            || "a path segment".to_string(),
            ErrorCode::InvalidField,
        ) {
            return Some(finding);
        }
    }
    for (name, value) in form_pairs(request.query_string()) {
        let place = || format!("query parameter `{}`", printable_name(&name));
        if let Some(finding) = screen_text(&name, place, ErrorCode::InvalidQuery)
            .or_else(|| screen_text(&value, place, ErrorCode::InvalidQuery))
        {
            return Some(finding);
        }
    }
    for (name, value) in request.headers() {
        if UNSCREENED_HEADERS.contains(&name.as_str()) {
            continue;
        }
        let text = String::from_utf8_lossy(value.as_bytes());
        if contains_card_number(&text) {
            return Some(Finding::Card {
                place: format!("header `{}`", name.as_str()),
            });
        }
    }
    None
}

/// Reads the body (bounded), screens it, and puts it back for the handler.
async fn screen_body(request: &mut ServiceRequest) -> Result<Option<Finding>, ApiError> {
    let mut payload = request.take_payload();
    let mut body: Vec<u8> = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk
            .map_err(|_| ApiError::new(ErrorCode::InvalidJson, "the body could not be read"))?;
        if body.len() + chunk.len() > MAX_SCREENED_BODY_BYTES {
            return Err(ApiError::new(
                ErrorCode::BodyTooLarge,
                format!("the body is larger than {MAX_SCREENED_BODY_BYTES} bytes"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    if body.is_empty() {
        request.set_payload(Payload::from(Bytes::new()));
        return Ok(None);
    }
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let finding = screen_body_bytes(&content_type, &body);
    request.set_payload(Payload::from(Bytes::from(body)));
    Ok(finding)
}

/// Screens a body by its content type: JSON walked value by value, forms pair by pair, anything
/// else (and JSON that does not parse) as text.
fn screen_body_bytes(content_type: &str, body: &[u8]) -> Option<Finding> {
    if content_type.starts_with("application/x-www-form-urlencoded") {
        let text = String::from_utf8_lossy(body);
        for (name, value) in form_pairs(&text) {
            let place = || format!("form field `{}`", printable_name(&name));
            if let Some(finding) = screen_text(&name, place, ErrorCode::InvalidField)
                .or_else(|| screen_text(&value, place, ErrorCode::InvalidField))
            {
                return Some(finding);
            }
        }
        return None;
    }
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        return screen_json(&value, "", 0);
    }
    let text = String::from_utf8_lossy(body);
    contains_card_number(&text).then(|| Finding::Card {
        place: "body".to_string(),
    })
}

/// The first card number or NUL in a JSON value: keys, strings and numbers at any depth.
fn screen_json(value: &Value, path: &str, depth: usize) -> Option<Finding> {
    if depth > MAX_SCREENED_DEPTH {
        return Some(Finding::TooDeep);
    }
    let here = || {
        if path.is_empty() {
            "body".to_string()
        } else {
            path.to_string()
        }
    };
    match value {
        Value::String(text) => screen_text(text, here, ErrorCode::InvalidField),
        Value::Number(number) => {
            contains_card_number(&number.to_string()).then(|| Finding::Card { place: here() })
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| screen_json(item, &format!("{path}[{i}]"), depth + 1)),
        Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            let name = printable_name(key);
            let field = if path.is_empty() {
                name
            } else {
                format!("{path}.{name}")
            };
            screen_text(key, || field.clone(), ErrorCode::InvalidField)
                .or_else(|| screen_json(item, &field, depth + 1))
        }),
        Value::Bool(_) | Value::Null => None,
    }
}

fn screen_text(text: &str, place: impl Fn() -> String, nul_code: ErrorCode) -> Option<Finding> {
    if text.contains('\0') {
        return Some(Finding::Nul {
            place: place(),
            code: nul_code,
        });
    }
    contains_card_number(text).then(|| Finding::Card { place: place() })
}

/// A name fit to echo: up to 64 characters of letters, digits, `_`, `-`, `.`, `[`, `]`; anything
/// else (a card number used as a key, a NUL) is replaced by `?`, so nothing found is echoed.
fn printable_name(name: &str) -> String {
    if contains_card_number(name) {
        return "?".to_string();
    }
    name.chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_-.[]".contains(c) {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// `a=1&b=2` → decoded (name, value) pairs (`+` is a space, as in forms and query strings).
fn form_pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(name, true), percent_decode(value, true))
        })
        .collect()
}

/// Decodes `%XX` escapes (and `+` as a space when `plus_is_space`); invalid escapes stay as
/// they are; bytes that are not UTF-8 become U+FFFD.
fn percent_decode(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use payledger_domain::card_numbers::test_cards;

    #[test]
    fn percent_escapes_and_plus_are_decoded() {
        assert_eq!(percent_decode("a%00b", false), "a\0b");
        assert_eq!(percent_decode("4242+4242", true), "4242 4242");
        assert_eq!(percent_decode("4242+4242", false), "4242+4242");
        assert_eq!(percent_decode("100%", false), "100%");
        assert_eq!(percent_decode("%4", false), "%4");
        assert_eq!(percent_decode("%zz", false), "%zz");
    }

    #[test]
    fn json_bodies_are_walked_to_every_string_number_and_key() {
        let body = serde_json::json!({"a": {"b": [1, {"c": test_cards::VISA_SPACED}]}});
        match screen_json(&body, "", 0) {
            Some(Finding::Card { place }) => assert_eq!(place, "a.b[1].c"),
            other => panic!("{other:?}"),
        }
        let key = serde_json::json!({ test_cards::VISA: 1 });
        match screen_json(&key, "", 0) {
            Some(Finding::Card { place }) => assert_eq!(place, "?"),
            other => panic!("{other:?}"),
        }
        let number: Value = serde_json::from_str(test_cards::VISA).unwrap();
        assert!(matches!(
            screen_json(&number, "", 0),
            Some(Finding::Card { .. })
        ));
        let nul = serde_json::json!({"orderName": "a\u{0}b"});
        match screen_json(&nul, "", 0) {
            Some(Finding::Nul { place, .. }) => assert_eq!(place, "orderName"),
            other => panic!("{other:?}"),
        }
        let fine = serde_json::json!({"orderId": "order-2026-0001", "amount": 50000,
            "id": "018f3c1e-7b2a-7c3d-9e4f-5a6b7c8d9e0f", "at": "2026-12-06T05:28:06Z"});
        assert!(screen_json(&fine, "", 0).is_none());
    }

    #[test]
    fn forms_and_other_bodies_are_screened_too() {
        let form = format!("name=x&card={}", test_cards::VISA_SPACED.replace(' ', "+"));
        assert!(matches!(
            screen_body_bytes("application/x-www-form-urlencoded", form.as_bytes()),
            Some(Finding::Card { .. })
        ));
        let text = format!("not json {}", test_cards::AMEX);
        assert!(matches!(
            screen_body_bytes("text/plain", text.as_bytes()),
            Some(Finding::Card { .. })
        ));
        assert!(screen_body_bytes("application/json", b"{\"amount\": 5000}").is_none());
    }

    #[test]
    fn error_answers_never_echo_the_number() {
        let error = Finding::Card {
            place: "orderName".into(),
        }
        .into_error();
        let text = format!("{error} {:?}", error.details);
        for card in test_cards::ALL {
            assert!(!text.contains(card));
        }
        assert_eq!(error.code, ErrorCode::CardDataRejected);
    }
}
