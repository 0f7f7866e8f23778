//! The OpenAPI document of the whole API (`GET /openapi.json`) and a viewer for it (`GET /docs`).
//!
//! The document is derived from the code: each handler's `#[utoipa::path]` attribute (method,
//! path, parameters, request and success bodies) and each body's `ToSchema` derive. What is the
//! same for every route is added here, from the tables that decide it at run time, so it cannot
//! drift either:
//! - every operation gets the `4XX`/`5XX` error body, whose `code` lists `errors::ErrorCode::ALL`;
//! - who may call it comes from `auth::ROUTES` (the API-key requirement and the roles);
//! - commands (`auth::ROUTES` rows marked `command`) get the `Idempotency-Key` header.
//!
//! The test at the bottom fails when a mounted route is missing from the document (or the
//! document names a route that is not mounted).
//!
//! `/docs` is one self-contained HTML page (`docs.html`, embedded at compile time) that renders
//! the document and can send requests: no CDN, no network beyond this server.

use crate::auth::{self, Access};
use crate::errors::ErrorCode;
use actix_web::http::Method;
use actix_web::HttpResponse;
use serde::Serialize;
use std::sync::OnceLock;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Ref, Schema, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, RefOr, Required};
use utoipa::OpenApi;

/// Every error answer: `{"code", "message"}` plus fields that help the client act.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// Stable code to branch on; the `ErrorCode` schema lists them all.
    #[schema(schema_with = error_code_ref)]
    pub code: String,
    /// For people; never parse it.
    pub message: String,
    /// The request field at fault (`E_INVALID_FIELD`, `E_INVALID_AMOUNT`).
    pub field: Option<String>,
    /// The provider's own code (`E_PAYMENT_REFUSED`).
    pub provider_code: Option<String>,
    /// What the client should do next (`E_PAYMENT_REFUSED`).
    pub suggested_action: Option<String>,
}

fn error_code_ref() -> Ref {
    Ref::from_schema_name("ErrorCode")
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "payledger",
        description = "An event-sourced payment ledger. Amounts are integers in minor units. \
            Authenticate with `Authorization: Bearer <api key>` (or `X-Api-Key`); each operation \
            lists the roles it admits. Errors are `{code, message}`; branch on `code`."
    ),
    paths(
        crate::log::healthz,
        crate::log::readyz,
        crate::metrics::scrape,
        openapi_json,
        docs_page,
        crate::orders::place_order,
        crate::orders::search_orders,
        crate::orders::get_order,
        crate::orders::timeline,
        crate::orders::refund,
        crate::orders::confirm_payment,
        crate::payment_status::payment_status,
        crate::log::read_stream,
        crate::log::read_events,
        crate::log::read_checkpoints,
        crate::privacy::erase_customer,
        crate::privacy::erase_payee,
        crate::log::read_proof,
        crate::webhooks::receive,
        crate::webhooks::inbound_dead_letters,
        crate::webhooks::replay_inbound,
        crate::webhooks::outbound_dead_letters,
        crate::webhooks::replay_outbound,
        crate::admin::get_switches,
        crate::admin::suspend_payments,
        crate::admin::resume_payments,
        crate::admin::suspend_payee,
        crate::admin::resume_payee,
        crate::admin::record_external_payment,
        crate::admin::cancel_enrollment,
        crate::subscriptions::register_billing_key,
        crate::subscriptions::revoke_billing_key,
        crate::subscriptions::start_subscription,
        crate::subscriptions::list_subscriptions,
        crate::subscriptions::get_subscription,
        crate::subscriptions::charge,
        crate::subscriptions::change_payment_method,
        crate::subscriptions::cancel,
        crate::subscriptions::resume,
        crate::subscriptions::get_wallet,
        crate::subscriptions::purchase_credits,
        crate::subscriptions::spend_credits,
        crate::bookings::cancel,
        crate::bookings::fulfil,
        crate::claims::file_claim,
        crate::claims::list_claims,
        crate::claims::claim_stats,
        crate::claims::get_claim,
        crate::claims::submit_statement,
        crate::claims::assign,
        crate::claims::resolve,
        crate::claims::appeal,
        crate::settlements::list_statements,
        crate::settlements::confirm,
        crate::settlements::payout,
        crate::settlements::trial_balance,
        crate::test_clock::get_clock,
        crate::test_clock::advance,
        crate::test_clock::set,
        crate::reconciliation::import,
        crate::reconciliation::unsettled_check,
        crate::reconciliation::exceptions,
        crate::reconciliation::resolve,
        crate::reconciliation::report,
        crate::booking_confirmations::get_booking,
        crate::booking_confirmations::confirm_booking,
        crate::booking_confirmations::unconfirmed_queue,
        crate::booking_confirmations::manual_confirm,
        crate::booking_confirmations::force_cancel,
        crate::booking_confirmations::reschedule,
        crate::booking_confirmations::record_session_notes,
        crate::subscriptions::get_membership,
        crate::refund_discrepancies::resolve,
    ),
    components(schemas(ErrorBody)),
    modifiers(&Conventions)
)]
pub struct ApiDoc;

/// Adds what every route shares (see the module documentation).
struct Conventions;

impl utoipa::Modify for Conventions {
    fn modify(&self, document: &mut Document) {
        let components = document.components.get_or_insert_with(Default::default);
        components
            .schemas
            .insert("ErrorCode".into(), error_code_schema());
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        components.add_security_scheme(
            "apiKey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Api-Key"))),
        );
        for (path, item) in document.paths.paths.iter_mut() {
            let operations = [
                (Method::GET, item.get.as_mut()),
                (Method::POST, item.post.as_mut()),
                (Method::PUT, item.put.as_mut()),
                (Method::PATCH, item.patch.as_mut()),
                (Method::DELETE, item.delete.as_mut()),
            ];
            for (method, operation) in operations {
                if let Some(operation) = operation {
                    apply_conventions(&method, path, operation);
                }
            }
        }
    }
}

fn apply_conventions(method: &Method, path: &str, operation: &mut Operation) {
    for (status, description) in [
        (
            "4XX",
            "The request cannot be served as sent; `code` says why (see ErrorCode).",
        ),
        (
            "5XX",
            "E_UNAVAILABLE / E_PROVIDER_UNAVAILABLE (retry after `Retry-After`) or E_INTERNAL (a bug).",
        ),
    ] {
        operation
            .responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| {
                RefOr::T(
                    ResponseBuilder::new()
                        .description(description)
                        .content(
                            "application/json",
                            ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name("ErrorBody")))
                                .build(),
                        )
                        .build(),
                )
            });
    }
    let Some(rule) = auth::rule_for(method, path) else {
        return;
    };
    let access = match rule.access {
        Access::Open => "Open: no API key.".to_string(),
        Access::Roles(roles) => {
            operation.security = Some(vec![
                SecurityRequirement::new("bearer", Vec::<String>::new()),
                SecurityRequirement::new("apiKey", Vec::<String>::new()),
            ]);
            let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            format!("Roles: {}.", names.join(", "))
        }
    };
    let description = operation.description.take().unwrap_or_default();
    operation.description = Some(if description.is_empty() {
        access
    } else {
        format!("{description}\n\n{access}")
    });
    if rule.command {
        operation
            .parameters
            .get_or_insert_with(Vec::new)
            .push(RefOr::T(
                ParameterBuilder::new()
                    .name("Idempotency-Key")
                    .parameter_in(ParameterIn::Header)
                    .required(Required::False)
                    .description(Some(
                        "The same key with the same request replays the first answer \
                         (`Idempotency-Replayed: true`); with another request it is refused.",
                    ))
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                    .build(),
            ));
    }
}

/// `ErrorCode`: the codes of `errors::ErrorCode::ALL`, each with its status and meaning.
fn error_code_schema() -> RefOr<Schema> {
    let table: Vec<String> = ErrorCode::ALL
        .iter()
        .map(|code| {
            format!(
                "- `{}` ({}): {}",
                code.as_str(),
                code.status().as_u16(),
                code.description()
            )
        })
        .collect();
    RefOr::T(Schema::Object(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(ErrorCode::ALL.iter().map(|c| c.as_str())))
            .description(Some(table.join("\n")))
            .build(),
    ))
}

/// The document, built once.
pub fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        let mut document = match serde_json::to_value(ApiDoc::openapi()) {
            Ok(document) => document,
            Err(e) => return format!("{{\"error\": \"the document does not serialise: {e}\"}}"),
        };
        // What the validators enforce, from their own constants.
        crate::constraints::annotate(&mut document);
        serde_json::to_string_pretty(&document)
            .unwrap_or_else(|e| format!("{{\"error\": \"the document does not serialise: {e}\"}}"))
    })
}

/// This API's OpenAPI document.
#[utoipa::path(get, path = "/openapi.json", tag = "service",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object)))]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document_json())
}

/// An interactive viewer of the document (self-contained: no assets from elsewhere).
#[utoipa::path(get, path = "/docs", tag = "service",
    responses((status = 200, description = "HTML page", content_type = "text/html", body = String)))]
pub async fn docs_page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("content-security-policy", DOCS_CSP))
        .body(include_str!("docs.html"))
}

/// The page may talk to this server only.
const DOCS_CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:";

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test as actix_test;
    use actix_web::{web, App, HttpRequest};
    use std::collections::BTreeSet;

    /// The full patterns of every resource actix mounted, read from its resource map.
    ///
    /// actix offers no iterator over its routes; its `ResourceMap` derives `Debug`, and the
    /// pretty form nests each scope's resources one level deeper. If that format ever changes,
    /// the count check below fails loudly instead of the test passing on an empty set.
    fn mounted_patterns(resource_map: &str) -> BTreeSet<String> {
        let lines: Vec<&str> = resource_map.lines().collect();
        // (indent of `ResourceMap {`, full pattern of that node)
        let mut stack: Vec<(usize, String)> = Vec::new();
        let mut patterns = BTreeSet::new();
        for (index, line) in lines.iter().enumerate() {
            let indent = line.len() - line.trim_start().len();
            let trimmed = line.trim();
            if trimmed == "ResourceMap {" {
                while stack.last().is_some_and(|(i, _)| *i >= indent) {
                    stack.pop();
                }
                let parent = stack.last().map(|(_, p)| p.clone()).unwrap_or_default();
                stack.push((indent, parent));
            } else if trimmed == "patterns: Single(" {
                let pattern = lines
                    .get(index + 1)
                    .map(|l| l.trim().trim_end_matches(',').trim_matches('"'))
                    .unwrap_or_default();
                let is_prefix = lines[index..]
                    .iter()
                    .find_map(|l| l.trim().strip_prefix("is_prefix: "))
                    .is_some_and(|v| v.starts_with("true"));
                if let Some((_, full)) = stack.last_mut() {
                    full.push_str(pattern);
                    if !is_prefix && !full.is_empty() {
                        patterns.insert(full.clone());
                    }
                }
            }
        }
        patterns
    }

    #[actix_web::test]
    async fn every_mounted_route_is_in_the_document_and_nothing_else() {
        let app =
            actix_test::init_service(App::new().configure(crate::configure).route(
                "/__resource_map",
                web::get().to(|request: HttpRequest| async move {
                    format!("{:#?}", request.resource_map())
                }),
            ))
            .await;
        let map = actix_test::call_and_read_body(
            &app,
            actix_test::TestRequest::get()
                .uri("/__resource_map")
                .to_request(),
        )
        .await;
        let mut patterns = mounted_patterns(&String::from_utf8_lossy(&map));
        patterns.remove("/__resource_map");
        assert!(
            patterns.len() >= 40,
            "the resource map was not read: {patterns:?}"
        );

        // Which methods each pattern answers: anything but the default service's "no such
        // route" means a handler is mounted (it fails for lack of state, which is fine here).
        let mut mounted = BTreeSet::new();
        for pattern in &patterns {
            let concrete = concrete_path(pattern);
            for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
                let request = actix_test::TestRequest::default()
                    .method(method.parse().unwrap())
                    .uri(&concrete)
                    .to_request();
                let response = actix_test::call_service(&app, request).await;
                let status = response.status().as_u16();
                let body = actix_test::read_body(response).await;
                let unrouted =
                    status == 404 && String::from_utf8_lossy(&body).contains("no such route");
                if !unrouted {
                    mounted.insert(format!("{method} {pattern}"));
                }
            }
        }

        let document: serde_json::Value = serde_json::from_str(document_json()).unwrap();
        let mut documented = BTreeSet::new();
        for (path, item) in document["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                documented.insert(format!("{} {path}", method.to_uppercase()));
            }
        }
        let missing: Vec<&String> = mounted.difference(&documented).collect();
        assert!(
            missing.is_empty(),
            "mounted but not in /openapi.json: {missing:#?}"
        );
        let stale: Vec<&String> = documented.difference(&mounted).collect();
        assert!(
            stale.is_empty(),
            "in /openapi.json but not mounted: {stale:#?}"
        );
    }

    fn concrete_path(pattern: &str) -> String {
        let mut out = String::new();
        let mut in_param = false;
        for c in pattern.chars() {
            match c {
                '{' => {
                    in_param = true;
                    out.push_str("probe1");
                }
                '}' => in_param = false,
                _ if in_param => {}
                _ => out.push(c),
            }
        }
        out
    }

    #[test]
    fn every_operation_carries_the_error_body_and_commands_the_idempotency_key() {
        let document: serde_json::Value = serde_json::from_str(document_json()).unwrap();
        let codes = document["components"]["schemas"]["ErrorCode"]["enum"]
            .as_array()
            .unwrap();
        assert_eq!(codes.len(), ErrorCode::ALL.len());
        for (path, item) in document["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                assert_eq!(
                    operation["responses"]["4XX"]["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{method} {path}"
                );
            }
        }
        let confirm = &document["paths"]["/v1/payments/confirm"]["post"];
        assert!(confirm["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "Idempotency-Key"));
        assert!(
            confirm["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                .as_str()
                .unwrap()
                .ends_with("ConfirmBody")
        );
    }
}
