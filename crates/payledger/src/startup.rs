//! Builds the running service from settings: database, provider, command side, projectors,
//! background jobs and the HTTP server. Tests build it the same way on port 0.

use crate::database::Database;
use actix_web::middleware::from_fn;
use anyhow::Context;
use payledger_app::clock::{Clock, SystemClock};
use payledger_app::executor::Executor;
use payledger_app::operations::{Operations, SalesSwitches};
use payledger_app::payments::{Payments, PaymentsConfig};
use payledger_connector_toss::{TossConfig, TossGateway, TossSecretKey};
use payledger_gateway::ProviderRegistry;
use payledger_http::idempotency::{IdempotencyConfig, IdempotencyStore};
use payledger_http::AppState;
use payledger_projector::{RunnerConfig, Wakeup};
use payledger_sandbox::{RunningSandbox, SandboxConfig};
use payledger_store::{EventStore, WriterConfig};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Which payment provider payledger talks to.
#[derive(Debug, Clone)]
pub enum ProviderSettings {
    /// Start the sandbox in-process (the default: no keys, no network).
    EmbeddedSandbox,
    /// A sandbox or Toss-compatible API already running at this URL, with the sandbox key.
    Sandbox { base_url: String },
    /// Toss Payments with a real secret key.
    Toss {
        base_url: String,
        secret_key: TossSecretKey,
    },
}

impl ProviderSettings {
    /// `test` against a sandbox or with a Toss test key (`test_sk_…`), else `live`.
    pub fn mode(&self) -> &'static str {
        match self {
            ProviderSettings::EmbeddedSandbox | ProviderSettings::Sandbox { .. } => "test",
            ProviderSettings::Toss { secret_key, .. }
                if secret_key.expose().starts_with("test_") =>
            {
                "test"
            }
            ProviderSettings::Toss { .. } => "live",
        }
    }

    /// The sandbox's base URL when the connectors run against one.
    pub fn sandbox_base_url<'a>(&'a self, embedded: Option<&'a RunningSandbox>) -> Option<String> {
        match self {
            ProviderSettings::EmbeddedSandbox => embedded.map(|s| s.base_url()),
            ProviderSettings::Sandbox { base_url } => Some(base_url.clone()),
            ProviderSettings::Toss { .. } => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    /// Migrations run with this URL when set (the schema owner), else with `database_url`.
    pub migrate_database_url: Option<String>,
    pub provider: ProviderSettings,
    pub db_max_connections: u32,
    pub http_workers: usize,
    /// How often the reconciler looks for unknown outcomes; 0 turns it off.
    pub reconcile_interval_ms: u64,
    /// How old an unknown outcome must be before the reconciler asks the provider.
    pub reconcile_after_ms: u64,
    pub runner: RunnerConfig,
    pub gateway_timeout_ms: Option<u64>,
    /// Webhooks in (secrets) and out (endpoints, signing key); `WebhookSettings::from_env()`.
    pub webhooks: payledger_webhook_relay::WebhookSettings,
    /// How long the provider's circuit stays open before a probe (default: the gateway's).
    pub gateway_circuit_open_ms: Option<u64>,
    /// Settlement week time zone and platform fee; `SettlementConfig::from_env()`.
    pub settlement: payledger_app::settlements::SettlementConfig,
    /// The clock commands read; the system clock when `None`. Tests pass a `ManualClock` to
    /// put a cancellation exactly 48 hours before a service.
    pub clock: Option<ClockSetting>,
    /// Billing scheduler interval, plan catalogue and dunning policy (the environment's
    /// `PAYLEDGER_BILLING_*` / `PAYLEDGER_PLAN_CATALOGUE` / `PAYLEDGER_DUNNING_*` win).
    pub billing: crate::billing_jobs::BillingSettings,
    /// Stripe with keys (`STRIPE_SECRET_KEY`, `STRIPE_API_BASE`; `Settings::stripe_from_env`).
    /// `None`: Stripe runs against the sandbox's `/stripe` when there is a sandbox, and is not
    /// configured otherwise (orders with `provider: stripe` get 400 E_PROVIDER_NOT_CONFIGURED).
    pub stripe: Option<payledger_connector_stripe::StripeConfig>,
}

/// A clock to build the service with (a wrapper so `Settings` stays `Debug`).
#[derive(Clone)]
pub struct ClockSetting(pub Arc<dyn Clock>);

impl std::fmt::Debug for ClockSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClockSetting({})", self.0.now())
    }
}

impl Settings {
    /// The embedded defaults: local cluster in `./.payledger`, sandbox provider.
    pub fn embedded(listen: SocketAddr, data_dir: PathBuf) -> Settings {
        Settings {
            listen,
            data_dir,
            database_url: None,
            migrate_database_url: None,
            provider: ProviderSettings::EmbeddedSandbox,
            db_max_connections: 32,
            http_workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            reconcile_interval_ms: 30_000,
            reconcile_after_ms: 60_000,
            runner: RunnerConfig::default(),
            gateway_timeout_ms: None,
            webhooks: payledger_webhook_relay::WebhookSettings::default(),
            gateway_circuit_open_ms: None,
            settlement: payledger_app::settlements::SettlementConfig::default(),
            clock: None,
            billing: crate::billing_jobs::BillingSettings::default(),
            stripe: None,
        }
    }

    /// Stripe from the environment: `STRIPE_SECRET_KEY` (`sk_live_…` / `sk_test_…`, never
    /// logged) and optionally `STRIPE_API_BASE` (default `https://api.stripe.com`).
    pub fn stripe_from_env() -> Option<payledger_connector_stripe::StripeConfig> {
        let secret = std::env::var("STRIPE_SECRET_KEY").ok()?;
        let base_url = std::env::var("STRIPE_API_BASE")
            .unwrap_or_else(|_| payledger_connector_stripe::STRIPE_API_BASE_URL.to_string());
        Some(payledger_connector_stripe::StripeConfig::new(
            base_url,
            payledger_connector_stripe::StripeSecretKey::new(secret),
        ))
    }

    /// Reads the provider from the environment: `TOSS_SECRET_KEY` (and optionally
    /// `TOSS_API_BASE`) selects Toss; `PAYLEDGER_SANDBOX_URL` an external sandbox; else embedded.
    pub fn provider_from_env() -> ProviderSettings {
        if let Ok(secret) = std::env::var("TOSS_SECRET_KEY") {
            let base_url = std::env::var("TOSS_API_BASE")
                .unwrap_or_else(|_| "https://api.tosspayments.com".to_string());
            return ProviderSettings::Toss {
                base_url,
                secret_key: TossSecretKey::new(secret),
            };
        }
        if let Ok(base_url) = std::env::var("PAYLEDGER_SANDBOX_URL") {
            return ProviderSettings::Sandbox { base_url };
        }
        ProviderSettings::EmbeddedSandbox
    }
}

pub struct Application {
    port: u16,
    server: actix_web::dev::Server,
    pub state: actix_web::web::Data<AppState>,
    pub database: Arc<Database>,
    background: Vec<JoinHandle<()>>,
    sandbox: Option<RunningSandbox>,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let database = Arc::new(
            Database::open(
                settings.database_url.as_deref(),
                settings.migrate_database_url.as_deref(),
                &settings.data_dir,
            )
            .await?,
        );
        let pool = database.app_pool(settings.db_max_connections).await?;

        let (providers, sandbox) = build_registry(&settings).await?;
        let clock: Arc<dyn Clock> = match &settings.clock {
            Some(ClockSetting(clock)) => clock.clone(),
            None => Arc::new(SystemClock),
        };
        let store = EventStore::new(pool.clone(), WriterConfig::default());
        let executor = Arc::new(Executor::new(store.clone()));
        let switches = Arc::new(SalesSwitches::new(executor.clone()));
        let payments = Arc::new(
            Payments::with_providers(
                executor.clone(),
                Arc::new(providers),
                clock.clone(),
                PaymentsConfig::default(),
            )
            .with_sales_switches(switches.clone())
            .with_discrepancy_observer(Arc::new(|provider: &str| {
                payledger_metrics::metrics().provider_discrepancy(provider)
            })),
        );
        let booking_services =
            actix_web::web::Data::new(payledger_http::bookings::BookingServices {
                bookings: Arc::new(payledger_app::bookings::Bookings::new(
                    executor.clone(),
                    payments.clone(),
                )),
                claims: Arc::new(payledger_app::claims::Claims::new(
                    executor.clone(),
                    payments.clone(),
                )),
                settlements: Arc::new(payledger_app::settlements::Settlements::new(
                    executor.clone(),
                    payments.clock().clone(),
                    settings.settlement.clone(),
                )),
            });
        let billing_settings = settings.billing.clone().with_env()?;
        let subscriptions = crate::billing_jobs::build(
            &billing_settings,
            &settings.data_dir,
            &settings.provider,
            executor.clone(),
            payments.gateway().clone(),
            clock.clone(),
            switches.clone(),
        )?;
        let operations = Arc::new(Operations::new(executor, payments.clone(), switches, clock));
        crate::keys::bootstrap(&pool, &settings.data_dir).await?;
        let idempotency = Arc::new(IdempotencyStore::new(
            pool.clone(),
            IdempotencyConfig::default(),
        ));

        let mut background = Vec::new();
        background.push(tokio::spawn(payledger_http::idempotency::run_purger(
            idempotency.clone(),
        )));
        let wakeup = Wakeup::default();
        background.push(tokio::spawn(payledger_projector::listen_for_events(
            pool.clone(),
            wakeup.clone(),
        )));
        let mut projection_positions = HashMap::new();
        let mut followers = Vec::new();
        for projection in payledger_read_models::all_projections() {
            payledger_projector::ensure_live(&pool, projection.as_ref())
                .await
                .with_context(|| {
                    format!("failed to create the {} read model", projection.name())
                })?;
            let (sender, receiver) = tokio::sync::watch::channel(0);
            projection_positions.insert(projection.name().to_string(), receiver);
            followers.push((projection, Arc::new(sender)));
        }
        if settings.reconcile_interval_ms > 0 {
            background.push(tokio::spawn(crate::jobs::run_reconciler(
                payments.clone(),
                pool.clone(),
                Duration::from_millis(settings.reconcile_interval_ms),
                chrono::Duration::milliseconds(settings.reconcile_after_ms as i64),
            )));
        }

        let relay = Arc::new(payledger_webhook_relay::Relay::new(
            pool.clone(),
            store.clone(),
            settings.webhooks.clone(),
            payments.clock().clone(),
        ));
        background
            .extend(crate::webhook_jobs::spawn(&relay, &payments, &pool, &mut followers).await?);
        // One runner for the read models and the outbox: one transaction per batch for all.
        background.push(tokio::spawn(payledger_projector::run_projections(
            database.app.clone(),
            followers,
            settings.runner.clone(),
            wakeup.clone(),
        )));
        if billing_settings.scheduler_interval_ms > 0 {
            background.push(tokio::spawn(crate::billing_jobs::run_scheduler(
                subscriptions.clone(),
                pool.clone(),
                Duration::from_millis(billing_settings.scheduler_interval_ms),
            )));
        }
        let server_subscriptions = actix_web::web::Data::from(subscriptions);
        let server_relay = actix_web::web::Data::from(relay);
        background.extend(crate::booking_jobs::spawn(
            booking_services.bookings.clone(),
            booking_services.claims.clone(),
            booking_services.settlements.clone(),
            database.app.clone(),
            pool.clone(),
            wakeup.clone(),
        ));

        let state = actix_web::web::Data::new(AppState {
            payments,
            store,
            read_pool: pool.clone(),
            projection_positions,
            access: Arc::new(payledger_http::auth::AccessControl::new(pool)),
            idempotency,
            operations,
        });
        let listener = TcpListener::bind(settings.listen)
            .with_context(|| format!("failed to listen on {}", settings.listen))?;
        let port = listener.local_addr()?.port();
        let server_state = state.clone();
        let server = actix_web::HttpServer::new(move || {
            actix_web::App::new()
                .app_data(server_state.clone())
                .app_data(server_relay.clone())
                .app_data(server_subscriptions.clone())
                .app_data(booking_services.clone())
                .wrap(from_fn(payledger_http::idempotency::idempotency))
                .wrap(from_fn(payledger_http::auth::authenticate))
                .wrap_fn(payledger_http::request_logging)
                .wrap_fn(payledger_http::metrics::track)
                .configure(payledger_http::configure)
        })
        .workers(settings.http_workers.max(1))
        .shutdown_timeout(10)
        .listen(listener)?
        .run();
        Ok(Application {
            port,
            server,
            state,
            database,
            background,
            sandbox,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The embedded sandbox's address, when there is one.
    pub fn sandbox(&self) -> Option<&RunningSandbox> {
        self.sandbox.as_ref()
    }

    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let result = self.server.await;
        for task in &self.background {
            task.abort();
        }
        if let Some(sandbox) = self.sandbox {
            sandbox.stop().await;
        }
        result.context("the HTTP server failed")
    }
}

/// The connectors this deployment pays with, by provider name: THE place a connector is
/// registered. Each connector reads its own configuration (keys from the environment, test or
/// live mode, base URL); with no keys it runs against the embedded sandbox, which speaks every
/// provider's API (Toss at its root, Stripe under `/stripe`).
///
/// To add a provider: build its connector (an `Arc<dyn PaymentGateway>` whose `provider_name()`
/// is the name orders use and whose `supported_currencies()` says what it can charge) and
/// `registry.register(...)` it below. Orders name it at placement (`"provider": "NAME"`); every
/// later call for such an order goes to it.
async fn build_registry(
    settings: &Settings,
) -> anyhow::Result<(ProviderRegistry, Option<RunningSandbox>)> {
    let (config, sandbox) = match &settings.provider {
        ProviderSettings::EmbeddedSandbox => {
            let sandbox = payledger_sandbox::start(
                SocketAddr::from(([127, 0, 0, 1], 0)),
                SandboxConfig::default(),
            )
            .await
            .context("failed to start the embedded sandbox provider")?;
            tracing::info!(url = %sandbox.base_url(), "sandbox payment provider started in-process");
            (TossConfig::sandbox(sandbox.base_url()), Some(sandbox))
        }
        ProviderSettings::Sandbox { base_url } => (TossConfig::sandbox(base_url.clone()), None),
        ProviderSettings::Toss {
            base_url,
            secret_key,
        } => (TossConfig::new(base_url.clone(), secret_key.clone()), None),
    };
    let mut config = config;
    if let Some(timeout_ms) = settings.gateway_timeout_ms {
        config.timeout_ms = timeout_ms;
    }
    if let Some(open_ms) = settings.gateway_circuit_open_ms {
        config.circuit.open_ms = open_ms;
    }
    tracing::info!(
        provider = payledger_connector_toss::PROVIDER_NAME,
        mode = settings.provider.mode(),
        "payment connector configured"
    );
    let toss = TossGateway::new(config).context("failed to configure the Toss connector")?;
    // Toss is the default: orders that name no provider pay with it.
    let mut registry = ProviderRegistry::new(Arc::new(toss));
    // Stripe: with keys when given, else the sandbox's `/stripe` when there is a sandbox.
    let stripe = settings.stripe.clone().or_else(|| {
        settings
            .provider
            .sandbox_base_url(sandbox.as_ref())
            .map(|base| payledger_connector_stripe::StripeConfig::sandbox(format!("{base}/stripe")))
    });
    if let Some(mut config) = stripe {
        if let Some(timeout_ms) = settings.gateway_timeout_ms {
            config.timeout_ms = timeout_ms;
        }
        if let Some(open_ms) = settings.gateway_circuit_open_ms {
            config.circuit.open_ms = open_ms;
        }
        tracing::info!(
            provider = payledger_connector_stripe::PROVIDER_NAME,
            test_mode = config.secret_key.is_test_mode(),
            "payment connector configured"
        );
        let stripe = payledger_connector_stripe::StripeGateway::new(config)
            .context("failed to configure the Stripe connector")?;
        registry
            .register(Arc::new(stripe))
            .context("failed to register the Stripe connector")?;
    }
    Ok((registry, sandbox))
}
