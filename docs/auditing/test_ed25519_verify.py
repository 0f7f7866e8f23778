"""RFC 8032 section 7.1 test vectors for ed25519_verify.py: `python3 test_ed25519_verify.py`."""

import unittest

import ed25519_verify

# (secret key, public key, message, signature), hex, from RFC 8032 7.1 TEST 1, 2 and 3.
VECTORS = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
]


class Rfc8032Vectors(unittest.TestCase):
    def test_public_keys_derive_from_secrets(self):
        for secret, public, _, _ in VECTORS:
            self.assertEqual(ed25519_verify.public_key_of(bytes.fromhex(secret)).hex(), public)

    def test_valid_signatures_verify(self):
        for _, public, message, signature in VECTORS:
            self.assertTrue(ed25519_verify.verify(
                bytes.fromhex(public), bytes.fromhex(message), bytes.fromhex(signature)))

    def test_any_changed_bit_is_refused(self):
        for _, public, message, signature in VECTORS:
            public, message, signature = (bytes.fromhex(x) for x in (public, message, signature))
            for position in (0, 31, 32, 63):
                forged = bytearray(signature)
                forged[position] ^= 0x01
                self.assertFalse(ed25519_verify.verify(public, message, bytes(forged)))
            self.assertFalse(ed25519_verify.verify(public, message + b"x", signature))
            other = VECTORS[0][1] if public.hex() != VECTORS[0][1] else VECTORS[1][1]
            self.assertFalse(ed25519_verify.verify(bytes.fromhex(other), message, signature))

    def test_a_non_canonical_s_is_refused(self):
        _, public, message, signature = VECTORS[0]
        signature = bytes.fromhex(signature)
        s = int.from_bytes(signature[32:], "little") + ed25519_verify.Q
        forged = signature[:32] + s.to_bytes(32, "little")
        self.assertFalse(ed25519_verify.verify(bytes.fromhex(public), bytes.fromhex(message), forged))


if __name__ == "__main__":
    unittest.main()
