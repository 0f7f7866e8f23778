//! A reader of the global log never skips an event that commits late.

use crate::{event, store};
use payledger_store::{ExpectedVersion, RecordedEvent};
use sqlx::{Connection, PgConnection};
use std::time::Duration;

/// Starts an append in a transaction that stays open: it holds position(s) but has not committed.
async fn open_append(url: &str, stream: &str) -> PgConnection {
    let mut conn = PgConnection::connect(url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
    sqlx::query(
        "SELECT * FROM append_events(ARRAY[$1], ARRAY[0::bigint], ARRAY[decode(repeat('00', 32), 'hex')], \
         ARRAY[false], ARRAY[1], ARRAY[gen_random_uuid()], ARRAY['Late'], ARRAY[1], \
         ARRAY['{}'::jsonb], ARRAY['{}'::jsonb], ARRAY[decode(repeat('ab', 32), 'hex')])",
    )
    .bind(stream)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    conn
}

#[tokio::test]
async fn an_event_that_commits_after_a_later_writer_started_is_not_skipped() {
    let (db, store) = store().await;
    // Transaction A takes the next position and does not commit yet.
    let mut slow = open_append(&db.app_url, "order-slow").await;

    // Writer B starts while A is open. It cannot take a position until A finishes.
    let fast_store = store.clone();
    let fast = tokio::spawn(async move {
        fast_store
            .append(
                "order-fast",
                ExpectedVersion::NoStream,
                vec![event("Fast", 1)],
                false,
            )
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !fast.is_finished(),
        "B must wait for A: positions are handed out in commit order"
    );

    // A reader following the log sees nothing yet, so its checkpoint cannot pass A.
    let seen = store.read_all(0, 100).await.unwrap();
    assert!(seen.is_empty(), "nothing is committed, nothing is visible");

    sqlx::query("COMMIT").execute(&mut slow).await.unwrap();
    let b = fast.await.unwrap().unwrap();
    let log = store.read_all(0, 100).await.unwrap();
    let order: Vec<(&str, i64)> = log
        .iter()
        .map(|e| (e.stream_id.as_str(), e.global_position))
        .collect();
    assert_eq!(order, vec![("order-slow", 1), ("order-fast", 2)]);
    assert_eq!(b.first_position, 2);
}

#[tokio::test]
async fn a_rolled_back_append_leaves_no_gap() {
    let (db, store) = store().await;
    let mut aborted = open_append(&db.app_url, "order-aborted").await;
    let later_store = store.clone();
    let later = tokio::spawn(async move {
        later_store
            .append(
                "order-later",
                ExpectedVersion::NoStream,
                vec![event("Later", 1)],
                false,
            )
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    sqlx::query("ROLLBACK").execute(&mut aborted).await.unwrap();
    assert_eq!(later.await.unwrap().unwrap().first_position, 1);
    assert_eq!(store.head_position().await.unwrap(), 1);
}

/// A tailing reader under concurrent writers sees every position exactly once, in order.
#[tokio::test]
async fn a_tailing_reader_sees_a_contiguous_log_under_concurrent_writers() {
    let (_db, store) = store().await;
    const WRITERS: i64 = 8;
    const APPENDS_EACH: i64 = 40;
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for n in 0..APPENDS_EACH {
                    store
                        .append(
                            &format!("w{w}-{n}"),
                            ExpectedVersion::NoStream,
                            vec![event("E", n), event("F", n)],
                            false,
                        )
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let total = WRITERS * APPENDS_EACH * 2;
    let mut seen: Vec<RecordedEvent> = Vec::new();
    let mut checkpoint = 0;
    while (seen.len() as i64) < total {
        let page = store.read_all(checkpoint, 50).await.unwrap();
        for e in &page {
            assert_eq!(
                e.global_position,
                checkpoint + 1,
                "the reader skipped or repeated an event"
            );
            checkpoint = e.global_position;
        }
        seen.extend(page);
        tokio::task::yield_now().await;
    }
    for w in writers {
        w.await.unwrap();
    }
    assert_eq!(store.head_position().await.unwrap(), total);
}
