//! The service-level dashboard: the runbook's figures (payment success rate, confirm latency
//! p95, amount-mismatch and discrepancy rates, webhook failures, dead letters, projector lag)
//! over a chosen period, with charts drawn here as inline SVG (no script, no external asset).
//!
//! Two sources, each for what it can answer:
//! - **the log** (over the period, any process): `PaymentConfirmationStarted`,
//!   `PaymentCaptured`, `PaymentFailed`, `ConfirmationRejected` (an amount mismatch),
//!   `PaymentDiscrepancyRecorded` and `RefundDiscrepancyRecorded`, by commit time ([`payledger_store::recent`]). A confirmation's
//!   latency is its outcome's commit time minus its start's: the provider call plus the appends,
//!   which is what a client waits for less the request's parsing;
//! - **this process's metrics** (since it started, as `/metrics` exports them): webhook
//!   processing and delivery failures, refused webhooks, and the mean confirm latency of the
//!   HTTP histogram. Counters reset when the process restarts; Prometheus keeps their history.
//!
//! Rates are integer basis points; nothing here is money.

use crate::pages::Time;
use chrono::{DateTime, Duration, Utc};
use payledger_metrics::{OutcomeLabels, WebhookLabels};
use std::collections::HashMap;

/// The periods offered: name, length, buckets in the charts.
pub const PERIODS: &[(&str, i64, i64)] = &[
    ("1h", 3600, 12),
    ("6h", 6 * 3600, 12),
    ("24h", 24 * 3600, 24),
    ("7d", 7 * 24 * 3600, 28),
];
pub const DEFAULT_PERIOD: &str = "6h";

/// The runbook's targets (docs/operations.md, "Alerts").
const SUCCESS_TARGET_BP: i64 = 9_900;
const CONFIRM_P95_TARGET_MS: i64 = 1_500;
const MISMATCH_TARGET_BP: i64 = 10;

const TYPES: &[&str] = &[
    "PaymentConfirmationStarted",
    "PaymentCaptured",
    "PaymentFailed",
    "ConfirmationRejected",
    "PaymentDiscrepancyRecorded",
    "RefundDiscrepancyRecorded",
];

#[derive(Debug, Clone, Default)]
struct Bucket {
    started: i64,
    captured: i64,
    failed: i64,
    rejected: i64,
    discrepancies: i64,
    latencies_ms: Vec<i64>,
}

/// A rate as text, `99.50 %`, or `—` without a denominator.
fn rate_text(numerator: i64, denominator: i64) -> (String, Option<i64>) {
    if denominator <= 0 {
        return ("—".to_string(), None);
    }
    let bp = numerator.saturating_mul(10_000) / denominator;
    (format!("{}.{:02} %", bp / 100, bp % 100), Some(bp))
}

/// Nearest-rank 95th percentile.
fn p95(latencies_ms: &[i64]) -> Option<i64> {
    if latencies_ms.is_empty() {
        return None;
    }
    let mut sorted = latencies_ms.to_vec();
    sorted.sort_unstable();
    let rank = (sorted.len() * 95).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

/// One figure: its value, and whether it meets its target (`None`: no target or no data).
pub struct Figure {
    pub key: &'static str,
    pub value: String,
    pub target: String,
    pub ok: Option<bool>,
}

pub struct Rect {
    pub x: i64,
    pub y: i64,
    pub w: i64,
    pub h: i64,
    pub fill: &'static str,
    pub title: String,
}

pub struct Dot {
    pub x: i64,
    pub y: i64,
    pub title: String,
}

/// A chart's drawing, in the SVG's own units.
pub struct Chart {
    pub bars: Vec<Rect>,
    pub points: String,
    pub dots: Vec<Dot>,
    pub threshold_y: Option<i64>,
    pub y_max: String,
    pub x_labels: Vec<(i64, String)>,
}

pub struct BucketRow {
    pub start: Time,
    pub captured: i64,
    pub failed: i64,
    pub success: String,
    pub rejected: i64,
    pub discrepancies: i64,
    pub p95: String,
}

pub struct Slo {
    pub period: &'static str,
    pub periods: Vec<(&'static str, bool)>,
    pub from: Time,
    pub to: Time,
    pub figures: Vec<Figure>,
    pub process: Vec<Figure>,
    pub volume: Chart,
    pub latency: Chart,
    pub rows: Vec<BucketRow>,
    pub truncated: bool,
}

pub const CHART_WIDTH: i64 = 720;
pub const CHART_HEIGHT: i64 = 220;
const PLOT_LEFT: i64 = 56;
const PLOT_RIGHT: i64 = 8;
const PLOT_TOP: i64 = 10;
const PLOT_BOTTOM: i64 = 30;

const CAPTURED_FILL: &str = "#17612c";
const FAILED_FILL: &str = "#a4161a";
const MISMATCH_FILL: &str = "#8a4b00";

fn plot_height() -> i64 {
    CHART_HEIGHT - PLOT_TOP - PLOT_BOTTOM
}

fn slot(index: usize, count: usize) -> (i64, i64) {
    let plot_width = CHART_WIDTH - PLOT_LEFT - PLOT_RIGHT;
    let count = count.max(1) as i64;
    let x = PLOT_LEFT + plot_width * index as i64 / count;
    let next = PLOT_LEFT + plot_width * (index as i64 + 1) / count;
    (x, next - x)
}

fn scaled(value: i64, max: i64) -> i64 {
    plot_height() * value / max.max(1)
}

fn x_labels(starts: &[DateTime<Utc>], zone: chrono_tz::Tz, long: bool) -> Vec<(i64, String)> {
    let count = starts.len();
    let every = (count / 4).max(1);
    starts
        .iter()
        .enumerate()
        .filter(|(i, _)| i % every == 0)
        .map(|(i, at)| {
            let (x, _) = slot(i, count);
            let local = at.with_timezone(&zone);
            let format = if long { "%m-%d %H:%M" } else { "%H:%M" };
            (x, local.format(format).to_string())
        })
        .collect()
}

/// The dashboard over `period` (one of [`PERIODS`]; anything else is the default).
pub async fn dashboard(
    state: &payledger_http::AppState,
    period: &str,
    zone: chrono_tz::Tz,
) -> Result<Slo, payledger_store::ReadError> {
    let (period, period_s, bucket_count) = PERIODS
        .iter()
        .copied()
        .find(|(name, _, _)| *name == period)
        .or_else(|| {
            PERIODS
                .iter()
                .copied()
                .find(|(n, _, _)| *n == DEFAULT_PERIOD)
        })
        .unwrap_or(PERIODS[0]);
    let recent = payledger_store::recent::recent_events_of_types(
        &state.read_pool,
        TYPES,
        period_s,
        payledger_store::recent::MAX_RECENT_EVENTS,
    )
    .await?;
    let from = recent.now - Duration::seconds(period_s);
    let bucket_s = period_s / bucket_count;
    let mut buckets = vec![Bucket::default(); bucket_count as usize];
    let index_of = |at: DateTime<Utc>| {
        let offset = (at - from).num_seconds().clamp(0, period_s - 1);
        (offset / bucket_s).clamp(0, bucket_count - 1) as usize
    };
    let mut pending: HashMap<&str, DateTime<Utc>> = HashMap::new();
    for event in &recent.events {
        let bucket = &mut buckets[index_of(event.recorded_at)];
        match event.event_type.as_str() {
            "PaymentConfirmationStarted" => {
                bucket.started += 1;
                pending.insert(event.stream_id.as_str(), event.recorded_at);
            }
            "PaymentCaptured" | "PaymentFailed" => {
                if event.event_type == "PaymentCaptured" {
                    bucket.captured += 1;
                } else {
                    bucket.failed += 1;
                }
                if let Some(started) = pending.remove(event.stream_id.as_str()) {
                    bucket
                        .latencies_ms
                        .push((event.recorded_at - started).num_milliseconds().max(0));
                }
            }
            "ConfirmationRejected" => bucket.rejected += 1,
            // A refund request the provider reports differently is a provider discrepancy too.
            "PaymentDiscrepancyRecorded" | "RefundDiscrepancyRecorded" => bucket.discrepancies += 1,
            _ => {}
        }
    }
    let starts: Vec<DateTime<Utc>> = (0..bucket_count)
        .map(|i| from + Duration::seconds(i * bucket_s))
        .collect();

    // Over the period.
    let sum = |f: fn(&Bucket) -> i64| buckets.iter().map(f).sum::<i64>();
    let (captured, failed, started, rejected, discrepancies) = (
        sum(|b| b.captured),
        sum(|b| b.failed),
        sum(|b| b.started),
        sum(|b| b.rejected),
        sum(|b| b.discrepancies),
    );
    let all_latencies: Vec<i64> = buckets
        .iter()
        .flat_map(|b| b.latencies_ms.iter().copied())
        .collect();
    let (success, success_bp) = rate_text(captured, captured + failed);
    let (mismatch, mismatch_bp) = rate_text(rejected, started + rejected);
    let (discrepancy_rate, _) = rate_text(discrepancies, captured + failed);
    let period_p95 = p95(&all_latencies);
    let figures = vec![
        Figure {
            key: "success_rate",
            value: format!("{success} ({captured} / {})", captured + failed),
            target: "≥ 99 %".into(),
            ok: success_bp.map(|bp| bp >= SUCCESS_TARGET_BP),
        },
        Figure {
            key: "confirm_p95",
            value: period_p95
                .map(|ms| format!("{ms} ms ({} confirmations)", all_latencies.len()))
                .unwrap_or_else(|| "—".into()),
            target: format!("< {CONFIRM_P95_TARGET_MS} ms"),
            ok: period_p95.map(|ms| ms < CONFIRM_P95_TARGET_MS),
        },
        Figure {
            key: "mismatch_rate",
            value: format!("{mismatch} ({rejected} / {})", started + rejected),
            target: "< 0.1 %".into(),
            ok: mismatch_bp.map(|bp| bp < MISMATCH_TARGET_BP),
        },
        Figure {
            key: "discrepancy_rate",
            value: format!("{discrepancy_rate} ({discrepancies})"),
            target: "0".into(),
            ok: (captured + failed > 0 || discrepancies > 0).then_some(discrepancies == 0),
        },
    ];

    // The volume chart: captured, failed, then mismatches and discrepancies stacked.
    let volume_max = buckets
        .iter()
        .map(|b| b.captured + b.failed + b.rejected + b.discrepancies)
        .max()
        .unwrap_or(0)
        .max(1);
    let mut bars = Vec::new();
    for (i, (bucket, start)) in buckets.iter().zip(&starts).enumerate() {
        let (x, w) = slot(i, buckets.len());
        let mut base = CHART_HEIGHT - PLOT_BOTTOM;
        let local = Time::new(*start, zone).local;
        for (count, fill, what) in [
            (bucket.captured, CAPTURED_FILL, "captured"),
            (bucket.failed, FAILED_FILL, "failed"),
            (
                bucket.rejected + bucket.discrepancies,
                MISMATCH_FILL,
                "mismatched or discrepant",
            ),
        ] {
            if count == 0 {
                continue;
            }
            let h = scaled(count, volume_max).max(1);
            base -= h;
            bars.push(Rect {
                x: x + 1,
                y: base,
                w: (w - 2).max(1),
                h,
                fill,
                title: format!("{local}: {count} {what}"),
            });
        }
    }
    let long = period_s > 24 * 3600;
    let volume = Chart {
        bars,
        points: String::new(),
        dots: Vec::new(),
        threshold_y: None,
        y_max: volume_max.to_string(),
        x_labels: x_labels(&starts, zone, long),
    };

    // The latency chart: p95 per bucket against the target.
    let per_bucket_p95: Vec<Option<i64>> = buckets.iter().map(|b| p95(&b.latencies_ms)).collect();
    let latency_max = per_bucket_p95
        .iter()
        .flatten()
        .copied()
        .max()
        .unwrap_or(0)
        .max(CONFIRM_P95_TARGET_MS + 500);
    // Round the scale up to a whole 500 ms.
    let latency_max = (latency_max + 499) / 500 * 500;
    let mut points = Vec::new();
    let mut dots = Vec::new();
    for (i, (value, start)) in per_bucket_p95.iter().zip(&starts).enumerate() {
        let Some(ms) = value else { continue };
        let (x, w) = slot(i, per_bucket_p95.len());
        let (cx, cy) = (
            x + w / 2,
            CHART_HEIGHT - PLOT_BOTTOM - scaled(*ms, latency_max),
        );
        points.push(format!("{cx},{cy}"));
        dots.push(Dot {
            x: cx,
            y: cy,
            title: format!("{}: p95 {ms} ms", Time::new(*start, zone).local),
        });
    }
    let latency = Chart {
        bars: Vec::new(),
        points: points.join(" "),
        dots,
        threshold_y: Some(CHART_HEIGHT - PLOT_BOTTOM - scaled(CONFIRM_P95_TARGET_MS, latency_max)),
        y_max: format!("{latency_max} ms"),
        x_labels: x_labels(&starts, zone, long),
    };

    let rows = buckets
        .iter()
        .zip(&starts)
        .zip(&per_bucket_p95)
        .map(|((b, start), p)| BucketRow {
            start: Time::new(*start, zone),
            captured: b.captured,
            failed: b.failed,
            success: rate_text(b.captured, b.captured + b.failed).0,
            rejected: b.rejected,
            discrepancies: b.discrepancies,
            p95: p.map(|ms| format!("{ms} ms")).unwrap_or_else(|| "—".into()),
        })
        .collect();

    Ok(Slo {
        period,
        periods: PERIODS.iter().map(|(n, _, _)| (*n, *n == period)).collect(),
        from: Time::new(from, zone),
        to: Time::new(recent.now, zone),
        figures,
        process: process_figures(),
        volume,
        latency,
        rows,
        truncated: recent.truncated,
    })
}

/// What this process's counters say since it started.
fn process_figures() -> Vec<Figure> {
    let m = payledger_metrics::metrics();
    // A counter of a family now (0 before its first increment).
    macro_rules! count {
        ($family:expr, $labels:expr) => {
            $family.get(&$labels).map(|c| c.get()).unwrap_or(0) as i64
        };
    }
    macro_rules! outcome {
        ($family:expr, $outcome:expr) => {
            count!($family, OutcomeLabels { outcome: $outcome })
        };
    }
    let captured = outcome!(m.payment_outcomes, "captured");
    let failed = outcome!(m.payment_outcomes, "failed");
    let (success, success_bp) = rate_text(captured, captured + failed);
    let mismatches = m.amount_mismatches.get() as i64;
    let attempts = m.confirmation_attempts.get() as i64;
    let (mismatch, mismatch_bp) = rate_text(mismatches, attempts);
    let mut processing_failures = 0i64;
    let mut refused = 0i64;
    for provider in payledger_metrics::WEBHOOK_PROVIDERS {
        for outcome in ["retry", "dead_lettered"] {
            processing_failures +=
                count!(m.webhooks_processed, WebhookLabels { provider, outcome });
        }
        refused += count!(
            m.webhooks_received,
            WebhookLabels {
                provider,
                outcome: "rejected",
            }
        );
    }
    let delivery_failures = outcome!(m.notification_deliveries, "failed")
        + outcome!(m.notification_deliveries, "dead_lettered");
    let (count, seconds) = m.http_latency_totals("POST", "/v1/payments/confirm");
    let mean_ms = (count > 0).then(|| (seconds * 1000.0 / count as f64).round() as i64);
    vec![
        Figure {
            key: "success_rate",
            value: format!("{success} ({captured} / {})", captured + failed),
            target: "≥ 99 %".into(),
            ok: success_bp.map(|bp| bp >= SUCCESS_TARGET_BP),
        },
        Figure {
            key: "confirm_mean",
            value: mean_ms
                .map(|ms| format!("{ms} ms ({count} requests)"))
                .unwrap_or_else(|| "—".into()),
            target: "< 900 ms".into(),
            ok: mean_ms.map(|ms| ms < 900),
        },
        Figure {
            key: "mismatch_rate",
            value: format!("{mismatch} ({mismatches} / {attempts})"),
            target: "< 0.1 %".into(),
            ok: mismatch_bp.map(|bp| bp < MISMATCH_TARGET_BP),
        },
        Figure {
            key: "webhook_processing_failures",
            value: processing_failures.to_string(),
            target: String::new(),
            ok: Some(processing_failures == 0),
        },
        Figure {
            key: "webhook_refusals",
            value: refused.to_string(),
            target: String::new(),
            ok: None,
        },
        Figure {
            key: "notification_failures",
            value: delivery_failures.to_string(),
            target: String::new(),
            ok: Some(delivery_failures == 0),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_95th_percentile_is_nearest_rank() {
        assert_eq!(p95(&[]), None);
        assert_eq!(p95(&[7]), Some(7));
        let hundred: Vec<i64> = (1..=100).collect();
        assert_eq!(p95(&hundred), Some(95));
        let twenty: Vec<i64> = (1..=20).rev().collect();
        assert_eq!(p95(&twenty), Some(19));
    }

    #[test]
    fn rates_are_integer_basis_points() {
        assert_eq!(rate_text(0, 0), ("—".to_string(), None));
        assert_eq!(rate_text(2, 3), ("66.66 %".to_string(), Some(6_666)));
        assert_eq!(rate_text(1, 1), ("100.00 %".to_string(), Some(10_000)));
    }
}
