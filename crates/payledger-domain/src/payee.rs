//! A payee's standing: warnings from claim resolutions and the suspensions they lead to.
//! Stream `payee-{payee_id}`.
//!
//! Every warning names where it came from (`warning_id`, derived from the claim, its resolution
//! round and the penalty's index), so a replayed resolution warns once. The third warning since
//! the last suspension suspends the provider for 7 days (source document 5, §2.3) and starts the
//! count again.

use crate::ids::{ClaimId, PayeeId};
use chrono::{DateTime, Duration, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// Warnings that suspend a provider.
pub const WARNINGS_BEFORE_SUSPENSION: u32 = 3;
/// How long a suspension lasts.
pub const SUSPENSION_DAYS: i64 = 7;
/// Warnings one payee's stream remembers; a bound so its state stays small.
pub const MAX_WARNINGS_PER_PAYEE: usize = 10_000;

pub fn stream_id(payee_id: &PayeeId) -> String {
    crate::streams::StreamKind::Payee.name(payee_id)
}

/// The id of the `index`-th penalty of a claim's `round`-th resolution.
pub fn warning_id(claim_id: &ClaimId, round: u32, index: usize) -> String {
    format!("{claim_id}:{round}:{index}")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayeeCommand {
    Warn {
        payee_id: PayeeId,
        warning_id: String,
        claim_id: ClaimId,
        reason: String,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PayeeEvent {
    PayeeWarned(PayeeWarned),
    PayeeSuspended(PayeeSuspended),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PayeeWarned {
    pub payee_id: PayeeId,
    pub warning_id: String,
    pub claim_id: ClaimId,
    pub reason: String,
    /// Warnings since the last suspension, this one included.
    pub active_warnings: u32,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PayeeSuspended {
    pub payee_id: PayeeId,
    pub from: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub warnings: u32,
}

impl DomainEvent for PayeeEvent {
    fn event_type(&self) -> String {
        match self {
            PayeeEvent::PayeeWarned(_) => "PayeeWarned",
            PayeeEvent::PayeeSuspended(_) => "PayeeSuspended",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayeeError {
    #[error("this stream belongs to another payee")]
    WrongPayee,
    #[error("the warning reason must be 1 to 1000 characters")]
    InvalidReason,
    #[error("the payee has {MAX_WARNINGS_PER_PAYEE} warnings; refusing more")]
    TooManyWarnings,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payee {
    pub payee_id: Option<PayeeId>,
    pub warning_ids: BTreeSet<String>,
    pub total_warnings: u32,
    pub active_warnings: u32,
    pub suspended_until: Option<DateTime<Utc>>,
    pub suspensions: u32,
}

impl Payee {
    pub fn is_suspended_at(&self, at: DateTime<Utc>) -> bool {
        self.suspended_until.is_some_and(|until| at < until)
    }

    fn decide(&self, command: PayeeCommand) -> Result<Vec<PayeeEvent>, PayeeError> {
        let PayeeCommand::Warn {
            payee_id,
            warning_id,
            claim_id,
            reason,
            at,
        } = command;
        if self.payee_id.as_ref().is_some_and(|p| *p != payee_id) {
            return Err(PayeeError::WrongPayee);
        }
        if self.warning_ids.contains(&warning_id) {
            return Ok(vec![]);
        }
        if self.warning_ids.len() >= MAX_WARNINGS_PER_PAYEE {
            return Err(PayeeError::TooManyWarnings);
        }
        let len = reason.chars().count();
        if len == 0 || len > 1_000 {
            return Err(PayeeError::InvalidReason);
        }
        let active_warnings = self.active_warnings + 1;
        let mut events = vec![PayeeEvent::PayeeWarned(PayeeWarned {
            payee_id: payee_id.clone(),
            warning_id,
            claim_id,
            reason,
            active_warnings,
            at,
        })];
        if active_warnings >= WARNINGS_BEFORE_SUSPENSION {
            events.push(PayeeEvent::PayeeSuspended(PayeeSuspended {
                payee_id,
                from: at,
                until: at + Duration::days(SUSPENSION_DAYS),
                warnings: active_warnings,
            }));
        }
        Ok(events)
    }
}

impl Aggregate for Payee {
    const TYPE: &'static str = "payee";
    type Command = PayeeCommand;
    type Event = PayeeEvent;
    type Error = PayeeError;
    type Services = ();

    async fn handle(
        &mut self,
        command: PayeeCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), PayeeError> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: PayeeEvent) {
        match event {
            PayeeEvent::PayeeWarned(warned) => {
                self.payee_id = Some(warned.payee_id);
                self.warning_ids.insert(warned.warning_id);
                self.total_warnings += 1;
                self.active_warnings = warned.active_warnings;
            }
            PayeeEvent::PayeeSuspended(suspended) => {
                self.suspended_until = Some(suspended.until);
                self.suspensions += 1;
                self.active_warnings = 0;
            }
        }
    }
}
