//! Signed checkpoints, end to end: `serve` seals and exports them as it goes, auditors read them
//! over HTTP, and `audit verify --checkpoints` holds the live log to a saved copy.

use crate::{authed_client, payledger, run, serve_command, stdout};
use payledger_testdb::TestDatabase;
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

async fn pay(client: &reqwest::Client, url: &str, order_id: &str, amount: i64) {
    let placed = client
        .post(format!("{url}/v1/orders"))
        .json(&json!({"orderId": order_id, "amount": amount, "currency": "KRW", "customerId": "cust_cp",
                      "payeeId": "payee_cp", "orderName": "Checkpoint class"}))
        .send()
        .await
        .unwrap();
    assert_eq!(placed.status().as_u16(), 201);
    let paid = client
        .post(format!("{url}/v1/payments/confirm"))
        .json(
            &json!({"paymentKey": format!("pk_{order_id}"), "orderId": order_id, "amount": amount}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status().as_u16(), 200);
}

fn exported(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("audit-checkpoints.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test]
async fn serve_seals_and_exports_checkpoints_and_verify_holds_the_log_to_a_saved_copy() {
    let db = TestDatabase::fresh().await;
    let dir = tempfile::tempdir().unwrap();
    let urls = (db.app_url.as_str(), db.owner_url.as_str());
    let head = {
        let mut command = payledger(dir.path(), Some(urls));
        command
            .env("PAYLEDGER_CHECKPOINT_EVERY_EVENTS", "1")
            .env("PAYLEDGER_CHECKPOINT_EVERY_S", "1")
            .stderr(std::process::Stdio::null());
        let server = serve_command(command, dir.path()).await;
        let client = server.http();
        pay(&client, &server.url, "cp-0001", 10_000).await;
        pay(&client, &server.url, "cp-0002", 20_000).await;
        let head: i64 = sqlx::query_scalar("SELECT last_position FROM event_sequencer")
            .fetch_one(&db.app_pool)
            .await
            .unwrap();
        // The sealer follows the log: wait until a checkpoint covers the head.
        let deadline = Instant::now() + Duration::from_secs(30);
        while exported(dir.path())
            .last()
            .is_none_or(|c| c["globalPosition"].as_i64() < Some(head))
        {
            assert!(Instant::now() < deadline, "no checkpoint reached {head}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // The same checkpoints over HTTP, for auditors and admins only.
        let page: Value = authed_client(&server.admin_key)
            .get(format!("{}/v1/audit/checkpoints", server.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let file = exported(dir.path());
        assert_eq!(
            page["checkpoints"].as_array().unwrap()[..file.len()],
            file[..]
        );
        let forbidden = client
            .get(format!("{}/v1/audit/checkpoints", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(forbidden.status().as_u16(), 403);
        head
    };

    // The key is in a 0600 file beside the cluster, not in the database.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("audit-signing-key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let key = run(payledger(dir.path(), Some(urls)).args(["audit", "public-key"]));
    let public_key = stdout(&key).trim().to_string();
    let saved = exported(dir.path());
    assert!(saved.iter().all(|c| c["publicKey"] == public_key.as_str()));
    // An auditor's copy, taken before the tampering.
    let copy = dir.path().join("auditor-copy.jsonl");
    std::fs::copy(dir.path().join("audit-checkpoints.jsonl"), &copy).unwrap();

    let clean = run(payledger(dir.path(), Some(urls)).args([
        "audit",
        "verify",
        "--checkpoints",
        copy.to_str().unwrap(),
        "--public-key",
        &public_key,
    ]));
    assert!(clean.status.success(), "{}", stdout(&clean));
    assert!(
        stdout(&clean).starts_with("ok: the log agrees with"),
        "{}",
        stdout(&clean)
    );
    assert!(head >= 6, "two paid orders are at least six events");

    // The same copy with one signature bit flipped is refused.
    let forged = dir.path().join("forged.jsonl");
    let mut lines = saved.clone();
    let signature = lines[0]["signature"].as_str().unwrap().to_string();
    let flipped = format!(
        "{}{}",
        if signature.starts_with('0') { "1" } else { "0" },
        &signature[1..]
    );
    lines[0]["signature"] = json!(flipped);
    let text: String = lines.iter().map(|c| format!("{c}\n")).collect();
    std::fs::write(&forged, text).unwrap();
    let refused = run(payledger(dir.path(), Some(urls)).args([
        "audit",
        "verify",
        "--checkpoints",
        forged.to_str().unwrap(),
    ]));
    assert_eq!(refused.status.code(), Some(2), "{}", stdout(&refused));
    assert!(stdout(&refused).contains("refused"), "{}", stdout(&refused));

    // A superuser swaps two events of different streams (cp-0001's last, cp-0002's first):
    // every chain still verifies, the saved copy does not.
    let boundary: i64 = sqlx::query_scalar(
        "SELECT min(global_position) FROM events WHERE stream_id = 'order-cp-0002'",
    )
    .fetch_one(&db.owner_pool)
    .await
    .unwrap();
    let mut tx = db.owner_pool.begin().await.unwrap();
    sqlx::query("SET LOCAL session_replication_role = replica")
        .execute(&mut *tx)
        .await
        .unwrap();
    for (from, to) in [
        (boundary - 1, 1_000_000),
        (boundary, boundary - 1),
        (1_000_000, boundary),
    ] {
        sqlx::query("UPDATE events SET global_position = $2 WHERE global_position = $1")
            .bind(from)
            .bind(to)
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    let chains = run(payledger(dir.path(), Some(urls)).args(["audit", "verify"]));
    assert!(
        stdout(&chains).starts_with("ok:"),
        "the chains alone cannot tell: {}",
        stdout(&chains)
    );
    let caught = run(payledger(dir.path(), Some(urls)).args([
        "audit",
        "verify",
        "--checkpoints",
        copy.to_str().unwrap(),
    ]));
    assert_eq!(caught.status.code(), Some(2), "{}", stdout(&caught));
    assert!(
        stdout(&caught).starts_with("BROKEN at checkpoint"),
        "{}",
        stdout(&caught)
    );
}
