//! Request and response bodies of the billing routes, and how answers become them.

use crate::errors::ApiError;
use chrono::{DateTime, Utc};
use payledger_app::subscriptions::{BillingKeyInfo, SubscriptionSnapshot, WalletSnapshot};
use payledger_domain::customer::BillingKeyStatus;
use payledger_read_models::subscriptions::SubscriptionView;
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisterBillingKeyBody {
    pub customer_id: String,
    /// What the provider's card-registration window returned; single-use, not a secret to keep.
    pub auth_key: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RevokeBillingKeyQuery {
    /// The key's customer; looked up in the read model when absent.
    pub customer_id: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartSubscriptionBody {
    pub subscription_id: Option<String>,
    pub customer_id: String,
    pub plan_id: String,
    #[schema(value_type = i64)]
    pub amount: serde_json::Number,
    pub currency: String,
    /// `day`, `week`, `month` or `year`.
    pub interval: String,
    pub interval_count: Option<u32>,
    pub billing_key_id: String,
    /// The first charge; absent: now (charged before the answer).
    pub anchor: Option<DateTime<Utc>>,
    pub order_name: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PaymentMethodBody {
    pub billing_key_id: String,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = SubscriptionCancelBody)]
pub struct CancelBody {
    /// `at_period_end` (the default): benefits stay until the paid period ends. `immediately`:
    /// ends now.
    pub mode: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PurchaseCreditsBody {
    pub purchase_id: Option<String>,
    #[schema(value_type = i64)]
    pub credits: serde_json::Number,
    /// The paid order the credits were bought with.
    pub order_id: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SpendCreditsBody {
    pub spend_id: Option<String>,
    #[schema(value_type = i64)]
    pub credits: serde_json::Number,
    pub reason: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SubscriptionListQuery {
    pub status: Option<String>,
    pub customer_id: Option<String>,
    /// Keyset paging: subscriptions after this id.
    pub after: Option<String>,
    pub limit: Option<i64>,
    pub min_position: Option<i64>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SubscriptionGetQuery {
    pub min_position: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CardBody {
    pub issuer_code: String,
    pub last4: String,
    pub card_type: String,
    pub expiry: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BillingKeyBody {
    pub billing_key_id: String,
    pub customer_id: String,
    pub status: &'static str,
    pub provider: String,
    pub card: CardBody,
    pub registered_at: DateTime<Utc>,
    pub changed_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub replay: bool,
}

fn key_status_name(status: BillingKeyStatus) -> &'static str {
    match status {
        BillingKeyStatus::Active => "active",
        BillingKeyStatus::Revoked => "revoked",
        BillingKeyStatus::Expired => "expired",
    }
}

impl From<BillingKeyInfo> for BillingKeyBody {
    fn from(info: BillingKeyInfo) -> Self {
        BillingKeyBody {
            billing_key_id: info.billing_key_id.to_string(),
            customer_id: info.customer_id.to_string(),
            status: key_status_name(info.status),
            provider: info.provider,
            card: CardBody {
                issuer_code: info.card.issuer_code,
                last4: info.card.last4,
                card_type: info.card.card_type,
                expiry: info.card.expiry,
            },
            registered_at: info.registered_at,
            changed_at: info.changed_at,
            replay: info.replay,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IntervalBody {
    pub unit: String,
    pub count: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionBody {
    pub subscription_id: String,
    pub customer_id: String,
    pub plan_id: String,
    /// `active`, `past_due`, `requires_payment_method`, `needs_review`, `suspended`, `ended`.
    pub status: String,
    pub amount: i64,
    pub currency: String,
    pub interval: IntervalBody,
    pub billing_key_id: String,
    pub anchor: DateTime<Utc>,
    /// The cycle charged next (1-based).
    pub cycle: i64,
    pub paid_cycles: i64,
    pub paid_through: Option<DateTime<Utc>>,
    pub next_charge_at: Option<DateTime<Utc>>,
    /// Scheduled dunning retries that failed (0 outside dunning).
    pub retry_count: i64,
    pub next_retry_at: Option<DateTime<Utc>>,
    pub last_failure_code: Option<String>,
    pub grace_period_ends_at: Option<DateTime<Utc>>,
    pub cancel_at_period_end: bool,
    pub cancel_effective_at: Option<DateTime<Utc>>,
    pub suspended_reason: Option<String>,
    pub attempt_in_flight: bool,
    /// The membership this gives now (from the read model), or the customer's (command answers).
    pub membership_level: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wallet_balance: Option<i64>,
    pub version: i64,
    /// Pass as `minPosition` to read endpoints to read your own writes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub replay: bool,
}

impl SubscriptionBody {
    pub(super) fn from_snapshot(
        snapshot: &SubscriptionSnapshot,
    ) -> Result<SubscriptionBody, ApiError> {
        let state = &snapshot.state;
        let terms = state
            .terms
            .as_ref()
            .ok_or_else(|| ApiError::internal("subscription snapshot without terms"))?;
        Ok(SubscriptionBody {
            subscription_id: terms.subscription_id.to_string(),
            customer_id: terms.customer_id.to_string(),
            plan_id: terms.plan_id.to_string(),
            status: state.status.as_str().to_string(),
            amount: terms.amount.amount_minor(),
            currency: terms.amount.currency().code().to_string(),
            interval: IntervalBody {
                unit: terms.interval.unit().as_str().to_string(),
                count: i64::from(terms.interval.count()),
            },
            billing_key_id: state
                .billing_key_id
                .as_ref()
                .unwrap_or(&terms.billing_key_id)
                .to_string(),
            anchor: terms.anchor,
            cycle: i64::from(state.cycle),
            paid_cycles: i64::from(state.paid_cycles),
            paid_through: state.paid_through,
            next_charge_at: state.next_charge_at,
            retry_count: i64::from(state.retry_count()),
            next_retry_at: state.next_retry_at(),
            last_failure_code: state.last_failure.as_ref().map(|f| f.provider_code.clone()),
            grace_period_ends_at: state.grace_ends_at,
            cancel_at_period_end: state.cancel_effective_at.is_some(),
            cancel_effective_at: state.cancel_effective_at,
            suspended_reason: state.suspended_reason.clone(),
            attempt_in_flight: state.in_flight.is_some(),
            membership_level: snapshot.membership_level,
            wallet_balance: None,
            version: snapshot.version,
            position: snapshot.position,
            replay: snapshot.replay,
        })
    }

    pub(super) fn from_view(view: SubscriptionView) -> SubscriptionBody {
        SubscriptionBody {
            subscription_id: view.subscription_id,
            customer_id: view.customer_id,
            plan_id: view.plan_id,
            status: view.status,
            amount: view.amount_minor,
            currency: view.currency,
            interval: IntervalBody {
                unit: view.interval_unit,
                count: i64::from(view.interval_count),
            },
            billing_key_id: view.billing_key_id,
            anchor: view.anchor,
            cycle: i64::from(view.cycle),
            paid_cycles: i64::from(view.paid_cycles),
            paid_through: view.paid_through,
            next_charge_at: view.next_charge_at,
            retry_count: i64::from(view.retry_count),
            next_retry_at: view.next_retry_at,
            last_failure_code: view.last_failure_code,
            grace_period_ends_at: view.grace_ends_at,
            cancel_at_period_end: view.cancel_effective_at.is_some(),
            cancel_effective_at: view.cancel_effective_at,
            suspended_reason: view.suspended_reason,
            attempt_in_flight: view.attempt_in_flight,
            membership_level: view.membership_level,
            wallet_balance: Some(view.wallet_balance),
            version: view.stream_version,
            position: Some(view.last_position),
            replay: false,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WalletBody {
    pub customer_id: String,
    pub balance: i64,
    pub purchased_total: i64,
    pub spent_total: i64,
    pub clawed_back_total: i64,
    /// Credits refunds should have taken back that were already spent.
    pub shortfall_total: i64,
    pub membership_level: u8,
    pub version: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub replay: bool,
}

impl From<WalletSnapshot> for WalletBody {
    fn from(snapshot: WalletSnapshot) -> Self {
        WalletBody {
            customer_id: snapshot.customer_id.to_string(),
            balance: snapshot.state.balance,
            purchased_total: snapshot.state.purchased_total,
            spent_total: snapshot.state.spent_total,
            clawed_back_total: snapshot.state.clawed_back_total,
            shortfall_total: snapshot.state.shortfall_total,
            membership_level: snapshot.membership_level,
            version: snapshot.version,
            position: snapshot.position,
            replay: snapshot.replay,
        }
    }
}
