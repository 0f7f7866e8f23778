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

    /// Who acts for a customer a provider's notification names (Paddle's `custom_data`), by
    /// payledger's ownership rule: a customer belongs to the API client that created it, and a
    /// provider never creates an ownerless one.
    ///
    /// - the customer exists: the notification acts on it as the system, and must name no other
    ///   client than the one that owns it;
    /// - the customer is new: the notification must name an API client with an active key
    ///   (`custom_data.apiClient`), and the customer is created as that client's (the link is
    ///   recorded with the client as its actor, so the client sees it and no other does).
    ///
    /// `Ok(Err(reason))`: the notification is to be held for review, nothing recorded.
    pub async fn provider_customer_context(
        &self,
        customer_id: &CustomerId,
        api_client: Option<&str>,
        system: &RequestContext,
    ) -> Result<Result<RequestContext, String>, BillingError> {
        let first = self
            .executor
            .store()
            .read_stream(&customer::stream_id(customer_id), 0, 1)
            .await
            .map_err(|e| BillingError::Unavailable(e.to_string()))?;
        let owner = first.first().map(|event| {
            event
                .metadata
                .get("actor")
                .and_then(|actor| actor.as_str())
                .unwrap_or_default()
                .to_owned()
        });
        let named = api_client.map(|name| format!("client:{name}"));
        Ok(match (owner, named) {
            (Some(owner), Some(named)) if owner.starts_with("client:") && owner != named => {
                Err(format!(
                    "customer {customer_id} belongs to another API client than custom_data.apiClient names ({named})"
                ))
            }
            (Some(_), _) => Ok(system.clone()),
            (None, None) => Err(format!(
                "customer {customer_id} is new and the notification names no API client (custom_data.apiClient): payledger creates no customer without an owner"
            )),
            (None, Some(named)) => {
                let name = api_client.unwrap_or_default();
                // Bounded by the store's setting (`call_bounds`): read before anything is
                // recorded for this notification, so a time-out records nothing and the
                // notification is processed again.
                let store = self.executor.store();
                let active = payledger_store::call_bounds::bounded(
                    "looking up an API client",
                    store.call_timeout_ms(),
                    crate::api_keys::is_active_client(store.pool(), name),
                )
                .await
                .map_err(|e| BillingError::Unavailable(e.to_string()))?;
                if active {
                    Ok(RequestContext::new(named, system.request_id.clone()))
                } else {
                    Err(format!(
                        "custom_data.apiClient names '{name}', which is no API client with an active key"
                    ))
                }
            }
        })
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

    /// A cancel of a subscription a provider bills goes to the provider first (Paddle's
    /// `POST /subscriptions/{id}/cancel`), and only its answer is recorded: a failed call is an
    /// error to the caller and records nothing. Asking twice asks the provider for the same state
    /// and records nothing new. `None`: payledger bills it (the caller cancels as usual).
    pub(super) async fn cancel_at_provider(
        &self,
        subscription_id: &SubscriptionId,
        at_period_end: bool,
        context: &RequestContext,
    ) -> Result<Option<SubscriptionSnapshot>, BillingError> {
        let Some(existing) = self.load_subscription(subscription_id).await? else {
            return Ok(None);
        };
        let Some(billing) = existing
            .state
            .terms
            .as_ref()
            .and_then(|terms| terms.billed_by.clone())
        else {
            return Ok(None);
        };
        if existing.state.status == payledger_domain::subscription::SubscriptionStatus::Ended {
            return Err(BillingError::Subscription(SubscriptionError::Ended));
        }
        let provider = self
            .provider_billing
            .iter()
            .find(|p| p.provider_name() == billing.provider)
            .ok_or_else(|| {
                BillingError::Refused(ProviderFailure {
                    class: FailureClass::InvalidRequest,
                    provider_code: "PROVIDER_NOT_CONFIGURED".to_owned(),
                    provider_message: format!(
                        "{} bills this subscription and is not configured",
                        billing.provider
                    ),
                })
            })?;
        let state = provider
            .cancel_subscription(&billing.provider_subscription_id, at_period_end)
            .await
            .map_err(|error| match error {
                GatewayError::Refused(failure) => BillingError::Refused(failure),
                GatewayError::NotSent { retry_after_ms, .. } => BillingError::ProviderUnavailable {
                    retry_after_ms: retry_after_ms.unwrap_or(5_000),
                },
                GatewayError::OutcomeUnknown { .. } => BillingError::ProviderUnavailable {
                    retry_after_ms: 5_000,
                },
            })?;
        let now = self.clock.now();
        let fact = match (state.canceled_at, state.cancel_effective_at) {
            (Some(at), _) => ProviderSubscriptionFact::Canceled { at: at.min(now) },
            (None, effective_at) => ProviderSubscriptionFact::CancelScheduled {
                effective_at,
                at: now,
            },
        };
        self.record_provider_fact(subscription_id, fact, context)
            .await
            .map(Some)
    }
}
