//! The HTTP load generator: N clients, each placing an order and confirming its payment in a
//! loop, against a running payledger with the sandbox provider; or, to measure what HTTP alone
//! costs on the machine, each asking `GET /healthz` in a loop.

use anyhow::{bail, Context};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What each client does in its loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flow {
    /// Place an order, then confirm its payment: two commands, three HTTP requests with the
    /// provider call.
    #[default]
    PlaceAndConfirm,
    /// `GET /healthz`: no database, no provider, no authentication. The ceiling of the HTTP
    /// stack itself (this client, the server's framework, the kernel's loopback) on the machine.
    Healthz,
}

#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Base URL of the server, e.g. `http://127.0.0.1:8080`.
    pub target: String,
    pub clients: usize,
    pub duration: Duration,
    /// Sent as `Authorization: Bearer …` when set.
    pub api_key: Option<String>,
    /// Measured from this long after the start (connections and caches warm up first).
    pub warmup: Duration,
    /// Total commands per second to offer, spread evenly over the clients; `None`: as fast as
    /// the server answers (closed loop).
    pub rate_per_s: Option<f64>,
    pub flow: Flow,
}

#[derive(Debug, Clone)]
pub struct LoadReport {
    pub commands: u64,
    pub errors: u64,
    pub seconds: f64,
    pub commands_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl LoadReport {
    /// The machine-readable last line.
    pub fn summary_line(&self) -> String {
        format!(
            "commands_per_s={:.0} p50_ms={:.2} p99_ms={:.2} p999_ms={:.2}",
            self.commands_per_s, self.p50_ms, self.p99_ms, self.p999_ms
        )
    }
}

/// Latencies of one client, in microseconds, and its error count.
struct ClientResult {
    latencies_us: Vec<u32>,
    errors: u64,
}

pub async fn run(options: LoadOptions) -> anyhow::Result<LoadReport> {
    if options.clients == 0 || options.clients > 4_096 {
        bail!("clients must be between 1 and 4096");
    }
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(key) = &options.api_key {
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {key}")
                .parse()
                .context("the API key is not a valid header value")?,
        );
    }
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .pool_max_idle_per_host(options.clients)
        .timeout(Duration::from_secs(30))
        .build()?;
    // Fail early and clearly when the target is not there.
    client
        .get(format!("{}/healthz", options.target))
        .send()
        .await
        .with_context(|| format!("failed to reach {}", options.target))?;

    let run_id = uuid::Uuid::now_v7().simple().to_string();
    let started = Instant::now();
    let measure_from = started + options.warmup;
    let stop_at = measure_from + options.duration;
    let options = Arc::new(options);
    let tasks: Vec<_> = (0..options.clients)
        .map(|client_index| {
            let client = client.clone();
            let options = options.clone();
            let run_id = run_id.clone();
            tokio::spawn(async move {
                drive_client(
                    client,
                    &options,
                    &run_id,
                    client_index,
                    measure_from,
                    stop_at,
                )
                .await
            })
        })
        .collect();
    let mut latencies_us: Vec<u32> = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let result = task.await.context("a load client panicked")?;
        latencies_us.extend(result.latencies_us);
        errors += result.errors;
    }
    let seconds = options.duration.as_secs_f64();
    latencies_us.sort_unstable();
    let quantile = |q: f64| -> f64 {
        if latencies_us.is_empty() {
            return 0.0;
        }
        let index = ((latencies_us.len() as f64 - 1.0) * q).round() as usize;
        f64::from(latencies_us[index]) / 1000.0
    };
    Ok(LoadReport {
        commands: latencies_us.len() as u64,
        errors,
        seconds,
        commands_per_s: latencies_us.len() as f64 / seconds,
        p50_ms: quantile(0.50),
        p99_ms: quantile(0.99),
        p999_ms: quantile(0.999),
        max_ms: quantile(1.0),
    })
}

async fn drive_client(
    client: reqwest::Client,
    options: &LoadOptions,
    run_id: &str,
    client_index: usize,
    measure_from: Instant,
    stop_at: Instant,
) -> ClientResult {
    let mut result = ClientResult {
        latencies_us: Vec::with_capacity(16_384),
        errors: 0,
    };
    let mut n = 0u64;
    // Open-loop pacing: each client sends a command every `interval`, so the offered load does
    // not drop when the server slows down.
    let interval = options
        .rate_per_s
        .filter(|r| *r > 0.0)
        .map(|rate| Duration::from_secs_f64(options.clients as f64 / rate));
    let mut next_send = Instant::now()
        + interval.map_or(Duration::ZERO, |i| {
            i.mul_f64((client_index as f64) / options.clients as f64)
        });
    while Instant::now() < stop_at {
        n += 1;
        let requests = match options.flow {
            Flow::PlaceAndConfirm => place_and_confirm(run_id, client_index, n),
            Flow::Healthz => vec![Request::get("/healthz")],
        };
        for request in &requests {
            if let Some(interval) = interval {
                tokio::time::sleep_until(next_send.into()).await;
                next_send += interval;
            }
            let sent = Instant::now();
            let url = format!("{}{}", options.target, request.path);
            let answer = match &request.body {
                Some(body) => client.post(url).json(body).send().await,
                None => client.get(url).send().await,
            };
            let ok = match answer {
                Ok(response) => {
                    let status = response.status().as_u16();
                    // Read the body: the command is done when its answer has arrived.
                    let _ = response.bytes().await;
                    status == request.expected_status
                }
                Err(_) => false,
            };
            let elapsed = sent.elapsed();
            if sent >= measure_from && Instant::now() <= stop_at {
                if ok {
                    let micros = u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX);
                    result.latencies_us.push(micros);
                } else {
                    result.errors += 1;
                }
            }
            if !ok {
                break;
            }
        }
    }
    result
}

/// One request of a client's loop and the status that counts as success.
struct Request {
    path: &'static str,
    body: Option<serde_json::Value>,
    expected_status: u16,
}

impl Request {
    fn get(path: &'static str) -> Request {
        Request {
            path,
            body: None,
            expected_status: 200,
        }
    }
}

/// The n-th order of a client: place it, then confirm its payment.
fn place_and_confirm(run_id: &str, client_index: usize, n: u64) -> Vec<Request> {
    // Letters between the numbers: digit groups joined by dashes could add up to something the
    // card-number screen refuses (docs/security.md#card-numbers).
    let order_id = format!("bench-{run_id}-c{client_index}n{n}");
    let amount = 10_000 + (n % 90_000) as i64;
    let place = json!({
        "orderId": order_id,
        "amount": amount,
        "currency": "KRW",
        "customerId": format!("bench_customer_{}", client_index % 1000),
        "payeeId": format!("bench_payee_{}", client_index % 50),
        "orderName": "Benchmark order"
    });
    let confirm = json!({
        "paymentKey": format!("pk_{order_id}"),
        "orderId": order_id,
        "amount": amount,
    });
    vec![
        Request {
            path: "/v1/orders",
            body: Some(place),
            expected_status: 201,
        },
        Request {
            path: "/v1/payments/confirm",
            body: Some(confirm),
            expected_status: 200,
        },
    ]
}
