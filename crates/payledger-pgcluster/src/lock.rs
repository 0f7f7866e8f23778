//! The data directory's lock, held around everything that changes whether the cluster runs.
//!
//! `flock(2)` is tied to the open file, so the kernel releases it when the holder exits or
//! crashes: a dead process can never leave the data directory locked. Rust opens files with
//! `O_CLOEXEC`, so the postmaster that `pg_ctl` starts does not inherit it either.

use crate::error::ClusterError;
use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::path::Path;
use std::time::{Duration, Instant};

/// How often a waiting process retries the lock; init+start takes seconds, so this is cheap.
const RETRY_INTERVAL: Duration = Duration::from_millis(50);

/// Runs `work` while holding the exclusive lock on `lock_file`, waiting at most `max_wait` for
/// another holder. Blocking: call it from a blocking thread.
pub(crate) fn with_exclusive_lock<T>(
    lock_file: &Path,
    max_wait: Duration,
    action: &str,
    work: impl FnOnce() -> Result<T, ClusterError>,
) -> Result<T, ClusterError> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(lock_file)
        .map_err(ClusterError::io(format!(
            "open the lock file {}",
            lock_file.display()
        )))?;
    let mut lock = fd_lock::RwLock::new(file);
    let deadline = Instant::now() + max_wait;
    loop {
        match lock.try_write() {
            // The guard lives until `work` returns, and the match arm returns with it.
            Ok(_guard) => return work(),
            Err(error) if error.kind() == ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err(ClusterError::LockTimeout {
                        action: action.to_owned(),
                        lock_file: lock_file.to_path_buf(),
                        waited_s: max_wait.as_secs(),
                    });
                }
                std::thread::sleep(RETRY_INTERVAL);
            }
            Err(error) => {
                return Err(ClusterError::io(format!("lock {}", lock_file.display()))(
                    error,
                ));
            }
        }
    }
}
