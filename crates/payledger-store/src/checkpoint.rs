//! Signed checkpoints of the global log: what the per-stream chains cannot prove.
//!
//! The chains say that no stream was changed *unless its later hashes were recomputed*, and
//! nothing about the interleaving of streams. A checkpoint commits to every event up to a
//! global position, in global order, and is signed with a key that does not live in the
//! database; a copy kept outside the database proves a later rewrite.
//!
//! **The log digest** is a running chain over the log, one step per event:
//!
//! ```text
//! d(0) = 32 zero bytes
//! d(p) = SHA-256( "payledger-log-v1" \n hex(d(p-1)) \n p \n stream_id \n stream_version \n hex(hash) )
//! ```
//!
//! (lines joined by `\n`, UTF-8, decimal numbers, lowercase hex, no trailing newline). The event
//! `hash` covers the event's content and its stream predecessor, so `d(p)` commits to every
//! event up to `p`, to its position, and so to the order of the whole log.
//!
//! **A checkpoint** signs these lines (`\n`-joined, UTF-8, no trailing newline) with Ed25519:
//!
//! ```text
//! payledger-checkpoint-v1
//! <sequence, decimal, 1 for the first checkpoint>
//! <global position, decimal>
//! <log digest d(position), 64 lowercase hex>
//! <previous checkpoint's digest, 64 lowercase hex; 64 zeros for the first>
//! <sealed at, YYYY-MM-DDTHH:MM:SS.ffffffZ>
//! <public key, 64 lowercase hex>
//! ```
//!
//! and its `digest` is SHA-256 of the same bytes, so checkpoints form a chain of their own.
//!
//! **Version 2** (every checkpoint sealed since issue 20's Merkle proofs) adds one line after
//! the log digest: the root of the Merkle tree over the events since the previous checkpoint
//! ([`crate::merkle`]), so one event can be proven part of a signed checkpoint on its own:
//!
//! ```text
//! payledger-checkpoint-v2
//! <sequence>
//! <global position>
//! <log digest>
//! <events root: Merkle root of the events in (previous position, position], 64 lowercase hex>
//! <previous checkpoint's digest>
//! <sealed at>
//! <public key>
//! ```
//! `docs/auditing.md` repeats both recipes with a worked example.
//!
//! Sealing runs beside the log, never inside an append: it reads what is committed up to the
//! sequencer's head and writes one row to `audit_checkpoints`.

use crate::{head_position, recorded_at_format, ReadError, MAX_READ_LIMIT};
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use std::fmt::Write as _;

pub const LOG_DIGEST_VERSION_LINE: &str = "payledger-log-v1";
pub const CHECKPOINT_VERSION_LINE: &str = "payledger-checkpoint-v1";
/// Checkpoints that carry the Merkle root of their events.
pub const CHECKPOINT_V2_VERSION_LINE: &str = "payledger-checkpoint-v2";
/// The most events one inclusion proof reads (the events of one checkpoint's range).
pub const MAX_PROOF_RANGE_EVENTS: i64 = 1_000_000;
/// The log digest before the first event, and the "previous digest" of the first checkpoint.
pub const GENESIS_DIGEST: [u8; 32] = [0; 32];

/// One step of the running log digest: `d(p)` from `d(p-1)` and the event at `p`.
pub fn fold_log_digest(
    previous: &[u8; 32],
    global_position: i64,
    stream_id: &str,
    stream_version: i64,
    hash: &[u8; 32],
) -> [u8; 32] {
    let mut line = String::with_capacity(220 + stream_id.len());
    line.push_str(LOG_DIGEST_VERSION_LINE);
    line.push('\n');
    line.push_str(&hex::encode(previous));
    let _ = write!(line, "\n{global_position}\n{stream_id}\n{stream_version}\n");
    line.push_str(&hex::encode(hash));
    Sha256::digest(line.as_bytes()).into()
}

/// A sealed checkpoint, as stored, exported and served (`GET /v1/audit/checkpoints`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Checkpoint {
    pub sequence: i64,
    pub global_position: i64,
    #[serde(with = "hex_array")]
    pub log_digest: [u8; 32],
    /// Version 2: the Merkle root of the events since the previous checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "hex_option")]
    pub events_root: Option<[u8; 32]>,
    #[serde(with = "hex_array")]
    pub previous_digest: [u8; 32],
    #[serde(with = "recorded_at_format")]
    pub sealed_at: DateTime<Utc>,
    #[serde(with = "hex_array")]
    pub public_key: [u8; 32],
    #[serde(with = "hex_array")]
    pub signature: [u8; 64],
    #[serde(with = "hex_array")]
    pub digest: [u8; 32],
}

impl Checkpoint {
    /// The bytes that are signed and whose SHA-256 is `digest` (module documentation).
    pub fn signed_bytes(&self) -> String {
        signed_bytes(
            self.sequence,
            self.global_position,
            &self.log_digest,
            self.events_root.as_ref(),
            &self.previous_digest,
            &self.sealed_at,
            &self.public_key,
        )
    }

    /// Checks the digest and the signature, and that it was signed by `key`.
    pub fn check(&self, key: &VerifyingKey) -> Result<(), String> {
        if self.public_key != key.to_bytes() {
            return Err(format!(
                "signed by key {}, not by the expected key {}",
                hex::encode(self.public_key),
                hex::encode(key.to_bytes())
            ));
        }
        let bytes = self.signed_bytes();
        if <[u8; 32]>::from(Sha256::digest(bytes.as_bytes())) != self.digest {
            return Err("its digest does not match its content".into());
        }
        key.verify_strict(bytes.as_bytes(), &Signature::from_bytes(&self.signature))
            .map_err(|_| "its signature does not verify: it was forged or altered".to_string())
    }
}

fn signed_bytes(
    sequence: i64,
    global_position: i64,
    log_digest: &[u8; 32],
    events_root: Option<&[u8; 32]>,
    previous_digest: &[u8; 32],
    sealed_at: &DateTime<Utc>,
    public_key: &[u8; 32],
) -> String {
    let (version, root_line) = match events_root {
        None => (CHECKPOINT_VERSION_LINE, String::new()),
        Some(root) => (
            CHECKPOINT_V2_VERSION_LINE,
            format!("{}\n", hex::encode(root)),
        ),
    };
    format!(
        "{version}\n{sequence}\n{global_position}\n{}\n{root_line}{}\n{}\n{}",
        hex::encode(log_digest),
        hex::encode(previous_digest),
        recorded_at_format::format(sealed_at),
        hex::encode(public_key)
    )
}

/// The Ed25519 key that signs checkpoints. It never goes near the database; `Debug` hides it.
pub struct CheckpointSigner {
    key: SigningKey,
}

impl std::fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CheckpointSigner(public key {})",
            hex::encode(self.public_key())
        )
    }
}

impl CheckpointSigner {
    /// From the 32-byte secret seed (RFC 8032's private key).
    pub fn from_seed(seed: &[u8; 32]) -> CheckpointSigner {
        CheckpointSigner {
            key: SigningKey::from_bytes(seed),
        }
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// Builds and signs the (version 1) checkpoint that follows `previous`.
    pub fn sign(
        &self,
        previous: Option<&Checkpoint>,
        global_position: i64,
        log_digest: [u8; 32],
        sealed_at: DateTime<Utc>,
    ) -> Checkpoint {
        self.sign_with_root(previous, global_position, log_digest, None, sealed_at)
    }

    /// Builds and signs the checkpoint that follows `previous`; version 2 with an events root.
    pub fn sign_with_root(
        &self,
        previous: Option<&Checkpoint>,
        global_position: i64,
        log_digest: [u8; 32],
        events_root: Option<[u8; 32]>,
        sealed_at: DateTime<Utc>,
    ) -> Checkpoint {
        // The database keeps microseconds: sign what will be read back.
        let sealed_at = truncate_to_micros(sealed_at);
        let sequence = previous.map_or(1, |p| p.sequence + 1);
        let previous_digest = previous.map_or(GENESIS_DIGEST, |p| p.digest);
        let public_key = self.public_key();
        let bytes = signed_bytes(
            sequence,
            global_position,
            &log_digest,
            events_root.as_ref(),
            &previous_digest,
            &sealed_at,
            &public_key,
        );
        Checkpoint {
            sequence,
            global_position,
            log_digest,
            events_root,
            previous_digest,
            sealed_at,
            public_key,
            signature: self.key.sign(bytes.as_bytes()).to_bytes(),
            digest: Sha256::digest(bytes.as_bytes()).into(),
        }
    }
}

fn truncate_to_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at)
}

/// Parses a public key given as 64 hex digits.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, String> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut bytes)
        .map_err(|_| "a public key is 64 hex digits".to_string())?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| "not an Ed25519 public key".to_string())
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("failed to store the checkpoint: {0}")]
    Database(#[from] sqlx::Error),
    #[error("the log is not gapless at position {0}: refusing to seal over it")]
    Gap(i64),
    #[error("another sealer stored checkpoint {0} first")]
    Concurrent(i64),
}

/// The most recent checkpoint.
pub async fn last_checkpoint(pool: &PgPool) -> Result<Option<Checkpoint>, ReadError> {
    let row = sqlx::query(&format!(
        "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints ORDER BY sequence DESC LIMIT 1"
    ))
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(decode_checkpoint).transpose()
}

/// Checkpoints with `sequence > after_sequence`, oldest first.
pub async fn list_checkpoints(
    pool: &PgPool,
    after_sequence: i64,
    limit: i64,
) -> Result<Vec<Checkpoint>, ReadError> {
    let rows = sqlx::query(&format!(
        "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints WHERE sequence > $1 \
         ORDER BY sequence LIMIT $2"
    ))
    .bind(after_sequence)
    .bind(limit.clamp(1, MAX_READ_LIMIT))
    .fetch_all(pool)
    .await?;
    rows.iter().map(decode_checkpoint).collect()
}

/// Seals a checkpoint at the sequencer's head if the log has grown since the last one; `None`
/// when there is nothing new. Reads only committed events, outside any append.
pub async fn seal(
    pool: &PgPool,
    signer: &CheckpointSigner,
    sealed_at: DateTime<Utc>,
) -> Result<Option<Checkpoint>, SealError> {
    let previous = last_checkpoint(pool).await?;
    let from = previous.as_ref().map_or(0, |p| p.global_position);
    let head = head_position(pool).await?;
    if head <= from {
        return Ok(None);
    }
    let start = previous.as_ref().map_or(GENESIS_DIGEST, |p| p.log_digest);
    let (digest, events_root) = match fold_range(pool, from, head, start).await? {
        Folded::Reached(digest, events_root) => (digest, events_root),
        Folded::Gap(position) => return Err(SealError::Gap(position)),
    };
    let checkpoint = signer.sign_with_root(previous.as_ref(), head, digest, events_root, sealed_at);
    let inserted = sqlx::query(
        "INSERT INTO audit_checkpoints (sequence, global_position, log_digest, previous_digest, \
         sealed_at, public_key, signature, digest, events_root) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
    )
    .bind(checkpoint.sequence)
    .bind(checkpoint.global_position)
    .bind(&checkpoint.log_digest[..])
    .bind(&checkpoint.previous_digest[..])
    .bind(checkpoint.sealed_at)
    .bind(&checkpoint.public_key[..])
    .bind(&checkpoint.signature[..])
    .bind(&checkpoint.digest[..])
    .bind(checkpoint.events_root.map(|root| root.to_vec()))
    .execute(pool)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Err(SealError::Concurrent(checkpoint.sequence));
    }
    Ok(Some(checkpoint))
}

enum Folded {
    /// The log digest at the end, and the Merkle root of the range (`None` when empty).
    Reached([u8; 32], Option<[u8; 32]>),
    /// The position that is missing.
    Gap(i64),
}

/// Folds the log digest over positions `(from, to]`, starting from `start` = `d(from)`.
async fn fold_range(
    pool: &PgPool,
    from: i64,
    to: i64,
    start: [u8; 32],
) -> Result<Folded, ReadError> {
    let mut digest = start;
    let mut tree = crate::merkle::RootBuilder::default();
    let mut after = from;
    while after < to {
        let page = read_log_index(pool, after, to).await?;
        if page.is_empty() {
            return Ok(Folded::Gap(after + 1));
        }
        for entry in page {
            if entry.global_position != after + 1 {
                return Ok(Folded::Gap(after + 1));
            }
            digest = fold_log_digest(
                &digest,
                entry.global_position,
                &entry.stream_id,
                entry.stream_version,
                &entry.hash,
            );
            tree.push(crate::merkle::leaf_hash(
                entry.global_position,
                &entry.stream_id,
                entry.stream_version,
                &entry.hash,
            ));
            after = entry.global_position;
        }
    }
    Ok(Folded::Reached(digest, tree.root()))
}

/// What the log digest reads of an event: position, stream, version, hash.
struct LogIndexEntry {
    global_position: i64,
    stream_id: String,
    stream_version: i64,
    hash: [u8; 32],
}

async fn read_log_index(
    pool: &PgPool,
    after: i64,
    up_to: i64,
) -> Result<Vec<LogIndexEntry>, ReadError> {
    let rows = sqlx::query(
        "SELECT global_position, stream_id, stream_version, hash FROM events \
         WHERE global_position > $1 AND global_position <= $2 ORDER BY global_position LIMIT $3",
    )
    .bind(after)
    .bind(up_to)
    .bind(MAX_READ_LIMIT)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let global_position: i64 = row.try_get("global_position")?;
            let hash: Vec<u8> = row.try_get("hash")?;
            Ok(LogIndexEntry {
                global_position,
                stream_id: row.try_get("stream_id")?,
                stream_version: row.try_get("stream_version")?,
                hash: hash.try_into().map_err(|_| ReadError::Corrupt {
                    position: global_position,
                    reason: "hash is not 32 bytes".into(),
                })?,
            })
        })
        .collect()
}

/// What `verify_against` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointReport {
    pub checkpoints_checked: u64,
    /// The position up to which the live log agrees with every saved checkpoint.
    pub verified_up_to: i64,
    pub first_problem: Option<CheckpointProblem>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointProblem {
    /// The saved checkpoint that does not hold.
    pub sequence: i64,
    /// The saved checkpoint itself is refused (signature, digest, key or chain of checkpoints):
    /// nothing was compared with the log.
    pub refused: bool,
    /// The first difference lies at a position in `(after_position, global_position]`: the
    /// last position the live log agrees with, and the checkpoint's position.
    pub after_position: i64,
    pub global_position: i64,
    pub problem: String,
}

/// Checks saved checkpoints (a copy kept outside the database) against the live log.
///
/// First every saved checkpoint on its own: its digest, its signature by `key`, and the chain of
/// checkpoints (each names the previous one's digest). A copy that fails is refused before the
/// log is read. Then the log digest is recomputed from position 1 and compared at each
/// checkpoint's position; the first that differs is named with the range of positions it
/// covers, since a running digest says *that* something in that range changed.
pub async fn verify_against(
    pool: &PgPool,
    saved: &[Checkpoint],
    key: &VerifyingKey,
) -> Result<CheckpointReport, ReadError> {
    let problem = |c: &Checkpoint, after: i64, text: String| CheckpointReport {
        checkpoints_checked: 0,
        verified_up_to: 0,
        first_problem: Some(CheckpointProblem {
            sequence: c.sequence,
            refused: true,
            after_position: after,
            global_position: c.global_position,
            problem: text,
        }),
    };
    let mut previous: Option<&Checkpoint> = None;
    for checkpoint in saved {
        if let Err(text) = checkpoint.check(key) {
            return Ok(problem(
                checkpoint,
                0,
                format!("the saved checkpoint is refused: {text}"),
            ));
        }
        let chain_problem = match previous {
            None if checkpoint.sequence == 1 && checkpoint.previous_digest != GENESIS_DIGEST => {
                Some("the first checkpoint must name 64 zeros as its previous digest".to_string())
            }
            None => None,
            Some(p) if checkpoint.sequence != p.sequence + 1 => Some(format!(
                "checkpoint {} follows {}: the saved copy is not contiguous",
                checkpoint.sequence, p.sequence
            )),
            Some(p) if checkpoint.previous_digest != p.digest => {
                Some("it does not name the previous checkpoint's digest".to_string())
            }
            Some(p) if checkpoint.global_position <= p.global_position => {
                Some("its position does not advance".to_string())
            }
            Some(_) => None,
        };
        if let Some(text) = chain_problem {
            return Ok(problem(
                checkpoint,
                0,
                format!("the saved checkpoint is refused: {text}"),
            ));
        }
        previous = Some(checkpoint);
    }

    let head = head_position(pool).await?;
    let mut digest = GENESIS_DIGEST;
    let mut at = 0i64;
    let mut checked = 0u64;
    for checkpoint in saved {
        if checkpoint.global_position > head {
            return Ok(CheckpointReport {
                checkpoints_checked: checked,
                verified_up_to: at,
                first_problem: Some(CheckpointProblem {
                    sequence: checkpoint.sequence,
                    refused: false,
                    after_position: at,
                    global_position: checkpoint.global_position,
                    problem: format!(
                        "the log ends at {head}, before this checkpoint's position: events were removed"
                    ),
                }),
            });
        }
        let text = match fold_range(pool, at, checkpoint.global_position, digest).await? {
            Folded::Gap(position) => Some(format!("position {position} is missing from the log")),
            Folded::Reached(live, _) if live != checkpoint.log_digest => Some(format!(
                "the live log's digest at {} is {}, the checkpoint says {}: an event after \
                 position {at} and up to {} was altered, removed, inserted or reordered",
                checkpoint.global_position,
                hex::encode(live),
                hex::encode(checkpoint.log_digest),
                checkpoint.global_position
            )),
            Folded::Reached(_, root)
                if checkpoint.events_root.is_some() && root != checkpoint.events_root =>
            {
                Some(format!(
                    "the live log's events root over ({at}, {}] differs from the checkpoint's",
                    checkpoint.global_position
                ))
            }
            Folded::Reached(live, _) => {
                digest = live;
                None
            }
        };
        if let Some(text) = text {
            return Ok(CheckpointReport {
                checkpoints_checked: checked,
                verified_up_to: at,
                first_problem: Some(CheckpointProblem {
                    sequence: checkpoint.sequence,
                    refused: false,
                    after_position: at,
                    global_position: checkpoint.global_position,
                    problem: text,
                }),
            });
        }
        at = checkpoint.global_position;
        checked += 1;
    }
    Ok(CheckpointReport {
        checkpoints_checked: checked,
        verified_up_to: at,
        first_problem: None,
    })
}

const CHECKPOINT_COLUMNS: &str = "sequence, global_position, log_digest, previous_digest, \
    sealed_at, public_key, signature, digest, events_root";

fn decode_checkpoint(row: &PgRow) -> Result<Checkpoint, ReadError> {
    let sequence: i64 = row.try_get("sequence")?;
    fn fixed<const N: usize>(row: &PgRow, name: &str, sequence: i64) -> Result<[u8; N], ReadError> {
        let bytes: Vec<u8> = row.try_get(name)?;
        bytes.try_into().map_err(|_| ReadError::Corrupt {
            position: sequence,
            reason: format!("checkpoint {sequence}: {name} is not {N} bytes"),
        })
    }
    Ok(Checkpoint {
        sequence,
        global_position: row.try_get("global_position")?,
        log_digest: fixed(row, "log_digest", sequence)?,
        events_root: match row.try_get::<Option<Vec<u8>>, _>("events_root")? {
            None => None,
            Some(bytes) => Some(bytes.try_into().map_err(|_| ReadError::Corrupt {
                position: sequence,
                reason: format!("checkpoint {sequence}: events_root is not 32 bytes"),
            })?),
        },
        previous_digest: fixed(row, "previous_digest", sequence)?,
        sealed_at: row.try_get("sealed_at")?,
        public_key: fixed(row, "public_key", sequence)?,
        signature: fixed(row, "signature", sequence)?,
        digest: fixed(row, "digest", sequence)?,
    })
}

mod hex_option {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(bytes) => s.serialize_str(&hex::encode(bytes)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u8; 32]>, D::Error> {
        let text = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).map_err(serde::de::Error::custom)?;
        Ok(Some(out))
    }
}

/// One event's proof of inclusion in a signed checkpoint (`GET /v1/audit/proofs/{position}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InclusionProof {
    pub global_position: i64,
    pub stream_id: String,
    pub stream_version: i64,
    /// The event's hash (hex), as in the raw log.
    pub hash: String,
    /// The event's index among the checkpoint's events (0 for the first after the previous
    /// checkpoint's position) and how many events the checkpoint's tree holds.
    pub leaf_index: u64,
    pub tree_size: u64,
    /// Sibling hashes from the leaf up (hex), RFC 6962's audit path.
    pub path: Vec<String>,
    /// The signed checkpoint whose `eventsRoot` the path leads to.
    pub checkpoint: Checkpoint,
}

#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("no checkpoint covers position {0} yet (sealed every few seconds; or `payledger audit checkpoint`)")]
    NotSealed(i64),
    #[error("position {0} is covered by a version-1 checkpoint, which has no events root")]
    NoRoot(i64),
    #[error("checkpoint {0} covers more than {MAX_PROOF_RANGE_EVENTS} events: no proof is built over it")]
    RangeTooLarge(i64),
    #[error("the live log's events under checkpoint {0} no longer match its events root")]
    LogDiffers(i64),
}

/// The inclusion proof of the event at `global_position` in the first checkpoint that covers it.
pub async fn inclusion_proof(
    pool: &PgPool,
    global_position: i64,
) -> Result<InclusionProof, ProofError> {
    let row = sqlx::query(&format!(
        "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoints WHERE global_position >= $1 \
         ORDER BY sequence LIMIT 1"
    ))
    .bind(global_position)
    .fetch_optional(pool)
    .await
    .map_err(ReadError::from)?;
    let checkpoint = match row.as_ref().map(decode_checkpoint).transpose()? {
        Some(checkpoint) => checkpoint,
        None => return Err(ProofError::NotSealed(global_position)),
    };
    let Some(events_root) = checkpoint.events_root else {
        return Err(ProofError::NoRoot(global_position));
    };
    let from: i64 = sqlx::query_scalar(
        "SELECT coalesce(max(global_position), 0) FROM audit_checkpoints WHERE sequence < $1",
    )
    .bind(checkpoint.sequence)
    .fetch_one(pool)
    .await
    .map_err(ReadError::from)?;
    if checkpoint.global_position - from > MAX_PROOF_RANGE_EVENTS {
        return Err(ProofError::RangeTooLarge(checkpoint.sequence));
    }
    let mut leaves = Vec::with_capacity((checkpoint.global_position - from) as usize);
    let mut proven = None;
    let mut after = from;
    while after < checkpoint.global_position {
        let page = read_log_index(pool, after, checkpoint.global_position).await?;
        if page.is_empty() {
            return Err(ProofError::LogDiffers(checkpoint.sequence));
        }
        for entry in page {
            if entry.global_position == global_position {
                proven = Some((
                    leaves.len(),
                    entry.stream_id.clone(),
                    entry.stream_version,
                    entry.hash,
                ));
            }
            leaves.push(crate::merkle::leaf_hash(
                entry.global_position,
                &entry.stream_id,
                entry.stream_version,
                &entry.hash,
            ));
            after = entry.global_position;
        }
    }
    let Some((index, stream_id, stream_version, hash)) = proven else {
        return Err(ProofError::LogDiffers(checkpoint.sequence));
    };
    if crate::merkle::root(&leaves) != Some(events_root) {
        return Err(ProofError::LogDiffers(checkpoint.sequence));
    }
    Ok(InclusionProof {
        global_position,
        stream_id,
        stream_version,
        hash: hex::encode(hash),
        leaf_index: index as u64,
        tree_size: leaves.len() as u64,
        path: crate::merkle::audit_path(&leaves, index)
            .iter()
            .map(hex::encode)
            .collect(),
        checkpoint,
    })
}

mod hex_array {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer, const N: usize>(
        bytes: &[u8; N],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let text = String::deserialize(d)?;
        let mut out = [0u8; N];
        hex::decode_to_slice(text, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn signer() -> CheckpointSigner {
        CheckpointSigner::from_seed(&[7u8; 32])
    }

    #[test]
    fn the_log_digest_recipe_is_stable() {
        // Pinned, and derived again in docs/auditing.md with sha256sum.
        let hash = [0xabu8; 32];
        let d1 = fold_log_digest(&GENESIS_DIGEST, 1, "order-order-0001", 1, &hash);
        assert_eq!(
            hex::encode(d1),
            hex::encode(<[u8; 32]>::from(Sha256::digest(
                format!(
                    "payledger-log-v1\n{}\n1\norder-order-0001\n1\n{}",
                    "0".repeat(64),
                    "ab".repeat(32)
                )
                .as_bytes()
            )))
        );
    }

    #[test]
    fn the_worked_example_of_the_docs_is_stable() {
        // docs/auditing.md, "Worked example": the event of chain.rs's fixed vector at position
        // 1, sealed by the seed 32 × 0x07 at a fixed time. Ed25519 signatures are
        // deterministic, so every value is pinned; verify_log.py checks the same checkpoint.
        let event_hash: [u8; 32] =
            hex::decode("7fcfc4d1093406e2fe541ddb7f2ce70ac1cf0b77bc55480c7a3fd2e5e8c5b405")
                .unwrap()
                .try_into()
                .unwrap();
        let d1 = fold_log_digest(&GENESIS_DIGEST, 1, "order-order-0001", 1, &event_hash);
        let at = Utc.with_ymd_and_hms(2026, 12, 6, 6, 0, 0).unwrap()
            + chrono::Duration::microseconds(123_456);
        let checkpoint = signer().sign(None, 1, d1, at);
        assert_eq!(
            hex::encode(d1),
            "2ce1e695cdf4147b876635d3ee4120d1a6752967795e0dbcd5b7a0a414305c2c"
        );
        assert_eq!(
            hex::encode(checkpoint.public_key),
            "ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c"
        );
        assert_eq!(
            hex::encode(checkpoint.signature),
            "0d43ec5939de6476dbf20306973b9c47481c5ef906a2503f5f5574abcc709db6\
             757d43be6958d0fb9ea50d4df9f42eb14c3634e3f6b4f1fee192599521c8cb0c"
        );
        assert_eq!(
            hex::encode(checkpoint.digest),
            "6546f75af687dab5318614b7bd91f00279ee55a4bc8810fb5bdd6bed85833c6b"
        );
        assert_eq!(checkpoint.check(&signer().verifying_key()), Ok(()));
    }

    #[test]
    fn a_signed_checkpoint_checks_and_a_changed_one_does_not() {
        let at = Utc.with_ymd_and_hms(2026, 12, 6, 5, 0, 0).unwrap();
        let first = signer().sign(None, 15, [1u8; 32], at);
        let key = signer().verifying_key();
        assert_eq!(first.check(&key), Ok(()));
        assert_eq!(first.sequence, 1);
        assert_eq!(first.previous_digest, GENESIS_DIGEST);
        let second = signer().sign(Some(&first), 20, [2u8; 32], at);
        assert_eq!(second.previous_digest, first.digest);
        assert_eq!(second.sequence, 2);

        let mut bad_signature = first.clone();
        bad_signature.signature[0] ^= 1;
        assert!(bad_signature.check(&key).unwrap_err().contains("signature"));

        // Moved to another position with the digest recomputed: the signature still tells.
        let mut moved = first.clone();
        moved.global_position = 14;
        moved.digest = Sha256::digest(moved.signed_bytes().as_bytes()).into();
        assert!(moved.check(&key).unwrap_err().contains("signature"));

        let other = CheckpointSigner::from_seed(&[8u8; 32]).verifying_key();
        assert!(first.check(&other).unwrap_err().contains("expected key"));

        let json = serde_json::to_string(&first).unwrap();
        assert!(
            json.contains("\"sealedAt\":\"2026-12-06T05:00:00.000000Z\""),
            "{json}"
        );
        let back: Checkpoint = serde_json::from_str(&json).unwrap();
        assert_eq!(back, first);
    }
}
