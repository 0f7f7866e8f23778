//! Billing keys: registering a card through the provider (only the encrypted key and card facts are kept), revoking it, and finding the key a charge needs.

use super::*;

impl Subscriptions {
    /// Issues a billing key at the provider from the auth key its card window returned, and keeps
    /// it encrypted with the card facts. The key itself is never returned, logged or stored in
    /// clear.
    pub async fn register_billing_key(
        &self,
        customer_id: &CustomerId,
        auth_key: &str,
        context: &RequestContext,
    ) -> Result<BillingKeyInfo, BillingError> {
        let issued = self
            .gateway
            .issue_billing_key(&IssueBillingKeyRequest {
                customer_key: customer_id.to_string(),
                auth_key: auth_key.to_string(),
            })
            .await
            .map_err(|error| match error {
                GatewayError::Refused(failure) => BillingError::Refused(failure),
                // Issuing moves no money: whatever happened, the client may simply ask again
                // with the same auth key.
                GatewayError::OutcomeUnknown { .. } => BillingError::ProviderUnavailable {
                    retry_after_ms: 1_000,
                },
                GatewayError::NotSent { retry_after_ms, .. } => BillingError::ProviderUnavailable {
                    retry_after_ms: retry_after_ms.unwrap_or(1_000),
                },
            })?;
        let billing_key_id = BillingKeyId::generate();
        let card = CardSummary {
            issuer_code: issued.card.issuer_code.chars().take(16).collect(),
            last4: issued.card.last4.chars().take(4).collect(),
            card_type: issued.card.card_type.chars().take(16).collect(),
            expiry: issued.card.expiry.clone(),
        };
        let registered = BillingKeyRegistered {
            secret: self
                .cipher
                .encrypt(&issued.billing_key, customer_id, &billing_key_id),
            billing_key_id: billing_key_id.clone(),
            provider: self.gateway.provider_name().to_string(),
            customer_key: issued.customer_key,
            card,
            at: self.clock.now(),
        };
        let executed = self
            .executor
            .execute(
                &self.customers,
                &customer::stream_id(customer_id),
                CustomerCommand::RegisterBillingKey(registered),
                context,
            )
            .await?;
        tracing::info!(%customer_id, %billing_key_id, "billing key registered");
        key_info(customer_id, &billing_key_id, &executed.state, false)
    }

    pub async fn revoke_billing_key(
        &self,
        customer_id: &CustomerId,
        billing_key_id: &BillingKeyId,
        reason: String,
        context: &RequestContext,
    ) -> Result<BillingKeyInfo, BillingError> {
        let executed = self
            .executor
            .execute(
                &self.customers,
                &customer::stream_id(customer_id),
                CustomerCommand::RevokeBillingKey {
                    billing_key_id: billing_key_id.clone(),
                    reason,
                    at: self.clock.now(),
                },
                context,
            )
            .await?;
        key_info(
            customer_id,
            billing_key_id,
            &executed.state,
            executed.events.is_empty(),
        )
    }

    pub async fn billing_key(
        &self,
        customer_id: &CustomerId,
        billing_key_id: &BillingKeyId,
    ) -> Result<BillingKeyInfo, BillingError> {
        let (_, state) = self
            .executor
            .load(&self.customers, &customer::stream_id(customer_id))
            .await?;
        key_info(customer_id, billing_key_id, &state, false)
    }

    /// The clear billing key and customer key for an attempt, or the failure to record when the
    /// key cannot be charged (revoked, expired, missing, undecryptable): the provider is not
    /// called then.
    pub(super) async fn billing_key_for(
        &self,
        terms: &SubscriptionStarted,
        attempt: &InFlightAttempt,
    ) -> Result<Result<(payledger_gateway::BillingKeySecret, String), ProviderFailure>, BillingError>
    {
        let (_, customer) = self
            .executor
            .load(&self.customers, &customer::stream_id(&terms.customer_id))
            .await?;
        let refusal = |class, code: &str, message: &str| ProviderFailure {
            class,
            provider_code: code.to_string(),
            provider_message: message.to_string(),
        };
        let Some(key) = customer.billing_keys.get(&attempt.billing_key_id) else {
            return Ok(Err(refusal(
                FailureClass::BillingKeyInvalid,
                CODE_BILLING_KEY_NOT_FOUND,
                "the subscription's billing key is not registered for this customer",
            )));
        };
        match key.status {
            BillingKeyStatus::Active => {}
            BillingKeyStatus::Revoked => {
                return Ok(Err(refusal(
                    FailureClass::BillingKeyInvalid,
                    CODE_BILLING_KEY_REVOKED,
                    "the billing key was revoked",
                )))
            }
            BillingKeyStatus::Expired => {
                return Ok(Err(refusal(
                    FailureClass::BillingKeyInvalid,
                    CODE_BILLING_KEY_EXPIRED,
                    "the provider reported the billing key invalid",
                )))
            }
        }
        match self
            .cipher
            .decrypt(&key.secret, &terms.customer_id, &attempt.billing_key_id)
        {
            Ok(secret) => Ok(Ok((secret, key.customer_key.clone()))),
            Err(error) => {
                // Our configuration, not the customer's card: a person has to look.
                tracing::error!(
                    subscription_id = %terms.subscription_id,
                    billing_key_id = %attempt.billing_key_id,
                    %error,
                    "billing key cannot be decrypted"
                );
                let message = match error {
                    CipherError::UnknownKeyId(_) => "encrypted with a key no longer configured",
                    _ => "the stored billing key does not decrypt",
                };
                Ok(Err(refusal(
                    FailureClass::Unclassified,
                    CODE_BILLING_KEY_UNDECRYPTABLE,
                    message,
                )))
            }
        }
    }

    pub(super) async fn mark_key_expired(
        &self,
        terms: &SubscriptionStarted,
        attempt: &InFlightAttempt,
        provider_code: &str,
        at: DateTime<Utc>,
        context: &RequestContext,
    ) {
        let result = self
            .executor
            .execute(
                &self.customers,
                &customer::stream_id(&terms.customer_id),
                CustomerCommand::MarkBillingKeyExpired {
                    billing_key_id: attempt.billing_key_id.clone(),
                    provider_code: provider_code.chars().take(200).collect(),
                    at,
                },
                context,
            )
            .await;
        if let Err(error) = result {
            // The subscription's own record of the failure is what matters; this is bookkeeping.
            tracing::warn!(billing_key_id = %attempt.billing_key_id, %error, "failed to mark the billing key expired");
        }
    }
}
