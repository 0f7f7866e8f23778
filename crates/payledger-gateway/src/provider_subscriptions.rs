//! Subscriptions a provider bills itself (Paddle): the one call payledger makes about them,
//! cancelling, behind a trait so the application layer knows no provider.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::GatewayError;

/// A provider-billed subscription's cancel state after a cancel call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderCancelState {
    /// A cancel scheduled for then (the end of the billing period).
    pub cancel_effective_at: Option<DateTime<Utc>>,
    /// Canceled at the provider, at this time.
    pub canceled_at: Option<DateTime<Utc>>,
}

#[async_trait]
pub trait ProviderSubscriptions: Send + Sync + 'static {
    /// The connector's name (`paddle`), as `SubscriptionStarted.billedBy.provider` records it.
    fn provider_name(&self) -> &str;

    /// Cancels at the end of the billing period (`at_period_end`) or now. Asking twice asks for
    /// the same state. A failure leaves the subscription as it was at the provider.
    async fn cancel_subscription(
        &self,
        provider_subscription_id: &str,
        at_period_end: bool,
    ) -> Result<ProviderCancelState, GatewayError>;
}
