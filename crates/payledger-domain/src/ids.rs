//! Identifiers that cross the API edge. Each has a `parse` constructor, so a value that exists is
//! valid: it can be put in a stream name, a log line or a provider request without escaping.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} must be {min_len} to {max_len} characters of A-Z a-z 0-9 - _ = . (got {got_len})")]
pub struct InvalidId {
    pub kind: &'static str,
    pub min_len: usize,
    pub max_len: usize,
    pub got_len: usize,
}

/// The characters every identifier may hold, as a regular expression for API descriptions; the
/// same set `check` tests (a unit test keeps the two in step).
pub const ID_PATTERN: &str = "^[A-Za-z0-9._=-]+$";

/// Each identifier's wire name and length limits, for API descriptions (`payledger-http`'s
/// OpenAPI document): the same numbers the parsers use.
pub const ID_LIMITS: &[(&str, usize, usize)] = &[
    (OrderId::KIND, OrderId::MIN_CHARS, OrderId::MAX_CHARS),
    (
        CustomerId::KIND,
        CustomerId::MIN_CHARS,
        CustomerId::MAX_CHARS,
    ),
    (PayeeId::KIND, PayeeId::MIN_CHARS, PayeeId::MAX_CHARS),
    (
        PaymentKey::KIND,
        PaymentKey::MIN_CHARS,
        PaymentKey::MAX_CHARS,
    ),
    (RefundId::KIND, RefundId::MIN_CHARS, RefundId::MAX_CHARS),
    (ClaimId::KIND, ClaimId::MIN_CHARS, ClaimId::MAX_CHARS),
    (AdminId::KIND, AdminId::MIN_CHARS, AdminId::MAX_CHARS),
];

fn check(kind: &'static str, value: &str, min_len: usize, max_len: usize) -> Result<(), InvalidId> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '=' | '.');
    let len = value.chars().count();
    if len < min_len || len > max_len || !value.chars().all(allowed) {
        return Err(InvalidId {
            kind,
            min_len,
            max_len,
            got_len: len,
        });
    }
    Ok(())
}

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $min:literal, $max:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The field name on the wire.
            pub const KIND: &'static str = $kind;
            pub const MIN_CHARS: usize = $min;
            pub const MAX_CHARS: usize = $max;

            pub fn parse(value: impl Into<String>) -> Result<$name, InvalidId> {
                let value = value.into();
                check($kind, &value, $min, $max)?;
                Ok($name(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(value: String) -> Result<Self, InvalidId> {
                $name::parse(value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

identifier!(
    /// The merchant's order id. Toss requires 6–64 characters of letters, digits, `-`, `_`, `=`;
    /// payledger also allows `.`.
    OrderId,
    "orderId",
    6,
    64
);
identifier!(
    /// The customer who pays.
    CustomerId,
    "customerId",
    1,
    64
);
identifier!(
    /// The merchant or service provider who is settled.
    PayeeId,
    "payeeId",
    1,
    64
);
identifier!(
    /// The provider's payment key, as returned by its checkout.
    PaymentKey,
    "paymentKey",
    1,
    200
);
identifier!(
    /// One refund of an order; unique within the order, chosen by the caller or generated.
    RefundId,
    "refundId",
    1,
    64
);

identifier!(
    /// One claim (dispute) about an order. At most 40 characters, so ids derived from it (the
    /// refund id `claim-{id}-{round}`) stay within the 64 characters refund ids allow.
    ClaimId,
    "claimId",
    1,
    40
);
identifier!(
    /// The admin who is assigned a claim, resolves it or approves an emergency cancellation.
    AdminId,
    "adminId",
    1,
    64
);

impl OrderId {
    /// A fresh order id for callers that do not bring their own.
    pub fn generate() -> OrderId {
        OrderId(format!("ord_{}", uuid::Uuid::now_v7().simple()))
    }
}

impl RefundId {
    pub fn generate() -> RefundId {
        RefundId(format!("rf_{}", uuid::Uuid::now_v7().simple()))
    }
}

impl ClaimId {
    pub fn generate() -> ClaimId {
        ClaimId(format!("clm_{}", uuid::Uuid::now_v7().simple()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_ids_follow_the_provider_rules() {
        assert!(OrderId::parse("order-2026-0001").is_ok());
        assert!(OrderId::parse("short").is_err());
        assert!(OrderId::parse("a".repeat(65)).is_err());
        assert!(OrderId::parse("has space1").is_err());
        assert!(OrderId::parse("slash/order").is_err());
        assert!(OrderId::parse("주문번호123456").is_err());
        assert!(OrderId::generate().as_str().len() <= 64);
    }

    #[test]
    fn ids_deserialize_only_when_valid() {
        let ok: Result<CustomerId, _> = serde_json::from_str("\"cust_1\"");
        assert!(ok.is_ok());
        let bad: Result<CustomerId, _> = serde_json::from_str("\"\"");
        assert!(bad.is_err());
    }
}
