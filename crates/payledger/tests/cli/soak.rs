//! The soak (issue 19). By default a short run (3 kills, one PostgreSQL crash-restart, one
//! replica restart, 8 benchmark clients) so that it always runs and can fail; the soak itself is
//! a separate command:
//! `PAYLEDGER_SOAK_KILLS=50 cargo test -p payledger --test cli soak -- --nocapture`. The
//! benchmark's load (64 clients placing and confirming back to back, every answer checked as
//! `payledger bench` checks it) beside the crash test's load and checks, on the managed cluster with a
//! streaming replica that `serve` reads from, for `PAYLEDGER_SOAK_KILLS` (default 50) SIGKILLs of
//! `serve` at random moments 0.5 to 3.5 s into each round of load; every tenth round PostgreSQL is stopped as a power cut would
//! (`pg_ctl stop -m immediate`, crash recovery at the start), and every tenth round, shifted by
//! five, the replica is stopped and started. After every kill, every acknowledged command is
//! checked in the store and every order's charges at the provider (at most one; one for every
//! acknowledged capture; Toss refunds within the capture); every tenth kill, the chains and every
//! read model against a rebuild; at the end, after reconciliation, every order against the
//! provider (paid exactly when charged once, for its amount; refunds equal to the provider's).
//! The counts are printed (docs/performance.md records a run).

use crate::crash::{kill_rounds, Deployment, SoakLoad};
use crate::topology::{read_file, Clusters};
use crate::{payledger, run};
use payledger_pgcluster::{ClusterOptions, ManagedCluster};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Instant;

/// Kills when `PAYLEDGER_SOAK_KILLS` is not set: CI's short run.
const DEFAULT_KILLS: u64 = 3;
/// Each round's load runs 0.5 to 3.5 s before the kill (`PAYLEDGER_SOAK_ROUND_MS` sets the
/// spread), so 50 kills are minutes of load, not seconds.
const KILL_AFTER_MS: u64 = 500;
const DEFAULT_SPREAD_MS: u64 = 3_000;
/// The benchmark's clients (`payledger bench --clients 64`, docs/performance.md), placing and
/// confirming back to back beside the crash test's load; `PAYLEDGER_SOAK_CLIENTS` overrides.
const BENCHMARK_CLIENTS: usize = 64;
/// CI's short run exercises the same flow with fewer clients.
const SHORT_RUN_CLIENTS: usize = 8;
/// `audit verify` and `projections verify` after every this many kills, and at the end; the
/// store and the provider's charges are checked after every kill.
const VERIFY_EVERY_KILLS: u64 = 10;

#[tokio::test]
async fn soak_kills_serve_and_restarts_postgres_and_the_replica() {
    let kills: u64 = std::env::var("PAYLEDGER_SOAK_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_KILLS);
    let spread_ms: u64 = std::env::var("PAYLEDGER_SOAK_ROUND_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_SPREAD_MS);
    let root = tempfile::tempdir().unwrap();
    let primary_dir = root.path().join("primary");
    let replica_dir = root.path().join("replica");
    let _clusters = Clusters(vec![primary_dir.clone(), replica_dir.clone()]);
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
    let replica_url = format!(
        "postgres://payledger_app:{}@127.0.0.1:{}/payledger",
        read_file(&replica_dir.join("pg.password")),
        read_file(&replica_dir.join("pg.port"))
    );
    let primary = ManagedCluster::join_running(ClusterOptions::new(&primary_dir))
        .await
        .unwrap()
        .unwrap();
    let owner = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect_with(primary.connect_options("payledger"))
        .await
        .unwrap();
    let deployment = Deployment {
        dir: primary_dir.clone(),
        urls: None,
        owner,
        env: vec![("DATABASE_REPLICA_URL".to_owned(), replica_url)],
    };
    let started = Instant::now();
    let restarts = std::sync::Arc::new(std::sync::Mutex::new((0u64, 0u64)));
    let counted = restarts.clone();
    let mut between = move |round: u64| -> Pin<Box<dyn Future<Output = ()>>> {
        let (primary_dir, replica_dir): (PathBuf, PathBuf) =
            (primary_dir.clone(), replica_dir.clone());
        let counted = counted.clone();
        let kills = kills;
        Box::pin(async move {
            let short = kills < 10;
            if round % 10 == 9 || (short && round == 1) {
                let cluster = ManagedCluster::join_running(ClusterOptions::new(&primary_dir))
                    .await
                    .unwrap()
                    .expect("the primary runs");
                tokio::task::spawn_blocking(move || cluster.stop_immediately())
                    .await
                    .unwrap()
                    .unwrap();
                ManagedCluster::start_or_join(ClusterOptions::new(&primary_dir))
                    .await
                    .unwrap();
                counted.lock().unwrap().0 += 1;
            }
            if round % 10 == 4 || (short && round == 0) {
                let stop = run(payledger(&replica_dir, None).arg("stop-database"));
                assert!(stop.status.success());
                let start = run(payledger(&replica_dir, None).args(["replica", "start"]));
                assert!(
                    start.status.success(),
                    "{}",
                    String::from_utf8_lossy(&start.stderr)
                );
                counted.lock().unwrap().1 += 1;
            }
        })
    };
    let long = std::env::var("PAYLEDGER_SOAK_KILLS").is_ok();
    let soak = SoakLoad {
        benchmark_clients: std::env::var("PAYLEDGER_SOAK_CLIENTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(if long {
                BENCHMARK_CLIENTS
            } else {
                SHORT_RUN_CLIENTS
            }),
        verify_every: long.then_some(VERIFY_EVERY_KILLS),
    };
    let report = kill_rounds(
        &deployment,
        kills,
        (KILL_AFTER_MS, spread_ms),
        &soak,
        &mut between,
    )
    .await;
    let (postgres_restarts, replica_restarts) = *restarts.lock().unwrap();
    println!(
        "soak: {} SIGKILLs of serve under {} benchmark clients plus the crash test's load, \
         {postgres_restarts} PostgreSQL crash-restarts, {replica_restarts} replica restarts in \
         {:.0} s; {} acknowledged commands, all checked in the store after every kill ({} checks \
         in all); provider charges compared after every kill ({} order-charge comparisons in \
         all); at the end {} crash orders and {} benchmark orders compared with the provider \
         ({} charges, one per paid order), {} outcomes settled by reconciliation; audit verify \
         and projections verify passed {} times",
        report.kills,
        soak.benchmark_clients,
        started.elapsed().as_secs_f64(),
        report.acknowledged_commands_checked,
        report.store_checks,
        report.charge_checks,
        report.orders_compared_with_the_provider,
        report.benchmark_orders_compared,
        report.provider_charges,
        report.reconciled_outcomes,
        report.verifications
    );
    assert_eq!(report.kills, kills);
}
