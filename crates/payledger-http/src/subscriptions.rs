//! Billing keys, subscriptions and credit wallets.
//!
//! The billing service is a typed field of [`AppState`] (`state.subscriptions`). No answer, log line or error message ever holds a billing key: responses name
//! keys by payledger's `billingKeyId` and show card facts only. Every body is scanned for text that
//! looks like a card number before it is read, and refused with `E_CARD_DATA_REJECTED`.

use crate::dto::{parse_amount, parse_currency, parse_customer_id, parse_order_id};
use crate::errors::{ApiError, ErrorCode};
use crate::{request_context, AppState};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use payledger_app::subscriptions::{
    BillingError, BillingKeyInfo, StartSubscriptionInput, SubscriptionSnapshot, Subscriptions,
    WalletSnapshot,
};
use payledger_domain::billing::{
    contains_card_number_like, BillingInterval, BillingKeyId, CreditOperationId, IntervalUnit,
    PlanId, SubscriptionId,
};
use payledger_domain::customer::{BillingKeyStatus, CustomerError};
use payledger_domain::money::Money;
use payledger_domain::subscription::{AttemptTrigger, SubscriptionError, SubscriptionStatus};
use payledger_domain::wallet::{WalletError, MAX_CREDITS_PER_OPERATION};
use payledger_read_models::subscriptions::{SubscriptionFilter, SubscriptionView};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Page size of `GET /v1/subscriptions`.
const DEFAULT_PAGE_SIZE: i64 = 100;
const MAX_PAGE_SIZE: i64 = 1_000;
/// Field names that can only mean card data; a body naming one is refused whatever its value.
const CARD_FIELD_NAMES: &[&str] = &[
    "cardnumber",
    "card_number",
    "pan",
    "cvc",
    "cvv",
    "cardcvc",
    "securitycode",
];

// ---------------------------------------------------------------------------------------------
// Bodies
// ---------------------------------------------------------------------------------------------

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
    fn from_snapshot(snapshot: &SubscriptionSnapshot) -> Result<SubscriptionBody, ApiError> {
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

    fn from_view(view: SubscriptionView) -> SubscriptionBody {
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

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

/// Refuses any body that names a card field or holds a card-number-like value anywhere (keys,
/// strings and numbers, at any depth), then reads it. The error never echoes the value.
pub fn parse_body<T: DeserializeOwned>(body: serde_json::Value) -> Result<T, ApiError> {
    if let Some(field) = card_data_in(&body, "") {
        return Err(ApiError::new(
            ErrorCode::CardDataRejected,
            "card numbers are never accepted: register the card in the provider's window and send its authKey",
        )
        .with("field", field));
    }
    serde_json::from_value(body).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidJson,
            e.to_string().chars().take(300).collect::<String>(),
        )
    })
}

/// The path of the first field holding card data, if any.
fn card_data_in(value: &serde_json::Value, path: &str) -> Option<String> {
    match value {
        serde_json::Value::String(text) => {
            contains_card_number_like(text).then(|| path.to_string())
        }
        serde_json::Value::Number(number) => {
            contains_card_number_like(&number.to_string()).then(|| path.to_string())
        }
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| card_data_in(item, &format!("{path}[{i}]"))),
        serde_json::Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            let field = if path.is_empty() {
                key.chars().take(64).collect()
            } else {
                format!("{path}.{}", key.chars().take(64).collect::<String>())
            };
            let normalised: String = key
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
                .to_ascii_lowercase();
            if CARD_FIELD_NAMES.contains(&normalised.as_str()) || contains_card_number_like(key) {
                return Some(field);
            }
            card_data_in(item, &field)
        }),
        serde_json::Value::Bool(_) | serde_json::Value::Null => None,
    }
}

macro_rules! billing_id_parser {
    ($fn_name:ident, $ty:ty, $field:literal) => {
        fn $fn_name(value: &str) -> Result<$ty, ApiError> {
            <$ty>::parse(value.to_string()).map_err(|e| ApiError::field($field, e.to_string()))
        }
    };
}

billing_id_parser!(parse_subscription_id, SubscriptionId, "subscriptionId");
billing_id_parser!(parse_billing_key_id, BillingKeyId, "billingKeyId");
billing_id_parser!(parse_plan_id, PlanId, "planId");
billing_id_parser!(parse_operation_id, CreditOperationId, "purchaseId");

fn parse_credits(number: &serde_json::Number) -> Result<i64, ApiError> {
    number
        .as_i64()
        .filter(|c| (1..=MAX_CREDITS_PER_OPERATION).contains(c))
        .ok_or_else(|| {
            ApiError::field(
                "credits",
                format!("credits must be an integer between 1 and {MAX_CREDITS_PER_OPERATION}"),
            )
        })
}

fn parse_interval(unit: &str, count: Option<u32>) -> Result<BillingInterval, ApiError> {
    let unit = IntervalUnit::parse(unit)
        .ok_or_else(|| ApiError::field("interval", "interval must be day, week, month or year"))?;
    BillingInterval::new(unit, count.unwrap_or(1))
        .map_err(|e| ApiError::field("intervalCount", e.to_string()))
}

/// A client may act on a subscription only if its customer is one the client created (see
/// [`crate::auth::check_customer_access`]); another client's subscription answers 404 as if it
/// did not exist. A subscription that does not exist is left to the handler to report.
async fn check_subscription_access(
    state: &AppState,
    request: &HttpRequest,
    subscription_id: &SubscriptionId,
) -> Result<(), ApiError> {
    if crate::auth::calling_client(request).is_none() {
        return Ok(());
    }
    let snapshot = services(state)
        .load_subscription(subscription_id)
        .await
        .map_err(billing_error)?;
    let Some(terms) = snapshot.and_then(|s| s.state.terms) else {
        return Ok(());
    };
    crate::auth::check_customer_access(state, request, &terms.customer_id)
        .await
        .map_err(|_| {
            ApiError::new(
                ErrorCode::SubscriptionNotFound,
                "subscription does not exist",
            )
        })
}

fn services(state: &AppState) -> &Subscriptions {
    &state.subscriptions
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

pub fn billing_error(error: BillingError) -> ApiError {
    let message = error.to_string();
    match error {
        BillingError::PaymentsSuspended(_) => ApiError::new(ErrorCode::PaymentsSuspended, message),
        BillingError::Customer(e) => match e {
            CustomerError::BillingKeyNotFound => {
                ApiError::new(ErrorCode::BillingKeyNotFound, message)
            }
            CustomerError::BillingKeyNotActive => {
                ApiError::new(ErrorCode::BillingKeyNotActive, message)
            }
            CustomerError::TooManyBillingKeys | CustomerError::TooManySubscriptions => {
                ApiError::new(ErrorCode::TooManyBillingKeys, message)
            }
            CustomerError::InvalidReason => ApiError::field("reason", message),
            CustomerError::BillingKeyIdTaken => ApiError::new(ErrorCode::Contention, message),
            // The provider's answer did not fit: not the client's fault.
            CustomerError::InvalidCard
            | CustomerError::InvalidSecret
            | CustomerError::InvalidProviderFields => ApiError::internal(message),
        },
        BillingError::Subscription(e) => match e {
            SubscriptionError::NotFound => ApiError::new(ErrorCode::SubscriptionNotFound, message),
            SubscriptionError::AlreadyExists => {
                ApiError::new(ErrorCode::SubscriptionAlreadyExists, message)
            }
            SubscriptionError::InvalidOrderName => ApiError::field("orderName", message),
            SubscriptionError::InvalidAnchor => ApiError::field("anchor", message),
            SubscriptionError::NothingDue => ApiError::new(ErrorCode::NothingDue, message),
            SubscriptionError::AttemptInProgress => {
                ApiError::new(ErrorCode::ChargeInProgress, message).retry_after(5)
            }
            SubscriptionError::Ended => ApiError::new(ErrorCode::SubscriptionEnded, message),
            SubscriptionError::Suspended => {
                ApiError::new(ErrorCode::SubscriptionSuspended, message)
            }
            SubscriptionError::NoAttemptInFlight
            | SubscriptionError::RedrivesExhausted
            | SubscriptionError::CycleOutOfRange
            | SubscriptionError::TooManyAttempts
            | SubscriptionError::ProviderBilled
            | SubscriptionError::NotProviderBilled
            | SubscriptionError::ProviderFactDiffers(_) => {
                ApiError::new(ErrorCode::SubscriptionStateConflict, message)
            }
        },
        BillingError::Wallet(e) => match e {
            WalletError::MembershipRequired => {
                ApiError::new(ErrorCode::MembershipRequired, message)
            }
            WalletError::InsufficientCredits { balance, requested } => {
                ApiError::new(ErrorCode::InsufficientCredits, message)
                    .with("balance", balance)
                    .with("requested", requested)
            }
            WalletError::OperationIdConflict => ApiError::new(ErrorCode::CreditIdConflict, message),
            WalletError::OrderAlreadyUsed => ApiError::new(ErrorCode::OrderAlreadyUsed, message),
            WalletError::TooManyPurchases | WalletError::Overflow => {
                ApiError::new(ErrorCode::WalletLimitReached, message)
            }
            WalletError::InvalidCredits => ApiError::field("credits", message),
            WalletError::InvalidReason => ApiError::field("reason", message),
            WalletError::PurchaseNotFound | WalletError::InvalidRefundTotal => {
                ApiError::internal(message)
            }
        },
        BillingError::UnknownPlan(_) => {
            ApiError::new(ErrorCode::UnknownPlan, message).with("field", "planId")
        }
        // Another customer's order is answered like a missing one: ids cannot be probed.
        BillingError::CustomerMismatch(_) | BillingError::OrderNotFound => ApiError::new(
            ErrorCode::OrderNotFound,
            "no order with this id for this customer",
        ),
        BillingError::OrderNotPaid => ApiError::new(ErrorCode::OrderNotPaid, message),
        BillingError::Refused(failure) => ApiError::new(
            ErrorCode::PaymentRefused,
            format!("the provider refused: {}", failure.provider_message),
        )
        .with("providerCode", failure.provider_code.clone())
        .with(
            "failureClass",
            serde_json::to_value(failure.class).unwrap_or_default(),
        )
        .with(
            "suggestedAction",
            serde_json::to_value(failure.class.suggested_action()).unwrap_or_default(),
        ),
        BillingError::ProviderUnavailable { retry_after_ms } => ApiError::new(
            ErrorCode::ProviderUnavailable,
            "the payment provider is unavailable; nothing was charged",
        )
        .retry_after(retry_after_ms.div_ceil(1000)),
        BillingError::Unavailable(e) => ApiError::unavailable(e),
        BillingError::Contention => ApiError::new(
            ErrorCode::Contention,
            "the subscription kept changing under concurrent requests; retry",
        ),
        BillingError::Index(e) | BillingError::Internal(e) => ApiError::internal(e),
    }
}

// ---------------------------------------------------------------------------------------------
// Billing keys
// ---------------------------------------------------------------------------------------------

/// `POST /v1/billing-keys` `{customerId, authKey}`.
#[utoipa::path(
    post,
    path = "/v1/billing-keys",
    tag = "subscriptions",
    request_body = crate::subscriptions::RegisterBillingKeyBody,
    responses((status = 201, description = "Issued by the provider and stored encrypted", body = crate::subscriptions::BillingKeyBody))
)]
pub async fn register_billing_key(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    let body: RegisterBillingKeyBody = parse_body(body.into_inner())?;
    let customer_id = parse_customer_id(&body.customer_id)?;
    crate::auth::check_customer_access(&state, &request, &customer_id).await?;
    let auth_key_len = body.auth_key.chars().count();
    if auth_key_len == 0 || auth_key_len > 300 || body.auth_key.chars().any(char::is_control) {
        return Err(ApiError::field(
            "authKey",
            "authKey must be 1 to 300 printable characters",
        ));
    }
    let info = services(&state)
        .register_billing_key(&customer_id, &body.auth_key, &request_context(&request))
        .await
        .map_err(billing_error)?;
    let body = BillingKeyBody::from(info);
    Ok(HttpResponse::Created()
        .insert_header((
            "Location",
            format!("/v1/billing-keys/{}", body.billing_key_id),
        ))
        .json(body))
}

/// `DELETE /v1/billing-keys/{billing_key_id}[?customerId=…]`.
#[utoipa::path(
    delete,
    path = "/v1/billing-keys/{billing_key_id}",
    tag = "subscriptions",
    params(("billing_key_id" = String, Path, description = "The billing key id"), crate::subscriptions::RevokeBillingKeyQuery),
    responses((status = 200, description = "Revoked", body = crate::subscriptions::BillingKeyBody))
)]
pub async fn revoke_billing_key(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    query: web::Query<RevokeBillingKeyQuery>,
) -> Result<HttpResponse, ApiError> {
    let billing_key_id = parse_billing_key_id(&path)?;
    let customer_id = match query.customer_id.as_deref() {
        Some(customer_id) => parse_customer_id(customer_id)?,
        None => {
            let view = payledger_read_models::subscriptions::get_billing_key(
                &state.read_pool,
                billing_key_id.as_str(),
            )
            .await?
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::BillingKeyNotFound,
                    "no billing key with this id (just registered? pass customerId)",
                )
            })?;
            parse_customer_id(&view.customer_id)?
        }
    };
    crate::auth::check_customer_access(&state, &request, &customer_id).await?;
    let info = services(&state)
        .revoke_billing_key(
            &customer_id,
            &billing_key_id,
            "revoked through the API".into(),
            &request_context(&request),
        )
        .await
        .map_err(billing_error)?;
    Ok(HttpResponse::Ok().json(BillingKeyBody::from(info)))
}

// ---------------------------------------------------------------------------------------------
// Subscriptions
// ---------------------------------------------------------------------------------------------

/// `POST /v1/subscriptions`.
#[utoipa::path(
    post,
    path = "/v1/subscriptions",
    tag = "subscriptions",
    request_body = crate::subscriptions::StartSubscriptionBody,
    responses((status = 201, description = "Started", body = crate::subscriptions::SubscriptionBody))
)]
pub async fn start_subscription(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    let body: StartSubscriptionBody = parse_body(body.into_inner())?;
    let amount_minor = parse_amount(&body.amount, "amount")?;
    let currency = parse_currency(&body.currency)?;
    let input = StartSubscriptionInput {
        subscription_id: body
            .subscription_id
            .as_deref()
            .map(parse_subscription_id)
            .transpose()?,
        customer_id: parse_customer_id(&body.customer_id)?,
        plan_id: parse_plan_id(&body.plan_id)?,
        amount: Money::new(amount_minor, currency)
            .map_err(|e| ApiError::new(ErrorCode::InvalidAmount, e.to_string()))?,
        interval: parse_interval(&body.interval, body.interval_count)?,
        billing_key_id: parse_billing_key_id(&body.billing_key_id)?,
        anchor: body.anchor,
        order_name: body.order_name,
    };
    crate::auth::check_customer_access(&state, &request, &input.customer_id).await?;
    let snapshot = services(&state)
        .start(input, &request_context(&request))
        .await
        .map_err(billing_error)?;
    let body = SubscriptionBody::from_snapshot(&snapshot)?;
    Ok(HttpResponse::Created()
        .insert_header((
            "Location",
            format!("/v1/subscriptions/{}", body.subscription_id),
        ))
        .json(body))
}

/// `GET /v1/subscriptions/{id}`: the read model (with the wallet balance), or the command side
/// when the subscription is not projected yet.
#[utoipa::path(
    get,
    path = "/v1/subscriptions/{subscription_id}",
    tag = "subscriptions",
    params(("subscription_id" = String, Path, description = "The subscription id"), crate::subscriptions::SubscriptionGetQuery),
    responses((status = 200, description = "The subscription", body = crate::subscriptions::SubscriptionBody))
)]
pub async fn get_subscription(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    query: web::Query<SubscriptionGetQuery>,
) -> Result<HttpResponse, ApiError> {
    let subscription_id = parse_subscription_id(&path)?;
    check_subscription_access(&state, &request, &subscription_id).await?;
    let services = services(&state);
    state
        .wait_for_projection("subscriptions", query.min_position)
        .await?;
    let now = services.clock().now();
    crate::reads::projected_or_current(
        async {
            Ok(payledger_read_models::subscriptions::get_subscription(
                &state.read_pool,
                subscription_id.as_str(),
                now,
            )
            .await?
            .map(SubscriptionBody::from_view))
        },
        async {
            let snapshot = services
                .load_subscription(&subscription_id)
                .await
                .map_err(billing_error)?;
            snapshot
                .as_ref()
                .map(SubscriptionBody::from_snapshot)
                .transpose()
        },
        || {
            ApiError::new(
                ErrorCode::SubscriptionNotFound,
                "subscription does not exist",
            )
        },
    )
    .await
}

/// `GET /v1/subscriptions?status=past_due&customerId=…&after=…&limit=…`.
#[utoipa::path(
    get,
    path = "/v1/subscriptions",
    tag = "subscriptions",
    params(crate::subscriptions::SubscriptionListQuery),
    responses((status = 200, description = "`{\"subscriptions\": [Subscription], \"nextAfter\"}`", body = Object))
)]
pub async fn list_subscriptions(
    state: web::Data<AppState>,
    query: web::Query<SubscriptionListQuery>,
) -> Result<HttpResponse, ApiError> {
    let services = services(&state);
    if let Some(status) = query.status.as_deref() {
        if SubscriptionStatus::parse(status).is_none() {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                "status must be active, past_due, requires_payment_method, needs_review, suspended or ended",
            ));
        }
    }
    if let Some(customer_id) = query.customer_id.as_deref() {
        parse_customer_id(customer_id)?;
    }
    if let Some(after) = query.after.as_deref() {
        parse_subscription_id(after)?;
    }
    let limit = match query.limit {
        None => DEFAULT_PAGE_SIZE,
        Some(limit) if (1..=MAX_PAGE_SIZE).contains(&limit) => limit,
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::InvalidQuery,
                format!("limit must be between 1 and {MAX_PAGE_SIZE}"),
            ))
        }
    };
    state
        .wait_for_projection("subscriptions", query.min_position)
        .await?;
    let views = payledger_read_models::subscriptions::list_subscriptions(
        &state.read_pool,
        &SubscriptionFilter {
            status: query.status.as_deref(),
            customer_id: query.customer_id.as_deref(),
            after_subscription_id: query.after.as_deref(),
        },
        limit,
        services.clock().now(),
    )
    .await?;
    let next_after = (views.len() as i64 == limit)
        .then(|| views.last().map(|v| v.subscription_id.clone()))
        .flatten();
    let subscriptions: Vec<SubscriptionBody> =
        views.into_iter().map(SubscriptionBody::from_view).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "subscriptions": subscriptions,
        "nextAfter": next_after,
    })))
}

/// `POST /v1/subscriptions/{id}/charge`: an admin charges the current cycle now.
#[utoipa::path(
    post,
    path = "/v1/subscriptions/{subscription_id}/charge",
    tag = "subscriptions",
    params(("subscription_id" = String, Path, description = "The subscription id")),
    responses((status = 200, description = "Charged now (or the outcome of the attempt)", body = crate::subscriptions::SubscriptionBody))
)]
pub async fn charge(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let subscription_id = parse_subscription_id(&path)?;
    let snapshot = services(&state)
        .charge(
            &subscription_id,
            AttemptTrigger::Admin,
            &request_context(&request),
        )
        .await
        .map_err(billing_error)?;
    Ok(HttpResponse::Ok().json(SubscriptionBody::from_snapshot(&snapshot)?))
}

/// `POST /v1/subscriptions/{id}/payment-method` `{billingKeyId}`.
#[utoipa::path(
    post,
    path = "/v1/subscriptions/{subscription_id}/payment-method",
    tag = "subscriptions",
    params(("subscription_id" = String, Path, description = "The subscription id")),
    request_body = crate::subscriptions::PaymentMethodBody,
    responses((status = 200, description = "The new billing key is used from now on", body = crate::subscriptions::SubscriptionBody))
)]
pub async fn change_payment_method(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    let subscription_id = parse_subscription_id(&path)?;
    check_subscription_access(&state, &request, &subscription_id).await?;
    let body: PaymentMethodBody = parse_body(body.into_inner())?;
    let billing_key_id = parse_billing_key_id(&body.billing_key_id)?;
    let snapshot = services(&state)
        .change_payment_method(&subscription_id, billing_key_id, &request_context(&request))
        .await
        .map_err(billing_error)?;
    Ok(HttpResponse::Ok().json(SubscriptionBody::from_snapshot(&snapshot)?))
}

/// `POST /v1/subscriptions/{id}/cancel` `{mode?}`.
#[utoipa::path(
    post,
    path = "/v1/subscriptions/{subscription_id}/cancel",
    tag = "subscriptions",
    params(("subscription_id" = String, Path, description = "The subscription id")),
    request_body = crate::subscriptions::CancelBody,
    responses((status = 200, description = "Cancelled (at period end unless `mode` says otherwise)", body = crate::subscriptions::SubscriptionBody))
)]
pub async fn cancel(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    body: Option<web::Json<serde_json::Value>>,
) -> Result<HttpResponse, ApiError> {
    let subscription_id = parse_subscription_id(&path)?;
    check_subscription_access(&state, &request, &subscription_id).await?;
    let body: CancelBody = match body {
        Some(body) => parse_body(body.into_inner())?,
        None => CancelBody::default(),
    };
    let services = services(&state);
    let context = request_context(&request);
    let result = match body.mode.as_deref() {
        None | Some("at_period_end") => {
            services
                .cancel_at_period_end(&subscription_id, &context)
                .await
        }
        Some("immediately") => services.end_now(&subscription_id, &context).await,
        Some(_) => {
            return Err(ApiError::field(
                "mode",
                "mode must be at_period_end or immediately",
            ))
        }
    };
    let snapshot = result.map_err(billing_error)?;
    Ok(HttpResponse::Ok().json(SubscriptionBody::from_snapshot(&snapshot)?))
}

/// `POST /v1/subscriptions/{id}/resume`: withdraws a cancellation at period end.
#[utoipa::path(
    post,
    path = "/v1/subscriptions/{subscription_id}/resume",
    tag = "subscriptions",
    params(("subscription_id" = String, Path, description = "The subscription id")),
    responses((status = 200, description = "A scheduled cancellation is withdrawn", body = crate::subscriptions::SubscriptionBody))
)]
pub async fn resume(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let subscription_id = parse_subscription_id(&path)?;
    check_subscription_access(&state, &request, &subscription_id).await?;
    let snapshot = services(&state)
        .resume(&subscription_id, &request_context(&request))
        .await
        .map_err(billing_error)?;
    Ok(HttpResponse::Ok().json(SubscriptionBody::from_snapshot(&snapshot)?))
}

// ---------------------------------------------------------------------------------------------
// Wallets
// ---------------------------------------------------------------------------------------------

/// `POST /v1/wallets/{customer_id}/credits` `{purchaseId?, credits, orderId}`: buy credits with a
/// paid order.
#[utoipa::path(
    post,
    path = "/v1/wallets/{customer_id}/credits",
    tag = "subscriptions",
    params(("customer_id" = String, Path, description = "The customer id")),
    request_body = crate::subscriptions::PurchaseCreditsBody,
    responses((status = 201, description = "Credits purchased", body = crate::subscriptions::WalletBody), (status = 200, description = "A repeated purchase id: the original answer", body = crate::subscriptions::WalletBody))
)]
pub async fn purchase_credits(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    let customer_id = parse_customer_id(&path)?;
    crate::auth::check_customer_access(&state, &request, &customer_id).await?;
    let body: PurchaseCreditsBody = parse_body(body.into_inner())?;
    let credits = parse_credits(&body.credits)?;
    let order_id = parse_order_id(&body.order_id)?;
    let purchase_id = body
        .purchase_id
        .as_deref()
        .map(parse_operation_id)
        .transpose()?;
    let snapshot = services(&state)
        .purchase_credits(
            &customer_id,
            purchase_id,
            credits,
            &order_id,
            &request_context(&request),
        )
        .await
        .map_err(billing_error)?;
    let replay = snapshot.replay;
    let body = WalletBody::from(snapshot);
    Ok(if replay {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::Created().json(body)
    })
}

/// `POST /v1/wallets/{customer_id}/spend` `{spendId?, credits, reason}`.
#[utoipa::path(
    post,
    path = "/v1/wallets/{customer_id}/spend",
    tag = "subscriptions",
    params(("customer_id" = String, Path, description = "The customer id")),
    request_body = crate::subscriptions::SpendCreditsBody,
    responses((status = 200, description = "Credits spent", body = crate::subscriptions::WalletBody))
)]
pub async fn spend_credits(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    let customer_id = parse_customer_id(&path)?;
    crate::auth::check_customer_access(&state, &request, &customer_id).await?;
    let body: SpendCreditsBody = parse_body(body.into_inner())?;
    let credits = parse_credits(&body.credits)?;
    let spend_id = body
        .spend_id
        .as_deref()
        .map(|id| {
            CreditOperationId::parse(id.to_string())
                .map_err(|e| ApiError::field("spendId", e.to_string()))
        })
        .transpose()?;
    let snapshot = services(&state)
        .spend_credits(
            &customer_id,
            spend_id,
            credits,
            body.reason,
            &request_context(&request),
        )
        .await
        .map_err(billing_error)?;
    Ok(HttpResponse::Ok().json(WalletBody::from(snapshot)))
}

/// `GET /v1/wallets/{customer_id}`: the command side's wallet (a customer without purchases has
/// an empty one) and the customer's membership level now.
#[utoipa::path(
    get,
    path = "/v1/wallets/{customer_id}",
    tag = "subscriptions",
    params(("customer_id" = String, Path, description = "The customer id")),
    responses((status = 200, description = "The credit wallet", body = crate::subscriptions::WalletBody))
)]
pub async fn get_wallet(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let customer_id = parse_customer_id(&path)?;
    crate::auth::check_customer_access(&state, &request, &customer_id).await?;
    let snapshot = services(&state)
        .wallet(&customer_id)
        .await
        .map_err(billing_error)?;
    Ok(HttpResponse::Ok().json(WalletBody::from(snapshot)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use payledger_domain::card_numbers::test_cards;
    use serde_json::json;

    #[test]
    fn card_numbers_are_refused_wherever_they_hide_without_being_echoed() {
        for body in [
            json!({"customerId": "c1", "authKey": test_cards::VISA_STRIPE}),
            json!({"customerId": "c1", "authKey": "a", "note": {"x": [test_cards::VISA_SPACED]}}),
            json!({"customerId": "c1", "authKey": "a", "cardNumber": "x"}),
            json!({"customerId": "c1", "authKey": "a", "card_number": 1}),
            json!({"customerId": test_cards::VISA_STRIPE.parse::<u64>().unwrap(), "authKey": "a"}),
        ] {
            let error = parse_body::<RegisterBillingKeyBody>(body).unwrap_err();
            assert_eq!(error.code, ErrorCode::CardDataRejected);
            assert!(!error.message.contains("4242") && !error.message.contains("4111"));
        }
    }

    #[test]
    fn unknown_fields_are_refused_and_good_bodies_read() {
        let error = parse_body::<RegisterBillingKeyBody>(
            json!({"customerId": "c1", "authKey": "a", "x": 1}),
        )
        .unwrap_err();
        assert_eq!(error.code, ErrorCode::InvalidJson);
        let body: RegisterBillingKeyBody =
            parse_body(json!({"customerId": "cust_1", "authKey": "bln_20260101abc"})).unwrap();
        assert_eq!(body.auth_key, "bln_20260101abc");
    }
}
