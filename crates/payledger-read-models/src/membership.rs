//! A customer's membership as the "subscriptions" read model shows it: one answer, whichever
//! provider sells the plan (payledger's own billing with Toss, or Paddle billing itself).
//!
//! Nothing is stored here: the answer is computed from the subscriptions' stored aggregate
//! states (`rm.subscriptions.state`, folded by the aggregate's own `apply`) and the billing keys'
//! providers, so it is as derived and rebuildable as they are.

use chrono::{DateTime, Utc};
use payledger_domain::subscription::{Subscription, SubscriptionStatus};
use sqlx::{PgPool, Row};

/// Subscriptions of one customer read to answer (the domain's bound on them).
const MAX_SUBSCRIPTIONS_READ_PER_CUSTOMER: i64 = 100;

/// What `GET /v1/customers/{id}/membership` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipView {
    pub customer_id: String,
    /// The highest level the customer's subscriptions give at the time asked (0: none).
    pub level: u8,
    /// The subscription the answer describes: the one giving `level`, else the customer's most
    /// recently started one that has not ended. `None`: no such subscription.
    pub subscription: Option<MembershipSubscription>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipSubscription {
    pub subscription_id: String,
    pub plan_id: String,
    /// Who takes the money: `toss` (payledger charges a billing key) or `paddle` (Paddle bills
    /// each period itself).
    pub provider: String,
    /// Whether the provider bills each period itself.
    pub billed_by_provider: bool,
    pub status: String,
    /// End of the last paid period: benefits run at least until then (unless refunded).
    pub current_period_end: Option<DateTime<Utc>>,
    /// When the next period is billed; `None` when nothing will be (cancel scheduled, ended,
    /// suspended).
    pub next_billing_at: Option<DateTime<Utc>>,
    pub cancel_at_period_end: bool,
    pub cancel_effective_at: Option<DateTime<Utc>>,
}

/// The customer's membership at `at`.
pub async fn membership_of(
    pool: &PgPool,
    customer_id: &str,
    at: DateTime<Utc>,
) -> Result<MembershipView, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT s.state, k.provider AS key_provider FROM rm.subscriptions s \
         LEFT JOIN rm.billing_keys k ON k.billing_key_id = s.billing_key_id \
         WHERE s.customer_id = $1 ORDER BY s.started_at, s.subscription_id LIMIT $2",
    )
    .bind(customer_id)
    .bind(MAX_SUBSCRIPTIONS_READ_PER_CUSTOMER)
    .fetch_all(pool)
    .await?;
    let mut best: Option<(u8, Subscription, Option<String>)> = None;
    for row in rows {
        let state: Subscription = serde_json::from_value(row.try_get("state")?).map_err(|e| {
            sqlx::Error::Decode(format!("stored subscription state does not decode: {e}").into())
        })?;
        let key_provider: Option<String> = row.try_get("key_provider")?;
        let level = state.membership_level(at);
        // Later rows started later: on a tie the newer subscription wins, an ended one never
        // beats one that is still running.
        let better = match &best {
            None => true,
            Some((best_level, best_state, _)) => {
                level > *best_level
                    || (level == *best_level
                        && (state.status != SubscriptionStatus::Ended
                            || best_state.status == SubscriptionStatus::Ended))
            }
        };
        if better {
            best = Some((level, state, key_provider));
        }
    }
    let level = best.as_ref().map_or(0, |(level, _, _)| *level);
    let subscription = best
        .filter(|(level, state, _)| *level > 0 || state.status != SubscriptionStatus::Ended)
        .and_then(|(_, state, key_provider)| describe(&state, key_provider));
    Ok(MembershipView {
        customer_id: customer_id.to_owned(),
        level,
        subscription,
    })
}

fn describe(state: &Subscription, key_provider: Option<String>) -> Option<MembershipSubscription> {
    let terms = state.terms.as_ref()?;
    let billed_by = terms.billed_by.as_ref();
    let stopped = matches!(
        state.status,
        SubscriptionStatus::Ended | SubscriptionStatus::Suspended
    );
    Some(MembershipSubscription {
        subscription_id: terms.subscription_id.to_string(),
        plan_id: terms.plan_id.to_string(),
        provider: billed_by
            .map(|b| b.provider.clone())
            .or(key_provider)
            .unwrap_or_default(),
        billed_by_provider: billed_by.is_some(),
        status: state.status.as_str().to_owned(),
        current_period_end: state.paid_through,
        next_billing_at: if stopped || state.cancel_effective_at.is_some() {
            None
        } else {
            state.next_charge_at
        },
        cancel_at_period_end: state.cancel_effective_at.is_some() && !stopped,
        cancel_effective_at: state.cancel_effective_at.filter(|_| !stopped),
    })
}
