//! Finding the database, the same way for every subcommand: `DATABASE_URL` when set, otherwise a
//! PostgreSQL cluster payledger runs itself in the data directory.

use anyhow::Context;
use payledger_pgcluster::{ClusterOptions, ManagedCluster};
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
                let owner = match migrate_url {
                    Some(url) => PgConnectOptions::from_str(url).context(
                        "failed to parse PAYLEDGER_MIGRATE_DATABASE_URL as a postgres:// URL",
                    )?,
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
        let owner = cluster.connect_options(MANAGED_DATABASE);
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

    /// The service's pool. A short acquire timeout makes a database outage a fast 503.
    pub async fn app_pool(&self, max_connections: u32) -> anyhow::Result<PgPool> {
        PgPoolOptions::new()
            .max_connections(max_connections)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(2))
            .connect_with(quiet(self.app.clone()))
            .await
            .context("failed to connect to the database")
    }
}

/// sqlx logs every statement at info by default; the request log already says what happened.
fn quiet(options: PgConnectOptions) -> PgConnectOptions {
    options
        .log_statements(log::LevelFilter::Debug)
        .log_slow_statements(log::LevelFilter::Warn, Duration::from_millis(500))
}
