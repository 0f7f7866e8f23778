//! Claims: filing, statements, assignment, resolution, appeal — and the payee warnings that
//! resolutions hand out.
//!
//! A claim only records decisions. Its money moves through the `claims` process manager
//! ([`crate::processes::ClaimProcess`]): a resolution's additional refund becomes a refund on the
//! order with refund id `claim-{id}-{round}` (once, however often the event is replayed), and
//! its penalties become warnings on `payee-{id}`.

use crate::bookings::{FlowError, CACHE_CAPACITY};
use crate::clock::Clock;
use crate::context::RequestContext;
use crate::executor::{AggregateCache, Executed, Executor};
use crate::payments::{PaymentError, Payments};
use chrono::{DateTime, Utc};
use payledger_domain::booking::{self, Booking};
use payledger_domain::claim::{
    self, Claim, ClaimCommand, ClaimError, ClaimType, ClaimedOrder, FileClaim, Party, ResolveClaim,
    Side,
};
use payledger_domain::ids::{AdminId, ClaimId, OrderId, PayeeId};
use payledger_domain::order::OrderError;
use payledger_domain::payee::{self, Payee, PayeeCommand};
use std::sync::Arc;

/// A claim after a command.
#[derive(Debug, Clone)]
pub struct ClaimSnapshot {
    pub claim_id: ClaimId,
    pub state: Claim,
    pub version: i64,
    /// Global position of the last event this request appended, for read-your-writes.
    pub position: Option<i64>,
    /// Nothing new happened: the command repeated one already answered.
    pub replay: bool,
}

#[derive(Debug, Clone)]
pub struct FileClaimInput {
    pub claim_id: Option<ClaimId>,
    pub order_id: OrderId,
    pub claim_type: ClaimType,
    pub filed_by: Party,
    pub description: String,
    pub evidence: Vec<String>,
}

/// A resolution as an admin enters it; the time is the clock's.
#[derive(Debug, Clone)]
pub struct ResolveInput {
    pub admin_id: AdminId,
    pub outcome: claim::ClaimOutcome,
    pub reason: String,
    pub refund_minor: i64,
    pub provider_payout_minor: i64,
    pub coupon: Option<String>,
    pub provider_compensation_minor: i64,
    pub penalties: Vec<claim::Penalty>,
}

pub struct Claims {
    executor: Arc<Executor>,
    payments: Arc<Payments>,
    claims: AggregateCache<Claim>,
    payees: AggregateCache<Payee>,
    bookings: AggregateCache<Booking>,
    clock: Arc<dyn Clock>,
}

impl Claims {
    pub fn new(executor: Arc<Executor>, payments: Arc<Payments>) -> Claims {
        Claims {
            clock: payments.clock().clone(),
            executor,
            payments,
            claims: AggregateCache::new(CACHE_CAPACITY),
            payees: AggregateCache::new(CACHE_CAPACITY),
            bookings: AggregateCache::new(CACHE_CAPACITY),
        }
    }

    /// The clock the claims' deadlines are measured with.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }

    async fn execute(
        &self,
        claim_id: &ClaimId,
        command: ClaimCommand,
        context: &RequestContext,
    ) -> Result<ClaimSnapshot, FlowError> {
        let executed: Executed<Claim> = self
            .executor
            .execute(&self.claims, &claim::stream_id(claim_id), command, context)
            .await?;
        Ok(ClaimSnapshot {
            claim_id: claim_id.clone(),
            replay: executed.events.is_empty(),
            position: executed.append.as_ref().map(|a| a.last_position),
            state: executed.state,
            version: executed.version,
        })
    }

    pub async fn load(&self, claim_id: &ClaimId) -> Result<Option<ClaimSnapshot>, FlowError> {
        let (version, state) = self
            .executor
            .load(&self.claims, &claim::stream_id(claim_id))
            .await?;
        Ok((version > 0).then(|| ClaimSnapshot {
            claim_id: claim_id.clone(),
            state,
            version,
            position: None,
            replay: false,
        }))
    }

    /// Files a claim about a paid order. The order's facts (payee, service time, what is at
    /// stake) come from the order stream, not from the caller.
    pub async fn file(
        &self,
        input: FileClaimInput,
        context: &RequestContext,
    ) -> Result<ClaimSnapshot, FlowError> {
        let order = self
            .payments
            .load_order(&input.order_id)
            .await?
            .ok_or(FlowError::Payment(PaymentError::Order(
                OrderError::NotFound,
            )))?;
        let placed = order
            .state
            .placed
            .clone()
            .ok_or(FlowError::Payment(PaymentError::Order(
                OrderError::NotFound,
            )))?;
        // After a schedule change the session happens at the new start: the filing windows
        // (and the service time the claim records) follow it, not the start the order was
        // placed with.
        let service_starts_at = match placed.service_starts_at {
            Some(placed_start) => {
                let (_, booking) = self
                    .executor
                    .load(&self.bookings, &booking::stream_id(&input.order_id))
                    .await?;
                Some(booking.rescheduled_start().unwrap_or(placed_start))
            }
            None => None,
        };
        let claim_id = input.claim_id.unwrap_or_else(ClaimId::generate);
        let command = ClaimCommand::File(FileClaim {
            claim_id: claim_id.clone(),
            order: ClaimedOrder {
                order_id: input.order_id,
                customer_id: placed.customer_id,
                payee_id: placed.payee_id,
                currency: placed.amount.currency(),
                service_starts_at,
                captured_minor: order.state.captured_minor,
                refunded_minor: order.state.refunded_minor + order.state.refund_pending_minor,
            },
            claim_type: input.claim_type,
            filed_by: input.filed_by,
            description: input.description,
            evidence: input.evidence,
            at: self.clock.now(),
        });
        self.execute(&claim_id, command, context).await
    }

    pub async fn submit_statement(
        &self,
        claim_id: &ClaimId,
        side: Side,
        text: String,
        evidence: Vec<String>,
        context: &RequestContext,
    ) -> Result<ClaimSnapshot, FlowError> {
        self.require(claim_id).await?;
        let command = ClaimCommand::SubmitStatement {
            side,
            text,
            evidence,
            at: self.clock.now(),
        };
        self.execute(claim_id, command, context).await
    }

    pub async fn assign(
        &self,
        claim_id: &ClaimId,
        admin_id: AdminId,
        context: &RequestContext,
    ) -> Result<ClaimSnapshot, FlowError> {
        self.require(claim_id).await?;
        let command = ClaimCommand::Assign {
            admin_id,
            at: self.clock.now(),
        };
        self.execute(claim_id, command, context).await
    }

    pub async fn resolve(
        &self,
        claim_id: &ClaimId,
        input: ResolveInput,
        context: &RequestContext,
    ) -> Result<ClaimSnapshot, FlowError> {
        self.require(claim_id).await?;
        let command = ClaimCommand::Resolve(ResolveClaim {
            admin_id: input.admin_id,
            outcome: input.outcome,
            reason: input.reason,
            refund_minor: input.refund_minor,
            provider_payout_minor: input.provider_payout_minor,
            coupon: input.coupon,
            provider_compensation_minor: input.provider_compensation_minor,
            penalties: input.penalties,
            at: self.clock.now(),
        });
        self.execute(claim_id, command, context).await
    }

    pub async fn appeal(
        &self,
        claim_id: &ClaimId,
        side: Side,
        reason: String,
        context: &RequestContext,
    ) -> Result<ClaimSnapshot, FlowError> {
        self.require(claim_id).await?;
        let command = ClaimCommand::Appeal {
            side,
            reason,
            at: self.clock.now(),
        };
        self.execute(claim_id, command, context).await
    }

    /// Records the respondent's missed deadline, when it is due. `Ok(false)`: nothing to record.
    pub async fn record_missed_deadline(&self, claim_id: &ClaimId) -> Result<bool, FlowError> {
        let context = RequestContext::system("claim-deadlines");
        let command = ClaimCommand::RecordMissedDeadline {
            at: self.clock.now(),
        };
        match self.execute(claim_id, command, &context).await {
            Ok(snapshot) => Ok(!snapshot.replay),
            Err(FlowError::Claim(ClaimError::DeadlineNotReached { .. })) => Ok(false),
            Err(error) => Err(error),
        }
    }

    async fn require(&self, claim_id: &ClaimId) -> Result<(), FlowError> {
        match self.load(claim_id).await? {
            Some(_) => Ok(()),
            None => Err(FlowError::Claim(ClaimError::NotFound)),
        }
    }

    /// Gives a payee a warning (the third suspends them). Idempotent per `warning_id`.
    pub async fn warn_payee(
        &self,
        payee_id: &PayeeId,
        warning_id: String,
        claim_id: &ClaimId,
        reason: String,
        context: &RequestContext,
    ) -> Result<Payee, FlowError> {
        let executed: Executed<Payee> = self
            .executor
            .execute(
                &self.payees,
                &payee::stream_id(payee_id),
                PayeeCommand::Warn {
                    payee_id: payee_id.clone(),
                    warning_id,
                    claim_id: claim_id.clone(),
                    reason,
                    at: self.clock.now(),
                },
                context,
            )
            .await?;
        Ok(executed.state)
    }

    /// When `payee_id` may take a new booking again, if a penalty suspension runs at `at`.
    pub async fn booking_suspension(
        &self,
        payee_id: &PayeeId,
        at: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, FlowError> {
        Ok(self.payments.booking_suspension(payee_id, at).await?)
    }

    pub async fn payee(&self, payee_id: &PayeeId) -> Result<Payee, FlowError> {
        let (_, state) = self
            .executor
            .load(&self.payees, &payee::stream_id(payee_id))
            .await?;
        Ok(state)
    }
}
