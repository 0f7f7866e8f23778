//! Bounds on the one webhook route nobody signs: Toss payment-status events.
//!
//! Anyone can post to `POST /v1/webhooks/toss` without a signature, so what such a delivery may
//! cost is bounded here (issue 14, items 2 and 3):
//! - **only what identifies the re-fetch is kept**: the stored body is `{"paymentKey": …}` or
//!   `{"orderId": …}`, nothing else of what was posted (`refetch_body`);
//! - **repeats collapse**: while a re-fetch of a payment waits unclaimed in the inbox, another
//!   prompt for it is answered `duplicate` and stores nothing (`refetch_prefix`);
//! - **per source and in total**, a fixed-window count per minute ([`IntakeLimiter`]) answers
//!   429 beyond the limits; the window state is bounded too;
//! - **no unsigned header decides anything**: the delivery's event id is derived from the payment
//!   to re-fetch and a generation number, never from `tosspayments-webhook-transmission-id`, so
//!   a forged delivery sent first cannot make the genuine one a duplicate. What is applied is the
//!   re-fetched payment's state, through the same idempotent reconciliation as the scheduler's.
//! - the worker's re-fetches go through their own gateway with their own circuit breaker
//!   (`InboundWorker::with_lookup_gateway`), so intake traffic never opens the circuit that real
//!   payments use.

use crate::toss::RefetchKey;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;

/// Unsigned deliveries accepted per source address per minute, by default.
pub const DEFAULT_UNSIGNED_PER_SOURCE_PER_MINUTE: u32 = 120;
/// Unsigned deliveries accepted per minute from everyone together, by default.
pub const DEFAULT_UNSIGNED_TOTAL_PER_MINUTE: u32 = 1_200;
/// Sources remembered in one window; past it, new sources share one bucket.
const MAX_TRACKED_SOURCES: usize = 10_000;
const WINDOW_MS: u64 = 60_000;

/// The limits, from `PAYLEDGER_WEBHOOK_UNSIGNED_PER_SOURCE_PER_MINUTE` and
/// `PAYLEDGER_WEBHOOK_UNSIGNED_TOTAL_PER_MINUTE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntakeLimits {
    pub per_source_per_minute: u32,
    pub total_per_minute: u32,
}

impl Default for IntakeLimits {
    fn default() -> Self {
        IntakeLimits {
            per_source_per_minute: DEFAULT_UNSIGNED_PER_SOURCE_PER_MINUTE,
            total_per_minute: DEFAULT_UNSIGNED_TOTAL_PER_MINUTE,
        }
    }
}

/// Which limit a delivery hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitHit {
    PerSource,
    Total,
}

/// Fixed one-minute windows: simple, bounded, and enough to stop a flood.
#[derive(Debug, Default)]
pub struct IntakeLimiter {
    state: Mutex<Window>,
}

#[derive(Debug, Default)]
struct Window {
    started_ms: u64,
    total: u32,
    per_source: HashMap<String, u32>,
}

impl IntakeLimiter {
    /// Counts one delivery from `source` at `now_ms` (milliseconds on any monotonic scale) and
    /// says whether it is over a limit. A refused delivery is not counted.
    pub fn admit(
        &self,
        limits: IntakeLimits,
        source: Option<&str>,
        now_ms: u64,
    ) -> Result<(), LimitHit> {
        let Ok(mut window) = self.state.lock() else {
            return Ok(());
        };
        if now_ms.saturating_sub(window.started_ms) >= WINDOW_MS {
            *window = Window {
                started_ms: now_ms,
                ..Window::default()
            };
        }
        if window.total >= limits.total_per_minute {
            return Err(LimitHit::Total);
        }
        let source = source.unwrap_or("unknown");
        let key = if window.per_source.len() >= MAX_TRACKED_SOURCES
            && !window.per_source.contains_key(source)
        {
            "(overflow)".to_string()
        } else {
            source.chars().take(64).collect()
        };
        let count = window.per_source.entry(key).or_insert(0);
        if *count >= limits.per_source_per_minute {
            return Err(LimitHit::PerSource);
        }
        *count += 1;
        window.total += 1;
        Ok(())
    }
}

/// The body stored for an unsigned Toss delivery: only the key to re-fetch by.
pub fn refetch_body(key: &RefetchKey) -> Vec<u8> {
    let body = match key {
        RefetchKey::PaymentKey(payment_key) => serde_json::json!({ "paymentKey": payment_key }),
        RefetchKey::OrderId(order_id) => serde_json::json!({ "orderId": order_id }),
    };
    body.to_string().into_bytes()
}

/// `refetch-<24 hex>`: the event ids of re-fetches of one payment share it; each delivery adds
/// `-<generation>`.
pub fn refetch_prefix(key: &RefetchKey) -> String {
    let text = match key {
        RefetchKey::PaymentKey(payment_key) => format!("paymentKey:{payment_key}"),
        RefetchKey::OrderId(order_id) => format!("orderId:{order_id}"),
    };
    let digest = hex::encode(Sha256::digest(text.as_bytes()));
    format!("refetch-{}", &digest[..24])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_over_its_limit_is_refused_and_others_still_pass_until_the_total() {
        let limiter = IntakeLimiter::default();
        let limits = IntakeLimits {
            per_source_per_minute: 3,
            total_per_minute: 5,
        };
        for _ in 0..3 {
            assert_eq!(limiter.admit(limits, Some("10.0.0.1"), 1_000), Ok(()));
        }
        assert_eq!(
            limiter.admit(limits, Some("10.0.0.1"), 1_001),
            Err(LimitHit::PerSource)
        );
        assert_eq!(limiter.admit(limits, Some("10.0.0.2"), 1_002), Ok(()));
        assert_eq!(limiter.admit(limits, Some("10.0.0.3"), 1_003), Ok(()));
        assert_eq!(
            limiter.admit(limits, Some("10.0.0.4"), 1_004),
            Err(LimitHit::Total)
        );
        // A new minute, a new window.
        assert_eq!(limiter.admit(limits, Some("10.0.0.1"), 61_000), Ok(()));
    }

    #[test]
    fn only_the_refetch_key_is_kept_and_it_names_the_payment_not_the_header() {
        let key = RefetchKey::PaymentKey("pk_1".into());
        assert_eq!(refetch_body(&key), br#"{"paymentKey":"pk_1"}"#.to_vec());
        assert_eq!(
            refetch_prefix(&key),
            refetch_prefix(&RefetchKey::PaymentKey("pk_1".into()))
        );
        assert_ne!(
            refetch_prefix(&key),
            refetch_prefix(&RefetchKey::OrderId("pk_1".into()))
        );
        assert!(crate::provider::usable_event_id(&format!(
            "{}-1",
            refetch_prefix(&key)
        )));
    }
}
