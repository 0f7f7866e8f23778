//! payledger's own local PostgreSQL cluster, for when no `DATABASE_URL` is given.
//!
//! [`ManagedCluster::start_or_join`] initialises a cluster in `DATA_DIR/pg` from the installed
//! server binaries on first use, starts it, or joins it when another process (a second
//! `payledger serve`, a parallel test binary) already started it. The cluster keeps running when
//! the process exits, like a development database; [`ManagedCluster::stop`] stops it.
//!
//! Layout of the data directory:
//!
//! | path             | what                                                          |
//! |------------------|---------------------------------------------------------------|
//! | `pg/`            | the cluster (PGDATA), owned by the server user                |
//! | `pg.init/`       | a cluster being initialised; renamed to `pg/` once complete   |
//! | `pg.port`        | the TCP port the cluster listens on (127.0.0.1 only)          |
//! | `pg.log`         | the server's log (`pg.log.1`: the previous one, once large)   |
//! | `pg.lock`        | held while the cluster is initialised, started or stopped     |
//! | `pg.password`    | the generated password of `postgres` (and of the roles payledger lets log in), mode 0600 |
//!
//! The server listens on 127.0.0.1 only (no Unix socket) and accepts only `scram-sha-256`
//! password logins (`credentials`): a local user who cannot read `pg.password` cannot connect,
//! as the superuser or otherwise. A cluster made by an older payledger with `trust` is given a
//! password at its next start (the server is started in single-user mode once to set it).
//! Durability settings stay on.

mod binaries;
mod config;
mod credentials;
mod error;
mod lock;
mod replica;
mod server_user;

pub use error::ClusterError;
pub use replica::{is_standby_data_dir, REPLICA_APPLICATION_NAME};

use binaries::ServerBinaries;
use error::tail_of;
use server_user::ServerUser;
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use sqlx::{ConnectOptions, Connection};
use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

/// How long a process waits for another one to finish initialising or starting the cluster.
const LOCK_WAIT: Duration = Duration::from_secs(120);
/// How long `pg_ctl` waits for the server to start or stop.
const PG_CTL_START_TIMEOUT_S: u64 = 30;
const PG_CTL_STOP_TIMEOUT_S: u64 = 60;
/// How long we wait for a started or joined server to accept a connection.
const READY_WAIT: Duration = Duration::from_secs(30);
const READY_PROBE_INTERVAL: Duration = Duration::from_millis(100);
const READY_PROBE_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a `postmaster.pid` may name a live process that does not answer on its port (a
/// server that just died and is not reaped yet, or one still binding its socket).
const UNANSWERED_PID_WAIT: Duration = Duration::from_secs(10);
const TCP_PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// The log is moved to `pg.log.1` at a start when it has grown past this.
const LOG_ROTATE_BYTES: u64 = 64 * 1024 * 1024;
/// How much of a failed command's output or the server log goes into an error message.
const ERROR_OUTPUT_BYTES: usize = 8 * 1024;
/// PostgreSQL silently truncates identifiers longer than NAMEDATALEN - 1 bytes.
const MAX_DATABASE_NAME_BYTES: usize = 63;
/// The superuser `initdb -U` creates; it logs in with the password in `pg.password`.
const SUPERUSER: &str = "postgres";

/// What [`ManagedCluster::start_or_join`] needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterOptions {
    /// payledger's data directory; the cluster lives in its `pg/` subdirectory. Created if
    /// missing. When running as root, the `postgres` OS user must be able to enter it.
    pub data_dir: PathBuf,
    /// The port to listen on. `None`: the port the cluster used before, or a free one on first
    /// start. Asking for another port than a running cluster's is an error.
    pub port: Option<u16>,
    /// Extra postgresql.conf settings, applied at the next start (a running cluster is joined
    /// as it is). They override payledger's defaults, including the durability settings, so
    /// only turn `fsync` off for throwaway clusters. `port`, `listen_addresses` and
    /// `unix_socket_directories` are refused.
    pub settings: Vec<(String, String)>,
    /// Look for `initdb`, `pg_ctl` and `postgres` in this directory only. `None`: the
    /// directory of an existing cluster's major version, `pg_config --bindir`, the distribution
    /// directories (`/usr/lib/postgresql/*/bin`, highest version first), then `PATH`.
    pub bin_dir: Option<PathBuf>,
}

impl ClusterOptions {
    /// Options with payledger's defaults for everything but the data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> ClusterOptions {
        ClusterOptions {
            data_dir: data_dir.into(),
            port: None,
            settings: Vec::new(),
            bin_dir: None,
        }
    }
}

/// How [`ManagedCluster::start_or_join`] got to a running cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOutcome {
    /// The data directory had no cluster: one was created with `initdb`, then started.
    InitialisedAndStarted,
    /// The cluster existed and was stopped; this process started it.
    Started,
    /// The cluster was already running (another process started it); nothing was changed.
    Joined,
}

/// What [`ManagedCluster::ensure_database`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseCreation {
    Created,
    AlreadyExisted,
}

/// A running local cluster: the port to reach it on and the means to stop it.
///
/// Dropping it leaves the cluster running; call [`ManagedCluster::stop`] to stop it.
#[derive(Debug, Clone)]
pub struct ManagedCluster {
    layout: Layout,
    port: u16,
    binaries: ServerBinaries,
    server_user: ServerUser,
    outcome: StartOutcome,
    /// `None` only for a cluster an older payledger started with `trust` that still runs.
    password: Option<String>,
}

/// The paths inside the data directory (absolute, because commands run from `/`).
#[derive(Debug, Clone)]
struct Layout {
    data_dir: PathBuf,
    pgdata: PathBuf,
    pgdata_being_initialised: PathBuf,
    port_file: PathBuf,
    log_file: PathBuf,
    previous_log_file: PathBuf,
    lock_file: PathBuf,
    password_file: PathBuf,
    new_password_file: PathBuf,
    init_password_file: PathBuf,
}

impl Layout {
    fn new(data_dir: PathBuf) -> Layout {
        Layout {
            pgdata: data_dir.join("pg"),
            pgdata_being_initialised: data_dir.join("pg.init"),
            port_file: data_dir.join("pg.port"),
            log_file: data_dir.join("pg.log"),
            previous_log_file: data_dir.join("pg.log.1"),
            lock_file: data_dir.join("pg.lock"),
            password_file: data_dir.join(credentials::PASSWORD_FILE),
            new_password_file: data_dir.join(credentials::NEW_PASSWORD_FILE),
            init_password_file: data_dir.join("pg.initpw"),
            data_dir,
        }
    }

    fn has_cluster(&self) -> bool {
        self.pgdata.join("PG_VERSION").is_file()
    }
}

impl ManagedCluster {
    /// Returns a running cluster in `options.data_dir`: joins it if it runs, otherwise
    /// initialises it (first use) and starts it. Concurrent calls on one data directory, from
    /// this process or others, share one cluster: one starts it, the others join.
    pub async fn start_or_join(options: ClusterOptions) -> Result<ManagedCluster, ClusterError> {
        let action = format!(
            "start the local PostgreSQL cluster in {}",
            options.data_dir.display()
        );
        let (cluster, log_offset) =
            run_blocking(action, move || start_or_join_blocking(&options)).await?;
        cluster.wait_until_accepting_connections(log_offset).await?;
        match cluster.outcome {
            StartOutcome::Joined => tracing::debug!(
                data_dir = %cluster.layout.data_dir.display(),
                port = cluster.port,
                "joined the running local PostgreSQL cluster"
            ),
            outcome => tracing::info!(
                data_dir = %cluster.layout.data_dir.display(),
                port = cluster.port,
                ?outcome,
                "started the local PostgreSQL cluster"
            ),
        }
        Ok(cluster)
    }

    /// Joins the cluster in `options.data_dir` if it runs; `None` if it does not (nothing is
    /// initialised or started). For commands such as `payledger stop`.
    pub async fn join_running(
        options: ClusterOptions,
    ) -> Result<Option<ManagedCluster>, ClusterError> {
        let action = format!(
            "look for a running PostgreSQL cluster in {}",
            options.data_dir.display()
        );
        let joined = run_blocking(action, move || {
            if !options.data_dir.join("pg").join("PG_VERSION").is_file() {
                // Nothing was ever initialised here; looking must not create anything.
                return Ok(None);
            }
            let base = Base::prepare(&options)?;
            let action = format!(
                "look for a running PostgreSQL cluster in {}",
                base.layout.pgdata.display()
            );
            lock::with_exclusive_lock(&base.layout.lock_file, LOCK_WAIT, &action, || {
                base.join_if_running(options.port)
            })
        })
        .await?;
        if let Some(cluster) = &joined {
            cluster.wait_until_accepting_connections(None).await?;
        }
        Ok(joined)
    }

    /// The TCP port on 127.0.0.1 the cluster listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// payledger's data directory (absolute); the cluster itself is its `pg/` subdirectory.
    pub fn data_dir(&self) -> &Path {
        &self.layout.data_dir
    }

    /// The server's log file.
    pub fn log_file(&self) -> &Path {
        &self.layout.log_file
    }

    /// The directory of the server binaries in use; `psql` and `pg_dump` usually sit beside them.
    pub fn bin_dir(&self) -> &Path {
        self.binaries.bin_dir()
    }

    /// Whether this call initialised, started or joined the cluster.
    pub fn outcome(&self) -> StartOutcome {
        self.outcome
    }

    /// `postgres://postgres:PASSWORD@127.0.0.1:PORT/DATABASE`, the database name
    /// percent-encoded. It holds the password: never log it.
    pub fn superuser_url(&self, database: &str) -> String {
        let password = self
            .password
            .as_deref()
            .map(|p| format!(":{p}"))
            .unwrap_or_default();
        format!(
            "postgres://{SUPERUSER}{password}@127.0.0.1:{}/{}",
            self.port,
            percent_encode(database)
        )
    }

    /// The file that holds the cluster's password (mode 0600): what an operator reads to connect
    /// with `psql` (docs/operations.md).
    pub fn password_file(&self) -> &Path {
        &self.layout.password_file
    }

    /// Lets `role` log in with the cluster's password (payledger's restricted application role).
    /// The statement is not logged: it holds the password.
    pub async fn allow_login(&self, role: &str) -> Result<(), ClusterError> {
        let mut connection = self
            .connect_options("postgres")
            .disable_statement_logging()
            .connect()
            .await
            .map_err(|source| ClusterError::Database {
                action: format!("connect to the local cluster on port {}", self.port),
                source,
            })?;
        let statement = match &self.password {
            Some(password) => credentials::alter_role_sql(role, password),
            None => format!("ALTER ROLE {} LOGIN", quote_identifier(role)),
        };
        let result = sqlx::Executor::execute(&mut connection, statement.as_str()).await;
        connection.close().await.ok();
        result.map(|_| ()).map_err(|source| ClusterError::Database {
            action: format!("let role {role:?} log in"),
            source,
        })
    }

    /// The same target as [`ManagedCluster::superuser_url`], without a round trip through a URL.
    pub fn connect_options(&self, database: &str) -> PgConnectOptions {
        let options = PgConnectOptions::new_without_pgpass()
            .host("127.0.0.1")
            .port(self.port)
            .username(SUPERUSER)
            .database(database)
            // The server has no certificate; a PGSSLMODE=require in the environment must not
            // make the local connection impossible.
            .ssl_mode(PgSslMode::Disable);
        match &self.password {
            Some(password) => options.password(password),
            None => options,
        }
    }

    /// Creates database `name` unless it exists. Safe when several processes do it at once:
    /// exactly one of them gets [`DatabaseCreation::Created`].
    pub async fn ensure_database(&self, name: &str) -> Result<DatabaseCreation, ClusterError> {
        validate_database_name(name)?;
        let database_error =
            |action: String| move |source| ClusterError::Database { action, source };
        let mut connection =
            self.connect_options("postgres")
                .connect()
                .await
                .map_err(database_error(format!(
                    "connect to the local cluster on port {}",
                    self.port
                )))?;
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(name)
                .fetch_one(&mut connection)
                .await
                .map_err(database_error(format!("look up database {name:?}")))?;
        if exists {
            connection.close().await.ok();
            return Ok(DatabaseCreation::AlreadyExisted);
        }
        // CREATE DATABASE takes no parameters and cannot run in a transaction block, so it goes
        // over the simple query protocol with the name quoted as an identifier.
        let statement = format!("CREATE DATABASE {}", quote_identifier(name));
        let created = sqlx::Executor::execute(&mut connection, statement.as_str()).await;
        connection.close().await.ok();
        match created {
            Ok(_) => Ok(DatabaseCreation::Created),
            // Another process created it between our check and our CREATE: 42P04 when its
            // commit came first, 23505 (pg_database's unique name index) when both raced.
            Err(error) if is_duplicate_database(&error) => Ok(DatabaseCreation::AlreadyExisted),
            Err(source) => Err(ClusterError::Database {
                action: format!("create database {name:?}"),
                source,
            }),
        }
    }

    /// Stops the cluster (`pg_ctl stop -m fast`: open transactions are rolled back, committed
    /// data is safe) and waits until it is down. Succeeds if it was not running. Blocks for up
    /// to a minute: from async code, call it through `tokio::task::spawn_blocking`.
    pub fn stop(&self) -> Result<(), ClusterError> {
        self.stop_with_mode("fast")
    }

    /// Stops the server as a power cut would (`pg_ctl stop -m immediate`): no checkpoint, no
    /// goodbye to clients or standbys; the next start runs crash recovery. For failover tests
    /// and soak runs: what a lost machine looks like to the replica.
    pub fn stop_immediately(&self) -> Result<(), ClusterError> {
        self.stop_with_mode("immediate")
    }

    fn stop_with_mode(&self, mode: &str) -> Result<(), ClusterError> {
        let base = self.base();
        let action = format!(
            "stop the PostgreSQL cluster in {}",
            self.layout.pgdata.display()
        );
        lock::with_exclusive_lock(&self.layout.lock_file, LOCK_WAIT, &action, || {
            if base.running_port()?.is_none() {
                return Ok(());
            }
            let pgdata = self.layout.pgdata.as_os_str();
            let timeout_s = PG_CTL_STOP_TIMEOUT_S.to_string();
            let output = base
                .server_user
                .command(&base.binaries.pg_ctl())
                .arg("stop")
                .arg("-D")
                .arg(pgdata)
                .args(["-m", mode, "-w", "-t", &timeout_s])
                .output()
                .map_err(ClusterError::io(format!(
                    "run {}",
                    base.binaries.pg_ctl().display()
                )))?;
            check_success(&output, &action, &base.binaries.pg_ctl())?;
            tracing::info!(data_dir = %self.layout.data_dir.display(), "stopped the local PostgreSQL cluster");
            Ok(())
        })
    }

    fn base(&self) -> Base {
        Base {
            layout: self.layout.clone(),
            binaries: self.binaries.clone(),
            server_user: self.server_user.clone(),
        }
    }

    async fn wait_until_accepting_connections(
        &self,
        log_offset: Option<u64>,
    ) -> Result<(), ClusterError> {
        let deadline = Instant::now() + READY_WAIT;
        loop {
            let attempt = tokio::time::timeout(
                READY_PROBE_CONNECT_TIMEOUT,
                self.connect_options("postgres").connect(),
            )
            .await;
            let last_error = match attempt {
                Ok(Ok(connection)) => {
                    connection.close().await.ok();
                    return Ok(());
                }
                Ok(Err(error)) => error.to_string(),
                Err(_elapsed) => "the connection attempt timed out".to_owned(),
            };
            if Instant::now() >= deadline {
                let log_file = self.layout.log_file.clone();
                let log_tail = match log_offset {
                    Some(offset) => {
                        tokio::task::spawn_blocking(move || read_log_since(&log_file, offset))
                            .await
                            .unwrap_or_default()
                    }
                    None => String::new(),
                };
                return Err(ClusterError::NotReady {
                    pgdata: self.layout.pgdata.clone(),
                    port: self.port,
                    waited_s: READY_WAIT.as_secs(),
                    last_error,
                    log_file: self.layout.log_file.clone(),
                    log_tail,
                });
            }
            tokio::time::sleep(READY_PROBE_INTERVAL).await;
        }
    }
}

/// Runs blocking work (locks, processes, files) off the async worker threads.
async fn run_blocking<T: Send + 'static>(
    action: String,
    work: impl FnOnce() -> Result<T, ClusterError> + Send + 'static,
) -> Result<T, ClusterError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(_cancelled) => Err(ClusterError::Cancelled { action }),
    }
}

/// Returns the cluster and, when this call started the server, where the log stood before.
fn start_or_join_blocking(
    options: &ClusterOptions,
) -> Result<(ManagedCluster, Option<u64>), ClusterError> {
    let base = Base::prepare(options)?;
    let action = format!(
        "start the PostgreSQL cluster in {}",
        base.layout.pgdata.display()
    );
    let lock_file = base.layout.lock_file.clone();
    lock::with_exclusive_lock(&lock_file, LOCK_WAIT, &action, || {
        if let Some(joined) = base.join_if_running(options.port)? {
            return Ok((joined, None));
        }
        let outcome = if base.layout.has_cluster() {
            if credentials::read(&base.layout.password_file)?.is_none() {
                base.set_password_of_trusting_cluster()?;
            }
            StartOutcome::Started
        } else {
            base.initialise()?;
            StartOutcome::InitialisedAndStarted
        };
        let port = match options.port {
            Some(port) => port,
            None => match base.read_port_file()? {
                Some(port) => port,
                None => pick_free_port()?,
            },
        };
        base.write_config(port, &options.settings)?;
        base.write_port_file(port)?;
        let log_offset = base.prepare_log()?;
        base.start_server(log_offset)?;
        Ok((base.into_cluster(port, outcome)?, Some(log_offset)))
    })
}

/// What every operation needs: where things are, which binaries, which OS user.
#[derive(Clone)]
struct Base {
    layout: Layout,
    binaries: ServerBinaries,
    server_user: ServerUser,
}

impl Base {
    /// Checks the options and the machine, and creates the data directory. Takes no lock.
    fn prepare(options: &ClusterOptions) -> Result<Base, ClusterError> {
        config::validate(&options.settings)?;
        let cluster_version =
            fs::read_to_string(options.data_dir.join("pg").join("PG_VERSION")).ok();
        let binaries =
            ServerBinaries::find(options.bin_dir.as_deref(), cluster_version.as_deref())?;
        let server_user = ServerUser::detect()?;
        fs::create_dir_all(&options.data_dir).map_err(ClusterError::io(format!(
            "create the data directory {}",
            options.data_dir.display()
        )))?;
        let data_dir = fs::canonicalize(&options.data_dir).map_err(ClusterError::io(format!(
            "resolve the data directory {}",
            options.data_dir.display()
        )))?;
        server_user.check_can_reach(&data_dir, &binaries.pg_ctl())?;
        Ok(Base {
            layout: Layout::new(data_dir),
            binaries,
            server_user,
        })
    }

    /// The cluster, with the password read now (under the lock: another process may just have
    /// initialised the cluster and written it).
    fn into_cluster(
        self,
        port: u16,
        outcome: StartOutcome,
    ) -> Result<ManagedCluster, ClusterError> {
        let password = credentials::read(&self.layout.password_file)?;
        if password.is_none() {
            tracing::warn!(
                data_dir = %self.layout.data_dir.display(),
                "the running local PostgreSQL cluster still trusts every local user; stop it \
                 (payledger stop-database) so that the next start locks it with a password"
            );
        }
        Ok(ManagedCluster {
            layout: self.layout,
            port,
            binaries: self.binaries,
            server_user: self.server_user,
            outcome,
            password,
        })
    }

    fn join_if_running(
        &self,
        requested_port: Option<u16>,
    ) -> Result<Option<ManagedCluster>, ClusterError> {
        let Some(running_port) = self.running_port()? else {
            return Ok(None);
        };
        if let Some(requested_port) = requested_port.filter(|requested| *requested != running_port)
        {
            return Err(ClusterError::PortConflict {
                data_dir: self.layout.data_dir.clone(),
                running_port,
                requested_port,
            });
        }
        Ok(Some(
            self.clone()
                .into_cluster(running_port, StartOutcome::Joined)?,
        ))
    }

    /// The port of the running server, `None` if it does not run.
    ///
    /// `pg_ctl status` only asks whether the process named in `postmaster.pid` exists, which is
    /// also true of a server that just died and has not been reaped yet (a zombie; PID 1 in a
    /// container can take a second or never) or of an unrelated process that reused the PID
    /// after a crash. So a server counts as running only once it also accepts TCP connections
    /// on its port; until then we wait a bounded time for one of the two answers to change.
    fn running_port(&self) -> Result<Option<u16>, ClusterError> {
        let deadline = Instant::now() + UNANSWERED_PID_WAIT;
        loop {
            if !self.postmaster_process_exists()? {
                return Ok(None);
            }
            let port = self.read_postmaster_port()?;
            let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            if std::net::TcpStream::connect_timeout(&address, TCP_PROBE_TIMEOUT).is_ok() {
                return Ok(Some(port));
            }
            if Instant::now() >= deadline {
                return Err(ClusterError::UnansweredPostmasterPid {
                    pid_file: self.layout.pgdata.join("postmaster.pid"),
                    port,
                    waited_s: UNANSWERED_PID_WAIT.as_secs(),
                });
            }
            std::thread::sleep(READY_PROBE_INTERVAL);
        }
    }

    /// `pg_ctl status`: whether the process named in `postmaster.pid` exists.
    fn postmaster_process_exists(&self) -> Result<bool, ClusterError> {
        if !self.layout.has_cluster() {
            return Ok(false);
        }
        let pg_ctl = self.binaries.pg_ctl();
        let output = self
            .server_user
            .command(&pg_ctl)
            .arg("status")
            .arg("-D")
            .arg(&self.layout.pgdata)
            .output()
            .map_err(ClusterError::io(format!("run {}", pg_ctl.display())))?;
        // pg_ctl status: 0 running, 3 not running, anything else is a problem to report.
        match output.status.code() {
            Some(0) => Ok(true),
            Some(3) => Ok(false),
            _ => Err(command_failed(
                &output,
                &format!(
                    "check whether the cluster in {} runs",
                    self.layout.pgdata.display()
                ),
                &pg_ctl,
            )),
        }
    }

    /// The fourth line of `postmaster.pid` is the port the running server listens on.
    fn read_postmaster_port(&self) -> Result<u16, ClusterError> {
        let path = self.layout.pgdata.join("postmaster.pid");
        let text = fs::read_to_string(&path)
            .map_err(ClusterError::io(format!("read {}", path.display())))?;
        parse_port(text.lines().nth(3).unwrap_or_default()).ok_or_else(|| {
            ClusterError::UnreadableStateFile {
                path,
                reason: "its fourth line is not a port number".to_owned(),
            }
        })
    }

    /// Runs `initdb` into `pg.init/` and renames it to `pg/` only when complete, so that an
    /// interrupted `initdb` never leaves a half-made cluster where a real one is expected.
    fn initialise(&self) -> Result<(), ClusterError> {
        let layout = &self.layout;
        if layout.pgdata.exists() {
            // An empty directory (made by hand, say) is fine to replace; anything else is not ours.
            fs::remove_dir(&layout.pgdata)
                .map_err(|_| ClusterError::NotAClusterDirectory(layout.pgdata.clone()))?;
        }
        let staging = &layout.pgdata_being_initialised;
        if staging.exists() {
            // Left by an initdb that was interrupted; we hold the lock, so nobody is using it.
            fs::remove_dir_all(staging).map_err(ClusterError::io(format!(
                "remove the incomplete cluster {}",
                staging.display()
            )))?;
        }
        fs::create_dir(staging)
            .map_err(ClusterError::io(format!("create {}", staging.display())))?;
        fs::set_permissions(staging, fs::Permissions::from_mode(0o700)).map_err(
            ClusterError::io(format!("restrict {} to its owner", staging.display())),
        )?;
        self.server_user.hand_over(staging)?;
        // The password: ours in pg.password.new until the cluster is complete; initdb reads a
        // copy handed to the server user, removed right after.
        let password = credentials::generate()?;
        credentials::write_private(&layout.new_password_file, &password)?;
        credentials::write_private(&layout.init_password_file, &password)?;
        self.server_user.hand_over(&layout.init_password_file)?;

        let initdb = self.binaries.initdb();
        let action = format!("initialise a PostgreSQL cluster in {}", staging.display());
        let output = self
            .server_user
            .command(&initdb)
            .arg("-D")
            .arg(staging)
            .args([
                "-A",
                "scram-sha-256",
                "-U",
                SUPERUSER,
                "--encoding=UTF8",
                "--locale=C",
            ])
            .arg(format!("--pwfile={}", layout.init_password_file.display()))
            .output()
            .map_err(ClusterError::io(format!("run {}", initdb.display())));
        let _ = fs::remove_file(&layout.init_password_file);
        check_success(&output?, &action, &initdb)?;

        let main_config = staging.join("postgresql.conf");
        OpenOptions::new()
            .append(true)
            .open(&main_config)
            .and_then(|mut file| file.write_all(config::INCLUDE_LINE.as_bytes()))
            .map_err(ClusterError::io(format!(
                "add payledger's settings to {}",
                main_config.display()
            )))?;
        fs::rename(staging, &layout.pgdata).map_err(ClusterError::io(format!(
            "move the new cluster from {} to {}",
            staging.display(),
            layout.pgdata.display()
        )))?;
        self.publish_new_password()?;
        tracing::info!(pgdata = %layout.pgdata.display(), "initialised a local PostgreSQL cluster");
        Ok(())
    }

    fn write_config(&self, port: u16, settings: &[(String, String)]) -> Result<(), ClusterError> {
        let path = self.layout.pgdata.join(config::FILE_NAME);
        fs::write(&path, config::render(port, settings)?)
            .map_err(ClusterError::io(format!("write {}", path.display())))?;
        self.server_user.hand_over(&path)?;
        // Rewritten on every start, so a cluster can never be left trusting anybody.
        let hba = self.layout.pgdata.join("pg_hba.conf");
        fs::write(&hba, credentials::PG_HBA)
            .map_err(ClusterError::io(format!("write {}", hba.display())))?;
        self.server_user.hand_over(&hba)
    }

    /// A cluster initialised by an older payledger (`trust`, no password) gets a password before
    /// it starts again: the server runs once in single-user mode to set it.
    fn set_password_of_trusting_cluster(&self) -> Result<(), ClusterError> {
        let password = credentials::generate()?;
        credentials::write_private(&self.layout.new_password_file, &password)?;
        let postgres = self.binaries.bin_dir().join("postgres");
        let action = format!(
            "set a password on the cluster in {}",
            self.layout.pgdata.display()
        );
        let mut child = self
            .server_user
            .command(&postgres)
            .arg("--single")
            .arg("-D")
            .arg(&self.layout.pgdata)
            .arg("postgres")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(ClusterError::io(format!("run {}", postgres.display())))?;
        if let Some(mut stdin) = child.stdin.take() {
            let statement = credentials::alter_role_sql(SUPERUSER, &password);
            stdin
                .write_all(format!("{statement};\n").as_bytes())
                .map_err(ClusterError::io(format!("write to {}", postgres.display())))?;
        }
        let output = child
            .wait_with_output()
            .map_err(ClusterError::io(format!("run {}", postgres.display())))?;
        let said = String::from_utf8_lossy(&output.stdout).to_string()
            + &String::from_utf8_lossy(&output.stderr);
        if !output.status.success() || said.contains("ERROR") {
            return Err(command_failed(&output, &action, &postgres));
        }
        tracing::info!(pgdata = %self.layout.pgdata.display(), "locked a cluster that trusted local users with a generated password");
        self.publish_new_password()
    }

    /// `pg.password.new` becomes `pg.password` once the cluster has that password.
    fn publish_new_password(&self) -> Result<(), ClusterError> {
        fs::rename(&self.layout.new_password_file, &self.layout.password_file).map_err(
            ClusterError::io(format!("write {}", self.layout.password_file.display())),
        )
    }

    fn read_port_file(&self) -> Result<Option<u16>, ClusterError> {
        let path = &self.layout.port_file;
        match fs::read_to_string(path) {
            Ok(text) => {
                parse_port(&text)
                    .map(Some)
                    .ok_or_else(|| ClusterError::UnreadableStateFile {
                        path: path.clone(),
                        reason: "it does not hold a port number; delete it to pick a new port"
                            .to_owned(),
                    })
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(ClusterError::io(format!("read {}", path.display()))(error)),
        }
    }

    /// Written through a temporary file and a rename, so a reader never sees half a number.
    fn write_port_file(&self, port: u16) -> Result<(), ClusterError> {
        let path = &self.layout.port_file;
        let temporary = path.with_extension("port.tmp");
        fs::write(&temporary, format!("{port}\n"))
            .and_then(|()| fs::rename(&temporary, path))
            .map_err(ClusterError::io(format!("write {}", path.display())))
    }

    /// Moves a large log aside, makes sure the server user can append to the log, and returns
    /// its current length: what the server writes from there on belongs to this start.
    fn prepare_log(&self) -> Result<u64, ClusterError> {
        let log_file = &self.layout.log_file;
        if fs::metadata(log_file).is_ok_and(|meta| meta.len() > LOG_ROTATE_BYTES) {
            fs::rename(log_file, &self.layout.previous_log_file).map_err(ClusterError::io(
                format!("move the large log {} aside", log_file.display()),
            ))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_file)
            .map_err(ClusterError::io(format!(
                "create the log file {}",
                log_file.display()
            )))?;
        self.server_user.hand_over(log_file)?;
        let length = file
            .metadata()
            .map_err(ClusterError::io(format!(
                "read the size of {}",
                log_file.display()
            )))?
            .len();
        Ok(length)
    }

    /// `pg_ctl start` detaches the server into its own session, so it keeps running after this
    /// process exits, and waits until it is ready. A `postmaster.pid` left by a crash does not
    /// stop it: the server replaces a lock file whose process is gone.
    fn start_server(&self, log_offset: u64) -> Result<(), ClusterError> {
        let pg_ctl = self.binaries.pg_ctl();
        let timeout_s = PG_CTL_START_TIMEOUT_S.to_string();
        let output = self
            .server_user
            .command(&pg_ctl)
            .arg("start")
            .arg("-D")
            .arg(&self.layout.pgdata)
            .arg("-l")
            .arg(&self.layout.log_file)
            .args(["-w", "-t", &timeout_s])
            .output()
            .map_err(ClusterError::io(format!("run {}", pg_ctl.display())))?;
        if output.status.success() {
            return Ok(());
        }
        let action = format!(
            "start the PostgreSQL cluster in {}",
            self.layout.pgdata.display()
        );
        let mut error = command_failed(&output, &action, &pg_ctl);
        if let ClusterError::CommandFailed { output, .. } = &mut error {
            let log = read_log_since(&self.layout.log_file, log_offset);
            output.push_str(&format!(
                "\n{} says:\n{log}",
                self.layout.log_file.display()
            ));
        }
        Err(error)
    }
}

fn check_success(output: &Output, action: &str, program: &Path) -> Result<(), ClusterError> {
    if output.status.success() {
        Ok(())
    } else {
        Err(command_failed(output, action, program))
    }
}

fn command_failed(output: &Output, action: &str, program: &Path) -> ClusterError {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    ClusterError::CommandFailed {
        action: action.to_owned(),
        program: program.to_path_buf(),
        status: output.status,
        output: tail_of(&text, ERROR_OUTPUT_BYTES),
    }
}

/// What the server logged since `offset`, cut to the last few kilobytes; empty if unreadable
/// (it only decorates an error that is already being reported).
fn read_log_since(log_file: &Path, offset: u64) -> String {
    let mut text = Vec::new();
    let read = fs::File::open(log_file).and_then(|mut file| {
        let length = file.metadata()?.len();
        let start = offset.max(length.saturating_sub(ERROR_OUTPUT_BYTES as u64));
        file.seek(SeekFrom::Start(start))?;
        file.take(ERROR_OUTPUT_BYTES as u64).read_to_end(&mut text)
    });
    match read {
        Ok(_) => tail_of(&String::from_utf8_lossy(&text), ERROR_OUTPUT_BYTES),
        Err(_) => String::new(),
    }
}

fn parse_port(text: &str) -> Option<u16> {
    text.trim().parse().ok().filter(|port| *port != 0)
}

/// Asks the kernel for a free port. Another process could take it before the server binds it;
/// the start then fails with "Address already in use" in the log, and the next start picks again
/// only if `pg.port` is deleted, because a stable port is what clients configured by hand expect.
fn pick_free_port() -> Result<u16, ClusterError> {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(ClusterError::io("find a free TCP port on 127.0.0.1"))
}

fn validate_database_name(name: &str) -> Result<(), ClusterError> {
    let refuse = |reason| ClusterError::InvalidDatabaseName {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(refuse("it is empty"));
    }
    if name.len() > MAX_DATABASE_NAME_BYTES {
        return Err(refuse(
            "it is longer than 63 bytes, and PostgreSQL would truncate it",
        ));
    }
    if name.contains('\0') {
        return Err(refuse("it contains a NUL character"));
    }
    Ok(())
}

fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn is_duplicate_database(error: &sqlx::Error) -> bool {
    const DUPLICATE_DATABASE: &str = "42P04";
    const UNIQUE_VIOLATION: &str = "23505";
    error
        .as_database_error()
        .and_then(|database_error| database_error.code())
        .is_some_and(|code| code == DUPLICATE_DATABASE || code == UNIQUE_VIOLATION)
}

/// Percent-encodes everything but RFC 3986's unreserved characters, so any database name is a
/// valid URL path segment.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (byte as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_percent_encoded_in_the_url() {
        assert_eq!(percent_encode("payledger_test-1"), "payledger_test-1");
        assert_eq!(percent_encode("a b/ü"), "a%20b%2F%C3%BC");
    }

    #[test]
    fn identifiers_are_quoted_with_doubled_quotes() {
        assert_eq!(quote_identifier(r#"we"ird"#), r#""we""ird""#);
    }

    #[test]
    fn database_names_postgres_would_truncate_are_refused() {
        assert!(validate_database_name(&"a".repeat(63)).is_ok());
        assert!(validate_database_name(&"a".repeat(64)).is_err());
        assert!(validate_database_name("").is_err());
    }

    #[test]
    fn a_port_of_zero_or_garbage_is_not_a_port() {
        assert_eq!(parse_port("54321\n"), Some(54321));
        assert_eq!(parse_port("0"), None);
        assert_eq!(parse_port("abc"), None);
        assert_eq!(parse_port("70000"), None);
    }
}
