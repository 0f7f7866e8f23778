//! A relay wired like `serve` wires it: a fresh database, the sandbox provider, the payment flows.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use payledger_app::clock::{Clock, SystemClock};
use payledger_app::context::RequestContext;
use payledger_app::executor::Executor;
use payledger_app::payments::{Payments, PaymentsConfig, PlaceOrderInput};
use payledger_connector_toss::{TossConfig, TossGateway};
use payledger_domain::codec;
use payledger_domain::ids::{CustomerId, OrderId, PayeeId};
use payledger_domain::money::{Currency, Money};
use payledger_domain::webhook::{self, WebhookDeliveryEvent};
use payledger_sandbox::{RunningSandbox, SandboxConfig};
use payledger_store::{EventStore, WriterConfig};
use payledger_testdb::TestDatabase;
use payledger_webhook_relay::{
    InboundConfig, InboundWorker, Provider, Relay, RetryPolicy, WebhookSettings,
};
use payledger_webhooks::WebhookSecret;
use sha2::Sha256;
use std::net::SocketAddr;
use std::sync::Arc;

pub const STRIPE_SECRET: &str = "whsec_stripe_current_0123456789";
pub const STRIPE_PREVIOUS_SECRET: &str = "whsec_stripe_previous_9876543210";
pub const TOSS_SECURITY_KEY: &str = "toss_security_key_for_payouts";
/// Retries a hundred thousand times faster than production: the same eight attempts in ~1 s.
pub const FAST_RETRIES: RetryPolicy = RetryPolicy {
    delay_divisor: 100_000,
};

pub struct Harness {
    pub db: TestDatabase,
    pub sandbox: RunningSandbox,
    pub payments: Arc<Payments>,
    pub relay: Arc<Relay>,
    pub worker: InboundWorker,
    pub store: EventStore,
    /// The worker's own gateway for re-fetches (its own circuit breaker), as `serve` wires it.
    pub lookups: Arc<TossGateway>,
}

pub async fn harness() -> Harness {
    harness_with(SandboxConfig::default(), 2_000).await
}

pub async fn harness_with(sandbox_config: SandboxConfig, gateway_timeout_ms: u64) -> Harness {
    let db = TestDatabase::fresh().await;
    let sandbox = payledger_sandbox::start(SocketAddr::from(([127, 0, 0, 1], 0)), sandbox_config)
        .await
        .expect("start the sandbox");
    let mut gateway_config = TossConfig::sandbox(sandbox.base_url());
    gateway_config.transport.timeout_ms = gateway_timeout_ms;
    gateway_config.transport.lookup_timeout_ms = gateway_timeout_ms;
    // A short open circuit, so a test can wait out an outage in well under a second.
    gateway_config.transport.circuit.open_ms = 200;
    let lookups = Arc::new(TossGateway::new(gateway_config.clone()).expect("lookup gateway"));
    let gateway = TossGateway::new(gateway_config).expect("gateway");
    let store = EventStore::new(db.app_pool.clone(), WriterConfig::default());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let payments = Arc::new(Payments::new(
        Arc::new(Executor::new(store.clone())),
        Arc::new(gateway),
        clock.clone(),
        PaymentsConfig::default(),
    ));
    let inbound = InboundConfig::default()
        .with_secrets(
            Provider::Stripe,
            vec![
                WebhookSecret::new(STRIPE_SECRET),
                WebhookSecret::new(STRIPE_PREVIOUS_SECRET),
            ],
        )
        .expect("stripe secrets")
        .with_secrets(Provider::Toss, vec![WebhookSecret::new(TOSS_SECURITY_KEY)])
        .expect("toss security key");
    let settings = WebhookSettings {
        inbound,
        retry: FAST_RETRIES,
        poll_interval_ms: 20,
        ..WebhookSettings::default()
    };
    let relay = Arc::new(Relay::new(
        db.app_pool.clone(),
        store.clone(),
        settings,
        clock,
    ));
    let worker =
        InboundWorker::new(relay.clone(), payments.clone()).with_lookup_gateway(lookups.clone());
    Harness {
        db,
        sandbox,
        payments,
        relay,
        worker,
        store,
        lookups,
    }
}

impl Harness {
    pub async fn place_order(&self, order_id: &str, amount_minor: i64) -> OrderId {
        let order_id = OrderId::parse(order_id).unwrap();
        self.payments
            .place_order(
                PlaceOrderInput {
                    order_id: Some(order_id.clone()),
                    amount: Money::new(amount_minor, Currency::parse("KRW").unwrap()).unwrap(),
                    customer_id: CustomerId::parse("cust_1").unwrap(),
                    payee_id: PayeeId::parse("payee_1").unwrap(),
                    order_name: "Yoga class".into(),
                    service_starts_at: None,
                    provider: None,
                },
                &RequestContext::system("test"),
            )
            .await
            .expect("place the order");
        order_id
    }

    /// The events recorded about one delivery, decoded.
    pub async fn delivery_events(
        &self,
        provider: &str,
        event_id: &str,
    ) -> Vec<WebhookDeliveryEvent> {
        self.store
            .read_whole_stream(&webhook::stream_id(provider, event_id))
            .await
            .unwrap()
            .iter()
            .map(|e| codec::decode(&e.event_type, &e.payload).unwrap())
            .collect()
    }

    pub async fn inbox_status(&self, provider: &str, event_id: &str) -> (String, i32) {
        sqlx::query_as(
            "SELECT status, attempts FROM webhook_inbox WHERE provider = $1 AND event_id = $2",
        )
        .bind(provider)
        .bind(event_id)
        .fetch_one(&self.db.app_pool)
        .await
        .unwrap()
    }
}

/// `Stripe-Signature` as Stripe computes it: hex HMAC-SHA256 over `"{t}.{body}"`, keyed with the
/// secret's text.
pub fn stripe_signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// `tosspayments-webhook-signature` as Toss documents it: base64 HMAC-SHA256 over
/// `"{body}:{transmission-time}"`.
pub fn toss_signature(secret: &str, body: &[u8], transmission_time: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    mac.update(format!(":{transmission_time}").as_bytes());
    format!(
        "v1:{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}
