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
    /// Erase a customer's personal fields: destroy their keys and record `SubjectErased`
    /// (idempotent; money, ids and the journal are untouched).
    Erase {
        #[arg(long)]
        customer: String,
        /// Why, recorded in the event (never personal data itself).
        #[arg(long)]
        reason: String,
    },
}

/// The vault, or `None` when `PAYLEDGER_PRIVACY=off` (personal fields are then stored as sent).
/// The master key is `PAYLEDGER_PRIVACY_MASTER_KEY`, else `privacy-master-key` in `directory`,
/// created (random, mode 0600) on first use.
pub fn vault(pool: &PgPool, directory: &Path) -> anyhow::Result<Option<PrivacyVault>> {
    if std::env::var("PAYLEDGER_PRIVACY").is_ok_and(|v| v == "off") {
        return Ok(None);
    }
    let key = match std::env::var(MASTER_KEY_ENV) {
        Ok(text) => PrivacyVault::parse_master_key(&text)
            .with_context(|| format!("{MASTER_KEY_ENV} must be 64 hex digits"))?,
        Err(_) => master_key_file(&directory.join(MASTER_KEY_FILE))?,
    };
    Ok(Some(PrivacyVault::new(pool.clone(), &key)))
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
        PrivacyCommand::Erase { customer, reason } => {
            let customer_id = payledger_domain::ids::CustomerId::parse(customer)
                .map_err(|e| anyhow::anyhow!("--customer: {e}"))?;
            anyhow::ensure!(
                !reason.trim().is_empty() && reason.chars().count() <= 200,
                "--reason must be 1 to 200 characters"
            );
            let vault = vault(pool, data_dir)?.context(
                "PAYLEDGER_PRIVACY=off: personal fields are not sealed, nothing to erase",
            )?;
            let store = payledger_store::EventStore::new(
                pool.clone(),
                payledger_store::WriterConfig::default(),
            );
            let outcome = payledger_app::privacy::erase_customer(
                &vault,
                &store,
                &customer_id,
                &reason,
                chrono::Utc::now(),
                &payledger_app::context::RequestContext::new("admin:cli", None),
            )
            .await?;
            println!(
                "{}",
                serde_json::json!({
                    "customerId": customer_id.as_str(),
                    "erased": true,
                    "keysDestroyed": outcome.keys_destroyed,
                    "recorded": outcome.recorded,
                })
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
