//! Which providers may send webhooks, with which secrets; where notifications go, signed with
//! which key; how retries are spaced. Read from the environment (`docs/operations.md` lists the
//! variables) and checked at startup, so a bad secret stops `serve` instead of the first webhook.

use payledger_webhooks::{
    Scheme, StandardWebhookKey, WebhookSecret, DEFAULT_TOLERANCE, MAX_TOLERANCE,
};
use std::collections::HashMap;
use std::time::Duration;

use crate::intake::IntakeLimits;
use crate::provider::Provider;

/// The largest webhook body accepted (Stripe's largest events are tens of KiB).
pub const MAX_WEBHOOK_BODY_BYTES: usize = 256 * 1024;
/// Outbound endpoints per deployment: each event is one outbox row per endpoint.
pub const MAX_ENDPOINTS: usize = 10;
pub const MAX_ENDPOINT_URL_BYTES: usize = 2048;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{variable}: {reason}")]
    Invalid {
        variable: &'static str,
        reason: String,
    },
}

/// How retries of inbound processing and outbound delivery are spaced: the Standard Webhooks
/// schedule ([`payledger_webhooks::next_attempt_delay`]: now, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h,
/// 10 h, then dead-letter), each delay divided by `delay_divisor`. Production uses 1; tests
/// shrink the schedule without changing its shape or the number of attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub delay_divisor: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { delay_divisor: 1 }
    }
}

impl RetryPolicy {
    /// The wait before the next attempt after `attempts_made` attempts; `None`: dead-letter.
    pub fn delay_after(&self, attempts_made: u32) -> Option<Duration> {
        payledger_webhooks::next_attempt_delay(attempts_made)
            .map(|delay| delay / self.delay_divisor.max(1))
    }

    /// The same for an inbound provider webhook: the quick retries, then hourly
    /// (`payledger_webhooks::next_inbound_attempt_delay`).
    pub fn inbound_delay_after(&self, attempts_made: u32) -> Option<Duration> {
        payledger_webhooks::next_inbound_attempt_delay(attempts_made)
            .map(|delay| delay / self.delay_divisor.max(1))
    }
}

/// Paddle's documented tolerance for a notification's signed timestamp.
pub const PADDLE_DEFAULT_TOLERANCE: Duration = Duration::from_secs(5);

/// Inbound verification settings.
#[derive(Debug, Clone)]
pub struct InboundConfig {
    /// Current secret first, then the previous one while a rotation is in progress.
    pub secrets: HashMap<Provider, Vec<WebhookSecret>>,
    pub tolerance: Duration,
    /// Paddle's notifications: Paddle documents a 5-second tolerance for its `ts`
    /// (`PAYLEDGER_WEBHOOK_TOLERANCE_PADDLE_S`).
    pub paddle_tolerance: Duration,
    /// Limits on unsigned (Toss payment-status) deliveries (`intake`).
    pub unsigned_limits: IntakeLimits,
}

impl Default for InboundConfig {
    fn default() -> Self {
        InboundConfig {
            secrets: HashMap::new(),
            tolerance: DEFAULT_TOLERANCE,
            paddle_tolerance: PADDLE_DEFAULT_TOLERANCE,
            unsigned_limits: IntakeLimits::default(),
        }
    }
}

impl InboundConfig {
    /// Adds a provider's secrets (current first), checking they can key its scheme.
    pub fn with_secrets(
        mut self,
        provider: Provider,
        secrets: Vec<WebhookSecret>,
    ) -> Result<Self, ConfigError> {
        let scheme = provider.signed_scheme();
        for secret in &secrets {
            secret
                .check_usable_for(scheme)
                .map_err(|e| ConfigError::Invalid {
                    variable: provider.secret_variable(),
                    reason: e.reason().to_string(),
                })?;
        }
        if secrets.len() > payledger_webhooks::MAX_SECRETS {
            return Err(ConfigError::Invalid {
                variable: provider.secret_variable(),
                reason: "at most two secrets (current and previous)".into(),
            });
        }
        self.secrets.insert(provider, secrets);
        Ok(self)
    }

    pub fn secrets_for(&self, provider: Provider) -> &[WebhookSecret] {
        self.secrets.get(&provider).map_or(&[], Vec::as_slice)
    }

    /// `PAYLEDGER_WEBHOOK_SECRET_{PROVIDER}` and `…_PREVIOUS` for each provider, and
    /// `PAYLEDGER_WEBHOOK_TOLERANCE_S`, as `settings` answers them (the binary's settings).
    pub fn from_settings(settings: &Lookup<'_>) -> Result<Self, ConfigError> {
        let env = |name: &str| setting(settings, name);
        let mut config = InboundConfig::default();
        if let Some(text) = env("PAYLEDGER_WEBHOOK_TOLERANCE_S") {
            let seconds: u64 = text.parse().map_err(|_| ConfigError::Invalid {
                variable: "PAYLEDGER_WEBHOOK_TOLERANCE_S",
                reason: "a whole number of seconds".into(),
            })?;
            let tolerance = Duration::from_secs(seconds);
            if tolerance > MAX_TOLERANCE || seconds == 0 {
                return Err(ConfigError::Invalid {
                    variable: "PAYLEDGER_WEBHOOK_TOLERANCE_S",
                    reason: format!("between 1 and {} seconds", MAX_TOLERANCE.as_secs()),
                });
            }
            config.tolerance = tolerance;
        }
        if let Some(text) = env("PAYLEDGER_WEBHOOK_TOLERANCE_PADDLE_S") {
            let seconds: u64 = text.parse().map_err(|_| ConfigError::Invalid {
                variable: "PAYLEDGER_WEBHOOK_TOLERANCE_PADDLE_S",
                reason: "a whole number of seconds".into(),
            })?;
            let tolerance = Duration::from_secs(seconds);
            if tolerance > MAX_TOLERANCE || seconds == 0 {
                return Err(ConfigError::Invalid {
                    variable: "PAYLEDGER_WEBHOOK_TOLERANCE_PADDLE_S",
                    reason: format!("between 1 and {} seconds", MAX_TOLERANCE.as_secs()),
                });
            }
            config.paddle_tolerance = tolerance;
        }
        for (variable, limit) in [
            (
                "PAYLEDGER_WEBHOOK_UNSIGNED_PER_SOURCE_PER_MINUTE",
                &mut config.unsigned_limits.per_source_per_minute,
            ),
            (
                "PAYLEDGER_WEBHOOK_UNSIGNED_TOTAL_PER_MINUTE",
                &mut config.unsigned_limits.total_per_minute,
            ),
        ] {
            if let Some(text) = env(variable) {
                *limit = text
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=1_000_000).contains(n))
                    .ok_or(ConfigError::Invalid {
                        variable,
                        reason: "a whole number between 1 and 1000000".into(),
                    })?;
            }
        }
        for provider in Provider::ALL {
            let mut secrets = Vec::new();
            if let Some(current) = env(provider.secret_variable()) {
                secrets.push(WebhookSecret::new(current));
            }
            if let Some(previous) = env(provider.previous_secret_variable()) {
                secrets.push(WebhookSecret::new(previous));
            }
            if !secrets.is_empty() {
                config = config.with_secrets(provider, secrets)?;
            }
        }
        Ok(config)
    }
}

/// Where notifications go and how they are signed.
#[derive(Clone, Default)]
pub struct OutboundConfig {
    /// `https://` URLs (`http://` to loopback only); every notification goes to each.
    pub endpoints: Vec<String>,
    /// Current key first; while rotating, the previous one too (both signatures are sent).
    pub keys: Vec<StandardWebhookKey>,
    /// One delivery attempt's limit (Standard Webhooks senders use about 15 s).
    pub timeout_ms: u64,
}

impl std::fmt::Debug for OutboundConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundConfig")
            .field("endpoints", &self.endpoints)
            .field("keys", &self.keys.len())
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

pub const DEFAULT_DELIVERY_TIMEOUT_MS: u64 = 15_000;

impl OutboundConfig {
    /// Endpoints and signing secrets (`whsec_…`, current first).
    pub fn new(endpoints: Vec<String>, secrets: &[WebhookSecret]) -> Result<Self, ConfigError> {
        if endpoints.len() > MAX_ENDPOINTS {
            return Err(ConfigError::Invalid {
                variable: "PAYLEDGER_WEBHOOK_ENDPOINTS",
                reason: format!("at most {MAX_ENDPOINTS} endpoints"),
            });
        }
        for url in &endpoints {
            if !endpoint_is_acceptable(url) {
                return Err(ConfigError::Invalid {
                    variable: "PAYLEDGER_WEBHOOK_ENDPOINTS",
                    reason: "each endpoint is an https:// URL without spaces (plain http:// only \
                        to this machine: localhost, 127.0.0.0/8, [::1])"
                        .into(),
                });
            }
        }
        let keys = secrets
            .iter()
            .map(|secret| {
                StandardWebhookKey::from_secret(secret).map_err(|e| ConfigError::Invalid {
                    variable: "PAYLEDGER_OUTBOUND_WEBHOOK_SECRET",
                    reason: e.reason().to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !endpoints.is_empty() && keys.is_empty() {
            return Err(ConfigError::Invalid {
                variable: "PAYLEDGER_OUTBOUND_WEBHOOK_SECRET",
                reason: "endpoints are configured, so a whsec_ signing secret is required".into(),
            });
        }
        Ok(OutboundConfig {
            endpoints,
            keys,
            timeout_ms: DEFAULT_DELIVERY_TIMEOUT_MS,
        })
    }

    /// `PAYLEDGER_WEBHOOK_ENDPOINTS` (URLs separated by commas or spaces),
    /// `PAYLEDGER_OUTBOUND_WEBHOOK_SECRET` and `PAYLEDGER_OUTBOUND_WEBHOOK_SECRET_PREVIOUS`.
    pub fn from_settings(settings: &Lookup<'_>) -> Result<Self, ConfigError> {
        let env = |name: &str| setting(settings, name);
        let endpoints = env("PAYLEDGER_WEBHOOK_ENDPOINTS")
            .map(|text| {
                text.split([',', ' ', '\n'])
                    .map(str::trim)
                    .filter(|url| !url.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let secrets: Vec<WebhookSecret> = [
            "PAYLEDGER_OUTBOUND_WEBHOOK_SECRET",
            "PAYLEDGER_OUTBOUND_WEBHOOK_SECRET_PREVIOUS",
        ]
        .into_iter()
        .filter_map(&env)
        .map(WebhookSecret::new)
        .collect();
        OutboundConfig::new(endpoints, &secrets)
    }
}

/// Notifications carry order ids, amounts and claim details: they go out over TLS, except to a
/// receiver on this machine (plain `http://` to a loopback host, for development and tests).
pub fn endpoint_is_acceptable(url: &str) -> bool {
    if url.len() > MAX_ENDPOINT_URL_BYTES
        || url.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return false;
    }
    if let Some(rest) = url.strip_prefix("https://") {
        return !rest.is_empty();
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return false;
    }
    let host = if let Some(bracketed) = authority.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or_default()
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// Everything the webhook relay needs, as `serve` configures it.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub inbound: InboundConfig,
    pub outbound: OutboundConfig,
    pub retry: RetryPolicy,
    /// How often the workers look for due work when idle.
    pub poll_interval_ms: u64,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            inbound: InboundConfig::default(),
            outbound: OutboundConfig {
                timeout_ms: DEFAULT_DELIVERY_TIMEOUT_MS,
                ..OutboundConfig::default()
            },
            retry: RetryPolicy::default(),
            poll_interval_ms: 1_000,
        }
    }
}

impl WebhookSettings {
    /// Both directions from the binary's settings (`settings` answers a setting by name).
    pub fn from_settings(settings: &Lookup<'_>) -> Result<Self, ConfigError> {
        Ok(WebhookSettings {
            inbound: InboundConfig::from_settings(settings)?,
            outbound: OutboundConfig::from_settings(settings)?,
            ..WebhookSettings::default()
        })
    }
}

/// How a library asks for a setting by name: the binary owns where settings come from
/// (defaults, a settings file, the environment), the library only what they mean.
pub type Lookup<'a> = dyn Fn(&str) -> Option<String> + 'a;

fn setting(settings: &Lookup<'_>, name: &str) -> Option<String> {
    settings(name).filter(|v| !v.trim().is_empty())
}

/// The scheme a provider's signed deliveries use.
impl Provider {
    pub fn signed_scheme(self) -> Scheme {
        match self {
            Provider::Toss => Scheme::TossSigned,
            Provider::Stripe => Scheme::Stripe,
            Provider::Paddle => Scheme::Paddle,
            Provider::Standard => Scheme::StandardWebhooks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retry_schedule_keeps_its_shape_and_length_when_shrunk() {
        let real = RetryPolicy::default();
        assert_eq!(real.delay_after(0), Some(Duration::ZERO));
        assert_eq!(real.delay_after(2), Some(Duration::from_secs(300)));
        assert_eq!(real.delay_after(8), None);
        let fast = RetryPolicy {
            delay_divisor: 1000,
        };
        assert_eq!(fast.delay_after(2), Some(Duration::from_millis(300)));
        assert_eq!(fast.delay_after(7), Some(Duration::from_secs(36)));
        assert_eq!(fast.delay_after(8), None);
    }

    #[test]
    fn inbound_webhooks_are_reprocessed_hourly_before_the_dead_letter_queue() {
        let real = RetryPolicy::default();
        assert_eq!(real.inbound_delay_after(1), Some(Duration::from_secs(5)));
        assert_eq!(
            real.inbound_delay_after(3),
            Some(Duration::from_secs(1_800))
        );
        for attempts in 4..payledger_webhooks::MAX_INBOUND_ATTEMPTS {
            assert_eq!(
                real.inbound_delay_after(attempts),
                Some(Duration::from_secs(3_600))
            );
        }
        assert_eq!(
            real.inbound_delay_after(payledger_webhooks::MAX_INBOUND_ATTEMPTS),
            None
        );
    }

    #[test]
    fn endpoints_need_a_signing_secret_and_a_web_url() {
        assert!(OutboundConfig::new(vec!["http://127.0.0.1:9/hook".into()], &[]).is_err());
        let secret = WebhookSecret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        assert!(OutboundConfig::new(
            vec!["ftp://example/hook".into()],
            std::slice::from_ref(&secret)
        )
        .is_err());
        let config =
            OutboundConfig::new(vec!["http://127.0.0.1:9/hook".into()], &[secret]).unwrap();
        assert_eq!(config.keys.len(), 1);
        assert!(!format!("{config:?}").contains("whsec_"));
    }

    #[test]
    fn notifications_go_out_over_tls_except_to_this_machine() {
        for good in [
            "https://hooks.example.com/payledger",
            "http://127.0.0.1:9/hook",
            "http://127.8.0.1/hook",
            "http://localhost:8080/hook",
            "http://[::1]:9/hook",
        ] {
            assert!(endpoint_is_acceptable(good), "{good}");
        }
        for bad in [
            "http://hooks.example.com/payledger",
            "http://10.0.0.5/hook",
            "http://127.0.0.1.evil.example/hook",
            "http://localhost.evil.example/hook",
            "http://127.0.0.1@evil.example/hook",
            "http://[::2]/hook",
            "ftp://example/hook",
            "https://",
            "https://a b",
        ] {
            assert!(!endpoint_is_acceptable(bad), "{bad}");
        }
        let secret = WebhookSecret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let error =
            OutboundConfig::new(vec!["http://hooks.example.com/x".into()], &[secret]).unwrap_err();
        assert!(error.to_string().contains("https://"), "{error}");
    }

    #[test]
    fn a_secret_the_scheme_cannot_use_is_refused_at_startup() {
        let not_base64 = WebhookSecret::new("whsec_***not-base64***");
        let error = InboundConfig::default()
            .with_secrets(Provider::Standard, vec![not_base64])
            .unwrap_err();
        assert!(error
            .to_string()
            .contains("PAYLEDGER_WEBHOOK_SECRET_STANDARD"));
        assert!(!error.to_string().contains("not-base64"));
    }
}
