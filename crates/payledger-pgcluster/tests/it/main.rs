//! payledger's local cluster against the real PostgreSQL server binaries installed on this
//! machine. Every test gets its own data directory and stops every cluster it started.

mod support;

use payledger_pgcluster::{
    ClusterError, ClusterOptions, DatabaseCreation, ManagedCluster, StartOutcome,
};
use sqlx::{Connection, PgConnection};
use std::collections::HashSet;
use std::fs;
use support::{postmaster_pid, StopOnDrop, TestDataDir};

async fn setting(connection: &mut PgConnection, name: &str) -> String {
    sqlx::query_scalar(&format!("SHOW {name}"))
        .fetch_one(connection)
        .await
        .unwrap_or_else(|error| panic!("SHOW {name}: {error}"))
}

#[tokio::test]
async fn a_fresh_data_directory_gets_a_durable_cluster_on_127_0_0_1() {
    let dir = TestDataDir::new();
    let cluster = StopOnDrop::start(ClusterOptions::new(dir.data_dir())).await;

    assert_eq!(cluster.outcome(), StartOutcome::InitialisedAndStarted);
    let password = fs::read_to_string(dir.data_dir().join("pg.password")).expect("pg.password");
    assert_eq!(
        cluster.superuser_url("postgres"),
        format!(
            "postgres://postgres:{}@127.0.0.1:{}/postgres",
            password.trim(),
            cluster.port()
        )
    );
    let persisted_port =
        fs::read_to_string(dir.data_dir().join("pg.port")).expect("pg.port written");
    assert_eq!(persisted_port.trim(), cluster.port().to_string());

    let mut connection = PgConnection::connect(&cluster.superuser_url("postgres"))
        .await
        .expect("connect by URL");
    assert_eq!(setting(&mut connection, "fsync").await, "on");
    assert_eq!(setting(&mut connection, "synchronous_commit").await, "on");
    assert_eq!(
        setting(&mut connection, "listen_addresses").await,
        "127.0.0.1"
    );
    assert_eq!(
        setting(&mut connection, "unix_socket_directories").await,
        ""
    );
    assert_eq!(setting(&mut connection, "max_connections").await, "200");
    assert_eq!(setting(&mut connection, "shared_buffers").await, "256MB");
    assert_eq!(
        setting(&mut connection, "idle_in_transaction_session_timeout").await,
        "1min"
    );
    assert_eq!(setting(&mut connection, "server_encoding").await, "UTF8");
    connection.close().await.expect("close");
}

#[tokio::test]
async fn extra_settings_reach_the_server() {
    let dir = TestDataDir::new();
    let mut options = ClusterOptions::new(dir.data_dir());
    options.settings = vec![("work_mem".to_owned(), "8MB".to_owned())];
    let cluster = StopOnDrop::start(options).await;

    let mut connection = PgConnection::connect_with(&cluster.connect_options("postgres"))
        .await
        .expect("connect");
    assert_eq!(setting(&mut connection, "work_mem").await, "8MB");
}

#[tokio::test]
async fn a_server_that_fails_to_start_is_reported_with_its_log_and_a_fixed_setting_recovers() {
    let dir = TestDataDir::new();
    let mut options = ClusterOptions::new(dir.data_dir());
    options.settings = vec![("work_mem".to_owned(), "plenty".to_owned())];

    let error = ManagedCluster::start_or_join(options.clone())
        .await
        .expect_err("the server refuses an invalid work_mem");

    let message = error.to_string();
    assert!(
        matches!(error, ClusterError::CommandFailed { .. }),
        "{error:?}"
    );
    assert!(
        message.contains("invalid value for parameter \"work_mem\""),
        "{message}"
    );
    options.settings.clear();
    let cluster = StopOnDrop::start(options).await;
    assert_eq!(cluster.outcome(), StartOutcome::Started);
}

#[tokio::test]
async fn ensure_database_creates_a_database_once_and_then_finds_it() {
    let dir = TestDataDir::new();
    let cluster = StopOnDrop::start(ClusterOptions::new(dir.data_dir())).await;

    let first = cluster
        .ensure_database("payledger_test")
        .await
        .expect("first ensure");
    let second = cluster
        .ensure_database("payledger_test")
        .await
        .expect("second ensure");

    assert_eq!(
        (first, second),
        (DatabaseCreation::Created, DatabaseCreation::AlreadyExisted)
    );
    let mut connection = PgConnection::connect(&cluster.superuser_url("payledger_test"))
        .await
        .expect("connect to the new database");
    let current: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut connection)
        .await
        .expect("query");
    assert_eq!(current, "payledger_test");
}

#[tokio::test]
async fn concurrent_ensure_database_calls_create_it_exactly_once() {
    let dir = TestDataDir::new();
    let cluster = StopOnDrop::start(ClusterOptions::new(dir.data_dir())).await;

    let attempts = ensure_concurrently(&cluster, "raced", 4).await;

    let created = attempts
        .iter()
        .filter(|outcome| **outcome == DatabaseCreation::Created)
        .count();
    assert_eq!(created, 1, "{attempts:?}");
}

async fn ensure_concurrently(
    cluster: &ManagedCluster,
    name: &str,
    count: usize,
) -> Vec<DatabaseCreation> {
    let tasks: Vec<_> = (0..count)
        .map(|_| {
            let cluster = cluster.clone();
            let name = name.to_owned();
            tokio::spawn(async move { cluster.ensure_database(&name).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.expect("task").expect("ensure_database"));
    }
    outcomes
}

#[tokio::test]
async fn a_database_name_with_quotes_and_spaces_is_created_as_given() {
    let dir = TestDataDir::new();
    let cluster = StopOnDrop::start(ClusterOptions::new(dir.data_dir())).await;

    let name = r#"odd "name"; DROP"#;
    assert_eq!(
        cluster.ensure_database(name).await.expect("ensure"),
        DatabaseCreation::Created
    );
    let mut connection = PgConnection::connect(&cluster.superuser_url(name))
        .await
        .expect("connect by encoded URL");
    let current: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut connection)
        .await
        .expect("query");
    assert_eq!(current, name);
}

#[tokio::test]
async fn a_second_start_on_the_same_data_directory_joins_the_running_cluster() {
    let dir = TestDataDir::new();
    let first = StopOnDrop::start(ClusterOptions::new(dir.data_dir())).await;
    let pid_before = postmaster_pid(&dir);

    let second = ManagedCluster::start_or_join(ClusterOptions::new(dir.data_dir()))
        .await
        .expect("join");

    assert_eq!(second.outcome(), StartOutcome::Joined);
    assert_eq!(second.port(), first.port());
    assert_eq!(
        postmaster_pid(&dir),
        pid_before,
        "the same server process keeps running"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_starts_on_a_fresh_data_directory_share_one_cluster() {
    let dir = TestDataDir::new();

    let starts: Vec<_> = (0..3)
        .map(|_| {
            tokio::spawn(ManagedCluster::start_or_join(ClusterOptions::new(
                dir.data_dir(),
            )))
        })
        .collect();
    let mut clusters = Vec::new();
    for start in starts {
        clusters.push(StopOnDrop(
            start.await.expect("task").expect("start_or_join"),
        ));
    }

    let ports: HashSet<u16> = clusters.iter().map(|cluster| cluster.port()).collect();
    assert_eq!(ports.len(), 1, "all callers share one port: {ports:?}");
    let mut outcomes: Vec<StartOutcome> =
        clusters.iter().map(|cluster| cluster.outcome()).collect();
    outcomes.sort_by_key(|outcome| format!("{outcome:?}"));
    assert_eq!(
        outcomes,
        [
            StartOutcome::InitialisedAndStarted,
            StartOutcome::Joined,
            StartOutcome::Joined
        ]
    );
}

#[tokio::test]
async fn a_stopped_cluster_starts_again_on_the_same_port_with_its_data() {
    let dir = TestDataDir::new();
    let first = StopOnDrop::start(ClusterOptions::new(dir.data_dir())).await;
    let mut connection = PgConnection::connect_with(&first.connect_options("postgres"))
        .await
        .expect("connect");
    sqlx::raw_sql("CREATE TABLE kept (amount_minor bigint); INSERT INTO kept VALUES (1250)")
        .execute(&mut connection)
        .await
        .expect("write");
    connection.close().await.expect("close");

    first.stop().expect("stop");
    let while_stopped = ManagedCluster::join_running(ClusterOptions::new(dir.data_dir()))
        .await
        .expect("look");
    assert!(while_stopped.is_none(), "nothing runs after stop");
    let again = StopOnDrop::start(ClusterOptions::new(dir.data_dir())).await;

    assert_eq!(again.outcome(), StartOutcome::Started);
    assert_eq!(again.port(), first.port());
    let mut connection = PgConnection::connect_with(&again.connect_options("postgres"))
        .await
        .expect("connect");
    let amount_minor: i64 = sqlx::query_scalar("SELECT amount_minor FROM kept")
        .fetch_one(&mut connection)
        .await
        .expect("read");
    assert_eq!(amount_minor, 1250);
}

#[tokio::test]
async fn looking_for_a_running_cluster_in_an_unused_directory_finds_none_and_creates_nothing() {
    let dir = TestDataDir::new();

    let found = ManagedCluster::join_running(ClusterOptions::new(dir.data_dir()))
        .await
        .expect("look");

    assert!(found.is_none());
    assert!(!dir.data_dir().exists());
}

#[tokio::test]
async fn stopping_a_cluster_that_is_not_running_succeeds() {
    let dir = TestDataDir::new();
    let cluster = StopOnDrop::start(ClusterOptions::new(dir.data_dir())).await;

    cluster.stop().expect("first stop");
    cluster.stop().expect("second stop");
}

#[tokio::test]
async fn a_postmaster_pid_left_by_a_crash_does_not_block_the_next_start() {
    let dir = TestDataDir::new();
    let first = StopOnDrop::start(ClusterOptions::new(dir.data_dir())).await;
    let pid_file = dir.data_dir().join("pg").join("postmaster.pid");
    let stale = fs::read(&pid_file).expect("read postmaster.pid");
    let old_pid = postmaster_pid(&dir);
    first.stop().expect("stop");
    // What a crash leaves behind: the lock file of a server process that no longer exists.
    support::write_as_cluster_owner(&dir, &pid_file, &stale);

    let again = StopOnDrop::start(ClusterOptions::new(dir.data_dir())).await;

    assert_eq!(again.outcome(), StartOutcome::Started);
    assert_ne!(postmaster_pid(&dir), old_pid);
    PgConnection::connect_with(&again.connect_options("postgres"))
        .await
        .expect("connect after restart");
}

#[tokio::test]
async fn asking_for_another_port_than_the_running_clusters_is_refused() {
    let dir = TestDataDir::new();
    let cluster = StopOnDrop::start(ClusterOptions::new(dir.data_dir())).await;
    let mut options = ClusterOptions::new(dir.data_dir());
    options.port = Some(if cluster.port() == u16::MAX {
        1024
    } else {
        cluster.port() + 1
    });

    let refused = ManagedCluster::start_or_join(options).await;

    match refused {
        Err(ClusterError::PortConflict { running_port, .. }) => {
            assert_eq!(running_port, cluster.port())
        }
        other => panic!("expected a port conflict, got {other:?}"),
    }
}

#[tokio::test]
async fn without_server_binaries_the_error_says_what_to_install_and_nothing_is_created() {
    let dir = TestDataDir::new();
    let empty_bin_dir = dir.path().join("no-postgres-here");
    fs::create_dir(&empty_bin_dir).expect("create empty bin dir");
    let mut options = ClusterOptions::new(dir.data_dir());
    options.bin_dir = Some(empty_bin_dir.clone());

    let error = ManagedCluster::start_or_join(options)
        .await
        .expect_err("must fail without binaries");

    assert!(
        matches!(error, ClusterError::BinariesMissing { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("apt-get install -y postgresql"),
        "{message}"
    );
    assert!(message.contains("brew install postgresql"), "{message}");
    assert!(
        message.contains(&empty_bin_dir.display().to_string()),
        "{message}"
    );
    assert!(message.contains("DATABASE_URL"), "{message}");
    assert!(
        !dir.data_dir().exists(),
        "no data directory is created before the binaries are found"
    );
}

#[tokio::test]
async fn as_root_a_data_directory_the_postgres_user_cannot_enter_is_named() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("not root: the server runs as the current user, who owns the directory; nothing to check");
        return;
    }
    let dir = TestDataDir::new();
    let locked = dir.path().join("locked");
    fs::create_dir(&locked).expect("create");
    fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .expect("chmod 0700");

    let error =
        ManagedCluster::start_or_join(ClusterOptions::new(locked.join("deeper").join("data")))
            .await
            .expect_err("the postgres user cannot enter a root-only directory");

    match error {
        ClusterError::DirectoryNotTraversable { dir } => assert_eq!(dir, locked),
        other => panic!("expected DirectoryNotTraversable, got {other:?}"),
    }
}

#[tokio::test]
async fn settings_payledger_depends_on_are_refused_before_anything_starts() {
    let dir = TestDataDir::new();
    let mut options = ClusterOptions::new(dir.data_dir());
    options.settings = vec![("listen_addresses".to_owned(), "*".to_owned())];

    let error = ManagedCluster::start_or_join(options)
        .await
        .expect_err("refused");

    assert!(
        matches!(error, ClusterError::InvalidSetting { .. }),
        "{error:?}"
    );
    assert!(!dir.data_dir().exists());
}

/// Issue 14, item 4: the cluster trusts nobody. Without the password nobody connects; as root the
/// test makes a throwaway OS user and proves that user can neither connect nor read the password.
#[tokio::test]
async fn nobody_without_the_generated_password_connects_not_even_another_os_user() {
    use sqlx::postgres::{PgConnectOptions, PgSslMode};
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;

    let dir = TestDataDir::new();
    let cluster = StopOnDrop::start(ClusterOptions::new(dir.data_dir())).await;
    let password_file = dir.data_dir().join("pg.password");
    let mode = fs::metadata(&password_file)
        .expect("pg.password")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "pg.password must be private");
    let hba = fs::read_to_string(dir.data_dir().join("pg").join("pg_hba.conf")).expect("hba");
    let rules: Vec<&str> = hba
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .collect();
    assert!(rules.iter().all(|l| l.ends_with("scram-sha-256")), "{hba}");

    for user in ["postgres", "payledger_app", "nobody"] {
        let without_password = PgConnectOptions::new_without_pgpass()
            .host("127.0.0.1")
            .port(cluster.port())
            .username(user)
            .database("postgres")
            .ssl_mode(PgSslMode::Disable);
        let refused = PgConnection::connect_with(&without_password).await;
        assert!(refused.is_err(), "{user} connected without a password");
        let wrong = without_password.password("not-the-password");
        assert!(PgConnection::connect_with(&wrong).await.is_err());
    }
    // The one who holds the file connects.
    PgConnection::connect_with(&cluster.connect_options("postgres"))
        .await
        .expect("connect with the password")
        .close()
        .await
        .ok();

    if !nix_is_root() {
        return;
    }
    let name = format!("plg{}", std::process::id());
    let created = Command::new("useradd")
        .args(["--no-create-home", "--shell", "/usr/sbin/nologin", &name])
        .status()
        .expect("run useradd");
    assert!(created.success(), "useradd {name}");
    struct RemoveUser(String);
    impl Drop for RemoveUser {
        fn drop(&mut self) {
            let _ = Command::new("userdel").arg(&self.0).status();
        }
    }
    let _remove = RemoveUser(name.clone());
    let psql = [cluster.bin_dir().join("psql"), "/usr/bin/psql".into()]
        .into_iter()
        .find(|p| p.is_file())
        .expect("psql is installed with the server");
    let id_of = |flag: &str| -> u32 {
        let output = Command::new("id")
            .args([flag, &name])
            .output()
            .expect("run id");
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .expect("a numeric id")
    };
    let (uid, gid) = (id_of("-u"), id_of("-g"));
    let as_other = |program: &std::path::Path, args: &[&str]| {
        use std::os::unix::process::CommandExt;
        Command::new(program)
            .args(args)
            .uid(uid)
            .gid(gid)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .current_dir("/")
            .output()
            .expect("run as the other user")
    };
    let port = cluster.port().to_string();
    for user in ["postgres", "payledger_app"] {
        let attempt = as_other(
            &psql,
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                user,
                "-d",
                "postgres",
                "-w",
                "-c",
                "SELECT 1",
            ],
        );
        let said = String::from_utf8_lossy(&attempt.stderr).to_string();
        assert!(!attempt.status.success(), "{name} connected as {user}");
        assert!(said.contains("password"), "{said}");
    }
    let read = as_other(
        std::path::Path::new("/bin/cat"),
        &[password_file.to_str().unwrap()],
    );
    assert!(!read.status.success(), "{name} read pg.password");
    assert!(read.stdout.is_empty());
}

fn nix_is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
