//! The one table of API error codes. Clients branch on `code`; people read `message`.
//!
//! Every error body is `{"code": "...", "message": "..."}` (plus fields that help the client act,
//! such as `suggestedAction`). `docs/api.md` lists the same table.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use serde_json::{Map, Value};
use std::fmt;

macro_rules! error_codes {
    ($( $variant:ident => ($status:ident, $code:literal, $doc:literal), )*) => {
        /// Stable error codes, each with its HTTP status.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum ErrorCode { $( #[doc = $doc] $variant, )* }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code,)* }
            }

            pub fn status(self) -> StatusCode {
                match self { $(ErrorCode::$variant => StatusCode::$status,)* }
            }

            pub fn description(self) -> &'static str {
                match self { $(ErrorCode::$variant => $doc,)* }
            }
        }
    };
}

error_codes! {
    InvalidJson => (BAD_REQUEST, "E_INVALID_JSON", "The body is not valid JSON, has an unknown field, or a field of the wrong type."),
    UnsupportedMediaType => (UNSUPPORTED_MEDIA_TYPE, "E_UNSUPPORTED_MEDIA_TYPE", "The body must be sent as application/json."),
    BodyTooLarge => (PAYLOAD_TOO_LARGE, "E_BODY_TOO_LARGE", "The body is larger than the endpoint accepts."),
    InvalidField => (BAD_REQUEST, "E_INVALID_FIELD", "A field has a value outside what it accepts; `field` names it."),
    InvalidAmount => (BAD_REQUEST, "E_INVALID_AMOUNT", "Amounts are integers in minor units, greater than zero and at most the documented maximum."),
    UnknownCurrency => (BAD_REQUEST, "E_UNKNOWN_CURRENCY", "The currency is not an ISO 4217 code payledger settles in."),
    InvalidQuery => (BAD_REQUEST, "E_INVALID_QUERY", "A query parameter is malformed or out of range."),
    NotFound => (NOT_FOUND, "E_NOT_FOUND", "No such route."),
    OrderNotFound => (NOT_FOUND, "E_ORDER_NOT_FOUND", "No order with this id."),
    OrderAlreadyExists => (CONFLICT, "E_ORDER_ALREADY_EXISTS", "An order with this id was already placed."),
    AmountMismatch => (BAD_REQUEST, "E_AMOUNT_MISMATCH", "The confirmed amount differs from the order's amount; the attempt was recorded and nothing was charged."),
    ConfirmationInProgress => (CONFLICT, "E_CONFIRMATION_IN_PROGRESS", "Another confirmation of this order is still running; retry shortly."),
    AlreadyPaid => (CONFLICT, "E_ALREADY_PAID", "The order was already paid with another payment key."),
    OrderExpired => (CONFLICT, "E_ORDER_EXPIRED", "The payment window closed (30 minutes after placement); place a new order."),
    OrderNotPaid => (CONFLICT, "E_ORDER_NOT_PAID", "The order has no captured payment."),
    RefundExceedsRefundable => (CONFLICT, "E_REFUND_EXCEEDS_REFUNDABLE", "The refund is larger than what is left to refund (refunds in flight count)."),
    NothingToRefund => (CONFLICT, "E_NOTHING_TO_REFUND", "Everything captured has been refunded or is being refunded."),
    RefundIdConflict => (CONFLICT, "E_REFUND_ID_CONFLICT", "This refund id was used with another amount or reason."),
    TooManyRefunds => (CONFLICT, "E_TOO_MANY_REFUNDS", "The order has reached its maximum number of refunds."),
    OrderStateConflict => (CONFLICT, "E_ORDER_STATE_CONFLICT", "The order is not in a state that allows this command."),
    RefundRefused => (CONFLICT, "E_REFUND_REFUSED", "The provider refused the refund (`providerCode` says why); nothing was refunded."),
    PaymentRefused => (PAYMENT_REQUIRED, "E_PAYMENT_REFUSED", "The provider refused the payment; `providerCode` and `suggestedAction` say why and what to do."),
    ProviderNotConfigured => (BAD_REQUEST, "E_PROVIDER_NOT_CONFIGURED", "The order names a provider (`provider`) this deployment has not configured (`configuredProviders`); nothing was stored."),
    CurrencyNotSupported => (BAD_REQUEST, "E_CURRENCY_NOT_SUPPORTED", "The order's provider cannot charge its currency (`supportedCurrencies`; Toss takes KRW only); nothing was stored. Choose another provider or currency."),
    ProviderDiscrepancy => (CONFLICT, "E_PROVIDER_DISCREPANCY", "The provider reports this order's payment differently (`differences`: amount, currency, paymentKey, orderId, status such as cancelled there); the difference was recorded, nothing was captured, and the order waits for support (`NEEDS_REVIEW`)."),
    Contention => (CONFLICT, "E_CONCURRENT_MODIFICATION", "The resource kept changing under concurrent requests; retry."),
    StreamNotFound => (NOT_FOUND, "E_STREAM_NOT_FOUND", "No stream with this id."),
    ProviderUnavailable => (SERVICE_UNAVAILABLE, "E_PROVIDER_UNAVAILABLE", "The payment provider cannot be reached; nothing was charged. Retry after `Retry-After` seconds."),
    Unavailable => (SERVICE_UNAVAILABLE, "E_UNAVAILABLE", "The ledger's database is unavailable; retry after `Retry-After` seconds."),
    Unauthenticated => (UNAUTHORIZED, "E_UNAUTHENTICATED", "No API key, or a malformed, unknown or revoked one: send `Authorization: Bearer <key>` (or `X-Api-Key: <key>`)."),
    Forbidden => (FORBIDDEN, "E_FORBIDDEN", "The API key's role may not use this endpoint."),
    InvalidIdempotencyKey => (BAD_REQUEST, "E_INVALID_IDEMPOTENCY_KEY", "The Idempotency-Key header must be 1 to 255 printable ASCII characters without spaces."),
    IdempotencyKeyReused => (UNPROCESSABLE_ENTITY, "E_IDEMPOTENCY_KEY_REUSED", "This Idempotency-Key was already used with a different request (method, path or body); use a new key."),
    IdempotencyInProgress => (CONFLICT, "E_IDEMPOTENCY_IN_PROGRESS", "A request with this Idempotency-Key is still running; retry after `Retry-After` seconds for its answer."),
    PaymentsSuspended => (CONFLICT, "E_PAYMENTS_SUSPENDED", "An operator stopped all new payments (kill switch); nothing was recorded or charged."),
    PayeeSuspended => (CONFLICT, "E_PAYEE_SUSPENDED", "This payee takes no new sales: an operator stopped them (kill switch), or, for a booking, the payee serves a 7-day suspension after three warnings (`suspendedUntil`); nothing was recorded or charged."),
    EnrollmentCancelled => (CONFLICT, "E_ENROLLMENT_CANCELLED", "An admin cancelled this order's enrollment: it can no longer be paid or fulfilled."),
    ProviderTransactionAlreadyRecorded => (CONFLICT, "E_PROVIDER_TRANSACTION_ALREADY_RECORDED", "This provider transaction id is already recorded for another order (`orderId`)."),
    WebhookProviderUnknown => (NOT_FOUND, "E_WEBHOOK_PROVIDER_UNKNOWN", "Webhooks are accepted from `toss`, `stripe`, `paddle` and `standard` (Standard Webhooks senders) only."),
    WebhookSignatureMissing => (BAD_REQUEST, "E_WEBHOOK_SIGNATURE_MISSING", "A header the provider's signature scheme requires is missing or empty."),
    WebhookSignatureMalformed => (BAD_REQUEST, "E_WEBHOOK_SIGNATURE_MALFORMED", "A signature or timestamp header does not have the scheme's shape."),
    WebhookSignatureEncoding => (BAD_REQUEST, "E_WEBHOOK_SIGNATURE_ENCODING", "A signature is not hex or base64 of 32 bytes."),
    WebhookTimestampOutOfTolerance => (BAD_REQUEST, "E_WEBHOOK_TIMESTAMP_OUT_OF_TOLERANCE", "The signature is genuine but its timestamp is outside the tolerance window (a replay or a clock problem); send a fresh delivery."),
    WebhookSignatureMismatch => (BAD_REQUEST, "E_WEBHOOK_SIGNATURE_MISMATCH", "No signature matches the raw body under any configured secret: the delivery is forged or signed with another secret."),
    WebhookVerifierMisconfigured => (SERVICE_UNAVAILABLE, "E_WEBHOOK_VERIFIER_MISCONFIGURED", "payledger has no usable secret for this provider; refused so the sender retries once it is configured."),
    WebhookRateLimited => (TOO_MANY_REQUESTS, "E_WEBHOOK_RATE_LIMITED", "Too many unsigned (Toss payment-status) deliveries from this source or in total this minute; retry after `Retry-After` seconds."),
    WebhookPayloadInvalid => (BAD_REQUEST, "E_WEBHOOK_PAYLOAD_INVALID", "The verified body is not a JSON object carrying what the provider's format requires (event id; for unsigned Toss events a paymentKey or orderId)."),
    DeadLetterNotFound => (NOT_FOUND, "E_DEAD_LETTER_NOT_FOUND", "No webhook delivery or notification with this id."),
    NotDeadLettered => (CONFLICT, "E_NOT_DEAD_LETTERED", "Only dead-lettered deliveries can be replayed; this one is pending, applied or delivered."),
    NotABooking => (CONFLICT, "E_NOT_A_BOOKING", "The order has no service time (`serviceStartsAt`): booking commands do not apply to it."),
    BookingCancelled => (CONFLICT, "E_BOOKING_CANCELLED", "The booking was cancelled: it cannot be fulfilled."),
    EvidenceRequired => (BAD_REQUEST, "E_EVIDENCE_REQUIRED", "This command needs at least one evidence reference (`evidence`): emergency cancellations and customer no-show claims."),
    ClaimNotFound => (NOT_FOUND, "E_CLAIM_NOT_FOUND", "No claim with this id."),
    ClaimAlreadyExists => (CONFLICT, "E_CLAIM_ALREADY_EXISTS", "A claim with this id was already filed."),
    ClaimWindowNotOpen => (CONFLICT, "E_CLAIM_WINDOW_NOT_OPEN", "This claim type cannot be filed yet: provider no-shows from 15 minutes after the start, customer no-shows from 10, quality claims from the start (`opensAt`)."),
    ClaimWrongClaimant => (BAD_REQUEST, "E_CLAIM_WRONG_CLAIMANT", "A no-show claim is filed by the side that showed up: provider no-shows by the customer, customer no-shows by the provider."),
    ClaimNothingAtStake => (CONFLICT, "E_CLAIM_NOTHING_AT_STAKE", "The order was refunded in full: there is nothing left to dispute."),
    ClaimStateConflict => (CONFLICT, "E_CLAIM_STATE_CONFLICT", "The claim is not in a state that allows this command (see `message`)."),
    ResponseWindowClosed => (CONFLICT, "E_RESPONSE_WINDOW_CLOSED", "The respondent's 24 hours to answer are over (`respondBy`); this answer stores nothing, the deadline sweep records the missed deadline."),
    AppealWindowClosed => (CONFLICT, "E_APPEAL_WINDOW_CLOSED", "A resolution can be appealed for 7 days (`closedAt`)."),
    ClaimNotAssignee => (CONFLICT, "E_CLAIM_NOT_ASSIGNEE", "Only the admin the claim is assigned to (`assignedTo`) can resolve it."),
    ResolutionInvalid => (BAD_REQUEST, "E_RESOLUTION_INVALID", "The resolution's amounts do not fit: refund and payout must add up to the amount at stake, match the outcome, and a refund cannot fall below an earlier one."),
    StatementNotFound => (NOT_FOUND, "E_STATEMENT_NOT_FOUND", "No settlement statement with this id (`PAYEE-YYYY-MM-DD-CUR`, the week's Monday)."),
    StatementPeriodNotOver => (CONFLICT, "E_STATEMENT_PERIOD_NOT_OVER", "A statement can be confirmed once its week is over (`periodEnd`)."),
    StatementStateConflict => (CONFLICT, "E_STATEMENT_STATE_CONFLICT", "The statement is not in a state that allows this command (a payout needs a confirmed statement; a paid-out one is closed)."),
    PayoutAmountMismatch => (CONFLICT, "E_PAYOUT_AMOUNT_MISMATCH", "The payout amount differs from the statement's net payable (`netPayable`)."),
    CardDataRejected => (BAD_REQUEST, "E_CARD_DATA_REJECTED", "A path segment, query parameter, header or body field holds a card number (`field` says where; the value is never echoed). payledger never accepts card data: register cards in the provider's window and send its `authKey`."),
    BillingKeyNotFound => (NOT_FOUND, "E_BILLING_KEY_NOT_FOUND", "No billing key with this id for this customer."),
    BillingKeyNotActive => (CONFLICT, "E_BILLING_KEY_NOT_ACTIVE", "The billing key was revoked or the provider reported it expired; register a new one."),
    TooManyBillingKeys => (CONFLICT, "E_TOO_MANY_BILLING_KEYS", "The customer has reached the maximum number of billing keys (or subscriptions)."),
    UnknownPlan => (BAD_REQUEST, "E_UNKNOWN_PLAN", "The plan is not in the plan catalogue (`PAYLEDGER_PLAN_CATALOGUE`)."),
    SubscriptionNotFound => (NOT_FOUND, "E_SUBSCRIPTION_NOT_FOUND", "No subscription with this id."),
    CustomerNotFound => (NOT_FOUND, "E_CUSTOMER_NOT_FOUND", "No customer with this id for this API client (a client sees only the customers it created)."),
    SubscriptionAlreadyExists => (CONFLICT, "E_SUBSCRIPTION_ALREADY_EXISTS", "A subscription with this id was already started."),
    NothingDue => (CONFLICT, "E_NOTHING_DUE", "Nothing is due: the current cycle has not started, is paid, or a cancellation stops charging."),
    ChargeInProgress => (CONFLICT, "E_CHARGE_IN_PROGRESS", "A charge attempt of this subscription is still running; retry shortly."),
    SubscriptionEnded => (CONFLICT, "E_SUBSCRIPTION_ENDED", "The subscription has ended."),
    SubscriptionSuspended => (CONFLICT, "E_SUBSCRIPTION_SUSPENDED", "The subscription is suspended; a new payment method (`/payment-method`) restarts charging."),
    SubscriptionStateConflict => (CONFLICT, "E_SUBSCRIPTION_STATE_CONFLICT", "The subscription is not in a state that allows this command (see `message`)."),
    MembershipRequired => (FORBIDDEN, "E_MEMBERSHIP_REQUIRED", "Buying credits needs an active membership (a paid plan of level 1 or above)."),
    InsufficientCredits => (CONFLICT, "E_INSUFFICIENT_CREDITS", "The wallet's balance (`balance`) does not cover the credits to spend (`requested`)."),
    CreditIdConflict => (CONFLICT, "E_CREDIT_ID_CONFLICT", "This purchase or spend id was used with other values."),
    OrderAlreadyUsed => (CONFLICT, "E_ORDER_ALREADY_USED", "This order already paid for a credit purchase."),
    WalletLimitReached => (CONFLICT, "E_WALLET_LIMIT_REACHED", "The wallet has reached its maximum number of purchases, or its balance would overflow."),
    PositionBeyondHead => (BAD_REQUEST, "E_POSITION_BEYOND_HEAD", "The global position asked for is beyond the head of the log (`headPosition`): nothing is known there yet. `payledger audit trial-balance --at` refuses it with the same code."),
    TestClockDisabled => (NOT_FOUND, "E_TEST_CLOCK_DISABLED", "The server runs on the system clock; only a test deployment (`serve --test-clock`) has a clock to move."),
    ClockBackwards => (CONFLICT, "E_CLOCK_BACKWARDS", "The scenario clock never moves backwards: the requested time is earlier than `now`."),
    ReconciliationProviderUnknown => (NOT_FOUND, "E_RECONCILIATION_PROVIDER_UNKNOWN", "No settlement import is configured for this provider (`provider`)."),
    SettlementReportUnavailable => (SERVICE_UNAVAILABLE, "E_SETTLEMENT_REPORT_UNAVAILABLE", "The provider's settlement report could not be read (unavailable, malformed, or longer than one import takes); nothing was recorded. Retry, or import a shorter period."),
    ReconciliationExceptionNotOpen => (CONFLICT, "E_RECONCILIATION_EXCEPTION_NOT_OPEN", "No open reconciliation exception with this id: it was resolved already, or never raised."),
    BookingNotAwaitingConfirmation => (CONFLICT, "E_BOOKING_NOT_AWAITING_CONFIRMATION", "The booking awaits no provider confirmation: it is not paid yet, or it lost its slot to another order."),
    BookingAlreadyConfirmed => (CONFLICT, "E_BOOKING_ALREADY_CONFIRMED", "The provider or an admin confirmed the booking: force-cancel is only for unconfirmed bookings; cancel it under the refund policy."),
    SlotTaken => (CONFLICT, "E_SLOT_TAKEN", "Another booking holds the provider's slot at the requested start."),
    RescheduleTooLate => (CONFLICT, "E_RESCHEDULE_TOO_LATE", "A booking moves at least 48 hours before its current start (`startsAt`); with less notice only an admin moves it, or the customer cancels under the refund policy."),
    TooManyReschedules => (CONFLICT, "E_TOO_MANY_RESCHEDULES", "The booking was moved the maximum number of times (3)."),
    Internal => (INTERNAL_SERVER_ERROR, "E_INTERNAL", "A bug: payledger failed in a way it did not expect. It is logged with the request id."),
    DisputeOpen => (CONFLICT, "E_DISPUTE_OPEN", "The cardholder disputed this payment at the provider: refunds are refused until the dispute is decided (won: refunds are possible again; lost: the provider kept the disputed amount). The order's timeline shows the dispute."),
    ProofUnavailable => (CONFLICT, "E_PROOF_UNAVAILABLE", "No inclusion proof for this position: no checkpoint covers it yet (retry after the next one), or the checkpoint that does is a version-1 one without an events root, or covers more than 1 000 000 events."),
    RefundDiscrepancyNotOpen => (CONFLICT, "E_REFUND_DISCREPANCY_NOT_OPEN", "This refund has no open discrepancy to resolve: none was recorded, an admin resolved it already, or the refund is no longer awaiting the provider (it completed or failed). Nothing was recorded."),
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Extra fields for the client (`field`, `providerCode`, …).
    pub details: Map<String, Value>,
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            details: Map::new(),
            retry_after_s: None,
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> ApiError {
        self.details.insert(key.to_string(), value.into());
        self
    }

    pub fn field(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::InvalidField, message).with("field", field)
    }

    pub fn retry_after(mut self, seconds: u64) -> ApiError {
        self.retry_after_s = Some(seconds.max(1));
        self
    }

    /// A failure payledger did not expect: logged in full, answered without internals.
    pub fn internal(error: impl fmt::Display) -> ApiError {
        tracing::error!(error = %error, "request failed unexpectedly");
        ApiError::new(ErrorCode::Internal, "internal error")
    }

    /// The database is down or overloaded: fail fast, tell the client when to retry.
    pub fn unavailable(error: impl fmt::Display) -> ApiError {
        tracing::warn!(error = %error, "database unavailable");
        ApiError::new(
            ErrorCode::Unavailable,
            "the ledger is temporarily unavailable",
        )
        .retry_after(2)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(flatten)]
    details: &'a Map<String, Value>,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.code.status());
        if let Some(seconds) = self.retry_after_s {
            response.insert_header(("Retry-After", seconds.to_string()));
        }
        response.json(ErrorBody {
            code: self.code.as_str(),
            message: &self.message,
            details: &self.details,
        })
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        match error {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_) => ApiError::unavailable(error),
            other => ApiError::internal(other),
        }
    }
}

impl From<payledger_store::ReadError> for ApiError {
    fn from(error: payledger_store::ReadError) -> Self {
        match error {
            payledger_store::ReadError::Database(e) => e.into(),
            other => ApiError::internal(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_and_only_internal_is_a_500() {
        let codes: HashSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(codes.len(), ErrorCode::ALL.len());
        for code in ErrorCode::ALL {
            assert!(code.as_str().starts_with("E_"));
            let is_500 = code.status() == StatusCode::INTERNAL_SERVER_ERROR;
            assert_eq!(is_500, *code == ErrorCode::Internal, "{}", code.as_str());
        }
    }
}
