//! Each stream is a hash chain; `verify_all` finds the first altered, removed or reordered event.

use crate::{event, store};
use payledger_store::audit::verify_all;
use payledger_store::chain::GENESIS_HASH;
use payledger_store::ExpectedVersion;

async fn filled() -> (payledger_testdb::TestDatabase, payledger_store::EventStore) {
    let (db, store) = store().await;
    for s in 0..3 {
        let stream = format!("order-{s}");
        store
            .append(
                &stream,
                ExpectedVersion::NoStream,
                vec![event("A", s), event("B", s)],
                false,
            )
            .await
            .unwrap();
        store
            .append(
                &stream,
                ExpectedVersion::Exact(2),
                vec![event("C", s)],
                false,
            )
            .await
            .unwrap();
    }
    (db, store)
}

#[tokio::test]
async fn stored_events_chain_from_the_genesis_hash() {
    let (db, store) = filled().await;
    let events = store.read_whole_stream("order-1").await.unwrap();
    assert_eq!(events[0].prev_hash, GENESIS_HASH);
    for pair in events.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash);
    }
    for e in &events {
        assert_eq!(e.recompute_hash(), e.hash);
    }
    let report = verify_all(&db.app_pool).await.unwrap();
    assert_eq!(report.first_problem, None);
    assert_eq!((report.events_checked, report.streams_checked), (9, 3));
}

/// Tampering needs a superuser who disables the immutability triggers; the chain still tells.
async fn tamper(db: &payledger_testdb::TestDatabase, statement: &str) {
    let mut tx = db.owner_pool.begin().await.unwrap();
    sqlx::query("SET LOCAL session_replication_role = replica")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(statement).execute(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn an_altered_payload_is_named_by_position() {
    let (db, _store) = filled().await;
    tamper(&db, "UPDATE events SET payload = jsonb_set(payload, '{amountMinor}', '1') WHERE global_position = 5").await;
    let problem = verify_all(&db.app_pool)
        .await
        .unwrap()
        .first_problem
        .unwrap();
    assert_eq!(problem.global_position, 5);
    assert!(problem.problem.contains("altered"), "{}", problem.problem);
}

#[tokio::test]
async fn a_removed_event_breaks_the_log() {
    let (db, _store) = filled().await;
    tamper(&db, "DELETE FROM events WHERE global_position = 4").await;
    let problem = verify_all(&db.app_pool)
        .await
        .unwrap()
        .first_problem
        .unwrap();
    assert_eq!(problem.global_position, 5);
    assert!(problem.problem.contains("missing"), "{}", problem.problem);
}

#[tokio::test]
async fn a_truncated_tail_is_detected_against_the_sequencer() {
    let (db, _store) = filled().await;
    tamper(&db, "DELETE FROM events WHERE global_position = 9").await;
    let problem = verify_all(&db.app_pool)
        .await
        .unwrap()
        .first_problem
        .unwrap();
    assert!(problem.problem.contains("removed"), "{}", problem.problem);
}

#[tokio::test]
async fn a_rewritten_stream_with_recomputed_positions_still_fails_the_chain() {
    let (db, _store) = filled().await;
    // Swap the metadata of two events: each hash no longer matches its content.
    tamper(
        &db,
        "UPDATE events SET metadata = '{\"actor\":\"mallory\"}' WHERE global_position = 7",
    )
    .await;
    let problem = verify_all(&db.app_pool)
        .await
        .unwrap()
        .first_problem
        .unwrap();
    assert_eq!(problem.global_position, 7);
}
