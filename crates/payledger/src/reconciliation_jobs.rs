//! The provider's money, reconciled (issue 18), as `serve` runs it and the CLI asks for it:
//! which providers' settlement reports are imported and at which agreed fee schedule
//! (settings `PAYLEDGER_FEE_SCHEDULE_*`), the scheduled import of the last days' payouts plus the
//! check for captures never settled (`PAYLEDGER_RECONCILIATION_INTERVAL_S`), and
//! `payledger reconcile settlements`.

use crate::providers::ProviderSettings;
use anyhow::Context;
use chrono::{DateTime, Days, NaiveDate, Utc};
use payledger_app::clock::Clock;
use payledger_app::context::RequestContext;
use payledger_app::executor::Executor;
use payledger_app::payments::Payments;
use payledger_app::reconciliation::{
    ImportSummary, ReconciledProvider, Reconciliation, UnsettledCapture, MAX_UNSETTLED_PER_RUN,
};
use payledger_connector_toss::settlements::TossSettlements;
use payledger_connector_toss::TossSecretKey;
use payledger_domain::ids::OrderId;
use payledger_domain::money::Currency;
use payledger_domain::reconciliation::{FeeSchedule, FeeSchedules};
use payledger_gateway::settlements::SettlementPeriod;
use serde::Serialize;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;

/// How long the unsettled check waits for the read models to reach what was just imported.
const READ_MODEL_WAIT_MS: u64 = 30_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconciliationSettings {
    /// Seconds between scheduled runs; 0 turns the schedule off.
    pub interval_s: u64,
    /// Each run imports the payouts of this many days up to today.
    pub lookback_days: u32,
    pub toss: FeeSchedules,
    pub stripe: FeeSchedules,
    pub paddle: FeeSchedules,
}

impl Default for ReconciliationSettings {
    fn default() -> Self {
        ReconciliationSettings {
            interval_s: 21_600,
            lookback_days: 7,
            toss: FeeSchedules::uniform(FeeSchedule::TOSS_DEFAULT),
            stripe: FeeSchedules::uniform(FeeSchedule::STRIPE_DEFAULT),
            paddle: FeeSchedules::uniform(FeeSchedule::PADDLE_DEFAULT),
        }
    }
}

impl ReconciliationSettings {
    /// The defaults overridden by `PAYLEDGER_RECONCILIATION_INTERVAL_S`,
    /// `PAYLEDGER_RECONCILIATION_LOOKBACK_DAYS` and `PAYLEDGER_FEE_SCHEDULE_{TOSS,STRIPE,PADDLE}`.
    pub fn with_env(mut self) -> anyhow::Result<ReconciliationSettings> {
        if let Some(value) = crate::settings::get("PAYLEDGER_RECONCILIATION_INTERVAL_S") {
            self.interval_s = value
                .trim()
                .parse()
                .context("PAYLEDGER_RECONCILIATION_INTERVAL_S must be a number of seconds")?;
        }
        if let Some(value) = crate::settings::get("PAYLEDGER_RECONCILIATION_LOOKBACK_DAYS") {
            self.lookback_days = value
                .trim()
                .parse()
                .ok()
                .filter(|d| (1..=31).contains(d))
                .context("PAYLEDGER_RECONCILIATION_LOOKBACK_DAYS must be 1 to 31")?;
        }
        if let Some(value) = crate::settings::get("PAYLEDGER_FEE_SCHEDULE_TOSS") {
            self.toss = parse_fee_schedules("PAYLEDGER_FEE_SCHEDULE_TOSS", &value, &self.toss)?;
        }
        if let Some(value) = crate::settings::get("PAYLEDGER_FEE_SCHEDULE_STRIPE") {
            self.stripe =
                parse_fee_schedules("PAYLEDGER_FEE_SCHEDULE_STRIPE", &value, &self.stripe)?;
        }
        if let Some(value) = crate::settings::get("PAYLEDGER_FEE_SCHEDULE_PADDLE") {
            self.paddle =
                parse_fee_schedules("PAYLEDGER_FEE_SCHEDULE_PADDLE", &value, &self.paddle)?;
        }
        Ok(self)
    }
}

/// Sections separated by `;`: the first without a method is the default schedule, each
/// `METHOD: …` one a payment method's (as the provider names it: `가상계좌`, `card`), starting
/// from the default: `rate_bps=320,vat_bps=1000; 가상계좌: rate_bps=0,fixed_minor=300`.
pub fn parse_fee_schedules(
    name: &str,
    value: &str,
    base: &FeeSchedules,
) -> anyhow::Result<FeeSchedules> {
    let mut schedules = base.clone();
    let mut methods = Vec::new();
    for section in value.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        match section.split_once(':') {
            Some((method, keys)) if !method.contains('=') => {
                let method = method.trim();
                if method.is_empty() || method.chars().count() > 40 {
                    anyhow::bail!("{name}: a method name is 1 to 40 characters");
                }
                methods.push((method.to_string(), keys.to_string()));
            }
            _ => schedules.default = parse_fee_schedule(name, section, schedules.default)?,
        }
    }
    for (method, keys) in methods {
        let schedule = parse_fee_schedule(name, &keys, schedules.default)?;
        schedules.by_method.insert(method, schedule);
    }
    Ok(schedules)
}

/// `rate_bps=320,vat_bps=1000,fixed_minor=0,refund_returns_fee=true,delay_days=2`; names left
/// out keep `base`'s value.
pub fn parse_fee_schedule(
    name: &str,
    value: &str,
    base: FeeSchedule,
) -> anyhow::Result<FeeSchedule> {
    let mut schedule = base;
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, number) = part
            .split_once('=')
            .with_context(|| format!("{name}: '{part}' is not key=value"))?;
        let bad = || anyhow::anyhow!("{name}: '{part}' has a bad value");
        match key.trim() {
            "rate_bps" => schedule.rate_bps = number.trim().parse().map_err(|_| bad())?,
            "vat_bps" => schedule.vat_bps = number.trim().parse().map_err(|_| bad())?,
            "fixed_minor" => schedule.fixed_minor = number.trim().parse().map_err(|_| bad())?,
            "refund_returns_fee" => {
                schedule.refund_returns_fee = number.trim().parse().map_err(|_| bad())?
            }
            "delay_days" => {
                schedule.settlement_delay_days = number.trim().parse().map_err(|_| bad())?
            }
            other => anyhow::bail!("{name}: unknown key '{other}'"),
        }
    }
    schedule
        .validate()
        .map_err(|e| anyhow::anyhow!("{name}: {e}"))
}

/// The settlement sources of the providers this deployment talks to: Toss (or the sandbox that
/// speaks its API), Stripe (with `STRIPE_SECRET_KEY`, else the sandbox's `/stripe`) and Paddle
/// (with `PADDLE_API_KEY`, else the sandbox's `/paddle`), as `registry_from` configures their
/// payment connectors. Another provider is one more [`ReconciledProvider`] here.
pub fn build(
    settings: &ReconciliationSettings,
    provider: &ProviderSettings,
    sandbox_base_url: Option<String>,
    executor: Arc<Executor>,
    payments: Arc<Payments>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Reconciliation> {
    let stripe = ProviderSettings::stripe_from_env().or_else(|| {
        sandbox_base_url
            .as_ref()
            .map(|base| payledger_connector_stripe::StripeConfig::sandbox(format!("{base}/stripe")))
    });
    let paddle = ProviderSettings::paddle_from_env().or_else(|| {
        sandbox_base_url
            .as_ref()
            .map(|base| payledger_connector_paddle::PaddleConfig::sandbox(format!("{base}/paddle")))
    });
    let toss = match (provider, sandbox_base_url) {
        (
            ProviderSettings::Toss {
                base_url,
                secret_key,
            },
            _,
        ) => Some((base_url.clone(), secret_key.clone())),
        (_, Some(base_url)) => Some((
            base_url,
            TossSecretKey::new(payledger_connector_toss::SANDBOX_SECRET_KEY),
        )),
        _ => None,
    };
    let mut providers = Vec::new();
    if let Some((base_url, secret_key)) = toss {
        let source = TossSettlements::new(
            &base_url,
            &secret_key,
            payledger_connector_toss::PROVIDER_NAME,
        )
        .map_err(|e| anyhow::anyhow!("failed to configure Toss settlements: {e}"))?;
        providers.push(ReconciledProvider {
            source: Arc::new(source),
            schedules: settings.toss.clone(),
        });
    }
    if let Some(config) = stripe {
        let source = payledger_connector_stripe::settlements::StripeSettlements::new(
            &config.base_url,
            &config.secret_key,
            &config.provider_name,
        )
        .map_err(|e| anyhow::anyhow!("failed to configure Stripe settlements: {e}"))?;
        providers.push(ReconciledProvider {
            source: Arc::new(source),
            schedules: settings.stripe.clone(),
        });
    }
    if let Some(config) = paddle {
        let source = payledger_connector_paddle::settlements::PaddleSettlements::new(
            &config.base_url,
            &config.api_key,
            &config.provider_name,
        )
        .map_err(|e| anyhow::anyhow!("failed to configure Paddle settlements: {e}"))?;
        providers.push(ReconciledProvider {
            source: Arc::new(source),
            schedules: settings.paddle.clone(),
        });
    }
    let metrics: payledger_app::reconciliation::FlagObserver = Arc::new(|kind, provider| {
        payledger_metrics::metrics().reconciliation_flag(provider, kind.name())
    });
    Ok(Reconciliation::new(executor, payments, providers, clock).with_flag_observer(metrics))
}

/// What one scheduled (or CLI) run did for a provider.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    pub import: ImportSummary,
    /// Captures newly flagged as never settled; `None` when the read models did not catch up.
    pub unsettled_flagged: Option<u64>,
}

/// Imports `provider`'s payouts of `period`, then flags its captures older than the settlement
/// delay (at `as_of`) that no line settles, among those whose payout falls in the period or
/// before it (captured from `period.from` − delay − 1 day on): older captures were judged by
/// earlier runs, or predate the imports.
pub async fn run_once(
    reconciliation: &Reconciliation,
    pool: &PgPool,
    provider: &str,
    period: SettlementPeriod,
    as_of: DateTime<Utc>,
    context: &RequestContext,
) -> anyhow::Result<RunReport> {
    let import = reconciliation.import(provider, period, context).await?;
    let head = payledger_store::head_position(pool).await?;
    let caught_up = wait_for_read_models(pool, head.max(import.last_position)).await?;
    let unsettled_flagged = if caught_up {
        Some(flag_unsettled(reconciliation, pool, provider, period.from, as_of, context).await?)
    } else {
        tracing::warn!(
            provider,
            "the read models did not catch up; the unsettled check waits for the next run"
        );
        None
    };
    Ok(RunReport {
        import,
        unsettled_flagged,
    })
}

async fn wait_for_read_models(pool: &PgPool, position: i64) -> anyhow::Result<bool> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(READ_MODEL_WAIT_MS);
    loop {
        let behind: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM unnest(ARRAY['orders', 'reconciliation']) AS n(name) \
             LEFT JOIN projection_checkpoints c ON c.name = n.name \
             WHERE coalesce(c.position, 0) < $1",
        )
        .bind(position)
        .fetch_one(pool)
        .await?;
        if behind == 0 {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn flag_unsettled(
    reconciliation: &Reconciliation,
    pool: &PgPool,
    provider: &str,
    first_payout_day: NaiveDate,
    as_of: DateTime<Utc>,
    context: &RequestContext,
) -> anyhow::Result<u64> {
    let Some(schedule) = reconciliation.schedule(provider) else {
        return Ok(0);
    };
    let delay = chrono::Duration::days(i64::from(schedule.settlement_delay_days) + 1);
    let cutoff = as_of - delay;
    let captured_after = first_payout_day.and_time(chrono::NaiveTime::MIN).and_utc() - delay;
    let rows = payledger_read_models::reconciliation::unsettled_captures(
        pool,
        provider,
        captured_after,
        cutoff,
        MAX_UNSETTLED_PER_RUN as i64,
    )
    .await?;
    let captures: Vec<UnsettledCapture> = rows
        .into_iter()
        .filter_map(|row| {
            Some(UnsettledCapture {
                provider: row.provider,
                order_id: OrderId::parse(row.order_id).ok()?,
                currency: Currency::parse(&row.currency).ok()?,
                captured_minor: row.captured_minor,
                captured_at: row.captured_at,
            })
        })
        .collect();
    let (flagged, _) = reconciliation.flag_unsettled(&captures, context).await?;
    Ok(flagged)
}

/// The last `lookback_days` days up to `today`.
pub fn lookback(today: NaiveDate, lookback_days: u32) -> SettlementPeriod {
    SettlementPeriod {
        from: today
            .checked_sub_days(Days::new(u64::from(lookback_days.saturating_sub(1))))
            .unwrap_or(today),
        to: today,
    }
}

/// One pass over every reconciled provider: the last days' payouts up to the clock's today
/// (plus one, as provider calendars run ahead of UTC), then the unsettled check at the clock's
/// now. What the schedule runs each interval and a move of the scenario clock runs once.
pub async fn run_all(
    reconciliation: &Reconciliation,
    pool: &PgPool,
    lookback_days: u32,
    context: &RequestContext,
) -> Vec<(String, anyhow::Result<RunReport>)> {
    let now = reconciliation.now();
    let period = lookback(
        now.date_naive() + Days::new(1),
        lookback_days.saturating_add(1),
    );
    let mut reports = Vec::new();
    for provider in reconciliation.providers() {
        let report = run_once(reconciliation, pool, &provider, period, now, context).await;
        reports.push((provider, report));
    }
    reports
}

/// The reconciliation pass as a job of the scenario clock (`reconciliation.settlements`).
pub struct ReconciliationJob {
    pub reconciliation: Arc<Reconciliation>,
    pub pool: PgPool,
    pub lookback_days: u32,
}

#[async_trait::async_trait]
impl payledger_app::scenario_clock::DueJob for ReconciliationJob {
    fn name(&self) -> &'static str {
        "reconciliation.settlements"
    }

    async fn run_due(&self) -> Result<serde_json::Value, String> {
        let context = RequestContext::system("reconciliation");
        let mut answer = serde_json::Map::new();
        for (provider, report) in run_all(
            &self.reconciliation,
            &self.pool,
            self.lookback_days,
            &context,
        )
        .await
        {
            let report = report.map_err(|e| format!("{provider}: {e}"))?;
            answer.insert(
                provider,
                serde_json::to_value(report).map_err(|e| e.to_string())?,
            );
        }
        Ok(serde_json::Value::Object(answer))
    }
}

/// `serve`'s schedule: every interval, each provider's last days, then the unsettled check.
pub async fn run_scheduler(
    reconciliation: Arc<Reconciliation>,
    pool: PgPool,
    settings: ReconciliationSettings,
) {
    let context = RequestContext::system("reconciliation");
    let mut ticker = tokio::time::interval(Duration::from_secs(settings.interval_s.max(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        for (provider, report) in
            run_all(&reconciliation, &pool, settings.lookback_days, &context).await
        {
            match report {
                Ok(report) => tracing::info!(
                    provider,
                    lines = report.import.lines,
                    matched = report.import.matched,
                    unmatched = report.import.unmatched,
                    unsettled = report.unsettled_flagged,
                    "settlement import"
                ),
                Err(error) => {
                    tracing::warn!(provider, error = %error, "settlement import failed")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fee_schedule_reads_its_keys_and_refuses_what_it_does_not_know() {
        let parsed = parse_fee_schedule(
            "X",
            "rate_bps=250, delay_days=3,refund_returns_fee=false",
            FeeSchedule::TOSS_DEFAULT,
        )
        .unwrap();
        assert_eq!(
            parsed,
            FeeSchedule {
                rate_bps: 250,
                settlement_delay_days: 3,
                refund_returns_fee: false,
                ..FeeSchedule::TOSS_DEFAULT
            }
        );
        for bad in [
            "rate_bps=-1",
            "rate_bps=10001",
            "speed=3",
            "delay_days",
            "delay_days=91",
        ] {
            assert!(
                parse_fee_schedule("X", bad, FeeSchedule::TOSS_DEFAULT).is_err(),
                "{bad}"
            );
        }
        assert_eq!(
            parse_fee_schedule("X", "", FeeSchedule::STRIPE_DEFAULT).unwrap(),
            FeeSchedule::STRIPE_DEFAULT
        );
    }

    #[test]
    fn a_method_gets_its_own_schedule_from_the_default() {
        let parsed = parse_fee_schedules(
            "X",
            "rate_bps=300; 가상계좌: rate_bps=0,fixed_minor=300,vat_bps=0",
            &FeeSchedules::uniform(FeeSchedule::TOSS_DEFAULT),
        )
        .unwrap();
        assert_eq!(parsed.default.rate_bps, 300);
        let transfer = parsed.for_method(Some("가상계좌"));
        assert_eq!((transfer.rate_bps, transfer.fixed_minor), (0, 300));
        assert_eq!(transfer.settlement_delay_days, 2);
        assert!(parse_fee_schedules(
            "X",
            ": rate_bps=1",
            &FeeSchedules::uniform(FeeSchedule::TOSS_DEFAULT)
        )
        .is_err());
    }

    #[test]
    fn the_lookback_ends_today_and_counts_today() {
        let today = NaiveDate::from_ymd_opt(2026, 12, 6).unwrap();
        let period = lookback(today, 7);
        assert_eq!(period.to, today);
        assert_eq!(period.from, NaiveDate::from_ymd_opt(2026, 11, 30).unwrap());
    }
}
