//! How a payment provider's refusal is classified, and what the customer or operator should do.
//!
//! Adapters map each provider's own codes (Toss `REJECT_CARD_COMPANY`, …) to a [`FailureClass`];
//! the aggregates decide on the class alone, so dunning and the confirm flow never see raw
//! provider strings as logic.

use serde::{Deserialize, Serialize};

/// What kind of failure a provider reported. The dunning table of the domain spec (§3.3) and the
/// confirm flow (§3.1) branch on this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FailureClass {
    /// The provider already processed this exact request (Toss `ALREADY_PROCESSED_PAYMENT`):
    /// the payment succeeded earlier, show success.
    AlreadyProcessed,
    /// A soft issuer decline, insufficient funds among them (Toss `REJECT_CARD_COMPANY`).
    SoftDecline,
    /// The card is expired or stopped (`INVALID_CARD_EXPIRATION`, `INVALID_STOPPED_CARD`).
    CardUnusable,
    /// The billing key is expired, unknown or revoked.
    BillingKeyInvalid,
    /// Over the card's limit (`EXCEED_MAX_AMOUNT`).
    ExceedsLimit,
    /// The provider or the network between failed (`PROVIDER_ERROR`, 5xx): retry later.
    ProviderError,
    /// The request itself was wrong (`INVALID_REQUEST`): restart the payment.
    InvalidRequest,
    /// The provider does not know the payment (`NOT_FOUND_PAYMENT`).
    NotFound,
    /// A cancel asked for more than can be cancelled (`NOT_CANCELABLE_AMOUNT`).
    NotCancelable,
    /// A code payledger does not know: never guessed, sent to manual review.
    Unclassified,
}

impl FailureClass {
    /// The action suggested to whoever shows the failure (source document 1, §3).
    pub fn suggested_action(self) -> SuggestedAction {
        match self {
            FailureClass::AlreadyProcessed => SuggestedAction::ShowSuccess,
            FailureClass::SoftDecline | FailureClass::ExceedsLimit => {
                SuggestedAction::UseAnotherCard
            }
            FailureClass::CardUnusable | FailureClass::BillingKeyInvalid => {
                SuggestedAction::UpdatePaymentMethod
            }
            FailureClass::ProviderError => SuggestedAction::RetryLater,
            FailureClass::InvalidRequest | FailureClass::NotFound => {
                SuggestedAction::RestartPayment
            }
            FailureClass::NotCancelable | FailureClass::Unclassified => {
                SuggestedAction::ContactSupport
            }
        }
    }

    /// Whether repeating the same request later may succeed without anyone changing anything.
    pub fn is_retryable(self) -> bool {
        matches!(self, FailureClass::ProviderError)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SuggestedAction {
    ShowSuccess,
    RetryLater,
    UseAnotherCard,
    UpdatePaymentMethod,
    RestartPayment,
    ContactSupport,
}

/// A refusal as recorded in events: the class payledger decides on, plus the provider's own code
/// and message kept verbatim for support (never card data: adapters pass only the provider's
/// code and its human message).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderFailure {
    pub class: FailureClass,
    pub provider_code: String,
    pub provider_message: String,
}
