//! Toss Payments error codes → [`FailureClass`]: the one table.
//!
//! Codes come from Toss's API error-code reference and from source documents 1 and 2. A code
//! missing here is [`FailureClass::Unclassified`] (manual review) unless Toss sent it with a 5xx
//! status, which is a provider error whatever its code. Adding a code is a one-line change here.
//!
//! `IDEMPOTENT_REQUEST_PROCESSING` (409) is deliberately absent: it is not a refusal but "the
//! first request with this key is still running", which the retry loop handles.

use payledger_domain::provider_failure::FailureClass;

use FailureClass::{
    AlreadyProcessed, BillingKeyInvalid, CardUnusable, ExceedsLimit, InvalidRequest, NotCancelable,
    NotFound, ProviderError, SoftDecline,
};

/// Every Toss code payledger knows, and its class.
pub const TOSS_FAILURE_CODES: &[(&str, FailureClass)] = &[
    // The provider already did this: the payment succeeded earlier (show success, then read it).
    ("ALREADY_PROCESSED_PAYMENT", AlreadyProcessed),
    ("ALREADY_COMPLETED_PAYMENT", AlreadyProcessed),
    // Billing charge: this order id was already approved (or approved and cancelled).
    ("DUPLICATED_ORDER_ID", AlreadyProcessed),
    // Temporary provider trouble: retry later, with the same idempotency key.
    ("PROVIDER_ERROR", ProviderError),
    ("FAILED_INTERNAL_SYSTEM_PROCESSING", ProviderError),
    ("FAILED_PAYMENT_INTERNAL_SYSTEM_PROCESSING", ProviderError),
    ("FAILED_METHOD_HANDLING", ProviderError),
    ("FAILED_METHOD_HANDLING_CANCEL", ProviderError),
    ("FAILED_REFUND_PROCESS", ProviderError),
    ("FAILED_BILL_KEY_AUTH_CREATION", ProviderError),
    ("FAILED_BILLING_AUTO_CANCEL", ProviderError),
    ("FAILED_CARD_COMPANY_RESPONSE", ProviderError),
    ("COMMON_ERROR", ProviderError),
    ("UNKNOWN_ERROR", ProviderError),
    ("UNKNOWN_PAYMENT_ERROR", ProviderError),
    ("MAINTAINED_METHOD", ProviderError),
    ("FORBIDDEN_CONSECUTIVE_REQUEST", ProviderError),
    // The issuer declined; insufficient funds arrives as one of these (domain spec §3.3).
    ("REJECT_CARD_COMPANY", SoftDecline),
    ("REJECT_CARD_PAYMENT", SoftDecline),
    ("REJECT_ACCOUNT_PAYMENT", SoftDecline),
    ("INVALID_REJECT_CARD", SoftDecline),
    ("EXCEED_MAX_AUTH_COUNT", SoftDecline),
    ("INVALID_CARD_PASSWORD", SoftDecline),
    ("INVALID_PASSWORD", SoftDecline),
    ("NOT_ALLOWED_POINT_USE", SoftDecline),
    ("PAY_PROCESS_ABORTED", SoftDecline),
    // The card itself cannot be used again: the customer must change it.
    ("INVALID_CARD_EXPIRATION", CardUnusable),
    ("INVALID_STOPPED_CARD", CardUnusable),
    ("INVALID_CARD_LOST_OR_STOLEN", CardUnusable),
    ("INVALID_CARD_NUMBER", CardUnusable),
    ("INVALID_CARD", CardUnusable),
    ("NOT_SUPPORTED_CARD_TYPE", CardUnusable),
    ("NOT_REGISTERED_CARD_COMPANY", CardUnusable),
    // The billing key is unknown, expired or revoked: a new one is needed.
    ("NOT_FOUND_BILLING", BillingKeyInvalid),
    ("NOT_FOUND_BILLING_KEY", BillingKeyInvalid),
    ("BILLING_KEY_NOT_FOUND", BillingKeyInvalid),
    ("BILLING_KEY_EXPIRED", BillingKeyInvalid),
    ("ALREADY_REMOVED_BILLING_KEY", BillingKeyInvalid),
    ("INVALID_BILL_KEY_REQUEST", BillingKeyInvalid),
    ("INVALID_BILLING_AUTH", BillingKeyInvalid),
    // Over a limit of the card, the account or the merchant.
    ("EXCEED_MAX_AMOUNT", ExceedsLimit),
    ("EXCEED_MAX_DAILY_PAYMENT_COUNT", ExceedsLimit),
    ("EXCEED_MAX_PAYMENT_AMOUNT", ExceedsLimit),
    ("EXCEED_MAX_MONTHLY_PAYMENT_AMOUNT", ExceedsLimit),
    ("EXCEED_MAX_ONE_DAY_AMOUNT", ExceedsLimit),
    ("EXCEED_MAX_ONE_DAY_WITHDRAW_AMOUNT", ExceedsLimit),
    ("EXCEED_MAX_ONE_TIME_WITHDRAW_AMOUNT", ExceedsLimit),
    ("EXCEED_UNKNOWN_CASE", ExceedsLimit),
    ("EXCEEDS_TRANSFER_AMOUNT_MAXIMUM", ExceedsLimit),
    // payledger sent something wrong: restart the payment (and look for the bug).
    ("INVALID_REQUEST", InvalidRequest),
    ("INVALID_REQUIRED_PARAM", InvalidRequest),
    ("INVALID_PAYMENT_KEY", InvalidRequest),
    ("INVALID_ORDER_ID", InvalidRequest),
    ("INVALID_ORDER_NAME", InvalidRequest),
    ("INVALID_CUSTOMER_KEY", InvalidRequest),
    ("INVALID_CURRENCY", InvalidRequest),
    ("INVALID_IDEMPOTENCY_KEY", InvalidRequest),
    ("IDEMPOTENT_REQUEST_MISMATCH", InvalidRequest),
    ("BELOW_MINIMUM_AMOUNT", InvalidRequest),
    ("BELOW_ZERO_AMOUNT", InvalidRequest),
    ("REQUIRED_AMOUNT", InvalidRequest),
    ("NOT_MATCHES_CUSTOMER_KEY", InvalidRequest),
    ("NOT_FOUND_PAYMENT_SESSION", InvalidRequest),
    ("UNAPPROVED_ORDER_ID", InvalidRequest),
    // The provider has no such payment.
    ("NOT_FOUND_PAYMENT", NotFound),
    ("NOT_FOUND", NotFound),
    // A cancel the provider will not do.
    ("NOT_CANCELABLE_AMOUNT", NotCancelable),
    ("NOT_CANCELABLE_PAYMENT", NotCancelable),
    ("ALREADY_CANCELED_PAYMENT", NotCancelable),
    ("ALREADY_REFUND_PAYMENT", NotCancelable),
    ("NOT_ALLOWED_PARTIAL_REFUND", NotCancelable),
    ("NOT_ALLOWED_PARTIAL_REFUND_WAITING_DEPOSIT", NotCancelable),
    ("NOT_MATCHES_REFUNDABLE_AMOUNT", NotCancelable),
    ("EXCEED_MAX_REFUND_DUE", NotCancelable),
    ("EXCEED_CANCEL_AMOUNT_DISCOUNT_AMOUNT", NotCancelable),
    ("NOT_SUPPORTED_REFUND", NotCancelable),
    ("REFUND_REJECTED", NotCancelable),
];

/// The class of a Toss code, if payledger knows the code.
pub fn toss_code_class(code: &str) -> Option<FailureClass> {
    TOSS_FAILURE_CODES
        .iter()
        .find(|(known, _)| *known == code)
        .map(|(_, class)| *class)
}

/// Classifies a Toss error answer: the table first, then the HTTP status (5xx is a provider
/// error), else unclassified. Credentials problems (`UNAUTHORIZED_KEY`, `INVALID_API_KEY`) are
/// left unclassified on purpose: an operator has to look.
pub fn classify_toss_failure(code: &str, http_status: u16) -> FailureClass {
    toss_code_class(code).unwrap_or(if (500..600).contains(&http_status) {
        ProviderError
    } else {
        FailureClass::Unclassified
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn each_code_appears_once() {
        let mut seen = HashSet::new();
        for (code, _) in TOSS_FAILURE_CODES {
            assert!(seen.insert(*code), "{code} is listed twice");
        }
    }

    #[test]
    fn the_codes_named_by_the_source_documents_have_their_classes() {
        let expected = [
            ("ALREADY_PROCESSED_PAYMENT", AlreadyProcessed),
            ("PROVIDER_ERROR", ProviderError),
            ("FAILED_INTERNAL_SYSTEM_PROCESSING", ProviderError),
            ("REJECT_CARD_COMPANY", SoftDecline),
            ("REJECT_ACCOUNT_PAYMENT", SoftDecline),
            ("INVALID_CARD_EXPIRATION", CardUnusable),
            ("INVALID_STOPPED_CARD", CardUnusable),
            ("BILLING_KEY_NOT_FOUND", BillingKeyInvalid),
            ("BILLING_KEY_EXPIRED", BillingKeyInvalid),
            ("EXCEED_MAX_AMOUNT", ExceedsLimit),
            ("EXCEED_MAX_DAILY_PAYMENT_COUNT", ExceedsLimit),
            ("INVALID_REQUEST", InvalidRequest),
            ("NOT_FOUND_PAYMENT", NotFound),
            ("NOT_CANCELABLE_AMOUNT", NotCancelable),
            ("NOT_CANCELABLE_PAYMENT", NotCancelable),
        ];
        for (code, class) in expected {
            assert_eq!(classify_toss_failure(code, 400), class, "{code}");
        }
    }

    #[test]
    fn unknown_codes_are_unclassified_unless_the_status_is_a_server_error() {
        assert_eq!(
            classify_toss_failure("SOMETHING_NEW", 400),
            FailureClass::Unclassified
        );
        assert_eq!(
            classify_toss_failure("UNAUTHORIZED_KEY", 401),
            FailureClass::Unclassified
        );
        assert_eq!(classify_toss_failure("SOMETHING_NEW", 503), ProviderError);
        // A known code wins over the status it came with.
        assert_eq!(
            classify_toss_failure("REJECT_CARD_COMPANY", 500),
            SoftDecline
        );
    }
}
