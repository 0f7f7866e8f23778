//! What a Stripe webhook means for the ledger.
//!
//! A delivery is verified (`Stripe-Signature`, payledger-webhooks) before it gets here, and is
//! still not trusted: [`interpret`] reads only the event's id, type and the ids of the objects it
//! names, and decides which ledger object it concerns. [`recheck`] then asks Stripe's API for
//! those objects as they are now; only that answer ([`StripeFact`]) may change money state, after
//! the application compares it with what the ledger expects.
//!
//! | event | ledger object | re-checked with |
//! | --- | --- | --- |
//! | `payment_intent.succeeded`, `.payment_failed`, `.canceled` | the order's payment (settles a confirm that was unknown or waiting for 3-D Secure) | the PaymentIntent |
//! | `charge.refunded`, `charge.refund.updated`, `refund.created`, `refund.updated`, `refund.failed` | the order's refunds (a refund payledger did not ask for is a provider-initiated refund, within the captured amount) | the PaymentIntent with its refunds, and the refund |
//! | `charge.dispute.created`, `charge.dispute.updated`, `charge.dispute.closed` | the order's dispute (opened: refunds refused, settlement held; lost: the withdrawal and Stripe's fee are journaled) | the Dispute |
//! | anything else (`payment_intent.created`, `.requires_action`, `.amount_capturable_updated`, `charge.succeeded`, `charge.failed`, `charge.captured`, `charge.dispute.funds_withdrawn`, `.funds_reinstated`, …) | none: recorded with [`StripeMeaning::NoLedgerEffect`] | nothing |
//!
//! `charge.dispute.funds_withdrawn` / `.funds_reinstated` have no effect of their own because the
//! Dispute re-fetched for `created` / `updated` / `closed` carries the same balance transactions; acting on
//! both would journal the same money twice.

use crate::wire::{self, DisputeWire, RefundWire, UnreadableAnswer};
use crate::StripeGateway;
use payledger_domain::money::Currency;
pub use payledger_domain::provider_fact::{DisputeFact, DisputeStatus as DisputeState};
use payledger_gateway::{
    GatewayError, ProviderPayment, WebhookFact, WebhookFactError, WebhookMeaning,
};
use serde_json::Value;

/// Largest event body interpreted (Stripe's events are a few kilobytes).
pub const MAX_EVENT_BYTES: usize = 256 * 1024;

/// A verified delivery's event, read for its ids only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeEvent {
    /// `evt_…`: deliveries of one event share it, so it deduplicates retries.
    pub id: String,
    pub event_type: String,
    pub livemode: bool,
    pub meaning: StripeMeaning,
}

/// Which ledger object an event concerns, and what to re-fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StripeMeaning {
    /// The order's payment may have settled: re-fetch the PaymentIntent.
    Payment { intent_id: String },
    /// The order's refunds changed: re-fetch the PaymentIntent (with its refunds) and, when the
    /// event names one, the refund.
    Refund {
        intent_id: String,
        refund_id: Option<String>,
    },
    /// A dispute opened or closed: re-fetch the Dispute.
    Dispute { dispute_id: String },
    /// Nothing in the ledger depends on this event; it is kept on record only.
    NoLedgerEffect { reason: &'static str },
}

/// Why an event could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("the event body is above {MAX_EVENT_BYTES} bytes")]
    TooLarge,
    #[error("the event is not a Stripe event: {0}")]
    Malformed(String),
}

/// Reads a verified delivery's body.
pub fn interpret(body: &[u8]) -> Result<StripeEvent, EventError> {
    if body.len() > MAX_EVENT_BYTES {
        return Err(EventError::TooLarge);
    }
    let event: Value =
        serde_json::from_slice(body).map_err(|err| EventError::Malformed(err.to_string()))?;
    let text = |value: &Value, what: &str| -> Result<String, EventError> {
        value
            .as_str()
            .filter(|text| !text.is_empty() && text.len() <= 255)
            .map(str::to_owned)
            .ok_or_else(|| EventError::Malformed(format!("{what} is missing")))
    };
    if event["object"] != "event" {
        return Err(EventError::Malformed("object is not \"event\"".to_owned()));
    }
    let id = text(&event["id"], "id")?;
    let event_type = text(&event["type"], "type")?;
    let object = &event["data"]["object"];
    let prefixed = |value: &Value, prefix: &str, what: &str| -> Result<String, EventError> {
        let id = text(value, what)?;
        if id.starts_with(prefix) {
            Ok(id)
        } else {
            Err(EventError::Malformed(format!(
                "{what} is not a {prefix} id"
            )))
        }
    };
    let meaning = match event_type.as_str() {
        "payment_intent.succeeded"
        | "payment_intent.payment_failed"
        | "payment_intent.canceled" => StripeMeaning::Payment {
            intent_id: prefixed(&object["id"], "pi_", "data.object.id")?,
        },
        "charge.refunded" | "charge.refund.updated" => StripeMeaning::Refund {
            intent_id: prefixed(
                &object["payment_intent"],
                "pi_",
                "data.object.payment_intent",
            )?,
            refund_id: None,
        },
        "refund.created" | "refund.updated" | "refund.failed" => StripeMeaning::Refund {
            intent_id: prefixed(
                &object["payment_intent"],
                "pi_",
                "data.object.payment_intent",
            )?,
            refund_id: Some(prefixed(&object["id"], "re_", "data.object.id")?),
        },
        "charge.dispute.created" | "charge.dispute.updated" | "charge.dispute.closed" => {
            StripeMeaning::Dispute {
                dispute_id: prefixed(&object["id"], "dp_", "data.object.id")?,
            }
        }
        "charge.dispute.funds_withdrawn" | "charge.dispute.funds_reinstated" => {
            StripeMeaning::NoLedgerEffect {
                reason: "the dispute's money is journaled from charge.dispute.created/closed",
            }
        }
        "payment_intent.requires_action" => StripeMeaning::NoLedgerEffect {
            reason: "the order waits for the customer; payment_intent.succeeded settles it",
        },
        "charge.succeeded" | "charge.captured" | "charge.failed" => StripeMeaning::NoLedgerEffect {
            reason: "the PaymentIntent's own event settles the payment",
        },
        _ => StripeMeaning::NoLedgerEffect {
            reason: "payledger keeps no ledger object this event changes",
        },
    };
    Ok(StripeEvent {
        id,
        event_type,
        livemode: event["livemode"].as_bool().unwrap_or(false),
        meaning,
    })
}

/// What Stripe's API says now about the object an event named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StripeFact {
    /// The PaymentIntent as it stands (status, captured and refunded amounts, refunds); for a
    /// refund event, also the refund it named.
    Payment {
        payment: Box<ProviderPayment>,
        refund: Option<RefundFact>,
    },
    Dispute(DisputeFact),
    /// Stripe no longer knows the object (or never did): nothing to record but the discrepancy.
    Unknown,
    NoLedgerEffect {
        reason: &'static str,
    },
}

/// A refund as Stripe reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundFact {
    pub refund_id: String,
    pub intent_id: String,
    pub amount_minor: i64,
    pub currency: Currency,
    pub status: RefundState,
    pub failure_reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundState {
    /// Not final: no money has moved yet.
    Pending,
    Succeeded,
    /// Failed or canceled: the money stays with the merchant.
    Failed,
}

/// Asks Stripe's API for what an event named.
pub async fn recheck(
    gateway: &StripeGateway,
    meaning: &StripeMeaning,
) -> Result<StripeFact, GatewayError> {
    match meaning {
        StripeMeaning::NoLedgerEffect { reason } => Ok(StripeFact::NoLedgerEffect { reason }),
        StripeMeaning::Payment { intent_id } => {
            Ok(match gateway.payment_intent(intent_id).await? {
                Some(payment) => StripeFact::Payment {
                    payment: Box::new(payment),
                    refund: None,
                },
                None => StripeFact::Unknown,
            })
        }
        StripeMeaning::Refund {
            intent_id,
            refund_id,
        } => {
            let Some(payment) = gateway.payment_intent(intent_id).await? else {
                return Ok(StripeFact::Unknown);
            };
            let refund = match refund_id {
                Some(refund_id) => match gateway.refund(refund_id).await? {
                    Some(refund) => Some(refund_fact(refund, intent_id)?),
                    None => return Ok(StripeFact::Unknown),
                },
                None => None,
            };
            Ok(StripeFact::Payment {
                payment: Box::new(payment),
                refund,
            })
        }
        StripeMeaning::Dispute { dispute_id } => match gateway.dispute(dispute_id).await? {
            Some(dispute) => Ok(StripeFact::Dispute(dispute_fact(
                crate::PaymentGateway::provider_name(gateway),
                dispute,
            )?)),
            None => Ok(StripeFact::Unknown),
        },
    }
}

/// A verified delivery read ([`interpret`]) and re-checked ([`recheck`]), in the seam's words
/// (`PaymentGateway::recheck_webhook`).
pub async fn webhook_fact(
    gateway: &StripeGateway,
    verified_body: &[u8],
) -> Result<WebhookFact, WebhookFactError> {
    let event =
        interpret(verified_body).map_err(|err| WebhookFactError::Malformed(err.to_string()))?;
    let object_id = match &event.meaning {
        StripeMeaning::Payment { intent_id } | StripeMeaning::Refund { intent_id, .. } => {
            intent_id.clone()
        }
        StripeMeaning::Dispute { dispute_id } => dispute_id.clone(),
        StripeMeaning::NoLedgerEffect { .. } => String::new(),
    };
    let refunds = matches!(event.meaning, StripeMeaning::Refund { .. });
    let meaning = match recheck(gateway, &event.meaning).await? {
        // The refund an event named is only a prompt: the payment's own list of refunds that
        // moved money is what the ledger compares with (a pending or failed refund moved none).
        StripeFact::Payment { payment, .. } if refunds => WebhookMeaning::Refunds(payment),
        StripeFact::Payment { payment, .. } => WebhookMeaning::Payment(payment),
        StripeFact::Dispute(dispute) => WebhookMeaning::Dispute(dispute),
        StripeFact::Unknown => WebhookMeaning::UnknownAtProvider { object_id },
        StripeFact::NoLedgerEffect { reason } => WebhookMeaning::NoLedgerEffect {
            reason: reason.to_owned(),
        },
    };
    Ok(WebhookFact {
        event_type: event.event_type,
        meaning,
    })
}

fn unreadable(err: UnreadableAnswer) -> GatewayError {
    GatewayError::OutcomeUnknown {
        reason: err.to_string(),
    }
}

fn refund_fact(refund: RefundWire, intent_id: &str) -> Result<RefundFact, GatewayError> {
    if refund.payment_intent.as_deref() != Some(intent_id) {
        return Err(unreadable(UnreadableAnswer(
            "the refund belongs to another PaymentIntent".to_owned(),
        )));
    }
    let status = match refund.status.as_str() {
        "pending" | "requires_action" => RefundState::Pending,
        "succeeded" => RefundState::Succeeded,
        "failed" | "canceled" => RefundState::Failed,
        other => {
            return Err(unreadable(UnreadableAnswer(format!(
                "refund status {other} is not one payledger knows"
            ))))
        }
    };
    Ok(RefundFact {
        currency: wire::currency(&refund.currency).map_err(unreadable)?,
        refund_id: refund.id,
        intent_id: intent_id.to_owned(),
        amount_minor: refund.amount,
        status,
        failure_reason: refund.failure_reason,
    })
}

/// A Dispute as a fact: its state, and the money its balance transactions moved (in the
/// dispute's currency; a transaction in another currency — a settlement conversion — is not
/// guessed at).
pub fn dispute_fact(provider: &str, dispute: DisputeWire) -> Result<DisputeFact, GatewayError> {
    let intent_id = dispute
        .payment_intent
        .clone()
        .filter(|id| id.starts_with("pi_"))
        .ok_or_else(|| {
            unreadable(UnreadableAnswer(
                "the dispute names no PaymentIntent".to_owned(),
            ))
        })?;
    let status = match dispute.status.as_str() {
        "won" => DisputeState::Won,
        "lost" => DisputeState::Lost,
        "needs_response" | "under_review" | "warning_needs_response" | "warning_under_review" => {
            DisputeState::Open
        }
        // An inquiry closed without becoming a chargeback: nothing was withdrawn.
        "warning_closed" => DisputeState::Won,
        other => {
            return Err(unreadable(UnreadableAnswer(format!(
                "dispute status {other} is not one payledger knows"
            ))))
        }
    };
    if dispute
        .balance_transactions
        .iter()
        .any(|txn| txn.currency != dispute.currency)
    {
        return Err(unreadable(UnreadableAnswer(
            "a dispute balance transaction is in another currency".to_owned(),
        )));
    }
    let withdrawn_minor = -dispute
        .balance_transactions
        .iter()
        .map(|txn| txn.amount)
        .sum::<i64>();
    let fee_minor = dispute
        .balance_transactions
        .iter()
        .map(|txn| txn.fee)
        .sum::<i64>();
    if !(0..=dispute.amount).contains(&withdrawn_minor) || fee_minor < 0 || dispute.amount < 0 {
        return Err(unreadable(UnreadableAnswer(
            "the dispute's balance transactions do not add up".to_owned(),
        )));
    }
    Ok(DisputeFact {
        provider: provider.to_owned(),
        currency: wire::currency(&dispute.currency).map_err(unreadable)?,
        dispute_id: dispute.id,
        payment_key: intent_id,
        status,
        amount_minor: dispute.amount,
        withdrawn_minor,
        fee_minor,
        reason: dispute.reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(event_type: &str, object: Value) -> Vec<u8> {
        json!({"id": "evt_1", "object": "event", "type": event_type, "livemode": false,
               "data": {"object": object}})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn events_that_act_name_the_object_to_refetch() {
        let paid = interpret(&event("payment_intent.succeeded", json!({"id": "pi_1"}))).unwrap();
        assert_eq!(
            paid.meaning,
            StripeMeaning::Payment {
                intent_id: "pi_1".into()
            }
        );
        let refunded = interpret(&event(
            "charge.refunded",
            json!({"id": "ch_1", "payment_intent": "pi_1"}),
        ))
        .unwrap();
        assert_eq!(
            refunded.meaning,
            StripeMeaning::Refund {
                intent_id: "pi_1".into(),
                refund_id: None
            }
        );
        let updated = interpret(&event(
            "refund.updated",
            json!({"id": "re_1", "payment_intent": "pi_1"}),
        ))
        .unwrap();
        assert_eq!(
            updated.meaning,
            StripeMeaning::Refund {
                intent_id: "pi_1".into(),
                refund_id: Some("re_1".into())
            }
        );
        let disputed = interpret(&event("charge.dispute.closed", json!({"id": "dp_1"}))).unwrap();
        assert_eq!(
            disputed.meaning,
            StripeMeaning::Dispute {
                dispute_id: "dp_1".into()
            }
        );
    }

    #[test]
    fn other_events_have_no_ledger_effect() {
        for event_type in [
            "payment_intent.created",
            "payment_intent.requires_action",
            "charge.succeeded",
            "charge.dispute.funds_withdrawn",
            "customer.created",
        ] {
            let read = interpret(&event(event_type, json!({"id": "x_1"}))).unwrap();
            assert!(
                matches!(read.meaning, StripeMeaning::NoLedgerEffect { .. }),
                "{event_type}"
            );
        }
    }

    #[test]
    fn acting_events_without_usable_ids_are_malformed() {
        assert!(interpret(&event("payment_intent.succeeded", json!({"id": "ch_1"}))).is_err());
        assert!(interpret(&event("charge.refunded", json!({"id": "ch_1"}))).is_err());
        assert!(interpret(b"{\"object\":\"list\"}").is_err());
        assert!(interpret(b"not json").is_err());
        assert!(interpret(&vec![b' '; MAX_EVENT_BYTES + 1]).is_err());
    }

    #[test]
    fn a_lost_dispute_withdraws_its_amount_and_a_fee_and_a_won_one_returns_the_amount() {
        let lost: DisputeWire = serde_json::from_value(json!({
            "id": "dp_1", "amount": 7000, "currency": "usd", "status": "lost", "payment_intent": "pi_1",
            "balance_transactions": [{"amount": -7000, "fee": 1500, "currency": "usd"}],
        }))
        .unwrap();
        let fact = dispute_fact("stripe", lost).unwrap();
        assert_eq!(fact.status, DisputeState::Lost);
        assert_eq!((fact.withdrawn_minor, fact.fee_minor), (7000, 1500));
        let won: DisputeWire = serde_json::from_value(json!({
            "id": "dp_2", "amount": 7000, "currency": "usd", "status": "won", "payment_intent": "pi_1",
            "balance_transactions": [{"amount": -7000, "fee": 1500, "currency": "usd"},
                                     {"amount": 7000, "fee": 0, "currency": "usd"}],
        }))
        .unwrap();
        let fact = dispute_fact("stripe", won).unwrap();
        assert_eq!(
            (fact.status, fact.withdrawn_minor, fact.fee_minor),
            (DisputeState::Won, 0, 1500)
        );
        let odd: DisputeWire = serde_json::from_value(json!({
            "id": "dp_3", "amount": 100, "currency": "usd", "status": "lost", "payment_intent": "pi_1",
            "balance_transactions": [{"amount": -7000, "fee": 1500, "currency": "usd"}],
        }))
        .unwrap();
        assert!(dispute_fact("stripe", odd).is_err());
    }
}
