//! Recurring billing in the binary: the billing-key encryption key, the billing configuration
//! from the environment, the scheduler `serve` runs, and `payledger billing run-due`.
//!
//! Environment:
//! - `PAYLEDGER_BILLING_KEY_SECRET`: base64 of 32 random bytes (`openssl rand -base64 32`), the
//!   AES-256-GCM key billing keys are encrypted with. Required with a real provider. Without it,
//!   on the sandbox, a development key is generated once into `<data dir>/billing-key.secret`
//!   (mode 0600) and a warning is logged: fine on a laptop, never in production.
//! - `PAYLEDGER_BILLING_KEY_SECRET_PREVIOUS`: comma-separated older keys, kept for decryption
//!   while billing keys encrypted with them are still in use (rotation).
//! - `PAYLEDGER_BILLING_INTERVAL_MS`: how often the scheduler runs inside `serve` (default
//!   60 000; 0 turns it off).
//! - `PAYLEDGER_PLAN_CATALOGUE`: `plan=level,…` (default `basic=1,standard=2,premium=3`).
//! - `PAYLEDGER_PADDLE_PRICE_MAP`: `pri_…=plan:PLAN,pro_…=plan:PLAN,pri_…=credits:N` (default
//!   empty): which Paddle prices or products sell which plan (its level from the catalogue).
//! - `PAYLEDGER_DUNNING_RETRY_DAYS` (default `3,7,14`), `PAYLEDGER_BILLING_KEY_GRACE_DAYS`
//!   (default `7`), `PAYLEDGER_PROVIDER_BACKOFF_MINUTES` (default `1,5,15,60,240,720`).

use crate::database::Database;
use crate::providers::ProviderSettings;
use anyhow::{bail, Context};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use payledger_app::billing_key_cipher::{self, BillingKeyCipher};
use payledger_app::clock::{Clock, SystemClock};
use payledger_app::executor::Executor;
use payledger_app::operations::SalesSwitches;
use payledger_app::subscriptions::{
    BillingIndex, RunDueReport, Subscriptions, SubscriptionsConfig,
};
use payledger_connector_toss::{TossConfig, TossGateway};
use payledger_domain::billing::{CreditOperationId, DunningPolicy, PlanCatalogue, SubscriptionId};
use payledger_domain::ids::CustomerId;
use payledger_gateway::PaymentGateway;
use payledger_projector::{RunnerConfig, Wakeup};
use sqlx::PgPool;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub const ENV_KEY_SECRET: &str = "PAYLEDGER_BILLING_KEY_SECRET";
pub const ENV_KEY_SECRET_PREVIOUS: &str = "PAYLEDGER_BILLING_KEY_SECRET_PREVIOUS";
/// The development key's file in the data directory.
pub const DEV_KEY_FILE: &str = "billing-key.secret";
/// How long `billing run-due` waits for the read models to catch up with the log.
const CATCH_UP_TIMEOUT_S: u64 = 60;

/// Billing configuration of a process.
#[derive(Debug, Clone)]
pub struct BillingSettings {
    /// How often the scheduler runs inside `serve`; 0 turns it off.
    pub scheduler_interval_ms: u64,
    pub subscriptions: SubscriptionsConfig,
    /// Which Paddle price and product ids sell which plan or credit pack
    /// (`PAYLEDGER_PADDLE_PRICE_MAP`; empty: every Paddle subscription is held for review).
    pub paddle_price_map: payledger_domain::provider_billed::ProviderPriceMap,
}

impl Default for BillingSettings {
    fn default() -> Self {
        BillingSettings {
            scheduler_interval_ms: 60_000,
            subscriptions: SubscriptionsConfig::default(),
            paddle_price_map: Default::default(),
        }
    }
}

fn env(name: &str) -> Option<String> {
    crate::settings::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
}

fn numbers(name: &str, text: &str) -> anyhow::Result<Vec<u32>> {
    text.split(',')
        .map(|n| {
            n.trim()
                .parse()
                .with_context(|| format!("{name} must be comma-separated whole numbers"))
        })
        .collect()
}

impl BillingSettings {
    /// These settings with the environment's overrides applied (the environment wins).
    pub fn with_env(mut self) -> anyhow::Result<BillingSettings> {
        if let Some(interval) = env("PAYLEDGER_BILLING_INTERVAL_MS") {
            self.scheduler_interval_ms = interval
                .trim()
                .parse()
                .context("PAYLEDGER_BILLING_INTERVAL_MS must be a whole number of milliseconds")?;
        }
        if let Some(catalogue) = env("PAYLEDGER_PLAN_CATALOGUE") {
            self.subscriptions.catalogue =
                PlanCatalogue::parse(&catalogue).context("PAYLEDGER_PLAN_CATALOGUE")?;
        }
        if let Some(map) = env("PAYLEDGER_PADDLE_PRICE_MAP") {
            self.paddle_price_map =
                payledger_domain::provider_billed::ProviderPriceMap::parse(&map)
                    .context("PAYLEDGER_PADDLE_PRICE_MAP")?;
        }
        let current = &self.subscriptions.dunning;
        let retry_days = match env("PAYLEDGER_DUNNING_RETRY_DAYS") {
            Some(text) => numbers("PAYLEDGER_DUNNING_RETRY_DAYS", &text)?,
            None => current.soft_decline_retry_days().to_vec(),
        };
        let grace_days = match env("PAYLEDGER_BILLING_KEY_GRACE_DAYS") {
            Some(text) => text
                .trim()
                .parse()
                .context("PAYLEDGER_BILLING_KEY_GRACE_DAYS must be a whole number of days")?,
            None => current.billing_key_grace_days(),
        };
        let backoff = match env("PAYLEDGER_PROVIDER_BACKOFF_MINUTES") {
            Some(text) => numbers("PAYLEDGER_PROVIDER_BACKOFF_MINUTES", &text)?,
            None => current.provider_error_backoff_minutes().to_vec(),
        };
        self.subscriptions.dunning =
            DunningPolicy::new(retry_days, grace_days, backoff).context("dunning policy")?;
        Ok(self)
    }
}

/// The key billing keys are encrypted with: from the environment, or (sandbox providers only) a
/// development key kept in the data directory.
pub fn load_cipher(
    data_dir: &Path,
    provider: &ProviderSettings,
) -> anyhow::Result<BillingKeyCipher> {
    let mut cipher = match env(ENV_KEY_SECRET) {
        Some(secret) => {
            let key = billing_key_cipher::decode_key(&secret).with_context(|| {
                format!("{ENV_KEY_SECRET} must be base64 of 32 bytes (openssl rand -base64 32)")
            })?;
            BillingKeyCipher::new(&key)
        }
        None => {
            if matches!(provider, ProviderSettings::Toss { .. }) {
                bail!(
                    "{ENV_KEY_SECRET} is not set: billing keys of a real provider need a real \
                     encryption key (openssl rand -base64 32)"
                );
            }
            let key = development_key(data_dir)?;
            let cipher = BillingKeyCipher::new(&key);
            tracing::warn!(
                path = %data_dir.join(DEV_KEY_FILE).display(),
                key_id = cipher.current_key_id(),
                "{ENV_KEY_SECRET} is not set: billing keys are encrypted with a development key \
                 kept in the data directory; set it before handling real cards"
            );
            cipher
        }
    };
    if let Some(previous) = env(ENV_KEY_SECRET_PREVIOUS) {
        for secret in previous.split(',').filter(|s| !s.trim().is_empty()) {
            let key = billing_key_cipher::decode_key(secret).with_context(|| {
                format!("each key in {ENV_KEY_SECRET_PREVIOUS} must be base64 of 32 bytes")
            })?;
            cipher = cipher.with_previous(&key)?;
        }
    }
    Ok(cipher)
}

/// Reads the development key, creating it (readable by this user only) on first use.
///
/// Several processes (two `serve`s, parallel tests) may start on one data directory at once. The
/// key is written to a private file first and published under its name with a hard link, which
/// fails if the name exists: a reader sees either no file or a whole key, never a half-written
/// one, and every process ends up with the same key.
fn development_key(data_dir: &Path) -> anyhow::Result<[u8; billing_key_cipher::KEY_BYTES]> {
    let path = data_dir.join(DEV_KEY_FILE);
    let read_existing = || -> anyhow::Result<[u8; billing_key_cipher::KEY_BYTES]> {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("failed to read {}", path.display()))?;
        billing_key_cipher::decode_key(&text)
            .with_context(|| format!("{} is not a billing key secret", path.display()))
    };
    if path.exists() {
        return read_existing();
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("failed to create {}", data_dir.display()))?;
    let key = billing_key_cipher::generate_key();
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD.encode(key);
    // Unique per process and per call: tests build several applications in one process.
    static DRAFTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let draft_number = DRAFTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let draft = data_dir.join(format!(
        "{DEV_KEY_FILE}.draft-{}-{draft_number}",
        std::process::id()
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = options
        .open(&draft)
        .and_then(|mut file| {
            use std::io::Write;
            file.write_all(text.as_bytes())?;
            file.sync_all()
        })
        .with_context(|| format!("failed to write {}", draft.display()));
    let published = written.and_then(|()| match std::fs::hard_link(&draft, &path) {
        Ok(()) => Ok(Some(key)),
        // Another process published its key first: use theirs.
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(None),
        Err(error) => Err(error).with_context(|| format!("failed to create {}", path.display())),
    });
    let _ = std::fs::remove_file(&draft);
    match published? {
        Some(key) => Ok(key),
        None => read_existing(),
    }
}

/// The subscriptions read model as the scheduler's index. It may lag the log by a moment; a
/// candidate is re-checked on its stream, and the next pass picks up what this one missed.
pub struct ReadModelBillingIndex {
    pub pool: PgPool,
}

#[async_trait]
impl BillingIndex for ReadModelBillingIndex {
    async fn due_subscriptions(
        &self,
        as_of: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<SubscriptionId>, String> {
        let ids = payledger_read_models::subscriptions::due_subscriptions(&self.pool, as_of, limit)
            .await
            .map_err(|e| e.to_string())?;
        Ok(ids
            .into_iter()
            .filter_map(|id| SubscriptionId::parse(id).ok())
            .collect())
    }

    async fn purchases_with_unapplied_refunds(
        &self,
        limit: i64,
    ) -> Result<Vec<(CustomerId, CreditOperationId)>, String> {
        let rows = payledger_read_models::subscriptions::purchases_with_unapplied_refunds(
            &self.pool, limit,
        )
        .await
        .map_err(|e| e.to_string())?;
        Ok(rows
            .into_iter()
            .filter_map(|(customer_id, purchase_id)| {
                Some((
                    CustomerId::parse(customer_id).ok()?,
                    CreditOperationId::parse(purchase_id).ok()?,
                ))
            })
            .collect())
    }
}

/// The billing service of a process.
// Each argument is one of the process's services, built once in `startup`; a struct holding
// them would only rename them.
#[allow(clippy::too_many_arguments)]
pub fn build(
    settings: &BillingSettings,
    data_dir: &Path,
    provider: &ProviderSettings,
    executor: Arc<Executor>,
    gateway: Arc<dyn PaymentGateway>,
    clock: Arc<dyn Clock>,
    // The switches one-off payments obey: a flip through this process is seen by both at once.
    switches: Arc<SalesSwitches>,
    // Providers that bill their own subscriptions (Paddle): cancels go through them.
    provider_billing: Vec<
        Arc<dyn payledger_gateway::provider_subscriptions::ProviderSubscriptions>,
    >,
) -> anyhow::Result<Arc<Subscriptions>> {
    let cipher = load_cipher(data_dir, provider)?;
    let mut subscriptions = Subscriptions::new(
        executor,
        gateway,
        Arc::new(cipher),
        clock,
        settings.subscriptions.clone(),
    )
    .with_sales_switches(switches);
    for provider in provider_billing {
        subscriptions = subscriptions.with_provider_billing(provider);
    }
    Ok(Arc::new(subscriptions))
}

/// The scheduler inside `serve`: a pass every `every`. Several processes may run it at once;
/// each charge is recorded with a version check before the provider is called, so only one
/// process charges a cycle's attempt.
pub async fn run_scheduler(subscriptions: Arc<Subscriptions>, pool: PgPool, every: Duration) {
    let index = ReadModelBillingIndex { pool };
    loop {
        tokio::time::sleep(every).await;
        let as_of = subscriptions.clock().now();
        match subscriptions.run_due(&index, as_of).await {
            Ok(report) if report.examined > 0 || report.refunds_clawed_back > 0 => {
                tracing::info!(?report, "billing scheduler pass");
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "billing scheduler pass failed"),
        }
    }
}

/// `payledger billing run-due [--as-of TIME]`: one scheduler pass as of `as_of` (default now),
/// after bringing the read models up to the log so nothing due is missed.
pub async fn run_due_command(
    database: &Database,
    pool: &PgPool,
    data_dir: &Path,
    as_of: Option<DateTime<Utc>>,
) -> anyhow::Result<RunDueReport> {
    let provider = crate::providers::ProviderSettings::from_env();
    let config = match &provider {
        ProviderSettings::EmbeddedSandbox => bail!(
            "billing run-due charges through the provider that serve talks to: set \
             PAYLEDGER_SANDBOX_URL or TOSS_SECRET_KEY"
        ),
        ProviderSettings::Sandbox { base_url } => TossConfig::sandbox(base_url.clone()),
        ProviderSettings::Toss {
            base_url,
            secret_key,
        } => TossConfig::new(base_url.clone(), secret_key.clone()),
    };
    let gateway = TossGateway::new(config).context("failed to configure the provider")?;
    catch_up_read_models(database, pool).await?;
    let settings = BillingSettings::default().with_env()?;
    let executor = Arc::new(crate::privacy_cli::executor(pool, data_dir)?);
    let switches = Arc::new(SalesSwitches::new(executor.clone()));
    let subscriptions = build(
        &settings,
        data_dir,
        &provider,
        executor,
        Arc::new(gateway),
        Arc::new(SystemClock),
        switches,
        // The CLI's billing pass charges what payledger bills; Paddle bills its own.
        Vec::new(),
    )?;
    let as_of = as_of.unwrap_or_else(Utc::now);
    let index = ReadModelBillingIndex { pool: pool.clone() };
    Ok(subscriptions.run_due(&index, as_of).await?)
}

/// Runs the projections the scheduler reads until they reach the log's head (or waits for a
/// running `serve`, which holds their locks, to get there).
async fn catch_up_read_models(database: &Database, pool: &PgPool) -> anyhow::Result<()> {
    let head = payledger_store::head_position(pool).await?;
    let names = ["orders", "subscriptions"];
    let mut members = Vec::new();
    for name in names {
        let projection = payledger_read_models::projection_named(name)
            .with_context(|| format!("projection {name} is not registered"))?;
        payledger_projector::ensure_live(pool, projection.as_ref()).await?;
        members.push((projection, Arc::new(tokio::sync::watch::channel(0).0)));
    }
    let runner = tokio::spawn(payledger_projector::run_projections(
        database.app.clone(),
        members,
        RunnerConfig {
            poll_interval_ms: 50,
            standby_retry_ms: 200,
            ..RunnerConfig::default()
        },
        Wakeup::default(),
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(CATCH_UP_TIMEOUT_S);
    let result = loop {
        let statuses = payledger_projector::status(pool).await?;
        let behind = names.iter().any(|name| {
            statuses
                .iter()
                .find(|s| s.name == *name)
                .is_none_or(|s| s.position < head)
        });
        if !behind {
            break Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            break Err(anyhow::anyhow!(
                "the read models did not reach position {head} within {CATCH_UP_TIMEOUT_S} s"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    runner.abort();
    result
}

/// `payledger billing …`.
#[derive(Debug, clap::Subcommand)]
pub enum BillingCommand {
    /// Run what the scheduler would run at a time and print what it did (JSON). For operators
    /// catching up after downtime, and for tests that move time. Needs the provider `serve`
    /// talks to (`PAYLEDGER_SANDBOX_URL` or `TOSS_SECRET_KEY`) and the same billing-key secret.
    RunDue {
        /// The time the pass acts at (RFC 3339, e.g. 2026-03-01T00:00:00Z); default now. Events
        /// record it as their time.
        #[arg(long)]
        as_of: Option<DateTime<Utc>>,
    },
}

/// Runs a `billing` subcommand.
pub async fn run(
    command: BillingCommand,
    database: &Database,
    pool: &PgPool,
    data_dir: &Path,
) -> anyhow::Result<std::process::ExitCode> {
    match command {
        BillingCommand::RunDue { as_of } => {
            let report = run_due_command(database, pool, data_dir, as_of).await?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(if report.errors > 0 {
                std::process::ExitCode::from(2)
            } else {
                std::process::ExitCode::SUCCESS
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Many starters, released at once by a barrier, on fresh data directories, several rounds:
    /// a reader that could see a half-written key file fails here.
    #[test]
    fn processes_starting_together_on_a_new_data_dir_share_one_whole_development_key() {
        const STARTERS: usize = 32;
        for round in 0..20 {
            let data_dir = std::env::temp_dir().join(format!(
                "payledger-dev-key-race-{}-{round}-{}",
                std::process::id(),
                Utc::now().timestamp_nanos_opt().unwrap_or_default()
            ));
            let start = std::sync::Barrier::new(STARTERS);
            let keys: Vec<_> = std::thread::scope(|scope| {
                let starters: Vec<_> = (0..STARTERS)
                    .map(|_| {
                        scope.spawn(|| {
                            start.wait();
                            development_key(&data_dir).map_err(|e| format!("{e:#}"))
                        })
                    })
                    .collect();
                starters
                    .into_iter()
                    .map(|starter| starter.join().expect("the starter thread panicked"))
                    .collect()
            });
            let first = keys[0]
                .as_ref()
                .expect("the first starter read a whole key");
            for key in &keys {
                assert_eq!(
                    key.as_ref().expect("every starter read a whole key"),
                    first,
                    "every starter uses the same key"
                );
            }
            let files: Vec<_> = std::fs::read_dir(&data_dir)
                .expect("list the data dir")
                .map(|entry| entry.expect("read an entry").file_name())
                .collect();
            assert_eq!(
                files,
                vec![std::ffi::OsString::from(DEV_KEY_FILE)],
                "no drafts are left behind"
            );
            std::fs::remove_dir_all(&data_dir).expect("remove the data dir");
        }
    }
}
