//! Which OS user runs `initdb`, `pg_ctl` and the server.
//!
//! PostgreSQL refuses to run as root. When payledger runs as root (containers, CI) the server
//! runs as the `postgres` user that every server package creates. The switch uses std's
//! `CommandExt::uid/gid` rather than `runuser`/`su`: no dependency on util-linux, no shell
//! quoting, and std drops root's supplementary groups before `setuid`.

use crate::error::ClusterError;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const SERVER_USER_NAME: &str = "postgres";

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ServerUser {
    /// Not root: run everything as ourselves.
    Current,
    /// Root: run everything as this unprivileged user.
    SwitchTo { uid: u32, gid: u32, home: PathBuf },
}

impl ServerUser {
    pub(crate) fn detect() -> Result<ServerUser, ClusterError> {
        if !nix::unistd::geteuid().is_root() {
            return Ok(ServerUser::Current);
        }
        let user = nix::unistd::User::from_name(SERVER_USER_NAME)
            .map_err(|errno| ClusterError::Io {
                action: format!("look up the `{SERVER_USER_NAME}` OS user"),
                source: errno.into(),
            })?
            .ok_or(ClusterError::ServerUserMissing)?;
        Ok(ServerUser::SwitchTo {
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            home: user.dir,
        })
    }

    /// A command that runs `program` as the server user, from `/` (the server user may not be
    /// allowed into our working directory), with no input.
    pub(crate) fn command(&self, program: &Path) -> Command {
        let mut command = Command::new(program);
        command.current_dir("/").stdin(Stdio::null());
        if let ServerUser::SwitchTo { uid, gid, home } = self {
            command.uid(*uid).gid(*gid).env("HOME", home);
        }
        command
    }

    /// Makes `path` (a file or directory payledger created for the server) belong to the server
    /// user.
    pub(crate) fn hand_over(&self, path: &Path) -> Result<(), ClusterError> {
        match self {
            ServerUser::Current => Ok(()),
            ServerUser::SwitchTo { uid, gid, .. } => {
                std::os::unix::fs::chown(path, Some(*uid), Some(*gid)).map_err(ClusterError::io(
                    format!(
                        "give {} to the `{SERVER_USER_NAME}` OS user",
                        path.display()
                    ),
                ))
            }
        }
    }

    /// Fails with the first directory the server user cannot enter on the way to `dir`.
    ///
    /// Asking the kernel (by starting `probe_program` as that user with `dir` as its working
    /// directory) is exact where reading permission bits is not: ACLs, supplementary groups.
    pub(crate) fn check_can_reach(
        &self,
        dir: &Path,
        probe_program: &Path,
    ) -> Result<(), ClusterError> {
        if *self == ServerUser::Current {
            return Ok(());
        }
        if self.can_enter(dir, probe_program).is_ok() {
            return Ok(());
        }
        if let Err(source) = self.can_enter(Path::new("/"), probe_program) {
            return Err(ClusterError::ServerUserCannotRun {
                program: probe_program.to_path_buf(),
                source,
            });
        }
        let mut ancestors: Vec<&Path> = dir.ancestors().collect();
        ancestors.reverse();
        let blocked = ancestors
            .into_iter()
            .find(|ancestor| self.can_enter(ancestor, probe_program).is_err())
            .unwrap_or(dir);
        Err(ClusterError::DirectoryNotTraversable {
            dir: blocked.to_path_buf(),
        })
    }

    fn can_enter(&self, dir: &Path, probe_program: &Path) -> std::io::Result<()> {
        let mut command = self.command(probe_program);
        command
            .current_dir(dir)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command.status().map(|_| ())
    }
}
