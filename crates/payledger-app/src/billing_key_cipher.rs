//! Encryption of billing keys at rest: AES-256-GCM, one random 96-bit nonce per secret, and the
//! customer and billing key ids as associated data, so a ciphertext copied onto another customer's
//! key does not decrypt.
//!
//! The key comes from `PAYLEDGER_BILLING_KEY_SECRET` (base64 of 32 bytes); the binary decides what
//! happens when it is absent (see `crates/payledger/src/billing.rs`). Each key has an id derived
//! from it, stored with every secret, so an old key can be kept for decryption while a new one
//! encrypts (rotation).

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use payledger_domain::billing::BillingKeyId;
use payledger_domain::customer::EncryptedSecret;
use payledger_domain::ids::CustomerId;
use payledger_gateway::BillingKeySecret;
use sha2::{Digest, Sha256};
use std::fmt;

/// Bytes of an AES-256 key.
pub const KEY_BYTES: usize = 32;
/// Bytes of an AES-GCM nonce.
const NONCE_BYTES: usize = 12;
/// Old keys kept for decryption at most.
pub const MAX_PREVIOUS_KEYS: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CipherError {
    #[error("the billing key secret must be base64 of exactly {KEY_BYTES} bytes")]
    InvalidKey,
    #[error("no configured key has id {0}: it was rotated out")]
    UnknownKeyId(String),
    #[error("the encrypted billing key does not decrypt (tampered, or bound to another customer)")]
    Undecryptable,
    #[error("at most {MAX_PREVIOUS_KEYS} previous keys can be kept")]
    TooManyPreviousKeys,
}

struct KeyEntry {
    key_id: String,
    cipher: Aes256Gcm,
}

impl KeyEntry {
    fn new(key: &[u8; KEY_BYTES]) -> KeyEntry {
        KeyEntry {
            key_id: key_id_of(key),
            cipher: Aes256Gcm::new(key.into()),
        }
    }
}

/// Encrypts and decrypts billing keys. Never prints a key.
pub struct BillingKeyCipher {
    current: KeyEntry,
    previous: Vec<KeyEntry>,
}

impl fmt::Debug for BillingKeyCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BillingKeyCipher")
            .field("current_key_id", &self.current.key_id)
            .field("previous_keys", &self.previous.len())
            .finish()
    }
}

/// A key's public id: a hash of it, so it can be stored and logged without revealing the key.
pub fn key_id_of(key: &[u8; KEY_BYTES]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"payledger-billing-key-cipher-id:v1:");
    hasher.update(key);
    let digest = hasher.finalize();
    format!("k{}", &hex::encode(digest)[..16])
}

/// Reads a base64 key of exactly [`KEY_BYTES`] bytes.
pub fn decode_key(text: &str) -> Result<[u8; KEY_BYTES], CipherError> {
    let bytes = BASE64
        .decode(text.trim())
        .map_err(|_| CipherError::InvalidKey)?;
    bytes.try_into().map_err(|_| CipherError::InvalidKey)
}

/// A fresh random key (for development setups and tests).
pub fn generate_key() -> [u8; KEY_BYTES] {
    Aes256Gcm::generate_key(&mut OsRng).into()
}

/// What the ciphertext is bound to: a secret only decrypts for the customer and key it was made for.
fn associated_data(customer_id: &CustomerId, billing_key_id: &BillingKeyId) -> String {
    format!("payledger:billing-key:v1:{customer_id}:{billing_key_id}")
}

impl BillingKeyCipher {
    pub fn new(key: &[u8; KEY_BYTES]) -> BillingKeyCipher {
        BillingKeyCipher {
            current: KeyEntry::new(key),
            previous: Vec::new(),
        }
    }

    /// Keeps an old key for decrypting secrets it encrypted.
    pub fn with_previous(mut self, key: &[u8; KEY_BYTES]) -> Result<BillingKeyCipher, CipherError> {
        if self.previous.len() >= MAX_PREVIOUS_KEYS {
            return Err(CipherError::TooManyPreviousKeys);
        }
        self.previous.push(KeyEntry::new(key));
        Ok(self)
    }

    pub fn current_key_id(&self) -> &str {
        &self.current.key_id
    }

    pub fn encrypt(
        &self,
        secret: &BillingKeySecret,
        customer_id: &CustomerId,
        billing_key_id: &BillingKeyId,
    ) -> EncryptedSecret {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let aad = associated_data(customer_id, billing_key_id);
        let ciphertext = self
            .current
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: secret.expose().as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            // AES-GCM fails only for messages over 64 GiB; a billing key is a short token.
            .expect("AES-GCM encrypts a short message");
        EncryptedSecret {
            key_id: self.current.key_id.clone(),
            nonce_b64: BASE64.encode(nonce),
            ciphertext_b64: BASE64.encode(ciphertext),
        }
    }

    pub fn decrypt(
        &self,
        encrypted: &EncryptedSecret,
        customer_id: &CustomerId,
        billing_key_id: &BillingKeyId,
    ) -> Result<BillingKeySecret, CipherError> {
        let entry = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|e| e.key_id == encrypted.key_id)
            .ok_or_else(|| CipherError::UnknownKeyId(encrypted.key_id.clone()))?;
        let nonce = BASE64
            .decode(&encrypted.nonce_b64)
            .map_err(|_| CipherError::Undecryptable)?;
        if nonce.len() != NONCE_BYTES {
            return Err(CipherError::Undecryptable);
        }
        let ciphertext = BASE64
            .decode(&encrypted.ciphertext_b64)
            .map_err(|_| CipherError::Undecryptable)?;
        let aad = associated_data(customer_id, billing_key_id);
        let clear = entry
            .cipher
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| CipherError::Undecryptable)?;
        let clear = String::from_utf8(clear).map_err(|_| CipherError::Undecryptable)?;
        Ok(BillingKeySecret::new(clear))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (CustomerId, BillingKeyId) {
        (
            CustomerId::parse("cust_1").unwrap(),
            BillingKeyId::parse("bk_1").unwrap(),
        )
    }

    #[test]
    fn a_secret_round_trips_and_the_ciphertext_does_not_contain_it() {
        let cipher = BillingKeyCipher::new(&generate_key());
        let (customer, key) = ids();
        let secret = BillingKeySecret::new("sbx_bk_0123456789abcdef".into());
        let encrypted = cipher.encrypt(&secret, &customer, &key);
        assert!(!encrypted.ciphertext_b64.contains("sbx_bk"));
        assert_eq!(encrypted.key_id, cipher.current_key_id());
        let back = cipher.decrypt(&encrypted, &customer, &key).unwrap();
        assert_eq!(back.expose(), secret.expose());
        // A fresh nonce each time: the same secret never encrypts the same way twice.
        assert_ne!(cipher.encrypt(&secret, &customer, &key), encrypted);
    }

    #[test]
    fn a_secret_bound_to_one_customer_does_not_decrypt_for_another() {
        let cipher = BillingKeyCipher::new(&generate_key());
        let (customer, key) = ids();
        let encrypted = cipher.encrypt(&BillingKeySecret::new("bk".into()), &customer, &key);
        let other = CustomerId::parse("cust_2").unwrap();
        assert_eq!(
            cipher.decrypt(&encrypted, &other, &key).err(),
            Some(CipherError::Undecryptable)
        );
        let mut tampered = encrypted.clone();
        tampered.ciphertext_b64 = BASE64.encode(b"something else entirely");
        assert_eq!(
            cipher.decrypt(&tampered, &customer, &key).err(),
            Some(CipherError::Undecryptable)
        );
    }

    #[test]
    fn rotated_keys_still_decrypt_what_they_encrypted() {
        let (old, new) = (generate_key(), generate_key());
        let (customer, key) = ids();
        let before = BillingKeyCipher::new(&old).encrypt(
            &BillingKeySecret::new("bk_old".into()),
            &customer,
            &key,
        );
        let rotated = BillingKeyCipher::new(&new).with_previous(&old).unwrap();
        assert_eq!(
            rotated.decrypt(&before, &customer, &key).unwrap().expose(),
            "bk_old"
        );
        let without_old = BillingKeyCipher::new(&new);
        assert!(matches!(
            without_old.decrypt(&before, &customer, &key),
            Err(CipherError::UnknownKeyId(_))
        ));
    }

    #[test]
    fn keys_are_read_from_base64_of_exactly_32_bytes() {
        let key = generate_key();
        assert_eq!(decode_key(&BASE64.encode(key)).unwrap(), key);
        assert_eq!(decode_key("c2hvcnQ="), Err(CipherError::InvalidKey));
        assert_eq!(decode_key("not base64"), Err(CipherError::InvalidKey));
        let printed = format!("{:?}", BillingKeyCipher::new(&key));
        assert!(!printed.contains(&BASE64.encode(key)));
    }
}
