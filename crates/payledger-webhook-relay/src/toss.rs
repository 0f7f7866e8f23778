//! Applying a Toss Payments payment-status webhook: the body is unsigned, so it only says which
//! payment to look at. payledger asks the provider's API and acts on that answer alone.
//!
//! - An order waiting for an outcome (CONFIRMING, OUTCOME_UNKNOWN) or with refunds in flight is
//!   settled now: `Payments::reconcile_order(order, 0)` asks the provider and records what it
//!   says, exactly as the scheduled reconciler would, only sooner.
//! - If the provider reports more canceled than payledger has refunded (canceled in the Toss
//!   console, say), or a charge payledger does not have, nothing is changed: payledger does not
//!   invent refunds or captures. A `ProviderStateDiffers` event puts it in the order's timeline
//!   for support, and a counter and a warning go out.

use chrono::{DateTime, Utc};
use payledger_app::payments::{Payments, Reconciled};
use payledger_domain::ids::OrderId;
use payledger_domain::order::{Order, OrderStatus};
use payledger_domain::provider_fact::{self, LedgerPayment};
use payledger_domain::webhook::{
    ProviderStateDiffers, VerificationMethod, WebhookOutcome, WebhookVerified,
};
use payledger_gateway::ProviderPayment;
use serde_json::Value;

use crate::applied::{Applied, Failure};
use crate::short;

/// What to re-fetch: the payment key, else the order id, from an (untrusted) Toss body. Toss
/// payment-status events carry them under `data`; deposit callbacks at the top level.
pub fn refetch_key(body: &Value) -> Option<RefetchKey> {
    let holders = [body.get("data"), Some(body)];
    let field = |name: &str| {
        holders
            .iter()
            .flatten()
            .find_map(|holder| holder.get(name)?.as_str())
            .filter(|value| plain_id(value))
            .map(str::to_string)
    };
    field("paymentKey")
        .map(RefetchKey::PaymentKey)
        .or_else(|| field("orderId").map(RefetchKey::OrderId))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefetchKey {
    PaymentKey(String),
    OrderId(String),
}

/// Ids sent on to the provider's API: bounded, URL-safe.
fn plain_id(value: &str) -> bool {
    (1..=200).contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '=' | '.'))
}

pub(crate) fn order_status_name(status: OrderStatus) -> String {
    payledger_domain::codec::wire_name(&status)
}

/// `lookups` asks the provider for the payment: the worker's own gateway, whose circuit breaker
/// intake traffic may open without touching the one real payments use (`intake`).
pub(crate) async fn apply_payment_status(
    payments: &Payments,
    lookups: &dyn payledger_gateway::PaymentGateway,
    event_id: &str,
    raw_body: &[u8],
    now: DateTime<Utc>,
) -> Result<Applied, Failure> {
    let body: Value = serde_json::from_slice(raw_body)
        .map_err(|_| Failure::permanent(None, "the body is not JSON"))?;
    let key = refetch_key(&body).ok_or_else(|| {
        Failure::permanent(None, "the body names no paymentKey or orderId to re-fetch")
    })?;
    let fetched = match &key {
        RefetchKey::PaymentKey(payment_key) => lookups.payment_by_key(payment_key).await,
        RefetchKey::OrderId(order_id) => lookups.payment_by_order_id(order_id).await,
    }
    .map_err(|e| {
        Failure::transient(
            None,
            format!("the provider could not be asked: {}", short(e)),
        )
    })?;
    let provider = payment_provider(&fetched);
    let Some(payment) = fetched else {
        return Ok(Applied {
            order_id: None,
            verified: Some(verified(event_id, None, None, now)),
            differs: None,
            outcome: WebhookOutcome::PaymentUnknownAtProvider,
            detail: "the provider has no such payment; nothing to apply".into(),
        });
    };
    let provider_status = payment.provider_status.clone();
    let order_id = OrderId::parse(payment.order_id.clone()).ok();
    let verified = Some(verified(
        event_id,
        Some(provider_status.clone()),
        order_id.as_ref().map(ToString::to_string),
        now,
    ));
    let Some(order_id) = order_id else {
        return Ok(Applied {
            order_id: None,
            verified,
            differs: None,
            outcome: WebhookOutcome::OrderUnknown,
            detail: "the provider's order id is not one payledger issues".into(),
        });
    };
    let snapshot = payments
        .load_order(&order_id)
        .await
        .map_err(|e| Failure::transient(Some(&order_id), short(e)))?;
    let Some(snapshot) = snapshot else {
        return Ok(Applied {
            order_id: Some(order_id.to_string()),
            verified,
            differs: None,
            outcome: WebhookOutcome::OrderUnknown,
            detail: format!("payledger has no order {order_id}"),
        });
    };
    let order = &snapshot.state;
    let waiting = matches!(
        order.status,
        OrderStatus::Confirming | OrderStatus::OutcomeUnknown
    ) || order.refund_pending_minor > 0;
    if waiting {
        let reconciled = payments
            .reconcile_order(&order_id, chrono::Duration::zero())
            .await
            .map_err(|e| Failure::transient(Some(&order_id), short(e)))?;
        return match reconciled {
            Reconciled::Settled(what) => Ok(Applied {
                order_id: Some(order_id.to_string()),
                verified,
                differs: None,
                outcome: WebhookOutcome::Settled,
                detail: format!(
                    "settled from the provider's answer ({provider_status}): {}",
                    what.join(", ")
                ),
            }),
            Reconciled::StillUnknown(reason) => Err(Failure::transient(
                Some(&order_id),
                format!("the provider's answer is still unknown: {}", short(reason)),
            )),
            Reconciled::HeldForReview(what) => Ok(Applied {
                order_id: Some(order_id.to_string()),
                verified,
                differs: None,
                outcome: WebhookOutcome::ProviderDiffers,
                detail: format!("recorded on the order for review: {}", what.join("; ")),
            }),
            Reconciled::NothingPending | Reconciled::TooRecent => Ok(Applied {
                order_id: Some(order_id.to_string()),
                verified,
                differs: None,
                outcome: WebhookOutcome::AlreadyConsistent,
                detail: "settled meanwhile; nothing left to apply".into(),
            }),
        };
    }
    let differs = compare(&provider, event_id, &order_id, order, &payment, now);
    let (outcome, detail) = match &differs {
        Some(d) => {
            payledger_metrics::metrics().provider_discrepancy(&provider);
            tracing::warn!(
                %order_id,
                provider_status = d.provider_status,
                payledger_status = d.payledger_status,
                "the provider's payment differs from the ledger; support must review"
            );
            (
                WebhookOutcome::ProviderDiffers,
                format!(
                    "the provider reports {} while payledger has {}; nothing was changed",
                    d.provider_status, d.payledger_status
                ),
            )
        }
        None => (
            WebhookOutcome::AlreadyConsistent,
            format!(
                "the provider reports {provider_status}, payledger has {}",
                order_status_name(order.status)
            ),
        ),
    };
    Ok(Applied {
        order_id: Some(order_id.to_string()),
        verified,
        differs,
        outcome,
        detail,
    })
}

/// The connector these webhooks come from and are re-fetched through.
const TOSS: &str = "toss";

fn payment_provider(fetched: &Option<ProviderPayment>) -> String {
    fetched
        .as_ref()
        .map_or_else(|| TOSS.to_string(), |p| p.provider.clone())
}

/// Where the provider's payment differs from what payledger recorded: the one comparison
/// (`provider_fact::differences_from_ledger`), fed with the connector's fact.
pub(crate) fn compare(
    provider: &str,
    event_id: &str,
    order_id: &OrderId,
    order: &Order,
    payment: &ProviderPayment,
    now: DateTime<Utc>,
) -> Option<ProviderStateDiffers> {
    let fact = payment.fact();
    let currency = order
        .placed
        .as_ref()
        .map_or(fact.currency, |placed| placed.amount.currency());
    let payledger_refunded_minor = order.refunded_minor + order.refund_pending_minor;
    let ledger = LedgerPayment {
        payment_key: order.payment_key.as_ref().map(|key| key.as_str()),
        captured_minor: order.captured_minor,
        refunded_minor: payledger_refunded_minor,
        currency,
    };
    let differences = provider_fact::differences_from_ledger(&ledger, &fact);
    (!differences.is_empty()).then(|| ProviderStateDiffers {
        provider: provider.to_string(),
        event_id: event_id.to_string(),
        order_id: order_id.to_string(),
        payment_key: payment.payment_key.clone(),
        provider_status: payment.provider_status.clone(),
        payledger_status: order_status_name(order.status),
        provider_canceled_minor: fact.refunded_minor,
        payledger_refunded_minor,
        currency: payment.currency.code().to_string(),
        at: now,
    })
}

fn verified(
    event_id: &str,
    provider_status: Option<String>,
    order_id: Option<String>,
    at: DateTime<Utc>,
) -> WebhookVerified {
    WebhookVerified {
        provider: "toss".into(),
        event_id: event_id.to_string(),
        method: VerificationMethod::ProviderLookup,
        scheme: "toss_unsigned".into(),
        secret_index: None,
        provider_status,
        order_id,
        at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_payment_key_is_preferred_and_hostile_ids_are_not_sent_on() {
        let status = json!({"eventType": "PAYMENT_STATUS_CHANGED",
            "data": {"paymentKey": "pk_1", "orderId": "order-1", "status": "DONE"}});
        assert_eq!(
            refetch_key(&status),
            Some(RefetchKey::PaymentKey("pk_1".into()))
        );
        let deposit = json!({"orderId": "order-2", "status": "DONE"});
        assert_eq!(
            refetch_key(&deposit),
            Some(RefetchKey::OrderId("order-2".into()))
        );
        let hostile = json!({"data": {"paymentKey": "../../v1/billing/x"}});
        assert_eq!(refetch_key(&hostile), None);
    }
}
