//! What a Paddle notification means for the ledger.
//!
//! A delivery is verified (`Paddle-Signature`, payledger-webhooks) before it gets here, and is
//! still not trusted: [`interpret`] reads only the event's id, type and the id of the entity it
//! names. The application then asks Paddle's API for that entity as it is now
//! ([`crate::PaddleGateway::transaction`], `subscription`, `adjustment`); only that answer may
//! change money or membership, after it is compared with what the ledger expects.
//!
//! | event | ledger object | re-checked with |
//! | --- | --- | --- |
//! | `transaction.completed` | the payment of a checkout, a renewal or a credit purchase | the transaction |
//! | `transaction.payment_failed`, `transaction.past_due`, `transaction.canceled` | a renewal that failed | the transaction |
//! | `subscription.created`, `.activated`, `.updated`, `.past_due`, `.canceled`, `.paused`, `.resumed`, `.trialing` | the subscription's state, period and scheduled cancel | the subscription |
//! | `adjustment.created`, `adjustment.updated` | a refund (acts once approved) or chargeback of an order's payment | the adjustment and its transaction |
//! | anything else (`transaction.created`, `.ready`, `.billed`, `.paid`, `.updated`, `customer.*`, `address.*`, …) | none: recorded with [`PaddleMeaning::NoLedgerEffect`] | nothing |
//!
//! `transaction.paid` has no effect of its own: `transaction.completed` follows it for the same
//! transaction, and acting on both would be the same fact twice.

use serde_json::Value;

/// Largest notification body interpreted (Paddle's are a few kilobytes).
pub const MAX_EVENT_BYTES: usize = 256 * 1024;

/// A verified notification, read for its ids only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaddleEvent {
    /// `evt_…`: notifications of one event (and Paddle's replays) share it.
    pub event_id: String,
    pub event_type: String,
    /// `ntf_…`: this one notification.
    pub notification_id: Option<String>,
    pub meaning: PaddleMeaning,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaddleMeaning {
    /// A transaction completed or failed: re-fetch it.
    Transaction {
        transaction_id: String,
        subscription_id: Option<String>,
    },
    /// A subscription changed: re-fetch it.
    Subscription {
        subscription_id: String,
        /// The checkout's transaction, named by `subscription.created`.
        transaction_id: Option<String>,
    },
    /// A refund, credit or chargeback was created or reviewed: re-fetch it.
    Adjustment {
        adjustment_id: String,
        transaction_id: String,
    },
    NoLedgerEffect {
        reason: &'static str,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("the event body is above {MAX_EVENT_BYTES} bytes")]
    TooLarge,
    #[error("the event is not a Paddle notification: {0}")]
    Malformed(String),
}

fn text(value: &Value, what: &str) -> Result<String, EventError> {
    value
        .as_str()
        .filter(|text| !text.is_empty() && text.len() <= 128)
        .map(str::to_owned)
        .ok_or_else(|| EventError::Malformed(format!("{what} is missing")))
}

fn prefixed(value: &Value, prefix: &str, what: &str) -> Result<String, EventError> {
    let id = text(value, what)?;
    if id.starts_with(prefix) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        Ok(id)
    } else {
        Err(EventError::Malformed(format!(
            "{what} is not a {prefix} id"
        )))
    }
}

fn optional(value: &Value, prefix: &str, what: &str) -> Result<Option<String>, EventError> {
    if value.is_null() {
        Ok(None)
    } else {
        prefixed(value, prefix, what).map(Some)
    }
}

/// Reads a verified notification's body.
pub fn interpret(body: &[u8]) -> Result<PaddleEvent, EventError> {
    if body.len() > MAX_EVENT_BYTES {
        return Err(EventError::TooLarge);
    }
    let event: Value =
        serde_json::from_slice(body).map_err(|err| EventError::Malformed(err.to_string()))?;
    let event_id = prefixed(&event["event_id"], "evt_", "event_id")?;
    let event_type = text(&event["event_type"], "event_type")?;
    let notification_id = optional(&event["notification_id"], "ntf_", "notification_id")?;
    let data = &event["data"];
    let meaning = match event_type.as_str() {
        "transaction.completed"
        | "transaction.payment_failed"
        | "transaction.past_due"
        | "transaction.canceled" => PaddleMeaning::Transaction {
            transaction_id: prefixed(&data["id"], "txn_", "data.id")?,
            subscription_id: optional(&data["subscription_id"], "sub_", "data.subscription_id")?,
        },
        "subscription.created"
        | "subscription.activated"
        | "subscription.updated"
        | "subscription.past_due"
        | "subscription.canceled"
        | "subscription.paused"
        | "subscription.resumed"
        | "subscription.trialing" => PaddleMeaning::Subscription {
            subscription_id: prefixed(&data["id"], "sub_", "data.id")?,
            transaction_id: optional(&data["transaction_id"], "txn_", "data.transaction_id")?,
        },
        "adjustment.created" | "adjustment.updated" => PaddleMeaning::Adjustment {
            adjustment_id: prefixed(&data["id"], "adj_", "data.id")?,
            transaction_id: prefixed(&data["transaction_id"], "txn_", "data.transaction_id")?,
        },
        "transaction.paid" => PaddleMeaning::NoLedgerEffect {
            reason: "transaction.completed follows for the same transaction",
        },
        _ => PaddleMeaning::NoLedgerEffect {
            reason: "payledger takes no ledger action on this Paddle event",
        },
    };
    Ok(PaddleEvent {
        event_id,
        event_type,
        notification_id,
        meaning,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(event_type: &str, data: Value) -> Vec<u8> {
        json!({"event_id": "evt_01h", "event_type": event_type, "notification_id": "ntf_01h",
               "occurred_at": "2024-04-12T10:18:49.738972Z", "data": data})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn each_acting_event_names_what_to_refetch() {
        let event = interpret(&body(
            "transaction.completed",
            json!({"id": "txn_01a", "subscription_id": "sub_01b"}),
        ))
        .unwrap();
        assert_eq!(
            event.meaning,
            PaddleMeaning::Transaction {
                transaction_id: "txn_01a".into(),
                subscription_id: Some("sub_01b".into())
            }
        );
        let event = interpret(&body(
            "subscription.created",
            json!({"id": "sub_01b", "transaction_id": "txn_01a"}),
        ))
        .unwrap();
        assert_eq!(
            event.meaning,
            PaddleMeaning::Subscription {
                subscription_id: "sub_01b".into(),
                transaction_id: Some("txn_01a".into())
            }
        );
        let event = interpret(&body(
            "adjustment.created",
            json!({"id": "adj_01c", "transaction_id": "txn_01a"}),
        ))
        .unwrap();
        assert!(matches!(event.meaning, PaddleMeaning::Adjustment { .. }));
        let event = interpret(&body("transaction.paid", json!({"id": "txn_01a"}))).unwrap();
        assert!(matches!(
            event.meaning,
            PaddleMeaning::NoLedgerEffect { .. }
        ));
    }

    #[test]
    fn ids_of_the_wrong_kind_or_shape_are_refused() {
        assert!(interpret(&body("transaction.completed", json!({"id": "sub_01a"}))).is_err());
        assert!(interpret(&body("transaction.completed", json!({"id": "txn_../x"}))).is_err());
        assert!(interpret(b"{}").is_err());
        assert!(interpret(&vec![b' '; MAX_EVENT_BYTES + 1]).is_err());
    }
}
