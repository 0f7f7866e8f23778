//! `payledger bench`: the load generator and the rebuild benchmark, as CLI commands.

use crate::database::Database;
use anyhow::{bail, Context};
use payledger_bench::load::{self, Flow, LoadOptions};
use payledger_pgcluster::{ClusterOptions, ManagedCluster};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct LoadArgs {
    pub target: Option<String>,
    pub clients: usize,
    pub duration_s: u64,
    pub warmup_s: u64,
    /// Where a self-started server keeps its PostgreSQL.
    pub store_dir: PathBuf,
    /// Offered load in commands/s (open loop); `None` drives as fast as the server answers.
    pub rate_per_s: Option<f64>,
    /// Sample projector lag from the database while the load runs.
    pub measure_lag: bool,
    pub database_url: Option<String>,
    pub flow: Flow,
}

/// A server this command started; killed on drop.
struct OwnServer {
    child: Child,
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Peak resident memory of a process (`VmHWM`), in MiB, on Linux.
fn peak_memory_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// `PAYLEDGER_CLIENT_KEY` from the `api-keys.txt` a first `serve` wrote into `store_dir`.
fn first_client_key(store_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(store_dir.join(crate::keys::KEYS_FILE)).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("export PAYLEDGER_CLIENT_KEY="))
        .map(str::to_string)
}

async fn start_own_server(store_dir: &Path) -> anyhow::Result<(OwnServer, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let exe = std::env::current_exe().context("failed to find the payledger binary")?;
    let child = Command::new(exe)
        .arg("--data-dir")
        .arg(store_dir)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("failed to start payledger serve")?;
    let server = OwnServer { child };
    let target = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(120);
    let client = reqwest::Client::new();
    loop {
        if let Ok(response) = client.get(format!("{target}/readyz")).send().await {
            if response.status().is_success() {
                return Ok((server, target));
            }
        }
        if Instant::now() > deadline {
            bail!("the benchmark server did not become ready in 120 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn run_load(args: LoadArgs) -> anyhow::Result<()> {
    let mut api_key = crate::settings::var("PAYLEDGER_API_KEY").ok();
    // A cluster this run starts for its own server is stopped at the end: a fresh store per run
    // would otherwise leave one PostgreSQL running per run. One that already ran is left alone.
    let cluster_was_running = match &args.target {
        Some(_) => true,
        None => ManagedCluster::join_running(ClusterOptions::new(&args.store_dir))
            .await
            .context("failed to look for the benchmark's PostgreSQL cluster")?
            .is_some(),
    };
    let (server, target) = match args.target {
        Some(target) => (None, target.trim_end_matches('/').to_string()),
        None => {
            let (server, target) = start_own_server(&args.store_dir).await?;
            // The server created its first keys in its data directory; drive it as that client.
            if api_key.is_none() {
                api_key = first_client_key(&args.store_dir);
            }
            (Some(server), target)
        }
    };
    let what = match args.flow {
        Flow::PlaceAndConfirm => "place order + confirm payment",
        Flow::Healthz => "GET /healthz (HTTP alone: no database, no provider)",
    };
    eprintln!(
        "driving {target} with {} clients for {} s (+{} s warm-up): {what}",
        args.clients, args.duration_s, args.warmup_s
    );
    let lag_sampler = if args.measure_lag {
        let database = Database::open(args.database_url.as_deref(), None, &args.store_dir).await?;
        let pool = database.app_pool(2).await?;
        let warmup = Duration::from_secs(args.warmup_s);
        let duration = Duration::from_secs(args.duration_s.max(1));
        Some(tokio::spawn(sample_projector_lag(pool, warmup, duration)))
    } else {
        None
    };
    let report = load::run(LoadOptions {
        target,
        clients: args.clients,
        duration: Duration::from_secs(args.duration_s.max(1)),
        api_key,
        warmup: Duration::from_secs(args.warmup_s),
        rate_per_s: args.rate_per_s,
        flow: args.flow,
    })
    .await?;
    let lag = match lag_sampler {
        Some(task) => Some(task.await.context("the lag sampler failed")??),
        None => None,
    };
    let memory = server
        .as_ref()
        .and_then(|s| peak_memory_mib(s.child.id()))
        .map_or_else(
            || "n/a (server not started by the benchmark)".to_string(),
            |m| format!("{m:.1} MiB"),
        );
    // Stopped before printing: the summary stays the last line, after the cluster's own log.
    drop(server);
    if !cluster_was_running {
        stop_cluster(&args.store_dir).await?;
    }
    println!("commands        {}", report.commands);
    println!("errors          {}", report.errors);
    println!(
        "answers checked {} (orderId, amount, status, currency or captured amount and payment key), {} wrong",
        report.answers_checked, report.mismatches
    );
    if let Some(mismatch) = &report.first_mismatch {
        eprintln!("first wrong answer: {mismatch}");
    }
    println!("commands/s      {:.0}", report.commands_per_s);
    println!("p50             {:.2} ms", report.p50_ms);
    println!("p99             {:.2} ms", report.p99_ms);
    println!("p99.9           {:.2} ms", report.p999_ms);
    println!("max             {:.2} ms", report.max_ms);
    println!("server peak rss {memory}");
    if let Some(lag) = &lag {
        println!(
            "projector lag   p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} samples)",
            lag.p50_ms, lag.p99_ms, lag.max_ms, lag.samples
        );
    }
    let summary = match args.flow {
        Flow::PlaceAndConfirm => report.summary_line(),
        // Requests, not commands: the line must not pass for a command throughput.
        Flow::Healthz => report
            .summary_line()
            .replacen("commands_per_s", "requests_per_s", 1),
    };
    match lag {
        Some(lag) => println!("{summary} lag_p99_ms={:.1}", lag.p99_ms),
        None => println!("{summary}"),
    }
    Ok(())
}

async fn stop_cluster(store_dir: &Path) -> anyhow::Result<()> {
    if let Some(cluster) = ManagedCluster::join_running(ClusterOptions::new(store_dir))
        .await
        .context("failed to look for the benchmark's PostgreSQL cluster")?
    {
        tokio::task::spawn_blocking(move || cluster.stop())
            .await
            .context("failed to stop the benchmark's PostgreSQL cluster")??;
    }
    Ok(())
}

/// `bench fill`: the COPY loader, then the store's size.
pub async fn run_fill(
    events: i64,
    database_url: Option<&str>,
    migrate_url: Option<&str>,
    store_dir: &Path,
) -> anyhow::Result<()> {
    let database = Database::open(database_url, migrate_url, store_dir).await?;
    let owner = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect_with(database.owner.clone())
        .await
        .context("failed to connect as the schema owner (PAYLEDGER_MIGRATE_DATABASE_URL)")?;
    let started = Instant::now();
    let bar = indicatif::ProgressBar::new(events.max(0) as u64);
    let progress_bar = bar.clone();
    let filled = payledger_bench::rebuild::fill_fast(&owner, events, &move |now, _| {
        progress_bar.set_position(now.max(0) as u64);
    })
    .await?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    let (head, events_bytes, database_bytes): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT last_position FROM event_sequencer), \
                pg_total_relation_size('events'), pg_database_size(current_database())",
    )
    .fetch_one(&owner)
    .await?;
    println!(
        "filled {filled} events in {secs:.1} s ({:.0} events/s); the store holds {head}",
        filled as f64 / secs.max(f64::EPSILON)
    );
    let per_million = |bytes: i64| bytes as f64 / (head.max(1) as f64 / 1e6) / (1 << 20) as f64;
    println!(
        "events table {:.0} MiB ({:.0} MiB per million events, indexes included); database {:.0} MiB ({:.0} MiB per million)",
        events_bytes as f64 / (1 << 20) as f64,
        per_million(events_bytes),
        database_bytes as f64 / (1 << 20) as f64,
        per_million(database_bytes)
    );
    Ok(())
}

pub async fn run_rebuild(
    events: i64,
    database_url: Option<&str>,
    store_dir: &Path,
) -> anyhow::Result<()> {
    let database = Database::open(database_url, None, store_dir).await?;
    let pool = database.app_pool(8).await?;
    let started = Instant::now();
    let filled = payledger_bench::rebuild::fill(&pool, events).await?;
    if filled > 0 {
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "filled {filled} events in {secs:.1} s ({:.0} events/s appended with group commit)",
            filled as f64 / secs
        );
    } else {
        eprintln!(
            "reusing the store in {} (already holds ≥ {events} events)",
            store_dir.display()
        );
    }
    let bar = indicatif::ProgressBar::new(0);
    let progress_bar = bar.clone();
    let report = payledger_bench::rebuild::rebuild_all(&pool, &move |position, head| {
        progress_bar.set_length(head.max(0) as u64);
        progress_bar.set_position(position.max(0) as u64);
    })
    .await?;
    bar.finish_and_clear();
    println!(
        "rebuilt {} read models over {} events in {:.2} s",
        payledger_read_models::all_projections().len(),
        report.events,
        report.seconds
    );
    println!("{}", report.summary_line());
    Ok(())
}

pub struct LagReport {
    pub samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Every few milliseconds: how long ago was the oldest event that some projection has not yet
/// committed recorded (0 when all are caught up). Measured by the database's own clock.
async fn sample_projector_lag(
    pool: sqlx::PgPool,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<LagReport> {
    tokio::time::sleep(warmup).await;
    let stop_at = Instant::now() + duration;
    let mut samples: Vec<f64> = Vec::new();
    while Instant::now() < stop_at {
        // The oldest event some projection still has to commit follows the lowest checkpoint.
        let lag_ms = match payledger_projector::lowest_checkpoint(&pool).await? {
            Some(position) => payledger_store::age_ms_of(&pool, position + 1)
                .await?
                .unwrap_or(0.0),
            None => 0.0,
        };
        samples.push(lag_ms);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    samples.sort_by(f64::total_cmp);
    let quantile = |q: f64| {
        samples
            .get(((samples.len().max(1) - 1) as f64 * q).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    Ok(LagReport {
        samples: samples.len(),
        p50_ms: quantile(0.5),
        p99_ms: quantile(0.99),
        max_ms: quantile(1.0),
    })
}
