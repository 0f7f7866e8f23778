//! The one retry loop of every connector: attempts with the same idempotency key, full-jitter
//! backoff, the circuit breaker, the counters, and the final verdict of a call. Each connector
//! keeps its own HTTP client and reads its provider's answers into an [`Attempt`]; what an
//! attempt's ending means for the call (retry, count against the provider's health, "not sent"
//! or "outcome unknown") is decided here, once.

use crate::circuit::CircuitBreaker;
use crate::{GatewayError, GatewayStats};
use payledger_domain::provider_failure::ProviderFailure;
use rand::Rng;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Counters of one connector, read by [`CallCounters::stats`].
#[derive(Debug, Default)]
pub struct CallCounters {
    pub calls: AtomicU64,
    pub attempts: AtomicU64,
    pub failures: AtomicU64,
    pub retries: AtomicU64,
    pub short_circuited: AtomicU64,
    pub refusals: AtomicU64,
    pub outcome_unknown: AtomicU64,
}

impl CallCounters {
    pub fn stats(&self) -> GatewayStats {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        GatewayStats {
            calls: read(&self.calls),
            attempts: read(&self.attempts),
            failures: read(&self.failures),
            retries: read(&self.retries),
            short_circuited: read(&self.short_circuited),
            refusals: read(&self.refusals),
            outcome_unknown: read(&self.outcome_unknown),
        }
    }
}

pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// How one HTTP attempt ended.
pub enum Attempt {
    /// 2xx and its body.
    Answered(Vec<u8>),
    /// A definitive refusal: retrying the same request cannot change it.
    Refused(ProviderFailure),
    Retryable(Retryable),
}

/// An attempt that a retry with the same key may mend.
pub enum Retryable {
    /// Certainly not acted on (no connection; for Stripe also 429, which it did not run).
    NotSent(String),
    /// Sent, and no usable answer came back: the provider may have acted.
    Unknown(String),
    /// The provider itself is in trouble: it answered 5xx (or 429). Counts against its health.
    Provider(ProviderFailure),
    /// The provider answered, healthy, that this one payment failed in a way a retry may mend
    /// (Toss's `PROVIDER_ERROR` sent with a 4xx: the card issuer's trouble with this card).
    /// Retried with the same key, but never counted against the provider's health: one
    /// customer's failing card must not open the circuit for everyone.
    PaymentTrouble(ProviderFailure),
    /// 409: an earlier attempt with this key is still running.
    InProgress(ProviderFailure),
}

impl Retryable {
    pub fn describe(&self) -> String {
        match self {
            Retryable::NotSent(reason) | Retryable::Unknown(reason) => reason.clone(),
            Retryable::Provider(failure)
            | Retryable::PaymentTrouble(failure)
            | Retryable::InProgress(failure) => {
                format!("{}: {}", failure.provider_code, failure.provider_message)
            }
        }
    }

    /// Whether the attempt says the provider is unwell (its breaker counts it as a failure).
    fn counts_against_health(&self) -> bool {
        !matches!(
            self,
            Retryable::InProgress(_) | Retryable::PaymentTrouble(_)
        )
    }

    /// Whether the provider may have acted on the attempt.
    fn may_have_acted(&self) -> bool {
        matches!(self, Retryable::Unknown(_) | Retryable::InProgress(_))
    }
}

/// One connector's retry settings and the breaker and counters the loop keeps.
pub struct RetryLoop<'a> {
    pub provider_name: &'a str,
    pub max_attempts: u32,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    pub breaker: &'a CircuitBreaker,
    pub counters: &'a CallCounters,
}

impl RetryLoop<'_> {
    /// Runs a call named `operation`: each `attempt` answers how it ended and whether the
    /// provider allows another (Stripe's `Stripe-Should-Retry`; always `true` for Toss).
    pub async fn run<F, Fut>(
        &self,
        operation: &'static str,
        attempt: F,
    ) -> Result<Vec<u8>, GatewayError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = (Attempt, bool)>,
    {
        bump(&self.counters.calls);
        let result = self.attempts(operation, attempt).await;
        match &result {
            Err(GatewayError::Refused(_)) => bump(&self.counters.refusals),
            Err(GatewayError::OutcomeUnknown { reason }) => {
                bump(&self.counters.outcome_unknown);
                tracing::warn!(
                    provider = %self.provider_name,
                    operation,
                    %reason,
                    "provider outcome unknown; a reconciler must ask the provider"
                );
            }
            _ => {}
        }
        result
    }

    async fn attempts<F, Fut>(
        &self,
        operation: &'static str,
        mut attempt: F,
    ) -> Result<Vec<u8>, GatewayError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = (Attempt, bool)>,
    {
        // Once any attempt may have reached the provider, "not sent" is no longer true of the
        // call, whatever later attempts say.
        let mut unknown_reason: Option<String> = None;
        let mut last_failure: Option<Retryable> = None;
        for attempt_no in 1..=self.max_attempts {
            if attempt_no > 1 {
                bump(&self.counters.retries);
                tokio::time::sleep(self.backoff(attempt_no - 1)).await;
            }
            let permit = match self.breaker.try_acquire() {
                Ok(permit) => permit,
                Err(short) => {
                    bump(&self.counters.short_circuited);
                    return Err(match unknown_reason {
                        Some(reason) => GatewayError::OutcomeUnknown { reason },
                        None => GatewayError::NotSent {
                            reason: format!("circuit open for provider {}", self.provider_name),
                            retry_after_ms: Some(short.retry_after_ms),
                        },
                    });
                }
            };
            bump(&self.counters.attempts);
            let (outcome, may_retry) = attempt().await;
            match outcome {
                Attempt::Answered(body) => {
                    permit.succeeded();
                    return Ok(body);
                }
                Attempt::Refused(failure) => {
                    permit.succeeded();
                    return Err(GatewayError::Refused(failure));
                }
                Attempt::Retryable(failure) => {
                    if failure.counts_against_health() {
                        bump(&self.counters.failures);
                        permit.failed();
                    } else {
                        permit.succeeded();
                    }
                    let reason = failure.describe();
                    if failure.may_have_acted() {
                        unknown_reason = Some(reason.clone());
                    }
                    tracing::warn!(
                        provider = %self.provider_name,
                        operation,
                        attempt = attempt_no,
                        max_attempts = self.max_attempts,
                        %reason,
                        "provider call failed"
                    );
                    last_failure = Some(failure);
                    if !may_retry {
                        break;
                    }
                }
            }
        }
        if let Some(reason) = unknown_reason {
            return Err(GatewayError::OutcomeUnknown { reason });
        }
        Err(match last_failure {
            Some(Retryable::Provider(failure) | Retryable::PaymentTrouble(failure)) => {
                GatewayError::Refused(failure)
            }
            Some(failure) => GatewayError::NotSent {
                reason: failure.describe(),
                retry_after_ms: None,
            },
            None => GatewayError::NotSent {
                reason: "no attempt was made".to_owned(),
                retry_after_ms: None,
            },
        })
    }

    /// Full jitter: a uniformly random sleep up to the exponential cap, so clients that failed
    /// together do not retry together.
    fn backoff(&self, retry: u32) -> Duration {
        let cap_ms =
            crate::transport::backoff_cap_ms(retry, self.backoff_base_ms, self.backoff_max_ms);
        Duration::from_millis(rand::rng().random_range(0..=cap_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::circuit::CircuitConfig;
    use crate::CircuitState;
    use payledger_domain::provider_failure::FailureClass;
    use std::cell::RefCell;
    use std::collections::VecDeque;

    fn failure(code: &str) -> ProviderFailure {
        ProviderFailure {
            class: FailureClass::ProviderError,
            provider_code: code.to_string(),
            provider_message: "message".to_string(),
        }
    }

    /// Runs a call whose attempts end as `script` says, in order; returns the verdict, how many
    /// attempts were made, the counters and the breaker's state.
    async fn run(
        script: Vec<(Attempt, bool)>,
        max_attempts: u32,
        failure_threshold: u32,
    ) -> (
        Result<Vec<u8>, GatewayError>,
        usize,
        GatewayStats,
        CircuitState,
    ) {
        let breaker = CircuitBreaker::new(CircuitConfig {
            failure_threshold,
            open_ms: 60_000,
        });
        let counters = CallCounters::default();
        let script = RefCell::new(VecDeque::from(script));
        let made = RefCell::new(0);
        let retries = RetryLoop {
            provider_name: "test",
            max_attempts,
            backoff_base_ms: 0,
            backoff_max_ms: 0,
            breaker: &breaker,
            counters: &counters,
        };
        let result = retries
            .run("test_call", || {
                *made.borrow_mut() += 1;
                let next = script.borrow_mut().pop_front().expect("a scripted attempt");
                async move { next }
            })
            .await;
        let made = *made.borrow();
        (result, made, counters.stats(), breaker.state())
    }

    fn retry(failure: Retryable) -> (Attempt, bool) {
        (Attempt::Retryable(failure), true)
    }

    #[tokio::test]
    async fn an_answer_after_failures_is_the_answer_and_each_failure_is_counted() {
        let (result, made, stats, _) = run(
            vec![
                retry(Retryable::NotSent("refused".into())),
                retry(Retryable::Provider(failure("500"))),
                (Attempt::Answered(b"ok".to_vec()), true),
            ],
            3,
            5,
        )
        .await;
        assert_eq!(result.unwrap(), b"ok");
        assert_eq!(made, 3);
        assert_eq!((stats.calls, stats.attempts, stats.retries), (1, 3, 2));
        assert_eq!(stats.failures, 2);
    }

    #[tokio::test]
    async fn once_an_attempt_may_have_acted_the_call_is_never_not_sent() {
        let (result, _, stats, _) = run(
            vec![
                retry(Retryable::Unknown("timed out".into())),
                retry(Retryable::NotSent("refused".into())),
            ],
            2,
            5,
        )
        .await;
        assert_eq!(
            result,
            Err(GatewayError::OutcomeUnknown {
                reason: "timed out".into()
            })
        );
        assert_eq!(stats.outcome_unknown, 1);
    }

    #[tokio::test]
    async fn payment_trouble_is_refused_at_the_end_and_never_counts_against_health() {
        let (result, made, stats, state) = run(
            vec![
                retry(Retryable::PaymentTrouble(failure("PROVIDER_ERROR"))),
                retry(Retryable::PaymentTrouble(failure("PROVIDER_ERROR"))),
            ],
            2,
            1,
        )
        .await;
        assert_eq!(
            result,
            Err(GatewayError::Refused(failure("PROVIDER_ERROR")))
        );
        assert_eq!(made, 2);
        assert_eq!((stats.failures, stats.refusals), (0, 1));
        assert_eq!(state, CircuitState::Closed);
    }

    #[tokio::test]
    async fn an_earlier_attempt_in_progress_is_unknown_and_healthy() {
        let (result, _, stats, state) =
            run(vec![retry(Retryable::InProgress(failure("409")))], 1, 1).await;
        assert!(matches!(result, Err(GatewayError::OutcomeUnknown { .. })));
        assert_eq!(stats.failures, 0);
        assert_eq!(state, CircuitState::Closed);
    }

    #[tokio::test]
    async fn a_provider_that_says_do_not_retry_is_not_retried() {
        let (result, made, stats, _) = run(
            vec![(Attempt::Retryable(Retryable::NotSent("429".into())), false)],
            5,
            5,
        )
        .await;
        assert!(matches!(
            result,
            Err(GatewayError::NotSent {
                retry_after_ms: None,
                ..
            })
        ));
        assert_eq!((made, stats.retries), (1, 0));
    }

    #[tokio::test]
    async fn health_failures_open_the_circuit_and_the_next_attempt_is_not_made() {
        let (result, made, stats, state) = run(
            vec![
                retry(Retryable::NotSent("refused".into())),
                retry(Retryable::NotSent("refused".into())),
            ],
            3,
            2,
        )
        .await;
        assert!(matches!(
            result,
            Err(GatewayError::NotSent {
                retry_after_ms: Some(_),
                ..
            })
        ));
        assert_eq!((made, stats.short_circuited), (2, 1));
        assert_eq!(state, CircuitState::Open);
    }

    #[tokio::test]
    async fn a_refusal_ends_the_call_at_once() {
        let (result, made, stats, _) =
            run(vec![(Attempt::Refused(failure("REJECT")), true)], 3, 5).await;
        assert_eq!(result, Err(GatewayError::Refused(failure("REJECT"))));
        assert_eq!((made, stats.refusals, stats.failures), (1, 1, 0));
    }
}
