//! The kill switches as the sales paths read them (runbook §6): a copy at most a second old,
//! checked before every new order and charge, and flipped by admins. Below both `payments`
//! (which checks them) and `operations` (which records the admin's other actions).

use crate::context::RequestContext;
use crate::executor::{AggregateCache, ExecuteError, Executor};
use payledger_domain::ids::PayeeId;
use payledger_domain::operations::{
    KillSwitches, SalesBlock, SwitchCommand, SwitchError, SWITCHES_STREAM,
};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a process trusts its copy of the switches before reading the stream again. A switch
/// flipped in this process applies at once; one flipped in another process within this time.
pub const SWITCHES_MAX_AGE_MS: u64 = 1_000;

/// The kill switches, read cheaply on every new order and confirmation.
/// Why a sale may not go ahead.
#[derive(Debug, thiserror::Error)]
pub enum SalesCheckError {
    /// A switch stops it; nothing was recorded or charged.
    #[error("{}", describe_block(.0))]
    Suspended(SalesBlock),
    /// The switches could not be read, so the sale cannot be cleared.
    #[error("the kill switches cannot be read: {0}")]
    Unavailable(String),
}

pub struct SalesSwitches {
    executor: Arc<Executor>,
    cache: AggregateCache<KillSwitches>,
    fresh: Mutex<Option<(Instant, KillSwitches)>>,
    max_age: Duration,
}

/// The switches after a flip, and whether the flip changed anything.
#[derive(Debug, Clone)]
pub struct Flipped {
    pub switches: KillSwitches,
    pub changed: bool,
    pub position: Option<i64>,
}

impl SalesSwitches {
    pub fn new(executor: Arc<Executor>) -> SalesSwitches {
        SalesSwitches {
            executor,
            cache: AggregateCache::new(1),
            fresh: Mutex::new(None),
            max_age: Duration::from_millis(SWITCHES_MAX_AGE_MS),
        }
    }

    /// The switches, at most [`SWITCHES_MAX_AGE_MS`] old.
    pub async fn current(&self) -> Result<KillSwitches, SalesCheckError> {
        if let Ok(fresh) = self.fresh.lock() {
            if let Some((read_at, switches)) = fresh.as_ref() {
                if read_at.elapsed() < self.max_age {
                    return Ok(switches.clone());
                }
            }
        }
        let (_, switches) = self
            .executor
            .load(&self.cache, SWITCHES_STREAM)
            .await
            .map_err(|e: ExecuteError<SwitchError>| SalesCheckError::Unavailable(e.to_string()))?;
        self.remember(&switches);
        Ok(switches)
    }

    fn remember(&self, switches: &KillSwitches) {
        if let Ok(mut fresh) = self.fresh.lock() {
            *fresh = Some((Instant::now(), switches.clone()));
        }
    }

    /// Refuses any new charge while the "all payments" switch is on (billing-key charges,
    /// which belong to no payee).
    pub async fn check_payments(&self) -> Result<(), SalesCheckError> {
        self.current()
            .await?
            .check_payments()
            .map_err(SalesCheckError::Suspended)
    }

    /// Refuses a new sale for `payee_id` while a switch stops it.
    pub async fn check_sale(&self, payee_id: &PayeeId) -> Result<(), SalesCheckError> {
        self.current()
            .await?
            .check_sale(payee_id)
            .map_err(SalesCheckError::Suspended)
    }

    /// Flips a switch for the admin in `context`; a flip that changes nothing appends nothing.
    pub async fn flip(
        &self,
        command: SwitchCommand,
        context: &RequestContext,
    ) -> Result<Flipped, ExecuteError<SwitchError>> {
        let executed = self
            .executor
            .execute(&self.cache, SWITCHES_STREAM, command, context)
            .await?;
        self.remember(&executed.state);
        Ok(Flipped {
            changed: !executed.events.is_empty(),
            position: executed.append.map(|a| a.last_position),
            switches: executed.state,
        })
    }
}

/// What a sale is refused with, for messages.
pub fn describe_block(block: &SalesBlock) -> String {
    match block {
        SalesBlock::AllPayments { reason } => format!("new payments are suspended: {reason}"),
        SalesBlock::Payee { payee_id, reason } => {
            format!("sales of payee {payee_id} are suspended: {reason}")
        }
    }
}
