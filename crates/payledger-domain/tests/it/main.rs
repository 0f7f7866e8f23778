//! Given/when/then specifications of the aggregates.

mod booking;
mod claim;
mod customer;
mod journal;
mod operations;
mod order;
mod order_disputes;
mod order_refund_discrepancies;
mod payee;
mod provider_billed;
mod provider_facts;
mod reconciliation;
mod reconciliation_subscriptions;
mod refund_policy;
mod settlement;
mod slot;
mod subscription;
mod wallet;

use payledger_domain::order::ProviderRefundDecision;

/// The status Paddle's API reports for an adjustment it decided so (`reversed` stands for one
/// payledger does not recognise).
pub(crate) fn paddle_adjustment_status(decision: &ProviderRefundDecision) -> &'static str {
    match decision {
        ProviderRefundDecision::Pending => "pending_approval",
        ProviderRefundDecision::Approved => "approved",
        ProviderRefundDecision::Rejected { .. } => "rejected",
        ProviderRefundDecision::Unrecognised => "reversed",
    }
}
