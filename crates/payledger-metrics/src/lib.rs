//! The one Prometheus registry of payledger.
//!
//! Every metric is a field of [`Metrics`], reached from anywhere through [`metrics()`], and
//! `GET /metrics` encodes them all ([`Metrics::encode`]). Counters that other code increments
//! have a method named after what happened (`metrics().idempotency_replay()`), so call sites
//! need no label types. Metric names are listed, with their alert rules, in
//! `docs/operations.md` ("Alerts").
//!
//! Labels are bounded: routes are actix route *patterns* (`/v1/orders/{order_id}`), outcomes and
//! codes come from fixed tables, providers from configuration. No label ever carries an id, an
//! amount or anything a client sent.
//!
//! Counters are per process and start at 0 on restart; Prometheus' `rate()`/`increase()` handle
//! both, and sums over instances give the cluster's totals.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, OnceLock};

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Request latency buckets in seconds. 0.9 s and 1.5 s are bucket bounds on purpose: they are
/// the confirm SLOs (mean < 900 ms, p95 < 1500 ms), so "share of confirms slower than the SLO"
/// is an exact bucket ratio, not an interpolation.
pub const LATENCY_BUCKETS_SECONDS: [f64; 15] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    /// The matched route pattern, or `unmatched`.
    pub route: String,
    /// `2xx`, `4xx`, `5xx`: enough to split latency by outcome without a label per status.
    pub status_class: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    /// `METHOD route-pattern`, e.g. `POST /v1/payments/confirm`.
    pub command: String,
    /// `ok`, or the stable error code of the answer (`E_AMOUNT_MISMATCH`, …).
    pub outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    pub provider: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CircuitLabels {
    pub provider: String,
    /// `closed`, `open`, `half_open`: the gauge is 1 for the current state, 0 for the others.
    pub state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    /// `toss`, `stripe`, `paddle`, `standard`.
    pub provider: &'static str,
    /// What happened; each counter documents its values.
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectionLabels {
    pub provider: &'static str,
    /// The verifier's stable code (`E_WEBHOOK_SIGNATURE_MISMATCH`, …).
    pub code: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotificationLabels {
    /// The notification type (`payment.failed`, …).
    pub notification_type: &'static str,
    /// `urgent`, `important`, `normal`, `info`.
    pub priority: &'static str,
}

/// A reconciliation flag's provider and kind (`short_payout`, …).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconciliationLabels {
    pub provider: String,
    pub kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    /// `inbound` (provider webhooks) or `outbound` (notifications to products).
    pub direction: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProjectionLabels {
    pub projection: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReplicaLabels {
    /// `replica-0`, `replica-1`, … in the order of `DATABASE_REPLICA_URL`.
    pub replica: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReadSourceLabels {
    /// `primary` or `replica-N`.
    pub source: String,
    /// Why this source answered (`fresh`, `replayed_min_position`, `replica_lagging`,
    /// `replica_wait_timed_out`, `no_replica`).
    pub reason: &'static str,
}

/// A provider gateway's cumulative counters (`payledger_gateway::GatewayStats`), mirrored here so
/// this crate needs no gateway dependency.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProviderTotals {
    pub calls: u64,
    pub attempts: u64,
    pub failures: u64,
    pub retries: u64,
    pub short_circuited: u64,
    pub refusals: u64,
    pub outcome_unknown: u64,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;
type FloatGauge = Gauge<f64, AtomicU64>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS_SECONDS)
}

/// Every metric payledger exports. Fields are public so a scrape-time collector can set gauges;
/// code that only counts uses the methods.
pub struct Metrics {
    registry: Registry,
    /// Serialises scrapes, so two concurrent scrapes cannot both add the same gateway delta.
    scrape: Mutex<()>,

    pub http_request_duration: HistogramFamily<HttpLabels>,
    pub commands: Family<CommandLabels, Counter>,
    pub database_errors: Counter,

    pub payment_outcomes: Family<OutcomeLabels, Counter>,
    pub confirmation_attempts: Counter,
    pub amount_mismatches: Counter,
    pub billing_charges: Family<OutcomeLabels, Counter>,
    pub provider_discrepancies: Family<ProviderLabels, Counter>,

    pub provider_calls: Family<ProviderLabels, Counter>,
    pub provider_attempts: Family<ProviderLabels, Counter>,
    pub provider_failures: Family<ProviderLabels, Counter>,
    pub provider_retries: Family<ProviderLabels, Counter>,
    pub provider_short_circuited: Family<ProviderLabels, Counter>,
    pub provider_refusals: Family<ProviderLabels, Counter>,
    pub provider_outcome_unknown: Family<ProviderLabels, Counter>,
    pub provider_circuit_state: Family<CircuitLabels, Gauge>,

    pub webhooks_received: Family<WebhookLabels, Counter>,
    pub webhooks_rejected: Family<RejectionLabels, Counter>,
    pub webhooks_processed: Family<WebhookLabels, Counter>,
    pub notifications_enqueued: Family<NotificationLabels, Counter>,
    pub notification_deliveries: Family<OutcomeLabels, Counter>,
    pub dead_letters: Family<DirectionLabels, Gauge>,

    pub projection_position: Family<ProjectionLabels, Gauge>,
    pub projection_lag_events: Family<ProjectionLabels, Gauge>,
    pub projection_lag_seconds: Family<ProjectionLabels, FloatGauge>,
    pub event_store_head_position: Gauge,

    pub idempotency_replays: Counter,
    pub idempotency_conflicts: Counter,

    pub reconciliation_flags: Family<ReconciliationLabels, Counter>,
    pub reconciliation_open_exceptions: Family<ReconciliationLabels, Gauge>,
    /// Read replicas (docs/scaling.md): each replica's staleness bound, whether it is usable,
    /// and which source answered each routed read.
    pub replica_lag_seconds: Family<ReplicaLabels, FloatGauge>,
    pub replica_usable: Family<ReplicaLabels, Gauge>,
    pub routed_reads: Family<ReadSourceLabels, Counter>,
    /// Reads answered 503 because they outlived `PAYLEDGER_DATABASE_CALL_TIMEOUT_MS`.
    pub read_deadlines_exceeded: Counter,
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    METRICS.get_or_init(|| {
        let metrics = Metrics::new();
        metrics.expose_known_series();
        metrics
    })
}

/// Senders of inbound webhooks, as counted.
pub const WEBHOOK_PROVIDERS: [&str; 4] = ["toss", "stripe", "paddle", "standard"];
/// The codes an inbound webhook can be refused with.
pub const WEBHOOK_REJECTION_CODES: [&str; 8] = [
    "E_WEBHOOK_SIGNATURE_MISSING",
    "E_WEBHOOK_SIGNATURE_MALFORMED",
    "E_WEBHOOK_SIGNATURE_ENCODING",
    "E_WEBHOOK_TIMESTAMP_OUT_OF_TOLERANCE",
    "E_WEBHOOK_SIGNATURE_MISMATCH",
    "E_WEBHOOK_VERIFIER_MISCONFIGURED",
    "E_WEBHOOK_PAYLOAD_INVALID",
    "E_BODY_TOO_LARGE",
];

macro_rules! register {
    ($registry:ident, $name:literal, $help:literal, $metric:expr) => {{
        let metric = $metric;
        $registry.register($name, $help, metric.clone());
        metric
    }};
}

impl Metrics {
    fn new() -> Metrics {
        let mut r = Registry::with_prefix("payledger");
        Metrics {
            http_request_duration: register!(
                r,
                "http_request_duration_seconds",
                "HTTP request latency by method, route pattern and status class",
                HistogramFamily::<HttpLabels>::new_with_constructor(latency_histogram as fn() -> Histogram)
            ),
            commands: register!(
                r,
                "commands",
                "Commands (state-changing requests) by command and outcome (`ok` or the error code)",
                Family::default()
            ),
            database_errors: register!(
                r,
                "database_errors",
                "Requests answered E_UNAVAILABLE because the database could not be reached",
                Counter::default()
            ),
            payment_outcomes: register!(
                r,
                "payment_outcomes",
                "Recorded confirmation outcomes: captured, failed, unknown. Success rate = captured / (captured + failed)",
                Family::default()
            ),
            confirmation_attempts: register!(
                r,
                "confirmation_attempts",
                "Confirmations received: attempts sent to the provider plus those rejected for an amount mismatch",
                Counter::default()
            ),
            amount_mismatches: register!(
                r,
                "amount_mismatches",
                "Confirmations rejected because the claimed amount differed from the order (E_AMOUNT_MISMATCH)",
                Counter::default()
            ),
            billing_charges: register!(
                r,
                "billing_charges",
                "Billing-key (subscription) charge outcomes: succeeded, failed, unknown",
                Family::default()
            ),
            provider_discrepancies: register!(
                r,
                "provider_discrepancies",
                "Provider reports (confirm answers, lookups, webhooks) that differ from the ledger (another amount, currency or key, canceled at the provider). Support must review each",
                Family::default()
            ),
            provider_calls: register!(r, "provider_calls", "Payment provider calls (gateway method calls)", Family::default()),
            provider_attempts: register!(r, "provider_attempts", "HTTP requests made to the provider (one per attempt)", Family::default()),
            provider_failures: register!(r, "provider_failures", "Provider attempts that failed against its health: no connection, timeout, 5xx, PROVIDER_ERROR", Family::default()),
            provider_retries: register!(r, "provider_retries", "Provider attempts after the first within a call", Family::default()),
            provider_short_circuited: register!(r, "provider_short_circuited", "Provider attempts refused by the open circuit breaker", Family::default()),
            provider_refusals: register!(r, "provider_refusals", "Provider calls that ended in a business refusal", Family::default()),
            provider_outcome_unknown: register!(r, "provider_outcome_unknown", "Provider calls whose outcome is unknown (sent, no answer)", Family::default()),
            provider_circuit_state: register!(
                r,
                "provider_circuit_state",
                "1 for the circuit breaker's current state (closed, open, half_open), 0 for the others",
                Family::default()
            ),
            webhooks_received: register!(
                r,
                "webhooks_received",
                "Inbound webhook deliveries by provider and outcome: accepted, duplicate, rejected",
                Family::default()
            ),
            webhooks_rejected: register!(
                r,
                "webhooks_rejected",
                "Inbound webhook deliveries refused (forged, stale, malformed) by provider and error code",
                Family::default()
            ),
            webhooks_processed: register!(
                r,
                "webhooks_processed",
                "Inbound webhook processing attempts by provider and outcome: applied, retry, dead_lettered",
                Family::default()
            ),
            notifications_enqueued: register!(
                r,
                "notifications_enqueued",
                "Outbound notifications put into the outbox (one per event and endpoint)",
                Family::default()
            ),
            notification_deliveries: register!(
                r,
                "notification_deliveries",
                "Outbound notification delivery attempts by outcome: delivered, failed, dead_lettered",
                Family::default()
            ),
            dead_letters: register!(
                r,
                "webhook_dead_letters",
                "Webhooks in the dead-letter queue now, inbound and outbound (read at scrape time)",
                Family::default()
            ),
            projection_position: register!(
                r,
                "projection_position",
                "Global position each projection (and the outbox follower) has committed",
                Family::default()
            ),
            projection_lag_events: register!(
                r,
                "projection_lag_events",
                "Events committed to the log but not yet projected",
                Family::default()
            ),
            projection_lag_seconds: register!(
                r,
                "projection_lag_seconds",
                "Age of the oldest event a projection has not applied yet; 0 when caught up",
                Family::default()
            ),
            event_store_head_position: register!(
                r,
                "event_store_head_position",
                "Global position of the last committed event",
                Gauge::default()
            ),
            idempotency_replays: register!(
                r,
                "idempotency_replays",
                "Requests answered from a stored response because their Idempotency-Key was seen before",
                Counter::default()
            ),
            idempotency_conflicts: register!(
                r,
                "idempotency_conflicts",
                "Requests refused because their Idempotency-Key was reused with another request or is in progress",
                Counter::default()
            ),
            reconciliation_flags: register!(
                r,
                "reconciliation_flags",
                "Discrepancies reconciliation raised against providers' settlement data, by provider and kind",
                Family::default()
            ),
            reconciliation_open_exceptions: register!(
                r,
                "reconciliation_open_exceptions",
                "Reconciliation exceptions not yet resolved, by provider and kind (read at scrape time)",
                Family::default()
            ),
            replica_lag_seconds: register!(
                r,
                "replica_lag_seconds",
                "Upper bound of how far each read replica is behind the primary (from WAL positions); NaN-free: a lost replica keeps its last value and replica_usable says 0",
                Family::default()
            ),
            replica_usable: register!(
                r,
                "replica_usable",
                "1 when the replica answers and is within PAYLEDGER_REPLICA_MAX_LAG_MS, else 0",
                Family::default()
            ),
            routed_reads: register!(
                r,
                "routed_reads",
                "Read-model and log reads by the database that answered and why",
                Family::default()
            ),
            read_deadlines_exceeded: register!(
                r,
                "read_deadlines_exceeded",
                "Read requests answered 503 because the database did not answer within PAYLEDGER_DATABASE_CALL_TIMEOUT_MS",
                Counter::default()
            ),
            scrape: Mutex::new(()),
            registry: r,
        }
    }

    /// Creates every series whose labels are known in advance at 0. Prometheus cannot tell a
    /// counter that never moved from one that does not exist, and an alert over a missing series
    /// (`sum(a) + sum(b) > 5`) silently never fires.
    fn expose_known_series(&self) {
        for outcome in ["captured", "failed", "unknown"] {
            drop(
                self.payment_outcomes
                    .get_or_create(&OutcomeLabels { outcome }),
            );
        }
        for outcome in ["succeeded", "failed", "unknown"] {
            drop(
                self.billing_charges
                    .get_or_create(&OutcomeLabels { outcome }),
            );
        }
        for outcome in ["delivered", "failed", "dead_lettered"] {
            drop(
                self.notification_deliveries
                    .get_or_create(&OutcomeLabels { outcome }),
            );
        }
        for direction in ["inbound", "outbound"] {
            drop(
                self.dead_letters
                    .get_or_create(&DirectionLabels { direction }),
            );
        }
        for provider in WEBHOOK_PROVIDERS {
            for outcome in ["accepted", "duplicate", "rejected"] {
                drop(
                    self.webhooks_received
                        .get_or_create(&WebhookLabels { provider, outcome }),
                );
            }
            for outcome in ["applied", "retry", "dead_lettered"] {
                drop(
                    self.webhooks_processed
                        .get_or_create(&WebhookLabels { provider, outcome }),
                );
            }
            for code in WEBHOOK_REJECTION_CODES {
                drop(
                    self.webhooks_rejected
                        .get_or_create(&RejectionLabels { provider, code }),
                );
            }
        }
        drop(self.provider_discrepancies.get_or_create(&ProviderLabels {
            provider: "toss".to_string(),
        }));
    }

    /// The OpenMetrics text exposition of every metric (serve it with [`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut text = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail; an error here would be a bug in an encoder.
        if encode(&mut text, &self.registry).is_err() {
            text.clear();
            text.push_str("# EOF\n");
        }
        text
    }

    /// How many requests `method route` has answered and their total latency in seconds, over
    /// every status class, as the histogram holds them. prometheus-client shows a histogram's
    /// count and sum only through its encoding, so they are read back from there.
    pub fn http_latency_totals(&self, method: &str, route: &str) -> (u64, f64) {
        let method_label = format!("method=\"{method}\"");
        let route_label = format!("route=\"{route}\"");
        let (mut count, mut sum) = (0u64, 0f64);
        for line in self.encode().lines() {
            let Some(rest) = line.strip_prefix("payledger_http_request_duration_seconds_") else {
                continue;
            };
            let Some((name, rest)) = rest.split_once('{') else {
                continue;
            };
            let Some((labels, value)) = rest.split_once("} ") else {
                continue;
            };
            let labels: Vec<&str> = labels.split(',').collect();
            if !labels.contains(&method_label.as_str()) || !labels.contains(&route_label.as_str()) {
                continue;
            }
            match name {
                "count" => count += value.trim().parse::<u64>().unwrap_or(0),
                "sum" => sum += value.trim().parse::<f64>().unwrap_or(0.0),
                _ => {}
            }
        }
        (count, sum)
    }

    /// Held while a scrape refreshes scrape-time values (gateway counters, gauges).
    pub fn scrape_guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.scrape
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One HTTP request finished.
    pub fn observe_http(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let status_class = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.http_request_duration
            .get_or_create(&HttpLabels {
                method: method.to_string(),
                route: route.to_string(),
                status_class,
            })
            .observe(seconds);
    }

    /// A command request finished with `outcome` (`ok` or an error code).
    pub fn command(&self, command: String, outcome: &str) {
        self.commands
            .get_or_create(&CommandLabels {
                command,
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// A read request outlived its deadline and was answered 503.
    pub fn read_deadline_exceeded(&self) {
        self.read_deadlines_exceeded.inc();
    }

    /// A request was answered from the idempotency store.
    pub fn idempotency_replay(&self) {
        self.idempotency_replays.inc();
    }

    /// Reconciliation raised a flag of `kind` against `provider`'s settlement data.
    pub fn reconciliation_flag(&self, provider: &str, kind: &str) {
        self.reconciliation_flags
            .get_or_create(&ReconciliationLabels {
                provider: provider.to_string(),
                kind: kind.to_string(),
            })
            .inc();
    }

    /// A request was refused for reusing an idempotency key (other request, or in progress).
    pub fn idempotency_conflict(&self) {
        self.idempotency_conflicts.inc();
    }

    pub fn payment_outcome(&self, outcome: &'static str) {
        self.payment_outcomes
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    pub fn billing_charge(&self, outcome: &'static str) {
        self.billing_charges
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    pub fn provider_discrepancy(&self, provider: &str) {
        self.provider_discrepancies
            .get_or_create(&ProviderLabels {
                provider: provider.to_string(),
            })
            .inc();
    }

    /// An inbound webhook delivery was answered: `accepted`, `duplicate` or `rejected`.
    pub fn webhook_received(&self, provider: &'static str, outcome: &'static str) {
        self.webhooks_received
            .get_or_create(&WebhookLabels { provider, outcome })
            .inc();
    }

    pub fn webhook_rejected(&self, provider: &'static str, code: &'static str) {
        self.webhook_received(provider, "rejected");
        self.webhooks_rejected
            .get_or_create(&RejectionLabels { provider, code })
            .inc();
    }

    /// An inbound delivery was processed: `applied`, `retry` or `dead_lettered`.
    pub fn webhook_processed(&self, provider: &'static str, outcome: &'static str) {
        self.webhooks_processed
            .get_or_create(&WebhookLabels { provider, outcome })
            .inc();
    }

    pub fn notification_enqueued(&self, notification_type: &'static str, priority: &'static str) {
        self.notifications_enqueued
            .get_or_create(&NotificationLabels {
                notification_type,
                priority,
            })
            .inc();
    }

    /// An outbound delivery attempt ended: `delivered`, `failed` or `dead_lettered`.
    pub fn notification_delivery(&self, outcome: &'static str) {
        self.notification_deliveries
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// Brings the provider counters up to the gateway's own cumulative totals.
    /// Call with [`Metrics::scrape_guard`] held.
    pub fn sync_provider_totals(&self, provider: &str, totals: &ProviderTotals) {
        let labels = ProviderLabels {
            provider: provider.to_string(),
        };
        for (family, total) in [
            (&self.provider_calls, totals.calls),
            (&self.provider_attempts, totals.attempts),
            (&self.provider_failures, totals.failures),
            (&self.provider_retries, totals.retries),
            (&self.provider_short_circuited, totals.short_circuited),
            (&self.provider_refusals, totals.refusals),
            (&self.provider_outcome_unknown, totals.outcome_unknown),
        ] {
            Metrics::sync_counter(&family.get_or_create(&labels), total);
        }
    }

    /// Raises a counter to a cumulative total kept elsewhere (the gateway's own counters).
    /// Call with [`Metrics::scrape_guard`] held.
    pub fn sync_counter(counter: &Counter, total: u64) {
        let current = counter.get();
        if total > current {
            counter.inc_by(total - current);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_what_was_counted_with_its_labels() {
        let m = metrics();
        m.webhook_rejected("stripe", "E_WEBHOOK_SIGNATURE_MISMATCH");
        m.observe_http("POST", "/v1/payments/confirm", 200, 0.8);
        m.idempotency_replay();
        let text = m.encode();
        assert!(text.contains(
            "payledger_webhooks_rejected_total{provider=\"stripe\",code=\"E_WEBHOOK_SIGNATURE_MISMATCH\"} 1"
        ), "{text}");
        assert!(text.contains(
            "payledger_webhooks_received_total{provider=\"stripe\",outcome=\"rejected\"} 1"
        ));
        assert!(text.contains("payledger_idempotency_replays_total 1"));
        // 0.8 s falls in the 0.9 s bucket (an SLO bound) and not in the 0.75 s one.
        assert!(text.contains(
            "payledger_http_request_duration_seconds_bucket{le=\"0.9\",method=\"POST\",route=\"/v1/payments/confirm\",status_class=\"2xx\"} 1"
        ), "{text}");
        assert!(text.contains(
            "payledger_http_request_duration_seconds_bucket{le=\"0.75\",method=\"POST\",route=\"/v1/payments/confirm\",status_class=\"2xx\"} 0"
        ));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn latency_totals_add_every_status_class_of_one_route_only() {
        let m = metrics();
        assert_eq!(
            m.http_latency_totals("POST", "/v1/tests/latency-totals"),
            (0, 0.0)
        );
        m.observe_http("POST", "/v1/tests/latency-totals", 200, 0.5);
        m.observe_http("POST", "/v1/tests/latency-totals", 404, 0.25);
        m.observe_http("GET", "/v1/tests/latency-totals", 200, 9.0);
        m.observe_http("POST", "/v1/tests/latency-totals/other", 200, 9.0);
        assert_eq!(
            m.http_latency_totals("POST", "/v1/tests/latency-totals"),
            (2, 0.75)
        );
    }

    #[test]
    fn syncing_a_counter_to_a_total_never_lowers_it() {
        let counter = Counter::<u64>::default();
        Metrics::sync_counter(&counter, 5);
        Metrics::sync_counter(&counter, 3);
        assert_eq!(counter.get(), 5);
        Metrics::sync_counter(&counter, 9);
        assert_eq!(counter.get(), 9);
    }
}
