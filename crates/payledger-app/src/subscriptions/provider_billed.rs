//! Subscriptions a provider bills (Paddle): started from the provider's confirmed subscription,
//! moved by its confirmed facts. The provider's IO (which facts, confirmed how) is the caller's
//! (`payledger-webhook-relay`'s Paddle applier); here the facts meet the one subscription
//! aggregate and the customer's link, exactly as payledger's own subscriptions do.

use super::*;
use payledger_domain::billing::BillingInterval;
use payledger_domain::provider_billed::{ProviderBilling, ProviderSubscriptionFact};

/// A provider's subscription, as its API confirmed it, to start in the ledger.
#[derive(Debug, Clone)]
pub struct ProviderBilledStart {
    /// The provider's subscription id, which is also the ledger's (`sub_…`).
    pub subscription_id: SubscriptionId,
    pub customer_id: CustomerId,
    pub plan_id: PlanId,
    pub billing: ProviderBilling,
    /// The price of one period (before tax).
    pub amount: Money,
    pub interval: BillingInterval,
    /// The provider's first billing period's start: cycle 1.
    pub first_period_start: DateTime<Utc>,
    pub order_name: String,
}

impl Subscriptions {
    /// Starts a provider-billed subscription, once: a second start of the same provider
    /// subscription answers the subscription as it is.
    pub async fn start_provider_billed(
        &self,
        input: ProviderBilledStart,
        context: &RequestContext,
    ) -> Result<SubscriptionSnapshot, BillingError> {
        if let Some(existing) = self.load_subscription(&input.subscription_id).await? {
            let same_customer = existing
                .state
                .terms
                .as_ref()
                .is_some_and(|terms| terms.customer_id == input.customer_id);
            if !same_customer {
                return Err(BillingError::CustomerMismatch("subscription"));
            }
            return Ok(existing);
        }
        let level = self
            .config
            .catalogue
            .level_of(&input.plan_id)
            .ok_or_else(|| BillingError::UnknownPlan(input.plan_id.to_string()))?;
        let now = self.clock.now();
        // Linked first, as for payledger's own subscriptions: a link to an empty stream is no
        // subscription to every reader.
        self.executor
            .execute(
                &self.customers,
                &customer::stream_id(&input.customer_id),
                CustomerCommand::LinkSubscription {
                    subscription_id: input.subscription_id.clone(),
                    at: now,
                },
                context,
            )
            .await?;
        let billing_key_id = BillingKeyId::parse(&input.billing.provider_subscription_id)
            .map_err(|err| BillingError::Internal(format!("provider subscription id: {err}")))?;
        let executed = self
            .execute(
                &input.subscription_id,
                SubscriptionCommand::Start(SubscriptionStarted {
                    subscription_id: input.subscription_id.clone(),
                    customer_id: input.customer_id,
                    plan_id: input.plan_id,
                    membership_level: level,
                    amount: input.amount,
                    interval: input.interval,
                    billing_key_id,
                    anchor: input.first_period_start,
                    order_name: input.order_name,
                    at: now,
                    billed_by: Some(input.billing),
                }),
                context,
            )
            .await?;
        tracing::info!(subscription_id = %input.subscription_id, "provider-billed subscription started");
        self.snapshot(executed, false).await
    }

    /// Records a provider's confirmed fact about a subscription it bills.
    pub async fn record_provider_fact(
        &self,
        subscription_id: &SubscriptionId,
        fact: ProviderSubscriptionFact,
        context: &RequestContext,
    ) -> Result<SubscriptionSnapshot, BillingError> {
        let executed = self
            .execute(
                subscription_id,
                SubscriptionCommand::RecordProviderFact(fact),
                context,
            )
            .await?;
        let replay = executed.events.is_empty();
        self.snapshot(executed, replay).await
    }
}
