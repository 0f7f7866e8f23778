//! Reading billing bodies and ids: card data is refused before anything is parsed.

use crate::errors::{ApiError, ErrorCode};
use payledger_domain::billing::{
    contains_card_number_like, BillingInterval, BillingKeyId, CreditOperationId, IntervalUnit,
    PlanId, SubscriptionId,
};
use payledger_domain::wallet::MAX_CREDITS_PER_OPERATION;
use serde::de::DeserializeOwned;

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
        pub(super) fn $fn_name(value: &str) -> Result<$ty, ApiError> {
            <$ty>::parse(value.to_string()).map_err(|e| ApiError::field($field, e.to_string()))
        }
    };
}

billing_id_parser!(parse_subscription_id, SubscriptionId, "subscriptionId");
billing_id_parser!(parse_billing_key_id, BillingKeyId, "billingKeyId");
billing_id_parser!(parse_plan_id, PlanId, "planId");
billing_id_parser!(parse_operation_id, CreditOperationId, "purchaseId");

pub(super) fn parse_credits(number: &serde_json::Number) -> Result<i64, ApiError> {
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

pub(super) fn parse_interval(unit: &str, count: Option<u32>) -> Result<BillingInterval, ApiError> {
    let unit = IntervalUnit::parse(unit)
        .ok_or_else(|| ApiError::field("interval", "interval must be day, week, month or year"))?;
    BillingInterval::new(unit, count.unwrap_or(1))
        .map_err(|e| ApiError::field("intervalCount", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subscriptions::RegisterBillingKeyBody;
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
