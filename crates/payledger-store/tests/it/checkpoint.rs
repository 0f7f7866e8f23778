//! Signed checkpoints catch what the per-stream chains cannot: a reordering of streams in the
//! global log and a rewrite of a stream's newest event with its hash recomputed.

use crate::{event, store};
use chrono::Utc;
use payledger_store::chain::{event_hash, HashedFields};
use payledger_store::checkpoint::{
    last_checkpoint, list_checkpoints, seal, verify_against, Checkpoint, CheckpointSigner,
};
use payledger_store::{audit::verify_all, EventMetadata, ExpectedVersion, NewEvent};
use payledger_testdb::TestDatabase;
use serde_json::json;

fn signer() -> CheckpointSigner {
    CheckpointSigner::from_seed(&[42u8; 32])
}

/// Three order streams interleaved (positions 1..=6), then two admin actions by `admin:alice`
/// (7, 8), sealed at 8.
async fn sealed() -> (TestDatabase, Vec<Checkpoint>) {
    let (db, store) = store().await;
    for round in 0..2 {
        for s in 0..3 {
            let expected = if round == 0 {
                ExpectedVersion::NoStream
            } else {
                ExpectedVersion::Exact(1)
            };
            store
                .append(&format!("order-{s}"), expected, vec![event("A", s)], false)
                .await
                .unwrap();
        }
    }
    let first = seal(&db.app_pool, &signer(), Utc::now())
        .await
        .unwrap()
        .expect("six events to seal");
    assert_eq!(first.global_position, 6);
    for n in 0..2 {
        let action = NewEvent::new(
            "AdminActionRecorded",
            json!({"path": format!("/v1/admin/switches/payments/{n}")}),
            EventMetadata {
                actor: Some("admin:alice".into()),
                ..EventMetadata::default()
            },
        );
        store
            .append("audit-admin", ExpectedVersion::Any, vec![action], false)
            .await
            .unwrap();
    }
    let second = seal(&db.app_pool, &signer(), Utc::now())
        .await
        .unwrap()
        .expect("two more events to seal");
    assert_eq!((second.sequence, second.global_position), (2, 8));
    assert_eq!(second.previous_digest, first.digest);
    assert_eq!(
        seal(&db.app_pool, &signer(), Utc::now()).await.unwrap(),
        None,
        "nothing new: no checkpoint"
    );
    let saved = list_checkpoints(&db.app_pool, 0, 100).await.unwrap();
    assert_eq!(saved, vec![first, second]);
    (db, saved)
}

/// Tampering needs a superuser who disables the immutability triggers.
async fn tamper(db: &TestDatabase, statements: &[&str]) {
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

/// Rewrites the event at `position` with `edit` and recomputes its hash, as someone who knows
/// the public recipe would: the stream's chain still verifies.
async fn rewrite_with_recomputed_hash(
    db: &TestDatabase,
    position: i64,
    edit: impl Fn(&mut serde_json::Value, &mut serde_json::Value),
) {
    let mut events = payledger_store::events_at(&db.app_pool, &[position])
        .await
        .unwrap();
    let mut event = events.remove(&position).unwrap();
    edit(&mut event.payload, &mut event.metadata);
    let hash = event_hash(&HashedFields {
        prev_hash: &event.prev_hash,
        stream_id: &event.stream_id,
        stream_version: event.stream_version,
        event_id: &event.event_id,
        event_type: &event.event_type,
        schema_version: event.schema_version,
        payload: &event.payload,
        metadata: &event.metadata,
    });
    let mut tx = db.owner_pool.begin().await.unwrap();
    sqlx::query("SET LOCAL session_replication_role = replica")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE events SET payload = $1, metadata = $2, hash = $3 WHERE global_position = $4",
    )
    .bind(&event.payload)
    .bind(&event.metadata)
    .bind(&hash[..])
    .bind(position)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

fn key() -> ed25519_dalek::VerifyingKey {
    signer().verifying_key()
}

#[tokio::test]
async fn an_untouched_log_agrees_with_its_checkpoints() {
    let (db, saved) = sealed().await;
    let report = verify_against(&db.app_pool, &saved, &key()).await.unwrap();
    assert_eq!(report.first_problem, None);
    assert_eq!((report.checkpoints_checked, report.verified_up_to), (2, 8));
}

#[tokio::test]
async fn two_events_of_different_streams_swapped_are_caught() {
    let (db, saved) = sealed().await;
    // Positions 2 (order-1 v1) and 3 (order-2 v1) change places; every chain still verifies.
    tamper(
        &db,
        &[
            "UPDATE events SET global_position = 1000 WHERE global_position = 2",
            "UPDATE events SET global_position = 2 WHERE global_position = 3",
            "UPDATE events SET global_position = 3 WHERE global_position = 1000",
        ],
    )
    .await;
    assert_eq!(verify_all(&db.app_pool).await.unwrap().first_problem, None);
    let problem = verify_against(&db.app_pool, &saved, &key())
        .await
        .unwrap()
        .first_problem
        .expect("the reordering is caught");
    assert_eq!(
        (
            problem.sequence,
            problem.after_position,
            problem.global_position
        ),
        (1, 0, 6)
    );
    assert!(problem.problem.contains("reordered"), "{}", problem.problem);
}

#[tokio::test]
async fn the_newest_event_of_a_stream_rewritten_with_its_hash_recomputed_is_caught() {
    let (db, saved) = sealed().await;
    // order-2's newest event (version 2, position 6) gets another amount.
    rewrite_with_recomputed_hash(&db, 6, |payload, _| {
        payload["amountMinor"] = json!(1);
    })
    .await;
    assert_eq!(verify_all(&db.app_pool).await.unwrap().first_problem, None);
    let problem = verify_against(&db.app_pool, &saved, &key())
        .await
        .unwrap()
        .first_problem
        .expect("the rewrite is caught");
    assert_eq!((problem.sequence, problem.global_position), (1, 6));
}

#[tokio::test]
async fn the_last_admin_action_reattributed_is_caught() {
    let (db, saved) = sealed().await;
    rewrite_with_recomputed_hash(&db, 8, |_, metadata| {
        metadata["actor"] = json!("admin:mallory");
    })
    .await;
    assert_eq!(verify_all(&db.app_pool).await.unwrap().first_problem, None);
    let problem = verify_against(&db.app_pool, &saved, &key())
        .await
        .unwrap()
        .first_problem
        .expect("the re-attribution is caught");
    // The first checkpoint still holds; the second names the range (6, 8].
    assert_eq!(
        (
            problem.sequence,
            problem.after_position,
            problem.global_position
        ),
        (2, 6, 8)
    );
}

#[tokio::test]
async fn a_removed_tail_is_caught_even_with_the_sequencer_lowered() {
    let (db, saved) = sealed().await;
    tamper(
        &db,
        &[
            "DELETE FROM events WHERE global_position = 8",
            "UPDATE event_sequencer SET last_position = 7",
        ],
    )
    .await;
    assert_eq!(verify_all(&db.app_pool).await.unwrap().first_problem, None);
    let problem = verify_against(&db.app_pool, &saved, &key())
        .await
        .unwrap()
        .first_problem
        .unwrap();
    assert_eq!(problem.sequence, 2);
    assert!(problem.problem.contains("removed"), "{}", problem.problem);
}

#[tokio::test]
async fn a_checkpoint_with_a_bad_signature_is_refused() {
    let (db, mut saved) = sealed().await;
    saved[1].signature[10] ^= 0x40;
    let problem = verify_against(&db.app_pool, &saved, &key())
        .await
        .unwrap()
        .first_problem
        .unwrap();
    assert_eq!(problem.sequence, 2);
    assert!(problem.refused);
    assert!(problem.problem.contains("refused"), "{}", problem.problem);
    assert!(problem.problem.contains("signature"), "{}", problem.problem);

    // A whole copy re-signed with another key is refused against the pinned key.
    let (_, original) = sealed().await;
    let forger = CheckpointSigner::from_seed(&[1u8; 32]);
    let forged = forger.sign(None, 6, original[0].log_digest, Utc::now());
    let problem = verify_against(&db.app_pool, &[forged], &key())
        .await
        .unwrap()
        .first_problem
        .unwrap();
    assert!(
        problem.problem.contains("expected key"),
        "{}",
        problem.problem
    );
}

#[tokio::test]
async fn checkpoints_are_immutable_and_the_app_role_cannot_change_them() {
    let (db, _) = sealed().await;
    for pool in [&db.app_pool, &db.owner_pool] {
        let update = sqlx::query("UPDATE audit_checkpoints SET global_position = 7")
            .execute(pool)
            .await;
        assert!(update.is_err(), "an update is refused");
        let delete = sqlx::query("DELETE FROM audit_checkpoints")
            .execute(pool)
            .await;
        assert!(delete.is_err(), "a delete is refused");
    }
    assert_eq!(
        last_checkpoint(&db.app_pool)
            .await
            .unwrap()
            .unwrap()
            .global_position,
        8
    );
}

#[tokio::test]
async fn every_event_has_an_inclusion_proof_in_its_checkpoint_and_a_rewrite_breaks_it() {
    use payledger_store::checkpoint::{inclusion_proof, ProofError};
    use payledger_store::merkle::{leaf_hash, root_from_path};
    let (db, saved) = sealed().await;
    for checkpoint in &saved {
        assert!(checkpoint.events_root.is_some(), "sealed as version 2");
        assert!(checkpoint
            .signed_bytes()
            .starts_with("payledger-checkpoint-v2\n"));
        assert_eq!(checkpoint.check(&key()), Ok(()));
    }
    for position in 1..=8 {
        let proof = inclusion_proof(&db.app_pool, position).await.unwrap();
        let checkpoint = &saved[if position <= 6 { 0 } else { 1 }];
        assert_eq!(&proof.checkpoint, checkpoint, "position {position}");
        let (index, size) = if position <= 6 {
            (position - 1, 6)
        } else {
            (position - 7, 2)
        };
        assert_eq!(
            (proof.leaf_index, proof.tree_size),
            (index as u64, size as u64)
        );
        let hash: [u8; 32] = hex::decode(&proof.hash).unwrap().try_into().unwrap();
        let path: Vec<[u8; 32]> = proof
            .path
            .iter()
            .map(|p| hex::decode(p).unwrap().try_into().unwrap())
            .collect();
        let leaf = leaf_hash(position, &proof.stream_id, proof.stream_version, &hash);
        assert_eq!(
            root_from_path(proof.leaf_index, proof.tree_size, leaf, &path),
            checkpoint.events_root,
            "position {position}"
        );
        // The proof reveals no other event: only hashes of subtrees.
        let json = serde_json::to_string(&proof).unwrap();
        assert!(!json.contains("\"payload\""), "{json}");
    }
    assert!(matches!(
        inclusion_proof(&db.app_pool, 9).await,
        Err(ProofError::NotSealed(9))
    ));

    // A rewrite with the hash recomputed: the live events no longer give the signed root, so no
    // proof is built from them, and the saved checkpoints say where.
    rewrite_with_recomputed_hash(&db, 3, |payload, _| {
        payload["amountMinor"] = json!(1);
    })
    .await;
    assert!(matches!(
        inclusion_proof(&db.app_pool, 3).await,
        Err(ProofError::LogDiffers(1))
    ));
    let problem = verify_against(&db.app_pool, &saved, &key())
        .await
        .unwrap()
        .first_problem
        .unwrap();
    assert_eq!(problem.sequence, 1);
}
