//! The cluster's one credential and who may present it.
//!
//! The cluster accepts nothing but `scram-sha-256` password logins over 127.0.0.1 (no `trust`,
//! no Unix socket: `pg_hba.conf` is rewritten on every start). The password is generated on
//! first start (32 random bytes from the kernel, hex), kept in `DATA_DIR/pg.password` with mode
//! 0600, owned by the OS user payledger runs as, as the API keys are. A local user who cannot
//! read that file cannot log in, as the superuser or as any other role.

use crate::error::ClusterError;
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// File name inside the data directory.
pub(crate) const PASSWORD_FILE: &str = "pg.password";
/// Written while a new password is being set; renamed to [`PASSWORD_FILE`] once it works.
pub(crate) const NEW_PASSWORD_FILE: &str = "pg.password.new";

const PASSWORD_BYTES: usize = 32;

/// The whole of `pg_hba.conf`: password logins over loopback TCP, nothing else.
pub(crate) const PG_HBA: &str =
    "# Written by payledger on every start of this cluster: edits here are lost.\n\
# Password (scram-sha-256) logins over 127.0.0.1 only; no trust, no Unix socket, no other host.\n\
# TYPE  DATABASE  USER  ADDRESS        METHOD\n\
host    all       all   127.0.0.1/32   scram-sha-256\n\
# Streaming replication (`payledger replica init`): the superuser, with the same password.\n\
host    replication  postgres  127.0.0.1/32  scram-sha-256\n";

/// The password in `path`, `None` when the file does not exist.
pub(crate) fn read(path: &Path) -> Result<Option<String>, ClusterError> {
    match fs::read_to_string(path) {
        Ok(text) => {
            let password = text.trim().to_string();
            if password.len() != PASSWORD_BYTES * 2
                || !password.chars().all(|c| c.is_ascii_hexdigit())
            {
                return Err(ClusterError::UnreadableStateFile {
                    path: path.to_path_buf(),
                    reason: "it does not hold a password payledger generated".to_owned(),
                });
            }
            Ok(Some(password))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(ClusterError::io(format!("read {}", path.display()))(error)),
    }
}

/// A new random password.
pub(crate) fn generate() -> Result<String, ClusterError> {
    let mut bytes = [0u8; PASSWORD_BYTES];
    fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut bytes))
        .map_err(ClusterError::io("read random bytes from /dev/urandom"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes `password` to `path`, readable and writable by its owner only (0600 from creation,
/// never wider for a moment).
pub(crate) fn write_private(path: &Path, password: &str) -> Result<(), ClusterError> {
    let _ = fs::remove_file(path);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| {
            file.write_all(password.as_bytes())?;
            file.write_all(b"\n")?;
            file.sync_all()
        })
        .map_err(ClusterError::io(format!("write {}", path.display())))
}

/// `ALTER ROLE … PASSWORD …` for `role`; the password is hex, the role is quoted.
pub(crate) fn alter_role_sql(role: &str, password: &str) -> String {
    format!(
        "ALTER ROLE \"{}\" LOGIN PASSWORD '{}'",
        role.replace('"', "\"\""),
        password.replace('\'', "''")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn passwords_are_random_hex_and_stored_owner_only() {
        let first = generate().unwrap();
        assert_eq!(first.len(), 64);
        assert_ne!(first, generate().unwrap());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PASSWORD_FILE);
        write_private(&path, &first).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read(&path).unwrap().as_deref(), Some(first.as_str()));
        assert_eq!(read(&dir.path().join("missing")).unwrap(), None);
        fs::write(&path, "short").unwrap();
        assert!(read(&path).is_err());
    }

    #[test]
    fn the_host_based_configuration_trusts_nobody() {
        let rules: Vec<Vec<&str>> = PG_HBA
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            rules,
            vec![
                vec!["host", "all", "all", "127.0.0.1/32", "scram-sha-256"],
                vec![
                    "host",
                    "replication",
                    "postgres",
                    "127.0.0.1/32",
                    "scram-sha-256"
                ]
            ]
        );
    }
}
