//! Settlement statements: lines go to the payee's statement of the week, carried forward past
//! confirmed ones; statements are confirmed (frozen) and paid out by operators.

use crate::bookings::{FlowError, CACHE_CAPACITY};
use crate::clock::Clock;
use crate::context::RequestContext;
use crate::executor::{AggregateCache, ExecuteError, Executed, Executor};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use payledger_domain::money::BasisPoints;
use payledger_domain::settlement::{
    Statement, StatementCommand, StatementError, StatementKey, StatementLine, StatementSetup,
    DEFAULT_PLATFORM_FEE_BPS, DEFAULT_TIME_ZONE, MAX_CARRY_WEEKS,
};
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct SettlementConfig {
    /// Weeks run Monday 00:00 to Sunday 24:00 here.
    pub time_zone: Tz,
    /// The platform's fee on each statement's net sales (recorded when a statement opens).
    pub platform_fee: BasisPoints,
}

impl Default for SettlementConfig {
    fn default() -> Self {
        SettlementConfig {
            time_zone: DEFAULT_TIME_ZONE,
            platform_fee: BasisPoints::new(DEFAULT_PLATFORM_FEE_BPS).unwrap_or(BasisPoints::ZERO),
        }
    }
}

/// A statement after a command.
#[derive(Debug, Clone)]
pub struct StatementSnapshot {
    pub key: StatementKey,
    pub state: Statement,
    pub version: i64,
    pub position: Option<i64>,
    pub replay: bool,
}

pub struct Settlements {
    executor: Arc<Executor>,
    statements: AggregateCache<Statement>,
    clock: Arc<dyn Clock>,
    config: SettlementConfig,
}

impl Settlements {
    pub fn new(
        executor: Arc<Executor>,
        clock: Arc<dyn Clock>,
        config: SettlementConfig,
    ) -> Settlements {
        Settlements {
            executor,
            statements: AggregateCache::new(CACHE_CAPACITY),
            clock,
            config,
        }
    }

    pub fn config(&self) -> &SettlementConfig {
        &self.config
    }

    /// The time the settlement jobs act at (the service's clock).
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The statement a money event at `at` belongs to, before any carrying.
    pub fn key_for(
        &self,
        payee_id: payledger_domain::ids::PayeeId,
        currency: payledger_domain::money::Currency,
        at: DateTime<Utc>,
    ) -> StatementKey {
        StatementKey::for_time(payee_id, currency, at, self.config.time_zone)
    }

    async fn execute(
        &self,
        key: &StatementKey,
        command: StatementCommand,
        context: &RequestContext,
    ) -> Result<Executed<Statement>, ExecuteError<StatementError>> {
        self.executor
            .execute(&self.statements, &key.stream_id(), command, context)
            .await
    }

    /// Adds `line` to the statement of `base`, or — when that one is confirmed — to the first
    /// open statement after it, marking where it was carried from. Adding a line twice finds it
    /// where it went the first time. Returns the statement that holds the line.
    pub async fn add_line(
        &self,
        base: StatementKey,
        line: StatementLine,
        context: &RequestContext,
    ) -> Result<StatementKey, FlowError> {
        let mut key = base.clone();
        for _ in 0..MAX_CARRY_WEEKS {
            let mut candidate = line.clone();
            if key != base {
                candidate.carried_from = Some(base.week_start);
            }
            let command = StatementCommand::AddLine {
                setup: StatementSetup {
                    key: key.clone(),
                    time_zone: self.config.time_zone,
                    platform_fee: self.config.platform_fee,
                },
                line: candidate,
                at: self.clock.now(),
            };
            match self.execute(&key, command, context).await {
                Ok(_) => return Ok(key),
                Err(ExecuteError::Domain(StatementError::Closed(_))) => key = key.next(),
                Err(error) => return Err(error.into()),
            }
        }
        Err(FlowError::Statement(StatementError::TooManyLines))
    }

    pub async fn load(&self, key: &StatementKey) -> Result<Option<StatementSnapshot>, FlowError> {
        let (version, state) = self
            .executor
            .load(&self.statements, &key.stream_id())
            .await?;
        Ok((version > 0).then(|| StatementSnapshot {
            key: key.clone(),
            state,
            version,
            position: None,
            replay: false,
        }))
    }

    fn snapshot(key: &StatementKey, executed: Executed<Statement>) -> StatementSnapshot {
        StatementSnapshot {
            key: key.clone(),
            replay: executed.events.is_empty(),
            position: executed.append.as_ref().map(|a| a.last_position),
            state: executed.state,
            version: executed.version,
        }
    }

    /// Confirms (freezes) a statement whose week is over. Confirming again answers the first.
    pub async fn confirm(
        &self,
        key: &StatementKey,
        context: &RequestContext,
    ) -> Result<StatementSnapshot, FlowError> {
        self.require(key).await?;
        let executed = self
            .execute(
                key,
                StatementCommand::Confirm {
                    at: self.clock.now(),
                },
                context,
            )
            .await?;
        Ok(Self::snapshot(key, executed))
    }

    /// Records that the net payable was paid, with the bank's reference; closes the statement.
    pub async fn record_payout(
        &self,
        key: &StatementKey,
        reference: String,
        amount_minor: i64,
        context: &RequestContext,
    ) -> Result<StatementSnapshot, FlowError> {
        self.require(key).await?;
        let executed = self
            .execute(
                key,
                StatementCommand::RecordPayout {
                    reference,
                    amount_minor,
                    at: self.clock.now(),
                },
                context,
            )
            .await?;
        Ok(Self::snapshot(key, executed))
    }

    async fn require(&self, key: &StatementKey) -> Result<(), FlowError> {
        match self.load(key).await? {
            Some(_) => Ok(()),
            None => Err(FlowError::Statement(StatementError::NotFound)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettlementConfigError {
    #[error(
        "PAYLEDGER_SETTLEMENT_TIME_ZONE must be an IANA time zone such as Asia/Seoul, got '{0}'"
    )]
    TimeZone(String),
    #[error("PAYLEDGER_PLATFORM_FEE_BPS must be an integer from 0 to 10000, got '{0}'")]
    Fee(String),
}

impl SettlementConfig {
    /// The defaults, overridden by `PAYLEDGER_SETTLEMENT_TIME_ZONE` (an IANA name) and
    /// `PAYLEDGER_PLATFORM_FEE_BPS` (basis points) when set.
    /// `settings` answers a setting by name (the binary owns where settings come from).
    pub fn from_settings(
        settings: &dyn Fn(&str) -> Option<String>,
    ) -> Result<SettlementConfig, SettlementConfigError> {
        let mut config = SettlementConfig::default();
        if let Some(zone) = settings("PAYLEDGER_SETTLEMENT_TIME_ZONE") {
            config.time_zone = zone
                .parse::<Tz>()
                .map_err(|_| SettlementConfigError::TimeZone(zone.chars().take(64).collect()))?;
        }
        if let Some(fee) = settings("PAYLEDGER_PLATFORM_FEE_BPS") {
            config.platform_fee = fee
                .trim()
                .parse::<u32>()
                .ok()
                .and_then(|bps| BasisPoints::new(bps).ok())
                .ok_or_else(|| SettlementConfigError::Fee(fee.chars().take(16).collect()))?;
        }
        Ok(config)
    }
}
