//! Paddle Billing's API under the path prefix `/paddle`, so Paddle's official SDKs work against
//! the sandbox with their base URL set to `http://SANDBOX/paddle`.
//!
//! Paddle is a merchant of record that runs the subscription itself: the sandbox keeps prices,
//! customers, transactions, subscriptions and adjustments in Paddle's shapes (`{data, meta}`
//! envelopes, `txn_`/`sub_`/`ctm_`/`pri_`/`pro_`/`adj_` ids, amounts as strings of minor units),
//! bills each cycle when a test advances a subscription, and sends signed webhooks
//! (`Paddle-Signature: ts=…;h1=…`) for everything that happens. The controls under
//! `/paddle/sandbox` stand for what happens at Paddle without payledger asking (a checkout, a
//! renewal, a failed renewal, a chargeback, a refund approved by Paddle). The test inputs are in
//! this crate's `README.md`.

pub(crate) mod http;
mod store;
mod webhooks;

pub use webhooks::{signature_header as paddle_signature_header, PaddleDeliveryRecord};

pub(crate) use store::PaddleStore;
pub(crate) use webhooks::PaddleDeliverer;

/// The API key the sandbox accepts unless told otherwise (a sandbox key by Paddle's naming,
/// `pdl_sdbx_apikey_`; worthless outside the sandbox).
pub const DEFAULT_PADDLE_API_KEY: &str = "pdl_sdbx_apikey_sandbox";

/// The secret the sandbox signs webhooks with unless told otherwise (Paddle's endpoint secret
/// keys start `pdl_ntfset_`).
pub const DEFAULT_PADDLE_WEBHOOK_SECRET: &str = "pdl_ntfset_sandbox_secret";

/// The catalogue every sandbox starts with (more over `POST /paddle/prices`).
pub const SANDBOX_PRICE_BASIC_MONTHLY: &str = "pri_sandbox_basic_monthly";
pub const SANDBOX_PRICE_PRO_MONTHLY: &str = "pri_sandbox_pro_monthly";
pub const SANDBOX_PRICE_CREDITS_100: &str = "pri_sandbox_credits_100";
pub const SANDBOX_PRODUCT_MEMBERSHIP: &str = "pro_sandbox_membership";
pub const SANDBOX_PRODUCT_CREDITS: &str = "pro_sandbox_credits";

/// The test card a sandbox checkout or renewal declines. Cards are named by tokens, as Stripe's
/// `pm_card_*` are, so no card number ever crosses the sandbox's API (Paddle's own checkout
/// collects the card in its page; payledger never sees it).
pub const SANDBOX_DECLINE_CARD: &str = "card_declined";
/// The test card a sandbox checkout or renewal approves (the default).
pub const SANDBOX_APPROVE_CARD: &str = "card_visa";

/// How the sandbox's Paddle side runs.
#[derive(Clone)]
pub struct PaddleSandboxConfig {
    /// Accepted as `Authorization: Bearer {key}`.
    pub api_key: String,
    /// Where Paddle's notifications are sent from the start, if anywhere.
    pub webhook_url: Option<String>,
    /// The notification destination's secret key, used as UTF-8 text as Paddle does.
    pub webhook_secret: String,
}

impl Default for PaddleSandboxConfig {
    fn default() -> PaddleSandboxConfig {
        PaddleSandboxConfig {
            api_key: DEFAULT_PADDLE_API_KEY.to_owned(),
            webhook_url: None,
            webhook_secret: DEFAULT_PADDLE_WEBHOOK_SECRET.to_owned(),
        }
    }
}

impl std::fmt::Debug for PaddleSandboxConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaddleSandboxConfig")
            .field("api_key", &"***")
            .field("webhook_url", &self.webhook_url)
            .field("webhook_secret", &"***")
            .finish()
    }
}
