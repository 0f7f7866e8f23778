//! Reconciliation: importing each provider's settlement report through its connector
//! ([`SettlementSource`]), judging every line against the order it names
//! (`payledger_domain::reconciliation::judge_line`) and recording the outcome in the line's own
//! stream, so the same report imported twice has one effect; flagging captures the provider has
//! not settled past its delay; and an admin's resolution of a flag.

use crate::clock::Clock;
use crate::context::RequestContext;
use crate::executor::{AggregateCache, ExecuteError, Executor, StoreFailure};
use crate::payments::{PaymentError, Payments};
use chrono::{DateTime, Utc};
use payledger_domain::billing::SubscriptionId;
use payledger_domain::ids::OrderId;
use payledger_domain::reconciliation::{
    judge_line, judge_subscription_line, line_stream, unsettled_stream, FeeSchedule, FeeSchedules,
    FlagKind, ReconciliationCommand, ReconciliationError, ReconciliationEvent,
    ReconciliationFlagged, ReconciliationRecord, Resolution, SettlementLine,
};
use payledger_domain::streams::StreamKind;
use payledger_domain::subscription::{Subscription, SubscriptionError};
use payledger_gateway::settlements::{SettlementError, SettlementPeriod, SettlementSource};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Most captures one unsettled check flags; the next run takes the rest.
pub const MAX_UNSETTLED_PER_RUN: usize = 10_000;

/// Counts each flag as it is recorded (the metrics), by kind and provider.
pub type FlagObserver = Arc<dyn Fn(FlagKind, &str) + Send + Sync>;

/// A provider whose settlements are imported, and the terms agreed with it.
#[derive(Clone)]
pub struct ReconciledProvider {
    pub source: Arc<dyn SettlementSource>,
    pub schedules: FeeSchedules,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("no settlement import is configured for provider '{0}'")]
    UnknownProvider(String),
    #[error(transparent)]
    Source(#[from] SettlementError),
    #[error(transparent)]
    Record(ReconciliationError),
    #[error("the ledger is unavailable: {0}")]
    Unavailable(String),
    #[error("the record is being changed by other requests; retry")]
    Contention,
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<ExecuteError<ReconciliationError>> for ReconcileError {
    fn from(error: ExecuteError<ReconciliationError>) -> ReconcileError {
        match error.into_domain() {
            Ok(domain) => ReconcileError::Record(domain),
            Err(StoreFailure::Unavailable(e)) => ReconcileError::Unavailable(e),
            Err(StoreFailure::Contention) => ReconcileError::Contention,
            Err(StoreFailure::Internal(e)) => ReconcileError::Internal(e),
        }
    }
}

impl From<PaymentError> for ReconcileError {
    fn from(error: PaymentError) -> ReconcileError {
        match error {
            PaymentError::Unavailable(e) => ReconcileError::Unavailable(e),
            PaymentError::Contention => ReconcileError::Contention,
            other => ReconcileError::Internal(other.to_string()),
        }
    }
}

/// What one import did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportSummary {
    pub provider: String,
    pub lines: u64,
    /// Lines recorded by this import and matched to a ledger payment.
    pub matched: u64,
    /// Lines recorded by this import that match nothing in the ledger.
    pub unmatched: u64,
    /// Lines an earlier import recorded already (nothing new happened).
    pub already_imported: u64,
    /// Flags this import raised, by kind.
    pub flags: BTreeMap<String, u64>,
    /// The global position of the last event this import wrote (0 when none): wait for it
    /// with `minPosition` before reading the reconciliation read model.
    pub last_position: i64,
}

/// The subscription a line settles a charge of: the provider's `subscription_id` (Paddle), or
/// the order id payledger gives a billing-key charge (`sub-{subscription id}-c{cycle}`, Toss).
fn subscription_of(line: &SettlementLine) -> Option<SubscriptionId> {
    if let Some(id) = line.subscription_id.as_deref() {
        return SubscriptionId::parse(id).ok();
    }
    let rest = line.order_id.as_deref()?.strip_prefix("sub-")?;
    let (id, cycle) = rest.rsplit_once("-c")?;
    cycle.parse::<u32>().ok()?;
    SubscriptionId::parse(id).ok()
}

fn subscription_load_failure(error: ExecuteError<SubscriptionError>) -> ReconcileError {
    match error.into_domain() {
        Ok(domain) => ReconcileError::Internal(domain.to_string()),
        Err(StoreFailure::Unavailable(e)) => ReconcileError::Unavailable(e),
        Err(StoreFailure::Contention) => ReconcileError::Contention,
        Err(StoreFailure::Internal(e)) => ReconcileError::Internal(e),
    }
}

/// A capture with no settlement line yet, as the read model found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsettledCapture {
    pub provider: String,
    pub order_id: OrderId,
    pub currency: payledger_domain::money::Currency,
    pub captured_minor: i64,
    pub captured_at: DateTime<Utc>,
}

pub struct Reconciliation {
    executor: Arc<Executor>,
    payments: Arc<Payments>,
    providers: HashMap<String, ReconciledProvider>,
    records: AggregateCache<ReconciliationRecord>,
    subscriptions: AggregateCache<Subscription>,
    clock: Arc<dyn Clock>,
    observer: Option<FlagObserver>,
}

impl Reconciliation {
    pub fn new(
        executor: Arc<Executor>,
        payments: Arc<Payments>,
        providers: Vec<ReconciledProvider>,
        clock: Arc<dyn Clock>,
    ) -> Reconciliation {
        Reconciliation {
            executor,
            payments,
            providers: providers
                .into_iter()
                .map(|p| (p.source.provider().to_string(), p))
                .collect(),
            records: AggregateCache::new(1_000),
            subscriptions: AggregateCache::new(1_000),
            clock,
            observer: None,
        }
    }

    pub fn with_flag_observer(mut self, observer: FlagObserver) -> Reconciliation {
        self.observer = Some(observer);
        self
    }

    /// The providers whose settlements this deployment imports, by name.
    pub fn providers(&self) -> Vec<String> {
        let mut names: Vec<String> = self.providers.keys().cloned().collect();
        names.sort();
        names
    }

    /// The default terms agreed with `provider` (its settlement delay is the unsettled check's).
    pub fn schedule(&self, provider: &str) -> Option<FeeSchedule> {
        self.providers.get(provider).map(|p| p.schedules.default)
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Imports `provider`'s lines paid out within `period`. Each line is judged and recorded in
    /// its own stream; a line recorded before is left as it is (or flagged when it changed).
    pub async fn import(
        &self,
        provider: &str,
        period: SettlementPeriod,
        context: &RequestContext,
    ) -> Result<ImportSummary, ReconcileError> {
        let reconciled = self
            .providers
            .get(provider)
            .ok_or_else(|| ReconcileError::UnknownProvider(provider.to_string()))?;
        let report = reconciled.source.settlement_report(period).await?;
        let lines = report.lines;
        let mut summary = ImportSummary {
            provider: provider.to_string(),
            lines: lines.len() as u64,
            ..ImportSummary::default()
        };
        // A payout whose stated total is not the sum of its lines: flagged once per payout.
        for payout in &report.payouts {
            let Some(flag) = payledger_domain::reconciliation::judge_payout(
                provider,
                payout,
                &lines,
                self.clock.now(),
            ) else {
                continue;
            };
            let executed = self
                .executor
                .execute(
                    &self.records,
                    &payledger_domain::reconciliation::payout_stream(provider, &payout.payout_id),
                    ReconciliationCommand::FlagUnsettled(flag),
                    context,
                )
                .await?;
            if !executed.events.is_empty() {
                *summary
                    .flags
                    .entry(FlagKind::PayoutMismatch.name().to_string())
                    .or_default() += 1;
                self.observe(FlagKind::PayoutMismatch, provider);
            }
            if let Some(append) = &executed.append {
                summary.last_position = summary.last_position.max(append.last_position);
            }
        }
        for line in lines {
            // The connector names the line's provider; the stream is the configured name's.
            let line = payledger_domain::reconciliation::SettlementLine {
                provider: provider.to_string(),
                ..line
            };
            let stream = line_stream(provider, &line.line_id);
            let at = self.clock.now();
            let schedule = reconciled.schedules.for_method(line.method.as_deref());
            let judged = match subscription_of(&line) {
                // A subscription's charge (Paddle's renewal or first payment, a Toss billing
                // charge): matched to the subscription, not to an order.
                Some(subscription_id) => {
                    let (version, subscription) = self
                        .executor
                        .load(
                            &self.subscriptions,
                            &payledger_domain::subscription::stream_id(&subscription_id),
                        )
                        .await
                        .map_err(subscription_load_failure)?;
                    judge_subscription_line(
                        &line,
                        &subscription_id,
                        (version > 0).then_some(&subscription),
                        schedule,
                        at,
                    )
                }
                None => {
                    let order_id = line
                        .order_id
                        .as_deref()
                        .and_then(|id| OrderId::parse(id).ok());
                    let order = match &order_id {
                        Some(id) => self.payments.load_order(id).await?,
                        None => None,
                    };
                    let known_order = order.as_ref().and(order_id.clone());
                    judge_line(
                        &line,
                        known_order.as_ref(),
                        order.as_ref().map(|o| &o.state),
                        schedule,
                        at,
                    )
                }
            };
            let executed = self
                .executor
                .execute(
                    &self.records,
                    &stream,
                    ReconciliationCommand::Import { line, judged, at },
                    context,
                )
                .await?;
            if executed.events.is_empty() {
                summary.already_imported += 1;
            }
            for event in &executed.events {
                match event {
                    ReconciliationEvent::SettlementLineMatched(_)
                    | ReconciliationEvent::SubscriptionChargeSettled(_) => summary.matched += 1,
                    ReconciliationEvent::SettlementLineUnmatched(_) => summary.unmatched += 1,
                    ReconciliationEvent::ReconciliationFlagged(flag) => {
                        *summary
                            .flags
                            .entry(flag.kind.name().to_string())
                            .or_default() += 1;
                        self.observe(flag.kind, provider);
                    }
                    ReconciliationEvent::ReconciliationResolved(_) => {}
                }
            }
            if let Some(append) = &executed.append {
                summary.last_position = summary.last_position.max(append.last_position);
            }
        }
        Ok(summary)
    }

    /// Flags each capture in `captures` (found by the caller as having no settlement line),
    /// once per order. Answers how many were newly flagged and the last position written.
    pub async fn flag_unsettled(
        &self,
        captures: &[UnsettledCapture],
        context: &RequestContext,
    ) -> Result<(u64, i64), ReconcileError> {
        let mut flagged = 0;
        let mut last_position = 0;
        for capture in captures.iter().take(MAX_UNSETTLED_PER_RUN) {
            let Some(schedule) = self.schedule(&capture.provider) else {
                continue;
            };
            let flag = ReconciliationFlagged {
                kind: FlagKind::UnsettledCapture,
                provider: capture.provider.clone(),
                order_id: Some(capture.order_id.clone()),
                line_id: None,
                currency: capture.currency,
                expected_minor: capture.captured_minor,
                actual_minor: 0,
                detail: format!(
                    "captured {}, not settled within {} days",
                    capture.captured_at.date_naive(),
                    schedule.settlement_delay_days
                ),
                at: self.clock.now(),
            };
            let executed = self
                .executor
                .execute(
                    &self.records,
                    &unsettled_stream(&capture.provider, &capture.order_id),
                    ReconciliationCommand::FlagUnsettled(flag),
                    context,
                )
                .await?;
            if !executed.events.is_empty() {
                flagged += 1;
                self.observe(FlagKind::UnsettledCapture, &capture.provider);
            }
            if let Some(append) = &executed.append {
                last_position = last_position.max(append.last_position);
            }
        }
        Ok((flagged, last_position))
    }

    /// An admin closes the flag `kind` of the record `stream_id` with a note.
    pub async fn resolve(
        &self,
        stream_id: &str,
        kind: FlagKind,
        resolution: Resolution,
        note: String,
        context: &RequestContext,
    ) -> Result<i64, ReconcileError> {
        if !StreamKind::Reconciliation.holds(stream_id) {
            return Err(ReconcileError::Record(ReconciliationError::NoOpenFlag));
        }
        let executed = self
            .executor
            .execute(
                &self.records,
                stream_id,
                ReconciliationCommand::Resolve {
                    kind,
                    resolution,
                    note,
                    at: self.clock.now(),
                },
                context,
            )
            .await?;
        Ok(executed.append.map_or(0, |a| a.last_position))
    }

    fn observe(&self, kind: FlagKind, provider: &str) {
        if let Some(observer) = &self.observer {
            observer(kind, provider);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use payledger_domain::money::Currency;
    use payledger_domain::reconciliation::SettlementLineKind;

    fn line(order_id: Option<&str>, subscription_id: Option<&str>) -> SettlementLine {
        let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 2).unwrap();
        SettlementLine {
            provider: "toss".into(),
            line_id: "tx_1".into(),
            kind: SettlementLineKind::Payment,
            payment_key: "pk_1".into(),
            order_id: order_id.map(str::to_owned),
            amount_minor: 990,
            fee_minor: 0,
            vat_minor: 0,
            payout_minor: 990,
            currency: Currency::KRW,
            sold_on: day,
            paid_out_on: day,
            payout_id: None,
            method: None,
            subscription_id: subscription_id.map(str::to_owned),
        }
    }

    #[test]
    fn a_line_names_a_subscription_by_the_providers_id_or_a_billing_charges_order_id() {
        let named = |order: Option<&str>, sub: Option<&str>| {
            subscription_of(&line(order, sub)).map(|s| s.to_string())
        };
        assert_eq!(named(None, Some("sub_01")), Some("sub_01".into()));
        assert_eq!(
            named(Some("sub-sub_01-c12"), None),
            Some("sub_01".into()),
            "Toss's orderId of a billing-key charge"
        );
        assert_eq!(named(Some("order-1"), None), None);
        assert_eq!(named(Some("sub-sub_01-cx"), None), None);
        assert_eq!(named(Some("sub-sub_01"), None), None);
    }
}
