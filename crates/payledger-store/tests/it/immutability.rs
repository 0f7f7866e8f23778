//! Events cannot be changed, by the application or by the owner.

use crate::{event, store};
use payledger_store::ExpectedVersion;

#[tokio::test]
async fn the_application_role_cannot_update_delete_truncate_or_insert_directly() {
    let (db, store) = store().await;
    store
        .append("s", ExpectedVersion::NoStream, vec![event("A", 1)], false)
        .await
        .unwrap();
    for statement in [
        "UPDATE events SET payload = '{}'",
        "DELETE FROM events",
        "TRUNCATE events",
        "INSERT INTO events SELECT * FROM events",
        "UPDATE event_sequencer SET last_position = 0",
    ] {
        let error = sqlx::query(statement)
            .execute(&db.app_pool)
            .await
            .unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("permission denied"),
            "{statement}: {message}"
        );
    }
}

#[tokio::test]
async fn even_the_owner_cannot_update_delete_or_truncate_events() {
    let (db, store) = store().await;
    store
        .append("s", ExpectedVersion::NoStream, vec![event("A", 1)], false)
        .await
        .unwrap();
    for statement in [
        "UPDATE events SET payload = '{}'",
        "DELETE FROM events",
        "TRUNCATE events",
    ] {
        let error = sqlx::query(statement)
            .execute(&db.owner_pool)
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("events are immutable"),
            "{statement}: {error}"
        );
    }
    assert_eq!(store.read_whole_stream("s").await.unwrap().len(), 1);
}

/// The append-only log is frozen as autovacuum goes (migration 0080), not in one burst at
/// wraparound time (docs/performance.md: 67 s and 4.3 GB of WAL at 10 M events).
#[tokio::test]
async fn autovacuum_freezes_the_log_as_it_goes() {
    let (db, _store) = store().await;
    let options: Option<Vec<String>> =
        sqlx::query_scalar("SELECT reloptions FROM pg_class WHERE oid = 'events'::regclass")
            .fetch_one(&db.owner_pool)
            .await
            .unwrap();
    assert_eq!(options.unwrap_or_default(), ["autovacuum_freeze_min_age=0"]);
}
