//! A network partition between a `serve` node and PostgreSQL (issue 19), on this machine with a
//! network namespace, not a stopped server: a separate command, root only,
//! `PAYLEDGER_PARTITION_TEST=1 cargo test -p payledger --test cli partition -- --nocapture`
//! (without the variable the test says so and passes: CI runs it in its own step, `.ci/run`).
//!
//! The topology: the managed cluster in the root namespace, listening on 127.0.0.1 and on the
//! root end of a veth pair; node A runs in its own namespace and reaches PostgreSQL (and the
//! payment sandbox) only over that pair; node B runs in the root namespace on loopback. Node A
//! starts first, so it holds every runner's advisory lock. Under load on both nodes the pair is
//! cut with a blackhole route at each end: packets vanish both ways, no reset, no ICMP, so each
//! side sees silence, as with a pulled cable or a frozen switch. Then it is healed.
//!
//! Checked:
//! - every command either node acknowledged (201 placed, 200 captured) is in the store;
//! - node A's advisory locks are released by the server within the stated bound (TCP keepalive
//!   and `tcp_user_timeout`, `payledger::database::detect_dead_peers`) and node B's runners take
//!   every one of them over;
//! - no two runners commit: a trigger records every checkpoint move with the committing node's
//!   `application_name`; for every projection and process manager the moves form one chain
//!   (each starts where the previous ended), none of node A's was made after the cut, and none of
//!   node A's follows one of node B's;
//! - during the partition, reads on node A (an order, the raw log) are 503 `E_UNAVAILABLE` within
//!   `PAYLEDGER_DATABASE_CALL_TIMEOUT_MS` (asked from inside its namespace), and after the heal
//!   node A serves reads again promptly;
//! - after the heal, node A serves commands again, and as a standby of the runners (B keeps them);
//!   when node B is then killed, node A runs every runner again (none is stuck on a connection
//!   the partition killed);
//! - the chains verify and every read model equals a rebuild.

use crate::crash::{
    assert_in_the_store, start_sandbox, wait_for_projections, Acknowledged, Sandbox,
};
use crate::topology::{read_file, Clusters};
use crate::{first_keys, free_port, payledger, run, serve_command, stdout, Server, BIN};
use payledger::database::{TCP_KEEPALIVES_INTERVAL_S, TCP_USER_TIMEOUT_MS};
use payledger_pgcluster::{ClusterOptions, ManagedCluster};
use serde_json::json;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The root end of the pair (PostgreSQL and the sandbox listen here) and node A's end.
const ROOT_ADDRESS: &str = "10.231.77.1";
const NODE_A_ADDRESS: &str = "10.231.77.2";
const AMOUNT: i64 = 10_000;
const NODE_A: &str = "partition-node-a";
const NODE_B: &str = "partition-node-b";
/// Clients placing and confirming orders on each node.
const CLIENTS_PER_NODE: usize = 16;
/// Load before the cut, and how long the partition lasts after node B took over.
const LOAD_BEFORE_CUT: Duration = Duration::from_secs(4);
const PARTITION_AFTER_TAKEOVER: Duration = Duration::from_secs(5);
/// The stated bound for the server to drop a silent node's connections, hence its locks: the
/// server's kernel gives up on a connection whose data or keepalive probes go unacknowledged for
/// `TCP_USER_TIMEOUT_MS`, checked at each probe (`TCP_KEEPALIVES_INTERVAL_S`). Measured from the
/// cut, which is no earlier than the node's last packet.
fn release_bound() -> Duration {
    Duration::from_millis(u64::from(TCP_USER_TIMEOUT_MS))
        + Duration::from_secs(u64::from(TCP_KEEPALIVES_INTERVAL_S))
}
/// What the test allows on top of a bound: this machine is shared and loaded, and the locks are
/// sampled every 100 ms.
const SLACK: Duration = Duration::from_secs(2);
/// The stated bound of a read request (`PAYLEDGER_DATABASE_CALL_TIMEOUT_MS`, left at its
/// default on node A).
fn read_bound() -> Duration {
    Duration::from_millis(payledger_store::call_bounds::DEFAULT_DATABASE_CALL_TIMEOUT_MS)
}
/// How long after the heal node A may take to serve a read again: its stuck connections are
/// closed within the read bound plus the release drain, the rest fail their liveness ping at once.
const READS_AGAIN_LIMIT: Duration = Duration::from_secs(5);
/// An order placed on node A before the cut, read during the partition and after the heal.
const READ_ORDER: &str = "order-part-read";
/// A standby runner tries the locks again every 2 s (`RunnerConfig::standby_retry_ms`).
const STANDBY_RETRY: Duration = Duration::from_secs(2);
/// How long the healed node may take to run every runner again once the other node died.
const FAILBACK_LIMIT: Duration = Duration::from_secs(60);

/// The namespace and the pair; removed when the test ends, however it ends.
struct Partitionable {
    namespace: String,
    root_link: String,
}

impl Partitionable {
    fn create() -> Partitionable {
        let suffix = std::process::id() % 100_000;
        let partitionable = Partitionable {
            namespace: format!("plpart{suffix}"),
            root_link: format!("plpr{suffix}"),
        };
        let node_link = format!("plpn{suffix}");
        let ns = partitionable.namespace.as_str();
        ip(&["netns", "add", ns]);
        ip(&[
            "link",
            "add",
            &partitionable.root_link,
            "type",
            "veth",
            "peer",
            "name",
            &node_link,
            "netns",
            ns,
        ]);
        ip(&[
            "addr",
            "add",
            &format!("{ROOT_ADDRESS}/30"),
            "dev",
            &partitionable.root_link,
        ]);
        ip(&["link", "set", &partitionable.root_link, "up"]);
        ip(&[
            "netns",
            "exec",
            ns,
            "ip",
            "addr",
            "add",
            &format!("{NODE_A_ADDRESS}/30"),
            "dev",
            &node_link,
        ]);
        ip(&["netns", "exec", ns, "ip", "link", "set", &node_link, "up"]);
        ip(&["netns", "exec", ns, "ip", "link", "set", "lo", "up"]);
        partitionable
    }

    /// Blackhole routes at both ends: whatever either side sends to the other is dropped in
    /// silence (established connections re-route at their next packet).
    fn cut(&self) {
        ip(&["route", "add", "blackhole", &format!("{NODE_A_ADDRESS}/32")]);
        ip(&[
            "netns",
            "exec",
            &self.namespace,
            "ip",
            "route",
            "add",
            "blackhole",
            &format!("{ROOT_ADDRESS}/32"),
        ]);
    }

    fn heal(&self) {
        ip(&["route", "del", "blackhole", &format!("{NODE_A_ADDRESS}/32")]);
        ip(&[
            "netns",
            "exec",
            &self.namespace,
            "ip",
            "route",
            "del",
            "blackhole",
            &format!("{ROOT_ADDRESS}/32"),
        ]);
    }
}

impl Drop for Partitionable {
    fn drop(&mut self) {
        let quiet = |args: &[&str]| {
            let _ = Command::new("ip").args(args).stderr(Stdio::null()).status();
        };
        quiet(&["route", "del", "blackhole", &format!("{NODE_A_ADDRESS}/32")]);
        quiet(&["link", "del", &self.root_link]);
        quiet(&["netns", "del", &self.namespace]);
    }
}

fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Whether this machine can run the partition test: root, and `ip netns` works.
fn can_partition() -> bool {
    is_root()
        && Command::new("ip")
            .args(["netns", "list"])
            .output()
            .is_ok_and(|o| o.status.success())
}

/// Records every checkpoint move with the committing session's `application_name`. Test
/// instrumentation, installed by the superuser on this throw-away cluster only.
const RECORD_COMMITS: &str = r#"
CREATE TABLE partition_test_commits (
    id           bigserial   PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    node         text        NOT NULL,
    kind         text        NOT NULL,
    name         text        NOT NULL,
    old_position bigint,
    new_position bigint      NOT NULL
);
CREATE FUNCTION partition_test_record() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.position = NEW.position THEN
        RETURN NULL;
    END IF;
    INSERT INTO public.partition_test_commits (node, kind, name, old_position, new_position)
    VALUES (current_setting('application_name'), TG_TABLE_NAME, NEW.name,
            CASE WHEN TG_OP = 'UPDATE' THEN OLD.position END, NEW.position);
    RETURN NULL;
END $$;
CREATE TRIGGER partition_test_record AFTER INSERT OR UPDATE ON projection_checkpoints
    FOR EACH ROW EXECUTE FUNCTION partition_test_record();
CREATE TRIGGER partition_test_record AFTER INSERT OR UPDATE ON process_checkpoints
    FOR EACH ROW EXECUTE FUNCTION partition_test_record();
"#;

/// A row of `partition_test_commits`: when, by which node, which checkpoint, from where to where.
type CheckpointMove = (
    chrono::DateTime<chrono::Utc>,
    String,
    String,
    String,
    Option<i64>,
    i64,
);

/// Advisory locks held now, per `application_name`.
async fn advisory_locks(owner: &sqlx::PgPool, node: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.granted AND a.datname = current_database() \
           AND a.application_name = $1",
    )
    .bind(node)
    .fetch_one(owner)
    .await
    .unwrap()
}

/// Places and confirms orders until `stop`; a failure (timeout, refusal) is not acknowledged and
/// the client goes on, so it resumes when its node does.
async fn client(
    url: String,
    key: String,
    tag: String,
    stop: Arc<AtomicBool>,
) -> (Vec<Acknowledged>, u64) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let mut acknowledged = Vec::new();
    let mut failures = 0;
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let order = format!("order-part-{tag}-{n}");
        let placed = http
            .post(format!("{url}/v1/orders"))
            .bearer_auth(&key)
            .json(
                &json!({"orderId": order, "amount": AMOUNT, "currency": "KRW",
                          "customerId": "cust_part", "payeeId": "payee_part",
                          "orderName": "Partition"}),
            )
            .send()
            .await;
        if !placed.is_ok_and(|p| p.status().as_u16() == 201) {
            failures += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        acknowledged.push(Acknowledged::Placed(order.clone()));
        let paid = http
            .post(format!("{url}/v1/payments/confirm"))
            .bearer_auth(&key)
            .json(
                &json!({"paymentKey": format!("pk_{order}"), "orderId": order,
                          "amount": AMOUNT}),
            )
            .send()
            .await;
        if paid.is_ok_and(|p| p.status().as_u16() == 200) {
            acknowledged.push(Acknowledged::Captured(order));
        } else {
            failures += 1;
        }
    }
    (acknowledged, failures)
}

fn start_load(
    server: &Server,
    key: &str,
    tag: &str,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<(Vec<Acknowledged>, u64)>> {
    (0..CLIENTS_PER_NODE)
        .map(|c| {
            tokio::spawn(client(
                server.url.clone(),
                key.to_owned(),
                format!("{tag}-{c}"),
                stop.clone(),
            ))
        })
        .collect()
}

/// One GET on node A from inside its namespace (the only side that reaches it during the
/// partition): status, `code` of the body, and how long it took.
fn read_from_namespace(namespace: &str, url: &str, key: &str) -> (u16, String, Duration) {
    let started = Instant::now();
    let output = Command::new("ip")
        .args([
            "netns",
            "exec",
            namespace,
            "curl",
            "-s",
            "--max-time",
            "120",
        ])
        .args(["-H", &format!("Authorization: Bearer {key}")])
        .args(["-w", "\n%{http_code}", url])
        .output()
        .expect("run curl in node A's namespace");
    let elapsed = started.elapsed();
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
    let code = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|b| b["code"].as_str().map(str::to_owned))
        .unwrap_or_default();
    (status.trim().parse().unwrap_or(0), code, elapsed)
}

async fn wait_ready(server: &Server, log: &std::path::Path, limit: Duration) -> Duration {
    let started = Instant::now();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    loop {
        if let Ok(answer) = http.get(format!("{}/readyz", server.url)).send().await {
            if answer.status().is_success() {
                return started.elapsed();
            }
        }
        assert!(
            started.elapsed() < limit,
            "{} did not become ready: {}",
            server.url,
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn partition_between_serve_and_postgres_moves_the_runners_and_loses_nothing() {
    if std::env::var("PAYLEDGER_PARTITION_TEST").as_deref() != Ok("1") {
        println!(
            "partition test skipped: run it as root with PAYLEDGER_PARTITION_TEST=1 \
             (it creates a network namespace)"
        );
        return;
    }
    assert!(
        can_partition(),
        "PAYLEDGER_PARTITION_TEST=1 needs root and a working `ip netns`"
    );
    let started = Instant::now();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("primary");
    let _clusters = Clusters(vec![dir.clone()]);
    let migrate = run(payledger(&dir, None).arg("migrate"));
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    let network = Partitionable::create();

    // PostgreSQL listens on the pair's root end too, and lets node A's address log in (the
    // managed cluster's own files allow 127.0.0.1 only; ALTER SYSTEM and pg_hba.conf are read
    // after them, and this cluster is thrown away).
    let cluster = ManagedCluster::join_running(ClusterOptions::new(&dir))
        .await
        .unwrap()
        .expect("the cluster runs");
    let owner = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect_with(cluster.connect_options("payledger"))
        .await
        .unwrap();
    sqlx::query(&format!(
        "ALTER SYSTEM SET listen_addresses = '127.0.0.1,{ROOT_ADDRESS}'"
    ))
    .execute(&owner)
    .await
    .unwrap();
    owner.close().await;
    let stop = run(payledger(&dir, None).arg("stop-database"));
    assert!(stop.status.success());
    let cluster = ManagedCluster::start_or_join(ClusterOptions::new(&dir))
        .await
        .unwrap();
    let hba = dir.join("pg").join("pg_hba.conf");
    let mut rules = std::fs::read_to_string(&hba).unwrap();
    rules.push_str(&format!("host all all {NODE_A_ADDRESS}/32 scram-sha-256\n"));
    std::fs::write(&hba, rules).unwrap();
    let owner = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect_with(cluster.connect_options("payledger"))
        .await
        .unwrap();
    sqlx::query("SELECT pg_reload_conf()")
        .execute(&owner)
        .await
        .unwrap();
    sqlx::raw_sql(RECORD_COMMITS).execute(&owner).await.unwrap();

    let password = read_file(&dir.join("pg.password"));
    let port = read_file(&dir.join("pg.port"));
    let urls = |host: &str, node: &str| {
        (
            format!(
                "postgres://payledger_app:{password}@{host}:{port}/payledger?application_name={node}"
            ),
            format!("postgres://postgres:{password}@{host}:{port}/payledger?application_name={node}"),
        )
    };
    // Each node has its payment sandbox on its own loopback (connectors accept plain HTTP only
    // to this machine): the partition is between node A and PostgreSQL only.
    let (_sandbox, sandbox_url): (Sandbox, String) = start_sandbox(&dir).await;
    let sandbox_port_a = free_port();
    let _sandbox_a = Sandbox(
        Command::new("ip")
            .args(["netns", "exec", &network.namespace, BIN, "--data-dir"])
            .arg(&dir)
            .args([
                "sandbox",
                "--listen",
                &format!("127.0.0.1:{sandbox_port_a}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start node A's sandbox in its namespace"),
    );
    let sandbox_deadline = Instant::now() + Duration::from_secs(30);
    while !Command::new("ip")
        .args(["netns", "exec", &network.namespace, "bash", "-c"])
        .arg(format!("exec 3<>/dev/tcp/127.0.0.1/{sandbox_port_a}"))
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        assert!(
            Instant::now() < sandbox_deadline,
            "node A's sandbox did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Node A, in the namespace, first: it takes every runner's lock.
    let (app_a, owner_a) = urls(ROOT_ADDRESS, NODE_A);
    let http_port_a = free_port();
    let log_a_path = root.path().join("node-a.log");
    let log_a = std::fs::File::create(&log_a_path).unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", &network.namespace, BIN, "--data-dir"])
        .arg(&dir)
        .args([
            "serve",
            "--listen",
            &format!("{NODE_A_ADDRESS}:{http_port_a}"),
        ])
        .env("DATABASE_URL", &app_a)
        .env("PAYLEDGER_MIGRATE_DATABASE_URL", &owner_a)
        .env(
            "PAYLEDGER_SANDBOX_URL",
            format!("http://127.0.0.1:{sandbox_port_a}"),
        )
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log_a)
        .spawn()
        .expect("start node A in its namespace");
    let node_a = Server {
        child,
        url: format!("http://{NODE_A_ADDRESS}:{http_port_a}"),
        admin_key: String::new(),
        client_key: String::new(),
    };
    wait_ready(&node_a, &log_a_path, Duration::from_secs(60)).await;
    let (_, key) = first_keys(&dir).expect("node A created the first keys");
    // Every runner has its lock once the count stops growing.
    let mut locks_a = 0;
    let mut stable_since = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(30);
    while stable_since.elapsed() < Duration::from_secs(3) {
        let now = advisory_locks(&owner, NODE_A).await;
        if now != locks_a {
            (locks_a, stable_since) = (now, Instant::now());
        }
        assert!(Instant::now() < deadline, "node A's runners never settled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(locks_a > 0, "node A holds no runner lock");

    let (app_b, owner_b) = urls("127.0.0.1", NODE_B);
    let mut command = payledger(&dir, Some((&app_b, &owner_b)));
    command
        .env("PAYLEDGER_SANDBOX_URL", &sandbox_url)
        .stderr(Stdio::null());
    let node_b = serve_command(command, &dir).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        advisory_locks(&owner, NODE_B).await,
        0,
        "node B took a lock node A holds"
    );

    // An order node A reads during the partition and after it.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let placed = http
        .post(format!("{}/v1/orders", node_a.url))
        .bearer_auth(&key)
        .json(
            &json!({"orderId": READ_ORDER, "amount": AMOUNT, "currency": "KRW",
                      "customerId": "cust_part", "payeeId": "payee_part",
                      "orderName": "Read in the partition"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(placed.status().as_u16(), 201);
    let (admin_key, _) = first_keys(&dir).expect("the first keys");
    let reads_on_a = [
        (
            format!("{}/v1/orders/{READ_ORDER}", node_a.url),
            key.clone(),
        ),
        (
            format!("{}/v1/events?after=0&limit=10", node_a.url),
            admin_key.clone(),
        ),
    ];
    for (url, read_key) in &reads_on_a {
        let (status, code, _) = read_from_namespace(&network.namespace, url, read_key);
        assert_eq!(status, 200, "{url} before the cut: {code}");
    }

    let stop_load = Arc::new(AtomicBool::new(false));
    let mut clients = start_load(&node_a, &key, "a", &stop_load);
    clients.extend(start_load(&node_b, &key, "b", &stop_load));
    tokio::time::sleep(LOAD_BEFORE_CUT).await;

    // A read in flight when the cut comes: it waits at the server on a lock, the cut comes, the
    // lock goes, and the server's answer is lost in the partition. Without a deadline node A
    // would wait for it until its kernel gave up (minutes).
    let mut read_lock = owner.begin().await.unwrap();
    sqlx::query("LOCK TABLE rm.orders IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *read_lock)
        .await
        .unwrap();
    let read_in_flight = tokio::task::spawn_blocking({
        let (namespace, (url, read_key)) = (network.namespace.clone(), reads_on_a[0].clone());
        move || read_from_namespace(&namespace, &url, &read_key)
    });
    let waiting_deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 \
             AND wait_event_type = 'Lock' AND query LIKE '%FROM rm.orders WHERE order_id%'",
        )
        .bind(NODE_A)
        .fetch_one(&owner)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(
            Instant::now() < waiting_deadline,
            "node A's read never reached the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    network.cut();
    let cut = Instant::now();
    read_lock.rollback().await.unwrap();
    let cut_at: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(&owner)
        .await
        .unwrap();
    let head_at_cut: i64 = sqlx::query_scalar("SELECT last_position FROM event_sequencer")
        .fetch_one(&owner)
        .await
        .unwrap();
    // Node A's reads while it is cut off, one after the other, from inside its namespace.
    let reads_in_partition = tokio::task::spawn_blocking({
        let (namespace, reads) = (network.namespace.clone(), reads_on_a.clone());
        move || {
            std::thread::sleep(Duration::from_secs(1));
            reads
                .iter()
                .map(|(url, read_key)| {
                    (url.clone(), read_from_namespace(&namespace, url, read_key))
                })
                .collect::<Vec<_>>()
        }
    });
    let mut released = None;
    let mut taken_over = None;
    let limit = release_bound() + STANDBY_RETRY + SLACK + Duration::from_secs(30);
    while taken_over.is_none() {
        let (held_a, held_b) = (
            advisory_locks(&owner, NODE_A).await,
            advisory_locks(&owner, NODE_B).await,
        );
        if released.is_none() && held_a == 0 {
            released = Some(cut.elapsed());
        }
        if held_b == locks_a {
            taken_over = Some(cut.elapsed());
        }
        assert!(
            cut.elapsed() < limit,
            "after {:?} node A still holds {held_a} locks and node B {held_b} of {locks_a}",
            cut.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (released, taken_over) = (released.unwrap(), taken_over.unwrap());
    // Node B's runners project what was appended meanwhile.
    let projected_deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let orders: i64 =
            sqlx::query_scalar("SELECT position FROM projection_checkpoints WHERE name = 'orders'")
                .fetch_one(&owner)
                .await
                .unwrap();
        if orders > head_at_cut {
            break;
        }
        assert!(
            Instant::now() < projected_deadline,
            "the orders read model did not move after node B took over"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let projecting_again = cut.elapsed();
    let (status, code, in_flight_took) = read_in_flight.await.unwrap();
    assert!(
        status == 503 && code == "E_UNAVAILABLE",
        "the read in flight at the cut: {status} {code}"
    );
    assert!(
        in_flight_took <= read_bound() + SLACK,
        "the read in flight at the cut answered after {in_flight_took:?}; bound {:?}",
        read_bound()
    );
    let mut slowest_partitioned_read = Duration::ZERO;
    for (url, (status, code, took)) in reads_in_partition.await.unwrap() {
        assert!(
            status == 503 && code == "E_UNAVAILABLE",
            "{url} during the partition: {status} {code}"
        );
        assert!(
            took <= read_bound() + SLACK,
            "{url} during the partition answered after {took:?}; bound {:?}",
            read_bound()
        );
        slowest_partitioned_read = slowest_partitioned_read.max(took);
    }
    tokio::time::sleep(PARTITION_AFTER_TAKEOVER).await;

    network.heal();
    let healed = Instant::now();
    // Node A reads again: both reads answered 200.
    let reads_again = tokio::spawn({
        let (http, reads) = (http.clone(), reads_on_a.clone());
        async move {
            for (url, read_key) in &reads {
                loop {
                    let answer = http.get(url).bearer_auth(read_key).send().await;
                    if answer.is_ok_and(|a| a.status().as_u16() == 200) {
                        break;
                    }
                    assert!(
                        healed.elapsed() < Duration::from_secs(120),
                        "node A did not serve {url} within 120 s of the heal"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            healed.elapsed()
        }
    });
    // Node A answers again: a command acknowledged after the heal.
    let serving_again = loop {
        let order = format!("order-part-after-heal-{}", healed.elapsed().as_millis());
        let placed = http
            .post(format!("{}/v1/orders", node_a.url))
            .bearer_auth(&key)
            .json(
                &json!({"orderId": order, "amount": AMOUNT, "currency": "KRW",
                          "customerId": "cust_part", "payeeId": "payee_part",
                          "orderName": "After the heal"}),
            )
            .send()
            .await;
        let last_answer = match placed {
            Ok(answer) if answer.status().as_u16() == 201 => break healed.elapsed(),
            Ok(answer) => format!(
                "{} {}",
                answer.status(),
                answer.text().await.unwrap_or_default()
            ),
            Err(error) => error.to_string(),
        };
        if healed.elapsed() >= Duration::from_secs(120) {
            let log = std::fs::read_to_string(&log_a_path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            panic!(
                "node A did not serve a command within 120 s of the heal; its last answer: \
                 {last_answer}; the end of its log:\n{}",
                tail.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let reads_again = reads_again.await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop_load.store(true, Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    let mut failures = 0;
    for task in clients {
        let (commands, failed) = task.await.unwrap();
        acknowledged.extend(commands);
        failures += failed;
    }
    // Node B kept the runners; node A is their standby.
    assert_eq!(advisory_locks(&owner, NODE_B).await, locks_a);
    assert_eq!(advisory_locks(&owner, NODE_A).await, 0);
    assert_in_the_store(&owner, &acknowledged, "after the partition").await;

    // No two runners committed.
    let commits: Vec<CheckpointMove> = sqlx::query_as(
        "SELECT at, node, kind, name, old_position, new_position \
             FROM partition_test_commits ORDER BY kind, name, id",
    )
    .fetch_all(&owner)
    .await
    .unwrap();
    let mut by_runner: std::collections::BTreeMap<(String, String), Vec<_>> = Default::default();
    for (at, node, kind, name, old, new) in &commits {
        by_runner
            .entry((kind.clone(), name.clone()))
            .or_default()
            .push((*at, node.clone(), *old, *new));
    }
    let (mut commits_a, mut commits_b) = (0, 0);
    for ((kind, name), moves) in &by_runner {
        let mut b_seen = false;
        for pair in moves.windows(2) {
            if let (Some(old), previous_new) = (pair[1].2, pair[0].3) {
                assert_eq!(
                    old, previous_new,
                    "{kind} {name}: a move from {old} after one to {previous_new}: two writers"
                );
            }
        }
        for (at, node, _, _) in moves {
            match node.as_str() {
                NODE_A => {
                    commits_a += 1;
                    assert!(!b_seen, "{kind} {name}: node A committed after node B");
                    assert!(
                        *at < cut_at,
                        "{kind} {name}: node A committed at {at}, after the cut at {cut_at}"
                    );
                }
                NODE_B => {
                    commits_b += 1;
                    b_seen = true;
                }
                other => panic!("{kind} {name}: moved by {other:?}"),
            }
        }
    }
    assert!(commits_a > 0 && commits_b > 0, "{commits_a} / {commits_b}");

    // Failback: node B dies; node A, cut off a moment ago, must take every runner over again, so
    // none of its runners may still wait on a connection that died in the partition.
    drop(node_b);
    let killed = Instant::now();
    while advisory_locks(&owner, NODE_A).await != locks_a {
        assert!(
            killed.elapsed() < FAILBACK_LIMIT,
            "{:?} after node B died node A holds {} of {locks_a} runner locks: a runner is stuck \
             on a connection the partition killed",
            killed.elapsed(),
            advisory_locks(&owner, NODE_A).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let failback = killed.elapsed();
    // Still one chain per runner across all three hand-overs.
    let chains_broken: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT old_position, \
                lag(new_position) OVER (PARTITION BY kind, name ORDER BY id) AS previous \
              FROM partition_test_commits) m \
         WHERE old_position IS NOT NULL AND previous IS NOT NULL AND old_position <> previous",
    )
    .fetch_one(&owner)
    .await
    .unwrap();
    assert_eq!(
        chains_broken, 0,
        "a checkpoint moved from where another runner left it"
    );

    drop(node_a);
    wait_for_projections(&owner).await;
    let verify = run(payledger(&dir, None).args(["audit", "verify"]));
    assert!(verify.status.success(), "{}", stdout(&verify));
    let verify = run(payledger(&dir, None).args(["projections", "verify"]));
    assert!(
        verify.status.success(),
        "a read model differs from its rebuild: {}{}",
        stdout(&verify),
        String::from_utf8_lossy(&verify.stderr)
    );
    let placed = acknowledged
        .iter()
        .filter(|c| matches!(c, Acknowledged::Placed(_)))
        .count();
    println!(
        "partition: {locks_a} runner locks; node A's released {:.1} s after the cut (bound {:.0} s), \
         all taken over by node B after {:.1} s, orders projected past the cut's head after \
         {:.1} s; node A's read in flight at the cut answered 503 after {:.1} s, its reads \
         during the partition within {:.1} s (bound {:.0} s), \
         served again {:.1} s after the heal; node A served a command {:.1} s after the heal; \
         {} acknowledged commands \
         ({placed} placed) checked in the store, {failures} unacknowledged attempts; checkpoint \
         moves: {commits_a} by node A (all before the cut), {commits_b} by node B, one chain per \
         runner; node B killed after the heal: node A ran every runner again after {:.1} s; \
         {:.0} s in all",
        released.as_secs_f64(),
        release_bound().as_secs_f64(),
        taken_over.as_secs_f64(),
        projecting_again.as_secs_f64(),
        in_flight_took.as_secs_f64(),
        slowest_partitioned_read.as_secs_f64(),
        read_bound().as_secs_f64(),
        reads_again.as_secs_f64(),
        serving_again.as_secs_f64(),
        acknowledged.len(),
        failback.as_secs_f64(),
        started.elapsed().as_secs_f64(),
    );
    assert!(
        released <= release_bound() + SLACK,
        "node A's locks were released {released:?} after the cut; bound {:?}",
        release_bound()
    );
    assert!(
        taken_over <= released + STANDBY_RETRY + SLACK,
        "node B took over {taken_over:?} after the cut, {released:?} after the release"
    );
    assert!(
        reads_again <= READS_AGAIN_LIMIT,
        "node A served its reads again {reads_again:?} after the heal; limit {READS_AGAIN_LIMIT:?}"
    );
}
