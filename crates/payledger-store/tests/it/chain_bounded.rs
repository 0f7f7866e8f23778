//! `verify_all` walks the log in two passes of bounded memory; whatever was tampered with, it
//! must report exactly what the single walk in global order that held every stream's head
//! reported (the reference below is that walk, as it was before), with pages so small that
//! streams straddle them.

use crate::{event, store};
use payledger_store::audit::{
    check_event, verify_all, verify_all_paged, AuditPhase, AuditProblem, ChainReport,
};
use payledger_store::{read_all, ExpectedVersion, MAX_READ_LIMIT};
use sqlx::PgPool;
use std::collections::HashMap;

const STREAMS: i64 = 5;
const ROUNDS: i64 = 4;

/// Five streams of four events appended round-robin: round r of stream s is at position
/// r * 5 + s + 1, so every stream's events are five positions apart.
async fn interleaved() -> (payledger_testdb::TestDatabase, payledger_store::EventStore) {
    let (db, store) = store().await;
    for round in 0..ROUNDS {
        for s in 0..STREAMS {
            let expected = if round == 0 {
                ExpectedVersion::NoStream
            } else {
                ExpectedVersion::Exact(round)
            };
            store
                .append(
                    &format!("order-{s}"),
                    expected,
                    vec![event("E", round * 10 + s)],
                    false,
                )
                .await
                .unwrap();
        }
    }
    (db, store)
}

/// The walk `verify_all` did before it was bounded: global order, every head in a map.
async fn reference(pool: &PgPool) -> ChainReport {
    let head_position = payledger_store::head_position(pool).await.unwrap();
    let mut heads: HashMap<String, (i64, [u8; 32])> = HashMap::new();
    let mut events_checked = 0u64;
    let mut after = 0i64;
    loop {
        let page = read_all(pool, after, MAX_READ_LIMIT).await.unwrap();
        if page.is_empty() {
            break;
        }
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
                return ChainReport {
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
                };
            }
            heads.insert(event.stream_id.clone(), (event.stream_version, event.hash));
            events_checked += 1;
            after = event.global_position;
        }
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
    ChainReport {
        events_checked,
        streams_checked: heads.len() as u64,
        head_position,
        first_problem,
    }
}

/// Tampering needs a superuser who disables the immutability triggers; the chain still tells.
async fn tamper(db: &payledger_testdb::TestDatabase, statements: &[&str]) {
    let mut tx = db.owner_pool.begin().await.unwrap();
    sqlx::query("SET LOCAL session_replication_role = replica")
        .execute(&mut *tx)
        .await
        .unwrap();
    for statement in statements {
        sqlx::query(statement).execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
}

/// Checks the bounded walk against the reference with links pages of 1, 3 and 7 rows and the
/// default; returns the first problem.
async fn same_as_reference(pool: &PgPool) -> Option<AuditProblem> {
    let expected = reference(pool).await;
    for page_rows in [1, 3, 7] {
        let report = verify_all_paged(pool, page_rows, |_| {}).await.unwrap();
        assert_eq!(report, expected, "links pages of {page_rows} rows");
    }
    assert_eq!(verify_all(pool).await.unwrap(), expected);
    expected.first_problem
}

#[tokio::test]
async fn an_untouched_log_verifies_with_the_same_counts() {
    let (db, _store) = interleaved().await;
    assert_eq!(same_as_reference(&db.app_pool).await, None);
    let report = verify_all(&db.app_pool).await.unwrap();
    assert_eq!(
        (
            report.events_checked,
            report.streams_checked,
            report.head_position
        ),
        (20, 5, 20)
    );
}

#[tokio::test]
async fn each_kind_of_tampering_is_caught_where_the_single_walk_caught_it() {
    // (what is done, the position the single walk names, a word of its message)
    let cases: &[(&[&str], i64, &str)] = &[
        // Altered content.
        (
            &["UPDATE events SET payload = jsonb_set(payload, '{amountMinor}', '1') WHERE global_position = 7"],
            7,
            "altered",
        ),
        // An event removed in the middle of its stream: the global gap comes first.
        (&["DELETE FROM events WHERE global_position = 8"], 9, "missing"),
        // The first event of a stream removed.
        (&["DELETE FROM events WHERE global_position = 3"], 4, "missing"),
        // The tail removed: the sequencer tells.
        (&["DELETE FROM events WHERE global_position = 20"], 19, "removed"),
        // A version bumped with nothing missing in global order: only the stream's chain tells.
        (
            &["UPDATE events SET stream_version = 9 WHERE global_position = 18"],
            18,
            "stream version 9 follows 3",
        ),
        // Two events of one stream swapped in version (and so in the chain's order).
        (
            &[
                "UPDATE events SET stream_version = 100 WHERE global_position = 2",
                "UPDATE events SET stream_version = 1 WHERE global_position = 7",
                "UPDATE events SET stream_version = 2 WHERE global_position = 2",
            ],
            2,
            "stream version 2 follows 0",
        ),
        // A prev_hash pointing elsewhere.
        (
            &["UPDATE events SET prev_hash = (SELECT hash FROM events WHERE global_position = 1) WHERE global_position = 12"],
            12,
            "prev_hash",
        ),
        // A broken link after altered content: the earlier one is named.
        (
            &[
                "UPDATE events SET metadata = '{\"actor\":\"mallory\"}' WHERE global_position = 5",
                "UPDATE events SET stream_version = 9 WHERE global_position = 15",
            ],
            5,
            "altered",
        ),
        // Altered content after a broken link: the earlier one is named.
        (
            &[
                "UPDATE events SET stream_version = 9 WHERE global_position = 14",
                "UPDATE events SET metadata = '{\"actor\":\"mallory\"}' WHERE global_position = 16",
            ],
            14,
            "stream version 9 follows 2",
        ),
        // Both at one event: the broken link is named, as check_event orders them.
        (
            &["UPDATE events SET stream_version = 9, metadata = '{\"actor\":\"mallory\"}' WHERE global_position = 13"],
            13,
            "stream version 9 follows 2",
        ),
        // An event moved past the head: a gap where it was, a broken chain later in its stream.
        (
            &["UPDATE events SET global_position = 100 WHERE global_position = 6"],
            7,
            "missing",
        ),
        // An event moved to the end of the log: its stream's order breaks before any gap.
        (
            &[
                "DELETE FROM events WHERE global_position = 20",
                "UPDATE events SET global_position = 20 WHERE global_position = 10",
                "UPDATE events SET global_position = 10 WHERE global_position = 15",
            ],
            10,
            "stream version 3 follows 1",
        ),
    ];
    for (statements, position, word) in cases {
        let (db, _store) = interleaved().await;
        tamper(&db, statements).await;
        let problem = same_as_reference(&db.app_pool)
            .await
            .unwrap_or_else(|| panic!("{statements:?} went unnoticed"));
        assert_eq!(
            problem.global_position, *position,
            "{statements:?}: {problem:?}"
        );
        assert!(
            problem.problem.contains(word),
            "{statements:?}: {problem:?}"
        );
    }
}

#[tokio::test]
async fn progress_is_reported_for_both_passes() {
    let (db, _store) = interleaved().await;
    let mut seen = Vec::new();
    let report = verify_all_paged(&db.app_pool, 4, |p| seen.push(*p))
        .await
        .unwrap();
    assert_eq!(report.first_problem, None);
    let links: Vec<_> = seen
        .iter()
        .filter(|p| p.phase == AuditPhase::Links)
        .collect();
    let contents: Vec<_> = seen
        .iter()
        .filter(|p| p.phase == AuditPhase::Contents)
        .collect();
    // Five pages of four rows, then the contents pass (one page of the log).
    assert_eq!(
        links.iter().map(|p| p.events_done).collect::<Vec<_>>(),
        [4, 8, 12, 16, 20]
    );
    assert_eq!(
        contents.last().map(|p| (p.events_done, p.position)),
        Some((20, 20))
    );
    assert!(seen.iter().all(|p| p.head_position == 20));
    // Links come first.
    assert!(
        seen.iter()
            .position(|p| p.phase == AuditPhase::Contents)
            .unwrap()
            >= links.len()
    );
}
