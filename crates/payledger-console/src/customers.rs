//! Customers and subscriptions: queues of subscriptions by state (`past_due`,
//! `requires_payment_method`, `needs_review`, …), a customer's page (subscriptions, membership,
//! the credit wallet and its history, billing keys as card facts only), and the subscription
//! page (billing periods, dunning attempts, history) with the admin actions: cancel at the end
//! of the period, end now, withdraw a cancellation, charge now.
//!
//! Reads are the API's own answers (`GET /v1/subscriptions…`, `GET /v1/wallets/{id}`), the
//! subscriptions read model's card facts, and the streams' events read through the store; the
//! actions are the API's handlers (see `actions.rs`). No billing key ever reaches a page: the
//! read model holds none, and history rows show only named, harmless fields.

use crate::actions::{self, json_of, Route};
use crate::pages::{money, render, Chrome, Time};
use crate::session::{app_state, Refusal, Session};
use crate::Console;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use chrono::{DateTime, Utc};
use payledger_domain::streams::StreamKind;
use payledger_http::subscriptions as api;
use serde::Deserialize;
use serde_json::Value;

const LIST: Route = Route {
    method: "GET",
    pattern: "/v1/subscriptions",
};
const ONE: Route = Route {
    method: "GET",
    pattern: "/v1/subscriptions/{subscription_id}",
};
const WALLET: Route = Route {
    method: "GET",
    pattern: "/v1/wallets/{customer_id}",
};
const CANCEL: Route = Route {
    method: "POST",
    pattern: "/v1/subscriptions/{subscription_id}/cancel",
};
const RESUME: Route = Route {
    method: "POST",
    pattern: "/v1/subscriptions/{subscription_id}/resume",
};
const CHARGE: Route = Route {
    method: "POST",
    pattern: "/v1/subscriptions/{subscription_id}/charge",
};

/// The queues, the ones that need a person first.
const QUEUES: &[&str] = &[
    "past_due",
    "requires_payment_method",
    "needs_review",
    "suspended",
    "active",
    "ended",
];
/// Subscriptions per page of a queue.
const PAGE_SIZE: i64 = 50;
/// Events of one stream shown on a page (the newest).
const HISTORY_LIMIT: i64 = 300;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IntervalIn {
    unit: String,
    count: i64,
}

/// The API's subscription answer, the fields the pages show.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubscriptionIn {
    subscription_id: String,
    customer_id: String,
    plan_id: String,
    status: String,
    amount: i64,
    currency: String,
    interval: IntervalIn,
    billing_key_id: String,
    anchor: DateTime<Utc>,
    cycle: i64,
    paid_cycles: i64,
    paid_through: Option<DateTime<Utc>>,
    next_charge_at: Option<DateTime<Utc>>,
    retry_count: i64,
    next_retry_at: Option<DateTime<Utc>>,
    last_failure_code: Option<String>,
    grace_period_ends_at: Option<DateTime<Utc>>,
    cancel_at_period_end: bool,
    cancel_effective_at: Option<DateTime<Utc>>,
    suspended_reason: Option<String>,
    attempt_in_flight: bool,
    membership_level: u8,
    version: i64,
}

pub struct SubscriptionRow {
    pub subscription_id: String,
    pub customer_id: String,
    pub plan_id: String,
    pub status: String,
    pub amount: String,
    pub interval: String,
    pub billing_key_id: String,
    pub anchor: Time,
    pub cycle: i64,
    pub paid_cycles: i64,
    pub paid_through: Option<Time>,
    pub next_charge: Option<Time>,
    pub retry_count: i64,
    pub next_retry: Option<Time>,
    pub last_failure: String,
    pub grace_ends: Option<Time>,
    pub cancel_at_period_end: bool,
    pub cancel_effective: Option<Time>,
    pub suspended_reason: String,
    pub attempt_in_flight: bool,
    pub membership_level: u8,
    pub version: i64,
}

impl SubscriptionRow {
    fn from_answer(s: SubscriptionIn, zone: chrono_tz::Tz) -> SubscriptionRow {
        let time = |t: Option<DateTime<Utc>>| t.map(|t| Time::new(t, zone));
        SubscriptionRow {
            amount: money(s.amount, &s.currency),
            interval: format!("{} {}", s.interval.count, s.interval.unit),
            anchor: Time::new(s.anchor, zone),
            paid_through: time(s.paid_through),
            next_charge: time(s.next_charge_at),
            next_retry: time(s.next_retry_at),
            grace_ends: time(s.grace_period_ends_at),
            cancel_effective: time(s.cancel_effective_at),
            last_failure: s.last_failure_code.unwrap_or_default(),
            suspended_reason: s.suspended_reason.unwrap_or_default(),
            subscription_id: s.subscription_id,
            customer_id: s.customer_id,
            plan_id: s.plan_id,
            status: s.status,
            billing_key_id: s.billing_key_id,
            cycle: s.cycle,
            paid_cycles: s.paid_cycles,
            retry_count: s.retry_count,
            cancel_at_period_end: s.cancel_at_period_end,
            attempt_in_flight: s.attempt_in_flight,
            membership_level: s.membership_level,
            version: s.version,
        }
    }
}

fn subscriptions_of(body: &Value, zone: chrono_tz::Tz) -> Vec<SubscriptionRow> {
    body.get("subscriptions")
        .cloned()
        .and_then(|s| serde_json::from_value::<Vec<SubscriptionIn>>(s).ok())
        .unwrap_or_default()
        .into_iter()
        .map(|s| SubscriptionRow::from_answer(s, zone))
        .collect()
}

fn encode(text: &str) -> String {
    crate::orders::encode(text)
}

#[derive(Template)]
#[template(path = "customers.html")]
struct QueuePage {
    c: Chrome,
    queues: Vec<(&'static str, bool)>,
    status: String,
    rows: Vec<SubscriptionRow>,
    error: Option<String>,
    next_href: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct QueueQuery {
    customer_id: Option<String>,
    status: Option<String>,
    after: Option<String>,
}

/// `/console/customers`: the customer search and the queues by state.
pub async fn queue(
    request: HttpRequest,
    console: web::Data<Console>,
    query: web::Query<QueueQuery>,
) -> Result<HttpResponse, Refusal> {
    let session = Session::of(&request).await?;
    session.require(LIST.method, LIST.pattern)?;
    if let Some(customer_id) = query
        .customer_id
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty())
    {
        let target: String = customer_id.chars().take(150).collect();
        return Ok(crate::sign_in::see_other(&format!(
            "/console/customers/{}",
            encode(&target)
        )));
    }
    let state = app_state(&request)?.clone();
    let zone = console.config.time_zone;
    let status = query
        .status
        .clone()
        .filter(|s| QUEUES.contains(&s.as_str()))
        .unwrap_or_else(|| QUEUES[0].to_string());
    let after = query.after.clone().filter(|a| !a.is_empty());
    let api_query = api::SubscriptionListQuery {
        status: Some(status.clone()),
        customer_id: None,
        after,
        limit: Some(PAGE_SIZE),
        min_position: None,
    };
    let (rows, next_href, error) =
        match json_of(api::list_subscriptions(state, web::Query(api_query)).await).await {
            Ok(body) => {
                let next_href = body
                    .get("nextAfter")
                    .and_then(Value::as_str)
                    .map(|a| format!("/console/customers?status={status}&after={}", encode(a)));
                (subscriptions_of(&body, zone), next_href, None)
            }
            Err((code, message)) => (Vec::new(), None, Some(format!("{message} ({code})"))),
        };
    let page = QueuePage {
        c: Chrome::new(&request, &session, &console, "customers"),
        queues: QUEUES.iter().map(|q| (*q, *q == status)).collect(),
        status,
        rows,
        error,
        next_href,
    };
    Ok(render(StatusCode::OK, &page))
}

pub struct WalletView {
    pub balance: i64,
    pub purchased_total: i64,
    pub spent_total: i64,
    pub clawed_back_total: i64,
    pub shortfall_total: i64,
}

pub struct WalletEntry {
    pub recorded: Time,
    pub event_type: String,
    /// Signed credits: `+100`, `-30`.
    pub change: String,
    pub balance_after: String,
    pub detail: String,
}

pub struct KeyRow {
    pub billing_key_id: String,
    pub status: String,
    pub provider: String,
    pub card: String,
    pub card_type: String,
    pub issuer_code: String,
    pub expiry: String,
    pub registered: Time,
}

#[derive(Template)]
#[template(path = "customer.html")]
struct CustomerPage {
    c: Chrome,
    customer_id: String,
    membership_level: u8,
    wallet: Option<WalletView>,
    wallet_error: Option<String>,
    wallet_history: Vec<WalletEntry>,
    subscriptions: Vec<SubscriptionRow>,
    keys: Vec<KeyRow>,
    may_see_wallet: bool,
}

/// The newest events of a stream (at most [`HISTORY_LIMIT`]), oldest first.
async fn newest_events(
    request: &HttpRequest,
    stream_id: &str,
) -> Result<Vec<payledger_store::RecordedEvent>, Refusal> {
    let state = app_state(request)?;
    // These streams are short (a wallet's operations, a subscription's cycles): read up to a
    // bound, then keep the newest.
    let mut events = state
        .store
        .read_stream(stream_id, 0, 10_000)
        .await
        .map_err(|e| Refusal::Unavailable(e.to_string()))?;
    let skip = events.len().saturating_sub(HISTORY_LIMIT as usize);
    events.drain(..skip);
    Ok(events)
}

fn number(payload: &Value, name: &str) -> i64 {
    payload.get(name).and_then(Value::as_i64).unwrap_or(0)
}

fn text(payload: &Value, name: &str) -> String {
    match payload.get(name) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn wallet_entry(event: &payledger_store::RecordedEvent, zone: chrono_tz::Tz) -> WalletEntry {
    let p = &event.payload;
    let (change, detail) = match event.event_type.as_str() {
        "CreditsPurchased" => (
            number(p, "credits"),
            format!("{} · {}", text(p, "purchaseId"), text(p, "orderId")),
        ),
        "CreditsSpent" => (
            -number(p, "credits"),
            format!("{} · {}", text(p, "spendId"), text(p, "reason")),
        ),
        "CreditsClawedBack" => (
            -number(p, "creditsClawed"),
            format!(
                "{} · shortfall {}",
                text(p, "purchaseId"),
                number(p, "shortfallCredits")
            ),
        ),
        _ => (0, String::new()),
    };
    WalletEntry {
        recorded: Time::new(event.recorded_at, zone),
        event_type: event.event_type.clone(),
        change: if change > 0 {
            format!("+{change}")
        } else {
            change.to_string()
        },
        balance_after: text(p, "balanceAfter"),
        detail,
    }
}

/// `/console/customers/{customer_id}`.
pub async fn customer(
    request: HttpRequest,
    console: web::Data<Console>,
    path: web::Path<String>,
) -> Result<HttpResponse, Refusal> {
    let session = Session::of(&request).await?;
    session.require(LIST.method, LIST.pattern)?;
    let state = app_state(&request)?.clone();
    let zone = console.config.time_zone;
    let customer_id = path.into_inner();
    let chrome = Chrome::new(&request, &session, &console, "customers");
    let api_query = api::SubscriptionListQuery {
        status: None,
        customer_id: Some(customer_id.clone()),
        after: None,
        limit: Some(100),
        min_position: None,
    };
    let subscriptions =
        match json_of(api::list_subscriptions(state.clone(), web::Query(api_query)).await).await {
            Ok(body) => subscriptions_of(&body, zone),
            Err((code, message)) => {
                let outcome = actions::Outcome {
                    status: 400,
                    code: Some(code),
                    message,
                    body: Value::Null,
                };
                let heading = format!("{} {customer_id}", chrome.t("customer"));
                return Ok(actions::result_page(
                    chrome,
                    &outcome,
                    heading,
                    Vec::new(),
                    "/console/customers".into(),
                ));
            }
        };
    let may_see_wallet = session.may(WALLET.method, WALLET.pattern);
    let (wallet, membership_level, wallet_error) = if may_see_wallet {
        match json_of(
            api::get_wallet(
                state.clone(),
                request.clone(),
                web::Path::from(customer_id.clone()),
            )
            .await,
        )
        .await
        {
            Ok(body) => (
                Some(WalletView {
                    balance: number(&body, "balance"),
                    purchased_total: number(&body, "purchasedTotal"),
                    spent_total: number(&body, "spentTotal"),
                    clawed_back_total: number(&body, "clawedBackTotal"),
                    shortfall_total: number(&body, "shortfallTotal"),
                }),
                u8::try_from(number(&body, "membershipLevel")).unwrap_or(0),
                None,
            ),
            Err((code, message)) => (None, 0, Some(format!("{message} ({code})"))),
        }
    } else {
        (None, 0, None)
    };
    let wallet_history = if may_see_wallet {
        newest_events(&request, &StreamKind::Wallet.name(&customer_id))
            .await?
            .iter()
            .rev()
            .map(|e| wallet_entry(e, zone))
            .collect()
    } else {
        Vec::new()
    };
    let keys =
        payledger_read_models::subscriptions::billing_keys_of(&state.read_pool, &customer_id)
            .await
            .map_err(|e| Refusal::Unavailable(e.to_string()))?
            .into_iter()
            .map(|k| KeyRow {
                // Card facts only; the provider's billing key is sealed in the log and never read here.
                card: format!("•••• •••• •••• {}", k.last4),
                billing_key_id: k.billing_key_id,
                status: k.status,
                provider: k.provider,
                card_type: k.card_type,
                issuer_code: k.issuer_code,
                expiry: k.expiry.unwrap_or_default(),
                registered: Time::new(k.registered_at, zone),
            })
            .collect();
    let page = CustomerPage {
        c: chrome,
        membership_level,
        wallet,
        wallet_error,
        wallet_history,
        subscriptions,
        keys,
        may_see_wallet,
        customer_id,
    };
    Ok(render(StatusCode::OK, &page))
}

/// One charge attempt of a cycle, as the subscription's events tell it.
pub struct AttemptRow {
    pub cycle: i64,
    pub attempt: i64,
    pub trigger: String,
    pub started: Time,
    pub outcome: String,
    pub code: String,
    pub handling: String,
    pub next: Option<Time>,
}

/// A paid billing period.
pub struct PeriodRow {
    pub cycle: i64,
    pub start: Time,
    pub end: Time,
    pub amount: String,
    pub paid: Time,
}

pub struct HistoryRow {
    pub recorded: Time,
    pub event_type: String,
    pub actor: String,
    pub summary: String,
}

#[derive(Template)]
#[template(path = "subscription.html")]
struct SubscriptionPage {
    c: Chrome,
    s: SubscriptionRow,
    periods: Vec<PeriodRow>,
    attempts: Vec<AttemptRow>,
    history: Vec<HistoryRow>,
    may_cancel: bool,
    may_resume: bool,
    may_charge: bool,
}

fn time_of(payload: &Value, name: &str, zone: chrono_tz::Tz) -> Option<Time> {
    payload
        .get(name)
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| Time::new(t.with_timezone(&Utc), zone))
}

/// Fields of a subscription event worth a line, in this order; anything else stays in the log.
const SUMMARY_FIELDS: &[&str] = &[
    "cycle",
    "attempt",
    "trigger",
    "amountMinor",
    "currency",
    "reason",
    "reasonCode",
    "effectiveAt",
    "billingKeyId",
    "previousBillingKeyId",
    "redrive",
];

fn summary(payload: &Value) -> String {
    let mut parts: Vec<String> = SUMMARY_FIELDS
        .iter()
        .filter_map(|name| {
            let value = text(payload, name);
            (!value.is_empty()).then(|| format!("{name} {value}"))
        })
        .collect();
    if let Some(code) = payload.pointer("/failure/code").and_then(Value::as_str) {
        parts.push(format!("failure {code}"));
    }
    if let Some(kind) = payload.pointer("/handling/kind").and_then(Value::as_str) {
        parts.push(kind.to_string());
    }
    parts.join(" · ")
}

fn attempts_and_periods(
    events: &[payledger_store::RecordedEvent],
    currency: &str,
    zone: chrono_tz::Tz,
) -> (Vec<AttemptRow>, Vec<PeriodRow>) {
    let mut attempts: Vec<AttemptRow> = Vec::new();
    let mut periods = Vec::new();
    for event in events {
        let p = &event.payload;
        let (cycle, attempt) = (number(p, "cycle"), number(p, "attempt"));
        let index = attempts
            .iter()
            .rposition(|a| a.cycle == cycle && a.attempt == attempt);
        match event.event_type.as_str() {
            "ChargeAttemptStarted" => attempts.push(AttemptRow {
                cycle,
                attempt,
                trigger: text(p, "trigger"),
                started: Time::new(event.recorded_at, zone),
                outcome: "in_flight".into(),
                code: String::new(),
                handling: String::new(),
                next: None,
            }),
            "ChargeSucceeded" => {
                if let Some(row) = index.map(|i| &mut attempts[i]) {
                    row.outcome = "succeeded".into();
                }
                if let (Some(start), Some(end)) = (
                    time_of(p, "periodStart", zone),
                    time_of(p, "periodEnd", zone),
                ) {
                    periods.push(PeriodRow {
                        cycle,
                        start,
                        end,
                        amount: money(number(p, "amountMinor"), currency),
                        paid: Time::new(event.recorded_at, zone),
                    });
                }
            }
            "ChargeFailed" | "ChargeOutcomeUnknown" => {
                if let Some(row) = index.map(|i| &mut attempts[i]) {
                    if event.event_type == "ChargeFailed" {
                        row.outcome = "failed".into();
                        row.code = p
                            .pointer("/failure/code")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string();
                        row.handling = p
                            .pointer("/handling/kind")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string();
                        row.next = p.get("handling").and_then(|h| {
                            time_of(h, "nextRetryAt", zone)
                                .or_else(|| time_of(h, "nextAttemptAt", zone))
                        });
                    } else {
                        row.outcome = "unknown".into();
                        row.code = text(p, "reason");
                    }
                }
            }
            _ => {}
        }
    }
    attempts.reverse();
    periods.reverse();
    (attempts, periods)
}

#[derive(Debug, Default, Deserialize)]
pub struct ReadQuery {
    /// After an action: the position its answer named, so the page reads its own write.
    min_position: Option<i64>,
}

/// `/console/subscriptions/{subscription_id}`.
pub async fn subscription(
    request: HttpRequest,
    console: web::Data<Console>,
    path: web::Path<String>,
    query: web::Query<ReadQuery>,
) -> Result<HttpResponse, Refusal> {
    let session = Session::of(&request).await?;
    session.require(ONE.method, ONE.pattern)?;
    session.require(LIST.method, LIST.pattern)?;
    let state = app_state(&request)?.clone();
    let zone = console.config.time_zone;
    let subscription_id = path.into_inner();
    let chrome = Chrome::new(&request, &session, &console, "customers");
    let answer = api::get_subscription(
        state,
        request.clone(),
        web::Path::from(subscription_id.clone()),
        web::Query(api::SubscriptionGetQuery {
            min_position: query.min_position.filter(|p| *p > 0),
        }),
    )
    .await;
    let found = match json_of(answer).await {
        Ok(body) => serde_json::from_value::<SubscriptionIn>(body)
            .map_err(|e| Refusal::Unavailable(format!("unexpected subscription answer: {e}")))?,
        Err((code, message)) => {
            let outcome = actions::Outcome {
                status: 404,
                code: Some(code),
                message,
                body: Value::Null,
            };
            let heading = format!("{} {subscription_id}", chrome.t("subscription"));
            return Ok(actions::result_page(
                chrome,
                &outcome,
                heading,
                Vec::new(),
                "/console/customers".into(),
            ));
        }
    };
    let currency = found.currency.clone();
    let events = newest_events(
        &request,
        &StreamKind::Subscription.name(&found.subscription_id),
    )
    .await?;
    let (attempts, periods) = attempts_and_periods(&events, &currency, zone);
    let history = events
        .iter()
        .rev()
        .map(|e| HistoryRow {
            recorded: Time::new(e.recorded_at, zone),
            event_type: e.event_type.clone(),
            actor: e
                .metadata
                .get("actor")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            summary: summary(&e.payload),
        })
        .collect();
    let s = SubscriptionRow::from_answer(found, zone);
    let open = s.status != "ended";
    let page = SubscriptionPage {
        may_cancel: open && session.may(CANCEL.method, CANCEL.pattern),
        may_resume: open && s.cancel_at_period_end && session.may(RESUME.method, RESUME.pattern),
        may_charge: open && session.may(CHARGE.method, CHARGE.pattern),
        c: chrome,
        s,
        periods,
        attempts,
        history,
    };
    Ok(render(StatusCode::OK, &page))
}

fn back_to(subscription_id: &str) -> String {
    format!("/console/subscriptions/{}", encode(subscription_id))
}

/// What the result page of a subscription action lists from the API's answer.
const RESULT_FIELDS: &[&str] = &[
    "status",
    "cancelAtPeriodEnd",
    "cancelEffectiveAt",
    "paidCycles",
    "nextChargeAt",
    "lastFailureCode",
];

/// How a subscription action's result page is drawn.
fn result_of<'a>(
    route: Route,
    label: &'static str,
    subscription_id: &'a str,
) -> actions::ActionPage<'a> {
    actions::ActionPage {
        route,
        section: "customers",
        label,
        subject: subscription_id,
        details: RESULT_FIELDS,
        back: back_to(subscription_id),
    }
}

#[derive(Debug, Deserialize)]
pub struct CancelForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    idem: String,
    /// `at_period_end` or `immediately`.
    #[serde(default)]
    mode: String,
    /// Ending now takes the benefits away at once: the operator ticks a box to say so.
    #[serde(default)]
    confirm: Option<String>,
}

pub async fn cancel(
    request: HttpRequest,
    console: web::Data<Console>,
    path: web::Path<String>,
    form: web::Form<CancelForm>,
) -> Result<HttpResponse, Refusal> {
    let form = form.into_inner();
    let subscription_id = path.into_inner();
    let page = result_of(CANCEL, "cancel_subscription", &subscription_id);
    let unconfirmed = form.mode == "immediately" && form.confirm.as_deref() != Some("yes");
    let mode = form.mode.clone();
    actions::perform(
        &request,
        &console,
        page,
        &form.csrf,
        Some(&form.idem),
        |state| {
            let (request, subscription_id) = (request.clone(), subscription_id.clone());
            async move {
                if unconfirmed {
                    return Err(payledger_http::errors::ApiError::field(
                        "confirm",
                        "ending a subscription now must be confirmed",
                    ));
                }
                api::cancel(
                    state,
                    request,
                    web::Path::from(subscription_id),
                    Some(web::Json(serde_json::json!({ "mode": mode }))),
                )
                .await
            }
        },
    )
    .await
}

pub async fn resume(
    request: HttpRequest,
    console: web::Data<Console>,
    path: web::Path<String>,
    form: web::Form<crate::sign_in::CsrfForm>,
) -> Result<HttpResponse, Refusal> {
    let subscription_id = path.into_inner();
    let page = result_of(RESUME, "withdraw_cancellation", &subscription_id);
    actions::perform(&request, &console, page, &form.csrf, None, |state| {
        api::resume(
            state,
            request.clone(),
            web::Path::from(subscription_id.clone()),
        )
    })
    .await
}

pub async fn charge(
    request: HttpRequest,
    console: web::Data<Console>,
    path: web::Path<String>,
    form: web::Form<crate::sign_in::CsrfForm>,
) -> Result<HttpResponse, Refusal> {
    let subscription_id = path.into_inner();
    let page = result_of(CHARGE, "charge_now", &subscription_id);
    actions::perform(&request, &console, page, &form.csrf, None, |state| {
        api::charge(
            state,
            request.clone(),
            web::Path::from(subscription_id.clone()),
        )
    })
    .await
}
