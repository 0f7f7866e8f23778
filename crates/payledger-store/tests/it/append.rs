use crate::{event, store};
use payledger_store::{AppendError, ExpectedVersion};
use std::collections::HashSet;

#[tokio::test]
async fn a_new_stream_starts_at_version_one_and_grows_by_each_append() {
    let (_db, store) = store().await;
    let first = store
        .append(
            "order-a",
            ExpectedVersion::NoStream,
            vec![event("A", 1), event("B", 2)],
            false,
        )
        .await
        .unwrap();
    assert_eq!(first.stream_version, 2);
    assert_eq!((first.first_position, first.last_position), (1, 2));
    let second = store
        .append(
            "order-a",
            ExpectedVersion::Exact(2),
            vec![event("C", 3)],
            false,
        )
        .await
        .unwrap();
    assert_eq!(second.stream_version, 3);
    let read = store.read_whole_stream("order-a").await.unwrap();
    let versions: Vec<i64> = read.iter().map(|e| e.stream_version).collect();
    assert_eq!(versions, vec![1, 2, 3]);
    assert_eq!(read[2].payload["n"], 3);
}

#[tokio::test]
async fn a_stale_expected_version_is_a_typed_conflict_and_nothing_is_written() {
    let (_db, store) = store().await;
    store
        .append("s", ExpectedVersion::NoStream, vec![event("A", 1)], false)
        .await
        .unwrap();
    let conflict = store
        .append("s", ExpectedVersion::NoStream, vec![event("B", 2)], false)
        .await
        .unwrap_err();
    assert!(matches!(
        conflict,
        AppendError::WrongExpectedVersion { actual: 1, .. }
    ));
    let stale = store
        .append("s", ExpectedVersion::Exact(5), vec![event("B", 2)], false)
        .await
        .unwrap_err();
    assert!(matches!(
        stale,
        AppendError::WrongExpectedVersion { actual: 1, .. }
    ));
    assert_eq!(store.read_whole_stream("s").await.unwrap().len(), 1);
    assert_eq!(store.head_position().await.unwrap(), 1);
}

#[tokio::test]
async fn any_appends_wherever_the_stream_is() {
    let (_db, store) = store().await;
    for n in 1..=3 {
        let outcome = store
            .append("audit", ExpectedVersion::Any, vec![event("X", n)], false)
            .await
            .unwrap();
        assert_eq!(outcome.stream_version, n);
    }
}

#[tokio::test]
async fn re_appending_the_same_event_ids_returns_the_original_outcome() {
    let (_db, store) = store().await;
    let events = vec![event("A", 1), event("B", 2)];
    let original = store
        .append("s", ExpectedVersion::NoStream, events.clone(), true)
        .await
        .unwrap();
    let again = store
        .append("s", ExpectedVersion::NoStream, events.clone(), true)
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.first_position, original.first_position);
    assert_eq!(again.stream_version, original.stream_version);
    assert_eq!(store.read_whole_stream("s").await.unwrap().len(), 2);

    let mut other_metadata = events.clone();
    other_metadata[0].metadata.actor = Some("mallory".into());
    assert!(matches!(
        store
            .append("s", ExpectedVersion::Exact(2), other_metadata, true)
            .await,
        Err(AppendError::EventIdConflict)
    ));

    let mut altered = events;
    altered[1].payload = serde_json::json!({"n": 99});
    let conflict = store
        .append("s", ExpectedVersion::Exact(2), altered, true)
        .await
        .unwrap_err();
    assert!(matches!(conflict, AppendError::EventIdConflict));
}

#[tokio::test]
async fn invalid_appends_are_refused_before_reaching_the_database() {
    let (_db, store) = store().await;
    let mut float = event("A", 1);
    float.payload = serde_json::json!({"amount": 10.5});
    assert!(matches!(
        store
            .append("s", ExpectedVersion::Any, vec![float], false)
            .await,
        Err(AppendError::Invalid(_))
    ));
    let mut nul = event("A", 1);
    nul.payload = serde_json::json!({"name": "a\u{0}b"});
    assert!(matches!(
        store
            .append("s", ExpectedVersion::Any, vec![nul], false)
            .await,
        Err(AppendError::Invalid(_))
    ));
    assert!(matches!(
        store
            .append(
                "bad\nstream",
                ExpectedVersion::Any,
                vec![event("A", 1)],
                false
            )
            .await,
        Err(AppendError::Invalid(_))
    ));
    assert!(matches!(
        store.append("s", ExpectedVersion::Any, vec![], false).await,
        Err(AppendError::Invalid(_))
    ));
    assert_eq!(store.head_position().await.unwrap(), 0);
}

/// Many commands at once share commits, and each still gets its own version check: of 50
/// concurrent appends expecting version 1 of one stream exactly one wins, while 200 appends to
/// distinct streams all succeed.
#[tokio::test]
async fn concurrent_commands_share_commits_but_keep_their_own_version_checks() {
    let (_db, store) = store().await;
    store
        .append("hot", ExpectedVersion::NoStream, vec![event("A", 0)], false)
        .await
        .unwrap();
    let hot = (0..50).map(|n| {
        let store = store.clone();
        async move {
            store
                .append("hot", ExpectedVersion::Exact(1), vec![event("B", n)], false)
                .await
        }
    });
    let cold = (0..200).map(|n| {
        let store = store.clone();
        async move {
            store
                .append(
                    &format!("cold-{n}"),
                    ExpectedVersion::NoStream,
                    vec![event("C", n)],
                    false,
                )
                .await
        }
    });
    let (hot, cold) = tokio::join!(
        futures::future::join_all(hot),
        futures::future::join_all(cold)
    );
    assert_eq!(hot.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(hot
        .iter()
        .filter_map(|r| r.as_ref().err())
        .all(|e| matches!(e, AppendError::WrongExpectedVersion { .. })));
    assert!(cold.iter().all(|r| r.is_ok()));
    let positions: HashSet<i64> = cold
        .iter()
        .map(|r| r.as_ref().unwrap().first_position)
        .collect();
    assert_eq!(positions.len(), 200);
    assert_eq!(store.head_position().await.unwrap(), 202);
    let all = store.read_all(0, 1000).await.unwrap();
    let expected: Vec<i64> = (1..=202).collect();
    assert_eq!(
        all.iter().map(|e| e.global_position).collect::<Vec<_>>(),
        expected
    );
}
