"""Ed25519 signature verification (RFC 8032, section 5.1.7) in pure Python, standard library only.

Written from RFC 8032's description and its section 6 reference code, so that an auditor can
check payledger's checkpoint signatures without installing anything. It is slow (a few
milliseconds per signature) and not constant-time, which is fine for *verifying* public data;
never use it to sign. `test_ed25519_verify.py` runs it against the RFC's test vectors.

Like ed25519-dalek's `verify_strict`, it refuses a non-canonical `S` (S >= q) and point
encodings that do not decode; it checks the group equation [S]B = R + [k]A without the cofactor.
"""

import hashlib

# The curve: -x^2 + y^2 = 1 + d x^2 y^2 over GF(p), base point B of prime order q.
P = 2**255 - 19
Q = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)


def _inverse(x):
    return pow(x, P - 2, P)


def _recover_x(y, sign):
    if y >= P:
        return None
    x2 = (y * y - 1) * _inverse(D * y * y + 1) % P
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P != 0:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P != 0:
        return None
    if (x & 1) != sign:
        x = P - x
    return x


def _add(a, b):
    # Extended homogeneous coordinates (X, Y, Z, T), x = X/Z, y = Y/Z, x*y = T/Z.
    e1 = (a[1] - a[0]) * (b[1] - b[0]) % P
    e2 = (a[1] + a[0]) * (b[1] + b[0]) % P
    c = 2 * a[3] * b[3] * D % P
    d = 2 * a[2] * b[2] % P
    e, f, g, h = e2 - e1, d - c, d + c, e2 + e1
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _multiply(scalar, point):
    result = (0, 1, 1, 0)  # the neutral element
    while scalar > 0:
        if scalar & 1:
            result = _add(result, point)
        point = _add(point, point)
        scalar >>= 1
    return result


def _equal(a, b):
    return (a[0] * b[2] - b[0] * a[2]) % P == 0 and (a[1] * b[2] - b[1] * a[2]) % P == 0


_BASE_Y = 4 * _inverse(5) % P
_BASE_X = _recover_x(_BASE_Y, 0)
BASE = (_BASE_X, _BASE_Y, 1, _BASE_X * _BASE_Y % P)


def _decompress(data):
    if len(data) != 32:
        return None
    y = int.from_bytes(data, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    x = _recover_x(y, sign)
    if x is None:
        return None
    return (x, y, 1, x * y % P)


def _compress(point):
    z_inverse = _inverse(point[2])
    x = point[0] * z_inverse % P
    y = point[1] * z_inverse % P
    return int.to_bytes(y | ((x & 1) << 255), 32, "little")


def public_key_of(secret):
    """The public key of a 32-byte secret (RFC 8032 5.1.5); used by the tests only."""
    digest = hashlib.sha512(secret).digest()
    scalar = int.from_bytes(digest[:32], "little")
    scalar &= (1 << 254) - 8
    scalar |= 1 << 254
    return _compress(_multiply(scalar, BASE))


def verify(public_key, message, signature):
    """True when `signature` (64 bytes) is a valid Ed25519 signature of `message` by
    `public_key` (32 bytes)."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    a = _decompress(public_key)
    if a is None:
        return False
    r_bytes = signature[:32]
    r = _decompress(r_bytes)
    if r is None:
        return False
    s = int.from_bytes(signature[32:], "little")
    if s >= Q:
        return False
    k = int.from_bytes(hashlib.sha512(r_bytes + public_key + message).digest(), "little") % Q
    return _equal(_multiply(s, BASE), _add(r, _multiply(k, a)))
