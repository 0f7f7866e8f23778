//! Everything that can stop payledger from getting a running local cluster, phrased so that the
//! person reading it knows what to do next.

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;

/// Why a local cluster could not be initialised, started, joined, stopped or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// No directory holds all of `initdb`, `pg_ctl` and `postgres`.
    #[error("{}", binaries_missing_message(.searched_dirs, *.searched_path))]
    BinariesMissing {
        /// The directories looked in, in order.
        searched_dirs: Vec<PathBuf>,
        /// Whether every directory on `PATH` was looked in too.
        searched_path: bool,
    },

    /// Running as root (PostgreSQL refuses that) and there is no `postgres` user to switch to.
    #[error(
        "payledger runs as root and PostgreSQL refuses to, but there is no `postgres` OS user to \
         run it as; install the PostgreSQL server package (it creates that user) or run payledger \
         as an ordinary user"
    )]
    ServerUserMissing,

    /// The `postgres` OS user cannot reach the data directory.
    #[error(
        "the `postgres` OS user cannot enter {dir}; PostgreSQL runs as that user and needs search \
         permission on the data directory and every directory above it: run `chmod o+x {dir}` or \
         choose a data directory it can reach",
        dir = .dir.display()
    )]
    DirectoryNotTraversable { dir: PathBuf },

    /// The `postgres` OS user cannot execute the server binaries (e.g. they live under /root).
    #[error("the `postgres` OS user cannot run {}: {source}", .program.display())]
    ServerUserCannotRun {
        program: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A file system or process operation failed.
    #[error("failed to {action}: {source}")]
    Io {
        action: String,
        #[source]
        source: io::Error,
    },

    /// `initdb` or `pg_ctl` ran and reported failure.
    #[error("failed to {action}: {} exited with {status}{}", .program.display(), output_suffix(.output))]
    CommandFailed {
        action: String,
        program: PathBuf,
        status: ExitStatus,
        /// The command's stdout and stderr, cut to their last few kilobytes.
        output: String,
    },

    /// Another process held the data directory's lock for longer than we wait.
    #[error(
        "failed to {action}: another process held {} for more than {waited_s} s",
        .lock_file.display()
    )]
    LockTimeout {
        action: String,
        lock_file: PathBuf,
        waited_s: u64,
    },

    /// The server was started (or found running) but never accepted a connection.
    #[error(
        "PostgreSQL in {} did not accept connections on 127.0.0.1:{port} within {waited_s} s \
         (last error: {last_error}); its log is {}{}",
        .pgdata.display(),
        .log_file.display(),
        log_tail_suffix(.log_tail)
    )]
    NotReady {
        pgdata: PathBuf,
        port: u16,
        waited_s: u64,
        last_error: String,
        log_file: PathBuf,
        /// What the server logged during this start attempt; empty when we only joined.
        log_tail: String,
    },

    /// The cluster already runs, on another port than the one asked for.
    #[error(
        "the cluster in {} already runs on port {running_port}, not on the requested port \
         {requested_port}; stop it first or ask for port {running_port}",
        .data_dir.display()
    )]
    PortConflict {
        data_dir: PathBuf,
        running_port: u16,
        requested_port: u16,
    },

    /// `postmaster.pid` names a live process, but nothing answers on the cluster's port.
    #[error(
        "{} names a live process, but nothing accepted a connection on 127.0.0.1:{port} for \
         {waited_s} s; if no PostgreSQL server runs for this data directory (check with `ps`), \
         the file is left from a crash and its process ID was reused: delete the file and start \
         again",
        .pid_file.display()
    )]
    UnansweredPostmasterPid {
        pid_file: PathBuf,
        port: u16,
        waited_s: u64,
    },

    /// An extra postgresql.conf setting that payledger cannot pass on safely.
    #[error("refusing the postgresql.conf setting {name:?}: {reason}")]
    InvalidSetting { name: String, reason: &'static str },

    /// A database name PostgreSQL would reject or silently truncate.
    #[error("invalid database name {name:?}: {reason}")]
    InvalidDatabaseName { name: String, reason: &'static str },

    /// The cluster's directory exists but holds something other than a cluster.
    #[error(
        "{} exists but is not a PostgreSQL data directory (it has no PG_VERSION file); move it \
         away so that payledger can initialise a new cluster there",
        .0.display()
    )]
    NotAClusterDirectory(PathBuf),

    /// A file payledger wrote itself (the port file, postmaster.pid) could not be understood.
    #[error("failed to read {}: {reason}", .path.display())]
    UnreadableStateFile { path: PathBuf, reason: String },

    /// A statement against the running cluster failed.
    #[error("failed to {action}: {source}")]
    Database {
        action: String,
        #[source]
        source: sqlx::Error,
    },

    /// The runtime shut down while the blocking part of the work was queued.
    #[error("failed to {action}: the background task was cancelled")]
    Cancelled { action: String },

    /// `replica init` was pointed at a data directory that already holds a cluster.
    #[error(
        "{} already holds a cluster; a replica is made into an empty data directory",
        .0.display()
    )]
    ReplicaExists(PathBuf),

    /// The primary was started by an older payledger without a password: the replica could
    /// not log in to stream from it.
    #[error("the primary cluster has no password file; restart it with this payledger first")]
    ReplicaNeedsPassword,
}

impl ClusterError {
    pub(crate) fn io(action: impl Into<String>) -> impl FnOnce(io::Error) -> ClusterError {
        let action = action.into();
        move |source| ClusterError::Io { action, source }
    }
}

fn binaries_missing_message(searched_dirs: &[PathBuf], searched_path: bool) -> String {
    let mut places: Vec<String> = searched_dirs
        .iter()
        .map(|dir| dir.display().to_string())
        .collect();
    if searched_path {
        places.push("every directory on PATH".to_owned());
    }
    let places = if places.is_empty() {
        "any known location".to_owned()
    } else {
        places.join(", ")
    };
    format!(
        "the PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found in {places}; \
         install them (Debian/Ubuntu: `apt-get install -y postgresql`; Fedora/RHEL: \
         `dnf install -y postgresql-server`; macOS: `brew install postgresql@17`) or set \
         DATABASE_URL to use an existing PostgreSQL server"
    )
}

fn output_suffix(output: &str) -> String {
    if output.trim().is_empty() {
        String::new()
    } else {
        format!(":\n{}", output.trim_end())
    }
}

fn log_tail_suffix(log_tail: &str) -> String {
    if log_tail.trim().is_empty() {
        String::new()
    } else {
        format!("; it said:\n{}", log_tail.trim_end())
    }
}

/// The last `max_bytes` of `text`, cut at a character boundary, so that a chatty command cannot
/// produce an error message of unbounded size.
pub(crate) fn tail_of(text: &str, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text.to_owned();
    }
    let mut start = text.len() - max_bytes;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("[…]{}", &text[start..])
}
