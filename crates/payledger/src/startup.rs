//! Builds the running service from settings: database, provider, command side, projectors,
//! background jobs and the HTTP server. Tests build it the same way on port 0.

use crate::database::Database;
pub use crate::providers::ProviderSettings;
use actix_web::middleware::from_fn;
use anyhow::Context;
use payledger_app::clock::{Clock, SystemClock};
use payledger_app::executor::Executor;
use payledger_app::operations::{Operations, SalesSwitches};
use payledger_app::payments::{Payments, PaymentsConfig};
use payledger_app::scenario_clock::{DueJob, ScenarioClock};
use payledger_connector_toss::{TossConfig, TossGateway, TossSecretKey};
use payledger_gateway::{PaymentGateway, ProviderRegistry};
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
    /// Webhooks in (secrets) and out (endpoints, signing key); `WebhookSettings::from_settings`.
    pub webhooks: payledger_webhook_relay::WebhookSettings,
    /// How long the provider's circuit stays open before a probe (default: the gateway's).
    pub gateway_circuit_open_ms: Option<u64>,
    /// Settlement week time zone and platform fee; `SettlementConfig::from_settings`.
    pub settlement: payledger_app::settlements::SettlementConfig,
    /// The clock commands read; the system clock when `None`. Tests pass a `ManualClock` to
    /// put a cancellation exactly 48 hours before a service.
    pub clock: Option<ClockSetting>,
    /// Billing scheduler interval, plan catalogue and dunning policy (the environment's
    /// `PAYLEDGER_BILLING_*` / `PAYLEDGER_PLAN_CATALOGUE` / `PAYLEDGER_DUNNING_*` win).
    pub billing: crate::billing_jobs::BillingSettings,
    /// Signed checkpoints of the log: cadence, key and export file (`PAYLEDGER_CHECKPOINT*`,
    /// `PAYLEDGER_AUDIT_*` win).
    pub checkpoints: crate::audit_checkpoints::CheckpointSettings,
    /// `serve --test-clock`: every rule reads the database's scenario clock, which admins move
    /// (`/v1/admin/test-clock`). Refused with live provider keys.
    pub test_clock: bool,
    /// Where a new scenario clock starts (default: now). A database's clock keeps its time.
    pub test_clock_start: Option<chrono::DateTime<chrono::Utc>>,
    /// When statements are confirmed and paid; `SettlementSchedule::from_env()`.
    pub settlement_schedule: crate::settlement_jobs::SettlementSchedule,
    /// How often `serve` confirms and pays what is due; 0 turns the automation off.
    pub settlement_interval_ms: u64,
    /// The alert channel (a signed webhook); off without a URL. `AlertSettings::from_env()`.
    pub alerts: crate::alerts::AlertSettings,
    /// Settlement imports and their schedule (issue 18).
    pub reconciliation: crate::reconciliation_jobs::ReconciliationSettings,
    /// Read replicas (`DATABASE_REPLICA_URL`, `PAYLEDGER_REPLICA_*`); none by default.
    pub replicas: crate::replicas::ReplicaSettings,
    /// Longest database call and read request (`PAYLEDGER_DATABASE_CALL_TIMEOUT_MS`;
    /// `payledger_store::call_bounds`).
    pub database_call_timeout_ms: u64,
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
            checkpoints: crate::audit_checkpoints::CheckpointSettings::default(),
            test_clock: false,
            test_clock_start: None,
            settlement_schedule: crate::settlement_jobs::SettlementSchedule::default(),
            settlement_interval_ms: crate::settlement_jobs::SETTLEMENT_PASS_INTERVAL_MS,
            alerts: crate::alerts::AlertSettings::default(),
            reconciliation: crate::reconciliation_jobs::ReconciliationSettings::default(),
            replicas: crate::replicas::ReplicaSettings::default(),
            database_call_timeout_ms:
                payledger_store::call_bounds::DEFAULT_DATABASE_CALL_TIMEOUT_MS,
        }
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

        let mut background = Vec::new();
        let scenario_clock = if settings.test_clock {
            if settings.provider.has_live_keys() {
                anyhow::bail!(
                    "--test-clock is refused with live provider keys: a scenario clock must never \
                     drive real money (use the sandbox or a test_ key)"
                );
            }
            let start = settings
                .test_clock_start
                .unwrap_or_else(|| SystemClock.now());
            let clock = ScenarioClock::open(pool.clone(), start)
                .await
                .context("failed to open the scenario clock")?;
            background.push(tokio::spawn(clock.clone().follow()));
            tracing::warn!(now = %clock.now(), "test clock on: time moves only when an admin moves it");
            Some(clock)
        } else {
            None
        };
        let clock: Arc<dyn Clock> = match (&scenario_clock, &settings.clock) {
            (Some(scenario), _) => scenario.clone(),
            (None, Some(ClockSetting(clock))) => clock.clone(),
            (None, None) => Arc::new(SystemClock),
        };
        // The embedded sandbox stamps its answers with the same clock, so a provider fact and
        // the ledger's record of it tell the same time on a test deployment too.
        let sandbox_clock: payledger_sandbox::SandboxClock = {
            let clock = clock.clone();
            Arc::new(move || clock.now())
        };
        let (providers, webhook_lookups, sandbox) =
            build_registry(&settings, sandbox_clock).await?;
        let store = EventStore::new(
            pool.clone(),
            WriterConfig {
                call_timeout_ms: settings.database_call_timeout_ms,
                ..WriterConfig::default()
            },
        );
        // Personal fields are sealed per data subject on their way into the log (issue 20).
        let vault = crate::privacy_cli::vault(&pool, &settings.data_dir)?
            .map(|vault| Arc::new(vault.with_call_timeout_ms(settings.database_call_timeout_ms)));
        let executor = match &vault {
            Some(vault) => Executor::new(store.clone()).with_vault(vault.clone()),
            None => Executor::new(store.clone()),
        };
        let executor = Arc::new(executor);
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
        let booking_services = Arc::new(payledger_http::bookings::BookingServices {
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
        // Paddle bills its own subscriptions: cancels go to its API, and its notifications are
        // applied through this client (its own circuit breaker, as Toss's re-fetches have).
        let sandbox_base_url = settings.provider.sandbox_base_url(sandbox.as_ref());
        let paddle = match paddle_config(
            sandbox_base_url.as_deref(),
            settings.gateway_timeout_ms.unwrap_or(15_000),
            payledger_gateway::circuit::CircuitConfig::default(),
        ) {
            Some(config) => Some(Arc::new(
                payledger_connector_paddle::PaddleGateway::new(config)
                    .context("failed to configure the Paddle connector")?,
            )),
            None => None,
        };
        let provider_billing: Vec<
            Arc<dyn payledger_gateway::provider_subscriptions::ProviderSubscriptions>,
        > = match &paddle {
            Some(paddle) => vec![paddle.clone()],
            None => vec![],
        };
        let subscriptions = crate::billing_jobs::build(
            &billing_settings,
            &settings.data_dir,
            &settings.provider,
            executor.clone(),
            payments.gateway().clone(),
            clock.clone(),
            switches.clone(),
            provider_billing,
        )?;
        let executor_for_jobs = executor.clone();
        let reconciliation = Arc::new(crate::reconciliation_jobs::build(
            &settings.reconciliation,
            &settings.provider,
            settings.provider.sandbox_base_url(sandbox.as_ref()),
            executor.clone(),
            payments.clone(),
            clock.clone(),
        )?);
        // On the scenario clock a move runs it (below), never the wall clock.
        if settings.reconciliation.interval_s > 0 && scenario_clock.is_none() {
            background.push(tokio::spawn(crate::reconciliation_jobs::run_scheduler(
                reconciliation.clone(),
                pool.clone(),
                settings.reconciliation.clone(),
            )));
        }
        let operations = Arc::new(Operations::new(executor, payments.clone(), switches, clock));
        crate::keys::bootstrap(&pool, &settings.data_dir).await?;
        let idempotency = Arc::new(IdempotencyStore::new(
            pool.clone(),
            IdempotencyConfig {
                call_timeout_ms: settings.database_call_timeout_ms,
                ..IdempotencyConfig::default()
            },
        ));

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
        if let Some(paddle) = &paddle {
            relay.apply_paddle_with(Arc::new(payledger_webhook_relay::PaddleApplier {
                paddle: paddle.clone(),
                subscriptions: subscriptions.clone(),
                payments: payments.clone(),
                price_map: billing_settings.paddle_price_map.clone(),
            }));
        }
        background.extend(
            crate::webhook_jobs::spawn(&relay, &payments, webhook_lookups, &pool, &mut followers)
                .await?,
        );
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
        let checkpoint_settings = settings.checkpoints.clone().with_env()?;
        if checkpoint_settings.enabled {
            let files = checkpoint_settings.files(&settings.data_dir);
            let signer = crate::audit_checkpoints::load_signer(&files, true)?
                .context("no checkpoint signing key")?;
            background.push(tokio::spawn(crate::audit_checkpoints::run_sealer(
                pool.clone(),
                signer,
                files.export_file,
                checkpoint_settings,
            )));
        }
        let settlement_jobs = Arc::new(crate::settlement_jobs::SettlementJobs {
            settlements: booking_services.settlements.clone(),
            payouts: build_payouts(&settings, sandbox.as_ref())?,
            schedule: settings.settlement_schedule.clone(),
            pool: pool.clone(),
        });
        if settings.settlement_interval_ms > 0 {
            background.push(tokio::spawn(
                settlement_jobs
                    .clone()
                    .run(Duration::from_millis(settings.settlement_interval_ms)),
            ));
        }
        if settings.alerts.url.is_some() {
            let monitor = crate::alerts::AlertMonitor::new(
                settings.alerts.clone(),
                pool.clone(),
                payments.gateway().clone(),
            )?;
            background.push(tokio::spawn(monitor.run()));
        }
        let reminders: Arc<dyn DueJob> = Arc::new(crate::clock_jobs::RemindersJob {
            reminders: Arc::new(payledger_app::reminders::SessionReminders::new(
                executor_for_jobs.clone(),
                booking_services.bookings.clone(),
                settings.settlement.time_zone,
            )),
            pool: pool.clone(),
        });
        let confirmations: Arc<dyn DueJob> = Arc::new(crate::clock_jobs::BookingConfirmationsJob {
            bookings: booking_services.bookings.clone(),
            pool: pool.clone(),
        });
        if settings.settlement_interval_ms > 0 {
            background.push(tokio::spawn(crate::clock_jobs::run_every(
                reminders.clone(),
                Duration::from_millis(crate::clock_jobs::REMINDER_INTERVAL_MS),
            )));
            background.push(tokio::spawn(crate::clock_jobs::run_every(
                confirmations.clone(),
                Duration::from_millis(crate::clock_jobs::REMINDER_INTERVAL_MS),
            )));
        }
        let mut bookings_and_settlement: Vec<Arc<dyn DueJob>> = vec![
            reminders,
            confirmations,
            Arc::new(crate::clock_jobs::SettlementConfirmJob(
                settlement_jobs.clone(),
            )),
            Arc::new(crate::clock_jobs::SettlementPayoutJob(
                settlement_jobs.clone(),
            )),
        ];
        // Settlement imports run on a clock move only where they run on a schedule.
        if settings.reconciliation.interval_s > 0 {
            bookings_and_settlement.push(Arc::new(crate::reconciliation_jobs::ReconciliationJob {
                reconciliation: reconciliation.clone(),
                pool: pool.clone(),
                lookback_days: settings.reconciliation.lookback_days,
            }));
        }
        let due_jobs = due_jobs(
            &settings,
            &payments,
            &booking_services.claims,
            &subscriptions,
            bookings_and_settlement,
            &relay,
            &pool,
        )?;
        let test_clock = payledger_http::test_clock::TestClockServices {
            clock: scenario_clock,
            jobs: due_jobs,
            pool: pool.clone(),
            moving: tokio::sync::Mutex::new(()),
        };
        if let (Some(vault), Some((older_than, interval))) =
            (&vault, crate::privacy_cli::retention_from_env()?)
        {
            background.push(tokio::spawn(crate::privacy_cli::run_retention(
                pool.clone(),
                vault.clone(),
                older_than,
                interval,
            )));
        }
        let server_relay = actix_web::web::Data::from(relay);
        let server_reconciliation = actix_web::web::Data::from(reconciliation);
        let server_vault = vault.map(actix_web::web::Data::from);
        background.extend(crate::booking_jobs::spawn(
            booking_services.bookings.clone(),
            booking_services.claims.clone(),
            booking_services.settlements.clone(),
            database.app.clone(),
            pool.clone(),
            wakeup.clone(),
        ));

        let replicas = payledger_store::replicas::ReplicaSet::new(
            pool.clone(),
            settings.replicas.connect_options()?,
            settings.replicas.config,
        );
        if !replicas.is_empty() {
            background.push(tokio::spawn(replicas.clone().monitor()));
        }
        let state = actix_web::web::Data::new(AppState {
            payments,
            store,
            read_pool: pool.clone(),
            projection_positions,
            access: Arc::new(payledger_http::auth::AccessControl::new(pool)),
            idempotency,
            operations,
            subscriptions,
            bookings: booking_services,
            test_clock,
            replicas,
            database_call_timeout_ms: settings.database_call_timeout_ms,
        });
        // The operator console at /console (issue 16): same process, same state, same handlers.
        let console = actix_web::web::Data::new(payledger_console::Console::new(
            payledger_console::ConsoleConfig::from_settings(&crate::settings::get)
                .map_err(anyhow::Error::msg)?,
        ));
        let listener = TcpListener::bind(settings.listen)
            .with_context(|| format!("failed to listen on {}", settings.listen))?;
        let port = listener.local_addr()?.port();
        let server_state = state.clone();
        let server = actix_web::HttpServer::new(move || {
            let app = actix_web::App::new()
                .app_data(server_state.clone())
                .app_data(server_relay.clone())
                .app_data(server_reconciliation.clone());
            let app = match &server_vault {
                Some(vault) => app.app_data(vault.clone()),
                None => app,
            };
            app.wrap(from_fn(payledger_http::idempotency::idempotency))
                // Outside the idempotency store, so stored answers keep the sealed tokens.
                .wrap(from_fn(payledger_http::privacy::reveal_personal_fields))
                .wrap(from_fn(payledger_http::auth::authenticate))
                .wrap(from_fn(payledger_http::screen::screen))
                // Outside authentication (its lookups are reads too), inside the request log.
                .wrap(from_fn(payledger_http::deadline::read_deadline))
                // The console's pages past the deadline get its HTML page, not the API's JSON.
                .wrap(from_fn(
                    payledger_console::deadline_page::read_deadline_pages,
                ))
                .wrap_fn(payledger_http::request_logging)
                .wrap_fn(payledger_http::metrics::track)
                .configure(payledger_http::configure)
                .configure(|config| payledger_console::configure(config, console.clone()))
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

/// Where statements are paid out: the sandbox's payouts (embedded or external). Toss's live
/// payouts need an encrypted request and a seller registration payledger does not do yet, so
/// with Toss keys statements are paid by hand (`POST /v1/settlements/{id}/payout`).
fn build_payouts(
    settings: &Settings,
    sandbox: Option<&RunningSandbox>,
) -> anyhow::Result<Option<Arc<dyn payledger_gateway::payouts::PayoutProvider>>> {
    let base_url = match (&settings.provider, sandbox) {
        (ProviderSettings::EmbeddedSandbox, Some(sandbox)) => sandbox.base_url(),
        (ProviderSettings::Sandbox { base_url }, _) => base_url.clone(),
        _ => return Ok(None),
    };
    let payouts = payledger_connector_toss::TossPayouts::new(
        &base_url,
        &TossSecretKey::new(payledger_connector_toss::SANDBOX_SECRET_KEY),
    )
    .context("failed to configure the sandbox payouts")?;
    Ok(Some(Arc::new(payouts)))
}

/// Every time-driven job, in the order a move of the scenario clock runs them.
/// `bookings_and_settlement`: the jobs that run after billing (reminders, settlement).
fn due_jobs(
    settings: &Settings,
    payments: &Arc<Payments>,
    claims: &Arc<payledger_app::claims::Claims>,
    subscriptions: &Arc<payledger_app::subscriptions::Subscriptions>,
    bookings_and_settlement: Vec<Arc<dyn DueJob>>,
    relay: &Arc<payledger_webhook_relay::Relay>,
    pool: &sqlx::PgPool,
) -> anyhow::Result<Vec<Arc<dyn DueJob>>> {
    use crate::clock_jobs::*;
    let mut jobs: Vec<Arc<dyn DueJob>> = vec![
        Arc::new(OrdersJob {
            payments: payments.clone(),
            pool: pool.clone(),
            older_than: chrono::Duration::milliseconds(settings.reconcile_after_ms as i64),
        }),
        Arc::new(ClaimDeadlinesJob {
            claims: claims.clone(),
            pool: pool.clone(),
        }),
        Arc::new(BillingJob {
            subscriptions: subscriptions.clone(),
            pool: pool.clone(),
        }),
    ];
    jobs.extend(bookings_and_settlement);
    jobs.push(Arc::new(InboundWebhooksJob(
        payledger_webhook_relay::InboundWorker::new(relay.clone(), payments.clone()),
    )));
    if !relay.settings.outbound.endpoints.is_empty() {
        let sender = payledger_webhook_relay::NotificationSender::new(
            pool.clone(),
            relay.settings.clone(),
            relay.clock.clone(),
        )
        .context("failed to build the notification HTTP client")?;
        jobs.push(Arc::new(NotificationsJob(sender)));
    }
    Ok(jobs)
}

/// Starts the embedded sandbox when no provider is configured, and builds the registry of the
/// connectors this deployment pays with ([`registry_from`]).
///
/// Also answers a second Toss connector with its own circuit breaker for the re-fetches that
/// unsigned webhooks prompt, so intake traffic never opens the payments' circuit.
async fn build_registry(
    settings: &Settings,
    clock: payledger_sandbox::SandboxClock,
) -> anyhow::Result<(
    ProviderRegistry,
    Arc<dyn PaymentGateway>,
    Option<RunningSandbox>,
)> {
    let (config, sandbox) = match &settings.provider {
        ProviderSettings::EmbeddedSandbox => {
            let sandbox = payledger_sandbox::start(
                SocketAddr::from(([127, 0, 0, 1], 0)),
                SandboxConfig {
                    clock: Some(clock),
                    ..SandboxConfig::default()
                },
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
        config.transport.timeout_ms = timeout_ms;
    }
    if let Some(open_ms) = settings.gateway_circuit_open_ms {
        config.transport.circuit.open_ms = open_ms;
    }
    tracing::info!(
        provider = payledger_connector_toss::PROVIDER_NAME,
        mode = settings.provider.mode(),
        "payment connector configured"
    );
    let webhook_lookups =
        TossGateway::new(config.clone()).context("failed to configure the Toss connector")?;
    let sandbox_base_url = settings.provider.sandbox_base_url(sandbox.as_ref());
    let registry = registry_from(config, sandbox_base_url.as_deref())?;
    Ok((registry, Arc::new(webhook_lookups), sandbox))
}

/// Paddle's configuration: keys from the environment, else the sandbox's `/paddle`.
fn paddle_config(
    sandbox_base_url: Option<&str>,
    timeout_ms: u64,
    circuit: payledger_gateway::circuit::CircuitConfig,
) -> Option<payledger_connector_paddle::PaddleConfig> {
    let mut config = ProviderSettings::paddle_from_env().or_else(|| {
        sandbox_base_url
            .map(|base| payledger_connector_paddle::PaddleConfig::sandbox(format!("{base}/paddle")))
    })?;
    config.transport.timeout_ms = timeout_ms;
    config.transport.circuit = circuit;
    tracing::info!(
        provider = payledger_connector_paddle::PROVIDER_NAME,
        "payment connector configured"
    );
    Some(config)
}

/// The connectors this deployment pays with, by provider name: THE place a connector is
/// registered (`serve`, and the CLI commands that call providers — `reconcile`, `ops` — all build
/// their registry here). Each connector reads its own configuration (keys from the environment,
/// test or live mode, base URL); with no keys it runs against the sandbox at
/// `sandbox_base_url`, which speaks every provider's API (Toss at its root, Stripe under
/// `/stripe`).
///
/// To add a provider: build its connector (an `Arc<dyn PaymentGateway>` whose `provider_name()`
/// is the name orders use and whose `supported_currencies()` says what it can charge) and
/// `registry.register(...)` it below. Orders name it at placement (`"provider": "NAME"`); every
/// later call for such an order goes to it.
pub fn registry_from(
    toss: TossConfig,
    sandbox_base_url: Option<&str>,
) -> anyhow::Result<ProviderRegistry> {
    let timeout_ms = toss.transport.timeout_ms;
    let circuit = toss.transport.circuit;
    let toss = TossGateway::new(toss).context("failed to configure the Toss connector")?;
    // Toss is the default: orders that name no provider pay with it.
    let mut registry = ProviderRegistry::new(Arc::new(toss));
    // Stripe: with keys from the environment when given, else the sandbox's `/stripe` when there
    // is a sandbox; not configured otherwise (orders naming it get E_PROVIDER_NOT_CONFIGURED).
    let stripe = ProviderSettings::stripe_from_env().or_else(|| {
        sandbox_base_url
            .map(|base| payledger_connector_stripe::StripeConfig::sandbox(format!("{base}/stripe")))
    });
    if let Some(mut config) = stripe {
        // The deployment's provider timeouts and circuit apply to every connector.
        config.transport.timeout_ms = timeout_ms;
        config.transport.circuit = circuit;
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
    // Paddle: the same way, against the sandbox's `/paddle` when there are no keys.
    if let Some(config) = paddle_config(sandbox_base_url, timeout_ms, circuit) {
        let paddle = payledger_connector_paddle::PaddleGateway::new(config)
            .context("failed to configure the Paddle connector")?;
        registry
            .register(Arc::new(paddle))
            .context("failed to register the Paddle connector")?;
    }
    tracing::debug!(
        providers = ?registry.names(),
        sandbox = sandbox_base_url.unwrap_or("none"),
        "payment connectors registered"
    );
    Ok(registry)
}
