//! Stripe's JSON shapes (API version [`crate::STRIPE_API_VERSION`]), only the fields payledger
//! reads, and the one function that turns a PaymentIntent into a [`ProviderPayment`].
//!
//! Nothing here is trusted: amounts are checked for range, the currency must be one payledger
//! settles in, and an object that does not parse is an unreadable answer, never a default.

use chrono::{DateTime, Utc};
use payledger_domain::money::Currency;
use payledger_gateway::{
    CardMetadata, ClientAction, PaymentFactStatus, ProviderCancel, ProviderPayment,
};
use serde::Deserialize;
use serde_json::{Map, Value};

/// The PaymentIntent metadata key under which the connector keeps the payment key the client
/// sent payledger (the PaymentMethod id), so a fact read later names the payment as the ledger
/// knows it.
pub(crate) const CLIENT_KEY_METADATA: &str = "payledger_payment_key";

/// Largest amount accepted from Stripe (its own maximum is eight digits).
const MAX_AMOUNT_MINOR: i64 = 1_000_000_000_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unreadable Stripe answer: {0}")]
pub struct UnreadableAnswer(pub String);

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct PaymentIntentWire {
    pub id: String,
    pub amount: i64,
    #[serde(default)]
    pub amount_received: i64,
    pub currency: String,
    pub status: String,
    #[serde(default)]
    pub metadata: Map<String, Value>,
    #[serde(default)]
    pub latest_charge: Option<Value>,
    #[serde(default)]
    pub next_action: Option<NextActionWire>,
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default)]
    pub last_payment_error: Option<ErrorBody>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct NextActionWire {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub redirect_to_url: Option<RedirectWire>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct RedirectWire {
    #[serde(default)]
    pub url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ChargeWire {
    #[serde(default)]
    pub amount_captured: i64,
    #[serde(default)]
    pub created: i64,
    #[serde(default)]
    pub payment_method_details: Option<PaymentMethodDetailsWire>,
    #[serde(default)]
    pub refunds: Option<ListWire<RefundWire>>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct PaymentMethodDetailsWire {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub card: Option<CardWire>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct CardWire {
    #[serde(default)]
    pub brand: Option<String>,
    #[serde(default)]
    pub last4: Option<String>,
    #[serde(default)]
    pub funding: Option<String>,
    #[serde(default)]
    pub exp_month: Option<u32>,
    #[serde(default)]
    pub exp_year: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ListWire<T> {
    pub data: Vec<T>,
    #[serde(default)]
    pub has_more: bool,
}

/// A Stripe Refund.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RefundWire {
    pub id: String,
    pub amount: i64,
    pub currency: String,
    /// `pending`, `requires_action`, `succeeded`, `failed` or `canceled`.
    pub status: String,
    #[serde(default)]
    pub payment_intent: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub failure_reason: Option<String>,
    #[serde(default)]
    pub created: i64,
}

/// A Stripe Dispute, with the balance transactions that moved money for it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DisputeWire {
    pub id: String,
    pub amount: i64,
    pub currency: String,
    /// `warning_needs_response`, `warning_under_review`, `warning_closed`, `needs_response`,
    /// `under_review`, `won` or `lost`.
    pub status: String,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub payment_intent: Option<String>,
    #[serde(default)]
    pub balance_transactions: Vec<BalanceTransactionWire>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BalanceTransactionWire {
    pub amount: i64,
    #[serde(default)]
    pub fee: i64,
    pub currency: String,
}

/// `{"error": {...}}`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ErrorWire {
    pub error: ErrorBody,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ErrorBody {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub decline_code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

pub(crate) fn parse<T: serde::de::DeserializeOwned>(
    body: &[u8],
    what: &str,
) -> Result<T, UnreadableAnswer> {
    serde_json::from_slice(body).map_err(|err| UnreadableAnswer(format!("{what}: {err}")))
}

/// Stripe's lowercase currency, as payledger's currency. Stripe's zero-decimal rule matches
/// payledger's minor units for every currency payledger settles in (KRW and JPY have none, USD,
/// EUR and GBP two), so amounts pass through unchanged.
pub(crate) fn currency(text: &str) -> Result<Currency, UnreadableAnswer> {
    Currency::parse(&text.to_ascii_uppercase())
        .map_err(|_| UnreadableAnswer(format!("currency {text} is not one payledger settles in")))
}

fn check_amount(amount: i64, what: &str) -> Result<(), UnreadableAnswer> {
    if (0..=MAX_AMOUNT_MINOR).contains(&amount) {
        Ok(())
    } else {
        Err(UnreadableAnswer(format!(
            "{what} is outside 0..={MAX_AMOUNT_MINOR}"
        )))
    }
}

fn unix_time(seconds: i64, what: &str) -> Result<DateTime<Utc>, UnreadableAnswer> {
    DateTime::from_timestamp(seconds, 0)
        .ok_or_else(|| UnreadableAnswer(format!("{what} is not a time")))
}

/// The payledger order id a PaymentIntent was made for (`metadata[order_id]`).
pub(crate) fn order_id_of(intent: &PaymentIntentWire) -> Option<&str> {
    intent.metadata.get("order_id").and_then(Value::as_str)
}

/// A PaymentIntent (its `latest_charge` expanded, with refunds) as the provider's payment.
///
/// This is the Stripe connector's "provider payment → ledger fact" function: the one place
/// Stripe's status words are interpreted. `succeeded` is `Captured`, `PartiallyRefunded` or
/// `Refunded` by what was refunded (a Stripe refund never changes the intent's status);
/// `requires_action` is `Pending` with what the client must do; `requires_payment_method` after a
/// failed attempt, and `canceled`, are `NotCompleted` (no money moved); `requires_payment_method`
/// before any attempt, `requires_confirmation`, `processing` and `requires_capture` (nothing
/// captured) are `Pending`. Only `succeeded` refunds count as cancels: a pending one has not moved
/// money.
pub(crate) fn provider_payment(
    intent: PaymentIntentWire,
) -> Result<ProviderPayment, UnreadableAnswer> {
    check_amount(intent.amount, "amount")?;
    check_amount(intent.amount_received, "amount_received")?;
    let currency = currency(&intent.currency)?;
    let charge: Option<ChargeWire> = match &intent.latest_charge {
        Some(Value::Object(_)) => Some(
            serde_json::from_value(intent.latest_charge.clone().unwrap_or_default())
                .map_err(|err| UnreadableAnswer(format!("latest_charge: {err}")))?,
        ),
        Some(Value::String(_)) | Some(Value::Null) | None => None,
        Some(_) => return Err(UnreadableAnswer("latest_charge is not a charge".to_owned())),
    };
    let succeeded = intent.status == "succeeded";
    let mut cancels = Vec::new();
    if let Some(refunds) = charge.as_ref().and_then(|charge| charge.refunds.as_ref()) {
        if refunds.has_more {
            return Err(UnreadableAnswer(
                "the charge has more refunds than one page".to_owned(),
            ));
        }
        let mut succeeded_refunds: Vec<&RefundWire> = refunds
            .data
            .iter()
            .filter(|refund| refund.status == "succeeded")
            .collect();
        // Stripe lists newest first; cancels are kept oldest first, as Toss sends them.
        succeeded_refunds.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        for refund in succeeded_refunds {
            check_amount(refund.amount, "refund amount")?;
            if refund.currency != intent.currency {
                return Err(UnreadableAnswer(
                    "a refund is in another currency".to_owned(),
                ));
            }
            cancels.push(ProviderCancel {
                transaction_key: refund.id.clone(),
                cancel_amount_minor: refund.amount,
                cancel_reason: refund.reason.clone().unwrap_or_default(),
                canceled_at: unix_time(refund.created, "refund created")?,
            });
        }
    } else if succeeded && charge.is_none() {
        return Err(UnreadableAnswer(
            "a succeeded PaymentIntent came without its charge expanded".to_owned(),
        ));
    }
    let captured = if succeeded { intent.amount_received } else { 0 };
    if let (true, Some(charge)) = (succeeded, &charge) {
        if charge.amount_captured != captured {
            return Err(UnreadableAnswer(
                "the charge's captured amount differs from the PaymentIntent's".to_owned(),
            ));
        }
    }
    let refunded: i64 = cancels
        .iter()
        .map(|cancel| cancel.cancel_amount_minor)
        .sum();
    if refunded > captured {
        return Err(UnreadableAnswer(
            "refunds exceed the captured amount".to_owned(),
        ));
    }
    let status = match intent.status.as_str() {
        "succeeded" if refunded == 0 => PaymentFactStatus::Captured,
        "succeeded" if refunded < captured => PaymentFactStatus::PartiallyRefunded,
        "succeeded" => PaymentFactStatus::Refunded,
        "requires_payment_method" if intent.last_payment_error.is_some() => {
            PaymentFactStatus::NotCompleted
        }
        "canceled" => PaymentFactStatus::NotCompleted,
        "requires_action"
        | "requires_payment_method"
        | "requires_confirmation"
        | "processing"
        | "requires_capture" => PaymentFactStatus::Pending,
        other => {
            return Err(UnreadableAnswer(format!(
                "PaymentIntent status {other} is not one payledger knows"
            )))
        }
    };
    let client_action = (intent.status == "requires_action").then(|| ClientAction {
        kind: intent
            .next_action
            .as_ref()
            .map_or_else(|| "use_stripe_sdk".to_owned(), |action| action.kind.clone()),
        redirect_url: intent
            .next_action
            .as_ref()
            .and_then(|action| action.redirect_to_url.as_ref())
            .and_then(|redirect| redirect.url.clone()),
        client_secret: intent.client_secret.clone(),
    });
    let card = charge
        .as_ref()
        .and_then(|charge| charge.payment_method_details.as_ref())
        .and_then(|details| details.card.as_ref())
        .and_then(|card| {
            Some(CardMetadata {
                issuer_code: card.brand.clone()?,
                last4: card.last4.clone()?,
                card_type: card.funding.clone().unwrap_or_default(),
                expiry: match (card.exp_year, card.exp_month) {
                    (Some(year), Some(month)) => Some(format!("{year:04}-{month:02}")),
                    _ => None,
                },
            })
        });
    let approved_at = match (&charge, succeeded) {
        (Some(charge), true) => Some(unix_time(charge.created, "charge created")?),
        _ => None,
    };
    Ok(ProviderPayment {
        provider: crate::PROVIDER_NAME.to_owned(),
        order_id: order_id_of(&intent).unwrap_or_default().to_owned(),
        provider_status: intent.status.clone(),
        payment_key: intent.id,
        status,
        total_amount_minor: if succeeded { captured } else { intent.amount },
        balance_amount_minor: captured - refunded,
        currency,
        approved_at,
        method: charge
            .as_ref()
            .and_then(|charge| charge.payment_method_details.as_ref())
            .map(|details| details.kind.clone()),
        card,
        cancels,
        client_action,
        client_key: intent
            .metadata
            .get(CLIENT_KEY_METADATA)
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn intent(status: &str, refunds: Value) -> PaymentIntentWire {
        serde_json::from_value(json!({
            "id": "pi_1", "amount": 10000, "amount_received": if status == "succeeded" { 10000 } else { 0 },
            "currency": "usd", "status": status, "metadata": {"order_id": "o-1"},
            "client_secret": "pi_1_secret_x",
            "next_action": if status == "requires_action" { json!({"type": "use_stripe_sdk"}) } else { Value::Null },
            "latest_charge": {
                "id": "ch_1", "amount_captured": 10000, "created": 1700000000, "captured": true,
                "payment_method_details": {"type": "card", "card": {"brand": "visa", "last4": "4242", "funding": "credit", "exp_month": 12, "exp_year": 2034}},
                "refunds": {"object": "list", "data": refunds, "has_more": false},
            },
        }))
        .unwrap()
    }

    fn refund(id: &str, amount: i64, status: &str, created: i64) -> Value {
        json!({"id": id, "amount": amount, "currency": "usd", "status": status, "created": created})
    }

    #[test]
    fn refunds_decide_the_status_and_only_succeeded_ones_count() {
        let done = provider_payment(intent("succeeded", json!([]))).unwrap();
        assert_eq!(done.status, PaymentFactStatus::Captured);
        assert_eq!(done.balance_amount_minor, 10000);
        assert_eq!(done.order_id, "o-1");
        assert_eq!(done.card.unwrap().expiry.as_deref(), Some("2034-12"));

        let partial = provider_payment(intent(
            "succeeded",
            json!([
                refund("re_2", 500, "pending", 3),
                refund("re_1", 3000, "succeeded", 2)
            ]),
        ))
        .unwrap();
        assert_eq!(partial.status, PaymentFactStatus::PartiallyRefunded);
        assert_eq!(partial.balance_amount_minor, 7000);
        assert_eq!(partial.cancels.len(), 1);

        let full = provider_payment(intent(
            "succeeded",
            json!([
                refund("re_2", 7000, "succeeded", 3),
                refund("re_1", 3000, "succeeded", 2)
            ]),
        ))
        .unwrap();
        assert_eq!(full.status, PaymentFactStatus::Refunded);
        assert_eq!(full.cancels[0].transaction_key, "re_1", "oldest first");

        let too_much = provider_payment(intent(
            "succeeded",
            json!([refund("re_1", 10001, "succeeded", 2)]),
        ));
        assert!(too_much.is_err());
    }

    #[test]
    fn unfinished_intents_capture_nothing() {
        let action = provider_payment(intent("requires_action", json!([]))).unwrap();
        assert_eq!(action.status, PaymentFactStatus::Pending);
        assert_eq!(action.provider_status, "requires_action");
        assert_eq!(action.balance_amount_minor, 0);
        assert_eq!(action.approved_at, None);
        let client = action.client_action.unwrap();
        assert_eq!(client.kind, "use_stripe_sdk");
        assert_eq!(client.client_secret.as_deref(), Some("pi_1_secret_x"));
        assert!(!format!("{client:?}").contains("secret_x"));

        for (status, expected) in [
            ("canceled", PaymentFactStatus::NotCompleted),
            ("processing", PaymentFactStatus::Pending),
            ("requires_capture", PaymentFactStatus::Pending),
            ("requires_confirmation", PaymentFactStatus::Pending),
        ] {
            let payment = provider_payment(intent(status, json!([]))).unwrap();
            assert_eq!(payment.status, expected, "{status}");
            assert_eq!(payment.balance_amount_minor, 0, "{status}");
        }
        assert!(provider_payment(intent("a_new_status", json!([]))).is_err());
    }

    #[test]
    fn currencies_outside_payledger_are_unreadable() {
        let mut wire = intent("succeeded", json!([]));
        wire.currency = "chf".to_owned();
        assert!(provider_payment(wire).is_err());
        assert_eq!(currency("krw").unwrap(), Currency::KRW);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const STATUSES: [&str; 8] = [
        "succeeded",
        "requires_action",
        "requires_payment_method",
        "requires_confirmation",
        "requires_capture",
        "processing",
        "canceled",
        "something_new",
    ];
    const REFUND_STATUSES: [&str; 4] = ["succeeded", "pending", "failed", "canceled"];

    fn intent_json(
        status: &str,
        amount: i64,
        received: i64,
        captured: i64,
        currency: &str,
        refunds: &[(i64, usize)],
        failed_before: bool,
    ) -> Value {
        let refunds: Vec<Value> = refunds
            .iter()
            .enumerate()
            .map(|(index, (amount, status))| {
                json!({"id": format!("re_{index}"), "amount": amount, "currency": currency,
                       "status": REFUND_STATUSES[*status], "created": 1_700_000_000 + index as i64})
            })
            .collect();
        json!({
            "id": "pi_p", "amount": amount, "amount_received": received, "currency": currency,
            "status": status, "metadata": {"order_id": "o-p"},
            "last_payment_error": if failed_before { json!({"code": "card_declined"}) } else { Value::Null },
            "latest_charge": {"amount_captured": captured, "created": 1_700_000_000,
                              "refunds": {"data": refunds, "has_more": false}},
        })
    }

    proptest! {
        /// Whatever Stripe (or something pretending to be Stripe) answers, the payment read from
        /// it never shows money the answer does not support: captured only when `succeeded` with
        /// matching charge amounts, a balance within 0..=captured, cancels only from succeeded
        /// refunds of the same currency.
        #[test]
        fn a_payment_never_claims_more_than_the_answer_supports(
            status in 0..STATUSES.len(),
            amount in -5i64..200_000,
            received in -5i64..200_000,
            captured_same in any::<bool>(),
            currency in prop::sample::select(vec!["usd", "krw", "jpy", "eur", "chf", "USD"]),
            refunds in prop::collection::vec((0i64..100_000, 0..REFUND_STATUSES.len()), 0..5),
            failed_before in any::<bool>(),
        ) {
            let status_text = STATUSES[status];
            let captured = if captured_same { received } else { received + 1 };
            let wire: PaymentIntentWire = serde_json::from_value(intent_json(
                status_text, amount, received, captured, currency, &refunds, failed_before,
            )).unwrap();
            let Ok(payment) = provider_payment(wire) else { return Ok(()); };
            prop_assert!(payment.balance_amount_minor >= 0);
            prop_assert!(payment.balance_amount_minor <= payment.total_amount_minor);
            let charged = payment.status.was_charged();
            prop_assert_eq!(charged, status_text == "succeeded");
            prop_assert_eq!(payment.approved_at.is_some(), charged);
            if charged {
                prop_assert!(captured_same);
                prop_assert_eq!(payment.total_amount_minor, received);
                let succeeded_refunds: i64 = refunds.iter().filter(|(_, s)| *s == 0).map(|(a, _)| a).sum();
                prop_assert_eq!(payment.balance_amount_minor, received - succeeded_refunds);
                prop_assert_eq!(payment.status == PaymentFactStatus::Captured, succeeded_refunds == 0);
                let fact = payment.fact();
                prop_assert_eq!(fact.refunded_minor, succeeded_refunds);
            } else {
                prop_assert_eq!(payment.balance_amount_minor, 0);
                prop_assert!(payment.cancels.is_empty() || status_text == "succeeded");
            }
            prop_assert_eq!(payment.client_action.is_some(), status_text == "requires_action");
        }
    }
}
