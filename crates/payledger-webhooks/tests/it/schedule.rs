use std::time::Duration;

use payledger_webhooks::{next_attempt_delay, MAX_DELIVERY_ATTEMPTS, RETRY_SCHEDULE};

const SECOND: u64 = 1;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;

#[test]
fn the_schedule_is_the_standard_webhooks_one() {
    let expected_seconds = [
        0,
        5,
        5 * MINUTE,
        30 * MINUTE,
        2 * HOUR,
        5 * HOUR,
        10 * HOUR,
        10 * HOUR,
    ];
    assert_eq!(
        RETRY_SCHEDULE.map(|delay| delay.as_secs()),
        expected_seconds
    );
    assert_eq!(MAX_DELIVERY_ATTEMPTS, 8);
    let total: Duration = RETRY_SCHEDULE.iter().sum();
    assert_eq!(total.as_secs(), 27 * HOUR + 35 * MINUTE + 5 * SECOND);
}

#[test]
fn a_new_message_goes_out_immediately_then_backs_off() {
    assert_eq!(next_attempt_delay(0), Some(Duration::ZERO));
    assert_eq!(next_attempt_delay(1), Some(Duration::from_secs(5)));
    assert_eq!(next_attempt_delay(2), Some(Duration::from_secs(5 * MINUTE)));
    assert_eq!(next_attempt_delay(7), Some(Duration::from_secs(10 * HOUR)));
}

#[test]
fn after_the_last_attempt_the_message_is_dead_lettered() {
    assert_eq!(next_attempt_delay(MAX_DELIVERY_ATTEMPTS), None);
    assert_eq!(next_attempt_delay(MAX_DELIVERY_ATTEMPTS + 1), None);
    assert_eq!(next_attempt_delay(u32::MAX), None);
}
