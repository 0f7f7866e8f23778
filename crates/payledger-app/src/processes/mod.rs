//! The process managers of bookings, claims and settlement (run by
//! [`payledger_projector::process`]). Each reacts to events with idempotent commands whose ids
//! derive from the triggering event:
//!
//! | process | on | does | id |
//! | --- | --- | --- | --- |
//! | `bookings` | `PaymentCaptured` of a booking | reserves the slot; when it holds, asks the provider to confirm (`BookingConfirmationRequested`) | the slot remembers each order; the booking asks once |
//! | `bookings` | `SlotReservationRefused` | refunds the order in full, reason `SLOT_TAKEN` | refund `slot-taken` |
//! | `bookings` | `BookingCancelled` | refunds the customer's share, releases the slot | refund `cancel` |
//! | `bookings` | `BookingRescheduled` | releases the slot it moved from | the slot remembers its holder |
//! | `claims` | `ClaimResolved` with an additional refund | refunds it on the order | refund `claim-{id}-{round}` |
//! | `claims` | `ClaimResolved` with penalties | warns the payee | warning `{claim}:{round}:{i}` |
//! | `settlements` | fulfilment, late cancellation, a claim awarding a payout | payment line | `payment:{order}` |
//! | `settlements` | `RefundCompleted` of a payable order | refund line | `refund:{order}:{refund}` |
//! | `settlements` | `ClaimFiled` / `ClaimAppealed` on a payable order | hold line | `hold:{claim}:{round}` |
//! | `settlements` | `ClaimResolved` | release, compensation lines | `release:…`, `compensation:…` |
//! | `settlements` | `StatementConfirmed` with a negative net | carried balance | `carry:{statement}` |
//! | `settlements` | `ProviderRefundRecorded` of a payable order | refund line | `refund:{order}:provider-{transaction}` |
//! | `settlements` | `DisputeOpened` on a payable order (or one that becomes payable while it is open) | hold line | `hold:dispute:{dispute}` |
//! | `settlements` | `DisputeWon` / `DisputeLost` | release line; lost: refund line for what the provider kept | `release:dispute:{dispute}`, `dispute-lost:{order}:{dispute}` |
//!
//! A refund that the provider refuses is tried again under a new id (`slot-taken.2`, …) up to
//! [`MAX_REFUND_ATTEMPTS`]; one whose outcome is not known yet makes the process wait (the
//! reconciler settles it) rather than risk refunding twice.

use crate::bookings::{Bookings, FlowError};
use crate::claims::Claims;
use crate::context::RequestContext;
use crate::payments::{PaymentError, Payments};
use crate::settlements::Settlements;
use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use futures::StreamExt;
use payledger_domain::booking::{BookingEvent, CANCEL_REFUND_ID};
use payledger_domain::claim::{self, ClaimEvent};
use payledger_domain::codec;
use payledger_domain::ids::{ClaimId, OrderId, PayeeId, RefundId};
use payledger_domain::money::Currency;
use payledger_domain::order::{OrderError, OrderEvent, RefundStatus};
use payledger_domain::payee;
use payledger_domain::settlement::{LineKind, StatementEvent, StatementKey, StatementLine};
use payledger_domain::slot::SlotEvent;
use payledger_domain::streams::StreamKind;
use payledger_projector::process::{self, ProcessError, ProcessManager, Unhandled};
use payledger_store::RecordedEvent;
use serde::de::DeserializeOwned;
use sqlx::{PgConnection, Row};
use std::sync::Arc;

mod bookings;
mod claims;
mod settlements;

pub use bookings::BookingProcess;
pub use claims::ClaimProcess;
pub use settlements::SettlementProcess;

/// Refund attempts (new refund ids) before a process gives up and dead-letters the event.
pub const MAX_REFUND_ATTEMPTS: u32 = 5;
/// The refund reason of a booking that lost its slot.
pub const SLOT_TAKEN_REASON: &str = "SLOT_TAKEN";
/// The refund id of a booking that lost its slot.
pub const SLOT_TAKEN_REFUND_ID: &str = "slot-taken";

fn decode<E: DeserializeOwned>(event: &RecordedEvent) -> Result<E, ProcessError> {
    codec::decode(&event.event_type, &event.payload)
        .map_err(|e| ProcessError::GiveUp(e.to_string()))
}

fn flow_error(error: FlowError) -> ProcessError {
    if error.is_transient() {
        ProcessError::Retry(error.to_string())
    } else {
        ProcessError::GiveUp(error.to_string())
    }
}

fn parse_id<T>(parsed: Result<T, payledger_domain::ids::InvalidId>) -> Result<T, ProcessError> {
    parsed.map_err(|e| ProcessError::GiveUp(e.to_string()))
}

/// How a refund the process asked for ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundEnsured {
    /// Completed under this id.
    Completed(RefundId),
    /// Nothing (more) could be refunded: the order was refunded by other means.
    NothingLeft,
}

/// Refunds `amount_minor` (all that is left with `None`) of an order exactly once, under the
/// refund id `base_id` or, after refusals, `base_id.2`, `base_id.3`, …
///
/// - a completed attempt: done, whatever happens again;
/// - an attempt in flight (requested, or outcome unknown): wait — the reconciler settles it;
/// - another refund of the order in flight: wait, so the amount left is known;
/// - an amount above what is left is cut to what is left (a claim resolved while a support
///   refund ran must not refund twice); nothing left is done.
pub async fn ensure_refund(
    payments: &Payments,
    order_id: &OrderId,
    base_id: &str,
    amount_minor: Option<i64>,
    reason: &str,
    context: &RequestContext,
) -> Result<RefundEnsured, ProcessError> {
    let order = payments
        .load_order(order_id)
        .await
        .map_err(|e| flow_error(e.into()))?
        .ok_or_else(|| ProcessError::GiveUp(format!("order {order_id} does not exist")))?;
    let state = &order.state;
    let mut failed_attempts = 0u32;
    for attempt in 1..=MAX_REFUND_ATTEMPTS {
        let id = if attempt == 1 {
            base_id.to_string()
        } else {
            format!("{base_id}.{attempt}")
        };
        let refund_id = parse_id(RefundId::parse(id))?;
        match state.refunds.get(&refund_id).map(|r| r.status) {
            Some(RefundStatus::Completed) => return Ok(RefundEnsured::Completed(refund_id)),
            Some(
                RefundStatus::Requested
                | RefundStatus::OutcomeUnknown
                | RefundStatus::AwaitingProvider,
            ) => {
                return Err(ProcessError::Retry(format!(
                    "refund {refund_id} of {order_id} is in flight"
                )))
            }
            Some(RefundStatus::Failed) => failed_attempts += 1,
            None => {
                return request_refund(
                    payments,
                    order_id,
                    refund_id,
                    amount_minor,
                    reason,
                    context,
                    state,
                )
                .await
            }
        }
    }
    Err(ProcessError::GiveUp(format!(
        "the provider refused the refund of {order_id} {failed_attempts} times"
    )))
}

async fn request_refund(
    payments: &Payments,
    order_id: &OrderId,
    refund_id: RefundId,
    amount_minor: Option<i64>,
    reason: &str,
    context: &RequestContext,
    state: &payledger_domain::order::Order,
) -> Result<RefundEnsured, ProcessError> {
    if state.refund_pending_minor > 0 {
        return Err(ProcessError::Retry(format!(
            "another refund of {order_id} is in flight"
        )));
    }
    let left = state.refundable_minor();
    let amount = match amount_minor {
        Some(wanted) => wanted.min(left),
        None => left,
    };
    if amount <= 0 {
        return Ok(RefundEnsured::NothingLeft);
    }
    let result = payments
        .refund(
            order_id,
            Some(refund_id.clone()),
            Some(amount),
            reason.to_string(),
            context,
        )
        .await;
    match result {
        Ok((_, after)) => match after.state.refunds.get(&refund_id).map(|r| r.status) {
            Some(RefundStatus::Completed) => Ok(RefundEnsured::Completed(refund_id)),
            Some(RefundStatus::Failed) => Err(ProcessError::Retry(format!(
                "the provider refused refund {refund_id} of {order_id}; trying a new attempt"
            ))),
            _ => Err(ProcessError::Retry(format!(
                "refund {refund_id} of {order_id} is in flight"
            ))),
        },
        Err(PaymentError::Order(OrderError::NothingToRefund)) => Ok(RefundEnsured::NothingLeft),
        Err(PaymentError::Order(OrderError::RefundExceedsRefundable { .. })) => Err(
            ProcessError::Retry(format!("the refundable amount of {order_id} changed")),
        ),
        Err(error) => Err(flow_error(error.into())),
    }
}

fn system_context(process: &str) -> RequestContext {
    RequestContext::system(&format!("process:{process}"))
}

/// The three process managers over shared services, in the order `serve` starts them.
pub fn all(
    bookings: Arc<Bookings>,
    claims: Arc<Claims>,
    settlements: Arc<Settlements>,
) -> Vec<Arc<dyn ProcessManager>> {
    let payments = bookings.payments().clone();
    vec![
        Arc::new(BookingProcess::new(bookings)),
        Arc::new(ClaimProcess::new(claims, payments)),
        Arc::new(SettlementProcess::new(settlements)),
    ]
}
