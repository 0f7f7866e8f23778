//! Stripe's error codes and decline codes mapped to payledger's failure classes
//! (docs.stripe.com/error-codes, docs.stripe.com/declines/codes).
//!
//! The class decides what payledger and the customer do next ([`FailureClass::suggested_action`]);
//! whether a failure says anything about Stripe's health is decided separately, by HTTP status
//! only (see `client.rs`): a refusal of one card never counts against the circuit.

use payledger_domain::provider_failure::FailureClass;

/// `(decline_code or code, class)`: every code payledger knows, for docs and tests. A code not
/// listed is [`FailureClass::Unclassified`] and goes to manual review, never guessed.
pub const STRIPE_FAILURE_CODES: &[(&str, FailureClass)] = &[
    // Issuer declines the customer can get past with another card.
    ("generic_decline", FailureClass::SoftDecline),
    ("insufficient_funds", FailureClass::SoftDecline),
    ("do_not_honor", FailureClass::SoftDecline),
    ("do_not_try_again", FailureClass::SoftDecline),
    ("fraudulent", FailureClass::SoftDecline),
    ("merchant_blacklist", FailureClass::SoftDecline),
    ("transaction_not_allowed", FailureClass::SoftDecline),
    ("not_permitted", FailureClass::SoftDecline),
    ("try_again_later", FailureClass::SoftDecline),
    (
        "payment_intent_authentication_failure",
        FailureClass::SoftDecline,
    ),
    ("card_declined", FailureClass::SoftDecline),
    // Limits.
    ("card_velocity_exceeded", FailureClass::ExceedsLimit),
    (
        "withdrawal_count_limit_exceeded",
        FailureClass::ExceedsLimit,
    ),
    // The card itself cannot be used: the customer must update it.
    ("expired_card", FailureClass::CardUnusable),
    ("lost_card", FailureClass::CardUnusable),
    ("stolen_card", FailureClass::CardUnusable),
    ("pickup_card", FailureClass::CardUnusable),
    ("restricted_card", FailureClass::CardUnusable),
    ("card_not_supported", FailureClass::CardUnusable),
    ("currency_not_supported", FailureClass::CardUnusable),
    ("incorrect_cvc", FailureClass::CardUnusable),
    ("invalid_cvc", FailureClass::CardUnusable),
    ("incorrect_number", FailureClass::CardUnusable),
    ("invalid_number", FailureClass::CardUnusable),
    ("invalid_expiry_month", FailureClass::CardUnusable),
    ("invalid_expiry_year", FailureClass::CardUnusable),
    ("incorrect_zip", FailureClass::CardUnusable),
    // The card network failed on this card: try again later. A 402 for one card, so it is a
    // refusal for that customer, not a sign that Stripe is unwell.
    ("processing_error", FailureClass::ProviderError),
    ("issuer_not_available", FailureClass::ProviderError),
    ("reenter_transaction", FailureClass::ProviderError),
    // The payment must be restarted (3-D Secure needed but not done, state moved on, …).
    ("authentication_required", FailureClass::InvalidRequest),
    (
        "payment_intent_unexpected_state",
        FailureClass::InvalidRequest,
    ),
    ("payment_method_unactivated", FailureClass::InvalidRequest),
    ("parameter_invalid_integer", FailureClass::InvalidRequest),
    ("parameter_missing", FailureClass::InvalidRequest),
    ("parameter_unknown", FailureClass::InvalidRequest),
    ("amount_too_small", FailureClass::InvalidRequest),
    ("resource_missing", FailureClass::NotFound),
    // Refunds that cannot be made.
    ("amount_too_large", FailureClass::NotCancelable),
    ("charge_already_refunded", FailureClass::NotCancelable),
    ("charge_disputed", FailureClass::NotCancelable),
    ("charge_not_refundable", FailureClass::NotCancelable),
];

/// The class of one Stripe error, by its `decline_code` first (the issuer's reason), then its
/// `code`.
pub fn stripe_code_class(code: Option<&str>, decline_code: Option<&str>) -> FailureClass {
    let lookup = |wanted: &str| {
        STRIPE_FAILURE_CODES
            .iter()
            .find(|(known, _)| *known == wanted)
            .map(|(_, class)| *class)
    };
    decline_code
        .and_then(lookup)
        .or_else(|| code.and_then(lookup))
        .unwrap_or(FailureClass::Unclassified)
}

#[cfg(test)]
mod tests {
    use super::*;
    use payledger_domain::provider_failure::SuggestedAction;

    #[test]
    fn the_issuers_reason_decides_before_the_generic_code() {
        assert_eq!(
            stripe_code_class(Some("card_declined"), Some("insufficient_funds")),
            FailureClass::SoftDecline
        );
        assert_eq!(
            stripe_code_class(Some("card_declined"), Some("lost_card")),
            FailureClass::CardUnusable
        );
        assert_eq!(
            stripe_code_class(Some("card_declined"), Some("a_code_nobody_knows")),
            FailureClass::SoftDecline
        );
        assert_eq!(
            stripe_code_class(Some("something_new"), None),
            FailureClass::Unclassified
        );
        assert_eq!(
            stripe_code_class(Some("processing_error"), None).suggested_action(),
            SuggestedAction::RetryLater
        );
        assert_eq!(
            stripe_code_class(Some("charge_disputed"), None),
            FailureClass::NotCancelable
        );
    }

    #[test]
    fn every_code_is_listed_once() {
        let mut codes: Vec<&str> = STRIPE_FAILURE_CODES.iter().map(|(code, _)| *code).collect();
        codes.sort_unstable();
        let before = codes.len();
        codes.dedup();
        assert_eq!(before, codes.len());
    }
}
