//! The scaled-out topology on one machine (issue 19, docs/scaling.md): a managed primary, a
//! streaming replica made by `payledger replica init`, two `serve` nodes reading from the replica.
//! Load on both nodes, a node killed, the replica stopped and started again, then synchronous
//! replication, the primary stopped as a power cut would, and the replica promoted: every command
//! acknowledged is on it.

use crate::crash::start_sandbox;
use crate::{payledger, run, serve_command, stdout, Server};
use payledger_pgcluster::{ClusterOptions, ManagedCluster};
use serde_json::{json, Value};
use sqlx::Connection;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

const AMOUNT: i64 = 15_000;
const READ_SOURCE: &str = "x-payledger-read-source";

/// Stops both clusters when the test ends, however it ends.
pub(crate) struct Clusters(pub Vec<PathBuf>);

impl Drop for Clusters {
    fn drop(&mut self) {
        for dir in &self.0 {
            let _ = payledger(dir, None)
                .arg("stop-database")
                .stderr(Stdio::null())
                .output();
        }
    }
}

async fn node(primary_dir: &Path, sandbox_url: &str, replica_url: &str) -> Server {
    let mut command = payledger(primary_dir, None);
    command
        .env("PAYLEDGER_SANDBOX_URL", sandbox_url)
        .env("DATABASE_REPLICA_URL", replica_url)
        .stderr(Stdio::null());
    serve_command(command, primary_dir).await
}

/// Places and confirms orders back to back for `duration` with `clients` clients; returns the
/// ids of the orders whose confirm was answered 200 (captured: acknowledged).
async fn load(server: &Server, tag: &str, clients: usize, duration: Duration) -> Vec<String> {
    let mut tasks = Vec::new();
    for client in 0..clients {
        let (http, url) = (server.http(), server.url.clone());
        let tag = tag.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut captured = Vec::new();
            let until = Instant::now() + duration;
            let mut n = 0;
            while Instant::now() < until {
                n += 1;
                let order = format!("order-topo-{tag}-{client}-{n}");
                let placed = http
                    .post(format!("{url}/v1/orders"))
                    .json(
                        &json!({"orderId": order, "amount": AMOUNT, "currency": "KRW",
                                  "customerId": "cust_topo", "payeeId": "payee_topo",
                                  "orderName": "Topology"}),
                    )
                    .send()
                    .await;
                if !placed.is_ok_and(|p| p.status().as_u16() == 201) {
                    break;
                }
                let paid = http
                    .post(format!("{url}/v1/payments/confirm"))
                    .json(
                        &json!({"paymentKey": format!("pk_{order}"), "orderId": order,
                                  "amount": AMOUNT}),
                    )
                    .send()
                    .await;
                match paid {
                    Ok(answer) if answer.status().as_u16() == 200 => captured.push(order),
                    _ => break,
                }
            }
            captured
        }));
    }
    let mut captured = Vec::new();
    for task in tasks {
        captured.extend(task.await.unwrap());
    }
    captured
}

/// GET an order on `server`; returns (status, read source, body).
async fn read_order(
    server: &Server,
    order: &str,
    min_position: Option<i64>,
) -> (u16, String, Value) {
    let query = min_position.map_or_else(String::new, |p| format!("?minPosition={p}"));
    let answer = server
        .http()
        .get(format!("{}/v1/orders/{order}{query}", server.url))
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    let source = answer
        .headers()
        .get(READ_SOURCE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, source, answer.json().await.unwrap_or_default())
}

/// Waits until a read on `server` is answered by `source`.
async fn wait_for_source(server: &Server, order: &str, source: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, answered_by, _) = read_order(server, order, None).await;
        if status == 200 && answered_by == source {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "reads were not answered by {source} (last: {status} from {answered_by:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `payledger_replica_usable` line of `server`'s metrics.
async fn replica_usable(server: &Server) -> String {
    let text = reqwest::get(format!("{}/metrics", server.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with("payledger_replica_usable{"))
        .unwrap_or_default()
        .to_owned()
}

pub(crate) fn read_file(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap().trim().to_owned()
}

#[tokio::test]
async fn failover_to_the_replica_keeps_every_acknowledged_command() {
    let root = tempfile::tempdir().unwrap();
    let primary_dir = root.path().join("primary");
    let replica_dir = root.path().join("replica");
    let _clusters = Clusters(vec![primary_dir.clone(), replica_dir.clone()]);
    let (_sandbox, sandbox_url) = start_sandbox(root.path()).await;

    let migrate = run(payledger(&primary_dir, None).arg("migrate"));
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    let init = run(payledger(&replica_dir, None)
        .args(["replica", "init", "--from"])
        .arg(&primary_dir));
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let status = run(payledger(&replica_dir, None).args(["replica", "status"]));
    assert!(
        stdout(&status).contains("\"standby\":true"),
        "{}",
        stdout(&status)
    );
    let replica_url = format!(
        "postgres://payledger_app:{}@127.0.0.1:{}/payledger",
        read_file(&replica_dir.join("pg.password")),
        read_file(&replica_dir.join("pg.port"))
    );

    // Two nodes, load on both; each reads the other's writes back with minPosition.
    let first = node(&primary_dir, &sandbox_url, &replica_url).await;
    let second = node(&primary_dir, &sandbox_url, &replica_url).await;
    let (on_first, on_second) = tokio::join!(
        load(&first, "a", 4, Duration::from_secs(3)),
        load(&second, "b", 4, Duration::from_secs(3))
    );
    assert!(
        !on_first.is_empty() && !on_second.is_empty(),
        "the load ran on both nodes"
    );
    let mut acknowledged: Vec<String> = on_first.iter().chain(&on_second).cloned().collect();
    let head: i64 = {
        let answer: Value = first
            .http()
            .get(format!("{}/readyz", first.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["headPosition"].as_i64().unwrap_or(0)
    };
    let mut from_replica = 0;
    for order in on_first.iter().take(20) {
        let (status, source, body) = read_order(&second, order, Some(head)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["status"], "PAID",
            "{order} read with minPosition={head}: {body}"
        );
        assert!(source == "replica-0" || source == "primary", "{source:?}");
        from_replica += usize::from(source == "replica-0");
    }
    assert!(from_replica > 0, "no read was answered by the replica");

    // A node dies: the other keeps serving, reads still come from the replica.
    drop(first);
    acknowledged.extend(load(&second, "c", 4, Duration::from_secs(1)).await);
    wait_for_source(&second, &acknowledged[0], "replica-0").await;

    // The replica stops: reads move to the primary (said in the header), writes go on.
    let stop = run(payledger(&replica_dir, None).arg("stop-database"));
    assert!(stop.status.success());
    wait_for_source(&second, &acknowledged[0], "primary").await;
    assert_eq!(
        replica_usable(&second).await,
        "payledger_replica_usable{replica=\"replica-0\"} 0",
        "the lost replica is reported"
    );
    let during_outage = load(&second, "d", 2, Duration::from_secs(1)).await;
    assert!(
        !during_outage.is_empty(),
        "writes went on without the replica"
    );
    acknowledged.extend(during_outage);
    // It comes back and catches up: reads return to it.
    let start = run(payledger(&replica_dir, None).args(["replica", "start"]));
    assert!(
        start.status.success(),
        "{}",
        String::from_utf8_lossy(&start.stderr)
    );
    let last = acknowledged.last().unwrap().clone();
    wait_for_source(&second, &last, "replica-0").await;
    let (_, _, body) = read_order(&second, &last, None).await;
    assert_eq!(body["status"], "PAID", "the replica caught up: {body}");
    assert_eq!(
        replica_usable(&second).await,
        "payledger_replica_usable{replica=\"replica-0\"} 1"
    );

    // Synchronous replication on: what is acknowledged from now on is on the replica too.
    let sync = run(payledger(&primary_dir, None).args(["replica", "synchronous", "on"]));
    assert!(
        sync.status.success(),
        "{}",
        String::from_utf8_lossy(&sync.stderr)
    );
    let synchronous = load(&second, "e", 4, Duration::from_secs(2)).await;
    assert!(!synchronous.is_empty());
    acknowledged.extend(synchronous);

    // The primary's machine is lost (immediate stop: no shutdown checkpoint, no goodbye to the
    // standby), then the replica is promoted.
    let primary = ManagedCluster::join_running(ClusterOptions::new(&primary_dir))
        .await
        .unwrap()
        .expect("the primary runs");
    tokio::task::spawn_blocking(move || primary.stop_immediately())
        .await
        .unwrap()
        .unwrap();
    drop(second);
    let promote = run(payledger(&replica_dir, None).args(["replica", "promote"]));
    assert!(
        promote.status.success(),
        "{}",
        String::from_utf8_lossy(&promote.stderr)
    );
    let status = run(payledger(&replica_dir, None).args(["replica", "status"]));
    assert!(
        stdout(&status).contains("\"standby\":false"),
        "{}",
        stdout(&status)
    );

    // Every acknowledged capture is on the promoted server.
    let promoted = ManagedCluster::join_running(ClusterOptions::new(&replica_dir))
        .await
        .unwrap()
        .unwrap();
    let mut connection = sqlx::PgConnection::connect_with(&promoted.connect_options("payledger"))
        .await
        .unwrap();
    let stored: Vec<String> = sqlx::query_scalar(
        "SELECT substr(stream_id, 7) FROM events WHERE event_type = 'PaymentCaptured' \
         AND stream_id LIKE 'order-order-topo-%'",
    )
    .fetch_all(&mut connection)
    .await
    .unwrap();
    let stored: std::collections::HashSet<String> = stored.into_iter().collect();
    let missing: Vec<&String> = acknowledged
        .iter()
        .filter(|o| !stored.contains(*o))
        .collect();
    println!(
        "failover: {} acknowledged captures, {} on the promoted replica, missing {missing:?}",
        acknowledged.len(),
        stored.len()
    );
    assert!(
        missing.is_empty(),
        "acknowledged but lost at failover: {missing:?}"
    );
    let _ = connection.close().await;

    // serve runs on the promoted server and the log verifies. The keys kept in files beside the
    // old primary (created by its first serve, after `replica init`) are carried over, as
    // docs/operations.md's failover step says.
    for name in [
        "privacy-master-key",
        "audit-signing-key",
        "billing-key.secret",
    ] {
        if primary_dir.join(name).exists() && !replica_dir.join(name).exists() {
            std::fs::copy(primary_dir.join(name), replica_dir.join(name)).unwrap();
        }
    }
    let mut command = payledger(&replica_dir, None);
    command
        .env("PAYLEDGER_SANDBOX_URL", &sandbox_url)
        .stderr(Stdio::null());
    let mut third = serve_command(command, &replica_dir).await;
    third.client_key = first_client_key(&primary_dir);
    let (status, _, body) = read_order(&third, &acknowledged[0], None).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("PAID")),
        "{body}"
    );
    let placed = load(&third, "f", 1, Duration::from_millis(300)).await;
    assert!(!placed.is_empty(), "the promoted server takes writes");
    drop(third);
    let verify = run(payledger(&replica_dir, None).args(["audit", "verify"]));
    assert!(verify.status.success(), "{}", stdout(&verify));
}

fn first_client_key(primary_dir: &Path) -> String {
    crate::first_keys(primary_dir)
        .expect("the first serve wrote its keys")
        .1
}
