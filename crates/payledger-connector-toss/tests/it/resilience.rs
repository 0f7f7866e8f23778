//! Timeouts, retries, unknown outcomes and the circuit breaker, against real sockets.

use crate::{confirm_request, fast_config, sandbox, world, world_with, World};
use payledger_connector_toss::{TossConfig, TossGateway, TossSecretKey};
use payledger_domain::provider_failure::FailureClass;
use payledger_gateway::circuit::{CircuitConfig, ManualClock};
use payledger_gateway::{CircuitState, GatewayError, PaymentFactStatus, PaymentGateway};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn a_flaky_provider_is_retried_with_the_same_key_until_it_approves() {
    let world = world().await;
    let payment = world
        .gateway
        .confirm(&confirm_request(
            "sandbox_flaky_2_a",
            "order-flaky-1",
            4_000,
        ))
        .await
        .unwrap();
    assert_eq!(payment.status, PaymentFactStatus::Captured);
    let gateway_stats = world.gateway.stats();
    assert_eq!(gateway_stats.attempts, 3);
    assert_eq!(gateway_stats.retries, 2);
    // PROVIDER_ERROR with a 400 is this card's trouble, not the provider's health.
    assert_eq!(gateway_stats.failures, 0);
    let stats = world.sandbox.stats();
    assert_eq!(stats.attempts_by_order_id.get("order-flaky-1"), Some(&3));
    assert_eq!(stats.charges_by_order_id.get("order-flaky-1"), Some(&1));
    assert_eq!(world.gateway.circuit_state(), CircuitState::Closed);
}

#[tokio::test]
async fn a_provider_error_that_outlasts_the_attempts_is_a_provider_error_refusal() {
    let world = world().await;
    let result = world
        .gateway
        .confirm(&confirm_request(
            "sandbox_provider_error_a",
            "order-perr-1",
            4_000,
        ))
        .await;
    crate::assert_refused(result, FailureClass::ProviderError, "PROVIDER_ERROR");
    assert_eq!(world.gateway.stats().attempts, 3);
    let stats = world.sandbox.stats();
    assert_eq!(stats.attempts_by_order_id.get("order-perr-1"), Some(&3));
    assert_eq!(stats.total_charges, 0);
}

#[tokio::test]
async fn a_charge_whose_answer_never_comes_is_an_unknown_outcome_that_a_lookup_resolves() {
    let world = world_with(|mut config| {
        config.transport.timeout_ms = 300;
        config
    })
    .await;
    let result = world
        .gateway
        .confirm(&confirm_request(
            "sandbox_timeout_after_charge_a",
            "order-late-1",
            12_000,
        ))
        .await;
    match result {
        Err(GatewayError::OutcomeUnknown { reason }) => assert!(!reason.is_empty()),
        other => panic!("expected an unknown outcome, got {other:?}"),
    }
    // The retries carried the same key: the provider said "still processing", never charged
    // again.
    assert_eq!(world.gateway.stats().attempts, 3);
    assert_eq!(world.gateway.stats().outcome_unknown, 1);

    let found = world
        .gateway
        .payment_by_order_id("order-late-1")
        .await
        .unwrap()
        .expect("the provider did charge");
    assert_eq!(found.status, PaymentFactStatus::Captured);
    assert_eq!(found.total_amount_minor, 12_000);
    assert_eq!(
        world
            .sandbox
            .stats()
            .charges_by_order_id
            .get("order-late-1"),
        Some(&1)
    );
}

#[tokio::test]
async fn an_outage_opens_the_circuit_which_fails_fast_then_a_probe_closes_it() {
    let sandbox = sandbox().await;
    let clock = Arc::new(ManualClock::new());
    let mut config = fast_config(sandbox.base_url());
    config.transport.circuit = CircuitConfig {
        failure_threshold: 3,
        open_ms: 5_000,
    };
    let gateway = TossGateway::with_clock(config, clock.clone()).unwrap();
    let world = World { sandbox, gateway };

    world.sandbox.start_outage(Duration::from_secs(600));
    let during = world
        .gateway
        .confirm(&confirm_request("pk_outage_1", "order-outage-1", 1_000))
        .await;
    crate::assert_refused(
        during,
        FailureClass::ProviderError,
        "FAILED_INTERNAL_SYSTEM_PROCESSING",
    );
    assert_eq!(world.gateway.circuit_state(), CircuitState::Open);

    let fast = world
        .gateway
        .confirm(&confirm_request("pk_outage_2", "order-outage-2", 1_000))
        .await;
    match fast {
        Err(GatewayError::NotSent { retry_after_ms, .. }) => {
            assert_eq!(retry_after_ms, Some(5_000));
        }
        other => panic!("expected a fast failure, got {other:?}"),
    }
    assert_eq!(world.gateway.stats().short_circuited, 1);
    assert_eq!(
        world.gateway.stats().attempts,
        3,
        "nothing was sent while open"
    );

    world.sandbox.start_outage(Duration::ZERO);
    clock.advance_ms(5_000);
    assert_eq!(world.gateway.circuit_state(), CircuitState::HalfOpen);
    let probe = world
        .gateway
        .confirm(&confirm_request("pk_outage_2", "order-outage-2", 1_000))
        .await
        .unwrap();
    assert_eq!(probe.status, PaymentFactStatus::Captured);
    assert_eq!(world.gateway.circuit_state(), CircuitState::Closed);
}

#[tokio::test]
async fn a_provider_that_cannot_be_reached_is_not_sent_and_trips_the_circuit() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = fast_config(format!("http://127.0.0.1:{port}"));
    config.transport.circuit = CircuitConfig {
        failure_threshold: 3,
        open_ms: 60_000,
    };
    let gateway = TossGateway::new(config).unwrap();
    let first = gateway
        .confirm(&confirm_request(
            "pk_unreachable",
            "order-unreachable-1",
            1_000,
        ))
        .await;
    match first {
        Err(GatewayError::NotSent {
            reason,
            retry_after_ms,
        }) => {
            assert!(reason.contains("connect"), "{reason}");
            assert_eq!(retry_after_ms, None);
        }
        other => panic!("expected not sent, got {other:?}"),
    }
    assert_eq!(gateway.stats().attempts, 3);
    assert_eq!(gateway.circuit_state(), CircuitState::Open);
    let second = gateway.payment_by_order_id("order-unreachable-1").await;
    assert!(
        matches!(
            second,
            Err(GatewayError::NotSent {
                retry_after_ms: Some(_),
                ..
            })
        ),
        "{second:?}"
    );
}

#[tokio::test]
async fn a_wrong_secret_key_is_refused_and_left_for_an_operator() {
    let world = world_with(|config| TossConfig {
        secret_key: TossSecretKey::new("test_sk_wrong"),
        ..config
    })
    .await;
    let result = world
        .gateway
        .confirm(&confirm_request("pk_wrong_key", "order-wrong-key-1", 1_000))
        .await;
    let text = format!("{result:?}");
    assert!(!text.contains("test_sk_wrong"), "{text}");
    crate::assert_refused(result, FailureClass::Unclassified, "UNAUTHORIZED_KEY");
    assert_eq!(world.gateway.stats().retries, 0);
}
