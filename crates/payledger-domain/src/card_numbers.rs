//! What counts as a card number (PAN) in text, for the screen every request passes through and
//! for the repository check. One rule, documented in `docs/security.md`:
//!
//! 1. Text is split into *groups*: maximal runs of ASCII digits. Two neighbouring groups belong
//!    to one *chain* when exactly one space or one dash stands between them
//!    (`4242 4242 4242 4242`, `3782-822463-10005`); anything else ends the chain.
//! 2. Every run of whole, consecutive groups of a chain is a *candidate*: a candidate never
//!    starts or ends inside a group, so it is bounded by non-digits (a 32-digit decimal hash
//!    holds no candidate, nor does a 20-digit id).
//! 3. A candidate is a card number when it has 13 to 19 digits, its first digit is 2 to 6 (the
//!    issuer ranges of Mastercard, American Express, JCB, Diners, Visa, Discover, UnionPay,
//!    Maestro) and it passes the Luhn check every card number carries.
//!
//! The Luhn check lets nine in ten random digit runs through; the issuer digit keeps millisecond
//! timestamps (`17…`) and zero-padded counters out. UUIDs and hex hashes only match when a
//! 13-to-19-digit stretch of them holds no letter, which is rare.

/// Card numbers that payment networks publish for testing. Tests use these and only these, so
/// that the repository check (`tests/it/hygiene.rs`) can allow exactly this file.
pub mod test_cards {
    pub const VISA: &str = "4111111111111111";
    pub const VISA_STRIPE: &str = "4242424242424242";
    pub const VISA_SPACED: &str = "4242 4242 4242 4242";
    pub const MASTERCARD_DASHED: &str = "5555-5555-5555-4444";
    pub const AMEX: &str = "378282246310005";
    pub const AMEX_GROUPED: &str = "3782 822463 10005";
    pub const DISCOVER: &str = "6011111111111117";
    pub const VISA_13: &str = "4222222222222";
    pub const VISA_19: &str = "4111111111111111110";
    /// All of them, for tests that try each.
    pub const ALL: &[&str] = &[
        VISA,
        VISA_STRIPE,
        VISA_SPACED,
        MASTERCARD_DASHED,
        AMEX,
        AMEX_GROUPED,
        DISCOVER,
        VISA_13,
        VISA_19,
    ];
}

/// Fewest digits of a card number (ISO/IEC 7812).
pub const MIN_CARD_DIGITS: usize = 13;
/// Most digits of a card number (ISO/IEC 7812).
pub const MAX_CARD_DIGITS: usize = 19;

/// True when `text` holds a card number by the rule of this module.
pub fn contains_card_number(text: &str) -> bool {
    let bytes = text.as_bytes();
    // The groups of the current chain: each group's digits.
    let mut chain: Vec<&[u8]> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        chain.push(&bytes[start..i]);
        // Does the chain go on? Exactly one separator, then a digit.
        let joined = i + 1 < bytes.len()
            && (bytes[i] == b' ' || bytes[i] == b'-')
            && bytes[i + 1].is_ascii_digit();
        if joined {
            i += 1;
        } else {
            if chain_holds_card(&chain) {
                return true;
            }
            chain.clear();
        }
    }
    false
}

/// Whether any run of whole, consecutive groups is a card number.
fn chain_holds_card(groups: &[&[u8]]) -> bool {
    (0..groups.len()).any(|first| {
        let mut digits = 0;
        for (offset, group) in groups[first..].iter().enumerate() {
            digits += group.len();
            if digits > MAX_CARD_DIGITS {
                return false;
            }
            if digits >= MIN_CARD_DIGITS && is_card_number(&groups[first..=first + offset]) {
                return true;
            }
        }
        false
    })
}

fn is_card_number(groups: &[&[u8]]) -> bool {
    let digits: Vec<u8> = groups
        .iter()
        .flat_map(|g| g.iter().map(|b| b - b'0'))
        .collect();
    matches!(digits.first(), Some(2..=6)) && passes_luhn(&digits)
}

/// The first of `draw`'s values that holds no card number, for identifiers and tokens payledger
/// makes from random hex digits. The screen refuses every request holding a card-shaped digit
/// run, and hex is 62.5 % digits: about one random 32-digit value in 1 100 holds one, which
/// could get a generated refund id or a console token refused when it came back in a path or a
/// form.
/// Drawing again keeps the values uniform over those that pass.
pub fn first_without_card_number(mut draw: impl FnMut() -> String) -> String {
    loop {
        let value = draw();
        if !contains_card_number(&value) {
            return value;
        }
    }
}

/// The Luhn checksum of a run of digits (0–9 each).
pub fn passes_luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let d = u32::from(*d);
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 {
                    doubled - 9
                } else {
                    doubled
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_value_holding_a_card_number_is_drawn_again() {
        let mut draws = [format!("rf_{}ab", test_cards::VISA), "rf_0a1b2c".to_owned()].into_iter();
        let value = first_without_card_number(|| draws.next().expect("a second draw"));
        assert_eq!(value, "rf_0a1b2c");
    }

    #[test]
    fn published_test_cards_are_found_alone_and_in_text() {
        for card in test_cards::ALL {
            assert!(contains_card_number(card), "{card}");
            assert!(
                contains_card_number(&format!("Yoga {card} class")),
                "{card}"
            );
            assert!(contains_card_number(&format!("x{card}y")), "{card}");
            assert!(contains_card_number(&format!("call 010 {card}")), "{card}");
        }
        assert!(contains_card_number("card:4111-1111-1111-1111."));
    }

    #[test]
    fn legitimate_ids_are_not_cards() {
        for text in [
            "4111111111111112",                     // Luhn fails
            "411111111111",                         // 12 digits
            "41111111111111111111",                 // 20 digits: bounded, too long
            "1733456789012",                        // a millisecond timestamp
            "0000000000000000",                     // zero-padded counter
            "550e8400-e29b-41d4-a716-446655440000", // a UUID
            "018f3c1e-7b2a-7c3d-9e4f-5a6b7c8d9e0f",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", // sha-256
            "2026-12-06T05:28:06.123456789Z",
            "bln_2026ab12345cd67890",
            "433012******1234",     // a masked card is not a card
            "4111  1111 1111 1111", // two spaces end a chain
            "order-2026-0001",
        ] {
            assert!(!contains_card_number(text), "{text}");
        }
    }
}
