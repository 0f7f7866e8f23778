//! Operating the ledger (runbook, source document 2 §5–6): kill switches, outside payments and
//! the admin audit trail. Every one of them is an event, never a flag in a table or raw SQL.
//!
//! Streams:
//! - `ops-switches` ([`SWITCHES_STREAM`]): the kill switches, one aggregate, so flips are ordered
//!   and version-checked like any other command.
//! - `provider-tx-{provider}-{transaction id}` ([`provider_transaction_stream`]): claims one
//!   provider transaction id for one order; the stream existing is what makes an outside payment
//!   recordable at most once.
//! - `audit-admin` ([`ADMIN_AUDIT_STREAM`]): who did what, when and from where, for every admin
//!   action over HTTP and every key change from the CLI. Append-only, read by auditors.

use crate::ids::{OrderId, PayeeId, PaymentKey};
use crate::money::Money;
use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const SWITCHES_STREAM: &str = "ops-switches";
pub const ADMIN_AUDIT_STREAM: &str = "audit-admin";

/// A bound on the switch state, so loading it stays cheap on every confirmation.
pub const MAX_SUSPENDED_PAYEES: usize = 10_000;
/// Provider names and transaction ids go into a stream id (at most 200 characters).
pub const MAX_PROVIDER_NAME_CHARS: usize = 32;
pub const MAX_PROVIDER_TRANSACTION_ID_CHARS: usize = 150;

/// Longest reason of a switch or a manual operation (characters); no control characters.
pub const MAX_REASON_CHARS: usize = 200;

fn valid_reason(reason: &str) -> bool {
    let len = reason.chars().count();
    (1..=MAX_REASON_CHARS).contains(&len) && !reason.chars().any(char::is_control)
}

// ---------------------------------------------------------------------------------------------
// Kill switches, stream `ops-switches`
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwitchCommand {
    SuspendPayments {
        reason: String,
        at: DateTime<Utc>,
    },
    ResumePayments {
        at: DateTime<Utc>,
    },
    SuspendPayee {
        payee_id: PayeeId,
        reason: String,
        at: DateTime<Utc>,
    },
    ResumePayee {
        payee_id: PayeeId,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SwitchEvent {
    /// No new payment anywhere (runbook §6 "결제 버튼 비활성").
    PaymentsSuspended(Suspension),
    PaymentsResumed(Resumption),
    /// No new order or payment for one payee (runbook §6 "특정 코스 판매 중지").
    PayeeSalesSuspended(PayeeSuspension),
    PayeeSalesResumed(PayeeResumption),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Suspension {
    pub reason: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resumption {
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PayeeSuspension {
    pub payee_id: PayeeId,
    pub reason: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PayeeResumption {
    pub payee_id: PayeeId,
    pub at: DateTime<Utc>,
}

impl DomainEvent for SwitchEvent {
    fn event_type(&self) -> String {
        match self {
            SwitchEvent::PaymentsSuspended(_) => "PaymentsSuspended",
            SwitchEvent::PaymentsResumed(_) => "PaymentsResumed",
            SwitchEvent::PayeeSalesSuspended(_) => "PayeeSalesSuspended",
            SwitchEvent::PayeeSalesResumed(_) => "PayeeSalesResumed",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SwitchError {
    #[error("the reason must be 1 to 200 characters")]
    InvalidReason,
    #[error("at most {MAX_SUSPENDED_PAYEES} payees can be suspended at once")]
    TooManySuspendedPayees,
}

/// Which switch stops a sale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SalesBlock {
    AllPayments { reason: String },
    Payee { payee_id: PayeeId, reason: String },
}

/// The switches as they stand.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KillSwitches {
    pub payments_suspended: Option<Suspension>,
    pub suspended_payees: BTreeMap<PayeeId, Suspension>,
}

impl KillSwitches {
    /// Refuses any new charge while the "all payments" switch is on.
    pub fn check_payments(&self) -> Result<(), SalesBlock> {
        match &self.payments_suspended {
            Some(suspension) => Err(SalesBlock::AllPayments {
                reason: suspension.reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Whether a new order or payment for `payee_id` may go ahead; the global switch wins.
    pub fn check_sale(&self, payee_id: &PayeeId) -> Result<(), SalesBlock> {
        self.check_payments()?;
        if let Some(suspension) = self.suspended_payees.get(payee_id) {
            return Err(SalesBlock::Payee {
                payee_id: payee_id.clone(),
                reason: suspension.reason.clone(),
            });
        }
        Ok(())
    }

    fn decide(&self, command: SwitchCommand) -> Result<Vec<SwitchEvent>, SwitchError> {
        // Flipping a switch to where it already is records nothing: a retried admin request
        // must not pile up events.
        Ok(match command {
            SwitchCommand::SuspendPayments { reason, at } => {
                if !valid_reason(&reason) {
                    return Err(SwitchError::InvalidReason);
                }
                if self.payments_suspended.is_some() {
                    vec![]
                } else {
                    vec![SwitchEvent::PaymentsSuspended(Suspension { reason, at })]
                }
            }
            SwitchCommand::ResumePayments { at } => match self.payments_suspended {
                Some(_) => vec![SwitchEvent::PaymentsResumed(Resumption { at })],
                None => vec![],
            },
            SwitchCommand::SuspendPayee {
                payee_id,
                reason,
                at,
            } => {
                if !valid_reason(&reason) {
                    return Err(SwitchError::InvalidReason);
                }
                if self.suspended_payees.contains_key(&payee_id) {
                    vec![]
                } else if self.suspended_payees.len() >= MAX_SUSPENDED_PAYEES {
                    return Err(SwitchError::TooManySuspendedPayees);
                } else {
                    vec![SwitchEvent::PayeeSalesSuspended(PayeeSuspension {
                        payee_id,
                        reason,
                        at,
                    })]
                }
            }
            SwitchCommand::ResumePayee { payee_id, at } => {
                if self.suspended_payees.contains_key(&payee_id) {
                    vec![SwitchEvent::PayeeSalesResumed(PayeeResumption {
                        payee_id,
                        at,
                    })]
                } else {
                    vec![]
                }
            }
        })
    }
}

impl Aggregate for KillSwitches {
    const TYPE: &'static str = "kill_switches";
    type Command = SwitchCommand;
    type Event = SwitchEvent;
    type Error = SwitchError;
    type Services = ();

    async fn handle(
        &mut self,
        command: SwitchCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), SwitchError> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: SwitchEvent) {
        match event {
            SwitchEvent::PaymentsSuspended(s) => self.payments_suspended = Some(s),
            SwitchEvent::PaymentsResumed(_) => self.payments_suspended = None,
            SwitchEvent::PayeeSalesSuspended(s) => {
                self.suspended_payees.insert(
                    s.payee_id,
                    Suspension {
                        reason: s.reason,
                        at: s.at,
                    },
                );
            }
            SwitchEvent::PayeeSalesResumed(r) => {
                self.suspended_payees.remove(&r.payee_id);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Outside payments, stream `provider-tx-{provider}-{transaction id}`
// ---------------------------------------------------------------------------------------------

pub fn provider_transaction_stream(provider: &str, transaction_id: &PaymentKey) -> String {
    crate::streams::StreamKind::ProviderTransaction
        .name(format_args!("{provider}-{transaction_id}"))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderTransactionCommand {
    Claim(ExternalPaymentRecorded),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProviderTransactionEvent {
    ExternalPaymentRecorded(ExternalPaymentRecorded),
}

/// A payment made outside payledger (bank transfer, the provider's console), claimed for one
/// order. The order records the capture itself (`PaymentCaptured` with source `manual`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalPaymentRecorded {
    pub provider: String,
    pub provider_transaction_id: PaymentKey,
    pub order_id: OrderId,
    pub amount: Money,
    pub reason: String,
    pub at: DateTime<Utc>,
}

impl DomainEvent for ProviderTransactionEvent {
    fn event_type(&self) -> String {
        "ExternalPaymentRecorded".to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderTransactionError {
    #[error("this provider transaction id is already recorded for order {0}")]
    AlreadyRecorded(OrderId),
    #[error("the provider name must be 1 to {MAX_PROVIDER_NAME_CHARS} characters of a-z 0-9 _ -")]
    InvalidProvider,
    #[error("the provider transaction id must be at most {MAX_PROVIDER_TRANSACTION_ID_CHARS} characters")]
    TransactionIdTooLong,
    #[error("the reason must be 1 to 200 characters")]
    InvalidReason,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderTransaction {
    pub recorded: Option<ExternalPaymentRecorded>,
}

impl ProviderTransaction {
    fn claim(
        &self,
        claim: ExternalPaymentRecorded,
    ) -> Result<Vec<ProviderTransactionEvent>, ProviderTransactionError> {
        let provider_ok = (1..=MAX_PROVIDER_NAME_CHARS).contains(&claim.provider.len())
            && claim
                .provider
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if !provider_ok {
            return Err(ProviderTransactionError::InvalidProvider);
        }
        if claim.provider_transaction_id.as_str().len() > MAX_PROVIDER_TRANSACTION_ID_CHARS {
            return Err(ProviderTransactionError::TransactionIdTooLong);
        }
        if !valid_reason(&claim.reason) {
            return Err(ProviderTransactionError::InvalidReason);
        }
        match &self.recorded {
            // The same claim again (a retry after a crash between the two appends): go on.
            Some(existing) if existing.order_id == claim.order_id => Ok(vec![]),
            Some(existing) => Err(ProviderTransactionError::AlreadyRecorded(
                existing.order_id.clone(),
            )),
            None => Ok(vec![ProviderTransactionEvent::ExternalPaymentRecorded(
                claim,
            )]),
        }
    }
}

impl Aggregate for ProviderTransaction {
    const TYPE: &'static str = "provider_transaction";
    type Command = ProviderTransactionCommand;
    type Event = ProviderTransactionEvent;
    type Error = ProviderTransactionError;
    type Services = ();

    async fn handle(
        &mut self,
        command: ProviderTransactionCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), ProviderTransactionError> {
        let ProviderTransactionCommand::Claim(claim) = command;
        for event in self.claim(claim)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: ProviderTransactionEvent) {
        let ProviderTransactionEvent::ExternalPaymentRecorded(recorded) = event;
        self.recorded = Some(recorded);
    }
}

// ---------------------------------------------------------------------------------------------
// The admin audit trail, stream `audit-admin`
// ---------------------------------------------------------------------------------------------

/// Events of the admin audit stream. Who acted is the event metadata's `actor`
/// (`admin:NAME`, `cli:USER`), which the hash chain covers like the payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminAuditEvent {
    /// An admin request over HTTP, with its outcome.
    AdminActionRecorded(AdminAction),
    ApiKeyCreated(ApiKeyChange),
    ApiKeyRevoked(ApiKeyChange),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminAction {
    /// `METHOD /route/{pattern}`: what was done.
    pub action: String,
    /// The concrete path (ids included): to what.
    pub path: String,
    /// The HTTP status it was answered with.
    pub status: u16,
    pub key_id: String,
    /// The peer address the request came from (the proxy's, behind one).
    pub remote_addr: Option<String>,
    /// `X-Forwarded-For` as sent; recorded, not trusted.
    pub forwarded_for: Option<String>,
    pub user_agent: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyChange {
    pub key_id: String,
    pub name: String,
    pub role: String,
    pub at: DateTime<Utc>,
}

impl DomainEvent for AdminAuditEvent {
    fn event_type(&self) -> String {
        match self {
            AdminAuditEvent::AdminActionRecorded(_) => "AdminActionRecorded",
            AdminAuditEvent::ApiKeyCreated(_) => "ApiKeyCreated",
            AdminAuditEvent::ApiKeyRevoked(_) => "ApiKeyRevoked",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}
