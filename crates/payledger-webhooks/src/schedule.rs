//! When an outbound notification is retried, as data (the Standard Webhooks retry schedule).

use std::time::Duration;

/// Delay before each delivery attempt, counted from the failure of the previous one:
/// immediately, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h, about 27.6 hours in all
/// (standardwebhooks.com, "Retry schedule"). A message that fails all eight attempts goes to the
/// dead-letter queue, from which an admin can replay it.
pub const RETRY_SCHEDULE: [Duration; 8] = [
    Duration::ZERO,
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 60 * 60),
    Duration::from_secs(5 * 60 * 60),
    Duration::from_secs(10 * 60 * 60),
    Duration::from_secs(10 * 60 * 60),
];

/// Attempts made before a message is dead-lettered.
pub const MAX_DELIVERY_ATTEMPTS: u32 = RETRY_SCHEDULE.len() as u32;

/// How long to wait before the next attempt, given how many attempts have already been made
/// (0 for a new message). `None` once all [`MAX_DELIVERY_ATTEMPTS`] have failed: dead-letter it.
pub fn next_attempt_delay(attempts_made: u32) -> Option<Duration> {
    let index = usize::try_from(attempts_made).ok()?;
    RETRY_SCHEDULE.get(index).copied()
}

/// Inbound provider webhooks (source document 1, §4.1 and §6.1's hourly recovery job): the first
/// four attempts as above (now, 5 s, 5 min, 30 min), then one reprocessing **every hour** for
/// [`INBOUND_HOURLY_RETRIES`] hours before the delivery is dead-lettered (about 20.6 hours in all).
pub const INBOUND_QUICK_ATTEMPTS: u32 = 4;
/// Hourly reprocessing attempts after the quick ones.
pub const INBOUND_HOURLY_RETRIES: u32 = 20;
/// Attempts made on an inbound delivery before it is dead-lettered.
pub const MAX_INBOUND_ATTEMPTS: u32 = INBOUND_QUICK_ATTEMPTS + INBOUND_HOURLY_RETRIES;

/// The wait before the next processing attempt of an inbound webhook after `attempts_made`
/// attempts; `None` once all [`MAX_INBOUND_ATTEMPTS`] failed: dead-letter it.
pub fn next_inbound_attempt_delay(attempts_made: u32) -> Option<Duration> {
    if attempts_made < INBOUND_QUICK_ATTEMPTS {
        return next_attempt_delay(attempts_made);
    }
    (attempts_made < MAX_INBOUND_ATTEMPTS).then_some(Duration::from_secs(60 * 60))
}
