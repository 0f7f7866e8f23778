//! One charge attempt: the intent recorded, the provider called with the attempt's own key, its answer judged against what the ledger expects, and an unknown outcome resolved by asking the provider.

use super::*;

impl Subscriptions {
    /// Calls the provider for an attempt recorded in `state` and records the outcome at `at`.
    pub(super) async fn drive_attempt(
        &self,
        subscription_id: &SubscriptionId,
        state: &Subscription,
        attempt: &InFlightAttempt,
        at: DateTime<Utc>,
        context: &RequestContext,
    ) -> Result<Driven, BillingError> {
        let terms = state
            .terms
            .as_ref()
            .ok_or(BillingError::Subscription(SubscriptionError::NotFound))?;
        let outcome = match self.billing_key_for(terms, attempt).await? {
            Err(failure) => ChargeOutcome::Refused { failure },
            Ok((secret, customer_key)) => {
                let request = ChargeBillingKeyRequest {
                    billing_key: secret,
                    customer_key,
                    order_id: attempt.provider_order_id.clone(),
                    order_name: terms.order_name.clone(),
                    amount_minor: attempt.amount_minor,
                    currency: attempt.currency,
                    idempotency_key: attempt.idempotency_key.clone(),
                };
                // Gateway warnings of this call name the provider order id and the request.
                let span = tracing::info_span!(
                    "provider_call",
                    operation = "charge_billing_key",
                    order_id = %attempt.provider_order_id,
                    subscription_id = %subscription_id,
                    request_id = context.request_id.as_deref().unwrap_or(""),
                );
                match tracing::Instrument::instrument(
                    self.gateway.charge_billing_key(&request),
                    span,
                )
                .await
                {
                    Ok(payment) => charge_outcome(attempt, &payment.fact(), at).unwrap_or(
                        ChargeOutcome::Unknown {
                            reason: format!(
                                "the provider reports the charge {}",
                                payment.provider_status
                            ),
                        },
                    ),
                    Err(GatewayError::Refused(failure))
                        if failure.class == FailureClass::AlreadyProcessed =>
                    {
                        self.outcome_from_lookup(attempt)
                            .await
                            .unwrap_or(ChargeOutcome::Unknown {
                                reason: format!(
                                    "provider reports {}; the charge is not found yet",
                                    failure.provider_code
                                ),
                            })
                    }
                    Err(GatewayError::Refused(failure)) => ChargeOutcome::Refused { failure },
                    Err(GatewayError::OutcomeUnknown { reason }) => {
                        ChargeOutcome::Unknown { reason }
                    }
                    Err(GatewayError::NotSent { reason, .. }) => ChargeOutcome::Refused {
                        // Certainly not charged: a provider error, retried in minutes.
                        failure: ProviderFailure {
                            class: FailureClass::ProviderError,
                            provider_code: CODE_PROVIDER_UNAVAILABLE.into(),
                            provider_message: reason,
                        },
                    },
                }
            }
        };
        self.record_outcome(
            subscription_id,
            terms,
            attempt,
            outcome,
            OutcomeSource::Request,
            at,
            context,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) async fn record_outcome(
        &self,
        subscription_id: &SubscriptionId,
        terms: &SubscriptionStarted,
        attempt: &InFlightAttempt,
        outcome: ChargeOutcome,
        source: OutcomeSource,
        at: DateTime<Utc>,
        context: &RequestContext,
    ) -> Result<Driven, BillingError> {
        if let ChargeOutcome::Refused { failure } = &outcome {
            if failure.class == FailureClass::BillingKeyInvalid
                && failure.provider_code != CODE_BILLING_KEY_REVOKED
            {
                self.mark_key_expired(terms, attempt, &failure.provider_code, at, context)
                    .await;
            }
        }
        let driven = match &outcome {
            ChargeOutcome::Approved { .. } => Driven::Succeeded,
            ChargeOutcome::Refused { failure }
                if failure.class != FailureClass::AlreadyProcessed =>
            {
                Driven::Failed
            }
            _ => Driven::Unknown,
        };
        let recorded = self
            .execute(
                subscription_id,
                SubscriptionCommand::RecordChargeOutcome {
                    cycle: attempt.cycle,
                    attempt: attempt.attempt,
                    outcome,
                    source,
                    policy: self.config.dunning.clone(),
                    at,
                },
                context,
            )
            .await?;
        for event in &recorded.events {
            match event {
                SubscriptionEvent::ChargeSucceeded(s) => tracing::info!(
                    %subscription_id, cycle = s.cycle, attempt = s.attempt, amount_minor = s.amount_minor,
                    "subscription charged"
                ),
                SubscriptionEvent::ChargeFailed(f) => tracing::info!(
                    %subscription_id, cycle = f.cycle, attempt = f.attempt,
                    error_code = %f.failure.provider_code, status = recorded.state.status.as_str(),
                    "subscription charge failed"
                ),
                SubscriptionEvent::ChargeOutcomeUnknown(u) => tracing::warn!(
                    %subscription_id, cycle = u.cycle, attempt = u.attempt, reason = %u.reason,
                    "subscription charge outcome unknown; it will be looked up"
                ),
                _ => {}
            }
        }
        Ok(driven)
    }

    /// What the provider has for the attempt's cycle: `Some(Approved)` when it charged it,
    /// `Some(Refused)` when it certainly did not, `None` when it cannot tell now.
    pub(super) async fn outcome_from_lookup(
        &self,
        attempt: &InFlightAttempt,
    ) -> Option<ChargeOutcome> {
        match self
            .gateway
            .payment_by_order_id(&attempt.provider_order_id)
            .await
        {
            Ok(Some(payment)) => charge_outcome(attempt, &payment.fact(), self.clock.now()),
            Ok(None) => Some(not_charged("the provider has no payment for this cycle")),
            Err(error) => {
                tracing::warn!(order_id = %attempt.provider_order_id, %error, "subscription charge lookup failed");
                None
            }
        }
    }

    /// Settles a stale attempt: what the provider charged is recorded; when it has no payment the
    /// same attempt (same idempotency key) is sent again, or given up as a provider error after
    /// too many sends.
    pub(super) async fn resolve(
        &self,
        subscription_id: &SubscriptionId,
        state: &Subscription,
        at: DateTime<Utc>,
        context: &RequestContext,
    ) -> Result<Driven, BillingError> {
        let terms = state
            .terms
            .as_ref()
            .ok_or(BillingError::Subscription(SubscriptionError::NotFound))?;
        let attempt = state.in_flight.clone().ok_or(BillingError::Subscription(
            SubscriptionError::NoAttemptInFlight,
        ))?;
        let Some(looked_up) = self.outcome_from_lookup(&attempt).await else {
            return Ok(Driven::Unknown);
        };
        if matches!(looked_up, ChargeOutcome::Approved { .. })
            || matches!(&looked_up, ChargeOutcome::Refused { failure } if failure.provider_code == CODE_PROVIDER_DIFFERS)
        {
            return self
                .record_outcome(
                    subscription_id,
                    terms,
                    &attempt,
                    looked_up,
                    OutcomeSource::Reconciler,
                    at,
                    context,
                )
                .await;
        }
        match self
            .execute(
                subscription_id,
                SubscriptionCommand::RedriveAttempt { at },
                context,
            )
            .await
        {
            Ok(redriven) => {
                tracing::info!(%subscription_id, cycle = attempt.cycle, attempt = attempt.attempt, "stale subscription charge sent again");
                self.drive_attempt(subscription_id, &redriven.state, &attempt, at, context)
                    .await
            }
            Err(BillingError::Subscription(SubscriptionError::RedrivesExhausted)) => {
                self.record_outcome(
                    subscription_id,
                    terms,
                    &attempt,
                    looked_up,
                    OutcomeSource::Reconciler,
                    at,
                    context,
                )
                .await
            }
            Err(other) => Err(other),
        }
    }
}
