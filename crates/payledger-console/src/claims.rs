//! Claims: the queue by state, the claim page with both statements, evidence, deadlines and
//! the decision, assign, and the resolution form with a preview of the split before confirming.
//!
//! Reads are the API's own claim answers (`GET /v1/claims`, `GET /v1/claims/{id}`), read into
//! the few fields the page shows; actions are the API's handlers (see `actions.rs`).

use crate::actions::{self, json_of, Route};
use crate::pages::{money, render, Chrome, Time};
use crate::session::{app_state, Refusal, Session};
use crate::Console;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use chrono::{DateTime, Utc};
use payledger_domain::refund_policy;
use payledger_http::claims as api;
use serde::Deserialize;

const QUEUE: Route = Route::get("/v1/claims");
const ASSIGN: Route = Route::post("/v1/claims/{claim_id}/assign");
const RESOLVE: Route = Route::post("/v1/claims/{claim_id}/resolve");

/// The queue's states, in the order a claim moves through them.
const STATES: &[&str] = &["filed", "under_review", "appealed", "resolved"];
const OUTCOMES: &[&str] = &["customer", "provider", "split"];
const PENALTIES: &[&str] = &["warning", "suspension"];

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatementIn {
    party: String,
    text: String,
    #[serde(default)]
    evidence: Vec<String>,
    submitted_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DecisionIn {
    outcome: String,
    reason: String,
    admin_id: String,
    refund_amount: i64,
    provider_payout_amount: i64,
    coupon: Option<String>,
    provider_compensation_amount: i64,
    #[serde(default)]
    penalties: Vec<String>,
    resolved_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClaimIn {
    claim_id: String,
    order_id: String,
    customer_id: String,
    payee_id: String,
    currency: String,
    #[serde(rename = "type")]
    claim_type: String,
    filed_by: String,
    status: String,
    description: String,
    #[serde(default)]
    evidence: Vec<String>,
    amount_at_stake: i64,
    service_starts_at: Option<DateTime<Utc>>,
    filed_at: DateTime<Utc>,
    respond_by: DateTime<Utc>,
    claimant_statement: Option<StatementIn>,
    respondent_statement: Option<StatementIn>,
    deadline_missed_at: Option<DateTime<Utc>>,
    assigned_to: Option<String>,
    decision: Option<DecisionIn>,
}

pub struct ClaimRow {
    pub claim_id: String,
    pub order_id: String,
    pub claim_type: String,
    pub status: String,
    pub at_stake: String,
    pub filed: Time,
    pub respond_by: Time,
    pub assigned_to: String,
}

#[derive(Template)]
#[template(path = "claims.html")]
struct QueuePage {
    c: Chrome,
    states: Vec<(&'static str, bool)>,
    rows: Vec<ClaimRow>,
    error: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct QueueQuery {
    status: Option<String>,
}

pub async fn queue(
    request: HttpRequest,
    console: web::Data<Console>,
    query: web::Query<QueueQuery>,
) -> Result<HttpResponse, Refusal> {
    let session = actions::page_session(&request, QUEUE).await?;
    let state = app_state(&request)?.clone();
    let zone = console.config.time_zone;
    let status = query
        .status
        .clone()
        .filter(|s| STATES.contains(&s.as_str()));
    let api_query = api::ClaimQuery {
        status: status.clone(),
        claim_type: None,
        order_id: None,
        older_than_minutes: None,
        after: None,
        limit: Some(100),
        min_position: None,
    };
    let (rows, error) = match json_of(api::list_claims(state, web::Query(api_query)).await).await {
        Ok(body) => {
            let claims: Vec<ClaimIn> = body
                .get("claims")
                .cloned()
                .and_then(|c| serde_json::from_value(c).ok())
                .unwrap_or_default();
            let rows = claims
                .into_iter()
                .map(|c| ClaimRow {
                    at_stake: money(c.amount_at_stake, &c.currency),
                    filed: Time::new(c.filed_at, zone),
                    respond_by: Time::new(c.respond_by, zone),
                    assigned_to: c.assigned_to.unwrap_or_default(),
                    claim_id: c.claim_id,
                    order_id: c.order_id,
                    claim_type: c.claim_type,
                    status: c.status,
                })
                .collect();
            (rows, None)
        }
        Err((code, message)) => (Vec::new(), Some(format!("{message} ({code})"))),
    };
    let page = QueuePage {
        c: Chrome::new(&request, &session, &console, "claims"),
        states: STATES
            .iter()
            .map(|s| (*s, status.as_deref() == Some(*s)))
            .collect(),
        rows,
        error,
    };
    Ok(render(StatusCode::OK, &page))
}

pub struct StatementView {
    pub party: String,
    pub text: String,
    pub evidence: Vec<String>,
    pub submitted: Time,
}

pub struct DecisionView {
    pub outcome: String,
    pub reason: String,
    pub admin_id: String,
    pub refund: String,
    pub payout: String,
    pub compensation: String,
    pub coupon: String,
    pub penalties: String,
    pub resolved: Time,
}

/// The split an admin proposed, shown before it is confirmed.
pub struct Proposal {
    pub outcome: String,
    pub reason: String,
    pub refund_minor: i64,
    pub payout_minor: i64,
    pub compensation_minor: i64,
    pub coupon: String,
    pub penalties: Vec<String>,
    pub refund: String,
    pub payout: String,
    pub compensation: String,
    /// Refund and payout together must be the amount at stake.
    pub balanced: bool,
    /// The decision's refund less the policy's, when the policy applies: `+30,000 KRW`.
    pub against_policy: Option<String>,
}

/// What the cancellation refund policy (source document 5 §3.1) gives for the amount at stake,
/// counted from the claim's filing to the service start: the reference an admin's decision is
/// compared with. A decision may differ (a no-show is the provider's fault, not a late
/// cancellation); the preview shows by how much.
pub struct PolicySplit {
    pub tier: String,
    pub notice: String,
    pub refund_minor: i64,
    pub refund: String,
    pub provider: String,
}

fn policy_split(claim: &ClaimIn) -> Option<PolicySplit> {
    let starts_at = claim.service_starts_at?;
    let decision =
        refund_policy::decide(claim.amount_at_stake, starts_at, claim.filed_at, None).ok()?;
    let hours = decision.notice_seconds / 3600;
    let minutes = (decision.notice_seconds.abs() % 3600) / 60;
    Some(PolicySplit {
        tier: payledger_domain::codec::wire_name(&decision.tier),
        notice: format!("{hours} h {minutes:02} min"),
        refund_minor: decision.refund_minor,
        refund: money(decision.refund_minor, &claim.currency),
        provider: money(decision.provider_minor, &claim.currency),
    })
}

#[derive(Template)]
#[template(path = "claim.html")]
struct ClaimPage {
    c: Chrome,
    claim_id: String,
    order_id: String,
    customer_id: String,
    payee_id: String,
    claim_type: String,
    filed_by: String,
    status: String,
    description: String,
    evidence: Vec<String>,
    at_stake: String,
    at_stake_minor: i64,
    currency: String,
    filed: Time,
    respond_by: Time,
    deadline_missed: Option<Time>,
    assigned_to: String,
    claimant: Option<StatementView>,
    respondent: Option<StatementView>,
    decision: Option<DecisionView>,
    may_assign: bool,
    may_resolve: bool,
    outcomes: Vec<&'static str>,
    penalty_names: Vec<&'static str>,
    proposal: Option<Proposal>,
    policy: Option<PolicySplit>,
}

async fn claim_page(
    request: &HttpRequest,
    session: &Session,
    console: &Console,
    claim_id: &str,
    proposal: Option<ResolveForm>,
) -> Result<HttpResponse, Refusal> {
    let state = app_state(request)?.clone();
    let zone = console.config.time_zone;
    let chrome = Chrome::new(request, session, console, "claims");
    let answer = api::get_claim(
        state,
        request.clone(),
        web::Path::from(claim_id.to_string()),
        web::Query(payledger_http::dto::ConsistencyQuery { min_position: None }),
    )
    .await;
    let claim: ClaimIn = match json_of(answer).await {
        Ok(body) => serde_json::from_value(body)
            .map_err(|e| Refusal::Unavailable(format!("unexpected claim answer: {e}")))?,
        Err((code, message)) => {
            let outcome = actions::Outcome {
                status: 404,
                code: Some(code),
                message,
                body: serde_json::Value::Null,
            };
            let heading = format!("{} {claim_id}", chrome.t("claim"));
            return Ok(actions::result_page(
                chrome,
                &outcome,
                heading,
                Vec::new(),
                "/console/claims".into(),
            ));
        }
    };
    let statement = |s: StatementIn| StatementView {
        party: s.party,
        text: s.text,
        evidence: s.evidence,
        submitted: Time::new(s.submitted_at, zone),
    };
    let currency = claim.currency.clone();
    let policy = policy_split(&claim);
    let proposal = proposal.map(|form| {
        let refund_minor = form.refund_amount.trim().parse().unwrap_or(0);
        let payout_minor = form.provider_payout_amount.trim().parse().unwrap_or(0);
        let compensation_minor = form
            .provider_compensation_amount
            .trim()
            .parse()
            .unwrap_or(0);
        let penalties = form.penalties();
        Proposal {
            refund: money(refund_minor, &currency),
            payout: money(payout_minor, &currency),
            compensation: money(compensation_minor, &currency),
            balanced: refund_minor.checked_add(payout_minor) == Some(claim.amount_at_stake),
            against_policy: policy.as_ref().map(|p| {
                let difference = refund_minor.saturating_sub(p.refund_minor);
                let sign = if difference > 0 { "+" } else { "" };
                format!("{sign}{}", money(difference, &currency))
            }),
            outcome: form.outcome,
            reason: form.reason,
            refund_minor,
            payout_minor,
            compensation_minor,
            coupon: form.coupon,
            penalties,
        }
    });
    let open = matches!(claim.status.as_str(), "filed" | "under_review" | "appealed");
    let page = ClaimPage {
        c: chrome,
        at_stake: money(claim.amount_at_stake, &claim.currency),
        at_stake_minor: claim.amount_at_stake,
        filed: Time::new(claim.filed_at, zone),
        respond_by: Time::new(claim.respond_by, zone),
        deadline_missed: claim.deadline_missed_at.map(|t| Time::new(t, zone)),
        assigned_to: claim.assigned_to.unwrap_or_default(),
        claimant: claim.claimant_statement.map(statement),
        respondent: claim.respondent_statement.map(statement),
        decision: claim.decision.map(|d| DecisionView {
            refund: money(d.refund_amount, &claim.currency),
            payout: money(d.provider_payout_amount, &claim.currency),
            compensation: money(d.provider_compensation_amount, &claim.currency),
            coupon: d.coupon.unwrap_or_default(),
            penalties: d.penalties.join(", "),
            resolved: Time::new(d.resolved_at, zone),
            outcome: d.outcome,
            reason: d.reason,
            admin_id: d.admin_id,
        }),
        may_assign: open && session.may(ASSIGN.method, ASSIGN.pattern),
        may_resolve: open && session.may(RESOLVE.method, RESOLVE.pattern),
        outcomes: OUTCOMES.to_vec(),
        penalty_names: PENALTIES.to_vec(),
        proposal,
        policy,
        claim_id: claim.claim_id,
        order_id: claim.order_id,
        customer_id: claim.customer_id,
        payee_id: claim.payee_id,
        claim_type: claim.claim_type,
        filed_by: claim.filed_by,
        status: claim.status,
        description: claim.description,
        evidence: claim.evidence,
        currency: claim.currency,
    };
    Ok(render(StatusCode::OK, &page))
}

pub async fn claim(
    request: HttpRequest,
    console: web::Data<Console>,
    path: web::Path<String>,
) -> Result<HttpResponse, Refusal> {
    let session = actions::page_session(&request, QUEUE).await?;
    claim_page(&request, &session, &console, &path, None).await
}

fn back_to(claim_id: &str) -> String {
    format!("/console/claims/{}", crate::orders::encode(claim_id))
}

pub async fn assign(
    request: HttpRequest,
    console: web::Data<Console>,
    path: web::Path<String>,
    form: web::Form<crate::sign_in::CsrfForm>,
) -> Result<HttpResponse, Refusal> {
    let claim_id = path.into_inner();
    let page = actions::ActionPage {
        route: ASSIGN,
        section: "claims",
        label: "assign",
        subject: &claim_id,
        details: &["assignedTo", "status"],
        back: back_to(&claim_id),
    };
    actions::perform(&request, &console, page, &form.csrf, None, |state| {
        api::assign(
            state,
            request.clone(),
            web::Path::from(claim_id.clone()),
            web::Json(api::AssignBody { admin_id: None }),
        )
    })
    .await
}

#[derive(Debug, Deserialize)]
pub struct ResolveForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    idem: String,
    /// `preview` shows the split; `confirm` resolves.
    #[serde(default)]
    step: String,
    #[serde(default)]
    outcome: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    refund_amount: String,
    #[serde(default)]
    provider_payout_amount: String,
    #[serde(default)]
    provider_compensation_amount: String,
    #[serde(default)]
    coupon: String,
    #[serde(default)]
    penalty_warning: Option<String>,
    #[serde(default)]
    penalty_suspension: Option<String>,
}

impl ResolveForm {
    fn penalties(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.penalty_warning.is_some() {
            out.push("warning".to_string());
        }
        if self.penalty_suspension.is_some() {
            out.push("suspension".to_string());
        }
        out
    }
}

/// An amount typed into the form as the API reads it: a JSON integer, or the text itself so
/// the API's own parser refuses it with its own code.
fn amount_json(text: &str) -> serde_json::Value {
    let text = text.trim();
    text.parse::<i64>()
        .map(serde_json::Value::from)
        .unwrap_or_else(|_| serde_json::Value::String(text.to_string()))
}

pub async fn resolve(
    request: HttpRequest,
    console: web::Data<Console>,
    path: web::Path<String>,
    form: web::Form<ResolveForm>,
) -> Result<HttpResponse, Refusal> {
    let session = Session::of(&request).await?;
    let form = form.into_inner();
    actions::prepare(&request, &session, RESOLVE, &form.csrf, Some(&form.idem))?;
    let claim_id = path.into_inner();
    if form.step != "confirm" {
        return claim_page(&request, &session, &console, &claim_id, Some(form)).await;
    }
    let state = app_state(&request)?.clone();
    let compensation = form.provider_compensation_amount.trim();
    let coupon = form.coupon.trim();
    let json = serde_json::json!({
        "outcome": form.outcome,
        "reason": form.reason,
        "refundAmount": amount_json(&form.refund_amount),
        "providerPayoutAmount": amount_json(&form.provider_payout_amount),
        "providerCompensationAmount": (!compensation.is_empty()).then(|| amount_json(compensation)),
        "coupon": (!coupon.is_empty()).then_some(coupon),
        "penalties": form.penalties(),
    });
    let result = match serde_json::from_value::<api::ResolveBody>(json) {
        Ok(body) => {
            api::resolve(
                state,
                request.clone(),
                web::Path::from(claim_id.clone()),
                web::Json(body),
            )
            .await
        }
        Err(_) => Err(payledger_http::errors::ApiError::new(
            payledger_http::errors::ErrorCode::InvalidAmount,
            "amounts are whole numbers of minor units",
        )),
    };
    let outcome = actions::finish(&request, &session, RESOLVE, result).await;
    let chrome = Chrome::new(&request, &session, &console, "claims");
    let heading = format!("{} · {claim_id}", chrome.t("resolve"));
    let details = actions::fields(&outcome.body, &["status"]);
    Ok(actions::result_page(
        chrome,
        &outcome,
        heading,
        details,
        back_to(&claim_id),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(starts_at: Option<&str>) -> ClaimIn {
        serde_json::from_value(serde_json::json!({
            "claimId": "c", "orderId": "o", "customerId": "cu", "payeeId": "p",
            "currency": "KRW", "type": "SERVICE_QUALITY", "filedBy": "customer",
            "status": "filed", "description": "d", "amountAtStake": 80_001,
            "serviceStartsAt": starts_at, "filedAt": "2026-10-05T00:00:00Z",
            "respondBy": "2026-10-06T00:00:00Z"
        }))
        .unwrap()
    }

    #[test]
    fn the_policy_split_counts_notice_from_the_filing_and_rounds_the_refund_down() {
        let half = policy_split(&claim(Some("2026-10-06T06:30:00Z"))).unwrap();
        assert_eq!(
            (
                half.tier.as_str(),
                half.notice.as_str(),
                half.refund.as_str(),
                half.provider.as_str()
            ),
            ("HALF", "30 h 30 min", "40,000 KRW", "40,001 KRW")
        );
        let full = policy_split(&claim(Some("2026-10-07T00:00:00Z"))).unwrap();
        assert_eq!((full.tier.as_str(), full.refund_minor), ("FULL", 80_001));
        let after = policy_split(&claim(Some("2026-10-04T23:00:00Z"))).unwrap();
        assert_eq!((after.tier.as_str(), after.refund_minor), ("NONE", 0));
        assert!(
            policy_split(&claim(None)).is_none(),
            "no service time, no policy"
        );
    }
}
