//! Kill the server at any moment during confirms, refunds and a steady stream of new orders
//! (issues 3 and 7): after each restart every command answered 2xx is in the store; after a
//! reconciliation every order's ledger state equals the provider's, each order is charged at
//! most once, refunds never exceed the capture, `audit verify` passes and every read model equals
//! a rebuild from zero.
//!
//! Every other order pays through Stripe (`provider: stripe`, the sandbox's `/stripe` API), so
//! the guarantees are checked for both connectors.
//!
//! The sandbox runs as its own process (`payledger sandbox`), so its record of charges survives
//! every SIGKILL of `serve`; `sandbox_slow_{ms}_` payment keys (Toss) and `pm_sandbox_slow{ms}`
//! PaymentMethods (Stripe) hold answers back so kills land between the provider's charge and
//! payledger's record of it.

use crate::{free_port, payledger, run, serve_command, stdout, Server};
use payledger_testdb::TestDatabase;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const ORDERS: usize = 24;
const AMOUNT: i64 = 10_000;
const REFUND: i64 = 3_000;
const ROUNDS: u64 = 5;
/// Clients placing new orders back to back in every round, so the kill lands under load.
const PLACING_CLIENTS: usize = 8;
/// `Basic base64("test_sk_sandbox:")`.
const SANDBOX_AUTH: &str = "Basic dGVzdF9za19zYW5kYm94Og==";
/// The Stripe sandbox's secret key.
const STRIPE_AUTH: &str = "Bearer sk_test_sandbox";
/// Reconciliation passes after the kills before orders still awaiting an outcome fail the test.
const MAX_RECONCILE_PASSES: usize = 40;
/// Stripe test PaymentMethods whose answers come this many milliseconds after the charge.
const STRIPE_SLOW_MS: [u64; 4] = [100, 300, 600, 850];

pub(crate) struct Sandbox(pub Child);

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) async fn start_sandbox(dir: &Path) -> (Sandbox, String) {
    start_sandbox_on(dir, "127.0.0.1").await
}

/// The sandbox listening on `host` (an address of this machine), e.g. one a network namespace
/// reaches over its veth pair.
pub(crate) async fn start_sandbox_on(dir: &Path, host: &str) -> (Sandbox, String) {
    let port = free_port();
    let child = payledger(dir, None)
        .args(["sandbox", "--listen", &format!("{host}:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start payledger sandbox");
    let sandbox = Sandbox(child);
    let url = format!("http://{host}:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while sandbox_stats(&url).await.is_none() {
        assert!(Instant::now() < deadline, "the sandbox did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (sandbox, url)
}

pub(crate) async fn sandbox_stats(url: &str) -> Option<Value> {
    let response = reqwest::Client::new()
        .get(format!("{url}/sandbox/stats"))
        .header("authorization", SANDBOX_AUTH)
        .send()
        .await
        .ok()?;
    response.status().is_success().then_some(())?;
    response.json().await.ok()
}

/// Where the server under test runs: a test database (`urls`) or the managed cluster of `dir`
/// (`urls: None`), with `owner` the schema owner's pool for the checks and `env` extra settings
/// for `serve` (a replica URL in the soak).
pub(crate) struct Deployment {
    pub dir: std::path::PathBuf,
    pub urls: Option<(String, String)>,
    pub owner: sqlx::PgPool,
    pub env: Vec<(String, String)>,
}

impl Deployment {
    pub(crate) fn command(&self) -> std::process::Command {
        let urls = self.urls.as_ref().map(|(a, o)| (a.as_str(), o.as_str()));
        payledger(&self.dir, urls)
    }
}

async fn start_serve(deployment: &Deployment, sandbox_url: &str) -> Server {
    let mut command = deployment.command();
    command
        .env("PAYLEDGER_SANDBOX_URL", sandbox_url)
        .envs(deployment.env.iter().map(|(k, v)| (k, v)))
        .stderr(Stdio::null());
    let mut server = serve_command(command, &deployment.dir).await;
    if server.client_key.is_empty() {
        if let Some((_, client)) = crate::first_keys(&deployment.dir) {
            server.client_key = client;
        }
    }
    server
}

/// A small deterministic generator, so a failing run can be repeated from its seed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below.max(1)
    }
}

fn order_id(n: usize) -> String {
    format!("order-crash-{n:03}")
}

/// Odd orders pay through Stripe, even ones through Toss.
fn pays_with_stripe(n: usize) -> bool {
    n % 2 == 1
}

fn provider_of(n: usize) -> &'static str {
    if pays_with_stripe(n) {
        "stripe"
    } else {
        "toss"
    }
}

async fn stripe_get(url: &str) -> Value {
    reqwest::Client::new()
        .get(url)
        .header("authorization", STRIPE_AUTH)
        .send()
        .await
        .expect("ask the Stripe sandbox")
        .json()
        .await
        .expect("a JSON answer")
}

/// A command the server answered with success: it must be in the store from then on.
#[derive(Debug, Clone)]
pub(crate) enum Acknowledged {
    /// 201 to placing the order.
    Placed(String),
    /// 200 to a confirm: captured. (202 only says the outcome is not known yet.)
    Captured(String),
    /// 2xx to a refund: requested, and completed when the answer says so.
    Refund {
        order: String,
        refund_id: String,
        completed: bool,
    },
}

/// Fires confirms and refunds at the server, and keeps placing new orders until it dies;
/// each task returns what the server acknowledged.
fn drive(
    server: &Server,
    round: u64,
    random: &mut Lcg,
    delay_spread_ms: u64,
) -> Vec<tokio::task::JoinHandle<Vec<Acknowledged>>> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for n in 0..ORDERS {
        let (http, url, key) = (http.clone(), server.url.clone(), server.client_key.clone());
        // Provider answers take 50–899 ms and the kill comes 100–399 ms into a round, so in the
        // first round some confirms are always between the provider call and its record. (With
        // answers ≤ 450 ms and kills up to 600 ms, a fast server finished every call of the
        // first round before a late kill — and later rounds have little left in flight.)
        // Longer rounds (the soak) spread the answers over the whole round the same way.
        let delay_ms = 50 + random.next(delay_spread_ms);
        let payment_key = if pays_with_stripe(n) {
            let slow = STRIPE_SLOW_MS[random.next(STRIPE_SLOW_MS.len() as u64) as usize];
            format!("pm_sandbox_slow{slow}")
        } else {
            let order = order_id(n);
            format!("sandbox_slow_{delay_ms}_{order}_r{round}")
        };
        let order = order_id(n);
        tasks.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let confirm = json!({
                "paymentKey": payment_key,
                "orderId": order,
                "amount": AMOUNT,
            });
            let answer = http
                .post(format!("{url}/v1/payments/confirm"))
                .bearer_auth(&key)
                .json(&confirm)
                .send()
                .await;
            if answer.is_ok_and(|a| a.status().as_u16() == 200) {
                acknowledged.push(Acknowledged::Captured(order.clone()));
            }
            let refund_id = format!("rf-{round}");
            let refund = json!({"refundId": refund_id, "amount": REFUND, "reason": "crash test"});
            let answer = http
                .post(format!("{url}/v1/orders/{order}/refunds"))
                .bearer_auth(&key)
                .json(&refund)
                .send()
                .await;
            if let Ok(answer) = answer {
                if answer.status().is_success() {
                    let body: Value = answer.json().await.unwrap_or_default();
                    acknowledged.push(Acknowledged::Refund {
                        order: order.clone(),
                        refund_id,
                        completed: body["status"] == "COMPLETED",
                    });
                }
            }
            acknowledged
        }));
    }
    for client in 0..PLACING_CLIENTS {
        let (http, url, key) = (http.clone(), server.url.clone(), server.client_key.clone());
        tasks.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for n in 0.. {
                let order = format!("order-load-{round}-{client}-{n}");
                let placed = http
                    .post(format!("{url}/v1/orders"))
                    .bearer_auth(&key)
                    .json(
                        &json!({"orderId": order, "amount": AMOUNT, "currency": "KRW",
                                  "customerId": "cust_load", "payeeId": "payee_crash",
                                  "orderName": "Load"}),
                    )
                    .send()
                    .await;
                match placed {
                    Ok(answer) if answer.status().as_u16() == 201 => {
                        acknowledged.push(Acknowledged::Placed(order));
                    }
                    // The server is gone (or refusing while it dies): this client is done.
                    _ => break,
                }
            }
            acknowledged
        }));
    }
    tasks
}

/// Asserts that every acknowledged command is in the store, by its events: one query for all
/// placed and captured orders (the soak acknowledges hundreds of thousands), one per refund.
pub(crate) async fn assert_in_the_store(
    owner: &sqlx::PgPool,
    acknowledged: &[Acknowledged],
    after: &str,
) {
    let mut streams = Vec::new();
    let mut event_types = Vec::new();
    for command in acknowledged {
        let (stream, event_type, refund_id) = match command {
            Acknowledged::Placed(order) => (order, "OrderPlaced", None),
            Acknowledged::Captured(order) => (order, "PaymentCaptured", None),
            Acknowledged::Refund {
                order,
                refund_id,
                completed,
            } => {
                let event_type = if *completed {
                    "RefundCompleted"
                } else {
                    "RefundRequested"
                };
                (order, event_type, Some(refund_id.as_str()))
            }
        };
        let Some(refund_id) = refund_id else {
            streams.push(format!("order-{stream}"));
            event_types.push(event_type);
            continue;
        };
        let stored: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT FROM events WHERE stream_id = 'order-' || $1 \
               AND event_type = $2 AND payload->>'refundId' = $3)",
        )
        .bind(stream)
        .bind(event_type)
        .bind(refund_id)
        .fetch_one(owner)
        .await
        .unwrap();
        assert!(
            stored,
            "{command:?} was acknowledged but is not in the store {after}"
        );
    }
    let missing: Vec<(String, String)> = sqlx::query_as(
        "SELECT a.stream_id, a.event_type FROM unnest($1::text[], $2::text[]) \
           AS a(stream_id, event_type) \
         WHERE NOT EXISTS (SELECT FROM events e WHERE e.stream_id = a.stream_id \
                             AND e.event_type = a.event_type) \
         LIMIT 10",
    )
    .bind(&streams)
    .bind(&event_types)
    .fetch_all(owner)
    .await
    .unwrap();
    assert!(
        missing.is_empty(),
        "acknowledged but not in the store {after}: {missing:?}"
    );
}

/// The benchmark's flow (`payledger bench`): each client places an order and confirms its
/// payment in a loop, back to back, until the server dies; every answer counted is checked as the
/// load generator checks it (a wrong answer fails the test). Returns what was acknowledged.
fn drive_benchmark_flow(
    server: &Server,
    round: u64,
    clients: usize,
) -> Vec<tokio::task::JoinHandle<Vec<Acknowledged>>> {
    use payledger_bench::load::{Expected, ExpectedOutcome};
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(clients)
        .build()
        .unwrap();
    (0..clients)
        .map(|client| {
            let (http, url, key) = (http.clone(), server.url.clone(), server.client_key.clone());
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                for n in 0u64.. {
                    let order = format!("order-bench-r{round}c{client}n{n}");
                    let amount = 10_000 + (n % 90_000) as i64;
                    let placed = http
                        .post(format!("{url}/v1/orders"))
                        .bearer_auth(&key)
                        .json(
                            &json!({"orderId": order, "amount": amount, "currency": "KRW",
                                      "customerId": format!("bench_customer_{client}"),
                                      "payeeId": format!("bench_payee_{}", client % 50),
                                      "orderName": "Benchmark order"}),
                        )
                        .send()
                        .await;
                    let Ok(placed) = placed else { break };
                    if placed.status().as_u16() != 201 {
                        break;
                    }
                    let Ok(body) = placed.bytes().await else {
                        break;
                    };
                    let expected = Expected {
                        order_id: order.clone(),
                        amount,
                        outcome: ExpectedOutcome::Placed { currency: "KRW" },
                    };
                    if let Err(mismatch) = expected.check(&body) {
                        panic!("placing {order} was answered 201 with another order: {mismatch}");
                    }
                    acknowledged.push(Acknowledged::Placed(order.clone()));
                    let payment_key = format!("pk_{order}");
                    let paid = http
                        .post(format!("{url}/v1/payments/confirm"))
                        .bearer_auth(&key)
                        .json(&json!({"paymentKey": payment_key, "orderId": order,
                                      "amount": amount}))
                        .send()
                        .await;
                    let Ok(paid) = paid else { break };
                    match paid.status().as_u16() {
                        200 => {}
                        // Sent, outcome unknown: reconciliation settles it.
                        202 => continue,
                        _ => break,
                    }
                    let Ok(body) = paid.bytes().await else { break };
                    let expected = Expected {
                        order_id: order.clone(),
                        amount,
                        outcome: ExpectedOutcome::Paid { payment_key },
                    };
                    if let Err(mismatch) = expected.check(&body) {
                        panic!(
                            "confirming {order} was answered 200 with another payment: {mismatch}"
                        );
                    }
                    acknowledged.push(Acknowledged::Captured(order));
                }
                acknowledged
            })
        })
        .collect()
}

/// What the sandbox charged, by order id (Toss and Stripe together).
async fn provider_charges(sandbox_url: &str) -> HashMap<String, i64> {
    let stats = sandbox_stats(sandbox_url).await.unwrap();
    let mut charges: HashMap<String, i64> =
        serde_json::from_value(stats["chargesByOrderId"].clone()).unwrap();
    let stripe_stats = stripe_get(&format!("{sandbox_url}/stripe/sandbox/stats")).await;
    let stripe_charges: HashMap<String, i64> =
        serde_json::from_value(stripe_stats["chargesByOrderId"].clone()).unwrap();
    for (order, count) in stripe_charges {
        *charges.entry(order).or_insert(0) += count;
    }
    charges
}

/// After a kill: no order charged twice at the provider, every acknowledged capture charged, no
/// Toss payment refunded beyond the crash orders' amount. Returns how many charges it compared.
async fn assert_charged_once(
    sandbox_url: &str,
    acknowledged: &[Acknowledged],
    after: &str,
) -> usize {
    let charges = provider_charges(sandbox_url).await;
    for (order, count) in &charges {
        assert!(*count <= 1, "{order} was charged {count} times {after}");
    }
    for command in acknowledged {
        if let Acknowledged::Captured(order) = command {
            assert_eq!(
                charges.get(order).copied().unwrap_or(0),
                1,
                "{order}'s capture was acknowledged but the provider has no charge {after}"
            );
        }
    }
    let stats = sandbox_stats(sandbox_url).await.unwrap();
    let cancelled: HashMap<String, i64> =
        serde_json::from_value(stats["canceledAmountByPaymentKey"].clone()).unwrap();
    for (key, amount) in cancelled {
        assert!(
            amount <= AMOUNT,
            "{key}: {amount} refunded of at most {AMOUNT} captured {after}"
        );
    }
    charges.len()
}

#[tokio::test]
async fn killing_serve_mid_confirm_and_refund_loses_nothing_and_charges_once() {
    let db = TestDatabase::fresh().await;
    let dir = tempfile::tempdir().unwrap();
    let deployment = Deployment {
        dir: dir.path().to_path_buf(),
        urls: Some((db.app_url.clone(), db.owner_url.clone())),
        owner: db.owner_pool.clone(),
        env: Vec::new(),
    };
    let report = kill_rounds(
        &deployment,
        ROUNDS,
        (100, 300),
        &SoakLoad::default(),
        &mut |_| Box::pin(async {}),
    )
    .await;
    println!("{report:?}");
}

/// Load and checks on top of the crash test's, for the soak.
#[derive(Debug, Default)]
pub(crate) struct SoakLoad {
    /// Clients running the benchmark's place + confirm flow back to back in every round.
    pub benchmark_clients: usize,
    /// `audit verify` and `projections verify` after every this many kills (and at the end).
    pub verify_every: Option<u64>,
}

/// What a run of kills checked.
#[derive(Debug, Default)]
pub(crate) struct KillReport {
    pub kills: u64,
    pub acknowledged_commands_checked: usize,
    /// Acknowledged commands checked in the store, summed over every kill (each check covers
    /// every command acknowledged so far).
    pub store_checks: usize,
    /// Orders' charges compared with the provider, summed over every kill.
    pub charge_checks: usize,
    /// Orders of the benchmark's flow compared with the provider at the end.
    pub benchmark_orders_compared: usize,
    /// `audit verify` + `projections verify` passes during the run.
    pub verifications: u64,
    pub orders_compared_with_the_provider: usize,
    pub provider_charges: i64,
    pub reconciled_outcomes: i64,
}

/// The crash test's body, `rounds` times: load, SIGKILL of `serve` at a random moment
/// (`kill_after_ms` plus up to `kill_spread_ms` into the round), restart,
/// every acknowledged command checked in the store; `between_rounds(round)` runs after each
/// restart (the soak restarts PostgreSQL and the replica there). Then reconciliation and every
/// final check: one charge per order at the sandbox, refunds ≤ captures and equal to the
/// provider's, chains verify, read models equal a rebuild.
pub(crate) async fn kill_rounds(
    deployment: &Deployment,
    rounds: u64,
    (kill_after_ms, kill_spread_ms): (u64, u64),
    soak: &SoakLoad,
    between_rounds: &mut dyn FnMut(u64) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>,
) -> KillReport {
    let (_sandbox, sandbox_url) = start_sandbox(&deployment.dir).await;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("crash test seed {seed}");
    let mut random = Lcg(seed);
    let db_owner = &deployment.owner;

    let mut server = start_serve(deployment, &sandbox_url).await;
    for n in 0..ORDERS {
        let placed = server
            .http()
            .post(format!("{}/v1/orders", server.url))
            .json(
                &json!({"orderId": order_id(n), "amount": AMOUNT, "currency": "KRW",
                          "customerId": "cust_crash", "payeeId": "payee_crash",
                          "orderName": "Crash class", "provider": provider_of(n)}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(placed.status().as_u16(), 201);
    }
    let mut acknowledged = Vec::new();
    let mut kill_report = KillReport::default();
    for round in 0..rounds {
        let mut tasks = drive(
            &server,
            round,
            &mut random,
            kill_after_ms + kill_spread_ms + 450,
        );
        tasks.extend(drive_benchmark_flow(&server, round, soak.benchmark_clients));
        let kill_at_ms = kill_after_ms + random.next(kill_spread_ms);
        tokio::time::sleep(Duration::from_millis(kill_at_ms)).await;
        drop(server); // SIGKILL, whatever it is doing
        kill_report.kills += 1;
        for task in tasks {
            acknowledged.extend(task.await.unwrap());
        }
        server = start_serve(deployment, &sandbox_url).await;
        let after = format!("after restart {}", round + 1);
        assert_in_the_store(db_owner, &acknowledged, &after).await;
        kill_report.store_checks += acknowledged.len();
        kill_report.charge_checks += assert_charged_once(&sandbox_url, &acknowledged, &after).await;
        if soak
            .verify_every
            .is_some_and(|every| round % every == every - 1)
        {
            verify_chains_and_read_models(deployment, &after);
            kill_report.verifications += 1;
        }
        between_rounds(round).await;
    }
    kill_report.acknowledged_commands_checked = acknowledged.len();
    let placed_under_load = acknowledged
        .iter()
        .filter(|c| matches!(c, Acknowledged::Placed(_)))
        .count();
    println!(
        "acknowledged before the kills: {} commands, {placed_under_load} of them new orders",
        acknowledged.len()
    );
    assert!(
        placed_under_load > 0,
        "no order was placed while the server was killed: the load never ran"
    );
    // Answers the sandbox held back are all given by now (delays < 900 ms).
    tokio::time::sleep(Duration::from_millis(1_000)).await;

    // Reconcile from the read model's candidates: let it catch up with the log first.
    // A pass looks at most 500 orders (the soak leaves thousands waiting), and the running
    // server's own reconciler may settle an order between this pass's read and its command (an
    // error of that pass, nothing changed): passes run until one finds nothing left to settle,
    // and that last pass must be clean.
    let mut passes = 0;
    loop {
        wait_for_projections(db_owner).await;
        let reconcile = run(deployment
            .command()
            .env("PAYLEDGER_SANDBOX_URL", &sandbox_url)
            .args(["reconcile", "--older-than-s", "0"]));
        assert!(
            reconcile.status.success(),
            "{}",
            String::from_utf8_lossy(&reconcile.stderr)
        );
        let report: Value = serde_json::from_str(stdout(&reconcile).trim()).unwrap();
        println!("reconcile report {report}");
        passes += 1;
        if report["examined"] == 0 || passes == MAX_RECONCILE_PASSES {
            assert_eq!(report["examined"], 0, "orders still awaiting an outcome");
            break;
        }
        if report["errors"] != 0 {
            eprintln!("{}", String::from_utf8_lossy(&reconcile.stderr));
        }
    }
    // Kills landed between a provider call and its record: the test exercised what it claims.
    // Such outcomes are settled by reconciliation and say so in the log.
    let reconciled: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE stream_id LIKE 'order-%' AND payload->>'source' = 'reconciler'",
    )
    .fetch_one(db_owner)
    .await
    .unwrap();
    println!("outcomes settled by reconciliation: {reconciled}");
    kill_report.reconciled_outcomes = reconciled;
    assert!(
        reconciled > 0,
        "no outcome was settled by reconciliation: no kill landed between a provider call and \
         its record ({passes} reconciliation passes)"
    );
    wait_for_projections(db_owner).await;

    let stats = sandbox_stats(&sandbox_url).await.unwrap();
    let mut charges: HashMap<String, i64> =
        serde_json::from_value(stats["chargesByOrderId"].clone()).unwrap();
    let stripe_stats = stripe_get(&format!("{sandbox_url}/stripe/sandbox/stats")).await;
    let stripe_charges: HashMap<String, i64> =
        serde_json::from_value(stripe_stats["chargesByOrderId"].clone()).unwrap();
    for (order, count) in stripe_charges {
        *charges.entry(order).or_insert(0) += count;
    }
    let cancelled: HashMap<String, i64> =
        serde_json::from_value(stats["canceledAmountByPaymentKey"].clone()).unwrap();
    let rows: Vec<(String, String, Option<String>, i64, i64, i64)> = sqlx::query_as(
        "SELECT order_id, status, payment_key, captured_minor, refunded_minor, refund_pending_minor \
         FROM rm.orders WHERE order_id LIKE 'order-crash-%' ORDER BY order_id",
    )
    .fetch_all(db_owner)
    .await
    .unwrap();
    assert_eq!(rows.len(), ORDERS);
    kill_report.benchmark_orders_compared =
        compare_benchmark_orders(db_owner, &charges, &acknowledged).await;
    kill_report.orders_compared_with_the_provider = rows.len();
    kill_report.provider_charges = charges.values().sum();
    let mut paid = 0;
    let mut paid_with_stripe = 0;
    for (order, status, payment_key, captured, refunded, pending) in rows {
        let charged = charges.get(&order).copied().unwrap_or(0);
        assert!(charged <= 1, "{order} was charged {charged} times");
        assert!(
            !matches!(status.as_str(), "CONFIRMING" | "OUTCOME_UNKNOWN"),
            "{order} is still {status} after reconciliation"
        );
        assert_eq!(
            pending, 0,
            "{order} has refunds in flight after reconciliation"
        );
        let is_paid = matches!(status.as_str(), "PAID" | "PARTIALLY_REFUNDED" | "REFUNDED");
        assert_eq!(
            is_paid,
            charged == 1,
            "{order}: ledger {status}, provider charges {charged}"
        );
        if is_paid {
            paid += 1;
            assert_eq!(captured, AMOUNT, "{order}");
            let key = payment_key.unwrap_or_default();
            let provider_refunded = if key.starts_with("pi_") {
                paid_with_stripe += 1;
                let intent = stripe_get(&format!(
                    "{sandbox_url}/stripe/v1/payment_intents/{key}?expand[]=latest_charge"
                ))
                .await;
                intent["latest_charge"]["amount_refunded"]
                    .as_i64()
                    .unwrap_or(0)
            } else {
                cancelled.get(&key).copied().unwrap_or(0)
            };
            assert_eq!(
                refunded, provider_refunded,
                "{order}: refunds differ from the provider's"
            );
            assert!(
                refunded <= captured,
                "{order}: refunded {refunded} of {captured}"
            );
        } else {
            assert_eq!((captured, refunded), (0, 0), "{order}");
        }
    }
    assert!(paid > 0, "no payment went through: the test proved nothing");
    assert!(
        paid_with_stripe > 0,
        "no Stripe payment went through: the test proved nothing for Stripe"
    );
    drop(server);

    // Every read model, after the SIGKILLs mid-batch, equals a rebuild from zero up to its
    // checkpoint, and every chain verifies.
    verify_chains_and_read_models(deployment, "at the end");
    kill_report.verifications += 1;
    kill_report
}

/// `audit verify` (every chain, position and journal entry) and `projections verify` (every read
/// model equals a rebuild up to its checkpoint); `serve` may be running.
fn verify_chains_and_read_models(deployment: &Deployment, after: &str) {
    let verify = run(deployment.command().args(["audit", "verify"]));
    assert!(
        verify.status.success(),
        "audit verify failed {after}: {}",
        stdout(&verify)
    );
    let verify = run(deployment.command().args(["projections", "verify"]));
    assert!(
        verify.status.success(),
        "a read model differs from its rebuild {after}: {}{}",
        stdout(&verify),
        String::from_utf8_lossy(&verify.stderr)
    );
    assert_eq!(
        stdout(&verify).lines().count(),
        payledger_read_models::all_projections().len(),
        "one report per read model: {}",
        stdout(&verify)
    );
}

/// After reconciliation: every order of the benchmark's flow is paid in the ledger exactly when
/// the provider charged it once, for its own amount; returns how many orders were compared.
async fn compare_benchmark_orders(
    owner: &sqlx::PgPool,
    charges: &HashMap<String, i64>,
    acknowledged: &[Acknowledged],
) -> usize {
    let rows: Vec<(String, String, i64, i64, i64)> = sqlx::query_as(
        "SELECT order_id, status, amount_minor, captured_minor, refunded_minor FROM rm.orders \
         WHERE order_id LIKE 'order-bench-%'",
    )
    .fetch_all(owner)
    .await
    .unwrap();
    let placed = acknowledged
        .iter()
        .filter(|c| matches!(c, Acknowledged::Placed(o) if o.starts_with("order-bench-")))
        .count();
    assert!(rows.len() >= placed, "{} rows, {placed} placed", rows.len());
    for (order, status, amount, captured, refunded) in &rows {
        let charged = charges.get(order).copied().unwrap_or(0);
        assert!(charged <= 1, "{order} was charged {charged} times");
        assert!(
            !matches!(status.as_str(), "CONFIRMING" | "OUTCOME_UNKNOWN"),
            "{order} is still {status} after reconciliation"
        );
        let paid = status == "PAID";
        assert_eq!(
            paid,
            charged == 1,
            "{order}: ledger {status}, provider charges {charged}"
        );
        assert_eq!(*captured, if paid { *amount } else { 0 }, "{order}");
        assert_eq!(*refunded, 0, "{order}");
    }
    rows.len()
}

pub(crate) async fn wait_for_projections(owner: &sqlx::PgPool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let behind: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM projection_checkpoints \
             WHERE name = 'orders' AND position < (SELECT last_position FROM event_sequencer)",
        )
        .fetch_one(owner)
        .await
        .unwrap();
        if behind == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the orders projection did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
