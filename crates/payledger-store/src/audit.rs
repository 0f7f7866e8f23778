//! Independent verification of the whole log: every hash chain, every stream's versions, and the
//! global positions. It reads only what the API also returns, so an auditor's own tool can do
//! the same (docs/auditing.md).

use crate::{read_all, ReadError, RecordedEvent, MAX_READ_LIMIT};
use serde::Serialize;
use sqlx::PgPool;
use std::collections::HashMap;

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

/// Verifies one event against the stream's previous (version, hash).
pub fn check_event(previous: Option<(i64, [u8; 32])>, event: &RecordedEvent) -> Option<String> {
    let (expected_version, expected_prev) = match previous {
        Some((version, hash)) => (version + 1, hash),
        None => (1, crate::chain::GENESIS_HASH),
    };
    if event.stream_version != expected_version {
        return Some(format!(
            "stream version {} follows {}: an event is missing or reordered",
            event.stream_version,
            expected_version - 1
        ));
    }
    if event.prev_hash != expected_prev {
        return Some("prev_hash does not match the previous event's hash".into());
    }
    if event.recompute_hash() != event.hash {
        return Some("hash does not match the event's content: it was altered".into());
    }
    None
}

/// Walks the global log from the start and checks every chain and position.
pub async fn verify_all(pool: &PgPool) -> Result<ChainReport, ReadError> {
    let head_position = crate::head_position(pool).await?;
    let mut heads: HashMap<String, (i64, [u8; 32])> = HashMap::new();
    let mut events_checked = 0u64;
    let mut after = 0i64;
    loop {
        let page = read_all(pool, after, MAX_READ_LIMIT).await?;
        let Some(last) = page.last() else { break };
        let page_end = last.global_position;
        for event in &page {
            let problem = if event.global_position != after + 1 {
                Some(format!(
                    "global position {} follows {}: an event is missing",
                    event.global_position, after
                ))
            } else {
                check_event(heads.get(&event.stream_id).copied(), event)
            };
            if let Some(problem) = problem {
                return Ok(report_problem(
                    events_checked,
                    &heads,
                    head_position,
                    event,
                    problem,
                ));
            }
            heads.insert(event.stream_id.clone(), (event.stream_version, event.hash));
            events_checked += 1;
            after = event.global_position;
        }
        debug_assert_eq!(after, page_end);
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
        streams_checked: heads.len() as u64,
        head_position,
        first_problem,
    })
}

fn report_problem(
    events_checked: u64,
    heads: &HashMap<String, (i64, [u8; 32])>,
    head_position: i64,
    event: &RecordedEvent,
    problem: String,
) -> ChainReport {
    ChainReport {
        events_checked,
        streams_checked: heads.len() as u64,
        head_position,
        first_problem: Some(AuditProblem {
            global_position: event.global_position,
            stream_id: event.stream_id.clone(),
            stream_version: event.stream_version,
            event_id: event.event_id.to_string(),
            problem,
        }),
    }
}
