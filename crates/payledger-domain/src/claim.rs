//! A claim (dispute) about one order. Stream `claim-{claim_id}`.
//!
//! Lifecycle (source document 5, §2; domain spec §3.5):
//!
//! 1. **filed** by the customer or the provider, inside the filing window of its type: a provider
//!    no-show from 15 minutes after the service start, a customer no-show (filed by the provider,
//!    evidence required) from 10 minutes after it, a service-quality claim once the service has
//!    started; the respondent has 24 hours to answer;
//! 2. **statements**: each party may add one; the respondent's after 24 hours is refused, and the
//!    missed deadline is recorded (by a sweep, or at the latest when an admin acts on the claim);
//! 3. **assigned** to an admin, who **resolves** it: claimant wins / respondent wins / split /
//!    rejected, with a reason, the refund to the customer, the provider's payout, a coupon, a
//!    platform-funded compensation to the provider and penalties (warnings) for the provider;
//! 4. **appealed** once, within 7 days of the resolution: back to review, resolved again. A
//!    second resolution can raise the refund, never lower it (money paid back stays paid back).
//!
//! The claim records decisions; money moves elsewhere: a process manager turns a resolution's
//! additional refund into a refund on the order (refund id [`refund_id`]) and its penalties into
//! payee warnings.

use crate::ids::{AdminId, ClaimId, CustomerId, OrderId, PayeeId, RefundId};
use crate::money::{Currency, MAX_AMOUNT_MINOR};
use crate::refund_policy::{check_evidence, RefundPolicyError};
use chrono::{DateTime, Duration, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

/// A provider no-show claim can be filed this long after the service start.
pub const PROVIDER_NO_SHOW_OPENS_AFTER_MINUTES: i64 = 15;
/// A customer no-show claim can be filed this long after the service start.
pub const CUSTOMER_NO_SHOW_OPENS_AFTER_MINUTES: i64 = 10;
/// The respondent's time to answer, from the filing.
pub const RESPONSE_WINDOW_HOURS: i64 = 24;
/// How long after a resolution it can be appealed.
pub const APPEAL_WINDOW_DAYS: i64 = 7;
/// Resolutions a claim can have: the first and one after an appeal.
pub const MAX_RESOLUTION_ROUNDS: u32 = 2;
/// Warnings one resolution can give.
pub const MAX_PENALTIES_PER_RESOLUTION: usize = 3;
pub const MAX_DESCRIPTION_CHARS: usize = 2_000;
pub const MAX_REASON_CHARS: usize = 1_000;
pub const MAX_COUPON_CHARS: usize = 64;

pub fn stream_id(claim_id: &ClaimId) -> String {
    crate::streams::StreamKind::Claim.name(claim_id)
}

/// The refund id a resolution's refund gets on the order: derived from the claim and the round,
/// so a replayed or retried resolution asks for the same refund and the order refuses a second.
pub fn refund_id(claim_id: &ClaimId, round: u32) -> RefundId {
    RefundId::parse(format!("claim-{claim_id}-{round}"))
        .expect("claim ids are at most 40 characters of the refund id alphabet")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ClaimType {
    ProviderNoShow,
    CustomerNoShow,
    ServiceQuality,
    Schedule,
    Payment,
    Other,
}

impl ClaimType {
    pub const ALL: [ClaimType; 6] = [
        ClaimType::ProviderNoShow,
        ClaimType::CustomerNoShow,
        ClaimType::ServiceQuality,
        ClaimType::Schedule,
        ClaimType::Payment,
        ClaimType::Other,
    ];
}

/// The two sides of a booking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Party {
    Customer,
    Provider,
}

impl Party {
    pub fn other(self) -> Party {
        match self {
            Party::Customer => Party::Provider,
            Party::Provider => Party::Customer,
        }
    }
}

/// Which side of the claim a statement comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Claimant,
    Respondent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimOutcome {
    ClaimantWins,
    RespondentWins,
    Split,
    Rejected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Penalty {
    /// One warning to the provider; three suspend them (see [`crate::payee`]).
    Warning,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimStatus {
    #[default]
    New,
    /// Waiting for an admin.
    Filed,
    UnderReview,
    Resolved,
    /// Resolved, then appealed: waiting for an admin again.
    Appealed,
}

impl ClaimStatus {
    /// Open claims hold the order's settlement line.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            ClaimStatus::Filed | ClaimStatus::UnderReview | ClaimStatus::Appealed
        )
    }
}

/// What the application knows about the order a claim is filed on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimedOrder {
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    pub payee_id: PayeeId,
    pub currency: Currency,
    pub service_starts_at: Option<DateTime<Utc>>,
    pub captured_minor: i64,
    /// Refunded or being refunded when the claim is filed.
    pub refunded_minor: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileClaim {
    pub claim_id: ClaimId,
    pub order: ClaimedOrder,
    pub claim_type: ClaimType,
    pub filed_by: Party,
    pub description: String,
    pub evidence: Vec<String>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveClaim {
    pub admin_id: AdminId,
    pub outcome: ClaimOutcome,
    pub reason: String,
    /// What the customer gets back in total by this claim (all rounds).
    pub refund_minor: i64,
    /// What the provider keeps of the amount at stake.
    pub provider_payout_minor: i64,
    /// A coupon granted to the customer (e.g. `FREE_SESSION_1`); not money in this ledger.
    pub coupon: Option<String>,
    /// Paid to the provider by the platform on top of the payout (settled as a compensation).
    pub provider_compensation_minor: i64,
    pub penalties: Vec<Penalty>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimCommand {
    File(FileClaim),
    SubmitStatement {
        side: Side,
        text: String,
        evidence: Vec<String>,
        at: DateTime<Utc>,
    },
    /// Records that the respondent let the 24 hours pass without a statement (a sweep's command).
    RecordMissedDeadline {
        at: DateTime<Utc>,
    },
    Assign {
        admin_id: AdminId,
        at: DateTime<Utc>,
    },
    Resolve(ResolveClaim),
    Appeal {
        side: Side,
        reason: String,
        at: DateTime<Utc>,
    },
}

// ---------------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClaimEvent {
    ClaimFiled(ClaimFiled),
    ClaimStatementSubmitted(ClaimStatementSubmitted),
    ClaimResponseDeadlineMissed(ClaimResponseDeadlineMissed),
    ClaimAssigned(ClaimAssigned),
    ClaimResolved(ClaimResolved),
    ClaimAppealed(ClaimAppealed),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimFiled {
    pub claim_id: ClaimId,
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    pub payee_id: PayeeId,
    pub currency: Currency,
    pub claim_type: ClaimType,
    pub filed_by: Party,
    /// Personal: `description` and `evidence` are sealed under `customer_id`.
    pub description: String,
    pub evidence: Vec<String>,
    pub service_starts_at: Option<DateTime<Utc>>,
    /// Captured less refunded when filed: what the resolution divides.
    pub amount_at_stake_minor: i64,
    pub respond_by: DateTime<Utc>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimStatementSubmitted {
    pub side: Side,
    pub party: Party,
    /// Personal: `text` and `evidence` are sealed under `customer_id`.
    pub text: String,
    pub evidence: Vec<String>,
    pub at: DateTime<Utc>,
    /// Whose personal data the texts are: the claim's customer. From schema version 2 on;
    /// `None` in version 1.
    #[serde(default)]
    pub customer_id: Option<CustomerId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimResponseDeadlineMissed {
    pub respond_by: DateTime<Utc>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimAssigned {
    pub admin_id: AdminId,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimResolved {
    /// 1 for the first resolution, 2 after an appeal.
    pub round: u32,
    pub order_id: OrderId,
    pub payee_id: PayeeId,
    pub currency: Currency,
    pub admin_id: AdminId,
    pub outcome: ClaimOutcome,
    pub reason: String,
    pub refund_minor: i64,
    /// What this resolution adds to the refunds of earlier rounds: the refund to send now.
    pub additional_refund_minor: i64,
    pub provider_payout_minor: i64,
    pub coupon: Option<String>,
    pub provider_compensation_minor: i64,
    pub penalties: Vec<Penalty>,
    /// Seconds from filing to this resolution (the statistics' time to resolve).
    pub seconds_to_resolve: i64,
    pub at: DateTime<Utc>,
    /// Whose personal data the texts are: the claim's customer. From schema version 2 on;
    /// `None` in version 1.
    #[serde(default)]
    pub customer_id: Option<CustomerId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimAppealed {
    pub side: Side,
    pub party: Party,
    /// Personal: sealed under `customer_id`.
    pub reason: String,
    pub at: DateTime<Utc>,
    /// Whose personal data the texts are: the claim's customer. From schema version 2 on;
    /// `None` in version 1.
    #[serde(default)]
    pub customer_id: Option<CustomerId>,
}

impl DomainEvent for ClaimEvent {
    fn event_type(&self) -> String {
        match self {
            ClaimEvent::ClaimFiled(_) => "ClaimFiled",
            ClaimEvent::ClaimStatementSubmitted(_) => "ClaimStatementSubmitted",
            ClaimEvent::ClaimResponseDeadlineMissed(_) => "ClaimResponseDeadlineMissed",
            ClaimEvent::ClaimAssigned(_) => "ClaimAssigned",
            ClaimEvent::ClaimResolved(_) => "ClaimResolved",
            ClaimEvent::ClaimAppealed(_) => "ClaimAppealed",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    #[error("claim does not exist")]
    NotFound,
    #[error("a claim with this id already exists")]
    AlreadyExists,
    #[error("the order has no captured payment")]
    OrderNotPaid,
    #[error("nothing of the order is left at stake: it was refunded in full")]
    NothingAtStake,
    #[error("a {0:?} claim is about a booking: the order has no service time")]
    NotABooking(ClaimType),
    #[error("a {claim_type:?} claim can be filed by the {allowed:?} only")]
    WrongClaimant {
        claim_type: ClaimType,
        allowed: Party,
    },
    #[error("a {claim_type:?} claim can be filed from {opens_at}")]
    FilingWindowNotOpen {
        claim_type: ClaimType,
        opens_at: DateTime<Utc>,
    },
    #[error(transparent)]
    Evidence(#[from] RefundPolicyError),
    #[error("the description must be 1 to {MAX_DESCRIPTION_CHARS} characters")]
    InvalidDescription,
    #[error("the reason must be 1 to {MAX_REASON_CHARS} characters")]
    InvalidReason,
    #[error("the claim is not open")]
    NotOpen,
    #[error("this side has already made its statement")]
    StatementAlreadySubmitted,
    #[error("the respondent's 24 hours to answer ended at {respond_by}")]
    ResponseWindowClosed { respond_by: DateTime<Utc> },
    #[error("the respondent's answer is due until {respond_by}")]
    DeadlineNotReached { respond_by: DateTime<Utc> },
    #[error("the claim is not under review: assign an admin first")]
    NotUnderReview,
    #[error("only the assigned admin ({assigned}) can resolve the claim")]
    NotAssignee { assigned: AdminId },
    #[error("refund {refund_minor} and provider payout {payout_minor} must add up to the {at_stake_minor} at stake")]
    AmountsDoNotAddUp {
        refund_minor: i64,
        payout_minor: i64,
        at_stake_minor: i64,
    },
    #[error("amounts must be between 0 and {MAX_AMOUNT_MINOR}")]
    InvalidAmount,
    #[error("the refund cannot be lower than the {earlier_minor} an earlier resolution refunded")]
    RefundBelowEarlierDecision { earlier_minor: i64 },
    #[error("the amounts do not fit the outcome {0:?}")]
    OutcomeMismatch(ClaimOutcome),
    #[error("at most {MAX_PENALTIES_PER_RESOLUTION} penalties per resolution")]
    TooManyPenalties,
    #[error("the coupon must be 1 to {MAX_COUPON_CHARS} characters")]
    InvalidCoupon,
    #[error("the claim is not resolved")]
    NotResolved,
    #[error("the appeal window closed at {closed_at}")]
    AppealWindowClosed { closed_at: DateTime<Utc> },
    #[error("the claim was already appealed")]
    AlreadyAppealed,
}

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Claim {
    pub filed: Option<ClaimFiled>,
    pub status: ClaimStatus,
    pub claimant_statement: Option<ClaimStatementSubmitted>,
    pub respondent_statement: Option<ClaimStatementSubmitted>,
    pub deadline_missed: Option<ClaimResponseDeadlineMissed>,
    pub assigned_to: Option<AdminId>,
    pub resolutions: Vec<ClaimResolved>,
    pub appeal: Option<ClaimAppealed>,
}

impl Claim {
    /// The claim's money invariants: every resolution splits exactly the amount at stake, the
    /// refunds of its rounds add up to the latest round's refund, and rounds count up from one.
    /// Asserted after every decision and by the claims read model after every fold.
    pub fn assert_invariants(&self) {
        let Some(filed) = &self.filed else {
            assert!(self.resolutions.is_empty(), "a resolution without a claim");
            return;
        };
        let mut refunded_minor = 0;
        for (index, resolved) in self.resolutions.iter().enumerate() {
            assert_eq!(
                resolved.round as usize,
                index + 1,
                "resolution rounds count up"
            );
            assert!(
                resolved.refund_minor >= 0 && resolved.provider_payout_minor >= 0,
                "negative split in round {}",
                resolved.round
            );
            assert_eq!(
                resolved.refund_minor + resolved.provider_payout_minor,
                filed.amount_at_stake_minor,
                "round {} splits {} + {} of {} at stake",
                resolved.round,
                resolved.refund_minor,
                resolved.provider_payout_minor,
                filed.amount_at_stake_minor
            );
            refunded_minor += resolved.additional_refund_minor;
            assert_eq!(
                refunded_minor, resolved.refund_minor,
                "round {}'s refunds do not add up",
                resolved.round
            );
        }
    }
}

fn text_ok(text: &str, max_chars: usize) -> bool {
    let len = text.chars().count();
    // Newlines and tabs are fine in a statement; other control characters are not.
    len > 0
        && len <= max_chars
        && !text
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
}

/// When a claim of `claim_type` about a service starting at `starts_at` may first be filed.
pub fn filing_opens_at(claim_type: ClaimType, starts_at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match claim_type {
        ClaimType::ProviderNoShow => {
            Some(starts_at + Duration::minutes(PROVIDER_NO_SHOW_OPENS_AFTER_MINUTES))
        }
        ClaimType::CustomerNoShow => {
            Some(starts_at + Duration::minutes(CUSTOMER_NO_SHOW_OPENS_AFTER_MINUTES))
        }
        ClaimType::ServiceQuality => Some(starts_at),
        ClaimType::Schedule | ClaimType::Payment | ClaimType::Other => None,
    }
}

impl Claim {
    fn filed(&self) -> Result<&ClaimFiled, ClaimError> {
        self.filed.as_ref().ok_or(ClaimError::NotFound)
    }

    /// The party on a side of this claim.
    pub fn party_of(&self, side: Side) -> Option<Party> {
        self.filed.as_ref().map(|f| match side {
            Side::Claimant => f.filed_by,
            Side::Respondent => f.filed_by.other(),
        })
    }

    /// The total refunded by earlier resolutions.
    pub fn refunded_by_claim_minor(&self) -> i64 {
        self.resolutions.last().map_or(0, |r| r.refund_minor)
    }

    pub fn round(&self) -> u32 {
        self.resolutions.len() as u32
    }

    fn decide(&self, command: ClaimCommand) -> Result<Vec<ClaimEvent>, ClaimError> {
        match command {
            ClaimCommand::File(file) => self.file(file),
            ClaimCommand::SubmitStatement {
                side,
                text,
                evidence,
                at,
            } => self.submit_statement(side, text, evidence, at),
            ClaimCommand::RecordMissedDeadline { at } => {
                let filed = self.filed()?;
                if at <= filed.respond_by {
                    return Err(ClaimError::DeadlineNotReached {
                        respond_by: filed.respond_by,
                    });
                }
                Ok(self.missed_deadline(at).into_iter().collect())
            }
            ClaimCommand::Assign { admin_id, at } => {
                self.filed()?;
                if !self.status.is_open() {
                    return Err(ClaimError::NotOpen);
                }
                if self.assigned_to.as_ref() == Some(&admin_id)
                    && self.status == ClaimStatus::UnderReview
                {
                    return Ok(vec![]);
                }
                let mut events: Vec<ClaimEvent> = self.missed_deadline(at).into_iter().collect();
                events.push(ClaimEvent::ClaimAssigned(ClaimAssigned { admin_id, at }));
                Ok(events)
            }
            ClaimCommand::Resolve(resolve) => self.resolve(resolve),
            ClaimCommand::Appeal { side, reason, at } => self.appeal(side, reason, at),
        }
    }

    fn file(&self, file: FileClaim) -> Result<Vec<ClaimEvent>, ClaimError> {
        if self.filed.is_some() {
            return Err(ClaimError::AlreadyExists);
        }
        let order = &file.order;
        if order.captured_minor <= 0 {
            return Err(ClaimError::OrderNotPaid);
        }
        let at_stake = order.captured_minor - order.refunded_minor;
        if at_stake <= 0 {
            return Err(ClaimError::NothingAtStake);
        }
        if !text_ok(&file.description, MAX_DESCRIPTION_CHARS) {
            return Err(ClaimError::InvalidDescription);
        }
        let required_claimant = match file.claim_type {
            ClaimType::ProviderNoShow => Some(Party::Customer),
            ClaimType::CustomerNoShow => Some(Party::Provider),
            _ => None,
        };
        if let Some(allowed) = required_claimant {
            if file.filed_by != allowed {
                return Err(ClaimError::WrongClaimant {
                    claim_type: file.claim_type,
                    allowed,
                });
            }
        }
        // A customer no-show is the provider's word against an absent customer: evidence first.
        check_evidence(&file.evidence, file.claim_type == ClaimType::CustomerNoShow)?;
        let needs_booking = matches!(
            file.claim_type,
            ClaimType::ProviderNoShow | ClaimType::CustomerNoShow
        );
        match order.service_starts_at {
            None if needs_booking => return Err(ClaimError::NotABooking(file.claim_type)),
            None => {}
            Some(starts_at) => {
                if let Some(opens_at) = filing_opens_at(file.claim_type, starts_at) {
                    if file.at < opens_at {
                        return Err(ClaimError::FilingWindowNotOpen {
                            claim_type: file.claim_type,
                            opens_at,
                        });
                    }
                }
            }
        }
        Ok(vec![ClaimEvent::ClaimFiled(ClaimFiled {
            claim_id: file.claim_id,
            order_id: order.order_id.clone(),
            customer_id: order.customer_id.clone(),
            payee_id: order.payee_id.clone(),
            currency: order.currency,
            claim_type: file.claim_type,
            filed_by: file.filed_by,
            description: file.description,
            evidence: file.evidence,
            service_starts_at: order.service_starts_at,
            amount_at_stake_minor: at_stake,
            respond_by: file.at + Duration::hours(RESPONSE_WINDOW_HOURS),
            at: file.at,
        })])
    }

    fn submit_statement(
        &self,
        side: Side,
        text: String,
        evidence: Vec<String>,
        at: DateTime<Utc>,
    ) -> Result<Vec<ClaimEvent>, ClaimError> {
        let filed = self.filed()?;
        if !self.status.is_open() {
            return Err(ClaimError::NotOpen);
        }
        if !text_ok(&text, MAX_DESCRIPTION_CHARS) {
            return Err(ClaimError::InvalidDescription);
        }
        check_evidence(&evidence, false)?;
        let existing = match side {
            Side::Claimant => &self.claimant_statement,
            Side::Respondent => &self.respondent_statement,
        };
        if existing.is_some() {
            return Err(ClaimError::StatementAlreadySubmitted);
        }
        if side == Side::Respondent && at > filed.respond_by {
            return Err(ClaimError::ResponseWindowClosed {
                respond_by: filed.respond_by,
            });
        }
        Ok(vec![ClaimEvent::ClaimStatementSubmitted(
            ClaimStatementSubmitted {
                side,
                party: self.party_of(side).unwrap_or(Party::Customer),
                text,
                evidence,
                at,
                customer_id: Some(filed.customer_id.clone()),
            },
        )])
    }

    /// The missed-deadline fact, when it is due and not recorded yet.
    fn missed_deadline(&self, at: DateTime<Utc>) -> Option<ClaimEvent> {
        let filed = self.filed.as_ref()?;
        let due = at > filed.respond_by
            && self.respondent_statement.is_none()
            && self.deadline_missed.is_none();
        due.then_some(ClaimEvent::ClaimResponseDeadlineMissed(
            ClaimResponseDeadlineMissed {
                respond_by: filed.respond_by,
                at,
            },
        ))
    }

    fn resolve(&self, resolve: ResolveClaim) -> Result<Vec<ClaimEvent>, ClaimError> {
        let filed = self.filed()?;
        if self.status != ClaimStatus::UnderReview {
            return Err(ClaimError::NotUnderReview);
        }
        let assigned = self.assigned_to.clone().ok_or(ClaimError::NotUnderReview)?;
        if assigned != resolve.admin_id {
            return Err(ClaimError::NotAssignee { assigned });
        }
        if !text_ok(&resolve.reason, MAX_REASON_CHARS) {
            return Err(ClaimError::InvalidReason);
        }
        let in_range = |a: i64| (0..=MAX_AMOUNT_MINOR).contains(&a);
        if !in_range(resolve.refund_minor)
            || !in_range(resolve.provider_payout_minor)
            || !in_range(resolve.provider_compensation_minor)
        {
            return Err(ClaimError::InvalidAmount);
        }
        let at_stake = filed.amount_at_stake_minor;
        if resolve.refund_minor + resolve.provider_payout_minor != at_stake {
            return Err(ClaimError::AmountsDoNotAddUp {
                refund_minor: resolve.refund_minor,
                payout_minor: resolve.provider_payout_minor,
                at_stake_minor: at_stake,
            });
        }
        let earlier = self.refunded_by_claim_minor();
        if resolve.refund_minor < earlier {
            return Err(ClaimError::RefundBelowEarlierDecision {
                earlier_minor: earlier,
            });
        }
        if resolve.penalties.len() > MAX_PENALTIES_PER_RESOLUTION {
            return Err(ClaimError::TooManyPenalties);
        }
        if let Some(coupon) = &resolve.coupon {
            if !text_ok(coupon, MAX_COUPON_CHARS) || coupon.contains(['\n', '\t']) {
                return Err(ClaimError::InvalidCoupon);
            }
        }
        self.check_outcome(&resolve, filed.filed_by, earlier)?;
        let mut events: Vec<ClaimEvent> = self.missed_deadline(resolve.at).into_iter().collect();
        events.push(ClaimEvent::ClaimResolved(ClaimResolved {
            round: self.round() + 1,
            order_id: filed.order_id.clone(),
            payee_id: filed.payee_id.clone(),
            currency: filed.currency,
            admin_id: resolve.admin_id,
            outcome: resolve.outcome,
            reason: resolve.reason,
            refund_minor: resolve.refund_minor,
            additional_refund_minor: resolve.refund_minor - earlier,
            provider_payout_minor: resolve.provider_payout_minor,
            coupon: resolve.coupon,
            provider_compensation_minor: resolve.provider_compensation_minor,
            penalties: resolve.penalties,
            seconds_to_resolve: (resolve.at - filed.at).num_seconds().max(0),
            at: resolve.at,
            customer_id: Some(filed.customer_id.clone()),
        }));
        Ok(events)
    }

    /// The amounts must say what the outcome says: a split gives both sides something, the
    /// winning customer gets a refund, the winning provider a payout, a rejection changes nothing.
    fn check_outcome(
        &self,
        resolve: &ResolveClaim,
        claimant: Party,
        earlier_refund_minor: i64,
    ) -> Result<(), ClaimError> {
        let mismatch = Err(ClaimError::OutcomeMismatch(resolve.outcome));
        let winner = match resolve.outcome {
            ClaimOutcome::ClaimantWins => Some(claimant),
            ClaimOutcome::RespondentWins => Some(claimant.other()),
            ClaimOutcome::Split => {
                if resolve.refund_minor == 0 || resolve.provider_payout_minor == 0 {
                    return mismatch;
                }
                None
            }
            ClaimOutcome::Rejected => {
                let changes_something = resolve.refund_minor != earlier_refund_minor
                    || resolve.provider_compensation_minor != 0
                    || resolve.coupon.is_some()
                    || !resolve.penalties.is_empty();
                if changes_something {
                    return mismatch;
                }
                None
            }
        };
        match winner {
            Some(Party::Customer) if resolve.refund_minor == 0 => mismatch,
            Some(Party::Provider) if resolve.provider_payout_minor == 0 => mismatch,
            _ => Ok(()),
        }
    }

    fn appeal(
        &self,
        side: Side,
        reason: String,
        at: DateTime<Utc>,
    ) -> Result<Vec<ClaimEvent>, ClaimError> {
        self.filed()?;
        if self.appeal.is_some() || self.round() >= MAX_RESOLUTION_ROUNDS {
            return Err(ClaimError::AlreadyAppealed);
        }
        if self.status != ClaimStatus::Resolved {
            return Err(ClaimError::NotResolved);
        }
        let resolved_at = self.resolutions.last().map_or(at, |r| r.at);
        let closed_at = resolved_at + Duration::days(APPEAL_WINDOW_DAYS);
        if at > closed_at {
            return Err(ClaimError::AppealWindowClosed { closed_at });
        }
        if !text_ok(&reason, MAX_REASON_CHARS) {
            return Err(ClaimError::InvalidReason);
        }
        Ok(vec![ClaimEvent::ClaimAppealed(ClaimAppealed {
            side,
            party: self.party_of(side).unwrap_or(Party::Customer),
            reason,
            at,
            customer_id: self.filed.as_ref().map(|f| f.customer_id.clone()),
        })])
    }
}

impl Aggregate for Claim {
    const TYPE: &'static str = "claim";
    type Command = ClaimCommand;
    type Event = ClaimEvent;
    type Error = ClaimError;
    type Services = ();

    async fn handle(
        &mut self,
        command: ClaimCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), ClaimError> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        self.assert_invariants();
        Ok(())
    }

    fn apply(&mut self, event: ClaimEvent) {
        match event {
            ClaimEvent::ClaimFiled(filed) => {
                self.filed = Some(filed);
                self.status = ClaimStatus::Filed;
            }
            ClaimEvent::ClaimStatementSubmitted(statement) => match statement.side {
                Side::Claimant => self.claimant_statement = Some(statement),
                Side::Respondent => self.respondent_statement = Some(statement),
            },
            ClaimEvent::ClaimResponseDeadlineMissed(missed) => self.deadline_missed = Some(missed),
            ClaimEvent::ClaimAssigned(assigned) => {
                self.assigned_to = Some(assigned.admin_id);
                self.status = ClaimStatus::UnderReview;
            }
            ClaimEvent::ClaimResolved(resolved) => {
                self.resolutions.push(resolved);
                self.status = ClaimStatus::Resolved;
            }
            ClaimEvent::ClaimAppealed(appealed) => {
                self.appeal = Some(appealed);
                self.assigned_to = None;
                self.status = ClaimStatus::Appealed;
            }
        }
    }
}
