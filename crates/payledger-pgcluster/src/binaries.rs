//! Finding the installed PostgreSQL server binaries (`initdb`, `pg_ctl`, `postgres`).
//!
//! Distributions keep them off `PATH` (Debian: `/usr/lib/postgresql/15/bin`, Homebrew's keg-only
//! `postgresql@17`), so looking only on `PATH` would tell most users to install what they have.

use crate::error::ClusterError;
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The programs payledger runs; a directory counts only if it holds all of them, so that
/// `initdb` and `postgres` always come from the same installation.
pub(crate) const REQUIRED_PROGRAMS: [&str; 3] = ["initdb", "pg_ctl", "postgres"];

/// Where a distribution installs one directory per major version: `PARENT/PREFIX<version>/SUFFIX`.
struct VersionedLayout {
    parent: &'static str,
    prefix: &'static str,
    suffix: &'static str,
}

const VERSIONED_LAYOUTS: [VersionedLayout; 4] = [
    // Debian and Ubuntu.
    VersionedLayout {
        parent: "/usr/lib/postgresql",
        prefix: "",
        suffix: "bin",
    },
    // The PGDG packages for Fedora and RHEL.
    VersionedLayout {
        parent: "/usr",
        prefix: "pgsql-",
        suffix: "bin",
    },
    // Homebrew on Apple silicon and on Intel; its versioned formulae are not linked onto PATH.
    VersionedLayout {
        parent: "/opt/homebrew/opt",
        prefix: "postgresql@",
        suffix: "bin",
    },
    VersionedLayout {
        parent: "/usr/local/opt",
        prefix: "postgresql@",
        suffix: "bin",
    },
];

/// A directory holding all of [`REQUIRED_PROGRAMS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerBinaries {
    bin_dir: PathBuf,
}

impl ServerBinaries {
    pub(crate) fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    pub(crate) fn initdb(&self) -> PathBuf {
        self.bin_dir.join("initdb")
    }

    pub(crate) fn pg_ctl(&self) -> PathBuf {
        self.bin_dir.join("pg_ctl")
    }

    /// Finds the binaries on this machine. `explicit_dir`, when given, is the only place looked
    /// in. `cluster_version` is the major version an existing cluster was created with (its
    /// `PG_VERSION`): a server of another major version cannot open it, so that version wins
    /// over a newer one installed beside it.
    pub(crate) fn find(
        explicit_dir: Option<&Path>,
        cluster_version: Option<&str>,
    ) -> Result<ServerBinaries, ClusterError> {
        match explicit_dir {
            Some(dir) => BinarySearch::only(dir).run(),
            None => BinarySearch::system(cluster_version).run(),
        }
    }
}

/// The ordered list of places to look in; built from the real system or, in tests, by hand.
pub(crate) struct BinarySearch {
    pub(crate) dirs: Vec<PathBuf>,
    /// Directories of `PATH`, searched last.
    pub(crate) path_var: Option<OsString>,
}

impl BinarySearch {
    fn only(dir: &Path) -> BinarySearch {
        BinarySearch {
            dirs: vec![dir.to_path_buf()],
            path_var: None,
        }
    }

    fn system(cluster_version: Option<&str>) -> BinarySearch {
        let versioned: Vec<(Version, PathBuf)> = VERSIONED_LAYOUTS
            .iter()
            .flat_map(|layout| {
                versioned_dirs(Path::new(layout.parent), layout.prefix, layout.suffix)
            })
            .collect();
        BinarySearch {
            dirs: ordered_candidates(cluster_version, pg_config_bindir(), versioned),
            path_var: std::env::var_os("PATH"),
        }
    }

    pub(crate) fn run(&self) -> Result<ServerBinaries, ClusterError> {
        let path_dirs = self.path_var.iter().flat_map(std::env::split_paths);
        self.dirs
            .iter()
            .cloned()
            .chain(path_dirs)
            .find(|dir| holds_all_programs(dir))
            .map(|bin_dir| ServerBinaries { bin_dir })
            .ok_or_else(|| ClusterError::BinariesMissing {
                searched_dirs: self.dirs.clone(),
                searched_path: self.path_var.is_some(),
            })
    }
}

/// Major (and, before PostgreSQL 10, minor) version from a directory name such as `15` or `9.6`.
type Version = Vec<u32>;

fn parse_version(text: &str) -> Option<Version> {
    text.split('.').map(|part| part.parse().ok()).collect()
}

/// The search order: the existing cluster's version, then what `pg_config` reports, then the
/// highest versioned directory first.
pub(crate) fn ordered_candidates(
    cluster_version: Option<&str>,
    pg_config_bindir: Option<PathBuf>,
    mut versioned: Vec<(Version, PathBuf)>,
) -> Vec<PathBuf> {
    versioned.sort_by(|(left, _), (right, _)| right.cmp(left));
    let wanted = cluster_version.and_then(|text| parse_version(text.trim()));
    let mut dirs = Vec::new();
    if let Some(wanted) = wanted {
        dirs.extend(
            versioned
                .iter()
                .filter(|(version, _)| *version == wanted)
                .map(|(_, dir)| dir.clone()),
        );
    }
    dirs.extend(pg_config_bindir);
    dirs.extend(versioned.into_iter().map(|(_, dir)| dir));
    let mut seen = std::collections::HashSet::new();
    dirs.retain(|dir| seen.insert(dir.clone()));
    dirs
}

pub(crate) fn versioned_dirs(parent: &Path, prefix: &str, suffix: &str) -> Vec<(Version, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name();
            let version = parse_version(name.to_str()?.strip_prefix(prefix)?)?;
            Some((version, entry.path().join(suffix)))
        })
        .collect()
}

/// `pg_config --bindir`, if `pg_config` is on PATH. On Debian it ships with libpq-dev and may
/// point at a directory without a server, which is why the result is only a candidate.
fn pg_config_bindir() -> Option<PathBuf> {
    let output = Command::new("pg_config")
        .arg("--bindir")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    let dir = text.trim();
    (!dir.is_empty()).then(|| PathBuf::from(dir))
}

fn holds_all_programs(dir: &Path) -> bool {
    REQUIRED_PROGRAMS
        .iter()
        .all(|name| is_executable_file(&dir.join(name)))
}

fn is_executable_file(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn fake_installation(dir: &Path, programs: &[&str]) {
        fs::create_dir_all(dir).expect("create fake bin dir");
        for program in programs {
            let path = dir.join(program);
            fs::write(&path, "#!/bin/sh\n").expect("write fake program");
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
        }
    }

    #[test]
    fn the_highest_installed_version_is_preferred_for_a_new_cluster() {
        let root = tempfile::tempdir().expect("tempdir");
        for version in ["9.6", "13", "15"] {
            fake_installation(&root.path().join(version).join("bin"), &REQUIRED_PROGRAMS);
        }
        let search = BinarySearch {
            dirs: ordered_candidates(None, None, versioned_dirs(root.path(), "", "bin")),
            path_var: None,
        };
        let found = search.run().expect("binaries found");
        assert_eq!(found.bin_dir(), root.path().join("15").join("bin"));
    }

    #[test]
    fn an_existing_cluster_keeps_the_major_version_it_was_created_with() {
        let root = tempfile::tempdir().expect("tempdir");
        for version in ["13", "15"] {
            fake_installation(&root.path().join(version).join("bin"), &REQUIRED_PROGRAMS);
        }
        let search = BinarySearch {
            dirs: ordered_candidates(
                Some("13\n"),
                Some(root.path().join("15").join("bin")),
                versioned_dirs(root.path(), "", "bin"),
            ),
            path_var: None,
        };
        let found = search.run().expect("binaries found");
        assert_eq!(found.bin_dir(), root.path().join("13").join("bin"));
    }

    #[test]
    fn a_directory_with_only_client_programs_is_skipped() {
        let root = tempfile::tempdir().expect("tempdir");
        let client_only = root.path().join("client");
        fake_installation(&client_only, &["pg_ctl", "psql"]);
        let server = root.path().join("server");
        fake_installation(&server, &REQUIRED_PROGRAMS);
        let search = BinarySearch {
            dirs: vec![client_only],
            path_var: Some(std::env::join_paths([&server]).expect("join paths")),
        };
        assert_eq!(search.run().expect("found on PATH").bin_dir(), server);
    }

    #[test]
    fn programs_without_execute_permission_do_not_count() {
        let root = tempfile::tempdir().expect("tempdir");
        fake_installation(root.path(), &REQUIRED_PROGRAMS);
        let postgres = root.path().join("postgres");
        fs::set_permissions(&postgres, fs::Permissions::from_mode(0o644)).expect("chmod");
        let search = BinarySearch {
            dirs: vec![root.path().to_path_buf()],
            path_var: None,
        };
        assert!(matches!(
            search.run(),
            Err(ClusterError::BinariesMissing { .. })
        ));
    }
}
