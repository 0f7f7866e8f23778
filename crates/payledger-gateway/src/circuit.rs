//! A circuit breaker: stop calling a provider that keeps failing, and find out by itself when it
//! is back.
//!
//! Closed → (N consecutive failures) → Open: every call fails fast for `open_ms` → HalfOpen: one
//! probe goes through → its success closes the circuit, its failure opens it again. Business
//! refusals are not failures: a provider that declines cards is a provider that works.
//!
//! Time comes from a [`Clock`], so tests move it by hand instead of sleeping.

use crate::CircuitState;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// A monotonic millisecond clock.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> u64;
}

/// The real clock: milliseconds since the breaker was made, from [`Instant`] (never goes back).
#[derive(Debug)]
pub struct MonotonicClock {
    origin: Instant,
}

impl MonotonicClock {
    pub fn new() -> MonotonicClock {
        MonotonicClock {
            origin: Instant::now(),
        }
    }
}

impl Default for MonotonicClock {
    fn default() -> MonotonicClock {
        MonotonicClock::new()
    }
}

impl Clock for MonotonicClock {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// A clock moved by hand, for tests.
#[derive(Debug, Default)]
pub struct ManualClock {
    now_ms: AtomicU64,
}

impl ManualClock {
    pub fn new() -> ManualClock {
        ManualClock::default()
    }

    pub fn advance_ms(&self, ms: u64) {
        self.now_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitConfig {
    /// Consecutive failures that open the circuit (at least 1).
    pub failure_threshold: u32,
    /// How long an open circuit fails fast before letting a probe through.
    pub open_ms: u64,
}

impl Default for CircuitConfig {
    fn default() -> CircuitConfig {
        CircuitConfig {
            failure_threshold: 5,
            open_ms: 30_000,
        }
    }
}

/// The circuit refused the call; nothing was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShortCircuited {
    /// When a call may be let through again.
    pub retry_after_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inner {
    Closed { consecutive_failures: u32 },
    Open { until_ms: u64 },
    HalfOpen { probe_in_flight: bool },
}

pub struct CircuitBreaker {
    config: CircuitConfig,
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("config", &self.config)
            .field("state", &self.state())
            .finish()
    }
}

impl CircuitBreaker {
    pub fn new(config: CircuitConfig) -> CircuitBreaker {
        CircuitBreaker::with_clock(config, Arc::new(MonotonicClock::new()))
    }

    pub fn with_clock(config: CircuitConfig, clock: Arc<dyn Clock>) -> CircuitBreaker {
        CircuitBreaker {
            config: CircuitConfig {
                failure_threshold: config.failure_threshold.max(1),
                open_ms: config.open_ms,
            },
            clock,
            inner: Mutex::new(Inner::Closed {
                consecutive_failures: 0,
            }),
        }
    }

    /// Asks to make one call. The permit must be told how the call went; a permit dropped
    /// without an outcome (the caller gave up) counts as neither.
    pub fn try_acquire(&self) -> Result<Permit<'_>, ShortCircuited> {
        let now_ms = self.clock.now_ms();
        let mut inner = self.lock();
        match *inner {
            Inner::Closed { .. } => Ok(Permit::new(self, false)),
            Inner::Open { until_ms } if now_ms < until_ms => Err(ShortCircuited {
                retry_after_ms: until_ms - now_ms,
            }),
            Inner::Open { .. }
            | Inner::HalfOpen {
                probe_in_flight: false,
            } => {
                *inner = Inner::HalfOpen {
                    probe_in_flight: true,
                };
                Ok(Permit::new(self, true))
            }
            // One probe at a time: a provider coming back up is not flooded by every waiting
            // caller at once.
            Inner::HalfOpen {
                probe_in_flight: true,
            } => Err(ShortCircuited {
                retry_after_ms: self.config.open_ms,
            }),
        }
    }

    pub fn state(&self) -> CircuitState {
        let now_ms = self.clock.now_ms();
        match *self.lock() {
            Inner::Closed { .. } => CircuitState::Closed,
            Inner::Open { until_ms } if now_ms < until_ms => CircuitState::Open,
            Inner::Open { .. } | Inner::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }

    fn record_success(&self) {
        let mut inner = self.lock();
        match *inner {
            // A call let through before the circuit opened says little about the provider now;
            // only the probe decides when to close.
            Inner::Open { .. } => {}
            Inner::Closed { .. } | Inner::HalfOpen { .. } => {
                *inner = Inner::Closed {
                    consecutive_failures: 0,
                };
            }
        }
    }

    fn record_failure(&self) {
        let now_ms = self.clock.now_ms();
        let mut inner = self.lock();
        let open = Inner::Open {
            until_ms: now_ms.saturating_add(self.config.open_ms),
        };
        match *inner {
            Inner::Closed {
                consecutive_failures,
            } => {
                let consecutive_failures = consecutive_failures.saturating_add(1);
                *inner = if consecutive_failures >= self.config.failure_threshold {
                    open
                } else {
                    Inner::Closed {
                        consecutive_failures,
                    }
                };
            }
            Inner::HalfOpen { .. } => *inner = open,
            Inner::Open { .. } => {}
        }
    }

    fn release_probe(&self) {
        let mut inner = self.lock();
        if *inner
            == (Inner::HalfOpen {
                probe_in_flight: true,
            })
        {
            *inner = Inner::HalfOpen {
                probe_in_flight: false,
            };
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The state is a plain value, valid after any panic; keep serving with it.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Leave to make one call; report how it went with [`Permit::succeeded`] or [`Permit::failed`].
#[must_use = "a permit must report the call's outcome"]
pub struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    is_probe: bool,
    settled: bool,
}

impl<'a> Permit<'a> {
    fn new(breaker: &'a CircuitBreaker, is_probe: bool) -> Permit<'a> {
        Permit {
            breaker,
            is_probe,
            settled: false,
        }
    }

    /// The provider answered (a refusal is an answer).
    pub fn succeeded(mut self) {
        self.settled = true;
        self.breaker.record_success();
    }

    /// The provider failed or could not be reached.
    pub fn failed(mut self) {
        self.settled = true;
        self.breaker.record_failure();
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        // A probe abandoned mid-call (its caller was cancelled) proves nothing either way; free
        // the slot so the next caller can probe instead of the circuit staying half-open forever.
        if !self.settled && self.is_probe {
            self.breaker.release_probe();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(threshold: u32, open_ms: u64) -> (CircuitBreaker, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new());
        let breaker = CircuitBreaker::with_clock(
            CircuitConfig {
                failure_threshold: threshold,
                open_ms,
            },
            clock.clone(),
        );
        (breaker, clock)
    }

    fn fail(breaker: &CircuitBreaker) {
        breaker
            .try_acquire()
            .expect("circuit lets the call through")
            .failed();
    }

    #[test]
    fn opens_after_the_threshold_of_consecutive_failures() {
        let (breaker, _) = breaker(3, 1_000);
        fail(&breaker);
        fail(&breaker);
        assert_eq!(breaker.state(), CircuitState::Closed);
        fail(&breaker);
        assert_eq!(breaker.state(), CircuitState::Open);
        assert_eq!(
            breaker.try_acquire().err(),
            Some(ShortCircuited {
                retry_after_ms: 1_000
            })
        );
    }

    #[test]
    fn a_success_resets_the_count_of_consecutive_failures() {
        let (breaker, _) = breaker(3, 1_000);
        fail(&breaker);
        fail(&breaker);
        breaker.try_acquire().unwrap().succeeded();
        fail(&breaker);
        fail(&breaker);
        assert_eq!(breaker.state(), CircuitState::Closed);
    }

    #[test]
    fn fails_fast_while_open_and_says_when_to_come_back() {
        let (breaker, clock) = breaker(1, 1_000);
        fail(&breaker);
        clock.advance_ms(400);
        assert_eq!(
            breaker.try_acquire().err(),
            Some(ShortCircuited {
                retry_after_ms: 600
            })
        );
    }

    #[test]
    fn after_open_ms_one_probe_goes_through_and_its_success_closes() {
        let (breaker, clock) = breaker(1, 1_000);
        fail(&breaker);
        clock.advance_ms(1_000);
        assert_eq!(breaker.state(), CircuitState::HalfOpen);
        let probe = breaker.try_acquire().expect("the probe is let through");
        assert!(
            breaker.try_acquire().is_err(),
            "a second caller must wait for the probe"
        );
        probe.succeeded();
        assert_eq!(breaker.state(), CircuitState::Closed);
        breaker.try_acquire().unwrap().succeeded();
    }

    #[test]
    fn a_failed_probe_opens_the_circuit_for_another_period() {
        let (breaker, clock) = breaker(1, 1_000);
        fail(&breaker);
        clock.advance_ms(1_500);
        breaker.try_acquire().unwrap().failed();
        assert_eq!(breaker.state(), CircuitState::Open);
        clock.advance_ms(999);
        assert!(breaker.try_acquire().is_err());
        clock.advance_ms(1);
        assert!(breaker.try_acquire().is_ok());
    }

    #[test]
    fn an_abandoned_probe_frees_the_slot_for_the_next_caller() {
        let (breaker, clock) = breaker(1, 1_000);
        fail(&breaker);
        clock.advance_ms(1_000);
        drop(breaker.try_acquire().unwrap());
        assert_eq!(breaker.state(), CircuitState::HalfOpen);
        breaker.try_acquire().expect("a new probe").succeeded();
        assert_eq!(breaker.state(), CircuitState::Closed);
    }

    #[test]
    fn a_late_success_from_before_the_circuit_opened_does_not_close_it() {
        let (breaker, _) = breaker(1, 1_000);
        let slow_call = breaker.try_acquire().unwrap();
        fail(&breaker);
        slow_call.succeeded();
        assert_eq!(breaker.state(), CircuitState::Open);
    }
}
