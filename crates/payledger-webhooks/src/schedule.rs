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
