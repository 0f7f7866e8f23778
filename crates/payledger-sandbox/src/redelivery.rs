//! Sending a webhook, and sending it again after an attempt that was not answered with a 2xx.
//!
//! Paddle's sandbox retries a notification three times over 15 minutes and Stripe's test mode
//! for days; here the caller is on the same machine, so the same shape is compressed to seconds:
//! a first attempt and three retries, 0.5 s, 1 s and 2 s apart. Long enough to ride out a moment
//! when the receiver is busy (a database pool momentarily exhausted on a loaded machine), short
//! enough that a test waiting for deliveries is not held for minutes.
//!
//! First attempts go out in the order events happened (tests read plainly that way); retries
//! run on their own tasks, so a destination that refuses does not hold up the notifications
//! behind it. Neither Paddle nor Stripe promises order, so a receiver must cope either way.

use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Attempts per notification and destination: the first and three retries.
pub(crate) const MAX_DELIVERY_ATTEMPTS: u32 = 4;
const FIRST_RETRY_DELAY_MS: u64 = 500;
/// Notifications being retried at once; beyond this a retry runs in line, slowing the queue
/// rather than growing without bound.
pub(crate) const MAX_CONCURRENT_RETRIES: usize = 64;

/// What happened to one notification sent to one destination.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub attempts: u32,
    /// The destination's last HTTP status, if it answered.
    pub last_status: Option<u16>,
    /// Why the last attempt got no answer (connection refused, timed out), when it got none.
    pub last_error: Option<String>,
    /// Whether it answered 2xx.
    pub delivered: bool,
}

/// What happened to one notification sent to one destination, as the sandboxes list it
/// (`RunningSandbox::paddle_deliveries`, `stripe_deliveries`, and their HTTP views).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryRecord {
    pub event_id: String,
    pub event_type: String,
    pub url: String,
    pub attempts: u32,
    /// The destination's last HTTP status, if it answered.
    pub last_status: Option<u16>,
    /// Why the last attempt got no answer (connection refused, timed out), when it got none.
    pub last_error: Option<String>,
    /// Whether it answered 2xx.
    pub delivered: bool,
}

impl DeliveryRecord {
    pub(crate) fn new(event_id: String, event_type: String, url: String, outcome: Outcome) -> Self {
        DeliveryRecord {
            event_id,
            event_type,
            url,
            attempts: outcome.attempts,
            last_status: outcome.last_status,
            last_error: outcome.last_error,
            delivered: outcome.delivered,
        }
    }

    /// A notification never attempted: the sandbox's queue for its destination was full.
    pub(crate) fn queue_full(event_id: String, event_type: String, url: String) -> Self {
        let outcome = Outcome {
            last_error: Some("the sandbox's delivery queue was full".to_owned()),
            ..Outcome::default()
        };
        DeliveryRecord::new(event_id, event_type, url, outcome)
    }
}

/// How long to wait before attempt `attempts_made + 1`, after `attempts_made` failed ones.
pub(crate) fn retry_delay(attempts_made: u32) -> Duration {
    let doublings = attempts_made.saturating_sub(1).min(6);
    Duration::from_millis(FIRST_RETRY_DELAY_MS << doublings)
}

/// Sends a notification once and, if that is not answered with a 2xx, up to
/// [`MAX_DELIVERY_ATTEMPTS`] times in all; `finished` gets the outcome. `request` builds the
/// signed request afresh for each attempt, so each signature carries its own time.
pub(crate) async fn deliver<R, F>(request: R, retries: &Arc<Semaphore>, finished: F)
where
    R: Fn() -> reqwest::RequestBuilder + Send + Sync + 'static,
    F: FnOnce(Outcome) + Send + 'static,
{
    let mut outcome = Outcome::default();
    attempt(&mut outcome, request()).await;
    if outcome.delivered {
        finished(outcome);
        return;
    }
    match retries.clone().try_acquire_owned() {
        Ok(permit) => {
            tokio::spawn(async move {
                retry(&mut outcome, &request).await;
                drop(permit);
                finished(outcome);
            });
        }
        Err(_) => {
            retry(&mut outcome, &request).await;
            finished(outcome);
        }
    }
}

async fn retry(
    outcome: &mut Outcome,
    request: &(impl Fn() -> reqwest::RequestBuilder + Send + Sync + 'static),
) {
    while outcome.attempts < MAX_DELIVERY_ATTEMPTS && !outcome.delivered {
        tokio::time::sleep(retry_delay(outcome.attempts)).await;
        attempt(outcome, request()).await;
    }
}

async fn attempt(outcome: &mut Outcome, request: reqwest::RequestBuilder) {
    outcome.attempts += 1;
    match request.send().await {
        Ok(response) => {
            outcome.last_status = Some(response.status().as_u16());
            outcome.last_error = None;
            outcome.delivered = response.status().is_success();
        }
        Err(err) => {
            let err = err.without_url();
            tracing::debug!(error = %err, attempt = outcome.attempts, "sandbox webhook attempt got no answer");
            outcome.last_status = None;
            outcome.last_error = Some(err.to_string());
        }
    }
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
