//! How a billing failure answers: one row of the error table each.

use crate::errors::{ApiError, ErrorCode};
use payledger_app::subscriptions::BillingError;
use payledger_domain::customer::CustomerError;
use payledger_domain::subscription::SubscriptionError;
use payledger_domain::wallet::WalletError;

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
