//! Toss's JSON shapes, read into payledger's provider types and checked on the way in.
//!
//! Only the fields payledger uses are read; Toss adds fields without notice and they are
//! ignored. A card number is only ever reduced to its last four characters.

use chrono::{DateTime, Utc};
use payledger_domain::money::{Currency, MAX_AMOUNT_MINOR};
use payledger_gateway::{CardMetadata, PaymentFactStatus, ProviderCancel, ProviderPayment};
use serde::Deserialize;

/// Longest provider code and message kept from an error answer; both end up in events.
const MAX_CODE_CHARS: usize = 100;
const MAX_MESSAGE_CHARS: usize = 500;

/// `{"code", "message"}`.
#[derive(Debug, Deserialize)]
pub(crate) struct ErrorWire {
    pub code: String,
    #[serde(default)]
    pub message: Option<String>,
}

impl ErrorWire {
    pub(crate) fn code(&self) -> String {
        bounded(&self.code, MAX_CODE_CHARS)
    }

    pub(crate) fn message(&self) -> String {
        bounded(self.message.as_deref().unwrap_or(""), MAX_MESSAGE_CHARS)
    }
}

/// Toss's payment `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum TossPaymentStatus {
    Ready,
    InProgress,
    WaitingForDeposit,
    Done,
    Canceled,
    PartialCanceled,
    Aborted,
    Expired,
}

impl TossPaymentStatus {
    /// What each Toss status means for the ledger: the one place Toss's status words are read.
    /// `CANCELED` is a payment approved and then cancelled in full (money returned), never a
    /// capture the ledger may keep; `ABORTED` (approval failed) and `EXPIRED` (the 30-minute
    /// window closed) never charged.
    pub(crate) fn fact_status(self) -> PaymentFactStatus {
        match self {
            TossPaymentStatus::Ready
            | TossPaymentStatus::InProgress
            | TossPaymentStatus::WaitingForDeposit => PaymentFactStatus::Pending,
            TossPaymentStatus::Done => PaymentFactStatus::Captured,
            TossPaymentStatus::PartialCanceled => PaymentFactStatus::PartiallyRefunded,
            TossPaymentStatus::Canceled => PaymentFactStatus::Refunded,
            TossPaymentStatus::Aborted | TossPaymentStatus::Expired => {
                PaymentFactStatus::NotCompleted
            }
        }
    }

    fn wire_name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PaymentWire {
    payment_key: String,
    order_id: String,
    status: TossPaymentStatus,
    total_amount: i64,
    balance_amount: i64,
    currency: String,
    #[serde(default)]
    approved_at: Option<String>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    card: Option<CardWire>,
    /// `null` until the first cancel.
    #[serde(default)]
    cancels: Option<Vec<CancelWire>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CardWire {
    #[serde(default)]
    issuer_code: Option<String>,
    /// Masked by Toss (`43301234****123*`); only its last four characters are kept.
    #[serde(default)]
    number: Option<String>,
    #[serde(default)]
    card_type: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CancelWire {
    transaction_key: String,
    cancel_amount: i64,
    #[serde(default)]
    cancel_reason: Option<String>,
    canceled_at: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BillingWire {
    billing_key: String,
    customer_key: String,
    #[serde(default)]
    card: Option<CardWire>,
    #[serde(default)]
    card_number: Option<String>,
}

/// A 2xx body payledger could not read. The message names the problem, never the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct UnreadableAnswer(pub String);

pub(crate) fn parse_payment(body: &[u8]) -> Result<ProviderPayment, UnreadableAnswer> {
    let wire: PaymentWire = serde_json::from_slice(body).map_err(|err| {
        UnreadableAnswer(format!(
            "payment answer is not a Toss payment: {}",
            describe_json_error(&err)
        ))
    })?;
    check_amount(wire.total_amount, "totalAmount")?;
    if wire.balance_amount < 0 || wire.balance_amount > wire.total_amount {
        return Err(UnreadableAnswer(
            "payment balanceAmount is outside 0..=totalAmount".to_owned(),
        ));
    }
    let currency = Currency::parse(&wire.currency).map_err(|_| {
        UnreadableAnswer("payment currency is not one payledger settles in".to_owned())
    })?;
    let approved_at = wire
        .approved_at
        .as_deref()
        .map(|text| parse_time(text, "approvedAt"))
        .transpose()?;
    let cancels = wire
        .cancels
        .unwrap_or_default()
        .into_iter()
        .map(|cancel| {
            check_amount(cancel.cancel_amount, "cancelAmount")?;
            Ok(ProviderCancel {
                canceled_at: parse_time(&cancel.canceled_at, "canceledAt")?,
                transaction_key: cancel.transaction_key,
                cancel_amount_minor: cancel.cancel_amount,
                cancel_reason: cancel.cancel_reason.unwrap_or_default(),
            })
        })
        .collect::<Result<Vec<_>, UnreadableAnswer>>()?;
    Ok(ProviderPayment {
        provider: crate::PROVIDER_NAME.to_owned(),
        payment_key: wire.payment_key,
        order_id: wire.order_id,
        status: wire.status.fact_status(),
        provider_status: wire.status.wire_name(),
        total_amount_minor: wire.total_amount,
        balance_amount_minor: wire.balance_amount,
        currency,
        approved_at,
        method: wire.method,
        card: wire.card.and_then(|card| card.metadata(None)),
        cancels,
        client_action: None,
        client_key: None,
    })
}

/// A billing key answer: the key, the customer, and the card's metadata.
pub(crate) struct BillingKeyAnswer {
    pub billing_key: String,
    pub customer_key: String,
    pub card: CardMetadata,
}

pub(crate) fn parse_billing_key(body: &[u8]) -> Result<BillingKeyAnswer, UnreadableAnswer> {
    let wire: BillingWire = serde_json::from_slice(body).map_err(|err| {
        UnreadableAnswer(format!(
            "billing key answer is not a Toss billing object: {}",
            describe_json_error(&err)
        ))
    })?;
    let card = wire
        .card
        .and_then(|card| card.metadata(wire.card_number.as_deref()))
        .ok_or_else(|| UnreadableAnswer("billing key answer has no card".to_owned()))?;
    if wire.billing_key.is_empty() {
        return Err(UnreadableAnswer(
            "billing key answer has an empty billingKey".to_owned(),
        ));
    }
    Ok(BillingKeyAnswer {
        billing_key: wire.billing_key,
        customer_key: wire.customer_key,
        card,
    })
}

impl CardWire {
    fn metadata(self, fallback_number: Option<&str>) -> Option<CardMetadata> {
        let number = self.number.as_deref().or(fallback_number)?;
        Some(CardMetadata {
            issuer_code: self.issuer_code.unwrap_or_default(),
            last4: last_chars(number, 4),
            card_type: self.card_type.unwrap_or_default(),
            expiry: None,
        })
    }
}

fn check_amount(amount: i64, field: &str) -> Result<(), UnreadableAnswer> {
    if (0..=MAX_AMOUNT_MINOR).contains(&amount) {
        Ok(())
    } else {
        Err(UnreadableAnswer(format!(
            "{field} is outside 0..={MAX_AMOUNT_MINOR}"
        )))
    }
}

fn parse_time(text: &str, field: &str) -> Result<DateTime<Utc>, UnreadableAnswer> {
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|_| UnreadableAnswer(format!("{field} is not an ISO 8601 time")))
}

fn last_chars(text: &str, count: usize) -> String {
    let chars: Vec<char> = text.chars().collect();
    chars[chars.len().saturating_sub(count)..].iter().collect()
}

fn bounded(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

/// Where the JSON went wrong, without echoing any of it (it may hold payment data).
fn describe_json_error(err: &serde_json::Error) -> String {
    format!(
        "{:?} error at line {} column {}",
        err.classify(),
        err.line(),
        err.column()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOSS_PAYMENT: &str = r#"{
        "mId": "tosspayments", "version": "2022-11-16",
        "paymentKey": "5zJ4xY7m0kODnyRpQWGrN2xqGlNvLrKwv1M9ENjbeoPaZdL6",
        "orderId": "a4CWyWY5m89PNh7xJwhk1", "orderName": "토스 티셔츠 외 2건",
        "currency": "KRW", "method": "카드", "status": "PARTIAL_CANCELED",
        "approvedAt": "2022-06-08T15:40:09+09:00",
        "totalAmount": 15000, "balanceAmount": 14000, "suppliedAmount": 13636,
        "card": {"issuerCode": "61", "acquirerCode": "31", "number": "43301234****123*",
                 "cardType": "신용", "ownerType": "개인", "installmentPlanMonths": 0},
        "cancels": [{"transactionKey": "tx1", "cancelAmount": 1000, "cancelReason": "고객 변심",
                     "canceledAt": "2022-06-08T16:00:00+09:00", "taxFreeAmount": 0}],
        "secret": null, "easyPay": null, "failure": null
    }"#;

    #[test]
    fn a_toss_payment_reads_into_a_provider_payment() {
        let payment = parse_payment(TOSS_PAYMENT.as_bytes()).unwrap();
        assert_eq!(payment.status, PaymentFactStatus::PartiallyRefunded);
        assert_eq!(payment.provider_status, "PARTIAL_CANCELED");
        assert_eq!(payment.total_amount_minor, 15_000);
        assert_eq!(payment.balance_amount_minor, 14_000);
        assert_eq!(payment.currency, Currency::KRW);
        assert_eq!(
            payment.approved_at.unwrap().to_rfc3339(),
            "2022-06-08T06:40:09+00:00"
        );
        let card = payment.card.unwrap();
        assert_eq!(card.last4, "123*");
        assert_eq!(card.issuer_code, "61");
        assert_eq!(payment.cancels.len(), 1);
        assert_eq!(payment.cancels[0].cancel_amount_minor, 1_000);
    }

    #[test]
    fn null_cancels_mean_none() {
        let body = TOSS_PAYMENT.replace(
            r#""cancels": [{"transactionKey": "tx1", "cancelAmount": 1000, "cancelReason": "고객 변심",
                     "canceledAt": "2022-06-08T16:00:00+09:00", "taxFreeAmount": 0}]"#,
            r#""cancels": null"#,
        );
        assert!(parse_payment(body.as_bytes()).unwrap().cancels.is_empty());
    }

    #[test]
    fn impossible_amounts_and_fractional_amounts_are_refused() {
        let negative = TOSS_PAYMENT.replace("\"balanceAmount\": 14000", "\"balanceAmount\": 16000");
        assert!(parse_payment(negative.as_bytes()).is_err());
        let float = TOSS_PAYMENT.replace("\"totalAmount\": 15000", "\"totalAmount\": 15000.5");
        assert!(parse_payment(float.as_bytes()).is_err());
    }

    #[test]
    fn an_unreadable_answer_does_not_echo_the_body() {
        let err =
            parse_payment(br#"{"paymentKey": "secret-ish", "cardNumber": "4330123412341234"}"#)
                .unwrap_err();
        assert!(!err.0.contains("4330"), "{}", err.0);
        assert!(!err.0.contains("secret-ish"), "{}", err.0);
    }
}
