//! The HTTP load generator: N clients, each placing an order and confirming its payment in a
//! loop, against a running payledger with the sandbox provider; or, to measure what HTTP alone
//! costs on the machine, each asking `GET /healthz` in a loop.
//!
//! It drives any server that speaks the same API (the peer of `../shared/bench/run-http-peer.sh`
//! too) the same way, and counts a command only when its answer is right, not merely 2xx: the
//! placed order must come back with the id, amount and currency sent and status `READY`; the
//! confirm with the order's id, status `PAID`, the captured amount equal to the order's and the
//! payment key sent. A wrong answer is an error and a mismatch; the report says how many answers
//! were checked.

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
    /// Commands answered with the expected status and a body that says what was asked, inside
    /// the measured window.
    pub commands: u64,
    /// Failed, refused or wrong answers inside the measured window.
    pub errors: u64,
    /// Answers whose body was checked, warm-up included.
    pub answers_checked: u64,
    /// Checked answers that said something else than what was asked, warm-up included.
    pub mismatches: u64,
    /// What the first mismatch was, for the operator.
    pub first_mismatch: Option<String>,
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
            "commands_per_s={:.0} p50_ms={:.2} p99_ms={:.2} p999_ms={:.2} answers_checked={} \
             mismatches={}",
            self.commands_per_s,
            self.p50_ms,
            self.p99_ms,
            self.p999_ms,
            self.answers_checked,
            self.mismatches
        )
    }
}

/// Latencies of one client, in microseconds, its error count and its answers' checks.
struct ClientResult {
    latencies_us: Vec<u32>,
    errors: u64,
    checked: u64,
    mismatches: u64,
    first_mismatch: Option<String>,
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
    // Fail early and clearly when the target is not there or not ready: `/readyz` answers 200
    // only when the server can reach its database (payledger's and the peer's alike).
    let ready = client
        .get(format!("{}/readyz", options.target))
        .send()
        .await
        .with_context(|| format!("failed to reach {}", options.target))?;
    if !ready.status().is_success() {
        bail!(
            "{} is not ready: GET /readyz answered {}",
            options.target,
            ready.status()
        );
    }

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
    let (mut errors, mut answers_checked, mut mismatches) = (0, 0, 0);
    let mut first_mismatch = None;
    for task in tasks {
        let result = task.await.context("a load client panicked")?;
        latencies_us.extend(result.latencies_us);
        errors += result.errors;
        answers_checked += result.checked;
        mismatches += result.mismatches;
        first_mismatch = first_mismatch.or(result.first_mismatch);
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
        answers_checked,
        mismatches,
        first_mismatch,
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
        checked: 0,
        mismatches: 0,
        first_mismatch: None,
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
                    let body = response.bytes().await;
                    match (&request.expect, body) {
                        _ if status != request.expected_status => false,
                        (None, body) => body.is_ok(),
                        (Some(expect), Ok(body)) => {
                            result.checked += 1;
                            match expect.check(&body) {
                                Ok(()) => true,
                                Err(mismatch) => {
                                    result.mismatches += 1;
                                    result.first_mismatch.get_or_insert_with(|| {
                                        format!("{} {}: {mismatch}", request.path, expect.order_id)
                                    });
                                    false
                                }
                            }
                        }
                        (Some(_), Err(_)) => false,
                    }
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

/// One request of a client's loop, the status that counts as success and what its body must say.
struct Request {
    path: &'static str,
    body: Option<serde_json::Value>,
    expected_status: u16,
    expect: Option<Expected>,
}

impl Request {
    fn get(path: &'static str) -> Request {
        Request {
            path,
            body: None,
            expected_status: 200,
            expect: None,
        }
    }
}

/// What the answer to a command must say about its order.
#[derive(Debug, Clone, PartialEq)]
pub struct Expected {
    pub order_id: String,
    pub amount: i64,
    pub outcome: ExpectedOutcome,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExpectedOutcome {
    /// The order as placed: status `READY`, currency as sent.
    Placed { currency: &'static str },
    /// The order paid: status `PAID`, `capturedAmount` = the amount, `paymentKey` as sent.
    Paid { payment_key: String },
}

impl Expected {
    /// `Ok` when `body` is the order this command should have produced; otherwise what differs.
    pub fn check(&self, body: &[u8]) -> Result<(), String> {
        let order: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| format!("the answer is not JSON: {e}"))?;
        let mut differences = Vec::new();
        let mut differ = |field: &str, expected: serde_json::Value| {
            if order.get(field) != Some(&expected) {
                differences.push(format!(
                    "{field} {} (expected {expected})",
                    order.get(field).unwrap_or(&serde_json::Value::Null)
                ));
            }
        };
        differ("orderId", json!(self.order_id));
        differ("amount", json!(self.amount));
        match &self.outcome {
            ExpectedOutcome::Placed { currency } => {
                differ("status", json!("READY"));
                differ("currency", json!(currency));
            }
            ExpectedOutcome::Paid { payment_key } => {
                differ("status", json!("PAID"));
                differ("capturedAmount", json!(self.amount));
                differ("paymentKey", json!(payment_key));
            }
        }
        if differences.is_empty() {
            Ok(())
        } else {
            Err(differences.join(", "))
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
    let payment_key = format!("pk_{order_id}");
    let confirm = json!({
        "paymentKey": payment_key,
        "orderId": order_id,
        "amount": amount,
    });
    vec![
        Request {
            path: "/v1/orders",
            body: Some(place),
            expected_status: 201,
            expect: Some(Expected {
                order_id: order_id.clone(),
                amount,
                outcome: ExpectedOutcome::Placed { currency: "KRW" },
            }),
        },
        Request {
            path: "/v1/payments/confirm",
            body: Some(confirm),
            expected_status: 200,
            expect: Some(Expected {
                order_id,
                amount,
                outcome: ExpectedOutcome::Paid { payment_key },
            }),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placed() -> Expected {
        Expected {
            order_id: "bench-1".into(),
            amount: 10_500,
            outcome: ExpectedOutcome::Placed { currency: "KRW" },
        }
    }

    #[test]
    fn the_order_as_placed_passes() {
        let body = json!({"orderId": "bench-1", "status": "READY", "amount": 10_500,
                          "currency": "KRW", "capturedAmount": 0});
        assert_eq!(placed().check(body.to_string().as_bytes()), Ok(()));
    }

    #[test]
    fn another_amount_id_status_or_currency_is_a_mismatch() {
        for (field, wrong) in [
            ("orderId", json!("bench-2")),
            ("amount", json!(10_501)),
            ("status", json!("PAID")),
            ("currency", json!("USD")),
        ] {
            let mut body = json!({"orderId": "bench-1", "status": "READY", "amount": 10_500,
                                  "currency": "KRW"});
            body[field] = wrong;
            let error = placed().check(body.to_string().as_bytes()).unwrap_err();
            assert!(error.starts_with(field), "{field}: {error}");
        }
        let error = placed().check(b"not json").unwrap_err();
        assert!(error.contains("not JSON"), "{error}");
        let error = placed().check(b"{}").unwrap_err();
        assert!(error.contains("orderId null"), "{error}");
    }

    #[test]
    fn a_confirm_must_say_paid_with_the_amount_captured_and_the_key_sent() {
        let paid = Expected {
            order_id: "bench-1".into(),
            amount: 10_500,
            outcome: ExpectedOutcome::Paid {
                payment_key: "pk_bench-1".into(),
            },
        };
        let right = json!({"orderId": "bench-1", "status": "PAID", "amount": 10_500,
                           "capturedAmount": 10_500, "paymentKey": "pk_bench-1"});
        assert_eq!(paid.check(right.to_string().as_bytes()), Ok(()));
        for (field, wrong) in [
            ("status", json!("OUTCOME_UNKNOWN")),
            ("capturedAmount", json!(0)),
            ("paymentKey", json!("pk_other")),
        ] {
            let mut body = right.clone();
            body[field] = wrong;
            let error = paid.check(body.to_string().as_bytes()).unwrap_err();
            assert!(error.starts_with(field), "{field}: {error}");
        }
    }
}
