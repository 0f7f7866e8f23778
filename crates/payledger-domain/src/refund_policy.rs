//! The cancellation refund policy of a booking (source document 5, §3.1; domain spec §3.6).
//!
//! By the time left between the cancellation and the service start:
//!
//! | time before start | customer gets back | provider keeps |
//! | --- | --- | --- |
//! | ≥ 48 h (exactly 48 h included) | 100 % | 0 % |
//! | ≥ 24 h and < 48 h (exactly 24 h included) | 50 % | 50 % |
//! | < 24 h, or after the start | 0 % | 100 % |
//!
//! An admin-approved emergency with evidence overrides the table with the share the admin sets.
//! Shares are integer basis points; the customer's part is rounded **down** to the minor unit and
//! the provider gets the rest, so the two always sum to the amount (the source document's
//! `amount * 0.5` on floats is the bug this replaces).

use crate::ids::AdminId;
use crate::money::{split_by_basis_points, BasisPoints};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// At or above this much notice the whole amount is refunded.
pub const FULL_REFUND_NOTICE_HOURS: i64 = 48;
/// At or above this much notice (and below the full-refund notice) half is refunded.
pub const HALF_REFUND_NOTICE_HOURS: i64 = 24;
/// Evidence references an emergency approval may carry.
pub const MAX_EVIDENCE_REFERENCES: usize = 20;
/// Length of one evidence reference (a URL or a document id), in characters.
pub const MAX_EVIDENCE_REFERENCE_CHARS: usize = 500;

/// Which row of the policy applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RefundTier {
    /// 48 hours or more before the start.
    Full,
    /// 24 to 48 hours before the start.
    Half,
    /// Less than 24 hours before the start, or after it.
    None,
    /// An admin approved an emergency and set the share.
    Emergency,
    /// An admin force-cancelled a booking the provider never confirmed: everything back.
    Unconfirmed,
}

impl RefundTier {
    /// The customer's share for a tier of the table (the emergency share comes from the admin).
    pub fn customer_share(self) -> Option<BasisPoints> {
        match self {
            RefundTier::Full => Some(BasisPoints::FULL),
            RefundTier::Half => Some(BasisPoints::HALF),
            RefundTier::None => Some(BasisPoints::ZERO),
            RefundTier::Emergency => None,
            RefundTier::Unconfirmed => Some(BasisPoints::FULL),
        }
    }
}

/// An emergency cancellation an admin approved after seeing evidence (a child's hospital
/// admission, a natural disaster, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmergencyApproval {
    pub approved_by: AdminId,
    /// References to the evidence (URLs or document ids); at least one.
    pub evidence: Vec<String>,
    /// What the customer gets back, decided by the admin.
    pub customer_share: BasisPoints,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefundPolicyError {
    #[error("an emergency approval needs at least one evidence reference")]
    EvidenceRequired,
    #[error("at most {MAX_EVIDENCE_REFERENCES} evidence references of 1 to {MAX_EVIDENCE_REFERENCE_CHARS} characters")]
    InvalidEvidence,
    #[error("the paid amount must not be negative")]
    NegativeAmount,
}

/// What a cancellation gives back and keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundDecision {
    pub tier: RefundTier,
    pub customer_share: BasisPoints,
    /// To the customer.
    pub refund_minor: i64,
    /// To the provider (settled with the payee's statement).
    pub provider_minor: i64,
    /// Notice given, in whole seconds (negative after the start).
    pub notice_seconds: i64,
}

/// The tier the table gives for cancelling at `cancelled_at` a service starting at `starts_at`.
pub fn tier_for(starts_at: DateTime<Utc>, cancelled_at: DateTime<Utc>) -> RefundTier {
    let notice = starts_at - cancelled_at;
    if notice >= Duration::hours(FULL_REFUND_NOTICE_HOURS) {
        RefundTier::Full
    } else if notice >= Duration::hours(HALF_REFUND_NOTICE_HOURS) {
        RefundTier::Half
    } else {
        RefundTier::None
    }
}

/// Checks evidence references: present, bounded, printable.
pub fn check_evidence(evidence: &[String], required: bool) -> Result<(), RefundPolicyError> {
    if required && evidence.is_empty() {
        return Err(RefundPolicyError::EvidenceRequired);
    }
    let bad = |e: &String| {
        let len = e.chars().count();
        len == 0 || len > MAX_EVIDENCE_REFERENCE_CHARS || e.chars().any(char::is_control)
    };
    if evidence.len() > MAX_EVIDENCE_REFERENCES || evidence.iter().any(bad) {
        return Err(RefundPolicyError::InvalidEvidence);
    }
    Ok(())
}

/// Applies the policy to `paid_minor`, the amount the customer paid for the booking.
pub fn decide(
    paid_minor: i64,
    starts_at: DateTime<Utc>,
    cancelled_at: DateTime<Utc>,
    emergency: Option<&EmergencyApproval>,
) -> Result<RefundDecision, RefundPolicyError> {
    if paid_minor < 0 {
        return Err(RefundPolicyError::NegativeAmount);
    }
    let (tier, customer_share) = match emergency {
        Some(approval) => {
            check_evidence(&approval.evidence, true)?;
            (RefundTier::Emergency, approval.customer_share)
        }
        None => {
            let tier = tier_for(starts_at, cancelled_at);
            (tier, tier.customer_share().unwrap_or(BasisPoints::ZERO))
        }
    };
    let (refund_minor, provider_minor) = split_by_basis_points(paid_minor, customer_share);
    Ok(RefundDecision {
        tier,
        customer_share,
        refund_minor,
        provider_minor,
        notice_seconds: (starts_at - cancelled_at).num_seconds(),
    })
}
