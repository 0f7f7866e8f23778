//! How a sandbox payment ends: the documented test inputs.
//!
//! A confirm reads its behaviour from the `paymentKey`, a billing key from the `authKey` it was
//! issued with (and `POST /sandbox/billing-keys/{billingKey}/behaviour` can change it later), so
//! a test chooses the outcome by choosing an input, with no shared switch to reset.

use serde::{Deserialize, Serialize};

/// The longest delay a `sandbox_slow_{ms}_` input may ask for; larger values are capped here so a
/// typo cannot park a worker for minutes.
pub const MAX_SLOW_DELAY_MS: u64 = 10_000;

/// The most failures a `sandbox_flaky_{n}_` input may ask for before approving.
pub const MAX_FLAKY_FAILURES: u32 = 100;

/// What happens to a confirm or a billing charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "behaviour",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum Behaviour {
    /// Approve (the default for any input without a `sandbox_` prefix).
    Approve,
    /// 403 `REJECT_CARD_COMPANY`: the issuer declined.
    Decline,
    /// 403 `REJECT_CARD_COMPANY` with an insufficient-funds message, as Toss reports it.
    InsufficientFunds,
    /// 400 `INVALID_CARD_EXPIRATION`.
    Expired,
    /// 400 `INVALID_STOPPED_CARD`.
    Stopped,
    /// 400 `EXCEED_MAX_AMOUNT`.
    ExceedLimit,
    /// 400 `PROVIDER_ERROR` on every attempt (Toss answers this code with 400, not 5xx).
    ProviderError,
    /// 400 `PROVIDER_ERROR` for the first `failures` attempts of one payment, then approve.
    Flaky { failures: u32 },
    /// The charge is recorded, then the answer is held back for the configured delay (30 s by
    /// default), far beyond any client timeout.
    TimeoutAfterCharge,
    /// The charge is recorded, then the answer comes after `delay_ms` (capped at
    /// [`MAX_SLOW_DELAY_MS`]).
    Slow { delay_ms: u64 },
    /// 400 with a code no payledger table knows (`SANDBOX_UNKNOWN_CODE`).
    UnknownCode,
    /// Billing keys only: 400 `INVALID_BILL_KEY_REQUEST`, as for a revoked or expired key.
    BillingKeyInvalid,
    /// Confirms only (`sandbox_virtual_account_{minutes}_…`): a virtual-account payment that
    /// waits for a deposit (`WAITING_FOR_DEPOSIT`, nothing charged) and becomes `EXPIRED` when
    /// `valid_minutes` have passed on the sandbox's clock (the scenario clock when embedded).
    AwaitDeposit { valid_minutes: u64 },
}

/// The longest deposit window a `sandbox_virtual_account_{minutes}_` input may ask for (7 days,
/// Toss's own longest `validHours` is 720 h; a week is enough for any scenario).
pub const MAX_DEPOSIT_WINDOW_MINUTES: u64 = 7 * 24 * 60;

/// A `sandbox_` prefix that names no behaviour, or a malformed count. The sandbox refuses these
/// loudly rather than approving, so a misspelt test input cannot pass by accident.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown or malformed sandbox test input: {0}")]
pub struct UnknownTestInput(pub String);

impl Behaviour {
    /// Reads the behaviour a `paymentKey` or `authKey` asks for.
    pub fn from_test_input(input: &str) -> Result<Behaviour, UnknownTestInput> {
        let Some(rest) = input.strip_prefix("sandbox_") else {
            return Ok(Behaviour::Approve);
        };
        let fixed = [
            ("decline_", Behaviour::Decline),
            ("insufficient_", Behaviour::InsufficientFunds),
            ("expired_", Behaviour::Expired),
            ("stopped_", Behaviour::Stopped),
            ("limit_", Behaviour::ExceedLimit),
            ("provider_error_", Behaviour::ProviderError),
            ("timeout_after_charge_", Behaviour::TimeoutAfterCharge),
            ("unknown_code_", Behaviour::UnknownCode),
            ("revoked_", Behaviour::BillingKeyInvalid),
            ("approve_", Behaviour::Approve),
        ];
        if let Some((_, behaviour)) = fixed.iter().find(|(prefix, _)| rest.starts_with(prefix)) {
            return Ok(*behaviour);
        }
        if let Some(count) = rest.strip_prefix("flaky_") {
            let failures = leading_number(count, input)?;
            let failures = u32::try_from(failures.min(u64::from(MAX_FLAKY_FAILURES)))
                .map_err(|_| UnknownTestInput(shorten(input)))?;
            return Ok(Behaviour::Flaky { failures });
        }
        if let Some(minutes) = rest.strip_prefix("virtual_account_") {
            let valid_minutes =
                leading_number(minutes, input)?.clamp(1, MAX_DEPOSIT_WINDOW_MINUTES);
            return Ok(Behaviour::AwaitDeposit { valid_minutes });
        }
        if let Some(delay) = rest.strip_prefix("slow_") {
            let delay_ms = leading_number(delay, input)?.min(MAX_SLOW_DELAY_MS);
            return Ok(Behaviour::Slow { delay_ms });
        }
        Err(UnknownTestInput(shorten(input)))
    }

    /// Caps the numbers a behaviour set over HTTP may carry, like the prefixes do.
    pub fn bounded(self) -> Behaviour {
        match self {
            Behaviour::Flaky { failures } => Behaviour::Flaky {
                failures: failures.min(MAX_FLAKY_FAILURES),
            },
            Behaviour::Slow { delay_ms } => Behaviour::Slow {
                delay_ms: delay_ms.min(MAX_SLOW_DELAY_MS),
            },
            Behaviour::AwaitDeposit { valid_minutes } => Behaviour::AwaitDeposit {
                valid_minutes: valid_minutes.clamp(1, MAX_DEPOSIT_WINDOW_MINUTES),
            },
            other => other,
        }
    }
}

/// `"3_rest"` → 3: the digits up to the next `_`, which must be there.
fn leading_number(text: &str, input: &str) -> Result<u64, UnknownTestInput> {
    let (digits, _) = text
        .split_once('_')
        .ok_or_else(|| UnknownTestInput(shorten(input)))?;
    if digits.is_empty() || digits.len() > 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UnknownTestInput(shorten(input)));
    }
    digits.parse().map_err(|_| UnknownTestInput(shorten(input)))
}

/// Error messages echo at most this much of an input.
fn shorten(input: &str) -> String {
    input.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_without_the_sandbox_prefix_approve() {
        assert_eq!(Behaviour::from_test_input("pk_123"), Ok(Behaviour::Approve));
        assert_eq!(Behaviour::from_test_input(""), Ok(Behaviour::Approve));
        assert_eq!(
            Behaviour::from_test_input("decline_x"),
            Ok(Behaviour::Approve)
        );
    }

    #[test]
    fn each_documented_prefix_selects_its_behaviour() {
        let cases = [
            ("sandbox_decline_1", Behaviour::Decline),
            ("sandbox_insufficient_1", Behaviour::InsufficientFunds),
            ("sandbox_expired_1", Behaviour::Expired),
            ("sandbox_stopped_1", Behaviour::Stopped),
            ("sandbox_limit_1", Behaviour::ExceedLimit),
            ("sandbox_provider_error_1", Behaviour::ProviderError),
            ("sandbox_flaky_3_a", Behaviour::Flaky { failures: 3 }),
            (
                "sandbox_timeout_after_charge_1",
                Behaviour::TimeoutAfterCharge,
            ),
            ("sandbox_slow_250_x", Behaviour::Slow { delay_ms: 250 }),
            ("sandbox_unknown_code_1", Behaviour::UnknownCode),
            ("sandbox_revoked_1", Behaviour::BillingKeyInvalid),
            ("sandbox_approve_1", Behaviour::Approve),
        ];
        for (input, expected) in cases {
            assert_eq!(Behaviour::from_test_input(input), Ok(expected), "{input}");
        }
    }

    #[test]
    fn numbers_are_capped() {
        assert_eq!(
            Behaviour::from_test_input("sandbox_slow_999999_x"),
            Ok(Behaviour::Slow {
                delay_ms: MAX_SLOW_DELAY_MS
            })
        );
        assert_eq!(
            Behaviour::from_test_input("sandbox_flaky_5000_x"),
            Ok(Behaviour::Flaky {
                failures: MAX_FLAKY_FAILURES
            })
        );
        assert_eq!(
            Behaviour::Slow { delay_ms: u64::MAX }.bounded(),
            Behaviour::Slow {
                delay_ms: MAX_SLOW_DELAY_MS
            }
        );
    }

    #[test]
    fn misspelt_or_malformed_inputs_are_refused() {
        for input in [
            "sandbox_declined_1",
            "sandbox_flaky_x_1",
            "sandbox_flaky_3",
            "sandbox_slow__1",
            "sandbox_slow_-5_1",
            "sandbox_",
        ] {
            assert!(Behaviour::from_test_input(input).is_err(), "{input}");
        }
    }

    #[test]
    fn behaviours_have_a_stable_json_shape() {
        let json = serde_json::to_value(Behaviour::Slow { delay_ms: 5 }).unwrap();
        assert_eq!(json, serde_json::json!({"behaviour": "slow", "delayMs": 5}));
        let parsed: Behaviour =
            serde_json::from_value(serde_json::json!({"behaviour": "insufficient_funds"})).unwrap();
        assert_eq!(parsed, Behaviour::InsufficientFunds);
        let flaky: Behaviour =
            serde_json::from_value(serde_json::json!({"behaviour": "flaky", "failures": 2}))
                .unwrap();
        assert_eq!(flaky, Behaviour::Flaky { failures: 2 });
    }
}
