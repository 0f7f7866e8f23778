//! `payledger bench` on the embedded defaults: it starts its own server and PostgreSQL, prints a
//! machine-readable last line, and leaves no PostgreSQL running that it started.

use crate::{payledger, run, stdout};
use payledger_pgcluster::{ClusterOptions, ManagedCluster};

#[tokio::test]
async fn bench_drives_its_own_server_and_stops_the_cluster_it_started() {
    let temp = tempfile::tempdir().unwrap();
    let store = temp.path().join("bench-store");
    let output = run(payledger(&temp.path().join("unused"), None).args([
        "bench",
        "--clients",
        "2",
        "--duration-s",
        "1",
        "--warmup-s",
        "0",
        "--store-dir",
        store.to_str().unwrap(),
    ]));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = stdout(&output);
    let last = printed.lines().last().unwrap_or_default();
    let rate: f64 = last
        .strip_prefix("commands_per_s=")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|rate| rate.parse().ok())
        .unwrap_or_else(|| panic!("the last line is not the summary: {last:?}"));
    assert!(rate > 0.0, "{printed}");
    for field in [
        "p50_ms=",
        "p99_ms=",
        "p999_ms=",
        "answers_checked=",
        "mismatches=0",
    ] {
        assert!(last.contains(field), "{field} missing from {last:?}");
    }
    assert!(printed.contains("errors          0"), "{printed}");
    let left_running = ManagedCluster::join_running(ClusterOptions::new(&store))
        .await
        .unwrap();
    assert!(
        left_running.is_none(),
        "the cluster the benchmark started is still running"
    );
}
