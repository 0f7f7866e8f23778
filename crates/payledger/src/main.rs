//! `payledger`: one binary for serving, operating and auditing the ledger.

use anyhow::Context;
use clap::{Parser, Subcommand};
use payledger::database::Database;
use payledger::startup::{Application, Settings};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// glibc's allocator spent a fifth of the server's CPU under load (malloc_consolidate,
/// unlink_chunk in `perf`); mimalloc's thread-local free lists avoid most of that.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "payledger",
    version,
    about = "An event-sourced payment ledger on PostgreSQL"
)]
struct Cli {
    /// Where the managed PostgreSQL cluster lives when DATABASE_URL is not set.
    #[arg(
        long,
        global = true,
        env = "PAYLEDGER_DATA_DIR",
        default_value = ".payledger"
    )]
    data_dir: PathBuf,
    /// Use this database instead of the managed cluster.
    #[arg(long, global = true, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Run migrations with this URL (the schema owner) instead of DATABASE_URL.
    #[arg(
        long,
        global = true,
        env = "PAYLEDGER_MIGRATE_DATABASE_URL",
        hide_env_values = true
    )]
    migrate_database_url: Option<String>,
    /// A settings file of NAME=value lines (mode 0600): below the environment, above the
    /// defaults. Also PAYLEDGER_SETTINGS_FILE.
    #[arg(long, global = true)]
    settings: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API, the projectors and the reconciler.
    Serve {
        #[arg(long, env = "PAYLEDGER_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// A test deployment: every rule reads the database's scenario clock, which admins move
        /// (`payledger clock`, `/v1/admin/test-clock`). Refused with live provider keys.
        #[arg(long, env = "PAYLEDGER_TEST_CLOCK")]
        test_clock: bool,
        /// Where a new scenario clock starts (RFC 3339; default now). A database's clock keeps
        /// its time across restarts.
        #[arg(long, requires = "test_clock")]
        test_clock_start: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// The scenario clock of a test deployment: show it, advance it, set it forward.
    Clock {
        #[command(subcommand)]
        command: payledger::clock_cli::ClockCommand,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Inspect or rebuild read models.
    Projections {
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
    /// Print a stream's events (JSON lines, with versions, positions and hashes).
    Replay { stream_id: String },
    /// Verify the ledger.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Print one order's timeline.
    Timeline { order_id: String },
    /// Settle unknown payment outcomes now (the same pass `serve` runs on a schedule).
    ///
    /// `reconcile settlements --provider toss --from DATE --to DATE` imports the provider's
    /// settlement report instead (docs/operations.md, "Provider settlements").
    Reconcile {
        /// Only outcomes older than this many seconds.
        #[arg(long, default_value_t = 60)]
        older_than_s: i64,
        #[command(subcommand)]
        what: Option<ReconcileCommand>,
    },
    /// The effective settings: each one's value (secrets redacted) and where it came from.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Run the sandbox payment provider (the Toss-compatible API) on its own.
    Sandbox {
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: SocketAddr,
    },
    /// Stop the managed PostgreSQL cluster of the data directory.
    StopDatabase,
    /// A local streaming replica of the managed cluster (in --data-dir): init, start, promote.
    Replica {
        #[command(subcommand)]
        command: payledger::replicas::ReplicaCommand,
    },
    /// Create, list and revoke API keys (printed once, stored hashed).
    Keys {
        #[command(subcommand)]
        command: payledger::keys::KeysCommand,
    },
    /// Kill switches: stop all new payments or one payee's sales (audited).
    Switches {
        #[command(subcommand)]
        command: payledger::admin_cli::SwitchesCommand,
    },
    /// Manual operations: record an outside payment, cancel an enrollment (audited).
    Ops {
        #[command(subcommand)]
        command: payledger::admin_cli::OpsCliCommand,
    },
    /// Bookings unconfirmed by their provider after 24 hours: list, confirm, force-cancel.
    Bookings {
        #[command(subcommand)]
        command: payledger::booking_cli::BookingsCommand,
    },
    /// Inbound provider webhooks: the dead-letter queue.
    Webhooks {
        #[command(subcommand)]
        command: payledger::webhook_jobs::WebhooksCommand,
    },
    /// Outbound notifications to products: the dead-letter queue.
    Notifications {
        #[command(subcommand)]
        command: payledger::webhook_jobs::WebhooksCommand,
    },
    /// Recurring billing: run the subscription scheduler's pass now or as of a time.
    Billing {
        #[command(subcommand)]
        command: payledger::billing_jobs::BillingCommand,
    },
    /// Personal data: erase a data subject's personal fields (crypto-shredding).
    Privacy {
        #[command(subcommand)]
        command: payledger::privacy_cli::PrivacyCommand,
    },
    /// Measure: drive the HTTP API under load, or time a rebuild of every read model.
    #[command(args_conflicts_with_subcommands = true)]
    Bench {
        #[command(subcommand)]
        mode: Option<BenchMode>,
        /// The server to drive; without it the benchmark starts its own on the embedded defaults.
        #[arg(long)]
        target: Option<String>,
        #[arg(long, default_value_t = 64)]
        clients: usize,
        #[arg(long, default_value_t = 10)]
        duration_s: u64,
        #[arg(long, default_value_t = 2)]
        warmup_s: u64,
        /// Data directory of a benchmark-started server or store (kept apart from --data-dir).
        #[arg(long, default_value = ".payledger-bench")]
        store_dir: PathBuf,
        /// Offer this many commands/s in total (open loop) instead of driving flat out.
        #[arg(long)]
        rate: Option<f64>,
        /// Sample projector lag from the database during the run (the self-started server's, or
        /// DATABASE_URL's).
        #[arg(long)]
        measure_lag: bool,
        /// What each client does: place and confirm orders, or GET /healthz to measure the
        /// HTTP stack alone on this machine.
        #[arg(long, value_enum, default_value_t = BenchFlow::PlaceAndConfirm)]
        flow: BenchFlow,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum BenchFlow {
    PlaceAndConfirm,
    Healthz,
}

impl From<BenchFlow> for payledger_bench::load::Flow {
    fn from(flow: BenchFlow) -> Self {
        match flow {
            BenchFlow::PlaceAndConfirm => payledger_bench::load::Flow::PlaceAndConfirm,
            BenchFlow::Healthz => payledger_bench::load::Flow::Healthz,
        }
    }
}

#[derive(Subcommand)]
enum BenchMode {
    /// Fill a store with N realistic events quickly (COPY through the store's bulk loader, as
    /// the schema owner), print the disk they take, and leave it for `bench rebuild`, `bench`
    /// and `audit verify`.
    Fill {
        #[arg(long, default_value_t = 1_000_000)]
        events: i64,
        #[arg(long, default_value = ".payledger-bench")]
        store_dir: PathBuf,
    },
    /// Fill a store with N realistic events (or reuse it) and time a rebuild of every read model.
    Rebuild {
        #[arg(long, default_value_t = 1_000_000)]
        events: i64,
        #[arg(long, default_value = ".payledger-bench")]
        store_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum ProjectionsCommand {
    /// Each projection's position and lag.
    Status,
    /// Rebuild a read model from position 0 into fresh tables, then swap them in.
    Rebuild { name: String },
    /// Check that read models equal a rebuild from zero, without changing anything: each is
    /// rebuilt up to its live checkpoint in a scratch schema, compared row for row and rolled
    /// back. Prints one JSON line per read model; exit 1 when any differs.
    Verify {
        /// One read model (default: all of them).
        name: Option<String>,
    },
}

#[derive(Subcommand)]
enum ReconcileCommand {
    /// Import a provider's settlement lines paid out from FROM to TO (both included), match them
    /// to the ledger and post them to the journal; then flag captures never settled at --as-of.
    Settlements {
        /// The provider, as orders name it (`toss`).
        #[arg(long)]
        provider: String,
        /// First payout day, YYYY-MM-DD.
        #[arg(long)]
        from: chrono::NaiveDate,
        /// Last payout day, YYYY-MM-DD (at most 31 days after FROM).
        #[arg(long)]
        to: chrono::NaiveDate,
        /// The moment the unsettled check judges at (RFC 3339; default now).
        #[arg(long)]
        as_of: Option<chrono::DateTime<chrono::Utc>>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Recompute every hash chain and check the global log, then check that every journal entry
    /// and the whole book balance; non-zero exit names the first break.
    Verify {
        /// Also check the live log against a saved copy of the signed checkpoints (the export
        /// file's JSON lines, or a `GET /v1/audit/checkpoints` page).
        #[arg(long)]
        checkpoints: Option<PathBuf>,
        /// The public key the checkpoints must be signed with (64 hex digits; default: this
        /// installation's key, from PAYLEDGER_AUDIT_SIGNING_KEY or the key file).
        #[arg(long, requires = "checkpoints")]
        public_key: Option<String>,
    },
    /// Print the public key that signs checkpoints (creates the key when there is none yet).
    PublicKey,
    /// Seal a checkpoint of the log now (if it grew since the last one) and export it.
    Checkpoint,
    /// Print the journal's balances per account and currency at a global position.
    TrialBalance {
        /// Global position (default: the head of the log).
        #[arg(long)]
        at: Option<i64>,
    },
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,actix_server=warn"));
    tracing_subscriber::fmt()
        .json()
        .with_current_span(false)
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print every setting, its effective value and its source (default, file, environment).
    Show,
}

fn main() -> ExitCode {
    // First, while this is the only thread: the settings file fills what the environment leaves
    // unset, so every reader (clap's flags included) sees one set of settings.
    let args: Vec<String> = std::env::args().collect();
    if let Some(refusal) = payledger::admin_cli::refuse_card_numbers_in_arguments(&args) {
        return refusal;
    }
    if let Err(error) = payledger::settings::load_before_threads(&args) {
        eprintln!("error: {error:#}");
        return ExitCode::FAILURE;
    }
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: failed to start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let data_dir = cli.data_dir.clone();
    let database_url = cli.database_url.clone();
    let migrate_url = cli.migrate_database_url.clone();
    match cli.command {
        Command::Serve {
            listen,
            test_clock,
            test_clock_start,
        } => {
            let mut settings = Settings::embedded(listen, data_dir);
            settings.test_clock = test_clock;
            settings.test_clock_start = test_clock_start;
            settings.settlement_schedule =
                payledger::settlement_jobs::SettlementSchedule::from_env()
                    .context("invalid settlement schedule")?;
            settings.alerts = payledger::alerts::AlertSettings::from_env()
                .context("invalid alert channel configuration")?;
            settings.reconciliation =
                payledger::reconciliation_jobs::ReconciliationSettings::default()
                    .with_env()
                    .context("invalid reconciliation settings")?;
            settings.database_url = database_url;
            settings.migrate_database_url = migrate_url;
            settings.provider = payledger::providers::ProviderSettings::from_env();
            settings.webhooks =
                payledger_webhook_relay::WebhookSettings::from_settings(&payledger::settings::get)
                    .context("invalid webhook configuration")?;
            settings.settlement = payledger_app::settlements::SettlementConfig::from_settings(
                &payledger::settings::get,
            )
            .context("invalid settlement configuration")?;
            settings.replicas =
                payledger::replicas::ReplicaSettings::from_settings(&payledger::settings::get)
                    .context("invalid read replica configuration")?;
            settings.database_call_timeout_ms =
                payledger::database::call_timeout_ms_from_settings(&payledger::settings::get)?;
            let app = Application::build(settings).await?;
            eprintln!(
                "payledger is serving on http://127.0.0.1:{} (ctrl-c stops it)",
                app.port()
            );
            app.run_until_stopped().await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Config {
            command: ConfigCommand::Show,
        } => {
            payledger::settings::show(&mut std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sandbox { listen } => {
            let config = payledger_sandbox::SandboxConfig {
                handle_signals: true,
                ..payledger_sandbox::SandboxConfig::default()
            };
            let sandbox = payledger_sandbox::start(listen, config)
                .await
                .context("failed to start the sandbox")?;
            eprintln!(
                "sandbox provider on {} (ctrl-c stops it)",
                sandbox.base_url()
            );
            sandbox.wait().await.context("the sandbox failed")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            mode: Some(BenchMode::Fill { events, store_dir }),
            ..
        } => {
            payledger::bench::run_fill(
                events,
                database_url.as_deref(),
                migrate_url.as_deref(),
                &store_dir,
            )
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            mode: Some(BenchMode::Rebuild { events, store_dir }),
            ..
        } => {
            payledger::bench::run_rebuild(events, database_url.as_deref(), &store_dir).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench {
            mode: None,
            target,
            clients,
            duration_s,
            warmup_s,
            store_dir,
            rate,
            measure_lag,
            flow,
        } => {
            payledger::bench::run_load(payledger::bench::LoadArgs {
                target,
                clients,
                duration_s,
                warmup_s,
                store_dir,
                rate_per_s: rate,
                measure_lag,
                database_url: database_url.clone(),
                flow: flow.into(),
            })
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Replica { command } => payledger::replicas::run(command, &data_dir).await,
        Command::StopDatabase => {
            let options = payledger_pgcluster::ClusterOptions::new(&data_dir);
            match payledger_pgcluster::ManagedCluster::join_running(options).await? {
                Some(cluster) => {
                    cluster.stop()?;
                    eprintln!("stopped the cluster in {}", data_dir.display());
                }
                None => eprintln!("no cluster is running in {}", data_dir.display()),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Billing { command } => {
            let database =
                Database::open(database_url.as_deref(), migrate_url.as_deref(), &data_dir).await?;
            let pool = database.app_pool(4).await?;
            payledger::billing_jobs::run(command, &database, &pool, &data_dir).await
        }
        Command::Clock { command } => {
            let database =
                Database::open(database_url.as_deref(), migrate_url.as_deref(), &data_dir).await?;
            payledger::clock_cli::run(command, &database.app_pool(2).await?).await
        }
        Command::Keys { command } => {
            let database =
                Database::open(database_url.as_deref(), migrate_url.as_deref(), &data_dir).await?;
            payledger::keys::run(command, &database.app_pool(2).await?).await
        }
        Command::Switches { command } => {
            let database =
                Database::open(database_url.as_deref(), migrate_url.as_deref(), &data_dir).await?;
            payledger::admin_cli::run_switches(command, &database.app_pool(2).await?, &data_dir)
                .await
        }
        Command::Audit {
            command: AuditCommand::PublicKey,
        } => {
            let files = payledger::audit_checkpoints::CheckpointSettings::default()
                .with_env()?
                .files(&data_dir);
            let signer = payledger::audit_checkpoints::load_signer(&files, true)?
                .context("no checkpoint signing key")?;
            println!("{}", hex::encode(signer.public_key()));
            Ok(ExitCode::SUCCESS)
        }
        Command::Privacy { command } => {
            let database =
                Database::open(database_url.as_deref(), migrate_url.as_deref(), &data_dir).await?;
            payledger::privacy_cli::run(command, &database.app_pool(2).await?, &data_dir).await
        }
        Command::Bookings { command } => {
            let database =
                Database::open(database_url.as_deref(), migrate_url.as_deref(), &data_dir).await?;
            payledger::booking_cli::run(command, &database.app_pool(2).await?, &data_dir).await
        }
        Command::Ops { command } => {
            let database =
                Database::open(database_url.as_deref(), migrate_url.as_deref(), &data_dir).await?;
            payledger::admin_cli::run_ops(command, &database.app_pool(2).await?, &data_dir).await
        }
        command => {
            let database =
                Database::open(database_url.as_deref(), migrate_url.as_deref(), &data_dir).await?;
            let pool = database.app_pool(4).await?;
            let audit_files = payledger::audit_checkpoints::CheckpointSettings::default()
                .with_env()?
                .files(&data_dir);
            payledger::commands::run(
                command_name(command),
                &database,
                &pool,
                &audit_files,
                &data_dir,
            )
            .await
        }
    }
}

fn command_name(command: Command) -> payledger::commands::OpsCommand {
    use payledger::commands::OpsCommand;
    match command {
        Command::Migrate => OpsCommand::Migrate,
        Command::Projections {
            command: ProjectionsCommand::Status,
        } => OpsCommand::ProjectionStatus,
        Command::Projections {
            command: ProjectionsCommand::Rebuild { name },
        } => OpsCommand::Rebuild { name },
        Command::Projections {
            command: ProjectionsCommand::Verify { name },
        } => OpsCommand::VerifyProjections { name },
        Command::Replay { stream_id } => OpsCommand::Replay { stream_id },
        Command::Audit {
            command:
                AuditCommand::Verify {
                    checkpoints,
                    public_key,
                },
        } => OpsCommand::AuditVerify {
            checkpoints: checkpoints.map(|path| (path, public_key)),
        },
        Command::Audit {
            command: AuditCommand::Checkpoint,
        } => OpsCommand::AuditCheckpoint,
        Command::Audit {
            command: AuditCommand::PublicKey,
        } => unreachable!("handled before the database is opened"),
        Command::Audit {
            command: AuditCommand::TrialBalance { at },
        } => OpsCommand::AuditTrialBalance { at },
        Command::Timeline { order_id } => OpsCommand::Timeline { order_id },
        Command::Reconcile {
            what:
                Some(ReconcileCommand::Settlements {
                    provider,
                    from,
                    to,
                    as_of,
                }),
            ..
        } => OpsCommand::ReconcileSettlements {
            provider,
            from,
            to,
            as_of,
        },
        Command::Reconcile { older_than_s, .. } => OpsCommand::Reconcile { older_than_s },
        Command::Webhooks { command } => OpsCommand::WebhookDeadLetters {
            command,
            outbound: false,
        },
        Command::Notifications { command } => OpsCommand::WebhookDeadLetters {
            command,
            outbound: true,
        },
        Command::Serve { .. }
        | Command::Sandbox { .. }
        | Command::Config { .. }
        | Command::StopDatabase
        | Command::Replica { .. }
        | Command::Keys { .. }
        | Command::Clock { .. }
        | Command::Billing { .. }
        | Command::Switches { .. }
        | Command::Ops { .. }
        | Command::Bookings { .. }
        | Command::Privacy { .. }
        | Command::Bench { .. } => {
            unreachable!("handled before the database is opened")
        }
    }
}
