//! What every connector's client is bounded by, whatever the provider: its timeouts, attempts,
//! backoff and breaker are checked against the same limits, and retries back off the same way.
//! Connectors keep their own HTTP client and wire types; this is only the arithmetic they share.

use crate::circuit::CircuitConfig;

/// Most attempts one call may make.
pub const MAX_ATTEMPTS_LIMIT: u32 = 10;
/// Longest timeout a connector may be configured with.
pub const MAX_TIMEOUT_MS: u64 = 120_000;
/// Longest backoff between two attempts.
pub const MAX_BACKOFF_MS: u64 = 60_000;

/// A connector's transport settings, as the limits see them.
#[derive(Debug, Clone, Copy)]
pub struct TransportLimits {
    pub connect_timeout_ms: u64,
    pub timeout_ms: u64,
    pub lookup_timeout_ms: u64,
    pub max_attempts: u32,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    pub circuit: CircuitConfig,
}

impl TransportLimits {
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
