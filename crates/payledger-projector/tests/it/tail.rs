//! The shared tail of the log under concurrent writers: every follower, however it is served
//! (one cached chunk, chunks joined, its own read), sees every position once, in order.

use payledger_projector::LogTail;
use payledger_store::{read_all, EventStore, ExpectedVersion, NewEvent, WriterConfig};
use payledger_testdb::TestDatabase;
use sqlx::{Connection, PgConnection};
use std::time::Duration;

const WRITERS: i64 = 4;
const APPENDS_EACH: i64 = 60;
const EVENTS_PER_APPEND: i64 = 2;
const TOTAL: i64 = WRITERS * APPENDS_EACH * EVENTS_PER_APPEND;

/// How a follower asks the tail for events.
#[derive(Clone, Copy)]
enum Reads {
    /// [`LogTail::read_after`], the one-window read. No follower in `serve` has used it since
    /// the joined reads; until it is removed, its guarantee is held here too.
    OneSlice,
    /// [`LogTail::read_joined_after`], as the process managers do.
    Joined,
    /// [`LogTail::read_joined_after`] made one slice, as the projections' runner does.
    JoinedOneSlice,
}

/// Follows the log through `tail` from position 0 to [`TOTAL`], pausing `pause_ms` after each
/// batch (a slow follower falls a few commits behind the others); returns every position and
/// event id it was handed, in order.
async fn follow(
    url: String,
    tail: LogTail,
    reads: Reads,
    limit: i64,
    pause_ms: u64,
) -> Vec<(i64, uuid::Uuid)> {
    let mut conn = PgConnection::connect(&url).await.unwrap();
    let mut seen = Vec::new();
    let mut position = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while position < TOTAL {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the follower stalled at {position}"
        );
        let batch: Vec<(i64, uuid::Uuid)> = match reads {
            Reads::OneSlice => tail
                .read_after(&mut conn, position, limit)
                .await
                .unwrap()
                .iter()
                .map(|e| (e.global_position, e.event_id))
                .collect(),
            Reads::JoinedOneSlice => tail
                .read_joined_after(&mut conn, position, limit)
                .await
                .unwrap()
                .into_one_slice()
                .iter()
                .map(|e| (e.global_position, e.event_id))
                .collect(),
            Reads::Joined => {
                let joined = tail
                    .read_joined_after(&mut conn, position, limit)
                    .await
                    .unwrap();
                assert_eq!(joined.iter().count(), joined.len());
                joined
                    .iter()
                    .map(|e| (e.global_position, e.event_id))
                    .collect()
            }
        };
        assert!(batch.len() as i64 <= limit, "a batch beyond the limit");
        for &(at, id) in &batch {
            assert_eq!(
                at,
                position + 1,
                "the follower skipped or repeated an event"
            );
            position = at;
            seen.push((at, id));
        }
        if batch.is_empty() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        } else if pause_ms > 0 {
            tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        }
    }
    seen
}

#[tokio::test]
async fn followers_sharing_the_tail_see_every_event_once_in_order_under_concurrent_writers() {
    let db = TestDatabase::fresh().await;
    let store = EventStore::new(db.app_pool.clone(), WriterConfig::default());
    // A small cache, so that chunks are dropped while slow followers still need them.
    let tail = LogTail::with_capacity(60);
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            let tail = tail.clone();
            tokio::spawn(async move {
                for n in 0..APPENDS_EACH {
                    let events = (0..EVENTS_PER_APPEND)
                        .map(|k| {
                            NewEvent::new(
                                "ThingHappened",
                                serde_json::json!({ "w": w, "n": n, "k": k }),
                                Default::default(),
                            )
                        })
                        .collect();
                    let appended = store
                        .append(
                            &format!("thing-{w}-{n}"),
                            ExpectedVersion::NoStream,
                            events,
                            false,
                        )
                        .await
                        .unwrap();
                    // What the commit notification does in `serve`; some commits are announced
                    // late or not at all, which must only change batch sizes.
                    if n % 3 != 0 {
                        tail.announce(appended.last_position);
                    }
                    if n % 7 == 0 {
                        tokio::time::sleep(Duration::from_millis(3)).await;
                    }
                }
            })
        })
        .collect();
    let followers: Vec<_> = [
        (Reads::OneSlice, 1_000, 0),
        (Reads::OneSlice, 7, 1),
        (Reads::JoinedOneSlice, 1_000, 1),
        (Reads::JoinedOneSlice, 9, 3),
        (Reads::Joined, 100, 0),
        (Reads::Joined, 100, 4),
        (Reads::Joined, 13, 2),
        (Reads::Joined, 5, 1),
    ]
    .into_iter()
    .map(|(reads, limit, pause_ms)| {
        tokio::spawn(follow(
            db.app_url.clone(),
            tail.clone(),
            reads,
            limit,
            pause_ms,
        ))
    })
    .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let mut conn = PgConnection::connect(&db.app_url).await.unwrap();
    let log: Vec<(i64, uuid::Uuid)> = read_all(&mut conn, 0, TOTAL)
        .await
        .unwrap()
        .iter()
        .map(|e| (e.global_position, e.event_id))
        .collect();
    assert_eq!(log.len() as i64, TOTAL);
    for follower in followers {
        assert_eq!(
            follower.await.unwrap(),
            log,
            "a follower saw the log as it is"
        );
    }
}

#[tokio::test]
async fn a_joined_read_reads_on_past_the_cache_only_when_more_was_announced() {
    let db = TestDatabase::fresh().await;
    let store = EventStore::new(db.app_pool.clone(), WriterConfig::default());
    let append = |n: i64| {
        let store = store.clone();
        async move {
            store
                .append(
                    &format!("thing-{n}"),
                    ExpectedVersion::NoStream,
                    vec![NewEvent::new(
                        "ThingHappened",
                        serde_json::json!({ "n": n }),
                        Default::default(),
                    )],
                    false,
                )
                .await
                .unwrap()
                .last_position
        }
    };
    let tail = LogTail::default();
    let mut conn = PgConnection::connect(&db.app_url).await.unwrap();
    for n in 1..=3 {
        append(n).await;
    }
    // The first reader reads 1..3 and keeps them.
    let first = tail.read_after(&mut conn, 0, 100).await.unwrap();
    assert_eq!(first.len(), 3);
    for n in 4..=5 {
        append(n).await;
    }
    // Not announced yet: a follower at 1 gets what the cache holds, without a query.
    let joined = tail.read_joined_after(&mut conn, 1, 100).await.unwrap();
    let positions: Vec<i64> = joined.iter().map(|e| e.global_position).collect();
    assert_eq!(positions, vec![2, 3]);
    // Announced: it reads on from the cached tail and keeps what it read for the others.
    tail.announce(5);
    let joined = tail.read_joined_after(&mut conn, 1, 100).await.unwrap();
    let positions: Vec<i64> = joined.iter().map(|e| e.global_position).collect();
    assert_eq!(positions, vec![2, 3, 4, 5]);
    // Another follower at the old tail is now served 4..5 from the cache: it needs no
    // connection that works.
    let mut closed = PgConnection::connect(&db.app_url).await.unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut closed)
        .await
        .unwrap();
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .execute(&db.owner_pool)
        .await
        .unwrap();
    let cached = tail.read_after(&mut closed, 3, 100).await.unwrap();
    let positions: Vec<i64> = cached.iter().map(|e| e.global_position).collect();
    assert_eq!(positions, vec![4, 5]);
    // A limit cuts a joined batch across chunks.
    let joined = tail.read_joined_after(&mut conn, 0, 4).await.unwrap();
    let positions: Vec<i64> = joined.iter().map(|e| e.global_position).collect();
    assert_eq!(positions, vec![1, 2, 3, 4]);
}
