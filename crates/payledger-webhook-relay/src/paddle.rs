//! Applies a verified Paddle notification: reads which entity it names
//! (`payledger_connector_paddle::webhook::interpret`), asks Paddle's API for the subscription as
//! it is now and its transactions, and records what that says on the one subscription aggregate
//! (`Subscriptions::start_provider_billed`, `record_provider_fact`), each fact judged by the
//! aggregate against what the ledger expects.
//!
//! Every subscription notification is applied as a **sync**: start the subscription if the
//! ledger does not have it yet (its plan from the configured price map), record every completed
//! transaction of it in period order (already recorded periods record nothing), then its state
//! (past due, a scheduled cancel, canceled). So notifications may arrive in any order, twice, or
//! be replayed by an admin, and the effect is the same once.
//!
//! Adjustments (refunds once Paddle approved them, chargebacks) are applied by
//! `paddle_adjustments`, against the order or the subscription the transaction paid.
//!
//! A customer the notification names first is created as the API client's that its
//! `custom_data.apiClient` names (`Subscriptions::provider_customer_context`): never ownerless.
//!
//! A delivery that cannot be applied is not dropped: a price or product the map does not know,
//! a subscription with no payledger customer in its `custom_data`, a new customer with no (or
//! an unknown, or another) API client, or a provider fact the ledger
//! refuses (another period, another amount) fail permanently and are dead-lettered with the
//! reason, for an admin to see, fix (the map) and replay.

use crate::applied::{Applied, Failure};
use payledger_app::context::RequestContext;
use payledger_app::subscriptions::{BillingError, ProviderBilledStart, Subscriptions};
use payledger_connector_paddle::ledger::SubscriptionReading;
use payledger_connector_paddle::webhook::{interpret, PaddleMeaning};
use payledger_connector_paddle::PaddleGateway;
use payledger_domain::billing::SubscriptionId;
use payledger_domain::ids::CustomerId;
use payledger_domain::provider_billed::{PriceUse, ProviderBilling, ProviderPriceMap};
use payledger_domain::subscription::SubscriptionError;
use payledger_domain::webhook::{VerificationMethod, WebhookOutcome, WebhookVerified};
use payledger_gateway::GatewayError;
use std::sync::Arc;

/// What the worker needs to apply Paddle notifications.
pub struct PaddleApplier {
    pub paddle: Arc<PaddleGateway>,
    pub subscriptions: Arc<Subscriptions>,
    /// Records Paddle's approved refunds and chargebacks on the orders they adjust.
    pub payments: Arc<payledger_app::payments::Payments>,
    pub price_map: ProviderPriceMap,
}

pub(crate) fn gateway_failure(error: GatewayError) -> Failure {
    match error {
        // Paddle judged the request (a wrong API key among them): retrying will not help.
        GatewayError::Refused(failure)
            if failure.class != payledger_domain::provider_failure::FailureClass::ProviderError =>
        {
            Failure::permanent(
                None,
                format!(
                    "Paddle refused the lookup: {} ({})",
                    failure.provider_code, failure.provider_message
                ),
            )
        }
        other => Failure::transient(None, format!("Paddle lookup failed: {other}")),
    }
}

pub(crate) fn billing_failure(error: BillingError) -> Failure {
    match error {
        BillingError::Subscription(SubscriptionError::ProviderFactDiffers(reason)) => {
            Failure::permanent(None, format!("held for review: {reason}"))
        }
        BillingError::UnknownPlan(plan) => Failure::permanent(
            None,
            format!("held for review: plan '{plan}' of the Paddle price map is not in the plan catalogue"),
        ),
        BillingError::Unavailable(_) | BillingError::Contention | BillingError::Internal(_) => {
            Failure::transient(None, error.to_string())
        }
        other => Failure::permanent(None, format!("held for review: {other}")),
    }
}

impl PaddleApplier {
    pub(crate) async fn apply(
        &self,
        event_id: &str,
        scheme: &str,
        secret_index: Option<u8>,
        body: &[u8],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Applied, Failure> {
        let event = interpret(body)
            .map_err(|err| Failure::permanent(None, format!("unreadable Paddle event: {err}")))?;
        let verified_fact = WebhookVerified {
            provider: "paddle".to_owned(),
            event_id: event_id.to_owned(),
            method: VerificationMethod::Signature,
            scheme: scheme.to_owned(),
            secret_index,
            provider_status: None,
            order_id: None,
            at: now,
        };
        if let PaddleMeaning::Adjustment {
            adjustment_id,
            transaction_id,
        } = &event.meaning
        {
            return self
                .apply_adjustment(verified_fact, adjustment_id, transaction_id)
                .await;
        }
        let verified = Some(verified_fact);
        let subscription_id = match &event.meaning {
            PaddleMeaning::Subscription {
                subscription_id, ..
            } => Some(subscription_id.clone()),
            PaddleMeaning::Transaction {
                subscription_id, ..
            } => subscription_id.clone(),
            PaddleMeaning::Adjustment { .. } | PaddleMeaning::NoLedgerEffect { .. } => None,
        };
        let Some(subscription_id) = subscription_id else {
            let detail = match &event.meaning {
                PaddleMeaning::NoLedgerEffect { reason } => (*reason).to_owned(),
                _ => "a one-time Paddle payment is confirmed through its order (POST /v1/payments/confirm)".to_owned(),
            };
            return Ok(Applied {
                order_id: None,
                verified,
                differs: None,
                outcome: WebhookOutcome::Recorded,
                detail,
            });
        };
        let detail = self.sync(&subscription_id, now).await?;
        Ok(Applied {
            order_id: None,
            verified,
            differs: None,
            outcome: WebhookOutcome::Settled,
            detail,
        })
    }

    /// Brings the ledger's subscription to what Paddle's API says now.
    pub(crate) async fn sync(
        &self,
        provider_subscription_id: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<String, Failure> {
        let context = RequestContext::system("webhooks:paddle");
        let reading = self
            .paddle
            .subscription_reading(provider_subscription_id, now)
            .await
            .map_err(gateway_failure)?
            .ok_or_else(|| {
                Failure::permanent(
                    None,
                    format!("Paddle has no subscription {provider_subscription_id}"),
                )
            })?;
        let subscription_id = SubscriptionId::parse(&reading.subscription_id)
            .map_err(|err| Failure::permanent(None, format!("Paddle subscription id: {err}")))?;
        let start = self.start_input(&subscription_id, &reading)?;
        let owner_context = self
            .subscriptions
            .provider_customer_context(&start.customer_id, reading.api_client.as_deref(), &context)
            .await
            .map_err(billing_failure)?
            .map_err(|reason| Failure::permanent(None, format!("held for review: {reason}")))?;
        self.subscriptions
            .start_provider_billed(start, &owner_context)
            .await
            .map_err(billing_failure)?;
        let mut recorded = 0;
        for fact in reading.paid.iter().cloned().chain([reading.state.clone()]) {
            let snapshot = self
                .subscriptions
                .record_provider_fact(&subscription_id, fact, &context)
                .await
                .map_err(billing_failure)?;
            if !snapshot.replay {
                recorded += 1;
            }
        }
        Ok(format!(
            "Paddle subscription {} is {}: {recorded} new fact(s) recorded",
            reading.subscription_id, reading.status
        ))
    }

    fn start_input(
        &self,
        subscription_id: &SubscriptionId,
        reading: &SubscriptionReading,
    ) -> Result<ProviderBilledStart, Failure> {
        let plan_id = match self.price_map.lookup(&reading.price_id, &reading.product_id) {
            Some(PriceUse::Plan(plan)) => plan.clone(),
            Some(PriceUse::Credits(_)) => {
                return Err(Failure::permanent(
                    None,
                    format!(
                        "held for review: Paddle price {} is mapped to credits but is billed as a subscription",
                        reading.price_id
                    ),
                ))
            }
            None => {
                return Err(Failure::permanent(
                    None,
                    format!(
                        "held for review: unknown Paddle price {} (product {}); add it to PAYLEDGER_PADDLE_PRICE_MAP and replay",
                        reading.price_id, reading.product_id
                    ),
                ))
            }
        };
        let customer_id = reading
            .customer_id
            .as_deref()
            .and_then(|text| CustomerId::parse(text).ok())
            .ok_or_else(|| {
                Failure::permanent(
                    None,
                    "held for review: the Paddle subscription names no payledger customer (custom_data.customerId)",
                )
            })?;
        Ok(ProviderBilledStart {
            subscription_id: subscription_id.clone(),
            customer_id,
            plan_id,
            billing: ProviderBilling {
                provider: payledger_connector_paddle::PROVIDER_NAME.to_owned(),
                provider_subscription_id: reading.subscription_id.clone(),
                price_id: reading.price_id.clone(),
            },
            amount: reading.amount,
            interval: reading.interval,
            first_period_start: reading.first_period_start,
            order_name: reading
                .description
                .clone()
                .unwrap_or_else(|| format!("Paddle {}", reading.price_id))
                .chars()
                .take(100)
                .collect(),
        })
    }
}
