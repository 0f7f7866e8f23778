//! An admin resolves a refund discrepancy (`RefundDiscrepancyRecorded`) with an audited note.
//! Nothing moves: only a provider's fact completes or fails a refund awaiting the provider.

use super::*;
use payledger_domain::order::DiscrepancyResolution;

impl Payments {
    /// Records `RefundDiscrepancyResolved` on the order: the refund keeps waiting for the
    /// provider with its amount held and is no longer under review. Refused when the refund is
    /// not awaiting the provider or has no open discrepancy (resolving twice is refused).
    pub async fn resolve_refund_discrepancy(
        &self,
        order_id: &OrderId,
        refund_id: RefundId,
        resolution: DiscrepancyResolution,
        note: String,
        context: &RequestContext,
    ) -> Result<OrderSnapshot, PaymentError> {
        let executed = self
            .execute(
                order_id,
                OrderCommand::ResolveRefundDiscrepancy {
                    refund_id,
                    resolution,
                    note,
                    resolved_by: context.actor.clone(),
                    at: self.clock.now(),
                },
                context,
            )
            .await?;
        Ok(Self::snapshot(executed, false))
    }
}
