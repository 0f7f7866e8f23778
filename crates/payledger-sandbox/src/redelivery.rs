//! When the sandbox sends a webhook again after an attempt that was not answered with a 2xx.
//!
//! Paddle's sandbox retries a notification three times over 15 minutes and Stripe's test mode
//! for days; here the caller is on the same machine, so the same shape is compressed to seconds:
//! a first attempt and three retries, 0.5 s, 1 s and 2 s apart. Long enough to ride out a moment
//! when the receiver is busy (a database pool momentarily exhausted on a loaded machine), short
//! enough that a test waiting for deliveries is not held for minutes.

use std::time::Duration;

/// Attempts per notification and destination: the first and three retries.
pub(crate) const MAX_DELIVERY_ATTEMPTS: u32 = 4;
const FIRST_RETRY_DELAY_MS: u64 = 500;

/// How long to wait before attempt `attempts_made + 1`, after `attempts_made` failed ones.
pub(crate) fn retry_delay(attempts_made: u32) -> Duration {
    let doublings = attempts_made.saturating_sub(1).min(6);
    Duration::from_millis(FIRST_RETRY_DELAY_MS << doublings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_half_a_second_then_double() {
        assert_eq!(retry_delay(1), Duration::from_millis(500));
        assert_eq!(retry_delay(2), Duration::from_millis(1_000));
        assert_eq!(retry_delay(3), Duration::from_millis(2_000));
        let total_ms: u128 = (1..MAX_DELIVERY_ATTEMPTS)
            .map(|n| retry_delay(n).as_millis())
            .sum();
        assert_eq!(
            total_ms, 3_500,
            "a test waiting 30 s for deliveries outlasts every retry"
        );
    }
}
