//! The database restarts under load: requests fail fast with 503 and Retry-After, the service
//! recovers by itself once PostgreSQL is back, and nothing acknowledged is lost.

use crate::serve;
use payledger_pgcluster::{ClusterOptions, ManagedCluster};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Observed {
    acknowledged: Vec<String>,
    unavailable_with_retry_after: usize,
    unavailable_without_retry_after: usize,
    other_5xx: Vec<u16>,
}

#[tokio::test]
async fn a_database_restart_under_load_fails_fast_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("ledger");
    let server = serve(&data_dir, None).await;
    let stop = Arc::new(AtomicBool::new(false));
    let observed = Arc::new(Mutex::new(Observed::default()));
    let clients: Vec<_> = (0..8)
        .map(|client| {
            let url = server.url.clone();
            let http = server.http();
            let stop = stop.clone();
            let observed = observed.clone();
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let order_id = format!("order-restart-{client}-{n}");
                    let answer = http
                        .post(format!("{url}/v1/orders"))
                        .json(&json!({"orderId": order_id, "amount": 1_000, "currency": "KRW", "customerId": "c", "payeeId": "p", "orderName": "restart"}))
                        .send()
                        .await;
                    let Ok(response) = answer else { continue };
                    let status = response.status().as_u16();
                    let retry_after = response.headers().contains_key("retry-after");
                    {
                        let mut seen = observed.lock().unwrap();
                        match status {
                            201 => seen.acknowledged.push(order_id),
                            503 if retry_after => seen.unavailable_with_retry_after += 1,
                            503 => seen.unavailable_without_retry_after += 1,
                            s if s >= 500 => seen.other_5xx.push(s),
                            _ => {}
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let options = ClusterOptions::new(data_dir.canonicalize().unwrap());
    let cluster = ManagedCluster::join_running(options.clone())
        .await
        .unwrap()
        .expect("the cluster runs");
    tokio::task::spawn_blocking(move || cluster.stop())
        .await
        .unwrap()
        .unwrap();
    // Fail fast: within the pool's acquire timeout, requests are answered 503 + Retry-After.
    let mut during_outage = 0;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        during_outage = observed.lock().unwrap().unavailable_with_retry_after;
        if during_outage >= 8 {
            break;
        }
    }
    assert!(
        during_outage > 0,
        "requests during the outage are answered 503 with Retry-After"
    );

    ManagedCluster::start_or_join(options).await.unwrap();
    // Recovery by itself: acknowledged writes resume within seconds.
    let acknowledged_before = observed.lock().unwrap().acknowledged.len();
    let mut recovered = false;
    for _ in 0..150 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if observed.lock().unwrap().acknowledged.len() > acknowledged_before + 20 {
            recovered = true;
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    assert!(
        recovered,
        "the service did not recover within 15 s of PostgreSQL coming back"
    );

    let seen = std::mem::take(&mut *observed.lock().unwrap());
    assert!(
        seen.other_5xx.is_empty(),
        "only 503s while the database was down: {:?}",
        seen.other_5xx
    );
    assert_eq!(seen.unavailable_without_retry_after, 0);
    let http = server.admin_http();
    for order_id in &seen.acknowledged {
        let stream = http
            .get(format!("{}/v1/streams/order-{order_id}", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(
            stream.status().as_u16(),
            200,
            "acknowledged order {order_id} is in the store"
        );
    }
    drop(server);
    let _ = std::process::Command::new(crate::BIN)
        .arg("--data-dir")
        .arg(&data_dir)
        .arg("stop-database")
        .output();
}
