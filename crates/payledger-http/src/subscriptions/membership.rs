//! `GET /v1/customers/{customer_id}/membership`: the customer's membership level, plan,
//! provider and billing times, whichever provider sells the plan.

use super::{services, SubscriptionGetQuery};
use crate::dto::parse_customer_id;
use crate::errors::ApiError;
use crate::state::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use payledger_read_models::membership::MembershipView;
use serde::Serialize;

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MembershipBody {
    pub customer_id: String,
    /// The highest level the customer's subscriptions give now (0: none).
    pub membership_level: u8,
    /// The subscription described below: the one giving the level, else the customer's newest
    /// one that has not ended. Everything below is `null` without one.
    pub subscription_id: Option<String>,
    pub plan_id: Option<String>,
    /// Who takes the money: `toss` (payledger charges a billing key) or `paddle` (Paddle bills
    /// each period itself).
    pub provider: Option<String>,
    /// Whether the provider bills each period itself (Paddle).
    pub billed_by_provider: bool,
    /// `active`, `past_due`, `requires_payment_method`, `needs_review`, `suspended`, `ended`.
    pub status: Option<String>,
    /// End of the last paid period.
    pub current_period_end: Option<DateTime<Utc>>,
    /// When the next period is billed; `null` when none will be (cancel scheduled, ended).
    pub next_billing_at: Option<DateTime<Utc>>,
    /// The membership ends when the paid period does (a cancel was scheduled).
    pub cancel_at_period_end: bool,
    pub cancel_effective_at: Option<DateTime<Utc>>,
}

impl From<MembershipView> for MembershipBody {
    fn from(view: MembershipView) -> Self {
        let subscription = view.subscription;
        MembershipBody {
            customer_id: view.customer_id,
            membership_level: view.level,
            subscription_id: subscription.as_ref().map(|s| s.subscription_id.clone()),
            plan_id: subscription.as_ref().map(|s| s.plan_id.clone()),
            provider: subscription.as_ref().map(|s| s.provider.clone()),
            billed_by_provider: subscription.as_ref().is_some_and(|s| s.billed_by_provider),
            status: subscription.as_ref().map(|s| s.status.clone()),
            current_period_end: subscription.as_ref().and_then(|s| s.current_period_end),
            next_billing_at: subscription.as_ref().and_then(|s| s.next_billing_at),
            cancel_at_period_end: subscription
                .as_ref()
                .is_some_and(|s| s.cancel_at_period_end),
            cancel_effective_at: subscription.as_ref().and_then(|s| s.cancel_effective_at),
        }
    }
}

/// `GET /v1/customers/{customer_id}/membership?minPosition=…`: from the subscriptions read
/// model. A client sees only customers it created (another client's customer answers 404).
#[utoipa::path(
    get,
    path = "/v1/customers/{customer_id}/membership",
    tag = "subscriptions",
    params(("customer_id" = String, Path, description = "The customer id"), crate::subscriptions::SubscriptionGetQuery),
    responses((status = 200, description = "The customer's membership", body = crate::subscriptions::MembershipBody))
)]
pub async fn get_membership(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    query: web::Query<SubscriptionGetQuery>,
) -> Result<HttpResponse, ApiError> {
    let customer_id = parse_customer_id(&path)?;
    crate::auth::check_customer_access(&state, &request, &customer_id).await?;
    state
        .wait_for_projection("subscriptions", query.min_position)
        .await?;
    let view = payledger_read_models::membership::membership_of(
        &state.read_pool,
        customer_id.as_str(),
        services(&state).clock().now(),
    )
    .await?;
    Ok(HttpResponse::Ok().json(MembershipBody::from(view)))
}
