//! A local HTTP server that speaks the Toss Payments API (at its root), Stripe's API (under
//! `/stripe`) and Paddle Billing's API (under `/paddle`), so the same client code runs in development, tests and production with no keys
//! and no network.
//!
//! State lives in memory behind one mutex; nothing is persisted. The test inputs that make a
//! payment fail, time out or recover are documented in this crate's `README.md`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), payledger_sandbox::SandboxError> {
//! let sandbox = payledger_sandbox::start(
//!     "127.0.0.1:0".parse().expect("literal address"),
//!     payledger_sandbox::SandboxConfig::default(),
//! )
//! .await?;
//! println!("Toss API at {}", sandbox.base_url());
//! sandbox.stop().await;
//! # Ok(())
//! # }
//! ```

mod behaviour;
mod http;
mod ids;
mod paddle;
mod payouts;
mod redelivery;
mod settlements;
mod store;
mod stripe;
mod wire;

pub use behaviour::{Behaviour, UnknownTestInput, MAX_FLAKY_FAILURES, MAX_SLOW_DELAY_MS};
pub use paddle::{
    paddle_signature_header, PaddleDeliveryRecord, PaddleSandboxConfig, DEFAULT_PADDLE_API_KEY,
    DEFAULT_PADDLE_WEBHOOK_SECRET, SANDBOX_APPROVE_CARD, SANDBOX_DECLINE_CARD,
    SANDBOX_PRICE_BASIC_MONTHLY, SANDBOX_PRICE_CREDITS_100, SANDBOX_PRICE_PRO_MONTHLY,
    SANDBOX_PRODUCT_CREDITS, SANDBOX_PRODUCT_MEMBERSHIP,
};
pub use settlements::{SettlementFault, StripeSettlementTerms, TossSettlementTerms, MAX_LATE_DAYS};
pub use stripe::{
    StripeSandboxConfig, WebhookDeliveryRecord, API_VERSION as STRIPE_API_VERSION,
    DEFAULT_STRIPE_SECRET_KEY, DEFAULT_STRIPE_WEBHOOK_SECRET,
};
pub use wire::SandboxStats;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};
use base64::Engine as _;
use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use store::{Store, StoreLimits};
use tokio::task::JoinHandle;

/// The secret key the sandbox accepts unless told otherwise. It is a test key by Toss's own
/// naming (`test_sk_`), and worthless outside the sandbox.
pub const DEFAULT_SECRET_KEY: &str = "test_sk_sandbox";

/// The longest a `sandbox_timeout_after_charge_` answer can be held back.
pub const MAX_TIMEOUT_AFTER_CHARGE_DELAY_MS: u64 = 120_000;

/// How the sandbox runs.
#[derive(Clone)]
pub struct SandboxConfig {
    /// The secret key clients must send as `Basic base64(secret_key + ":")`.
    pub secret_key: String,
    /// Requests with a larger body get 413.
    pub max_body_bytes: usize,
    /// How many payments, billing keys, idempotency records and order counters it holds, each.
    /// When one is full the sandbox answers 503 `SANDBOX_CAPACITY_EXCEEDED`; it never evicts.
    pub max_records: usize,
    /// How long a `sandbox_timeout_after_charge_` answer is held back (capped at
    /// [`MAX_TIMEOUT_AFTER_CHARGE_DELAY_MS`]).
    pub timeout_after_charge_delay_ms: u64,
    /// Worker threads. One is plenty: handlers never block, delays are timers.
    pub workers: usize,
    /// Whether the server stops itself on SIGINT/SIGTERM. Off by default, so a process that
    /// embeds the sandbox decides when it stops; a standalone sandbox turns it on.
    pub handle_signals: bool,
    /// The clock of the ledger that embeds the sandbox (its scenario clock on a test
    /// deployment), so the provider's times agree with the ledger's; the system clock if `None`.
    pub clock: Option<SandboxClock>,
    /// Stripe's side: its secret key and where its webhooks go.
    pub stripe: StripeSandboxConfig,
    /// The fee and delay of Toss's settlement report (`GET /v1/settlements`).
    pub toss_settlement: TossSettlementTerms,
    /// The fee and delay of Stripe's balance transactions and payouts.
    pub stripe_settlement: StripeSettlementTerms,
    /// Paddle's side: its API key and where its notifications go.
    pub paddle: PaddleSandboxConfig,
}

/// A source of the current time for the sandbox's answers.
pub type SandboxClock = std::sync::Arc<dyn Fn() -> chrono::DateTime<chrono::Utc> + Send + Sync>;

impl Default for SandboxConfig {
    fn default() -> SandboxConfig {
        SandboxConfig {
            secret_key: DEFAULT_SECRET_KEY.to_owned(),
            max_body_bytes: 16 * 1024,
            max_records: 1_000_000,
            timeout_after_charge_delay_ms: 30_000,
            workers: 1,
            handle_signals: false,
            clock: None,
            stripe: StripeSandboxConfig::default(),
            toss_settlement: TossSettlementTerms::default(),
            stripe_settlement: StripeSettlementTerms::default(),
            paddle: PaddleSandboxConfig::default(),
        }
    }
}

impl fmt::Debug for SandboxConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxConfig")
            .field("secret_key", &"***")
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_records", &self.max_records)
            .field(
                "timeout_after_charge_delay_ms",
                &self.timeout_after_charge_delay_ms,
            )
            .field("workers", &self.workers)
            .field("handle_signals", &self.handle_signals)
            .field("stripe", &self.stripe)
            .field("toss_settlement", &self.toss_settlement)
            .field("stripe_settlement", &self.stripe_settlement)
            .field("paddle", &self.paddle)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("invalid sandbox configuration: {0}")]
    InvalidConfig(&'static str),
    #[error("failed to listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the sandbox server failed")]
    Server(#[source] std::io::Error),
    #[error("the sandbox server task ended abnormally")]
    Task(#[source] tokio::task::JoinError),
    #[error("the sandbox has no such billing key")]
    UnknownBillingKey,
    #[error("the Stripe webhook endpoint was refused: {0}")]
    WebhookEndpoint(String),
}

/// A sandbox serving requests. Dropping it stops the server.
pub struct RunningSandbox {
    addr: SocketAddr,
    settlement_desk: web::Data<settlements::SettlementDesk>,
    shared: web::Data<http::Shared>,
    stripe: web::Data<stripe::http::StripeShared>,
    paddle: web::Data<paddle::http::PaddleShared>,
    /// Paddle's own billing: renews subscriptions as the sandbox's clock passes their periods.
    paddle_renewer: JoinHandle<()>,
    handle: ServerHandle,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

/// Starts a sandbox on `listen` (port 0 picks a free port; [`RunningSandbox::addr`] tells it).
///
/// Must be called from inside a Tokio runtime; the server runs as a task on it, its workers on
/// their own threads.
pub async fn start(
    listen: SocketAddr,
    config: SandboxConfig,
) -> Result<RunningSandbox, SandboxError> {
    if config.secret_key.is_empty()
        || config.stripe.secret_key.is_empty()
        || config.paddle.api_key.is_empty()
    {
        return Err(SandboxError::InvalidConfig(
            "secret_key, stripe.secret_key and paddle.api_key must not be empty",
        ));
    }
    if config.max_records == 0 || config.max_body_bytes == 0 || config.workers == 0 {
        return Err(SandboxError::InvalidConfig(
            "max_records, max_body_bytes and workers must be above zero",
        ));
    }
    let listener = TcpListener::bind(listen).map_err(|source| SandboxError::Bind {
        addr: listen,
        source,
    })?;
    let addr = listener.local_addr().map_err(|source| SandboxError::Bind {
        addr: listen,
        source,
    })?;
    let expected_authorization = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:", config.secret_key))
    );
    let delay_ms = config
        .timeout_after_charge_delay_ms
        .min(MAX_TIMEOUT_AFTER_CHARGE_DELAY_MS);
    let shared = web::Data::new(http::Shared {
        store: Mutex::new(Store::new(StoreLimits {
            max_records: config.max_records,
            timeout_after_charge_delay: Duration::from_millis(delay_ms),
            clock: config.clock.clone(),
        })),
        expected_authorization,
        max_body_bytes: config.max_body_bytes,
    });
    let deliverer = stripe::Deliverer::start();
    let mut stripe_store = stripe::StripeStore::new(stripe::StripeLimits {
        max_records: config.max_records,
        timeout_after_charge_delay: Duration::from_millis(delay_ms),
    });
    if let Some(url) = &config.stripe.webhook_url {
        stripe_store
            .add_endpoint(
                url.clone(),
                Some(config.stripe.webhook_secret.clone()),
                vec!["*".to_owned()],
            )
            .map_err(|_| SandboxError::InvalidConfig("stripe.webhook_url was refused"))?;
    }
    let stripe_shared = web::Data::new(stripe::http::StripeShared {
        store: Mutex::new(stripe_store),
        secret_key: config.stripe.secret_key.clone(),
        deliverer,
        max_body_bytes: config.max_body_bytes,
        rate_limited_requests: std::sync::atomic::AtomicU32::new(0),
    });
    let settlement_faults: settlements::SharedFaults = Default::default();
    let paddle_deliverer = paddle::PaddleDeliverer::start();
    if let Some(url) = &config.paddle.webhook_url {
        paddle_deliverer
            .add_destination(url.clone(), config.paddle.webhook_secret.clone())
            .map_err(|_| SandboxError::InvalidConfig("paddle.webhook_url was refused"))?;
    }
    let paddle_shared = web::Data::new(paddle::http::PaddleShared {
        store: Mutex::new(
            paddle::PaddleStore::new(config.max_records, config.clock.clone())
                .with_settlement_faults(settlement_faults.clone()),
        ),
        api_key: config.paddle.api_key.clone(),
        deliverer: paddle_deliverer,
        max_body_bytes: config.max_body_bytes,
        failing_requests: std::sync::atomic::AtomicU32::new(0),
        refused_key_requests: std::sync::atomic::AtomicU32::new(0),
    });
    let app_paddle = paddle_shared.clone();
    let paddle_renewer = tokio::spawn(paddle::http::renew_periodically(paddle_shared.clone()));
    let app_shared = shared.clone();
    let payouts = web::Data::new(payouts::Payouts::default());
    let settlement_desk = web::Data::new(settlements::SettlementDesk::new(
        config.toss_settlement,
        config.stripe_settlement,
        settlement_faults,
    ));
    let app_desk = settlement_desk.clone();
    let app_stripe = stripe_shared.clone();
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(app_shared.clone())
            .app_data(payouts.clone())
            .app_data(app_desk.clone())
            .app_data(app_stripe.clone())
            .app_data(app_paddle.clone())
            .service(
                web::scope("/stripe")
                    .route("/v1/payouts", web::get().to(settlements::stripe_payouts))
                    .route(
                        "/v1/balance_transactions",
                        web::get().to(settlements::stripe_balance_transactions),
                    )
                    .configure(stripe::http::routes),
            )
            .service(web::scope("/paddle").configure(paddle::http::routes))
            // Routes that span providers or sit beside the store, composed here so that the
            // Toss routes (`http`) and the others never reach into each other.
            .route("/sandbox/reset", web::post().to(reset_all))
            .route("/v2/payouts", web::post().to(payouts::request_payout))
            .route("/v1/settlements", web::get().to(settlements::settlements))
            .route(
                "/sandbox/settlements/{payment_key}/fault",
                web::post().to(settlements::set_fault),
            )
            .configure(http::routes)
    })
    .workers(config.workers)
    // Scripted delays can hold a request for 30 s; stopping must not wait for them.
    .shutdown_timeout(1);
    if !config.handle_signals {
        server = server.disable_signals();
    }
    let server = server
        .listen(listener)
        .map_err(|source| SandboxError::Bind {
            addr: listen,
            source,
        })?
        .run();
    let handle = server.handle();
    let task = tokio::spawn(server);
    tracing::info!(%addr, "payment sandbox listening");
    Ok(RunningSandbox {
        addr,
        settlement_desk,
        shared,
        stripe: stripe_shared,
        paddle: paddle_shared,
        paddle_renewer,
        handle,
        task: Some(task),
    })
}

impl RunningSandbox {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://{addr}`: the base URL a Toss client uses instead of `https://api.tosspayments.com`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://{addr}/stripe`: the API base a Stripe client uses instead of
    /// `https://api.stripe.com`.
    pub fn stripe_base_url(&self) -> String {
        format!("http://{}/stripe", self.addr)
    }

    /// What `GET /stripe/sandbox/stats` answers.
    pub fn stripe_stats(&self) -> serde_json::Value {
        self.stripe.store().stats()
    }

    /// What `GET /stripe/sandbox/deliveries` answers: every Stripe webhook sent, oldest first.
    pub fn stripe_deliveries(&self) -> Vec<WebhookDeliveryRecord> {
        self.stripe.deliverer.records()
    }

    /// Sends every later Stripe event to `url`, signed with `secret` (what
    /// `POST /stripe/v1/webhook_endpoints` does, with a secret of the caller's choosing).
    pub fn add_stripe_webhook_endpoint(&self, url: &str, secret: &str) -> Result<(), SandboxError> {
        self.stripe
            .store()
            .add_endpoint(
                url.to_owned(),
                Some(secret.to_owned()),
                vec!["*".to_owned()],
            )
            .map(|_| ())
            .map_err(|reply| {
                SandboxError::WebhookEndpoint(
                    reply.body["error"]["message"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
    }

    /// `http://{addr}/paddle`: the base URL a Paddle client uses instead of
    /// `https://api.paddle.com` (or `https://sandbox-api.paddle.com`).
    pub fn paddle_base_url(&self) -> String {
        format!("http://{}/paddle", self.addr)
    }

    /// What `GET /paddle/sandbox/deliveries` answers: every Paddle notification sent, oldest first.
    pub fn paddle_deliveries(&self) -> Vec<PaddleDeliveryRecord> {
        self.paddle.deliverer.records()
    }

    /// Sends every later Paddle notification to `url` too, signed with `secret` (what creating a
    /// notification destination in Paddle's dashboard does).
    pub fn add_paddle_webhook_destination(
        &self,
        url: &str,
        secret: &str,
    ) -> Result<(), SandboxError> {
        self.paddle
            .deliverer
            .add_destination(url.to_owned(), secret.to_owned())
            .map_err(SandboxError::WebhookEndpoint)
    }

    /// What `GET /sandbox/stats` answers.
    pub fn stats(&self) -> SandboxStats {
        self.shared.store().stats()
    }

    /// What `POST /sandbox/outage` does: every provider route answers 503 for `duration`
    /// (zero ends an outage).
    pub fn start_outage(&self, duration: Duration) {
        self.shared.store().start_outage(duration, Instant::now());
    }

    /// What `POST /sandbox/billing-keys/{billingKey}/behaviour` does.
    pub fn set_billing_key_behaviour(
        &self,
        billing_key: &str,
        behaviour: Behaviour,
    ) -> Result<(), SandboxError> {
        if self
            .shared
            .store()
            .set_billing_key_behaviour(billing_key, behaviour)
        {
            Ok(())
        } else {
            Err(SandboxError::UnknownBillingKey)
        }
    }

    /// What `POST /sandbox/settlements/{paymentKey}/fault` does: the payment's settlement lines
    /// come out wrong in the way `fault` says (the default clears it).
    pub fn set_settlement_fault(&self, payment_key: &str, fault: SettlementFault) -> bool {
        self.settlement_desk.set_fault(payment_key, fault)
    }

    /// What `POST /sandbox/reset` does: forgets every payment, key, record and counter.
    pub fn reset(&self) {
        self.settlement_desk.reset();
        self.shared.store().reset();
        self.stripe.store().reset();
        self.paddle.store().reset();
    }

    /// Stops accepting requests and drops those in flight (a held-back answer is never sent).
    pub async fn stop(mut self) {
        self.handle.stop(false).await;
        self.paddle_renewer.abort();
        self.stripe.deliverer.stop();
        self.paddle.deliverer.stop();
        if let Some(task) = self.task.take() {
            // The server's own result no longer matters once it is told to stop.
            let _ = task.await;
        }
    }

    /// Serves until the server stops (by a signal when `handle_signals` is on).
    pub async fn wait(mut self) -> Result<(), SandboxError> {
        match self.task.take() {
            Some(task) => task
                .await
                .map_err(SandboxError::Task)?
                .map_err(SandboxError::Server),
            None => Ok(()),
        }
    }
}

impl Drop for RunningSandbox {
    fn drop(&mut self) {
        self.paddle_renewer.abort();
        self.stripe.deliverer.stop();
        self.paddle.deliverer.stop();
        if self.task.is_some() {
            // The stop command is sent when `stop` is called; the returned future only waits
            // for it to finish, which a destructor cannot do.
            drop(self.handle.stop(false));
        }
    }
}

impl fmt::Debug for RunningSandbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunningSandbox")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// `POST /sandbox/reset`: forgets every provider's state (Toss's, Stripe's and Paddle's).
async fn reset_all(
    shared: web::Data<http::Shared>,
    desk: web::Data<settlements::SettlementDesk>,
    stripe: web::Data<stripe::http::StripeShared>,
    paddle: web::Data<paddle::http::PaddleShared>,
    req: actix_web::HttpRequest,
) -> actix_web::HttpResponse {
    if let Some(refused) = http::authenticate_request(&shared, &req) {
        return refused;
    }
    shared.store().reset();
    stripe.store().reset();
    desk.reset();
    paddle.store().reset();
    actix_web::HttpResponse::Ok().json(serde_json::json!({ "reset": true }))
}
