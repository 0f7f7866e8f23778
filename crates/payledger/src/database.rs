//! Finding the database, the same way for every subcommand: `DATABASE_URL` when set, otherwise a
//! PostgreSQL cluster payledger runs itself in the data directory.

use anyhow::Context;
use payledger_pgcluster::{ClusterOptions, ManagedCluster};
use payledger_store::call_bounds;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// The database of the managed cluster.
pub const MANAGED_DATABASE: &str = "payledger";

pub struct Database {
    /// Owner of the schema: runs migrations.
    pub owner: PgConnectOptions,
    /// What the service runs as. On a managed cluster the restricted `payledger_app` role, which
    /// can read events and append through `append_events`, nothing else.
    pub app: PgConnectOptions,
    pub cluster: Option<ManagedCluster>,
}

impl Database {
    /// Resolves the database and brings its schema up to date.
    ///
    /// `migrate_url` (env `PAYLEDGER_MIGRATE_DATABASE_URL`) lets migrations run as the schema
    /// owner while the service runs as the restricted role of `database_url`.
    pub async fn open(
        database_url: Option<&str>,
        migrate_url: Option<&str>,
        data_dir: &Path,
    ) -> anyhow::Result<Database> {
        let database = match database_url {
            Some(url) => {
                let app = PgConnectOptions::from_str(url)
                    .context("failed to parse DATABASE_URL as a postgres:// URL")?;
                let app = detect_dead_peers(app);
                let owner = match migrate_url {
                    Some(url) => detect_dead_peers(PgConnectOptions::from_str(url).context(
                        "failed to parse PAYLEDGER_MIGRATE_DATABASE_URL as a postgres:// URL",
                    )?),
                    None => app.clone(),
                };
                Database {
                    owner,
                    app,
                    cluster: None,
                }
            }
            None => Database::managed(data_dir).await?,
        };
        database.migrate().await?;
        Ok(database)
    }

    async fn managed(data_dir: &Path) -> anyhow::Result<Database> {
        let cluster_dir: PathBuf = data_dir.to_path_buf();
        std::fs::create_dir_all(&cluster_dir).with_context(|| {
            format!(
                "failed to create the data directory {}",
                cluster_dir.display()
            )
        })?;
        let cluster_dir = cluster_dir
            .canonicalize()
            .with_context(|| format!("failed to resolve {}", cluster_dir.display()))?;
        let cluster = ManagedCluster::start_or_join(ClusterOptions::new(&cluster_dir))
            .await
            .context("failed to start the local PostgreSQL cluster")?;
        cluster
            .ensure_database(MANAGED_DATABASE)
            .await
            .context("failed to create the payledger database")?;
        let owner = detect_dead_peers(cluster.connect_options(MANAGED_DATABASE));
        let app = owner.clone().username("payledger_app");
        Ok(Database {
            owner,
            app,
            cluster: Some(cluster),
        })
    }

    async fn migrate(&self) -> anyhow::Result<()> {
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(quiet(self.owner.clone()))
            .await
            .context("failed to connect to the database to migrate it")?;
        payledger_store::migrate(&pool)
            .await
            .context("failed to apply migrations")?;
        pool.close().await;
        if let Some(cluster) = &self.cluster {
            // The service logs in as the restricted role the migrations created, with the
            // cluster's generated password (pg.password).
            cluster
                .allow_login("payledger_app")
                .await
                .context("failed to let payledger_app log in")?;
        }
        Ok(())
    }

    /// The service's pool. A short acquire timeout makes a database outage a fast 503, and a
    /// connection released while it still owes answers (a call given up: a partition, a
    /// deadline) is closed rather than reused (`payledger_store::call_bounds`).
    pub async fn app_pool(&self, max_connections: u32) -> anyhow::Result<PgPool> {
        call_bounds::drain_or_close_on_release(
            PgPoolOptions::new()
                .max_connections(max_connections)
                .min_connections(1)
                .acquire_timeout(Duration::from_millis(
                    call_bounds::SERVICE_ACQUIRE_TIMEOUT_MS,
                )),
        )
        .connect_with(quiet(self.app.clone()))
        .await
        .context("failed to connect to the database")
    }
}

/// `PAYLEDGER_DATABASE_CALL_TIMEOUT_MS`: the longest database call and read request
/// (`payledger_store::call_bounds`), checked against its limits so a typo cannot turn it off.
pub fn call_timeout_ms_from_settings(get: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<u64> {
    const NAME: &str = "PAYLEDGER_DATABASE_CALL_TIMEOUT_MS";
    let Some(text) = get(NAME) else {
        return Ok(call_bounds::DEFAULT_DATABASE_CALL_TIMEOUT_MS);
    };
    let value: u64 = text
        .trim()
        .parse()
        .with_context(|| format!("{NAME} must be a whole number of milliseconds"))?;
    let (min, max) = (
        call_bounds::MIN_DATABASE_CALL_TIMEOUT_MS,
        call_bounds::MAX_DATABASE_CALL_TIMEOUT_MS,
    );
    if !(min..=max).contains(&value) {
        anyhow::bail!("{NAME} must be between {min} and {max} ms");
    }
    Ok(value)
}

/// Seconds a connection may sit idle before the server's kernel starts probing the client.
pub const TCP_KEEPALIVES_IDLE_S: u32 = 5;
/// Seconds between two keepalive probes.
pub const TCP_KEEPALIVES_INTERVAL_S: u32 = 1;
/// Unanswered probes before the connection is dropped (`TCP_USER_TIMEOUT` usually ends it first).
pub const TCP_KEEPALIVES_COUNT: u32 = 5;
/// Milliseconds the server's kernel waits for the client to acknowledge data (or a keepalive
/// probe) before it drops the connection.
pub const TCP_USER_TIMEOUT_MS: u32 = 10_000;

/// Asks the server to find out within seconds that this client is gone, for every connection
/// payledger opens (the pool, each runner's own lock-holding connection, the CLI).
///
/// A runner holds its projections' and process managers' session advisory locks for as long as
/// its connection lives **on the server**. When a node is cut off from PostgreSQL (a network
/// partition, a frozen host) nothing closes that connection: with the operating system's
/// defaults the server's kernel starts probing after two hours of silence, so the locks, and with
/// them every read model, would stay with the lost node that long. With these settings the
/// server's kernel probes a silent client after `TCP_KEEPALIVES_IDLE_S`, and drops a connection
/// whose data or probes go unacknowledged for `TCP_USER_TIMEOUT_MS` (10 s); the backend then
/// exits and its locks are released, and another node's runner (which retries every 2 s) takes
/// over. Bound, measured by the partition test (`crates/payledger/tests/cli/partition.rs`): locks
/// released at most ~11 s after the node's last packet, taken over within ~13 s. They are
/// server settings (`tcp_keepalives_*`, `tcp_user_timeout`, PostgreSQL 12 or later) sent in the
/// connection's startup `options`, so they hold on a server whose defaults are the operating
/// system's; a connection pooler in between that refuses `options` needs them set on the server
/// instead (docs/operations.md, "Reaching the database").
pub fn detect_dead_peers(options: PgConnectOptions) -> PgConnectOptions {
    options.options([
        ("tcp_keepalives_idle", TCP_KEEPALIVES_IDLE_S.to_string()),
        (
            "tcp_keepalives_interval",
            TCP_KEEPALIVES_INTERVAL_S.to_string(),
        ),
        ("tcp_keepalives_count", TCP_KEEPALIVES_COUNT.to_string()),
        ("tcp_user_timeout", TCP_USER_TIMEOUT_MS.to_string()),
    ])
}

/// sqlx logs every statement at info by default; the request log already says what happened.
fn quiet(options: PgConnectOptions) -> PgConnectOptions {
    options
        .log_statements(log::LevelFilter::Debug)
        .log_slow_statements(log::LevelFilter::Warn, Duration::from_millis(500))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(value: Option<&'static str>) -> impl Fn(&str) -> Option<String> {
        move |name| {
            assert_eq!(name, "PAYLEDGER_DATABASE_CALL_TIMEOUT_MS");
            value.map(str::to_owned)
        }
    }

    #[test]
    fn the_call_timeout_defaults_to_ten_seconds_and_refuses_values_that_would_turn_it_off() {
        assert_eq!(
            call_timeout_ms_from_settings(&lookup(None)).unwrap(),
            10_000
        );
        assert_eq!(
            call_timeout_ms_from_settings(&lookup(Some(" 2500 "))).unwrap(),
            2_500
        );
        for bad in ["0", "99", "120001", "ten", "-1"] {
            let error = call_timeout_ms_from_settings(&lookup(Some(bad))).unwrap_err();
            assert!(
                error
                    .to_string()
                    .contains("PAYLEDGER_DATABASE_CALL_TIMEOUT_MS"),
                "{bad}: {error}"
            );
        }
    }
}
