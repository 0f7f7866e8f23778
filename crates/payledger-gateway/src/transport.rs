//! What every connector's client is bounded by, whatever the provider: its timeouts, attempts,
//! backoff and breaker are checked against the same limits, and retries back off the same way.
//! Connectors build their clients from these with `provider_client::ProviderTransport`.

use crate::circuit::CircuitConfig;

/// Most attempts one call may make.
pub const MAX_ATTEMPTS_LIMIT: u32 = 10;
/// Longest timeout a connector may be configured with.
pub const MAX_TIMEOUT_MS: u64 = 120_000;
/// Longest backoff between two attempts.
pub const MAX_BACKOFF_MS: u64 = 60_000;

/// A connector's transport settings: how long it waits, how often it tries, how it backs off
/// and when its circuit opens. Every connector's configuration embeds one (its `transport`
/// field), and `provider_client::ProviderTransport::build` checks it against the limits above.
#[derive(Debug, Clone, Copy)]
pub struct TransportLimits {
    /// Time to open a connection; a connect failure is certain not to have reached the provider.
    pub connect_timeout_ms: u64,
    /// Whole-request timeout of calls that move money or change state (confirm, cancel,
    /// refunds, billing).
    pub timeout_ms: u64,
    /// Whole-request timeout of lookups.
    pub lookup_timeout_ms: u64,
    /// Attempts per call, the first included (1 disables retries).
    pub max_attempts: u32,
    /// Retry `n` sleeps a random time in `0..=min(backoff_max_ms, backoff_base_ms * 2^(n-1))`.
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    pub circuit: CircuitConfig,
}

impl TransportLimits {
    /// What every connector starts from, with `timeout_ms` for the calls that move money (each
    /// provider's own guidance): 3 s to connect, 5 s per lookup, 3 attempts backing off from
    /// 200 ms to 2 s, the default circuit.
    pub fn with_timeout_ms(timeout_ms: u64) -> TransportLimits {
        TransportLimits {
            connect_timeout_ms: 3_000,
            timeout_ms,
            lookup_timeout_ms: 5_000,
            max_attempts: 3,
            backoff_base_ms: 200,
            backoff_max_ms: 2_000,
            circuit: CircuitConfig::default(),
        }
    }

    /// Every value within its bounds, else the first one that is not, in words.
    pub fn check(&self) -> Result<(), String> {
        check_range(
            "connect_timeout_ms",
            self.connect_timeout_ms,
            1,
            MAX_TIMEOUT_MS,
        )?;
        check_range("timeout_ms", self.timeout_ms, 1, MAX_TIMEOUT_MS)?;
        check_range(
            "lookup_timeout_ms",
            self.lookup_timeout_ms,
            1,
            MAX_TIMEOUT_MS,
        )?;
        check_range(
            "max_attempts",
            u64::from(self.max_attempts),
            1,
            u64::from(MAX_ATTEMPTS_LIMIT),
        )?;
        check_range("backoff_base_ms", self.backoff_base_ms, 0, MAX_BACKOFF_MS)?;
        check_range("backoff_max_ms", self.backoff_max_ms, 0, MAX_BACKOFF_MS)?;
        check_range(
            "circuit.failure_threshold",
            u64::from(self.circuit.failure_threshold),
            1,
            1_000,
        )?;
        check_range("circuit.open_ms", self.circuit.open_ms, 0, 3_600_000)
    }
}

fn check_range(name: &str, value: u64, min: u64, max: u64) -> Result<(), String> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "{name} must be between {min} and {max}, got {value}"
        ))
    }
}

/// The exponential cap of retry `retry` (1 for the first retry); connectors sleep a uniformly
/// random time up to it (full jitter), so clients that failed together do not retry together.
pub fn backoff_cap_ms(retry: u32, base_ms: u64, max_ms: u64) -> u64 {
    let doublings = retry.saturating_sub(1).min(32);
    base_ms.saturating_mul(1_u64 << doublings).min(max_ms)
}

/// Why a provider's base URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BaseUrlError {
    #[error("{0}")]
    Invalid(String),
    /// A key must not cross the network in clear: plain `http://` only to this machine.
    #[error("plain http is allowed only to a loopback host")]
    Insecure,
}

/// A provider's API base URL, checked as every connector needs it: an http(s) URL that can take
/// path segments, plain `http://` only to loopback (the sandbox).
pub fn checked_base_url(text: &str) -> Result<reqwest::Url, BaseUrlError> {
    let base_url =
        reqwest::Url::parse(text).map_err(|err| BaseUrlError::Invalid(err.to_string()))?;
    if base_url.cannot_be_a_base() || !matches!(base_url.scheme(), "http" | "https") {
        return Err(BaseUrlError::Invalid(
            "expected an http(s) base URL".to_owned(),
        ));
    }
    if base_url.scheme() == "http" && !is_loopback_host(base_url.host_str()) {
        return Err(BaseUrlError::Insecure);
    }
    Ok(base_url)
}

/// The HTTP client builder every call to a provider starts from (callers add their timeouts):
/// it never follows a redirect, which would carry the provider's key somewhere payledger was
/// not told to send it, and it names payledger.
pub fn provider_client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("payledger/", env!("CARGO_PKG_VERSION")))
}

/// Whether a base URL's host is this machine: the one place plain `http://` is allowed.
pub fn is_loopback_host(host: Option<&str>) -> bool {
    match host {
        Some(host) if host.eq_ignore_ascii_case("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_http_s_and_plain_http_only_to_loopback() {
        assert!(checked_base_url("https://api.tosspayments.com").is_ok());
        assert!(checked_base_url("http://127.0.0.1:9000/stripe").is_ok());
        assert!(checked_base_url("http://localhost:9000").is_ok());
        assert_eq!(
            checked_base_url("http://api.example.com"),
            Err(BaseUrlError::Insecure)
        );
        assert!(matches!(
            checked_base_url("ftp://127.0.0.1"),
            Err(BaseUrlError::Invalid(_))
        ));
        assert!(matches!(
            checked_base_url("mailto:a@b"),
            Err(BaseUrlError::Invalid(_))
        ));
        assert!(matches!(
            checked_base_url("not a url"),
            Err(BaseUrlError::Invalid(_))
        ));
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        assert_eq!(backoff_cap_ms(1, 100, 1_000), 100);
        assert_eq!(backoff_cap_ms(2, 100, 1_000), 200);
        assert_eq!(backoff_cap_ms(3, 100, 1_000), 400);
        assert_eq!(backoff_cap_ms(5, 100, 1_000), 1_000);
        assert_eq!(backoff_cap_ms(u32::MAX, u64::MAX, 60_000), 60_000);
    }

    #[test]
    fn only_this_machine_is_loopback() {
        for host in ["localhost", "127.0.0.1", "127.8.9.10", "[::1]"] {
            assert!(is_loopback_host(Some(host)), "{host}");
        }
        for host in ["api.stripe.com", "10.0.0.1", "localhost.example"] {
            assert!(!is_loopback_host(Some(host)), "{host}");
        }
        assert!(!is_loopback_host(None));
    }

    #[test]
    fn a_value_out_of_bounds_is_named() {
        let limits = TransportLimits {
            connect_timeout_ms: 1_000,
            timeout_ms: 0,
            lookup_timeout_ms: 1_000,
            max_attempts: 3,
            backoff_base_ms: 100,
            backoff_max_ms: 1_000,
            circuit: CircuitConfig::default(),
        };
        assert_eq!(
            limits.check(),
            Err("timeout_ms must be between 1 and 120000, got 0".to_string())
        );
    }
}
