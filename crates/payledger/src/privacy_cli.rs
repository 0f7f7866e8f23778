//! Crypto-shredding on the operating side: the master key that wraps subject keys (kept outside
//! the database) and `payledger privacy erase`.

use anyhow::Context;
use clap::Subcommand;
use payledger_app::privacy::PrivacyVault;
use sqlx::PgPool;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

/// The master key, 64 hex digits, in a file of mode 0600 beside the cluster's directory.
pub const MASTER_KEY_FILE: &str = "privacy-master-key";
pub const MASTER_KEY_ENV: &str = "PAYLEDGER_PRIVACY_MASTER_KEY";

#[derive(Subcommand)]
pub enum PrivacyCommand {
    /// Erase a customer's or a payee's personal fields: destroy their keys and record
    /// `SubjectErased` (idempotent; money, ids and the journal are untouched).
    #[command(group(clap::ArgGroup::new("subject").required(true).args(["customer", "payee"])))]
    Erase {
        #[arg(long)]
        customer: Option<String>,
        /// A payee instead of a customer: its own fields (warnings, sales suspensions).
        #[arg(long)]
        payee: Option<String>,
        /// Why, recorded in the event (never personal data itself).
        #[arg(long)]
        reason: String,
    },
    /// Run one pass of the retention job now: erase every customer whose orders are all closed
    /// (refunded, expired or fulfilled) and untouched for this many days.
    Retention {
        #[arg(long)]
        older_than_days: i64,
    },
}

/// How many customers one retention pass erases at most (the rest on the next pass).
const MAX_ERASED_PER_PASS: usize = 500;
/// How many customers with a live key one pass looks at (the candidates are then narrowed to
/// those whose orders are all closed).
const MAX_KEYED_CUSTOMERS_PER_PASS: i64 = 5_000;

/// Erasure and retention are dated by the wall clock: a data subject's right runs in real time,
/// whatever scenario a test deployment plays.
fn now() -> chrono::DateTime<chrono::Utc> {
    payledger_app::clock::Clock::now(&payledger_app::clock::SystemClock)
}

/// One retention pass: customers with a live key whose every order is closed (refunded, expired
/// or fulfilled) and was last touched before `older_than` ago. Reads the orders read model;
/// returns the customers erased.
pub async fn retention_pass(
    pool: &PgPool,
    vault: &PrivacyVault,
    older_than: chrono::Duration,
) -> anyhow::Result<Vec<String>> {
    let cutoff = now() - older_than;
    // Customers who still have a key older than the period (the vault's table), then of those
    // the ones whose every order is closed (the orders read model's question).
    let with_keys: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT substr(k.subject, 10) FROM privacy_subject_keys k \
         WHERE k.wrapped_key IS NOT NULL AND k.subject LIKE 'customer:%' AND k.created_at < $1 \
         LIMIT $2",
    )
    .bind(cutoff)
    .bind(MAX_KEYED_CUSTOMERS_PER_PASS)
    .fetch_all(pool)
    .await
    .context("failed to find customers past the retention period")?;
    let mut customers = payledger_read_models::orders::customers_with_every_order_closed_before(
        pool, &with_keys, cutoff,
    )
    .await
    .context("failed to find customers whose orders are all closed")?;
    customers.truncate(MAX_ERASED_PER_PASS);
    let store =
        payledger_store::EventStore::new(pool.clone(), payledger_store::WriterConfig::default());
    let context = payledger_app::context::RequestContext::new("system:retention", None);
    let reason = format!(
        "retention period: every order closed for more than {} days",
        older_than.num_days()
    );
    let mut erased = Vec::new();
    for customer in customers {
        let Ok(customer_id) = payledger_domain::ids::CustomerId::parse(customer.clone()) else {
            continue;
        };
        payledger_app::privacy::erase_subject_unwaited(
            vault,
            &store,
            payledger_app::privacy::SubjectKind::Customer,
            customer_id.as_str(),
            &reason,
            now(),
            &context,
        )
        .await?;
        erased.push(customer);
    }
    // Once for the whole pass: no process may still hold a key destroyed above.
    if !erased.is_empty() {
        vault.wait_out_key_caches().await;
    }
    Ok(erased)
}

/// The retention job of `serve` (`PAYLEDGER_PRIVACY_RETENTION_DAYS`; off when unset).
pub async fn run_retention(
    pool: PgPool,
    vault: std::sync::Arc<PrivacyVault>,
    older_than: chrono::Duration,
    interval: std::time::Duration,
) {
    loop {
        match retention_pass(&pool, &vault, older_than).await {
            Ok(erased) if !erased.is_empty() => {
                tracing::info!(customers = erased.len(), "retention erased personal fields");
            }
            Ok(_) => {}
            Err(error) => tracing::error!(error = %format!("{error:#}"), "retention pass failed"),
        }
        tokio::time::sleep(interval).await;
    }
}

/// `PAYLEDGER_PRIVACY_RETENTION_DAYS` (1 to 3650; unset: off) and
/// `PAYLEDGER_PRIVACY_RETENTION_INTERVAL_S` (default 3600).
pub fn retention_from_env() -> anyhow::Result<Option<(chrono::Duration, std::time::Duration)>> {
    let Ok(days) = crate::settings::var("PAYLEDGER_PRIVACY_RETENTION_DAYS") else {
        return Ok(None);
    };
    let days: i64 = days
        .parse()
        .ok()
        .filter(|d| (1..=3650).contains(d))
        .context("PAYLEDGER_PRIVACY_RETENTION_DAYS must be 1 to 3650")?;
    let interval_s: u64 = match crate::settings::var("PAYLEDGER_PRIVACY_RETENTION_INTERVAL_S") {
        Ok(text) => text
            .parse()
            .ok()
            .filter(|s| (60..=86_400).contains(s))
            .context("PAYLEDGER_PRIVACY_RETENTION_INTERVAL_S must be 60 to 86400")?,
        Err(_) => 3_600,
    };
    Ok(Some((
        chrono::Duration::days(days),
        std::time::Duration::from_secs(interval_s),
    )))
}

/// The vault, or `None` when `PAYLEDGER_PRIVACY=off` (personal fields are then stored as sent).
/// The master key is `PAYLEDGER_PRIVACY_MASTER_KEY`, else `privacy-master-key` in `directory`,
/// created (random, mode 0600) on first use.
pub fn vault(pool: &PgPool, directory: &Path) -> anyhow::Result<Option<PrivacyVault>> {
    if crate::settings::var("PAYLEDGER_PRIVACY").is_ok_and(|v| v == "off") {
        return Ok(None);
    }
    let key = match crate::settings::var(MASTER_KEY_ENV) {
        Ok(text) => PrivacyVault::parse_master_key(&text)
            .with_context(|| format!("{MASTER_KEY_ENV} must be 64 hex digits"))?,
        Err(_) => master_key_file(&directory.join(MASTER_KEY_FILE))?,
    };
    Ok(Some(
        PrivacyVault::new(pool.clone(), &key).with_key_cache_ttl(key_cache_ttl_from_env()?),
    ))
}

/// `PAYLEDGER_PRIVACY_KEY_CACHE_TTL_MS`: how long a process keeps an unwrapped subject key
/// (0 to 2000; default 1000; 0 turns the cache off). An erasure always waits the longest
/// allowed time before it answers, whatever this is set to.
pub fn key_cache_ttl_from_env() -> anyhow::Result<std::time::Duration> {
    use payledger_app::privacy::{DEFAULT_KEY_CACHE_TTL, MAX_KEY_CACHE_TTL};
    match crate::settings::var("PAYLEDGER_PRIVACY_KEY_CACHE_TTL_MS") {
        Ok(text) => text
            .parse::<u64>()
            .ok()
            .map(std::time::Duration::from_millis)
            .filter(|ttl| *ttl <= MAX_KEY_CACHE_TTL)
            .with_context(|| {
                format!(
                    "PAYLEDGER_PRIVACY_KEY_CACHE_TTL_MS must be 0 to {}",
                    MAX_KEY_CACHE_TTL.as_millis()
                )
            }),
        Err(_) => Ok(DEFAULT_KEY_CACHE_TTL),
    }
}

/// An executor that seals personal fields as `serve`'s does: every process that appends events
/// (`ops`, `reconcile`, `billing`) must, or a reason it writes would be stored in clear, and a
/// refund it drives would send the provider the token instead of the reason.
pub fn executor(
    pool: &PgPool,
    directory: &Path,
) -> anyhow::Result<payledger_app::executor::Executor> {
    use payledger_app::executor::Executor;
    let store =
        payledger_store::EventStore::new(pool.clone(), payledger_store::WriterConfig::default());
    Ok(match vault(pool, directory)? {
        Some(vault) => Executor::new(store).with_vault(std::sync::Arc::new(vault)),
        None => Executor::new(store),
    })
}

fn master_key_file(path: &Path) -> anyhow::Result<[u8; 32]> {
    use rand::RngCore;
    if let Ok(text) = std::fs::read_to_string(path) {
        return PrivacyVault::parse_master_key(&text)
            .with_context(|| format!("{} must hold 64 hex digits", path.display()));
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("failed to create {}", parent.display()))?;
    }
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(format!("{}\n", hex::encode(key)).as_bytes())?;
            file.sync_all()?;
            tracing::warn!(path = %path.display(), "created the privacy master key: back it up apart from the database, or personal fields become unreadable");
            Ok(key)
        }
        // Another process created it first: use theirs.
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(path)?;
            PrivacyVault::parse_master_key(&text)
                .with_context(|| format!("{} must hold 64 hex digits", path.display()))
        }
        Err(error) => Err(error).with_context(|| format!("failed to create {}", path.display())),
    }
}

pub async fn run(
    command: PrivacyCommand,
    pool: &PgPool,
    data_dir: &Path,
) -> anyhow::Result<ExitCode> {
    match command {
        PrivacyCommand::Erase {
            customer,
            payee,
            reason,
        } => {
            use payledger_app::privacy::SubjectKind;
            let (kind, id) = match (customer, payee) {
                (Some(customer), None) => (
                    SubjectKind::Customer,
                    payledger_domain::ids::CustomerId::parse(customer)
                        .map_err(|e| anyhow::anyhow!("--customer: {e}"))?
                        .as_str()
                        .to_string(),
                ),
                (None, Some(payee)) => (
                    SubjectKind::Payee,
                    payledger_domain::ids::PayeeId::parse(payee)
                        .map_err(|e| anyhow::anyhow!("--payee: {e}"))?
                        .as_str()
                        .to_string(),
                ),
                _ => anyhow::bail!("give exactly one of --customer and --payee"),
            };
            anyhow::ensure!(
                !reason.trim().is_empty()
                    && reason.chars().count() <= 200
                    && !reason.chars().any(char::is_control),
                "--reason must be 1 to 200 characters without control characters"
            );
            let vault = vault(pool, data_dir)?.context(
                "PAYLEDGER_PRIVACY=off: personal fields are not sealed, nothing to erase",
            )?;
            let store = payledger_store::EventStore::new(
                pool.clone(),
                payledger_store::WriterConfig::default(),
            );
            let outcome = payledger_app::privacy::erase_subject(
                &vault,
                &store,
                kind,
                &id,
                &reason,
                now(),
                &payledger_app::context::RequestContext::new("admin:cli", None),
            )
            .await?;
            let id_field = match kind {
                SubjectKind::Customer => "customerId",
                SubjectKind::Payee => "payeeId",
            };
            println!(
                "{}",
                serde_json::json!({
                    id_field: id,
                    "erased": true,
                    "keysDestroyed": outcome.keys_destroyed,
                    "recorded": outcome.recorded,
                })
            );
            Ok(ExitCode::SUCCESS)
        }
        PrivacyCommand::Retention { older_than_days } => {
            anyhow::ensure!(
                (0..=3650).contains(&older_than_days),
                "--older-than-days must be 0 to 3650"
            );
            let vault = vault(pool, data_dir)?.context(
                "PAYLEDGER_PRIVACY=off: personal fields are not sealed, nothing to erase",
            )?;
            let erased =
                retention_pass(pool, &vault, chrono::Duration::days(older_than_days)).await?;
            println!("{}", serde_json::json!({ "erased": erased }));
            Ok(ExitCode::SUCCESS)
        }
    }
}
