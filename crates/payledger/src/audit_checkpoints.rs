//! Signed checkpoints of the global log, on the operating side: the signing key (kept outside
//! the database), the sealer that follows the log, and the append-only export file.
//!
//! The recipe and the checks are in `payledger_store::checkpoint`; docs/auditing.md explains
//! both to auditors.

use anyhow::Context;
use payledger_store::checkpoint::{self, Checkpoint, CheckpointSigner, SealError};
use sqlx::PgPool;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The Ed25519 seed, 64 hex digits, in a file of mode 0600 beside the cluster's directory.
pub const SIGNING_KEY_FILE: &str = "audit-signing-key";
/// Every checkpoint as a JSON line, appended as it is sealed.
pub const CHECKPOINTS_FILE: &str = "audit-checkpoints.jsonl";
/// The seed from the environment instead of the file (64 hex digits).
pub const SIGNING_KEY_ENV: &str = "PAYLEDGER_AUDIT_SIGNING_KEY";
/// How many checkpoints one export pass appends at most (the rest on the next pass).
const MAX_EXPORT_PER_PASS: i64 = 1_000;

#[derive(Debug, Clone)]
pub struct CheckpointSettings {
    /// Seal periodically while serving (on-demand sealing works either way).
    pub enabled: bool,
    /// Seal once this many events arrived since the last checkpoint…
    pub every_events: i64,
    /// …or once this much time passed and at least one event arrived.
    pub every_ms: u64,
    /// Where the key file and the export file live (default: the data directory).
    pub directory: Option<PathBuf>,
}

impl Default for CheckpointSettings {
    fn default() -> Self {
        CheckpointSettings {
            enabled: true,
            every_events: 10_000,
            every_ms: 60_000,
            directory: None,
        }
    }
}

impl CheckpointSettings {
    /// `PAYLEDGER_CHECKPOINTS` (`on`/`off`), `PAYLEDGER_CHECKPOINT_EVERY_EVENTS`,
    /// `PAYLEDGER_CHECKPOINT_EVERY_S` and `PAYLEDGER_AUDIT_DIR` override the defaults.
    pub fn with_env(mut self) -> anyhow::Result<CheckpointSettings> {
        if let Ok(value) = crate::settings::var("PAYLEDGER_CHECKPOINTS") {
            self.enabled = match value.as_str() {
                "on" | "true" | "1" => true,
                "off" | "false" | "0" => false,
                other => anyhow::bail!("PAYLEDGER_CHECKPOINTS must be on or off, not {other:?}"),
            };
        }
        if let Ok(value) = crate::settings::var("PAYLEDGER_CHECKPOINT_EVERY_EVENTS") {
            self.every_events = value
                .parse()
                .ok()
                .filter(|n| (1..=100_000_000).contains(n))
                .context("PAYLEDGER_CHECKPOINT_EVERY_EVENTS must be 1 to 100000000")?;
        }
        if let Ok(value) = crate::settings::var("PAYLEDGER_CHECKPOINT_EVERY_S") {
            let seconds: u64 = value
                .parse()
                .ok()
                .filter(|n| (1..=86_400).contains(n))
                .context("PAYLEDGER_CHECKPOINT_EVERY_S must be 1 to 86400")?;
            self.every_ms = seconds * 1_000;
        }
        if let Ok(value) = crate::settings::var("PAYLEDGER_AUDIT_DIR") {
            self.directory = Some(PathBuf::from(value));
        }
        Ok(self)
    }

    pub fn files(&self, data_dir: &Path) -> AuditFiles {
        let directory = self
            .directory
            .clone()
            .unwrap_or_else(|| data_dir.to_path_buf());
        AuditFiles {
            key_file: directory.join(SIGNING_KEY_FILE),
            export_file: directory.join(CHECKPOINTS_FILE),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AuditFiles {
    pub key_file: PathBuf,
    pub export_file: PathBuf,
}

/// The signing key: `PAYLEDGER_AUDIT_SIGNING_KEY` when set, else the key file, created (random,
/// mode 0600) when `create` and missing. `Ok(None)`: no key and not asked to create one.
pub fn load_signer(files: &AuditFiles, create: bool) -> anyhow::Result<Option<CheckpointSigner>> {
    if let Ok(text) = crate::settings::var(SIGNING_KEY_ENV) {
        return parse_seed(&text)
            .map(Some)
            .with_context(|| format!("{SIGNING_KEY_ENV} must be 64 hex digits"));
    }
    match std::fs::read_to_string(&files.key_file) {
        Ok(text) => parse_seed(&text).map(Some).with_context(|| {
            format!(
                "{} must hold 64 hex digits (an Ed25519 seed)",
                files.key_file.display()
            )
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound && create => {
            create_key_file(&files.key_file).map(Some)
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => {
            Err(error).with_context(|| format!("failed to read {}", files.key_file.display()))
        }
    }
}

fn parse_seed(text: &str) -> anyhow::Result<CheckpointSigner> {
    let mut seed = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut seed)?;
    Ok(CheckpointSigner::from_seed(&seed))
}

/// Creates the key file with `create_new`, so two processes starting at once cannot both write
/// one: the loser reads the winner's.
fn create_key_file(path: &Path) -> anyhow::Result<CheckpointSigner> {
    use rand::RngCore;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("failed to create {}", parent.display()))?;
    }
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(format!("{}\n", hex::encode(seed)).as_bytes())?;
            file.sync_all()?;
            tracing::info!(path = %path.display(), "created the checkpoint signing key");
            Ok(CheckpointSigner::from_seed(&seed))
        }
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(path)?;
            parse_seed(&text)
        }
        Err(error) => Err(error).with_context(|| format!("failed to create {}", path.display())),
    }
}

/// Appends to the export file every stored checkpoint it does not hold yet, in order. Idempotent
/// and crash-safe: a checkpoint sealed but not exported (a crash in between) goes out next time.
pub async fn export_new(pool: &PgPool, path: &Path) -> anyhow::Result<u64> {
    let mut after = last_exported_sequence(path)?;
    let mut written = 0u64;
    loop {
        let page = checkpoint::list_checkpoints(pool, after, MAX_EXPORT_PER_PASS).await?;
        let Some(last) = page.last() else {
            return Ok(written);
        };
        after = last.sequence;
        let mut text = String::new();
        for c in &page {
            text.push_str(&serde_json::to_string(c)?);
            text.push('\n');
        }
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .with_context(|| format!("failed to open {}", path.display()))?;
        file.write_all(text.as_bytes())?;
        file.sync_data()?;
        written += page.len() as u64;
        if (page.len() as i64) < MAX_EXPORT_PER_PASS {
            return Ok(written);
        }
    }
}

/// The sequence of the file's last line (0 for a missing or empty file). Reads only its tail.
fn last_exported_sequence(path: &Path) -> anyhow::Result<i64> {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(error) => {
            return Err(error).with_context(|| format!("failed to open {}", path.display()))
        }
    };
    let length = file.metadata()?.len();
    file.seek(SeekFrom::Start(length.saturating_sub(16 * 1024)))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    let tail = String::from_utf8_lossy(&tail);
    let Some(line) = tail.lines().rev().find(|l| !l.trim().is_empty()) else {
        return Ok(0);
    };
    let last: Checkpoint = serde_json::from_str(line).with_context(|| {
        format!(
            "the last line of {} is not a checkpoint: refusing to append after it",
            path.display()
        )
    })?;
    Ok(last.sequence)
}

/// Seals a checkpoint now if the log grew, then exports. `None`: nothing new to seal.
pub async fn seal_and_export(
    pool: &PgPool,
    signer: &CheckpointSigner,
    export_file: &Path,
) -> anyhow::Result<Option<Checkpoint>> {
    // A seal is dated by the wall clock even on a test deployment: it says when the signature
    // was made, which an outside copy is compared against, not when anything happened in the
    // ledger's scenario.
    let sealed_at = payledger_app::clock::Clock::now(&payledger_app::clock::SystemClock);
    let sealed = match checkpoint::seal(pool, signer, sealed_at).await {
        Ok(sealed) => sealed,
        // Another process sealed the same range first; its checkpoint is as good.
        Err(SealError::Concurrent(_)) => None,
        Err(error) => return Err(error.into()),
    };
    export_new(pool, export_file).await?;
    Ok(sealed)
}

/// Follows the log and seals every `every_events` events or `every_ms` (whichever comes first,
/// and only when something new arrived). It reads committed events beside the writers and never
/// takes part in an append: sealing cannot slow or block a command.
pub async fn run_sealer(
    pool: PgPool,
    signer: CheckpointSigner,
    export_file: PathBuf,
    settings: CheckpointSettings,
) {
    let tick = Duration::from_millis(settings.every_ms.clamp(100, 1_000));
    let every = Duration::from_millis(settings.every_ms);
    let mut last_sealed_at = Instant::now();
    let mut sealed_position = match checkpoint::last_checkpoint(&pool).await {
        Ok(last) => last.map_or(0, |c| c.global_position),
        Err(error) => {
            tracing::warn!(%error, "checkpoint sealer could not read the last checkpoint");
            0
        }
    };
    // A checkpoint sealed but not exported before a crash goes out now.
    if let Err(error) = export_new(&pool, &export_file).await {
        tracing::error!(error = %format!("{error:#}"), "failed to export checkpoints");
    }
    loop {
        tokio::time::sleep(tick).await;
        let head = match payledger_store::head_position(&pool).await {
            Ok(head) => head,
            Err(error) => {
                tracing::warn!(%error, "checkpoint sealer could not read the head");
                continue;
            }
        };
        let pending = head - sealed_position;
        let due =
            pending >= settings.every_events || (pending > 0 && last_sealed_at.elapsed() >= every);
        if !due {
            continue;
        }
        match seal_and_export(&pool, &signer, &export_file).await {
            Ok(sealed) => {
                if let Some(c) = &sealed {
                    tracing::info!(
                        sequence = c.sequence,
                        position = c.global_position,
                        "sealed a checkpoint of the log"
                    );
                }
                last_sealed_at = Instant::now();
                sealed_position = match checkpoint::last_checkpoint(&pool).await {
                    Ok(last) => last.map_or(sealed_position, |c| c.global_position),
                    Err(_) => sealed_position,
                };
            }
            Err(error) => {
                // Someone should look: the log is gapless by construction, and an export that
                // fails leaves auditors without a copy.
                tracing::error!(error = %format!("{error:#}"), "failed to seal a checkpoint");
            }
        }
    }
}

/// Reads a saved copy: JSON lines as exported, or a `GET /v1/audit/checkpoints` page.
pub fn read_saved(path: &Path) -> anyhow::Result<Vec<Checkpoint>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read {}", path.display()))?;
    if text.trim_start().starts_with("{\"checkpoints\"") {
        #[derive(serde::Deserialize)]
        struct Page {
            checkpoints: Vec<Checkpoint>,
        }
        let page: Page = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a checkpoints page", path.display()))?;
        return Ok(page.checkpoints);
    }
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            serde_json::from_str(line)
                .with_context(|| format!("{} line {}: not a checkpoint", path.display(), n + 1))
        })
        .collect()
}
