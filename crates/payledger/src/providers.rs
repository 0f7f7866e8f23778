//! Which payment providers this deployment talks to, and how they are read from the
//! environment. Below `startup` and every job that builds a connector of its own (billing,
//! reconcile, operations), so none of them reaches back into `startup`.

use payledger_connector_toss::TossSecretKey;
use payledger_sandbox::RunningSandbox;

/// Which payment provider payledger talks to.
#[derive(Debug, Clone)]
pub enum ProviderSettings {
    /// Start the sandbox in-process (the default: no keys, no network).
    EmbeddedSandbox,
    /// A sandbox or Toss-compatible API already running at this URL, with the sandbox key.
    Sandbox { base_url: String },
    /// Toss Payments with a real secret key.
    Toss {
        base_url: String,
        secret_key: TossSecretKey,
    },
}

impl ProviderSettings {
    /// `test` against a sandbox or with a Toss test key (`test_sk_…`), else `live`.
    pub fn mode(&self) -> &'static str {
        match self {
            ProviderSettings::EmbeddedSandbox | ProviderSettings::Sandbox { .. } => "test",
            ProviderSettings::Toss { secret_key, .. }
                if secret_key.expose().starts_with("test_") =>
            {
                "test"
            }
            ProviderSettings::Toss { .. } => "live",
        }
    }

    /// The sandbox's base URL when the connectors run against one.
    pub fn sandbox_base_url<'a>(&'a self, embedded: Option<&'a RunningSandbox>) -> Option<String> {
        match self {
            ProviderSettings::EmbeddedSandbox => embedded.map(|s| s.base_url()),
            ProviderSettings::Sandbox { base_url } => Some(base_url.clone()),
            ProviderSettings::Toss { .. } => None,
        }
    }
}

impl ProviderSettings {
    /// Keys that move real money: Toss's live keys (anything but a `test_` key). A scenario
    /// clock must never drive them.
    pub fn has_live_keys(&self) -> bool {
        match self {
            ProviderSettings::EmbeddedSandbox | ProviderSettings::Sandbox { .. } => false,
            ProviderSettings::Toss { secret_key, .. } => !secret_key.expose().starts_with("test_"),
        }
    }
}

impl ProviderSettings {
    /// Stripe from the environment: `STRIPE_SECRET_KEY` (`sk_live_…` / `sk_test_…`, never
    /// logged) and optionally `STRIPE_API_BASE` (default `https://api.stripe.com`).
    pub fn stripe_from_env() -> Option<payledger_connector_stripe::StripeConfig> {
        let secret = crate::settings::var("STRIPE_SECRET_KEY").ok()?;
        let base_url = crate::settings::var("STRIPE_API_BASE")
            .unwrap_or_else(|_| payledger_connector_stripe::STRIPE_API_BASE_URL.to_string());
        Some(payledger_connector_stripe::StripeConfig::new(
            base_url,
            payledger_connector_stripe::StripeSecretKey::new(secret),
        ))
    }

    /// Paddle Billing from the environment: `PADDLE_API_KEY` (never logged) and optionally
    /// `PADDLE_API_BASE_URL` (default `https://api.paddle.com`; Paddle's own test environment is
    /// `https://sandbox-api.paddle.com`).
    pub fn paddle_from_env() -> Option<payledger_connector_paddle::PaddleConfig> {
        let key = crate::settings::var("PADDLE_API_KEY").ok()?;
        let base_url = crate::settings::var("PADDLE_API_BASE_URL")
            .unwrap_or_else(|_| payledger_connector_paddle::PADDLE_API_BASE_URL.to_string());
        Some(payledger_connector_paddle::PaddleConfig::new(
            base_url,
            payledger_connector_paddle::PaddleApiKey::new(key),
        ))
    }

    /// Reads the provider from the environment: `TOSS_SECRET_KEY` (and optionally
    /// `TOSS_API_BASE`) selects Toss; `PAYLEDGER_SANDBOX_URL` an external sandbox; else embedded.
    pub fn from_env() -> ProviderSettings {
        if let Ok(secret) = crate::settings::var("TOSS_SECRET_KEY") {
            let base_url = crate::settings::var("TOSS_API_BASE")
                .unwrap_or_else(|_| "https://api.tosspayments.com".to_string());
            return ProviderSettings::Toss {
                base_url,
                secret_key: TossSecretKey::new(secret),
            };
        }
        if let Ok(base_url) = crate::settings::var("PAYLEDGER_SANDBOX_URL") {
            return ProviderSettings::Sandbox { base_url };
        }
        ProviderSettings::EmbeddedSandbox
    }
}
