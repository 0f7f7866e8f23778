//! The event store against a real PostgreSQL: appends, ordering, immutability, hash chains.

mod append;
mod batch;
mod chain;
mod chain_bounded;
mod checkpoint;
mod immutability;
mod ordering;

use payledger_store::{EventMetadata, EventStore, NewEvent, WriterConfig};
use payledger_testdb::TestDatabase;
use serde_json::json;

pub async fn store() -> (TestDatabase, EventStore) {
    let db = TestDatabase::fresh().await;
    let store = EventStore::new(db.app_pool.clone(), WriterConfig::default());
    (db, store)
}

pub fn event(kind: &str, n: i64) -> NewEvent {
    NewEvent::new(
        kind,
        json!({ "n": n, "amountMinor": 1000 * n }),
        EventMetadata {
            actor: Some("test".into()),
            ..EventMetadata::default()
        },
    )
}
