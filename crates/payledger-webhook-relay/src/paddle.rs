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
//! A delivery that cannot be applied is not dropped: a price or product the map does not know,
//! a subscription with no payledger customer in its `custom_data`, or a provider fact the ledger
//! refuses (another period, another amount) fail permanently and are dead-lettered with the
//! reason, for an admin to see, fix (the map) and replay.

use crate::applied::{Applied, Failure};
use payledger_app::context::RequestContext;
use payledger_app::subscriptions::{BillingError, ProviderBilledStart, Subscriptions};
use payledger_connector_paddle::webhook::{interpret, PaddleMeaning};
use payledger_connector_paddle::wire::{
    parse_amount, SubscriptionStatus, SubscriptionWire, TransactionStatus, TransactionWire,
};
use payledger_connector_paddle::{PaddleGateway, CUSTOM_DATA_CUSTOMER_ID};
use payledger_domain::billing::{BillingInterval, IntervalUnit, SubscriptionId};
use payledger_domain::ids::{CustomerId, PaymentKey};
use payledger_domain::money::Money;
use payledger_domain::provider_billed::{
    PriceUse, ProviderBilling, ProviderPriceMap, ProviderSubscriptionFact,
};
use payledger_domain::subscription::SubscriptionError;
use payledger_domain::webhook::{VerificationMethod, WebhookOutcome, WebhookVerified};
use payledger_gateway::GatewayError;
use std::sync::Arc;

/// Most transactions of one subscription a sync records (years of monthly renewals).
const MAX_TRANSACTIONS_PER_SYNC: usize = 200;

/// What the worker needs to apply Paddle notifications.
pub struct PaddleApplier {
    pub paddle: Arc<PaddleGateway>,
    pub subscriptions: Arc<Subscriptions>,
    pub price_map: ProviderPriceMap,
}

fn gateway_failure(error: GatewayError) -> Failure {
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

fn billing_failure(error: BillingError) -> Failure {
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
        let verified = Some(WebhookVerified {
            provider: "paddle".to_owned(),
            event_id: event_id.to_owned(),
            method: VerificationMethod::Signature,
            scheme: scheme.to_owned(),
            secret_index,
            provider_status: None,
            order_id: None,
            at: now,
        });
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
                PaddleMeaning::Adjustment { .. } => {
                    "Paddle adjustments are kept on record; refunds, credits and chargebacks are not yet applied to the ledger".to_owned()
                }
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
        let subscription = self
            .paddle
            .subscription(provider_subscription_id)
            .await
            .map_err(gateway_failure)?
            .ok_or_else(|| {
                Failure::permanent(
                    None,
                    format!("Paddle has no subscription {provider_subscription_id}"),
                )
            })?;
        let mut transactions = self
            .paddle
            .transactions_of_subscription(provider_subscription_id)
            .await
            .map_err(gateway_failure)?;
        transactions.retain(|t| t.billing_period.is_some());
        transactions.sort_by_key(|t| t.billing_period.as_ref().map(|p| p.starts_at));
        transactions.truncate(MAX_TRANSACTIONS_PER_SYNC);
        let subscription_id = SubscriptionId::parse(&subscription.id)
            .map_err(|err| Failure::permanent(None, format!("Paddle subscription id: {err}")))?;
        let start = self.start_input(&subscription_id, &subscription, &transactions)?;
        self.subscriptions
            .start_provider_billed(start, &context)
            .await
            .map_err(billing_failure)?;
        let mut recorded = 0;
        for transaction in &transactions {
            let fact = match transaction.status {
                TransactionStatus::Completed | TransactionStatus::Paid => paid_fact(transaction)?,
                _ => continue,
            };
            let snapshot = self
                .subscriptions
                .record_provider_fact(&subscription_id, fact, &context)
                .await
                .map_err(billing_failure)?;
            if !snapshot.replay {
                recorded += 1;
            }
        }
        let facts = match subscription.status {
            SubscriptionStatus::Canceled => vec![ProviderSubscriptionFact::Canceled {
                at: subscription.canceled_at.unwrap_or(now),
            }],
            SubscriptionStatus::PastDue => vec![ProviderSubscriptionFact::PastDue {
                provider_code: "past_due".to_owned(),
                at: now,
            }],
            SubscriptionStatus::Active
            | SubscriptionStatus::Trialing
            | SubscriptionStatus::Paused => {
                vec![ProviderSubscriptionFact::CancelScheduled {
                    effective_at: subscription.cancel_effective_at(),
                    at: now,
                }]
            }
        };
        for fact in facts {
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
            subscription.id,
            subscription.status.as_str()
        ))
    }

    fn start_input(
        &self,
        subscription_id: &SubscriptionId,
        subscription: &SubscriptionWire,
        transactions: &[TransactionWire],
    ) -> Result<ProviderBilledStart, Failure> {
        let item = subscription.items.first().ok_or_else(|| {
            Failure::permanent(
                None,
                "held for review: the Paddle subscription has no items",
            )
        })?;
        let plan_id = match self
            .price_map
            .lookup(&item.price.id, &item.price.product_id)
        {
            Some(PriceUse::Plan(plan)) => plan.clone(),
            Some(PriceUse::Credits(_)) => {
                return Err(Failure::permanent(
                    None,
                    format!(
                        "held for review: Paddle price {} is mapped to credits but is billed as a subscription",
                        item.price.id
                    ),
                ))
            }
            None => {
                return Err(Failure::permanent(
                    None,
                    format!(
                        "held for review: unknown Paddle price {} (product {}); add it to PAYLEDGER_PADDLE_PRICE_MAP and replay",
                        item.price.id, item.price.product_id
                    ),
                ))
            }
        };
        let customer_id = subscription
            .custom_text(CUSTOM_DATA_CUSTOMER_ID)
            .and_then(|text| CustomerId::parse(text).ok())
            .ok_or_else(|| {
                Failure::permanent(
                    None,
                    "held for review: the Paddle subscription names no payledger customer (custom_data.customerId)",
                )
            })?;
        let per_period: i64 = subscription
            .items
            .iter()
            .map(|item| {
                parse_amount(&item.price.unit_price.amount, "unit_price.amount")
                    .map(|amount| amount * i64::from(item.quantity))
            })
            .sum::<Result<i64, _>>()
            .map_err(|err| Failure::permanent(None, format!("unreadable Paddle price: {err}")))?;
        let currency =
            payledger_connector_paddle::wire::parse_currency(&subscription.currency_code)
                .map_err(|err| Failure::permanent(None, err.to_string()))?;
        let amount = Money::new(per_period, currency)
            .map_err(|err| Failure::permanent(None, format!("Paddle price amount: {err}")))?;
        let unit = match subscription.billing_cycle.interval.as_str() {
            "day" => IntervalUnit::Day,
            "week" => IntervalUnit::Week,
            "month" => IntervalUnit::Month,
            "year" => IntervalUnit::Year,
            other => {
                return Err(Failure::permanent(
                    None,
                    format!("held for review: Paddle billing interval '{other}'"),
                ))
            }
        };
        let interval = BillingInterval::new(unit, subscription.billing_cycle.frequency)
            .map_err(|err| Failure::permanent(None, format!("Paddle billing cycle: {err}")))?;
        // The first period: the earliest transaction's, else the current period's start.
        let first_period_start = transactions
            .iter()
            .filter_map(|t| t.billing_period.as_ref().map(|p| p.starts_at))
            .min()
            .or(subscription.started_at)
            .or(subscription
                .current_billing_period
                .as_ref()
                .map(|p| p.starts_at))
            .ok_or_else(|| {
                Failure::permanent(None, "the Paddle subscription has no billing period")
            })?;
        Ok(ProviderBilledStart {
            subscription_id: subscription_id.clone(),
            customer_id,
            plan_id,
            billing: ProviderBilling {
                provider: payledger_connector_paddle::PROVIDER_NAME.to_owned(),
                provider_subscription_id: subscription.id.clone(),
                price_id: item.price.id.clone(),
            },
            amount,
            interval,
            first_period_start,
            order_name: item
                .price
                .description
                .clone()
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| format!("Paddle {}", item.price.id))
                .chars()
                .take(100)
                .collect(),
        })
    }
}

/// A completed transaction of a subscription as a paid period: its subtotal (before tax, the
/// subscription's price) for its billing period.
fn paid_fact(transaction: &TransactionWire) -> Result<ProviderSubscriptionFact, Failure> {
    let unreadable = |err: String| {
        Failure::permanent(
            None,
            format!("unreadable Paddle transaction {}: {err}", transaction.id),
        )
    };
    let money = transaction.money().map_err(|e| unreadable(e.to_string()))?;
    let subtotal = parse_amount(
        &transaction.details.totals.subtotal,
        "details.totals.subtotal",
    )
    .map_err(|e| unreadable(e.to_string()))?;
    let period = transaction
        .billing_period
        .as_ref()
        .ok_or_else(|| unreadable("no billing period".to_owned()))?;
    let approved_at = transaction
        .captured_at()
        .ok_or_else(|| unreadable("no capture time".to_owned()))?;
    Ok(ProviderSubscriptionFact::Paid {
        payment_key: PaymentKey::parse(&transaction.id).map_err(|e| unreadable(e.to_string()))?,
        amount: Money::new(subtotal, money.currency).map_err(|e| unreadable(e.to_string()))?,
        period_start: period.starts_at,
        period_end: period.ends_at,
        approved_at,
        at: approved_at,
    })
}
