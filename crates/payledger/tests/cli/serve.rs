use crate::{payledger, run, serve, stdout, Server};
use payledger_testdb::TestDatabase;
use serde_json::{json, Value};
use std::time::Duration;

async fn place_and_pay(server: &Server, order_id: &str) -> Value {
    let url = &server.url;
    let client = server.http();
    let placed = client
        .post(format!("{url}/v1/orders"))
        .json(&json!({"orderId": order_id, "amount": 12_000, "currency": "KRW", "customerId": "cust_cli", "payeeId": "payee_cli", "orderName": "CLI class"}))
        .send()
        .await
        .unwrap();
    assert_eq!(placed.status().as_u16(), 201);
    let paid = client
        .post(format!("{url}/v1/payments/confirm"))
        .json(
            &json!({"paymentKey": format!("pk_{order_id}"), "orderId": order_id, "amount": 12_000}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status().as_u16(), 200);
    paid.json().await.unwrap()
}

/// On the embedded defaults: its own PostgreSQL in the data directory; a second serve joins it;
/// the operator commands find the same database.
#[tokio::test]
async fn serve_runs_its_own_cluster_and_the_cli_finds_it() {
    let data_dir = tempfile::tempdir().unwrap();
    let dir = data_dir.path().join("ledger");
    let first = serve(&dir, None).await;
    let second = serve(&dir, None).await;
    let paid = place_and_pay(&first, "order-cli-1").await;
    let position = paid["position"].as_i64().unwrap();
    let seen: Value = second
        .http()
        .get(format!(
            "{}/v1/orders/order-cli-1?minPosition={position}",
            second.url
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["status"], "PAID");

    let replay = run(payledger(&dir, None).args(["replay", "order-order-cli-1"]));
    assert!(replay.status.success());
    let lines: Vec<Value> = stdout(&replay)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[2]["eventType"], "PaymentCaptured");

    let timeline = run(payledger(&dir, None).args(["timeline", "order-cli-1"]));
    assert!(timeline.status.success());
    assert!(stdout(&timeline).contains("payment captured: 12000 KRW"));

    let verify = run(payledger(&dir, None).args(["audit", "verify"]));
    assert!(verify.status.success(), "{}", stdout(&verify));
    assert!(stdout(&verify).starts_with("ok: 3 events in 1 streams"));

    let status = run(payledger(&dir, None).args(["projections", "status"]));
    assert!(stdout(&status).contains("orders"));
    let rebuild = run(payledger(&dir, None).args(["projections", "rebuild", "orders"]));
    assert!(
        rebuild.status.success(),
        "{}",
        String::from_utf8_lossy(&rebuild.stderr)
    );
    assert!(stdout(&rebuild).contains("rebuilt orders up to position 3"));

    drop(first);
    drop(second);
    let stop = run(payledger(&dir, None).arg("stop-database"));
    assert!(stop.status.success());
}

/// Two `serve` processes on one database: each projection runs in exactly one of them, and when
/// that process is killed the other takes over.
#[tokio::test]
async fn two_serve_processes_run_each_projection_once_and_take_over() {
    let db = TestDatabase::fresh().await;
    let dir = tempfile::tempdir().unwrap();
    let urls = (db.app_url.as_str(), db.owner_url.as_str());
    let held = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted AND a.datname = current_database()",
        )
        .fetch_one(&db.owner_pool)
        .await
        .unwrap()
    };
    let first = serve(dir.path(), Some(urls)).await;
    // Every runner of the first process holds its lock once it is up (one per checkpoint row at
    // least; process managers may hold more).
    let runners: i64 = sqlx::query_scalar("SELECT count(*) FROM projection_checkpoints")
        .fetch_one(&db.owner_pool)
        .await
        .unwrap();
    wait_for(|| async { held().await >= runners }).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let projections = held().await;
    let second = serve(dir.path(), Some(urls)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(held().await, projections, "the second process stands by");

    drop(first); // SIGKILL: no clean shutdown, its connections die with it
    wait_for(|| async { held().await == projections }).await;
    let paid = place_and_pay(&second, "order-takeover").await;
    let position = paid["position"].as_i64().unwrap();
    let order = second
        .http()
        .get(format!(
            "{}/v1/orders/order-takeover?minPosition={position}",
            second.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(order.status().as_u16(), 200);
}

async fn wait_for<F, Fut>(condition: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("condition not reached in 20 s");
}

/// `audit verify` exits non-zero and names the first altered event.
#[tokio::test]
async fn audit_verify_names_the_first_tampered_event() {
    let db = TestDatabase::fresh().await;
    let dir = tempfile::tempdir().unwrap();
    let urls = (db.app_url.as_str(), db.owner_url.as_str());
    {
        let server = serve(dir.path(), Some(urls)).await;
        place_and_pay(&server, "order-audit-1").await;
        place_and_pay(&server, "order-audit-2").await;
    }
    let clean = run(payledger(dir.path(), Some(urls)).args(["audit", "verify"]));
    assert!(clean.status.success(), "{}", stdout(&clean));

    let mut tx = db.owner_pool.begin().await.unwrap();
    sqlx::query("SET LOCAL session_replication_role = replica")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("UPDATE events SET payload = jsonb_set(payload, '{amountMinor}', '1') WHERE global_position = 5")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let broken = run(payledger(dir.path(), Some(urls)).args(["audit", "verify"]));
    assert_eq!(broken.status.code(), Some(2));
    let text = stdout(&broken);
    assert!(text.contains("BROKEN at global position 5"), "{text}");
    assert!(text.contains("order-order-audit-2"), "{text}");
}
