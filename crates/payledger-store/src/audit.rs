//! Independent verification of the whole log: every hash chain, every stream's versions, and the
//! global positions. It reads only what the API also returns, so an auditor's own tool can do
//! the same (docs/auditing.md).
//!
//! Memory stays bounded however many streams and events the log holds: instead of keeping every
//! stream's head while walking the log in global order (~190 bytes per stream, 500 MiB at
//! 2.5 M streams), the walk is split in two passes that each keep O(page) state:
//!
//! 1. **links**: the log in (stream, global position) order, a page at a time, checks that each
//!    event's version and `prev_hash` follow the event before it *in the same stream*;
//! 2. **contents**: the log in global order checks that positions have no gap and that every
//!    stored hash matches the event's content.
//!
//! The first problem reported is the same as a single walk in global order holding every head
//! would report: that walk's head for a stream, at an event, is always the stream's previous
//! event in global order (every earlier event verified), which is what pass 1 compares with; so
//! the first problem is the lowest position failing either pass, and at one position a gap comes
//! before a broken link, which comes before altered content — the order of [`check_event`].

use crate::{read_all, ReadError, RecordedEvent, MAX_READ_LIMIT};
use serde::Serialize;
use sqlx::{PgPool, Row};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditProblem {
    pub global_position: i64,
    pub stream_id: String,
    pub stream_version: i64,
    pub event_id: String,
    pub problem: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChainReport {
    pub events_checked: u64,
    pub streams_checked: u64,
    pub head_position: i64,
    /// The first thing found wrong, in global order; `None` when everything verifies.
    pub first_problem: Option<AuditProblem>,
}

/// Which pass of [`verify_all_with_progress`] is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum AuditPhase {
    /// Versions and `prev_hash` along each stream, read in (stream, position) order.
    Links,
    /// Gapless positions and content hashes, read in global order.
    Contents,
}

/// Where a running verification is, handed to the progress callback after every page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditProgress {
    pub phase: AuditPhase,
    /// Events this pass has read so far.
    pub events_done: u64,
    /// The sequencer's head when the verification started: about how many events each pass reads.
    pub head_position: i64,
    /// The last global position read (contents pass; 0 in the links pass, which reads by stream).
    pub position: i64,
}

/// Rows per page of the links pass: only positions, ids and hashes, ~150 bytes a row.
const LINKS_PAGE_ROWS: i64 = 20_000;

/// Verifies that an event's version and `prev_hash` follow the stream's previous (version, hash).
pub fn check_link(
    previous: Option<(i64, [u8; 32])>,
    stream_version: i64,
    prev_hash: &[u8; 32],
) -> Option<String> {
    let (expected_version, expected_prev) = match previous {
        Some((version, hash)) => (version + 1, hash),
        None => (1, crate::chain::GENESIS_HASH),
    };
    if stream_version != expected_version {
        return Some(format!(
            "stream version {} follows {}: an event is missing or reordered",
            stream_version,
            expected_version - 1
        ));
    }
    if *prev_hash != expected_prev {
        return Some("prev_hash does not match the previous event's hash".into());
    }
    None
}

/// Verifies one event's content against its stored hash.
pub fn check_content(event: &RecordedEvent) -> Option<String> {
    (event.recompute_hash() != event.hash)
        .then(|| "hash does not match the event's content: it was altered".into())
}

/// Verifies one event against the stream's previous (version, hash).
pub fn check_event(previous: Option<(i64, [u8; 32])>, event: &RecordedEvent) -> Option<String> {
    check_link(previous, event.stream_version, &event.prev_hash).or_else(|| check_content(event))
}

/// Walks the whole log and checks every chain and position. See [`verify_all_with_progress`].
pub async fn verify_all(pool: &PgPool) -> Result<ChainReport, ReadError> {
    verify_all_with_progress(pool, |_| {}).await
}

/// Walks the whole log in two passes of bounded memory (see the module's documentation) and
/// reports the first problem in global order. `progress` is called after every page.
pub async fn verify_all_with_progress(
    pool: &PgPool,
    progress: impl FnMut(&AuditProgress),
) -> Result<ChainReport, ReadError> {
    verify_all_paged(pool, LINKS_PAGE_ROWS, progress).await
}

/// [`verify_all_with_progress`] with the links pass reading `links_page_rows` rows a page (tests
/// make pages tiny so that streams straddle them).
#[doc(hidden)]
pub async fn verify_all_paged(
    pool: &PgPool,
    links_page_rows: i64,
    mut progress: impl FnMut(&AuditProgress),
) -> Result<ChainReport, ReadError> {
    let head_position = crate::head_position(pool).await?;
    let first_broken_link =
        first_broken_link(pool, head_position, links_page_rows.max(1), &mut progress).await?;
    let stop_at = first_broken_link.as_ref().map(|p| p.global_position);

    let mut events_checked = 0u64;
    let mut streams_checked = 0u64;
    let mut after = 0i64;
    loop {
        let page = read_all(pool, after, MAX_READ_LIMIT).await?;
        if page.is_empty() {
            break;
        }
        for event in &page {
            let problem = if event.global_position != after + 1 {
                Some(format!(
                    "global position {} follows {}: an event is missing",
                    event.global_position, after
                ))
            } else if Some(event.global_position) == stop_at {
                first_broken_link.as_ref().map(|p| p.problem.clone())
            } else {
                check_content(event)
            };
            if let Some(problem) = problem {
                return Ok(ChainReport {
                    events_checked,
                    streams_checked,
                    head_position,
                    first_problem: Some(AuditProblem {
                        global_position: event.global_position,
                        stream_id: event.stream_id.clone(),
                        stream_version: event.stream_version,
                        event_id: event.event_id.to_string(),
                        problem,
                    }),
                });
            }
            // Every event before the first problem chains from version 1, so each stream seen so
            // far has exactly one version 1 among them.
            if event.stream_version == 1 {
                streams_checked += 1;
            }
            events_checked += 1;
            after = event.global_position;
        }
        progress(&AuditProgress {
            phase: AuditPhase::Contents,
            events_done: events_checked,
            head_position,
            position: after,
        });
    }
    let first_problem = (after != head_position).then(|| AuditProblem {
        global_position: after,
        stream_id: String::new(),
        stream_version: 0,
        event_id: String::new(),
        problem: format!(
            "the log ends at {after} but the sequencer handed out positions up to {head_position}: events were removed"
        ),
    });
    Ok(ChainReport {
        events_checked,
        streams_checked,
        head_position,
        first_problem,
    })
}

/// Pass 1: the lowest global position whose version or `prev_hash` does not follow the event
/// before it in the same stream (in global order). Keeps one previous row across pages.
async fn first_broken_link(
    pool: &PgPool,
    head_position: i64,
    page_rows: i64,
    progress: &mut impl FnMut(&AuditProgress),
) -> Result<Option<AuditProblem>, ReadError> {
    let mut previous: Option<(String, i64, [u8; 32])> = None;
    // Keyset: the last (stream, position) read; "" sorts before every stream id (length ≥ 1).
    let mut after: (String, i64) = (String::new(), 0);
    let mut first: Option<AuditProblem> = None;
    let mut events_done = 0u64;
    loop {
        // The (stream_id, stream_version) index gives the streams in order; each stream's few
        // events are sorted by position on the way (incremental sort), never the whole log.
        let rows = sqlx::query(
            "SELECT global_position, stream_id, stream_version, event_id, prev_hash, hash \
             FROM events WHERE stream_id >= $1 AND (stream_id, global_position) > ($1, $2) \
             ORDER BY stream_id, global_position LIMIT $3",
        )
        .bind(&after.0)
        .bind(after.1)
        .bind(page_rows)
        .fetch_all(pool)
        .await?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let position: i64 = row.try_get("global_position")?;
            let stream_id: String = row.try_get("stream_id")?;
            let stream_version: i64 = row.try_get("stream_version")?;
            let to_hash = |name: &str| -> Result<[u8; 32], ReadError> {
                let bytes: Vec<u8> = row.try_get(name)?;
                bytes.try_into().map_err(|_| ReadError::Corrupt {
                    position,
                    reason: format!("{name} is not 32 bytes"),
                })
            };
            let prev_hash = to_hash("prev_hash")?;
            let hash = to_hash("hash")?;
            let stream_previous = previous
                .as_ref()
                .filter(|(stream, _, _)| *stream == stream_id)
                .map(|(_, version, hash)| (*version, *hash));
            let earlier_than_first = first.as_ref().is_none_or(|p| position < p.global_position);
            if earlier_than_first {
                if let Some(problem) = check_link(stream_previous, stream_version, &prev_hash) {
                    let event_id: Uuid = row.try_get("event_id")?;
                    first = Some(AuditProblem {
                        global_position: position,
                        stream_id: stream_id.clone(),
                        stream_version,
                        event_id: event_id.to_string(),
                        problem,
                    });
                }
            }
            previous = Some((stream_id, stream_version, hash));
            events_done += 1;
        }
        if let Some((stream, _, _)) = &previous {
            let last_position: i64 = rows[rows.len() - 1].try_get("global_position")?;
            after = (stream.clone(), last_position);
        }
        progress(&AuditProgress {
            phase: AuditPhase::Links,
            events_done,
            head_position,
            position: 0,
        });
    }
    Ok(first)
}
