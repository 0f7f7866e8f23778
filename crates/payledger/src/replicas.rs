//! Read replicas for `serve` (`DATABASE_REPLICA_URL`) and `payledger replica init`, which makes a
//! local streaming replica of the managed cluster (docs/scaling.md, docs/operations.md).

use anyhow::Context;
use payledger_pgcluster::{ClusterOptions, ManagedCluster};
use payledger_store::replicas::ReplicaConfig;
use sqlx::postgres::PgConnectOptions;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// At most this many replica URLs: each is a pool and a probe every poll interval.
const MAX_REPLICAS: usize = 8;
/// Limits on the tuning settings, so that a typo cannot turn the bound off.
const MAX_LAG_LIMIT_MS: u64 = 60_000;
const MAX_WAIT_LIMIT_MS: u64 = 5_000;

/// Where and how `serve` reads from replicas.
#[derive(Debug, Clone, Default)]
pub struct ReplicaSettings {
    /// `postgres://` URLs of hot standbys, as the application role. They hold passwords.
    pub urls: Vec<String>,
    pub config: ReplicaConfig,
}

impl ReplicaSettings {
    /// `DATABASE_REPLICA_URL` (comma-separated), `PAYLEDGER_REPLICA_MAX_LAG_MS`,
    /// `PAYLEDGER_REPLICA_WAIT_MS`.
    pub fn from_settings(get: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<ReplicaSettings> {
        let urls: Vec<String> = get("DATABASE_REPLICA_URL")
            .map(|v| {
                v.split(',')
                    .map(|u| u.trim().to_owned())
                    .filter(|u| !u.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if urls.len() > MAX_REPLICAS {
            anyhow::bail!("DATABASE_REPLICA_URL names more than {MAX_REPLICAS} replicas");
        }
        for (index, url) in urls.iter().enumerate() {
            // The URL holds a password: the error names its place, never its text.
            // sqlx parses any scheme, so the scheme is checked here.
            let scheme_ok = ["postgres://", "postgresql://"]
                .iter()
                .any(|scheme| url.starts_with(scheme));
            if !scheme_ok {
                anyhow::bail!(
                    "DATABASE_REPLICA_URL's URL number {} is not a postgres:// URL",
                    index + 1
                );
            }
            PgConnectOptions::from_str(url).with_context(|| {
                format!(
                    "DATABASE_REPLICA_URL's URL number {} is not a postgres:// URL",
                    index + 1
                )
            })?;
        }
        let mut config = ReplicaConfig::default();
        if let Some(ms) = millis(get, "PAYLEDGER_REPLICA_MAX_LAG_MS", 1, MAX_LAG_LIMIT_MS)? {
            config.max_lag = ms;
        }
        if let Some(ms) = millis(get, "PAYLEDGER_REPLICA_WAIT_MS", 0, MAX_WAIT_LIMIT_MS)? {
            config.wait = ms;
        }
        Ok(ReplicaSettings { urls, config })
    }

    pub fn connect_options(&self) -> anyhow::Result<Vec<PgConnectOptions>> {
        self.urls
            .iter()
            .map(|url| {
                PgConnectOptions::from_str(url)
                    .map(|o| {
                        crate::database::detect_dead_peers(o)
                            .log_statements(log::LevelFilter::Debug)
                            .application_name("payledger-replica-reader")
                    })
                    .context("DATABASE_REPLICA_URL holds an invalid URL")
            })
            .collect()
    }
}

fn millis(
    get: &dyn Fn(&str) -> Option<String>,
    name: &str,
    min: u64,
    max: u64,
) -> anyhow::Result<Option<Duration>> {
    let Some(text) = get(name) else {
        return Ok(None);
    };
    let value: u64 = text
        .trim()
        .parse()
        .with_context(|| format!("{name} must be a whole number of milliseconds"))?;
    if !(min..=max).contains(&value) {
        anyhow::bail!("{name} must be between {min} and {max} ms");
    }
    Ok(Some(Duration::from_millis(value)))
}

use sqlx::ConnectOptions;

/// `payledger replica …`.
#[derive(Debug, clap::Subcommand)]
pub enum ReplicaCommand {
    /// Make a streaming hot standby of the managed cluster in --from (pg_basebackup) in this
    /// command's --data-dir, and start it. Prints the replica's application URL.
    Init {
        /// The primary's data directory (its managed cluster must be running).
        #[arg(long)]
        from: PathBuf,
        /// Make the primary wait for this replica at every commit (synchronous replication):
        /// nothing acknowledged is then lost at a failover. Commits stop while it is down.
        #[arg(long)]
        synchronous: bool,
    },
    /// Start a replica made by `replica init` again (after `payledger stop-database`).
    Start,
    /// Make the replica a primary (failover; docs/operations.md). Stop the old primary first.
    Promote,
    /// Whether the replica's server is a standby or was promoted.
    Status,
    /// Make the primary (this --data-dir) wait for the replica at every commit, or stop waiting.
    Synchronous {
        #[arg(value_parser = ["on", "off"])]
        mode: String,
    },
}

pub async fn run(
    command: ReplicaCommand,
    data_dir: &Path,
) -> anyhow::Result<std::process::ExitCode> {
    match command {
        ReplicaCommand::Init { from, synchronous } => {
            let primary = ManagedCluster::join_running(ClusterOptions::new(&from))
                .await?
                .with_context(|| {
                    format!(
                        "no managed cluster runs in {}: start it (payledger serve or migrate)",
                        from.display()
                    )
                })?;
            let replica = init(&primary, data_dir, synchronous).await?;
            eprintln!(
                "replica of port {} runs on 127.0.0.1:{} (data directory {}); serve reads from it with \
                 DATABASE_REPLICA_URL=postgres://payledger_app:PASSWORD@127.0.0.1:{}/{} (PASSWORD: {})",
                primary.port(),
                replica.port(),
                data_dir.display(),
                replica.port(),
                crate::database::MANAGED_DATABASE,
                replica.password_file().display()
            );
        }
        ReplicaCommand::Start => {
            let replica = start(data_dir).await?;
            eprintln!("replica runs on 127.0.0.1:{}", replica.port());
        }
        ReplicaCommand::Promote => {
            let replica = ManagedCluster::join_running(ClusterOptions::new(data_dir))
                .await?
                .with_context(|| format!("no cluster runs in {}", data_dir.display()))?;
            replica.promote().await?;
            eprintln!(
                "promoted: 127.0.0.1:{} is a primary now; point DATABASE_URL at it",
                replica.port()
            );
        }
        ReplicaCommand::Synchronous { mode } => {
            let primary = ManagedCluster::join_running(ClusterOptions::new(data_dir))
                .await?
                .with_context(|| format!("no cluster runs in {}", data_dir.display()))?;
            let standby = (mode == "on").then_some(payledger_pgcluster::REPLICA_APPLICATION_NAME);
            primary.set_synchronous_standby(standby).await?;
            eprintln!("synchronous replication {mode}");
        }
        ReplicaCommand::Status => {
            let replica = ManagedCluster::join_running(ClusterOptions::new(data_dir))
                .await?
                .with_context(|| format!("no cluster runs in {}", data_dir.display()))?;
            let standby = replica.is_standby().await?;
            println!(
                "{}",
                serde_json::json!({
                    "port": replica.port(),
                    "standby": standby,
                })
            );
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Makes `replica_dir` a running streaming replica of `primary`.
pub async fn init(
    primary: &ManagedCluster,
    replica_dir: &Path,
    synchronous: bool,
) -> anyhow::Result<ManagedCluster> {
    let replica = primary
        .make_replica(ClusterOptions::new(replica_dir))
        .await
        .context("failed to make the replica")?;
    copy_key_files(primary.data_dir(), replica_dir)?;
    if synchronous {
        primary
            .set_synchronous_standby(Some(payledger_pgcluster::REPLICA_APPLICATION_NAME))
            .await?;
    }
    Ok(replica)
}

/// The keys a data directory may hold in files rather than settings. They are not in the
/// database, so a promoted replica without them could not unseal personal fields, sign
/// checkpoints or use stored billing keys: `init` copies them (0600) beside the replica.
const KEY_FILES: [&str; 3] = [
    crate::privacy_cli::MASTER_KEY_FILE,
    crate::audit_checkpoints::SIGNING_KEY_FILE,
    crate::billing_jobs::DEV_KEY_FILE,
];

fn copy_key_files(primary_dir: &Path, replica_dir: &Path) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    for name in KEY_FILES {
        let from = primary_dir.join(name);
        let Ok(bytes) = std::fs::read(&from) else {
            continue; // never created: nothing to carry over
        };
        let to = replica_dir.join(name);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&to)
            .and_then(|mut file| file.write_all(&bytes))
            .with_context(|| format!("failed to copy {} to {}", from.display(), to.display()))?;
    }
    Ok(())
}

/// Starts (or joins) a replica made by [`init`]; it keeps its standby settings.
pub async fn start(replica_dir: &Path) -> anyhow::Result<ManagedCluster> {
    let mut options = ClusterOptions::new(replica_dir);
    if payledger_pgcluster::is_standby_data_dir(replica_dir) {
        options.settings.push((
            "cluster_name".to_owned(),
            payledger_pgcluster::REPLICA_APPLICATION_NAME.to_owned(),
        ));
    }
    Ok(ManagedCluster::start_or_join(options).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_settings_are_read_and_checked() {
        let get = |name: &str| match name {
            "DATABASE_REPLICA_URL" => {
                Some("postgres://a:b@127.0.0.1:5433/p, postgres://a:b@127.0.0.1:5434/p".to_owned())
            }
            "PAYLEDGER_REPLICA_MAX_LAG_MS" => Some("250".to_owned()),
            _ => None,
        };
        let settings = ReplicaSettings::from_settings(&get).unwrap();
        assert_eq!(settings.urls.len(), 2);
        assert_eq!(settings.config.max_lag, Duration::from_millis(250));
        let bad = |name: &str| (name == "PAYLEDGER_REPLICA_MAX_LAG_MS").then(|| "0".to_owned());
        assert!(ReplicaSettings::from_settings(&bad).is_err());
        let secret_url =
            |name: &str| (name == "DATABASE_REPLICA_URL").then(|| "mysql://u:hunter2@x".to_owned());
        let error = format!(
            "{:#}",
            ReplicaSettings::from_settings(&secret_url).unwrap_err()
        );
        assert!(!error.contains("hunter2"), "{error}");
    }
}
