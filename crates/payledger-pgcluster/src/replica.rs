//! A local streaming replica of a managed cluster, for development and tests: the whole
//! primary + hot standby topology on loopback (docs/scaling.md).
//!
//! [`ManagedCluster::make_replica`] copies the running primary with `pg_basebackup -R` into
//! another data directory's `pg/` (through `pg.init/`, renamed when complete, like `initdb`),
//! gives it the primary's password file (the roles are the same: it is a physical copy) and
//! starts it: `standby.signal` and `primary_conninfo` in `postgresql.auto.conf`, written by
//! `pg_basebackup -R`, make it a hot standby that streams from the primary. Later starts and
//! stops of the replica are ordinary [`ManagedCluster::start_or_join`] / [`ManagedCluster::stop`]
//! calls on its data directory.

use crate::credentials;
use crate::error::ClusterError;
use crate::{check_success, run_blocking, Base, ClusterOptions, ManagedCluster, LOCK_WAIT};
use sqlx::{ConnectOptions, Connection};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The `cluster_name` (and so the walreceiver's `application_name`) of a replica made here: what
/// the primary's `synchronous_standby_names` names to wait for it.
pub const REPLICA_APPLICATION_NAME: &str = "payledger_replica";

impl ManagedCluster {
    /// Makes `replica_dir` a streaming hot standby of this (running) cluster and starts it.
    /// Refuses a `replica_dir` that already holds a cluster. The replica's settings are
    /// `options.settings` plus `cluster_name` = [`REPLICA_APPLICATION_NAME`].
    pub async fn make_replica(
        &self,
        mut options: ClusterOptions,
    ) -> Result<ManagedCluster, ClusterError> {
        if options.data_dir.join("pg").join("PG_VERSION").is_file() {
            return Err(ClusterError::ReplicaExists(options.data_dir.join("pg")));
        }
        let password = self
            .password
            .clone()
            .ok_or(ClusterError::ReplicaNeedsPassword)?;
        let primary = self.base();
        let primary_port = self.port;
        let mut replica_options = options.clone();
        // The copy runs the primary's major version: the same binaries must run it.
        replica_options.bin_dir = Some(self.bin_dir().to_path_buf());
        options.bin_dir = replica_options.bin_dir.clone();
        let action = format!(
            "copy the cluster on port {primary_port} into {}",
            options.data_dir.display()
        );
        run_blocking(action.clone(), move || {
            let replica = Base::prepare(&replica_options)?;
            let layout = &replica.layout;
            crate::lock::with_exclusive_lock(&layout.lock_file, LOCK_WAIT, &action, || {
                let staging = &layout.pgdata_being_initialised;
                if staging.exists() {
                    fs::remove_dir_all(staging).map_err(ClusterError::io(format!(
                        "remove the incomplete copy {}",
                        staging.display()
                    )))?;
                }
                // pg_basebackup runs as the server user and fills an existing empty directory.
                fs::create_dir(staging)
                    .map_err(ClusterError::io(format!("create {}", staging.display())))?;
                fs::set_permissions(staging, fs::Permissions::from_mode(0o700)).map_err(
                    ClusterError::io(format!("restrict {} to its owner", staging.display())),
                )?;
                replica.server_user.hand_over(staging)?;
                let basebackup = primary.binaries.bin_dir().join("pg_basebackup");
                let output = replica
                    .server_user
                    .command(&basebackup)
                    .arg("-D")
                    .arg(staging)
                    .args(["-h", "127.0.0.1", "-p", &primary_port.to_string()])
                    .args(["-U", crate::SUPERUSER, "-R", "-X", "stream"])
                    .args(["--checkpoint=fast", "--no-password"])
                    // Never on the command line (ps shows it); pg_basebackup -R writes it into
                    // the replica's primary_conninfo, inside a 0700 directory.
                    .env("PGPASSWORD", &password)
                    .env("PGCONNECT_TIMEOUT", "10")
                    .output()
                    .map_err(ClusterError::io(format!("run {}", basebackup.display())))?;
                check_success(&output, &action, &basebackup)?;
                fs::rename(staging, &layout.pgdata).map_err(ClusterError::io(format!(
                    "move the copy from {} to {}",
                    staging.display(),
                    layout.pgdata.display()
                )))?;
                credentials::write_private(&layout.password_file, &password)
            })
        })
        .await?;
        options.settings.push((
            "cluster_name".to_owned(),
            REPLICA_APPLICATION_NAME.to_owned(),
        ));
        ManagedCluster::start_or_join(options).await
    }

    /// `pg_ctl promote`: a standby stops replaying and becomes a primary that takes writes.
    /// Waits until it does. The failover procedure is in docs/operations.md.
    pub async fn promote(&self) -> Result<(), ClusterError> {
        let base = self.base();
        let action = format!("promote the standby in {}", base.layout.pgdata.display());
        run_blocking(action.clone(), move || {
            let pg_ctl = base.binaries.pg_ctl();
            let output = base
                .server_user
                .command(&pg_ctl)
                .arg("promote")
                .arg("-D")
                .arg(&base.layout.pgdata)
                .args(["-w", "-t", "60"])
                .output()
                .map_err(ClusterError::io(format!("run {}", pg_ctl.display())))?;
            check_success(&output, &action, &pg_ctl)
        })
        .await
    }

    /// Makes commits wait for the replica named `standby` (`synchronous_standby_names`,
    /// `ALTER SYSTEM` + reload): an acknowledged commit is then on both machines. `None` turns
    /// it off (commits are acknowledged once flushed here; the replica may miss the last ones).
    pub async fn set_synchronous_standby(&self, standby: Option<&str>) -> Result<(), ClusterError> {
        let mut connection =
            self.connect_options("postgres")
                .connect()
                .await
                .map_err(|source| ClusterError::Database {
                    action: format!("connect to the local cluster on port {}", self.port),
                    source,
                })?;
        let value = standby.map_or_else(String::new, quote_standby_name);
        let statement = format!(
            "ALTER SYSTEM SET synchronous_standby_names = '{}'",
            value.replace('\'', "''")
        );
        let result = async {
            sqlx::Executor::execute(&mut connection, statement.as_str()).await?;
            sqlx::Executor::execute(&mut connection, "SELECT pg_reload_conf()").await
        }
        .await;
        connection.close().await.ok();
        result.map(|_| ()).map_err(|source| ClusterError::Database {
            action: "set synchronous_standby_names".to_owned(),
            source,
        })
    }

    /// Whether the server is a standby (`pg_is_in_recovery()`).
    pub async fn is_standby(&self) -> Result<bool, ClusterError> {
        let mut connection =
            self.connect_options("postgres")
                .connect()
                .await
                .map_err(|source| ClusterError::Database {
                    action: format!("connect to the local cluster on port {}", self.port),
                    source,
                })?;
        let result: Result<bool, sqlx::Error> = sqlx::query_scalar("SELECT pg_is_in_recovery()")
            .fetch_one(&mut connection)
            .await;
        connection.close().await.ok();
        result.map_err(|source| ClusterError::Database {
            action: "ask whether the server is a standby".to_owned(),
            source,
        })
    }
}

/// A standby name as `synchronous_standby_names` takes it: double-quoted.
fn quote_standby_name(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// True when `path` is a replica's data directory made by [`ManagedCluster::make_replica`] that
/// has not been promoted.
pub fn is_standby_data_dir(data_dir: &Path) -> bool {
    data_dir.join("pg").join("standby.signal").is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standby_names_are_double_quoted() {
        assert_eq!(
            quote_standby_name("payledger_replica"),
            "\"payledger_replica\""
        );
        assert_eq!(quote_standby_name("a\"b"), "\"a\"\"b\"");
    }
}
