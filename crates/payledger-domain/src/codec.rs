//! How domain events become stored events and back: the enum variant's name is the event type,
//! its content the payload. Upcasting old schema versions happens here when one is introduced.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("event does not serialise as a single-variant object: {0}")]
    NotAVariant(String),
    #[error("failed to decode event {event_type}: {source}")]
    Decode {
        event_type: String,
        source: serde_json::Error,
    },
    #[error("failed to encode event: {0}")]
    Encode(#[from] serde_json::Error),
}

/// The name a unit-variant enum value has on the wire (its serde name: `PAID`, `past_due`, …),
/// for read-model columns and response bodies that store or show it as text.
pub fn wire_name<T: Serialize + std::fmt::Debug>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(name)) => name,
        // Not a unit variant: its Debug form is the most honest text there is.
        _ => format!("{value:?}"),
    }
}

/// Splits an externally tagged enum value into `(event_type, payload)`.
pub fn encode<E: Serialize>(event: &E) -> Result<(String, Value), CodecError> {
    match serde_json::to_value(event)? {
        Value::Object(map) if map.len() == 1 => {
            let (event_type, payload) = map.into_iter().next().expect("one entry");
            Ok((event_type, payload))
        }
        other => Err(CodecError::NotAVariant(
            other.to_string().chars().take(80).collect(),
        )),
    }
}

/// Rebuilds the enum value from a stored `(event_type, payload)`.
pub fn decode<E: DeserializeOwned>(event_type: &str, payload: &Value) -> Result<E, CodecError> {
    let mut map = Map::with_capacity(1);
    map.insert(event_type.to_string(), payload.clone());
    serde_json::from_value(Value::Object(map)).map_err(|source| CodecError::Decode {
        event_type: event_type.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::order::{OrderEvent, OrderExpired};
    use chrono::TimeZone;

    #[test]
    fn events_round_trip_through_type_and_payload() {
        let at = chrono::Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        let event = OrderEvent::OrderExpired(OrderExpired { at });
        let (event_type, payload) = encode(&event).unwrap();
        assert_eq!(event_type, "OrderExpired");
        assert_eq!(payload, serde_json::json!({"at": "2026-01-02T03:04:05Z"}));
        let back: OrderEvent = decode(&event_type, &payload).unwrap();
        assert_eq!(back, event);
        assert!(decode::<OrderEvent>("NoSuchEvent", &payload).is_err());
    }
}
