//! Identifiers that cross the API edge. Each has a `parse` constructor, so a value that exists is
//! valid: it can be put in a stream name, a log line or a provider request without escaping.

use serde::{Deserialize, Serialize};

/// Which characters an identifier may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdCharset {
    /// Letters, digits, `-`, `_`, `=`, `.`: ids payledger keeps and passes on as they are.
    Ledger,
    /// Letters, digits, `-`, `_`: ids that end up inside provider order ids
    /// (`sub-{id}-c{cycle}`), which Toss limits to exactly those.
    ProviderOrderSafe,
}

impl IdCharset {
    pub fn allows(self, c: char) -> bool {
        c.is_ascii_alphanumeric()
            || match self {
                IdCharset::Ledger => matches!(c, '-' | '_' | '=' | '.'),
                IdCharset::ProviderOrderSafe => matches!(c, '-' | '_'),
            }
    }

    /// The set in words, for error messages.
    pub const fn describe(self) -> &'static str {
        match self {
            IdCharset::Ledger => "A-Z a-z 0-9 - _ = .",
            IdCharset::ProviderOrderSafe => "A-Z a-z 0-9 - _",
        }
    }

    /// The set as a regular expression, for API descriptions.
    pub const fn pattern(self) -> &'static str {
        match self {
            IdCharset::Ledger => "^[A-Za-z0-9._=-]+$",
            IdCharset::ProviderOrderSafe => "^[A-Za-z0-9_-]+$",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} must be {min_len} to {max_len} characters of {} (got {got_len})", .charset.describe())]
pub struct InvalidId {
    pub kind: &'static str,
    pub min_len: usize,
    pub max_len: usize,
    pub got_len: usize,
    pub charset: IdCharset,
}

/// The characters most identifiers may hold, as a regular expression for API descriptions.
pub const ID_PATTERN: &str = IdCharset::Ledger.pattern();

/// One identifier's wire name, length limits and characters, for API descriptions
/// (`payledger-http`'s OpenAPI document): the same values the parsers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdLimits {
    pub kind: &'static str,
    pub min_chars: usize,
    pub max_chars: usize,
    pub pattern: &'static str,
}

/// The one check behind every identifier's `parse`.
pub(crate) fn check_id(
    kind: &'static str,
    value: &str,
    min_len: usize,
    max_len: usize,
    charset: IdCharset,
) -> Result<(), InvalidId> {
    let len = value.chars().count();
    if len < min_len || len > max_len || !value.chars().all(|c| charset.allows(c)) {
        return Err(InvalidId {
            kind,
            min_len,
            max_len,
            got_len: len,
            charset,
        });
    }
    Ok(())
}

/// Declares an identifier: a `String` newtype whose `parse` is its only constructor (and
/// `generate`, with a prefix, when payledger may choose one).
macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $min:literal, $max:literal) => {
        $crate::ids::identifier!($(#[$doc])* $name, $kind, $min, $max, Ledger);
    };
    ($(#[$doc:meta])* $name:ident, $kind:literal, $min:literal, $max:literal, $charset:ident, $prefix:literal) => {
        $crate::ids::identifier!($(#[$doc])* $name, $kind, $min, $max, $charset);

        impl $name {
            /// A fresh id for callers that do not bring their own.
            pub fn generate() -> $name {
                $name($crate::card_numbers::first_without_card_number(|| {
                    format!("{}{}", $prefix, uuid::Uuid::now_v7().simple())
                }))
            }
        }
    };
    ($(#[$doc:meta])* $name:ident, $kind:literal, $min:literal, $max:literal, $charset:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The field name on the wire.
            pub const KIND: &'static str = $kind;
            pub const MIN_CHARS: usize = $min;
            pub const MAX_CHARS: usize = $max;
            pub const CHARSET: $crate::ids::IdCharset = $crate::ids::IdCharset::$charset;
            pub const LIMITS: $crate::ids::IdLimits = $crate::ids::IdLimits {
                kind: $kind,
                min_chars: $min,
                max_chars: $max,
                pattern: $crate::ids::IdCharset::$charset.pattern(),
            };

            pub fn parse(value: impl Into<String>) -> Result<$name, $crate::ids::InvalidId> {
                let value = value.into();
                $crate::ids::check_id($kind, &value, $min, $max, Self::CHARSET)?;
                Ok($name(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = $crate::ids::InvalidId;
            fn try_from(value: String) -> Result<Self, $crate::ids::InvalidId> {
                $name::parse(value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}
pub(crate) use identifier;

identifier!(
    /// The merchant's order id. Toss requires 6–64 characters of letters, digits, `-`, `_`, `=`;
    /// payledger also allows `.`.
    OrderId,
    "orderId",
    6,
    64,
    Ledger,
    "ord_"
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
    64,
    Ledger,
    "rf_"
);

identifier!(
    /// One claim (dispute) about an order. At most 40 characters, so ids derived from it (the
    /// refund id `claim-{id}-{round}`) stay within the 64 characters refund ids allow.
    ClaimId,
    "claimId",
    1,
    40,
    Ledger,
    "clm_"
);
identifier!(
    /// The admin who is assigned a claim, resolves it or approves an emergency cancellation.
    AdminId,
    "adminId",
    1,
    64
);

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
