//! Orders: search, the order page with its recovery status and timeline, and the admin actions
//! on an order (refund, cancel enrollment, record an external payment).

use crate::actions::{self, field, Route};
use crate::pages::{money, render, Chrome, Time};
use crate::session::{app_state, Refusal, Session};
use crate::Console;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use chrono::{NaiveDate, TimeZone, Utc};
use payledger_read_models::orders::{OrderFilter, OrderView, MAX_SEARCH_OFFSET};
use serde::Deserialize;

const ORDER_PAGE: Route = Route::get("/v1/orders/{order_id}");
const TIMELINE: Route = Route::get("/v1/orders/{order_id}/timeline");
const REFUND: Route = Route::post("/v1/orders/{order_id}/refunds");
const CANCEL_ENROLLMENT: Route = Route::post("/v1/admin/orders/{order_id}/cancel-enrollment");
const EXTERNAL_PAYMENT: Route = Route::post("/v1/admin/orders/{order_id}/external-payments");

/// Orders per page of search results.
const PAGE_SIZE: i64 = 25;
/// Timeline entries shown on one order page (an order has a handful; a long one pages).
const TIMELINE_LIMIT: i64 = 200;

/// The statuses an order can have in the read model, for the search form's list.
const STATUSES: &[&str] = &[
    "READY",
    "CONFIRMING",
    "OUTCOME_UNKNOWN",
    "FAILED",
    "PAID",
    "PARTIALLY_REFUNDED",
    "REFUNDED",
    "EXPIRED",
];

#[derive(Debug, Default, Deserialize)]
pub struct SearchQuery {
    order_id: Option<String>,
    payment_key: Option<String>,
    customer_id: Option<String>,
    payee_id: Option<String>,
    status: Option<String>,
    from: Option<String>,
    to: Option<String>,
    page: Option<i64>,
}

pub struct OrderRow {
    pub order_id: String,
    pub status: String,
    pub amount: String,
    pub customer_id: String,
    pub payee_id: String,
    pub payment_key: String,
    pub placed: Time,
}

#[derive(Template)]
#[template(path = "orders.html")]
struct OrdersPage {
    c: Chrome,
    q: Filled,
    statuses: Vec<(&'static str, bool)>,
    rows: Vec<OrderRow>,
    searched: bool,
    error: Option<String>,
    page: i64,
    prev_href: Option<String>,
    next_href: Option<String>,
}

/// The search form as filled in, for redrawing it.
#[derive(Default)]
struct Filled {
    order_id: String,
    payment_key: String,
    customer_id: String,
    payee_id: String,
    status: String,
    from: String,
    to: String,
}

fn non_empty(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| v.chars().take(150).collect())
}

/// A date typed into the form, as the start of that day in the console's time zone.
fn day_start(text: &str, zone: chrono_tz::Tz) -> Result<chrono::DateTime<Utc>, String> {
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| format!("{text:?} is not a date (YYYY-MM-DD)"))?;
    let midnight = date
        .and_hms_opt(0, 0, 0)
        .ok_or_else(|| format!("{text:?} is not a date"))?;
    zone.from_local_datetime(&midnight)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| format!("{text:?} has no midnight in {zone}"))
}

fn query_string(filled: &Filled, page: i64) -> String {
    let pairs = [
        ("order_id", &filled.order_id),
        ("payment_key", &filled.payment_key),
        ("customer_id", &filled.customer_id),
        ("payee_id", &filled.payee_id),
        ("status", &filled.status),
        ("from", &filled.from),
        ("to", &filled.to),
    ];
    let mut out = String::from("/console/orders?");
    for (name, value) in pairs {
        if !value.is_empty() {
            out.push_str(&format!("{name}={}&", encode(value)));
        }
    }
    out.push_str(&format!("page={page}"));
    out
}

/// Kept here for the modules that link to orders' pages; it lives in `pages` so that modules
/// below this one (`refund_discrepancies`) can use it too.
pub use crate::pages::encode;

fn row_of(view: OrderView, zone: chrono_tz::Tz) -> OrderRow {
    OrderRow {
        amount: money(view.amount_minor, &view.currency),
        placed: Time::new(view.placed_at, zone),
        order_id: view.order_id,
        status: view.status,
        customer_id: view.customer_id,
        payee_id: view.payee_id,
        payment_key: view.payment_key.unwrap_or_default(),
    }
}

pub async fn search(
    request: HttpRequest,
    console: web::Data<Console>,
    query: web::Query<SearchQuery>,
) -> Result<HttpResponse, Refusal> {
    let session = actions::page_session(&request, ORDER_PAGE).await?;
    let state = app_state(&request)?;
    let zone = console.config.time_zone;
    let q = query.into_inner();
    let filled = Filled {
        order_id: non_empty(&q.order_id).unwrap_or_default(),
        payment_key: non_empty(&q.payment_key).unwrap_or_default(),
        customer_id: non_empty(&q.customer_id).unwrap_or_default(),
        payee_id: non_empty(&q.payee_id).unwrap_or_default(),
        status: non_empty(&q.status)
            .filter(|s| STATUSES.contains(&s.as_str()))
            .unwrap_or_default(),
        from: non_empty(&q.from).unwrap_or_default(),
        to: non_empty(&q.to).unwrap_or_default(),
    };
    let page = q.page.unwrap_or(1).clamp(1, MAX_SEARCH_OFFSET / PAGE_SIZE);
    let mut error = None;
    let mut filter = OrderFilter {
        order_id: non_empty(&q.order_id),
        payment_key: non_empty(&q.payment_key),
        customer_id: non_empty(&q.customer_id),
        payee_id: non_empty(&q.payee_id),
        status: (!filled.status.is_empty()).then(|| filled.status.clone()),
        ..OrderFilter::default()
    };
    if !filled.from.is_empty() {
        match day_start(&filled.from, zone) {
            Ok(at) => filter.placed_from = Some(at),
            Err(e) => error = Some(e),
        }
    }
    if !filled.to.is_empty() {
        // Until the end of that day: the start of the next.
        match day_start(&filled.to, zone) {
            Ok(at) => filter.placed_before = Some(at + chrono::Duration::days(1)),
            Err(e) => error = Some(e),
        }
    }
    let searched = request.query_string().contains('=');
    let mut rows = Vec::new();
    let mut more = false;
    if searched && error.is_none() {
        let found = payledger_read_models::orders::search_orders(
            &state.read_pool,
            &filter,
            (page - 1) * PAGE_SIZE,
            PAGE_SIZE + 1,
        )
        .await
        .map_err(|e| Refusal::Unavailable(e.to_string()))?;
        more = found.len() as i64 > PAGE_SIZE;
        rows = found
            .into_iter()
            .take(PAGE_SIZE as usize)
            .map(|v| row_of(v, zone))
            .collect();
    }
    let page_view = OrdersPage {
        c: Chrome::new(&request, &session, &console, "orders"),
        prev_href: (page > 1).then(|| query_string(&filled, page - 1)),
        next_href: more.then(|| query_string(&filled, page + 1)),
        statuses: STATUSES.iter().map(|s| (*s, filled.status == *s)).collect(),
        q: filled,
        rows,
        searched,
        error,
        page,
    };
    Ok(render(StatusCode::OK, &page_view))
}

pub struct TimelineRow {
    pub position: i64,
    pub version: i64,
    pub event_type: String,
    pub summary: String,
    pub actor: String,
    pub recorded: Time,
    pub stream_id: String,
    pub hash: String,
    pub payload: String,
}

pub struct RefundRow {
    pub refund_id: String,
    pub amount: String,
    pub status: String,
}

#[derive(Template)]
#[template(path = "order.html")]
struct OrderPage {
    c: Chrome,
    order_id: String,
    status: String,
    amount: String,
    captured: String,
    refunded: String,
    refund_pending: String,
    refundable: String,
    refundable_minor: i64,
    currency: String,
    customer_id: String,
    payee_id: String,
    provider: String,
    payment_key: String,
    order_name: String,
    last_failure_code: String,
    amount_mismatches: i32,
    placed: Time,
    paid: Option<Time>,
    refunds: Vec<RefundRow>,
    recovery_status: String,
    next_action: String,
    checked_provider: bool,
    timeline: Vec<TimelineRow>,
    may_see_raw: bool,
    may_refund: bool,
    may_cancel_enrollment: bool,
    may_record_payment: bool,
    discrepancies: Vec<crate::refund_discrepancies::DiscrepancyView>,
    may_resolve_discrepancy: bool,
}

#[derive(Debug, Default, Deserialize)]
pub struct OrderPageQuery {
    #[serde(default)]
    check: Option<String>,
}

pub async fn order_page(
    request: HttpRequest,
    console: web::Data<Console>,
    path: web::Path<String>,
    query: web::Query<OrderPageQuery>,
) -> Result<HttpResponse, Refusal> {
    let session = actions::page_session(&request, ORDER_PAGE).await?;
    let state = app_state(&request)?;
    let zone = console.config.time_zone;
    let chrome = Chrome::new(&request, &session, &console, "orders");
    let order_id = path.into_inner();
    let Some(view) = payledger_read_models::orders::get_order(&state.read_pool, &order_id)
        .await
        .map_err(|e| Refusal::Unavailable(e.to_string()))?
    else {
        let page = crate::pages::ResultPage {
            heading: format!("{} {order_id}", chrome.t("order_id")),
            message: "the order does not exist (or is not projected yet)".into(),
            code: Some("E_ORDER_NOT_FOUND".into()),
            c: chrome,
            ok: false,
            details: Vec::new(),
            back: "/console/orders".into(),
            secret: None,
        };
        return Ok(render(StatusCode::NOT_FOUND, &page));
    };
    // The recovery status is the API's own answer (`/payment-status`), provider check included
    // when the operator asks for it.
    let check_provider = query.check.as_deref() == Some("provider");
    let recovery = payledger_http::payment_status::payment_status(
        state.clone(),
        request.clone(),
        web::Path::from(order_id.clone()),
        web::Query(payledger_http::payment_status::PaymentStatusQuery { check_provider }),
    )
    .await;
    let recovery = match recovery {
        Ok(response) => {
            let bytes = actix_web::body::to_bytes(response.into_body())
                .await
                .unwrap_or_default();
            serde_json::from_slice::<serde_json::Value>(&bytes).unwrap_or_default()
        }
        Err(_) => serde_json::Value::Null,
    };
    let snapshot = state
        .payments
        .load_order(
            &payledger_domain::ids::OrderId::parse(&order_id)
                .map_err(|_| Refusal::Unavailable("bad order id".into()))?,
        )
        .await
        .ok()
        .flatten();
    let mut refunds: Vec<RefundRow> = snapshot
        .as_ref()
        .map(|s| {
            s.state
                .refunds
                .iter()
                .map(|(id, r)| RefundRow {
                    refund_id: id.to_string(),
                    amount: money(r.amount_minor, &view.currency),
                    status: serde_json::to_value(r.status)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default();
    refunds.sort_by(|a, b| a.refund_id.cmp(&b.refund_id));
    let may_see_timeline = session.may(TIMELINE.method, TIMELINE.pattern);
    let entries = if may_see_timeline {
        payledger_read_models::orders::timeline(&state.read_pool, &order_id, 0, TIMELINE_LIMIT)
            .await
            .map_err(|e| Refusal::Unavailable(e.to_string()))?
    } else {
        Vec::new()
    };
    let has_discrepancy = snapshot.as_ref().is_some_and(|s| {
        s.state
            .refunds
            .values()
            .any(|refund| refund.discrepancy.is_some())
    });
    let (pool, id) = (&state.read_pool, order_id.as_str());
    let later = crate::refund_discrepancies::later_entries(
        &entries,
        TIMELINE_LIMIT,
        has_discrepancy,
        |after| payledger_read_models::orders::timeline(pool, id, after, TIMELINE_LIMIT),
    )
    .await
    .map_err(|e| Refusal::Unavailable(e.to_string()))?;
    let discrepancies = snapshot
        .as_ref()
        .map(|s| {
            let refunds = &s.state.refunds;
            if later.is_empty() {
                crate::refund_discrepancies::views(&order_id, refunds, &entries, zone)
            } else {
                let whole: Vec<_> = entries.iter().cloned().chain(later).collect();
                crate::refund_discrepancies::views(&order_id, refunds, &whole, zone)
            }
        })
        .unwrap_or_default();
    let timeline = entries
        .into_iter()
        .map(|e| TimelineRow {
            position: e.global_position,
            version: e.stream_version,
            event_type: e.event_type,
            summary: e.summary,
            actor: e.actor.unwrap_or_default(),
            recorded: Time::new(e.recorded_at, zone),
            stream_id: e.stream_id,
            hash: e.hash_hex,
            payload: serde_json::to_string_pretty(&e.payload).unwrap_or_default(),
        })
        .collect();
    let page = OrderPage {
        c: chrome,
        recovery_status: field(&recovery, "status").unwrap_or_default(),
        next_action: field(&recovery, "nextAction").unwrap_or_default(),
        checked_provider: recovery
            .get("checkedProvider")
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
        order_id: view.order_id.clone(),
        status: view.status.clone(),
        amount: money(view.amount_minor, &view.currency),
        captured: money(view.captured_minor, &view.currency),
        refunded: money(view.refunded_minor, &view.currency),
        refund_pending: money(view.refund_pending_minor, &view.currency),
        refundable: money(view.refundable_minor, &view.currency),
        refundable_minor: view.refundable_minor,
        currency: view.currency.clone(),
        customer_id: view.customer_id.clone(),
        payee_id: view.payee_id.clone(),
        provider: view.provider.clone(),
        payment_key: view.payment_key.clone().unwrap_or_default(),
        order_name: view.order_name.clone(),
        last_failure_code: view.last_failure_code.clone().unwrap_or_default(),
        amount_mismatches: view.amount_mismatch_count,
        placed: Time::new(view.placed_at, zone),
        paid: view.paid_at.map(|t| Time::new(t, zone)),
        refunds,
        timeline,
        may_see_raw: may_see_timeline,
        may_refund: session.may(REFUND.method, REFUND.pattern),
        may_cancel_enrollment: session.may(CANCEL_ENROLLMENT.method, CANCEL_ENROLLMENT.pattern),
        may_record_payment: session.may(EXTERNAL_PAYMENT.method, EXTERNAL_PAYMENT.pattern),
        discrepancies,
        may_resolve_discrepancy: session.may(
            crate::refund_discrepancies::RESOLVE.method,
            crate::refund_discrepancies::RESOLVE.pattern,
        ),
    };
    Ok(render(StatusCode::OK, &page))
}

#[derive(Debug, Deserialize)]
pub struct RefundForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    idem: String,
    #[serde(default)]
    amount: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    confirm: Option<String>,
}

fn back_to(order_id: &str) -> String {
    format!("/console/orders/{}", encode(order_id))
}

pub async fn refund(
    request: HttpRequest,
    console: web::Data<Console>,
    path: web::Path<String>,
    form: web::Form<RefundForm>,
) -> Result<HttpResponse, Refusal> {
    let session = Session::of(&request).await?;
    let form = form.into_inner();
    actions::prepare(&request, &session, REFUND, &form.csrf, Some(&form.idem))?;
    let state = app_state(&request)?.clone();
    let order_id = path.into_inner();
    let chrome = Chrome::new(&request, &session, &console, "orders");
    let heading = format!("{} · {order_id}", chrome.t("refund"));
    let result = if form.confirm.is_none() {
        Err(payledger_http::errors::ApiError::field(
            "confirm",
            "tick the confirmation box to refund",
        ))
    } else {
        let amount = form.amount.trim();
        let amount = if amount.is_empty() {
            None
        } else {
            // As the API reads it: an integer in minor units; anything else is refused by it.
            match amount.parse::<i64>() {
                Ok(n) => Some(serde_json::Number::from(n)),
                Err(_) => {
                    return Ok(actions::result_page(
                        chrome,
                        &actions::Outcome {
                            status: 400,
                            code: Some("E_INVALID_AMOUNT".into()),
                            message: "the amount must be a whole number of minor units".into(),
                            body: serde_json::Value::Null,
                        },
                        heading,
                        Vec::new(),
                        back_to(&order_id),
                    ));
                }
            }
        };
        payledger_http::orders::refund(
            state,
            request.clone(),
            web::Path::from(order_id.clone()),
            web::Json(payledger_http::dto::RefundBody {
                refund_id: None,
                amount,
                reason: form.reason.clone(),
            }),
        )
        .await
    };
    let outcome = actions::finish(&request, &session, REFUND, result).await;
    let details = actions::fields(&outcome.body, &["refundId", "status", "amount"]);
    Ok(actions::result_page(
        chrome,
        &outcome,
        heading,
        details,
        back_to(&order_id),
    ))
}

#[derive(Debug, Deserialize)]
pub struct CancelEnrollmentForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    refund: Option<String>,
}

pub async fn cancel_enrollment(
    request: HttpRequest,
    console: web::Data<Console>,
    path: web::Path<String>,
    form: web::Form<CancelEnrollmentForm>,
) -> Result<HttpResponse, Refusal> {
    let form = form.into_inner();
    let order_id = path.into_inner();
    let page = actions::ActionPage {
        route: CANCEL_ENROLLMENT,
        section: "orders",
        label: "cancel_enrollment",
        subject: &order_id,
        details: &["status"],
        back: back_to(&order_id),
    };
    let body = payledger_http::admin::CancelEnrollmentBody {
        reason: form.reason,
        refund: form.refund.is_some(),
    };
    actions::perform(&request, &console, page, &form.csrf, None, |state| {
        payledger_http::admin::cancel_enrollment(
            state,
            request.clone(),
            web::Path::from(order_id.clone()),
            web::Json(body),
        )
    })
    .await
}

#[derive(Debug, Deserialize)]
pub struct ExternalPaymentForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    provider: String,
    #[serde(default)]
    provider_transaction_id: String,
    #[serde(default)]
    amount: String,
    #[serde(default)]
    currency: String,
    #[serde(default)]
    method: String,
    #[serde(default)]
    reason: String,
}

pub async fn record_external_payment(
    request: HttpRequest,
    console: web::Data<Console>,
    path: web::Path<String>,
    form: web::Form<ExternalPaymentForm>,
) -> Result<HttpResponse, Refusal> {
    let form = form.into_inner();
    let order_id = path.into_inner();
    let page = actions::ActionPage {
        route: EXTERNAL_PAYMENT,
        section: "orders",
        label: "record_external_payment",
        subject: &order_id,
        details: &["status"],
        back: back_to(&order_id),
    };
    // The API's body, built as a client would send it: its own parsers judge every field.
    let amount = form
        .amount
        .trim()
        .parse::<i64>()
        .map(serde_json::Value::from)
        .unwrap_or_else(|_| serde_json::Value::String(form.amount.clone()));
    let method = form.method.trim();
    let json = serde_json::json!({
        "provider": form.provider.trim(),
        "providerTransactionId": form.provider_transaction_id.trim(),
        "amount": amount,
        "currency": form.currency.trim(),
        "method": (!method.is_empty()).then_some(method),
        "reason": form.reason,
    });
    let body = serde_json::from_value::<payledger_http::admin::ExternalPaymentBody>(json);
    actions::perform(&request, &console, page, &form.csrf, None, |state| {
        let (request, order_id) = (request.clone(), order_id.clone());
        async move {
            match body {
                Ok(body) => {
                    payledger_http::admin::record_external_payment(
                        state,
                        request,
                        web::Path::from(order_id),
                        web::Json(body),
                    )
                    .await
                }
                Err(_) => Err(payledger_http::errors::ApiError::new(
                    payledger_http::errors::ErrorCode::InvalidAmount,
                    "the amount must be a whole number of minor units",
                )),
            }
        }
    })
    .await
}
