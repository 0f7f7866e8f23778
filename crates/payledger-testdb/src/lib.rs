//! Throw-away, migrated PostgreSQL databases for tests.
//!
//! Every test gets its own database, cloned from a template that holds the current migrations, on
//! a real server: `PAYLEDGER_TEST_DATABASE_URL` (a superuser URL) when set, otherwise a cluster
//! payledger manages itself under `target/payledger-test-pg` (started on first use, shared by all
//! test processes, left running for the next run; `.ci/run` stops it).

use payledger_pgcluster::{ClusterOptions, ManagedCluster};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor, PgConnection, PgPool};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::OnceCell;

/// A fresh database with the migrations applied.
pub struct TestDatabase {
    pub name: String,
    /// Superuser (owner) URL: what `payledger migrate` would use.
    pub owner_url: String,
    /// URL of the restricted application role `payledger_app`.
    pub app_url: String,
    /// Pool connected as the owner.
    pub owner_pool: PgPool,
    /// Pool connected as `payledger_app`, the role the service runs as.
    pub app_pool: PgPool,
}

struct Server {
    /// Superuser options for the maintenance database.
    admin: PgConnectOptions,
    template: String,
}

static SERVER: OnceCell<Server> = OnceCell::const_new();

/// Databases older than this are dropped when a test process starts: left-overs of old runs.
const STALE_DATABASE_SECS: u64 = 6 * 3600;

impl TestDatabase {
    pub async fn fresh() -> TestDatabase {
        let server = SERVER.get_or_init(prepare_server).await;
        let name = format!(
            "payledger_test_{}_{}",
            unix_secs(),
            uuid::Uuid::new_v4().simple()
        );
        let mut admin = server
            .admin
            .connect()
            .await
            .expect("connect to the test server");
        admin
            .execute(format!("CREATE DATABASE {name} TEMPLATE {}", server.template).as_str())
            .await
            .expect("create a test database from the template");
        admin
            .execute(format!("GRANT CONNECT, CREATE ON DATABASE {name} TO payledger_app").as_str())
            .await
            .expect("grant the application role its database rights");
        let _ = admin.close().await;
        let owner = server.admin.clone().database(&name);
        let app = owner.clone().username("payledger_app");
        let owner_pool = PgPoolOptions::new()
            .max_connections(8)
            .connect_with(owner.clone())
            .await
            .expect("connect to the test database as owner");
        let app_pool = PgPoolOptions::new()
            .max_connections(32)
            .connect_with(app.clone())
            .await
            .expect("connect to the test database as payledger_app");
        TestDatabase {
            owner_url: owner.to_url_lossy().to_string(),
            app_url: app.to_url_lossy().to_string(),
            name,
            owner_pool,
            app_pool,
        }
    }
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

async fn prepare_server() -> Server {
    let mut managed = None;
    let admin = match std::env::var("PAYLEDGER_TEST_DATABASE_URL") {
        Ok(url) => {
            PgConnectOptions::from_str(&url).expect("PAYLEDGER_TEST_DATABASE_URL is a postgres URL")
        }
        Err(_) => {
            let data_dir =
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/payledger-test-pg");
            let cluster = ManagedCluster::start_or_join(ClusterOptions::new(data_dir))
                .await
                .unwrap_or_else(|e| panic!("start the test PostgreSQL cluster: {e}"));
            let options = cluster.connect_options("postgres");
            managed = Some(cluster);
            options
        }
    };
    let mut conn = admin.connect().await.expect("connect to the test server");
    // One process at a time builds the template; the others wait and reuse it.
    conn.execute("SELECT pg_advisory_lock(727274)")
        .await
        .expect("lock");
    let template = format!("payledger_tmpl_{}", migrations_fingerprint());
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)")
            .bind(&template)
            .fetch_one(&mut conn)
            .await
            .expect("look up the template");
    if !exists {
        build_template(&admin, &mut conn, &template).await;
    }
    if let Some(cluster) = &managed {
        // The restricted role logs in with the cluster's password (pg.password), as under
        // `serve`; set on every start, so a cluster made before passwords existed gets it too.
        cluster
            .allow_login("payledger_app")
            .await
            .unwrap_or_else(|e| panic!("let payledger_app log in: {e}"));
    }
    drop_stale_databases(&mut conn).await;
    conn.execute("SELECT pg_advisory_unlock(727274)")
        .await
        .expect("unlock");
    let _ = conn.close().await;
    Server { admin, template }
}

async fn build_template(admin: &PgConnectOptions, conn: &mut PgConnection, template: &str) {
    let building = format!("{template}_building");
    conn.execute(format!("DROP DATABASE IF EXISTS {building}").as_str())
        .await
        .expect("drop a half-built template");
    conn.execute(format!("CREATE DATABASE {building}").as_str())
        .await
        .expect("create the template database");
    {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(admin.clone().database(&building))
            .await
            .expect("connect to the template");
        payledger_store::migrate(&pool)
            .await
            .expect("migrate the template");
        pool.close().await;
    }
    // The service logs in as payledger_app on managed clusters; tests do the same.
    conn.execute("ALTER ROLE payledger_app LOGIN")
        .await
        .expect("let payledger_app log in");
    conn.execute(format!("ALTER DATABASE {building} RENAME TO {template}").as_str())
        .await
        .expect("publish the template");
}

async fn drop_stale_databases(conn: &mut PgConnection) {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT datname FROM pg_database WHERE datname LIKE 'payledger\\_test\\_%'",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap_or_default();
    let now = unix_secs();
    for name in names {
        let created = name
            .split('_')
            .nth(2)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(now);
        if now.saturating_sub(created) > STALE_DATABASE_SECS {
            let _ = conn
                .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                .await;
        }
    }
}

fn migrations_fingerprint() -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for migration in payledger_store::MIGRATOR.iter() {
        migration.version.hash(&mut hasher);
        migration.checksum.hash(&mut hasher);
    }
    format!("{:016x}", hasher.finish())
}
