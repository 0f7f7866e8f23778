//! The claim process: refunds what a resolution decided and warns the payee it penalised.

use super::*;

/// Refunds what claim resolutions decided and warns payees they penalised.
pub struct ClaimProcess {
    claims: Arc<Claims>,
    payments: Arc<Payments>,
}

impl ClaimProcess {
    pub const NAME: &'static str = "claims";

    pub fn new(claims: Arc<Claims>, payments: Arc<Payments>) -> ClaimProcess {
        ClaimProcess { claims, payments }
    }
}

#[async_trait]
impl ProcessManager for ClaimProcess {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn wants(&self, event: &RecordedEvent) -> bool {
        event.event_type == "ClaimResolved" && StreamKind::Claim.holds(&event.stream_id)
    }

    async fn handle(
        &self,
        _state: &mut PgConnection,
        event: &RecordedEvent,
    ) -> Result<(), ProcessError> {
        let Some(claim_id) = StreamKind::Claim.id_of(&event.stream_id) else {
            return Ok(());
        };
        if event.event_type != "ClaimResolved" {
            return Ok(());
        }
        let ClaimEvent::ClaimResolved(resolved) = decode(event)? else {
            return Ok(());
        };
        let claim_id = parse_id(ClaimId::parse(claim_id))?;
        let context = system_context(Self::NAME);
        if resolved.additional_refund_minor > 0 {
            let refund_id = claim::refund_id(&claim_id, resolved.round);
            ensure_refund(
                &self.payments,
                &resolved.order_id,
                refund_id.as_str(),
                Some(resolved.additional_refund_minor),
                &format!("CLAIM_RESOLVED {claim_id}"),
                &context,
            )
            .await?;
        }
        for (index, _penalty) in resolved.penalties.iter().enumerate() {
            self.claims
                .warn_payee(
                    &resolved.payee_id,
                    payee::warning_id(&claim_id, resolved.round, index),
                    &claim_id,
                    // The claim's reason is the customer's personal data (sealed under their
                    // key): the payee's stream names the claim, it does not copy the text.
                    format!(
                        "claim {claim_id}: {}",
                        payledger_domain::codec::wire_name(&resolved.outcome)
                    ),
                    &context,
                )
                .await
                .map_err(flow_error)?;
        }
        Ok(())
    }
}
