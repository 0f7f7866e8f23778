//! Money: an integer count of a currency's minor unit. There is no float anywhere in here.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The largest amount payledger accepts for one order, refund or charge, in minor units.
///
/// 10^12 minor units is 1 trillion KRW or 10 billion USD: far above any single card payment, and
/// small enough that summing a million of them still fits in an `i64` without overflow.
pub const MAX_AMOUNT_MINOR: i64 = 1_000_000_000_000;

/// The currencies payledger settles in. Adding one is a deliberate change: its minor unit decides
/// how amounts are read and shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Currency {
    KRW,
    JPY,
    USD,
    EUR,
    GBP,
}

impl Currency {
    pub const ALL: [Currency; 5] = [
        Currency::KRW,
        Currency::JPY,
        Currency::USD,
        Currency::EUR,
        Currency::GBP,
    ];

    /// Decimal digits of the minor unit (ISO 4217): KRW and JPY have none, USD, EUR and GBP two.
    pub fn minor_unit_digits(self) -> u32 {
        match self {
            Currency::KRW | Currency::JPY => 0,
            Currency::USD | Currency::EUR | Currency::GBP => 2,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Currency::KRW => "KRW",
            Currency::JPY => "JPY",
            Currency::USD => "USD",
            Currency::EUR => "EUR",
            Currency::GBP => "GBP",
        }
    }

    /// Parses an ISO 4217 code; payledger is strict about case, like the providers it talks to.
    pub fn parse(code: &str) -> Result<Currency, MoneyError> {
        Currency::ALL
            .into_iter()
            .find(|c| c.code() == code)
            .ok_or_else(|| MoneyError::UnknownCurrency(code.chars().take(8).collect()))
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("amount must be greater than zero, got {0}")]
    NotPositive(i64),
    #[error("amount {0} is above the maximum of {MAX_AMOUNT_MINOR} minor units")]
    TooLarge(i64),
    #[error("unknown currency '{0}'")]
    UnknownCurrency(String),
    #[error("currencies differ: {0} and {1}")]
    CurrencyMismatch(Currency, Currency),
    #[error("arithmetic on amounts overflowed")]
    Overflow,
    #[error("basis points must be between 0 and 10000, got {0}")]
    InvalidBasisPoints(u32),
}

/// A positive amount of one currency, within [`MAX_AMOUNT_MINOR`].
///
/// The constructor is the only way in, so an amount that exists is valid. Zero is not an amount a
/// customer can pay; balances that can be zero use plain `i64` minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Money {
    amount_minor: i64,
    currency: Currency,
}

impl Money {
    pub fn new(amount_minor: i64, currency: Currency) -> Result<Money, MoneyError> {
        check_amount(amount_minor)?;
        Ok(Money {
            amount_minor,
            currency,
        })
    }

    pub fn amount_minor(self) -> i64 {
        self.amount_minor
    }

    pub fn currency(self) -> Currency {
        self.currency
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount_minor, self.currency)
    }
}

/// Checks that an amount is one a customer could pay: positive and below the maximum.
pub fn check_amount(amount_minor: i64) -> Result<i64, MoneyError> {
    if amount_minor <= 0 {
        return Err(MoneyError::NotPositive(amount_minor));
    }
    if amount_minor > MAX_AMOUNT_MINOR {
        return Err(MoneyError::TooLarge(amount_minor));
    }
    Ok(amount_minor)
}

/// Basis points: hundredths of a percent, 0..=10000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BasisPoints(u32);

impl BasisPoints {
    pub const FULL: BasisPoints = BasisPoints(10_000);
    pub const HALF: BasisPoints = BasisPoints(5_000);
    pub const ZERO: BasisPoints = BasisPoints(0);

    pub fn new(bps: u32) -> Result<BasisPoints, MoneyError> {
        if bps > 10_000 {
            return Err(MoneyError::InvalidBasisPoints(bps));
        }
        Ok(BasisPoints(bps))
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

/// Splits `total_minor` into a customer share of `customer_bps` and the rest.
///
/// The customer's share is rounded **down** to the minor unit and the remainder goes to the other
/// party, so `customer + other == total` always holds exactly (domain spec §2).
pub fn split_by_basis_points(total_minor: i64, customer_bps: BasisPoints) -> (i64, i64) {
    assert!(total_minor >= 0, "split of a negative amount");
    // i128 because total (≤ 10^12 · n) × 10^4 can exceed i64 for large sums.
    let customer = (i128::from(total_minor) * i128::from(customer_bps.get())) / 10_000;
    let customer = i64::try_from(customer).expect("share of an i64 total fits in i64");
    let other = total_minor - customer;
    debug_assert_eq!(customer + other, total_minor);
    (customer, other)
}

/// A fee of `bps` on `amount_minor`, rounded down in the payee's favour.
pub fn fee_by_basis_points(amount_minor: i64, bps: BasisPoints) -> i64 {
    split_by_basis_points(amount_minor, bps).0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn amounts_must_be_positive_and_bounded() {
        assert_eq!(
            Money::new(0, Currency::KRW),
            Err(MoneyError::NotPositive(0))
        );
        assert_eq!(
            Money::new(-5, Currency::KRW),
            Err(MoneyError::NotPositive(-5))
        );
        assert!(Money::new(MAX_AMOUNT_MINOR, Currency::KRW).is_ok());
        assert_eq!(
            Money::new(MAX_AMOUNT_MINOR + 1, Currency::KRW),
            Err(MoneyError::TooLarge(MAX_AMOUNT_MINOR + 1))
        );
    }

    #[test]
    fn currencies_parse_strictly() {
        assert_eq!(Currency::parse("KRW"), Ok(Currency::KRW));
        assert!(Currency::parse("krw").is_err());
        assert!(Currency::parse("XXX").is_err());
        assert_eq!(Currency::USD.minor_unit_digits(), 2);
        assert_eq!(Currency::JPY.minor_unit_digits(), 0);
    }

    #[test]
    fn half_of_an_odd_amount_rounds_the_customer_down() {
        assert_eq!(
            split_by_basis_points(10_001, BasisPoints::HALF),
            (5_000, 5_001)
        );
        assert_eq!(split_by_basis_points(1, BasisPoints::HALF), (0, 1));
        assert_eq!(split_by_basis_points(999, BasisPoints::FULL), (999, 0));
        assert_eq!(split_by_basis_points(999, BasisPoints::ZERO), (0, 999));
    }

    proptest! {
        #[test]
        fn splits_always_sum_to_the_whole(total in 0i64..=MAX_AMOUNT_MINOR * 1000, bps in 0u32..=10_000) {
            let bps = BasisPoints::new(bps).unwrap();
            let (customer, other) = split_by_basis_points(total, bps);
            prop_assert_eq!(customer + other, total);
            prop_assert!(customer >= 0 && other >= 0);
            // rounded down: the customer never gets more than the exact share
            prop_assert!(i128::from(customer) * 10_000 <= i128::from(total) * i128::from(bps.get()));
            prop_assert!(i128::from(customer + 1) * 10_000 > i128::from(total) * i128::from(bps.get()));
        }

        #[test]
        fn only_positive_bounded_amounts_exist(amount in any::<i64>()) {
            let made = Money::new(amount, Currency::KRW);
            prop_assert_eq!(made.is_ok(), amount > 0 && amount <= MAX_AMOUNT_MINOR);
        }
    }
}
