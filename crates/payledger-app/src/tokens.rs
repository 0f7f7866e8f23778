//! Random hex tokens (API key secrets, console session and CSRF tokens) that the card-data
//! screen never mistakes for a card number.
//!
//! The screen (`payledger_http::screen`) refuses every request whose form fields hold a run of
//! 13 to 19 digits starting 2-6 that passes Luhn, and hex is 62.5 % digits: about one random
//! 64-digit token in 500 holds such a run. The console posts its CSRF token with every form and
//! an API key with the sign-in form, so such a token made a form fail with 400
//! `E_CARD_DATA_REJECTED` at random (a key with one could never sign in). A token is drawn
//! again until it holds no card number by the screen's own rule; a redraw keeps every draw
//! uniform over the tokens that pass, and costs nothing in practice (one draw in ~500).

use payledger_domain::card_numbers::first_without_card_number;
use rand::RngCore;

/// `bytes` random bytes from the thread's CSPRNG (ChaCha, seeded and reseeded from the
/// operating system), as lower-case hex, holding no card number.
pub fn random_hex(bytes: usize) -> String {
    hex_without_card_numbers(|| {
        let mut drawn = vec![0u8; bytes];
        rand::rng().fill_bytes(&mut drawn);
        drawn
    })
}

/// The first draw whose hex holds no card number.
fn hex_without_card_numbers(mut draw: impl FnMut() -> Vec<u8>) -> String {
    first_without_card_number(|| hex::encode(draw()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use payledger_domain::card_numbers::contains_card_number;

    #[test]
    fn a_draw_that_holds_a_card_number_is_drawn_again() {
        // 0x41 then seven 0x11: hex "41" then fourteen "1"s, the well-known Visa test number.
        let card_shaped = vec![0x41, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0xab];
        assert!(contains_card_number(&hex::encode(&card_shaped)));
        let mut draws = vec![card_shaped, vec![0xab; 9]].into_iter();
        let token = hex_without_card_numbers(|| draws.next().expect("a second draw"));
        assert_eq!(token, "ab".repeat(9));
    }

    #[test]
    fn tokens_have_their_length_and_hold_no_card_number() {
        for _ in 0..2_000 {
            let token = random_hex(32);
            assert_eq!(token.len(), 64);
            assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
            assert!(!contains_card_number(&token), "{token}");
        }
    }
}
