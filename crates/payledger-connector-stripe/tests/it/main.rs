//! The Stripe connector against the sandbox's Stripe API, over HTTP.

mod webhooks;

use payledger_connector_stripe::{StripeConfig, StripeGateway};
use payledger_domain::money::Currency;
use payledger_domain::provider_failure::FailureClass;
use payledger_gateway::circuit::CircuitConfig;
use payledger_gateway::{
    CancelRequest, CircuitState, ConfirmRequest, GatewayError, PaymentFactStatus, PaymentGateway,
};
use payledger_sandbox::{start, RunningSandbox, SandboxConfig, DEFAULT_STRIPE_SECRET_KEY};
use std::sync::Arc;
use std::time::Duration;

struct Harness {
    sandbox: RunningSandbox,
    gateway: Arc<StripeGateway>,
}

impl Harness {
    async fn start() -> Harness {
        Harness::start_with(SandboxConfig::default(), |config| config).await
    }

    async fn start_with(
        sandbox_config: SandboxConfig,
        configure: impl FnOnce(StripeConfig) -> StripeConfig,
    ) -> Harness {
        let sandbox = start("127.0.0.1:0".parse().unwrap(), sandbox_config)
            .await
            .unwrap();
        let mut config = StripeConfig::sandbox(sandbox.stripe_base_url());
        config.transport.backoff_base_ms = 10;
        config.transport.backoff_max_ms = 50;
        let config = configure(config);
        let gateway = Arc::new(StripeGateway::new(config).unwrap());
        Harness { sandbox, gateway }
    }

    fn charges_of(&self, order_id: &str) -> u64 {
        self.sandbox.stripe_stats()["chargesByOrderId"][order_id]
            .as_u64()
            .unwrap_or(0)
    }

    /// What a customer (Stripe.js) or Stripe itself does, through the sandbox's controls.
    async fn control(&self, path: &str, form: &[(&str, &str)]) -> serde_json::Value {
        let response = reqwest::Client::new()
            .post(format!("{}{path}", self.sandbox.stripe_base_url()))
            .bearer_auth(DEFAULT_STRIPE_SECRET_KEY)
            .form(form)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json().await.unwrap()
    }
}

fn confirm(
    payment_key: &str,
    order_id: &str,
    amount_minor: i64,
    currency: Currency,
) -> ConfirmRequest {
    ConfirmRequest {
        payment_key: payment_key.to_owned(),
        order_id: order_id.to_owned(),
        amount_minor,
        currency,
        idempotency_key: format!("order-{order_id}:confirm:1"),
    }
}

fn refund(intent: &str, amount: Option<i64>, key: &str) -> CancelRequest {
    CancelRequest {
        payment_key: intent.to_owned(),
        cancel_amount_minor: amount,
        cancel_reason: "customer asked".to_owned(),
        idempotency_key: key.to_owned(),
    }
}

#[tokio::test]
async fn a_card_payment_is_one_payment_intent_with_the_order_in_its_metadata() {
    let h = Harness::start().await;
    let payment = h
        .gateway
        .confirm(&confirm(
            "pm_card_visa",
            "ord-visa-1",
            41_000,
            Currency::KRW,
        ))
        .await
        .unwrap();
    assert!(payment.payment_key.starts_with("pi_"));
    assert_eq!(payment.order_id, "ord-visa-1");
    assert_eq!(payment.status, PaymentFactStatus::Captured);
    assert_eq!(
        payment.total_amount_minor, 41_000,
        "KRW is zero-decimal at Stripe too"
    );
    assert_eq!(payment.balance_amount_minor, 41_000);
    assert_eq!(payment.currency, Currency::KRW);
    assert!(payment.approved_at.is_some());
    assert_eq!(payment.card.as_ref().unwrap().last4, "4242");
    assert_eq!(payment.client_action, None);

    let by_key = h
        .gateway
        .payment_by_key(&payment.payment_key)
        .await
        .unwrap();
    assert_eq!(by_key.as_ref(), Some(&payment));
    let by_order = h.gateway.payment_by_order_id("ord-visa-1").await.unwrap();
    assert_eq!(by_order.as_ref(), Some(&payment));
    assert_eq!(
        h.gateway.payment_by_order_id("ord-nobody").await.unwrap(),
        None
    );
    assert_eq!(h.gateway.payment_by_key("pi_unknown").await.unwrap(), None);

    let usd = h
        .gateway
        .confirm(&confirm("pm_card_visa", "ord-usd-1", 2_000, Currency::USD))
        .await
        .unwrap();
    assert_eq!(usd.total_amount_minor, 2_000, "cents");
}

#[tokio::test]
async fn concurrent_and_repeated_confirms_with_one_key_charge_once() {
    let h = Harness::start().await;
    let request = confirm("pm_card_visa", "ord-race-1", 5_000, Currency::USD);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let gateway = h.gateway.clone();
            let request = request.clone();
            tokio::spawn(async move { gateway.confirm(&request).await })
        })
        .collect();
    let mut intents = Vec::new();
    for task in tasks {
        intents.push(task.await.unwrap().unwrap().payment_key);
    }
    intents.dedup();
    assert_eq!(intents.len(), 1);
    assert_eq!(h.charges_of("ord-race-1"), 1);
}

#[tokio::test]
async fn declines_are_classified_and_never_open_the_circuit() {
    let h = Harness::start_with(SandboxConfig::default(), |mut config| {
        config.transport.circuit = CircuitConfig {
            failure_threshold: 2,
            open_ms: 60_000,
        };
        config
    })
    .await;
    let cases = [
        (
            "pm_card_chargeDeclinedInsufficientFunds",
            FailureClass::SoftDecline,
            "insufficient_funds",
        ),
        (
            "pm_card_chargeDeclined",
            FailureClass::SoftDecline,
            "generic_decline",
        ),
        (
            "pm_card_chargeDeclinedExpiredCard",
            FailureClass::CardUnusable,
            "expired_card",
        ),
        (
            "pm_card_chargeDeclinedLostCard",
            FailureClass::CardUnusable,
            "lost_card",
        ),
        (
            "pm_card_chargeDeclinedProcessingError",
            FailureClass::ProviderError,
            "processing_error",
        ),
        (
            "pm_card_chargeDeclinedProcessingError",
            FailureClass::ProviderError,
            "processing_error",
        ),
        (
            "pm_card_doesNotExist",
            FailureClass::NotFound,
            "resource_missing",
        ),
    ];
    for (index, (pm, class, code)) in cases.into_iter().enumerate() {
        let err = h
            .gateway
            .confirm(&confirm(
                pm,
                &format!("ord-decline-{index}"),
                1_000,
                Currency::EUR,
            ))
            .await
            .unwrap_err();
        let GatewayError::Refused(failure) = err else {
            panic!("{pm}: {err:?}");
        };
        assert_eq!(failure.class, class, "{pm}");
        assert_eq!(failure.provider_code, code, "{pm}");
    }
    let stats = h.gateway.stats();
    assert_eq!(
        stats.failures, 0,
        "card refusals say nothing about Stripe's health"
    );
    assert_eq!(stats.retries, 0, "a stored 402 is not retried");
    assert_eq!(h.gateway.circuit_state(), CircuitState::Closed);
    let ok = h
        .gateway
        .confirm(&confirm(
            "pm_card_visa",
            "ord-after-declines",
            1_000,
            Currency::EUR,
        ))
        .await;
    assert!(ok.is_ok());
}

#[tokio::test]
async fn an_outage_counts_against_the_circuit_and_then_fails_fast() {
    let h = Harness::start_with(SandboxConfig::default(), |mut config| {
        config.transport.circuit = CircuitConfig {
            failure_threshold: 3,
            open_ms: 60_000,
        };
        config
    })
    .await;
    h.sandbox.start_outage(Duration::from_secs(60));
    let err = h
        .gateway
        .confirm(&confirm(
            "pm_card_visa",
            "ord-outage-1",
            1_000,
            Currency::USD,
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(err, GatewayError::OutcomeUnknown { .. }),
        "a 5xx to a charge is indeterminate: {err:?}"
    );
    assert_eq!(h.gateway.stats().failures, 3);
    assert_eq!(h.gateway.circuit_state(), CircuitState::Open);
    let fast = h
        .gateway
        .confirm(&confirm(
            "pm_card_visa",
            "ord-outage-2",
            1_000,
            Currency::USD,
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(
            fast,
            GatewayError::NotSent {
                retry_after_ms: Some(_),
                ..
            }
        ),
        "{fast:?}"
    );
    assert_eq!(h.charges_of("ord-outage-1"), 0);
}

#[tokio::test]
async fn three_d_secure_answers_what_the_client_needs_then_settles_on_confirm_again() {
    let h = Harness::start().await;
    let first = confirm(
        "pm_card_authenticationRequired",
        "ord-3ds-1",
        3_000,
        Currency::USD,
    );
    let pending = h.gateway.confirm(&first).await.unwrap();
    assert_eq!(pending.status, PaymentFactStatus::Pending);
    assert_eq!(pending.balance_amount_minor, 0);
    assert_eq!(pending.approved_at, None);
    let action = pending.client_action.clone().unwrap();
    assert_eq!(action.kind, "use_stripe_sdk");
    assert!(action
        .client_secret
        .unwrap()
        .starts_with(&pending.payment_key));
    assert_eq!(h.charges_of("ord-3ds-1"), 0);

    h.control(
        &format!(
            "/sandbox/payment_intents/{}/authenticate",
            pending.payment_key
        ),
        &[("outcome", "succeed")],
    )
    .await;
    let again = ConfirmRequest {
        payment_key: pending.payment_key.clone(),
        idempotency_key: "order-ord-3ds-1:confirm:2".to_owned(),
        ..first
    };
    let done = h.gateway.confirm(&again).await.unwrap();
    assert_eq!(done.status, PaymentFactStatus::Captured);
    assert_eq!(done.payment_key, pending.payment_key);
    assert_eq!(h.charges_of("ord-3ds-1"), 1);

    let other_order = ConfirmRequest {
        order_id: "ord-someone-else".to_owned(),
        ..again
    };
    let err = h.gateway.confirm(&other_order).await.unwrap_err();
    assert!(
        matches!(&err, GatewayError::Refused(f) if f.provider_code == "PAYLEDGER_PAYMENT_INTENT_MISMATCH"),
        "{err:?}"
    );
}

#[tokio::test]
async fn refunds_partial_and_several_each_with_their_own_key() {
    let h = Harness::start().await;
    let paid = h
        .gateway
        .confirm(&confirm(
            "pm_card_visa",
            "ord-refund-1",
            10_000,
            Currency::USD,
        ))
        .await
        .unwrap();
    let pi = paid.payment_key.as_str();
    let first = h
        .gateway
        .cancel(&refund(pi, Some(3_000), "r-1"))
        .await
        .unwrap();
    assert_eq!(first.status, PaymentFactStatus::PartiallyRefunded);
    assert_eq!(first.balance_amount_minor, 7_000);
    let first_key = first.cancels.last().unwrap().transaction_key.clone();
    assert!(first_key.starts_with("re_"));

    let repeated = h
        .gateway
        .cancel(&refund(pi, Some(3_000), "r-1"))
        .await
        .unwrap();
    assert_eq!(
        repeated.balance_amount_minor, 7_000,
        "the same key is the same refund"
    );
    assert_eq!(repeated.cancels.last().unwrap().transaction_key, first_key);

    let second = h
        .gateway
        .cancel(&refund(pi, Some(2_000), "r-2"))
        .await
        .unwrap();
    assert_eq!(second.balance_amount_minor, 5_000);
    assert_eq!(second.cancels.len(), 2);
    assert_ne!(second.cancels.last().unwrap().transaction_key, first_key);

    let too_much = h
        .gateway
        .cancel(&refund(pi, Some(5_001), "r-3"))
        .await
        .unwrap_err();
    assert!(
        matches!(&too_much, GatewayError::Refused(f) if f.class == FailureClass::NotCancelable && f.provider_code == "amount_too_large"),
        "{too_much:?}"
    );
    let rest = h.gateway.cancel(&refund(pi, None, "r-4")).await.unwrap();
    assert_eq!(rest.status, PaymentFactStatus::Refunded);
    assert_eq!(rest.balance_amount_minor, 0);
}

#[tokio::test]
async fn a_disputed_payment_refuses_refunds_with_a_clear_code() {
    let h = Harness::start().await;
    let paid = h
        .gateway
        .confirm(&confirm(
            "pm_card_visa",
            "ord-dispute-1",
            8_000,
            Currency::USD,
        ))
        .await
        .unwrap();
    let dispute = h
        .control(
            &format!("/sandbox/payment_intents/{}/disputes", paid.payment_key),
            &[],
        )
        .await;
    let err = h
        .gateway
        .cancel(&refund(&paid.payment_key, Some(100), "r-d-1"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, GatewayError::Refused(f) if f.provider_code == "charge_disputed" && f.class == FailureClass::NotCancelable),
        "{err:?}"
    );
    let read = h
        .gateway
        .dispute(dispute["id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.status, "needs_response");
    assert_eq!(read.balance_transactions[0].fee, 1_500);
}

#[tokio::test]
async fn a_pending_refund_is_an_unknown_outcome_until_stripe_settles_it() {
    let h = Harness::start().await;
    let paid = h
        .gateway
        .confirm(&confirm(
            "pm_sandbox_refundPending",
            "ord-pending-1",
            2_500,
            Currency::GBP,
        ))
        .await
        .unwrap();
    let err = h
        .gateway
        .cancel(&refund(&paid.payment_key, Some(2_500), "r-p-1"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, GatewayError::OutcomeUnknown { .. }),
        "{err:?}"
    );
    let still = h
        .gateway
        .payment_by_key(&paid.payment_key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        still.balance_amount_minor, 2_500,
        "a pending refund has moved no money"
    );
}

#[tokio::test]
async fn a_timeout_after_the_charge_is_unknown_and_found_by_order_id() {
    let h = Harness::start_with(
        SandboxConfig {
            timeout_after_charge_delay_ms: 2_000,
            ..SandboxConfig::default()
        },
        |mut config| {
            config.transport.timeout_ms = 300;
            config
        },
    )
    .await;
    let err = h
        .gateway
        .confirm(&confirm(
            "pm_sandbox_timeoutAfterCharge",
            "ord-timeout-1",
            4_100,
            Currency::USD,
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(err, GatewayError::OutcomeUnknown { .. }),
        "{err:?}"
    );
    let found = h
        .gateway
        .payment_by_order_id("ord-timeout-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.status, PaymentFactStatus::Captured);
    assert_eq!(found.total_amount_minor, 4_100);
    assert_eq!(
        h.charges_of("ord-timeout-1"),
        1,
        "retries with the same key charged once"
    );
}

#[tokio::test]
async fn payment_keys_that_are_not_stripe_ids_are_refused_before_any_request() {
    let h = Harness::start().await;
    let err = h
        .gateway
        .confirm(&confirm(
            "sandbox_decline_1",
            "ord-bad-key",
            1_000,
            Currency::USD,
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(err, GatewayError::Refused(f) if f.provider_code == "PAYLEDGER_INVALID_PAYMENT_KEY")
    );
    assert_eq!(h.gateway.stats().attempts, 0);
}

#[tokio::test]
async fn rate_limiting_is_retried_with_the_same_key_and_counts_against_stripes_health() {
    let h = Harness::start().await;
    h.control("/sandbox/rate_limit", &[("requests", "2")]).await;
    let paid = h
        .gateway
        .confirm(&confirm("pm_card_visa", "ord-rate-1", 1_000, Currency::USD))
        .await
        .unwrap();
    assert_eq!(paid.status, PaymentFactStatus::Captured);
    let stats = h.gateway.stats();
    assert_eq!((stats.attempts, stats.retries, stats.failures), (3, 2, 2));
    assert_eq!(h.charges_of("ord-rate-1"), 1);

    h.control("/sandbox/rate_limit", &[("requests", "5")]).await;
    let err = h
        .gateway
        .confirm(&confirm("pm_card_visa", "ord-rate-2", 1_000, Currency::USD))
        .await
        .unwrap_err();
    assert!(
        matches!(err, GatewayError::NotSent { .. }),
        "Stripe ran none of them: {err:?}"
    );
    assert_eq!(h.charges_of("ord-rate-2"), 0);
}
