//! The senders `POST /v1/webhooks/{provider}` accepts, and where each puts its event id, type and
//! order reference.

use payledger_domain::ids::OrderId;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    /// Toss Payments: payment-status events unsigned (re-fetched), payout/seller events signed.
    Toss,
    /// Stripe-format senders (`Stripe-Signature`).
    Stripe,
    /// Paddle Billing-format senders (`Paddle-Signature`).
    Paddle,
    /// Standard Webhooks senders (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
    Standard,
}

impl Provider {
    pub const ALL: [Provider; 4] = [
        Provider::Toss,
        Provider::Stripe,
        Provider::Paddle,
        Provider::Standard,
    ];

    /// The path segment and the name stored and counted.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Toss => "toss",
            Provider::Stripe => "stripe",
            Provider::Paddle => "paddle",
            Provider::Standard => "standard",
        }
    }

    pub fn parse(text: &str) -> Option<Provider> {
        Provider::ALL.into_iter().find(|p| p.as_str() == text)
    }

    pub fn secret_variable(self) -> &'static str {
        match self {
            Provider::Toss => "PAYLEDGER_WEBHOOK_SECRET_TOSS",
            Provider::Stripe => "PAYLEDGER_WEBHOOK_SECRET_STRIPE",
            Provider::Paddle => "PAYLEDGER_WEBHOOK_SECRET_PADDLE",
            Provider::Standard => "PAYLEDGER_WEBHOOK_SECRET_STANDARD",
        }
    }

    pub fn previous_secret_variable(self) -> &'static str {
        match self {
            Provider::Toss => "PAYLEDGER_WEBHOOK_SECRET_TOSS_PREVIOUS",
            Provider::Stripe => "PAYLEDGER_WEBHOOK_SECRET_STRIPE_PREVIOUS",
            Provider::Paddle => "PAYLEDGER_WEBHOOK_SECRET_PADDLE_PREVIOUS",
            Provider::Standard => "PAYLEDGER_WEBHOOK_SECRET_STANDARD_PREVIOUS",
        }
    }

    /// The event id inside a (verified) body, for senders that put it there.
    pub fn body_event_id(self, body: &Value) -> Option<&str> {
        match self {
            Provider::Stripe => body.get("id")?.as_str(),
            Provider::Paddle => body.get("event_id")?.as_str(),
            // Standard Webhooks: the signed `webhook-id` header. Toss: the transmission id
            // header, else a hash of the body.
            Provider::Standard | Provider::Toss => None,
        }
    }

    pub fn body_event_type(self, body: &Value) -> Option<&str> {
        match self {
            Provider::Stripe | Provider::Standard => body.get("type")?.as_str(),
            Provider::Paddle => body.get("event_type")?.as_str(),
            Provider::Toss => body.get("eventType")?.as_str(),
        }
    }

    /// The payledger order a signed body refers to, where each format carries merchant data:
    /// Stripe `data.object.metadata`, Paddle `data.custom_data`, Standard Webhooks `data`.
    /// Only meaningful for signed bodies; unsigned Toss bodies are never trusted.
    pub fn body_order_id(self, body: &Value) -> Option<OrderId> {
        let holder = match self {
            Provider::Stripe => body.pointer("/data/object/metadata"),
            Provider::Paddle => body.pointer("/data/custom_data"),
            Provider::Standard => body.get("data"),
            Provider::Toss => body.get("data"),
        }?;
        ["orderId", "order_id"]
            .iter()
            .filter_map(|key| holder.get(*key)?.as_str())
            .find_map(|text| OrderId::parse(text).ok())
    }
}

/// Event ids become part of a stream id and a unique key: visible ASCII of a safe alphabet.
pub fn usable_event_id(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= payledger_domain::webhook::MAX_EVENT_ID_CHARS
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '='))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_format_names_its_event_and_order_where_its_sender_puts_them() {
        let stripe = json!({"id": "evt_1", "type": "charge.refunded",
            "data": {"object": {"metadata": {"order_id": "order-42"}}}});
        assert_eq!(Provider::Stripe.body_event_id(&stripe), Some("evt_1"));
        assert_eq!(
            Provider::Stripe.body_event_type(&stripe),
            Some("charge.refunded")
        );
        assert_eq!(
            Provider::Stripe.body_order_id(&stripe).unwrap().as_str(),
            "order-42"
        );
        let paddle = json!({"event_id": "evt_01h", "event_type": "transaction.completed",
            "data": {"custom_data": {"orderId": "order-43"}}});
        assert_eq!(Provider::Paddle.body_event_id(&paddle), Some("evt_01h"));
        assert_eq!(
            Provider::Paddle.body_order_id(&paddle).unwrap().as_str(),
            "order-43"
        );
        let hostile = json!({"type": "x", "data": {"orderId": "../../etc"}});
        assert!(Provider::Standard.body_order_id(&hostile).is_none());
    }

    #[test]
    fn event_ids_are_bounded_and_plain() {
        assert!(usable_event_id("evt_1MqqbK2eZvKYlo2C"));
        assert!(usable_event_id("msg_p5jXN8AQM9LWM0D4loKWxJek"));
        assert!(!usable_event_id(""));
        assert!(!usable_event_id("evt 1"));
        assert!(!usable_event_id(&"a".repeat(129)));
    }
}
