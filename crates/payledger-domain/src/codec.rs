//! How domain events become stored events and back: the enum variant's name is the event type,
//! its content the payload. Upcasting old schema versions happens here when one is introduced.

use serde::de::{self, DeserializeOwned, IntoDeserializer};
use serde::Serialize;
use serde_json::Value;

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

/// The schema version new events of `event_type` are written with. A version is raised when an
/// event's payload changes shape; older versions must still decode (the upcast below).
///
/// - `RefundFailed` 2: adds `currency`. Version 1 payloads lack it and decode with `None`
///   (`#[serde(default)]`): the upcast cannot invent the order's currency from the event alone,
///   so readers that need it take it from the order's `OrderPlaced` (the journal does).
/// - `RefundRequested`, `EnrollmentCancelled`, `ClaimStatementSubmitted`, `ClaimResolved`,
///   `ClaimAppealed`, `BookingCancelled` 2: add `customerId`, whose personal data their free
///   texts are (the subject they are sealed under), and `RefundRequested` its `reasonDigest`.
///   Version 1 payloads decode with `None`: their texts were stored in clear and stay so (an
///   event is never rewritten), and a retried refund of version 1 is compared by its text.
pub fn schema_version(event_type: &str) -> i32 {
    match event_type {
        "RefundFailed" => 2,
        "RefundRequested"
        | "EnrollmentCancelled"
        | "ClaimStatementSubmitted"
        | "ClaimResolved"
        | "ClaimAppealed"
        | "BookingCancelled" => 2,
        _ => 1,
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
///
/// Reads the payload in place: every projection and process manager decodes every event it
/// follows, and copying the payload into a `{event_type: payload}` object first cost a clone of
/// its whole tree each time.
pub fn decode<E: DeserializeOwned>(event_type: &str, payload: &Value) -> Result<E, CodecError> {
    E::deserialize(Tagged {
        event_type,
        payload,
    })
    .map_err(|source| CodecError::Decode {
        event_type: event_type.to_string(),
        source,
    })
}

/// An externally tagged enum value given as its tag and its content, as a deserializer.
struct Tagged<'a> {
    event_type: &'a str,
    payload: &'a Value,
}

impl<'de> de::Deserializer<'de> for Tagged<'de> {
    type Error = serde_json::Error;

    fn deserialize_enum<V: de::Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_enum(self)
    }

    /// Anything but an enum sees what `encode` split: a one-entry object.
    fn deserialize_any<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        let entry = std::iter::once((self.event_type, self.payload));
        visitor.visit_map(de::value::MapDeserializer::new(entry))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct identifier
        ignored_any
    }
}

impl<'de> de::EnumAccess<'de> for Tagged<'de> {
    type Error = serde_json::Error;
    type Variant = Content<'de>;

    fn variant_seed<S: de::DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), Self::Error> {
        let variant = seed.deserialize(self.event_type.into_deserializer())?;
        Ok((variant, Content(self.payload)))
    }
}

/// The content of the variant: a struct or tuple payload is read by the `&Value` deserializer.
struct Content<'a>(&'a Value);

impl<'de> de::VariantAccess<'de> for Content<'de> {
    type Error = serde_json::Error;

    fn unit_variant(self) -> Result<(), Self::Error> {
        de::Deserialize::deserialize(self.0)
    }

    fn newtype_variant_seed<S: de::DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<S::Value, Self::Error> {
        seed.deserialize(self.0)
    }

    fn tuple_variant<V: de::Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        de::Deserializer::deserialize_seq(self.0, visitor)
    }

    fn struct_variant<V: de::Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        de::Deserializer::deserialize_struct(self.0, "", fields, visitor)
    }
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

    #[test]
    fn a_payload_that_does_not_fit_its_type_names_the_type() {
        let error = decode::<OrderEvent>("OrderExpired", &serde_json::json!({"at": 5}))
            .expect_err("a number is not a time");
        assert!(error.to_string().contains("OrderExpired"), "{error}");
        let missing = decode::<OrderEvent>("OrderExpired", &serde_json::json!({}));
        assert!(missing.is_err(), "a required field is missing");
    }

    #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
    enum Shapes {
        Unit,
        Newtype(u32),
        Tuple(u32, String),
        Struct { amount_minor: i64 },
    }

    #[test]
    fn every_variant_shape_reads_back_in_place() {
        for value in [
            Shapes::Newtype(7),
            Shapes::Tuple(1, "a".into()),
            Shapes::Struct { amount_minor: -5 },
        ] {
            let (event_type, payload) = encode(&value).unwrap();
            assert_eq!(decode::<Shapes>(&event_type, &payload).unwrap(), value);
        }
        assert_eq!(
            decode::<Shapes>("Unit", &Value::Null).unwrap(),
            Shapes::Unit
        );
    }
}
