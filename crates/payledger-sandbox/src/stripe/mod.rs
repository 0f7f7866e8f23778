//! Stripe's API under the path prefix `/stripe`, so Stripe's official client libraries work
//! against the sandbox with their API base set to `http://SANDBOX/stripe`.
//!
//! PaymentIntents, charges, refunds, disputes, events and webhook endpoints, with Stripe's
//! request encoding (form, bracket notation), secret-key auth, `Idempotency-Key` semantics and
//! error objects, and signed webhooks (`Stripe-Signature`) for what happens at the provider.
//! The test inputs are in this crate's `README.md`.

mod cards;
mod form;
pub(crate) mod http;
mod store;
mod webhooks;

pub use webhooks::WebhookDeliveryRecord;

pub(crate) use store::{StripeLimits, StripeMovement, StripeMovementKind, StripeStore};
pub(crate) use webhooks::Deliverer;

/// The API version the sandbox's objects and events follow.
pub const API_VERSION: &str = "2024-06-20";

/// The Stripe secret key the sandbox accepts unless told otherwise (a test key by Stripe's
/// naming, `sk_test_`; worthless outside the sandbox).
pub const DEFAULT_STRIPE_SECRET_KEY: &str = "sk_test_sandbox";

/// The signing secret of the webhook endpoint configured with [`StripeSandboxConfig::webhook_url`]
/// unless told otherwise.
pub const DEFAULT_STRIPE_WEBHOOK_SECRET: &str = "whsec_sandbox";

/// How the sandbox's Stripe side runs.
#[derive(Clone)]
pub struct StripeSandboxConfig {
    /// Accepted as `Authorization: Bearer {key}` or `Basic base64({key}:)`.
    pub secret_key: String,
    /// Where Stripe events are sent from the start (every event type), if anywhere. More
    /// endpoints can be added over the API (`POST /stripe/v1/webhook_endpoints`).
    pub webhook_url: Option<String>,
    /// The configured endpoint's signing secret, used as raw UTF-8 bytes, as Stripe does.
    pub webhook_secret: String,
}

impl Default for StripeSandboxConfig {
    fn default() -> StripeSandboxConfig {
        StripeSandboxConfig {
            secret_key: DEFAULT_STRIPE_SECRET_KEY.to_owned(),
            webhook_url: None,
            webhook_secret: DEFAULT_STRIPE_WEBHOOK_SECRET.to_owned(),
        }
    }
}

impl std::fmt::Debug for StripeSandboxConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeSandboxConfig")
            .field("secret_key", &"***")
            .field("webhook_url", &self.webhook_url)
            .field("webhook_secret", &"***")
            .finish()
    }
}

/// One route's operation, with its path parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Operation {
    CreateIntent,
    RetrieveIntent(String),
    ConfirmIntent(String),
    CaptureIntent(String),
    CancelIntent(String),
    ListIntents,
    SearchIntents,
    RetrieveCharge(String),
    CreateRefund,
    RetrieveRefund(String),
    ListRefunds,
    RetrieveDispute(String),
    ListDisputes,
    UpdateDispute(String),
    CloseDispute(String),
    RetrieveEvent(String),
    CreateWebhookEndpoint,
    SandboxAuthenticate(String),
    SandboxDashboardRefund(String),
    SandboxOpenDispute(String),
    SandboxSettleRefund(String),
    SandboxStats,
}

impl Operation {
    /// Whether the operation moves money or changes state (a `POST`): only those honour
    /// `Idempotency-Key`, as at Stripe, where `GET`s are idempotent by definition.
    fn is_write(&self) -> bool {
        !matches!(
            self,
            Operation::RetrieveIntent(_)
                | Operation::ListIntents
                | Operation::SearchIntents
                | Operation::RetrieveCharge(_)
                | Operation::RetrieveRefund(_)
                | Operation::ListRefunds
                | Operation::RetrieveDispute(_)
                | Operation::ListDisputes
                | Operation::RetrieveEvent(_)
                | Operation::SandboxStats
        )
    }
}
