//! Random parts of the ids the sandbox hands out.
//!
//! Lowercase Crockford base32 (Paddle's own id alphabet), not hex: with ten digits among sixteen
//! symbols, a hex id of 24–32 characters holds a run of 13 or more digits often enough (about one
//! Paddle id in thirty) for payledger's card screen to refuse a request that carries it — rightly,
//! since it cannot tell such a run from a card number.

/// Digits and lowercase letters without i, l, o and u.
pub(crate) const ID_ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// `count` random characters of [`ID_ALPHABET`] (at most 25: the 128 bits of one UUID v4).
pub(crate) fn random_chars(count: usize) -> String {
    let mut bits = uuid::Uuid::new_v4().as_u128();
    (0..count.min(25))
        .map(|_| {
            let symbol = ID_ALPHABET[(bits & 31) as usize];
            bits >>= 5;
            char::from(symbol)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_chars_are_of_the_alphabet_and_as_many_as_asked() {
        let chars = random_chars(24);
        assert_eq!(chars.len(), 24);
        assert!(chars.bytes().all(|b| ID_ALPHABET.contains(&b)), "{chars}");
        assert_eq!(random_chars(40).len(), 25, "one UUID's bits at most");
    }
}
