//! `payledger keys create|list|revoke`, and the first keys `serve` creates on an empty key table.
//!
//! The CLI runs as the same database role as the service (`payledger_app` on a managed cluster,
//! `DATABASE_URL` otherwise), which may insert keys and set `revoked_at`, nothing else; an
//! installation that wants key management apart from the service revokes INSERT on `api_keys`
//! from that role and runs `payledger keys` with `DATABASE_URL` set to an owner's URL.

use anyhow::Context;
use clap::Subcommand;
use payledger_app::api_keys::{self, Role, BOOTSTRAP_KEYS};
use payledger_app::context::RequestContext;
use payledger_store::{EventStore, WriterConfig};
use sqlx::PgPool;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Where `serve` writes the first keys, inside the data directory.
pub const KEYS_FILE: &str = "api-keys.txt";

#[derive(Debug, Clone, Subcommand)]
pub enum KeysCommand {
    /// Create a key. It is printed once, here; only its SHA-256 is stored.
    Create {
        /// client, support, auditor or admin.
        #[arg(long)]
        role: String,
        /// Who holds it: events record `ROLE:NAME` as the actor, and a client sees the orders
        /// placed under its name (several keys may share a name, for rotation).
        #[arg(long)]
        name: String,
    },
    /// List keys (ids, names, roles, prefixes, revocation), never the keys themselves.
    List,
    /// Revoke the key with this id, or every active key with this name.
    Revoke { name_or_id: String },
}

/// The actor of an operator at the command line: `cli:$USER`.
pub fn cli_actor() -> String {
    let user: String = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "operator".to_string())
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .take(64)
        .collect();
    format!("cli:{}", if user.is_empty() { "operator" } else { &user })
}

pub async fn run(command: KeysCommand, pool: &PgPool) -> anyhow::Result<ExitCode> {
    let store = EventStore::new(pool.clone(), WriterConfig::default());
    let context = RequestContext::new(cli_actor(), None);
    let mut out = std::io::stdout().lock();
    match command {
        KeysCommand::Create { role, name } => {
            let role = Role::parse(&role)?;
            let created = api_keys::create_key(pool, &store, &name, role, &context).await?;
            writeln!(
                out,
                "created {} key {} for '{}' (shown once; store it now):",
                created.record.role, created.record.key_id, created.record.name
            )?;
            writeln!(out, "{}", created.secret.expose())?;
        }
        KeysCommand::List => {
            writeln!(
                out,
                "{:<36} {:<24} {:<8} {:<13} {:<20} revoked",
                "id", "name", "role", "prefix", "created"
            )?;
            for key in api_keys::list_keys(pool).await? {
                writeln!(
                    out,
                    "{:<36} {:<24} {:<8} {:<13} {:<20} {}",
                    key.key_id,
                    key.name,
                    key.role,
                    format!("{}…", key.key_prefix),
                    key.created_at.format("%Y-%m-%d %H:%M:%S"),
                    key.revoked_at
                        .map(|at| at.format("%Y-%m-%d %H:%M:%S").to_string())
                        .unwrap_or_else(|| "-".to_string())
                )?;
            }
        }
        KeysCommand::Revoke { name_or_id } => {
            let revoked = api_keys::revoke(pool, &store, &name_or_id, &context).await?;
            for key in revoked {
                writeln!(
                    out,
                    "revoked {} ({} key of '{}'); every serve refuses it within {} s",
                    key.key_id,
                    key.role,
                    key.name,
                    payledger_http::auth::KEY_CACHE_TTL_MS / 1000
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// On an empty key table, creates an admin and a client key, writes them to
/// `DATA_DIR/api-keys.txt` (mode 0600, shell syntax: `. .payledger/api-keys.txt` sets
/// `PAYLEDGER_ADMIN_KEY` and `PAYLEDGER_CLIENT_KEY`) and shows them once on stderr — when stderr
/// is a terminal. When it is not (a service manager, a log collector), only the file's path is
/// printed: a key in a log file is a leaked key.
pub async fn bootstrap(pool: &PgPool, data_dir: &Path) -> anyhow::Result<Option<PathBuf>> {
    let created = api_keys::seed_if_empty(pool, BOOTSTRAP_KEYS, "system:bootstrap")
        .await
        .context("failed to create the first API keys")?;
    if created.is_empty() {
        return Ok(None);
    }
    let mut text = String::from(
        "# payledger API keys, created on first start. Only their hashes are stored: keep this\n\
         # file (mode 0600) or rotate with `payledger keys create` / `payledger keys revoke`.\n",
    );
    for key in &created {
        let variable = match key.record.role {
            Role::Admin => "PAYLEDGER_ADMIN_KEY",
            _ => "PAYLEDGER_CLIENT_KEY",
        };
        text.push_str(&format!("export {variable}={}\n", key.secret.expose()));
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("failed to create {}", data_dir.display()))?;
    let path = data_dir.join(KEYS_FILE);
    write_private(&path, &text)
        .with_context(|| format!("failed to write the first API keys to {}", path.display()))?;
    let mut err = std::io::stderr().lock();
    if std::io::stderr().is_terminal() {
        writeln!(
            err,
            "created the first API keys (shown once; also in {}):",
            path.display()
        )?;
        for key in &created {
            writeln!(
                err,
                "  {:<7} {:<11} {}",
                key.record.role,
                key.record.name,
                key.secret.expose()
            )?;
        }
    } else {
        writeln!(
            err,
            "created the first API keys (an admin and a client key): they are in {} (mode 0600)",
            path.display()
        )?;
    }
    Ok(Some(path))
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        let mut file = options.open(path)?;
        // An existing file keeps its old mode when opened: narrow it.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(text.as_bytes())?;
        file.sync_all()
    }
    #[cfg(not(unix))]
    {
        let mut file = options.open(path)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()
    }
}
