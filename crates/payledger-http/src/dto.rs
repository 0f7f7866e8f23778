//! Request and response bodies (camelCase, like the Toss API), and their validation.
//!
//! Requests are parsed into domain types here, so nothing invalid gets past the edge: an amount
//! that exists is a positive integer within the maximum, an id that exists is well-formed.

use crate::errors::{ApiError, ErrorCode};
use chrono::{DateTime, Utc};
use payledger_app::payments::OrderSnapshot;
use payledger_domain::ids::{CustomerId, OrderId, PayeeId, PaymentKey, RefundId};
use payledger_domain::money::{check_amount, Currency, MoneyError, MAX_AMOUNT_MINOR};
use payledger_domain::order::{Order, OrderStatus};
use payledger_read_models::orders::{OrderView, TimelineEntry};
use serde::{Deserialize, Serialize};

/// The largest JSON body any endpoint accepts.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Page sizes of list endpoints.
pub const DEFAULT_PAGE_SIZE: i64 = 100;
pub const MAX_PAGE_SIZE: i64 = 1_000;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlaceOrderBody {
    pub order_id: Option<String>,
    #[schema(value_type = i64)]
    pub amount: serde_json::Number,
    pub currency: String,
    pub customer_id: String,
    pub payee_id: String,
    pub order_name: String,
    pub service_starts_at: Option<DateTime<Utc>>,
    /// The provider to pay with: `toss` (the default) or `stripe`, among those configured on
    /// this deployment.
    pub provider: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfirmBody {
    pub payment_key: String,
    pub order_id: String,
    #[schema(value_type = i64)]
    pub amount: serde_json::Number,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RefundBody {
    pub refund_id: Option<String>,
    #[schema(value_type = Option<i64>)]
    pub amount: Option<serde_json::Number>,
    pub reason: String,
}

/// An amount in minor units: a JSON integer, > 0, ≤ the maximum. `1.0`, `"100"`, `1e3` are not.
pub fn parse_amount(number: &serde_json::Number, field: &str) -> Result<i64, ApiError> {
    let amount = number.as_i64().ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidAmount,
            format!(
                "{field} must be an integer number of minor units between 1 and {MAX_AMOUNT_MINOR}"
            ),
        )
        .with("field", field)
    })?;
    check_amount(amount)
        .map_err(|e| ApiError::new(ErrorCode::InvalidAmount, e.to_string()).with("field", field))
}

pub fn parse_currency(code: &str) -> Result<Currency, ApiError> {
    Currency::parse(code).map_err(|e| match e {
        MoneyError::UnknownCurrency(_) => ApiError::new(
            ErrorCode::UnknownCurrency,
            "currency must be one of KRW, JPY, USD, EUR, GBP",
        )
        .with("field", "currency"),
        other => {
            ApiError::new(ErrorCode::InvalidField, other.to_string()).with("field", "currency")
        }
    })
}

macro_rules! id_parser {
    ($fn_name:ident, $ty:ty, $field:literal) => {
        pub fn $fn_name(value: &str) -> Result<$ty, ApiError> {
            <$ty>::parse(value.to_string()).map_err(|e| ApiError::field($field, e.to_string()))
        }
    };
}

id_parser!(parse_order_id, OrderId, "orderId");
id_parser!(parse_customer_id, CustomerId, "customerId");
id_parser!(parse_payee_id, PayeeId, "payeeId");
id_parser!(parse_payment_key, PaymentKey, "paymentKey");
id_parser!(parse_refund_id, RefundId, "refundId");

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderBody {
    pub order_id: String,
    pub status: String,
    pub amount: i64,
    pub currency: String,
    pub customer_id: String,
    pub payee_id: String,
    pub order_name: String,
    pub provider: String,
    pub payment_key: Option<String>,
    pub captured_amount: i64,
    pub refunded_amount: i64,
    pub refund_pending_amount: i64,
    pub refundable_amount: i64,
    pub last_failure_code: Option<String>,
    pub service_starts_at: Option<DateTime<Utc>>,
    pub placed_at: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
    pub fulfilled_at: Option<DateTime<Utc>>,
    /// Refunds awaiting the provider whose request, as the provider reports it, differs from
    /// them (another amount, currency, payment, action or status: a `RefundDiscrepancyRecorded`
    /// on the timeline). Support must review each; absent when none.
    #[serde(skip_serializing_if = "is_zero")]
    pub refunds_under_review: i32,
    /// The order stream's version.
    pub version: i64,
    /// Global position of the last event this answer reflects; pass it as `minPosition` to read
    /// endpoints to read your own writes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
    /// Present and true when this answer repeats an earlier one (nothing new happened).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub replay: bool,
    /// Only in a confirm's 202 when the customer must act before the provider can charge
    /// (Stripe 3-D Secure): what the client SDK needs to complete the payment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_action: Option<ClientActionBody>,
}

/// What the paying client must do (Stripe's `next_action`), e.g. run Stripe.js
/// `handleNextAction({clientSecret})`. `clientSecret` reaches only this answer: it is never
/// stored (not in events, not in the idempotency table: a replayed answer omits it).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientActionBody {
    /// `use_stripe_sdk` or `redirect_to_url`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

impl ClientActionBody {
    pub fn from_action(action: &payledger_gateway::ClientAction) -> ClientActionBody {
        ClientActionBody {
            kind: action.kind.clone(),
            redirect_url: action.redirect_url.clone(),
            client_secret: action.client_secret.clone(),
        }
    }
}

/// The copy of a command's answer kept for idempotent replays: without the client secret of a
/// [`ClientActionBody`], which must reach only the client that asked, once.
pub fn without_client_secret(body: &[u8]) -> Option<Vec<u8>> {
    let needle = b"clientSecret";
    if !body.windows(needle.len()).any(|window| window == needle) {
        return None;
    }
    let mut value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value
        .get_mut("clientAction")?
        .as_object_mut()?
        .remove("clientSecret")?;
    serde_json::to_vec(&value).ok()
}

fn is_zero(count: &i32) -> bool {
    *count == 0
}

fn status_name(status: OrderStatus) -> String {
    payledger_domain::codec::wire_name(&status)
}

impl OrderBody {
    pub fn from_snapshot(snapshot: &OrderSnapshot) -> Result<OrderBody, ApiError> {
        let order: &Order = &snapshot.state;
        let placed = order
            .placed
            .as_ref()
            .ok_or_else(|| ApiError::internal("order snapshot without placement"))?;
        Ok(OrderBody {
            order_id: placed.order_id.to_string(),
            status: status_name(order.status),
            amount: placed.amount.amount_minor(),
            currency: placed.amount.currency().code().to_string(),
            customer_id: placed.customer_id.to_string(),
            payee_id: placed.payee_id.to_string(),
            order_name: placed.order_name.clone(),
            provider: placed.provider.clone(),
            payment_key: order.payment_key.as_ref().map(ToString::to_string),
            captured_amount: order.captured_minor,
            refunded_amount: order.refunded_minor,
            refund_pending_amount: order.refund_pending_minor,
            refundable_amount: order.refundable_minor(),
            last_failure_code: order.last_failure.as_ref().map(|f| f.provider_code.clone()),
            service_starts_at: placed.service_starts_at,
            placed_at: placed.placed_at,
            paid_at: order.paid_at,
            fulfilled_at: order.fulfilled_at,
            refunds_under_review: i32::try_from(order.refunds_under_review()).unwrap_or(i32::MAX),
            version: snapshot.version,
            position: snapshot.position,
            replay: snapshot.replay,
            client_action: None,
        })
    }

    pub fn from_view(view: OrderView) -> OrderBody {
        OrderBody {
            order_id: view.order_id,
            status: view.status,
            amount: view.amount_minor,
            currency: view.currency,
            customer_id: view.customer_id,
            payee_id: view.payee_id,
            order_name: view.order_name,
            provider: view.provider,
            payment_key: view.payment_key,
            captured_amount: view.captured_minor,
            refunded_amount: view.refunded_minor,
            refund_pending_amount: view.refund_pending_minor,
            refundable_amount: view.refundable_minor,
            last_failure_code: view.last_failure_code,
            service_starts_at: view.service_starts_at,
            placed_at: view.placed_at,
            paid_at: view.paid_at,
            fulfilled_at: view.fulfilled_at,
            refunds_under_review: view.refunds_under_review,
            version: view.stream_version,
            position: Some(view.last_position),
            replay: false,
            client_action: None,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefundAnswer {
    pub refund_id: String,
    pub amount: i64,
    /// `REQUESTED`, `OUTCOME_UNKNOWN`, `AWAITING_PROVIDER` (Paddle decides later), `COMPLETED`,
    /// `FAILED`.
    pub status: String,
    /// The provider's id of a refund it approves later (Paddle's adjustment `adj_…`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_refund_id: Option<String>,
    pub order: OrderBody,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub replay: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimelineBody {
    pub order_id: String,
    pub entries: Vec<TimelineEntryBody>,
    /// Pass as `after` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimelineEntryBody {
    pub position: i64,
    pub stream_id: String,
    pub stream_version: i64,
    pub event_type: String,
    /// Always `YYYY-MM-DDTHH:MM:SS.ffffffZ`, like the raw log's `recordedAt`.
    #[serde(with = "payledger_store::recorded_at_format")]
    pub recorded_at: DateTime<Utc>,
    pub actor: Option<String>,
    pub summary: String,
    pub data: serde_json::Value,
}

impl From<TimelineEntry> for TimelineEntryBody {
    fn from(e: TimelineEntry) -> Self {
        TimelineEntryBody {
            position: e.global_position,
            stream_id: e.stream_id,
            stream_version: e.stream_version,
            event_type: e.event_type,
            recorded_at: e.recorded_at,
            actor: e.actor,
            summary: e.summary,
            data: e.payload,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventPage {
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<payledger_store::RecordedEvent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<i64>,
}

/// `?after=N&limit=M` for paged reads.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    pub after: Option<i64>,
    pub limit: Option<i64>,
}

impl PageQuery {
    pub fn after(&self) -> Result<i64, ApiError> {
        match self.after {
            Some(a) if a < 0 => Err(ApiError::new(ErrorCode::InvalidQuery, "after must be >= 0")),
            Some(a) => Ok(a),
            None => Ok(0),
        }
    }

    pub fn limit(&self) -> Result<i64, ApiError> {
        page_limit(self.limit)
    }
}

/// A page size a client asked for (`limit`): 1 to [`MAX_PAGE_SIZE`], [`DEFAULT_PAGE_SIZE`]
/// when absent.
pub fn page_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    match limit {
        Some(l) if !(1..=MAX_PAGE_SIZE).contains(&l) => Err(ApiError::new(
            ErrorCode::InvalidQuery,
            format!("limit must be between 1 and {MAX_PAGE_SIZE}"),
        )),
        Some(l) => Ok(l),
        None => Ok(DEFAULT_PAGE_SIZE),
    }
}

/// `GET /v1/events`: a page of the global log, optionally filtered (the event dashboard's
/// filters: type, period, status).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    pub after: Option<i64>,
    pub limit: Option<i64>,
    /// Stored event types, comma-separated (`PaymentCaptured,RefundCompleted`); at most 50.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub event_type: Option<String>,
    /// Events recorded at or after this time (RFC 3339; the database's `recordedAt`).
    pub from: Option<String>,
    /// Events recorded before this time (RFC 3339).
    pub to: Option<String>,
    /// The payload's `status` field, compared as text (e.g. `409` for admin actions answered
    /// 409).
    pub status: Option<String>,
}

impl EventQuery {
    pub fn page(&self) -> PageQuery {
        PageQuery {
            after: self.after,
            limit: self.limit,
        }
    }

    /// The filter, or `None` when the query names none (the plain log).
    pub fn filter(&self) -> Result<Option<payledger_store::EventFilter>, ApiError> {
        let mut filter = payledger_store::EventFilter::default();
        if let Some(types) = &self.event_type {
            for name in types.split(',').map(str::trim) {
                let valid = !name.is_empty()
                    && name.len() <= 100
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid {
                    return Err(ApiError::field(
                        "type",
                        "type must be stored event type names (letters, digits, _), comma-separated",
                    ));
                }
                filter.event_types.push(name.to_string());
            }
            if filter.event_types.len() > payledger_store::MAX_FILTER_TYPES {
                return Err(ApiError::field(
                    "type",
                    format!(
                        "at most {} event types at once",
                        payledger_store::MAX_FILTER_TYPES
                    ),
                ));
            }
        }
        let time =
            |field: &str, value: &Option<String>| -> Result<Option<DateTime<Utc>>, ApiError> {
                value
                    .as_deref()
                    .map(|v| {
                        DateTime::parse_from_rfc3339(v)
                            .map(|t| t.with_timezone(&Utc))
                            .map_err(|_| {
                                ApiError::field(field, format!("{field} must be an RFC 3339 time"))
                            })
                    })
                    .transpose()
            };
        filter.recorded_from = time("from", &self.from)?;
        filter.recorded_to = time("to", &self.to)?;
        if let (Some(from), Some(to)) = (filter.recorded_from, filter.recorded_to) {
            if from >= to {
                return Err(ApiError::field("to", "to must be after from"));
            }
        }
        if let Some(status) = &self.status {
            if status.is_empty() || status.len() > 64 {
                return Err(ApiError::field(
                    "status",
                    "status must be 1 to 64 characters",
                ));
            }
            filter.status = Some(status.clone());
        }
        Ok((filter != payledger_store::EventFilter::default()).then_some(filter))
    }
}

/// `?minPosition=N`: wait (briefly) until the read model has caught up with position N.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConsistencyQuery {
    pub min_position: Option<i64>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OrderSearchQuery {
    pub payment_key: Option<String>,
    pub customer_id: Option<String>,
    pub limit: Option<i64>,
}
