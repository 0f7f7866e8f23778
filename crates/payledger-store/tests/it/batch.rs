//! `append_events` called directly with a batch of commands, as the writer does under load: the
//! writer's batches depend on timing, so these pin down what one call answers for each command.

use crate::{event, store};
use chrono::{DateTime, Utc};
use payledger_store::audit::verify_all;
use payledger_store::chain::{event_hash, HashedFields, GENESIS_HASH};
use payledger_store::{ExpectedVersion, NewEvent};
use sqlx::{PgPool, Row};

struct Command {
    stream: &'static str,
    expected_version: i64,
    prev_hash: [u8; 32],
    check_ids: bool,
    events: Vec<NewEvent>,
}

#[derive(Debug, PartialEq)]
struct Answer {
    outcome: String,
    actual_version: i64,
    first_position: Option<i64>,
}

fn answer(outcome: &str, actual_version: i64, first_position: Option<i64>) -> Answer {
    Answer {
        outcome: outcome.to_string(),
        actual_version,
        first_position,
    }
}

fn metadata(event: &NewEvent) -> serde_json::Value {
    serde_json::to_value(&event.metadata).unwrap()
}

/// Hashes chained from the command's expected head, as the writer computes them.
fn hashes(command: &Command) -> Vec<Vec<u8>> {
    let mut previous = command.prev_hash;
    let mut hashes = Vec::new();
    for (offset, event) in command.events.iter().enumerate() {
        let metadata = metadata(event);
        previous = event_hash(&HashedFields {
            prev_hash: &previous,
            stream_id: command.stream,
            stream_version: command.expected_version + offset as i64 + 1,
            event_id: &event.event_id,
            event_type: &event.event_type,
            schema_version: event.schema_version,
            payload: &event.payload,
            metadata: &metadata,
        });
        hashes.push(previous.to_vec());
    }
    hashes
}

/// One call of `append_events` for `commands`, in the order given, as the application role.
async fn append_batch(
    pool: &PgPool,
    commands: &[Command],
) -> Result<(Vec<Answer>, DateTime<Utc>), sqlx::Error> {
    let mut event_commands: Vec<i32> = Vec::new();
    let mut event_ids = Vec::new();
    let mut event_types = Vec::new();
    let mut schema_versions = Vec::new();
    let mut payloads = Vec::new();
    let mut metadatas = Vec::new();
    let mut event_hashes = Vec::new();
    for (index, command) in commands.iter().enumerate() {
        for (event, hash) in command.events.iter().zip(hashes(command)) {
            event_commands.push(index as i32 + 1);
            event_ids.push(event.event_id);
            event_types.push(event.event_type.clone());
            schema_versions.push(event.schema_version);
            payloads.push(event.payload.clone());
            metadatas.push(metadata(event));
            event_hashes.push(hash);
        }
    }
    let rows = sqlx::query(
        "SELECT command_index, outcome, actual_version, first_position, recorded_at \
         FROM append_events($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(commands.iter().map(|c| c.stream).collect::<Vec<_>>())
    .bind(
        commands
            .iter()
            .map(|c| c.expected_version)
            .collect::<Vec<_>>(),
    )
    .bind(
        commands
            .iter()
            .map(|c| c.prev_hash.to_vec())
            .collect::<Vec<_>>(),
    )
    .bind(commands.iter().map(|c| c.check_ids).collect::<Vec<_>>())
    .bind(&event_commands)
    .bind(&event_ids)
    .bind(&event_types)
    .bind(&schema_versions)
    .bind(&payloads)
    .bind(&metadatas)
    .bind(&event_hashes)
    .fetch_all(pool)
    .await?;
    let indexes: Vec<i32> = rows.iter().map(|r| r.get("command_index")).collect();
    assert_eq!(indexes, (1..=commands.len() as i32).collect::<Vec<_>>());
    let recorded_at: DateTime<Utc> = rows[0].get("recorded_at");
    assert!(rows
        .iter()
        .all(|r| r.get::<DateTime<Utc>, _>("recorded_at") == recorded_at));
    let answers = rows
        .iter()
        .map(|r| Answer {
            outcome: r.get("outcome"),
            actual_version: r.get("actual_version"),
            first_position: r.get("first_position"),
        })
        .collect();
    Ok((answers, recorded_at))
}

#[tokio::test]
async fn each_command_of_a_batch_gets_its_own_outcome() {
    let (db, store) = store().await;
    let replayed = vec![event("Replayed", 1), event("Replayed", 2)];
    store
        .append(
            "replayed",
            ExpectedVersion::NoStream,
            replayed.clone(),
            false,
        )
        .await
        .unwrap(); // positions 1-2
    let reused = vec![event("Reused", 3)];
    let reused_head = store
        .append("reused", ExpectedVersion::NoStream, reused.clone(), false)
        .await
        .unwrap(); // position 3
    for (n, stream) in ["moved", "rehashed"].into_iter().enumerate() {
        store
            .append(
                stream,
                ExpectedVersion::NoStream,
                vec![event("A", n as i64)],
                false,
            )
            .await
            .unwrap(); // positions 4, 5
    }
    let mut altered = reused.clone();
    altered[0].payload = serde_json::json!({ "n": 99 });

    let batch = [
        Command {
            stream: "fresh-a",
            expected_version: 0,
            prev_hash: GENESIS_HASH,
            check_ids: true,
            events: vec![event("New", 10)],
        },
        // Its expected version is stale, but the ids it was written with answer first.
        Command {
            stream: "replayed",
            expected_version: 0,
            prev_hash: GENESIS_HASH,
            check_ids: true,
            events: replayed,
        },
        Command {
            stream: "moved",
            expected_version: 0,
            prev_hash: GENESIS_HASH,
            check_ids: false,
            events: vec![event("New", 11)],
        },
        Command {
            stream: "reused",
            expected_version: 1,
            prev_hash: reused_head.head_hash,
            check_ids: true,
            events: altered,
        },
        // The right version with another head hash would fork the chain.
        Command {
            stream: "rehashed",
            expected_version: 1,
            prev_hash: [7; 32],
            check_ids: true,
            events: vec![event("New", 12)],
        },
        Command {
            stream: "fresh-b",
            expected_version: 0,
            prev_hash: GENESIS_HASH,
            check_ids: false,
            events: vec![event("New", 13), event("New", 14)],
        },
    ];
    let (answers, recorded_at) = append_batch(&db.app_pool, &batch).await.unwrap();
    assert_eq!(
        answers,
        vec![
            answer("appended", 1, Some(6)),
            answer("duplicate", 2, Some(1)),
            answer("conflict", 1, None),
            answer("id_conflict", 1, Some(3)),
            answer("conflict", 1, None),
            answer("appended", 2, Some(7)),
        ]
    );

    assert_eq!(store.head_position().await.unwrap(), 8);
    let written = store.read_all(5, 100).await.unwrap();
    let placed: Vec<(i64, &str, i64)> = written
        .iter()
        .map(|e| (e.global_position, e.stream_id.as_str(), e.stream_version))
        .collect();
    assert_eq!(
        placed,
        vec![(6, "fresh-a", 1), (7, "fresh-b", 1), (8, "fresh-b", 2)]
    );
    assert!(written.iter().all(|e| e.recorded_at == recorded_at));
    let report = verify_all(&db.app_pool).await.unwrap();
    assert_eq!(report.first_problem, None);
    assert_eq!(report.events_checked, 8);
}

#[tokio::test]
async fn a_batch_that_appends_nothing_takes_no_position() {
    let (db, store) = store().await;
    let original = vec![event("A", 1)];
    store
        .append("s", ExpectedVersion::NoStream, original.clone(), false)
        .await
        .unwrap();
    let batch = [
        Command {
            stream: "s",
            expected_version: 0,
            prev_hash: GENESIS_HASH,
            check_ids: true,
            events: original,
        },
        Command {
            stream: "t",
            expected_version: 3,
            prev_hash: GENESIS_HASH,
            check_ids: false,
            events: vec![event("B", 2)],
        },
    ];
    let (answers, _) = append_batch(&db.app_pool, &batch).await.unwrap();
    assert_eq!(
        answers,
        vec![answer("duplicate", 1, Some(1)), answer("conflict", 0, None)]
    );
    assert_eq!(store.head_position().await.unwrap(), 1);
    let next = store
        .append("t", ExpectedVersion::NoStream, vec![event("C", 3)], false)
        .await
        .unwrap();
    assert_eq!(next.first_position, 2);
}

#[tokio::test]
async fn a_malformed_batch_is_refused_whole() {
    let (db, store) = store().await;
    let command = |stream: &'static str, events: Vec<NewEvent>| Command {
        stream,
        expected_version: 0,
        prev_hash: GENESIS_HASH,
        check_ids: true,
        events,
    };
    let empty_second = [
        command("a", vec![event("A", 1)]),
        command("b", vec![]),
        command("c", vec![]),
    ];
    let error = append_batch(&db.app_pool, &empty_second)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("command 2 has no events"), "{error}");

    // Events must come grouped by command, in command order.
    let error = sqlx::query(
        "SELECT * FROM append_events(ARRAY['a', 'b'], ARRAY[0, 0]::bigint[], \
         ARRAY[decode(repeat('00', 32), 'hex'), decode(repeat('00', 32), 'hex')], \
         ARRAY[false, false], ARRAY[2, 1], ARRAY[gen_random_uuid(), gen_random_uuid()], \
         ARRAY['A', 'B'], ARRAY[1, 1], ARRAY['{}', '{}']::jsonb[], ARRAY['{}', '{}']::jsonb[], \
         ARRAY[decode(repeat('ab', 32), 'hex'), decode(repeat('cd', 32), 'hex')])",
    )
    .fetch_all(&db.app_pool)
    .await
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("events must be grouped by command in order"),
        "{error}"
    );
    assert_eq!(store.head_position().await.unwrap(), 0);
}
