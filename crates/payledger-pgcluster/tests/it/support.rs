//! Data directories and clusters that clean up after themselves, so that no test leaves a
//! PostgreSQL server running, whether it passes or panics.

use payledger_pgcluster::{ClusterOptions, ManagedCluster};
use std::fs;
use std::ops::Deref;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A temporary directory the `postgres` OS user can enter (tempfile makes them 0700, and the
/// server runs as `postgres` when the tests run as root). The cluster goes in its `data/`.
pub struct TestDataDir {
    dir: tempfile::TempDir,
}

impl TestDataDir {
    pub fn new() -> TestDataDir {
        let dir = tempfile::Builder::new()
            .prefix("payledger-pgcluster-")
            .tempdir()
            .expect("create a temporary directory");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod 0755");
        TestDataDir { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

impl Drop for TestDataDir {
    /// A last resort for a server a failed start left behind (StopOnDrop stops the others):
    /// SIGINT is PostgreSQL's fast shutdown.
    fn drop(&mut self) {
        let pid_file = self.data_dir().join("pg").join("postmaster.pid");
        if let Some(pid) = fs::read_to_string(pid_file)
            .ok()
            .and_then(|text| text.lines().next().map(str::to_owned))
        {
            let _ = Command::new("kill").args(["-INT", &pid]).status();
        }
    }
}

/// A cluster that is stopped when the test ends.
pub struct StopOnDrop(pub ManagedCluster);

impl StopOnDrop {
    pub async fn start(options: ClusterOptions) -> StopOnDrop {
        StopOnDrop(
            ManagedCluster::start_or_join(options)
                .await
                .expect("start_or_join"),
        )
    }
}

impl Deref for StopOnDrop {
    type Target = ManagedCluster;

    fn deref(&self) -> &ManagedCluster {
        &self.0
    }
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Err(error) = self.0.stop() {
            eprintln!(
                "could not stop the test cluster in {}: {error}",
                self.0.data_dir().display()
            );
        }
    }
}

/// The process id in the running cluster's postmaster.pid.
pub fn postmaster_pid(dir: &TestDataDir) -> u32 {
    let text = fs::read_to_string(dir.data_dir().join("pg").join("postmaster.pid"))
        .expect("read postmaster.pid");
    text.lines()
        .next()
        .and_then(|line| line.parse().ok())
        .expect("a pid on the first line")
}

/// Writes `contents` to `path` owned by whoever owns the cluster directory, as the server
/// would have written it.
pub fn write_as_cluster_owner(dir: &TestDataDir, path: &Path, contents: &[u8]) {
    let owner = fs::metadata(dir.data_dir().join("pg")).expect("stat the cluster directory");
    fs::write(path, contents).expect("write");
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).expect("chmod 0600");
    std::os::unix::fs::chown(path, Some(owner.uid()), Some(owner.gid())).expect("chown");
}
