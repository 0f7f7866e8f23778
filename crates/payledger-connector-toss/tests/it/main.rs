//! `TossGateway` against a real `payledger-sandbox` on 127.0.0.1: the same HTTP, the same codes.

mod billing;
mod cancel;
mod confirm;
mod resilience;
mod settlements;

use payledger_connector_toss::{TossConfig, TossGateway};
use payledger_domain::money::Currency;
use payledger_domain::provider_failure::{FailureClass, ProviderFailure};
use payledger_gateway::circuit::CircuitConfig;
use payledger_gateway::transport::TransportLimits;
use payledger_gateway::{ConfirmRequest, GatewayError};
use payledger_sandbox::{RunningSandbox, SandboxConfig};

/// A sandbox and a gateway pointed at it, with timeouts short enough for a fast suite.
pub struct World {
    pub sandbox: RunningSandbox,
    pub gateway: TossGateway,
}

/// Short timeouts and backoffs; a circuit that needs 5 consecutive failures.
pub fn fast_config(base_url: String) -> TossConfig {
    TossConfig {
        transport: TransportLimits {
            connect_timeout_ms: 500,
            timeout_ms: 2_000,
            lookup_timeout_ms: 2_000,
            max_attempts: 3,
            backoff_base_ms: 5,
            backoff_max_ms: 20,
            circuit: CircuitConfig {
                failure_threshold: 5,
                open_ms: 60_000,
            },
        },
        ..TossConfig::sandbox(base_url)
    }
}

pub async fn sandbox() -> RunningSandbox {
    payledger_sandbox::start("127.0.0.1:0".parse().unwrap(), SandboxConfig::default())
        .await
        .unwrap()
}

pub async fn world() -> World {
    world_with(|config| config).await
}

pub async fn world_with(adjust: impl FnOnce(TossConfig) -> TossConfig) -> World {
    let sandbox = sandbox().await;
    let gateway = TossGateway::new(adjust(fast_config(sandbox.base_url()))).unwrap();
    World { sandbox, gateway }
}

pub fn confirm_request(payment_key: &str, order_id: &str, amount_minor: i64) -> ConfirmRequest {
    ConfirmRequest {
        payment_key: payment_key.to_owned(),
        order_id: order_id.to_owned(),
        amount_minor,
        currency: Currency::KRW,
        idempotency_key: format!("confirm:{order_id}"),
    }
}

/// The refusal inside an error, or a panic naming what came instead.
pub fn refusal<T: std::fmt::Debug>(result: Result<T, GatewayError>) -> ProviderFailure {
    match result {
        Err(GatewayError::Refused(failure)) => failure,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

pub fn assert_refused<T: std::fmt::Debug>(
    result: Result<T, GatewayError>,
    class: FailureClass,
    provider_code: &str,
) {
    let failure = refusal(result);
    assert_eq!(failure.class, class, "{failure:?}");
    assert_eq!(failure.provider_code, provider_code, "{failure:?}");
}
