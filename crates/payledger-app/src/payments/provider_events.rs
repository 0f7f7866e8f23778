//! What a provider did on its own that the ledger records once its API confirms it: a payment
//! settled after the customer finished 3-D Secure, a refund made in the provider's dashboard, a
//! dispute opened or decided. The webhook relay re-fetches the object from the connector and
//! calls these; the order aggregate judges each fact (`provider_fact`) and refuses what it
//! cannot record (`OrderError::ProviderDiscrepancy`), so the caller records the discrepancy.
//! Each is idempotent: the same fact recorded twice changes nothing.

use super::*;
use payledger_domain::money::Currency;
use payledger_domain::order::{ProviderRefundFact, RefundDiscrepancyRecorded};
use payledger_domain::provider_fact::DisputeFact;
use payledger_gateway::ProviderPayment;

/// The actor of what the relay records.
const WEBHOOKS: &str = "webhooks";

impl Payments {
    /// Settles a confirmation that waits on the provider (sent, unknown, or waiting for the
    /// customer's 3-D Secure) with the payment as the provider's API reports it now.
    pub async fn settle_confirmation_with(
        &self,
        order_id: &OrderId,
        payment: &ProviderPayment,
    ) -> Result<OrderSnapshot, PaymentError> {
        let recorded = self
            .record_confirmation_outcome(
                order_id,
                ProviderOutcome::Observed {
                    fact: payment.fact(),
                },
                OutcomeSource::Webhook,
                &RequestContext::system(WEBHOOKS),
            )
            .await?;
        let replay = recorded.events.is_empty();
        Ok(Self::snapshot(recorded, replay))
    }

    /// Records a refund made at the provider without payledger asking.
    pub async fn record_provider_refund(
        &self,
        order_id: &OrderId,
        provider: &str,
        transaction_key: &str,
        amount_minor: i64,
        currency: Currency,
    ) -> Result<OrderSnapshot, PaymentError> {
        let executed = self
            .execute(
                order_id,
                OrderCommand::RecordProviderRefund {
                    provider: provider.to_string(),
                    transaction_key: transaction_key.to_string(),
                    amount_minor,
                    currency,
                    at: self.clock.now(),
                },
                &RequestContext::system(WEBHOOKS),
            )
            .await?;
        let replay = executed.events.is_empty();
        Ok(Self::snapshot(executed, replay))
    }

    /// Records what the provider reports about a refund payledger submitted for its approval
    /// (Paddle's adjustment pending, approved or rejected): the order judges it against the
    /// refund awaited and completes or fails it, or records the discrepancy once (logged and
    /// counted here) while the refund keeps waiting. `RefundNotFound`: no refund of this order
    /// awaits that provider id (a refund made at the provider: the caller records it as such).
    pub async fn record_provider_refund_decision(
        &self,
        order_id: &OrderId,
        provider_refund_id: &str,
        fact: ProviderRefundFact,
        source: OutcomeSource,
    ) -> Result<OrderSnapshot, PaymentError> {
        let actor = match source {
            OutcomeSource::Reconciler => "reconciler",
            _ => WEBHOOKS,
        };
        let executed = self
            .execute(
                order_id,
                OrderCommand::RecordProviderRefundDecision {
                    provider_refund_id: provider_refund_id.to_string(),
                    fact,
                    source,
                    at: self.clock.now(),
                },
                &RequestContext::system(actor),
            )
            .await?;
        for event in &executed.events {
            if let OrderEvent::RefundDiscrepancyRecorded(differs) = event {
                self.refund_discrepancy_recorded(order_id, differs);
            }
        }
        let replay = executed.events.is_empty();
        Ok(Self::snapshot(executed, replay))
    }

    /// Records a dispute as the provider's API reports it (opened, won or lost).
    pub async fn record_dispute(
        &self,
        order_id: &OrderId,
        fact: DisputeFact,
    ) -> Result<OrderSnapshot, PaymentError> {
        let executed = self
            .execute(
                order_id,
                OrderCommand::RecordDispute {
                    fact,
                    at: self.clock.now(),
                },
                &RequestContext::system(WEBHOOKS),
            )
            .await?;
        let replay = executed.events.is_empty();
        Ok(Self::snapshot(executed, replay))
    }
}

impl Payments {
    /// Logs and counts a refund discrepancy where it is recorded (once: the order records the
    /// same mismatch only once).
    fn refund_discrepancy_recorded(&self, order_id: &OrderId, differs: &RefundDiscrepancyRecorded) {
        let differences: Vec<String> = differs
            .differences
            .iter()
            .map(|d| {
                format!(
                    "{} expected {} got {}",
                    d.fact.name(),
                    d.expected,
                    d.provider
                )
            })
            .collect();
        tracing::warn!(
            %order_id,
            refund_id = %differs.refund_id,
            provider = %differs.provider,
            provider_refund_id = %differs.provider_refund_id,
            provider_status = %differs.provider_status,
            ?differences,
            "the provider's refund request differs from the refund awaited; nothing moved, support must review"
        );
        if let Some(observer) = &self.discrepancy_observer {
            observer(&differs.provider);
        }
    }
}
