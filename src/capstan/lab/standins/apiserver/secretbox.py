"""NaCl secretbox (XSalsa20-Poly1305) in pure Python, for the ``secretbox`` encryption provider.

Why by hand: it is the provider Kubespray configures by default, the stand-ins may use only the
standard library, PyYAML and cryptography, and cryptography has Poly1305 but no (X)Salsa20. Secrets
are a few kilobytes, so speed does not matter. Output layout is Go's ``secretbox.Seal``: tag || body.
"""

from __future__ import annotations

import struct

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.poly1305 import Poly1305

_M = 0xFFFFFFFF
_SIGMA = (0x61707865, 0x3320646E, 0x79622D32, 0x6B206574)  # "expand 32-byte k"
_QUARTERS = (
    (0, 4, 8, 12), (5, 9, 13, 1), (10, 14, 2, 6), (15, 3, 7, 11),  # columns
    (0, 1, 2, 3), (5, 6, 7, 4), (10, 11, 8, 9), (15, 12, 13, 14),  # rows
)  # fmt: skip


def _rounds(state: list[int]) -> list[int]:
    x = list(state)
    for _ in range(10):
        for a, b, c, d in _QUARTERS:
            t = (x[a] + x[d]) & _M
            x[b] ^= ((t << 7) | (t >> 25)) & _M
            t = (x[b] + x[a]) & _M
            x[c] ^= ((t << 9) | (t >> 23)) & _M
            t = (x[c] + x[b]) & _M
            x[d] ^= ((t << 13) | (t >> 19)) & _M
            t = (x[d] + x[c]) & _M
            x[a] ^= ((t << 18) | (t >> 14)) & _M
    return x


def _state(key: bytes, n: tuple[int, int, int, int]) -> list[int]:
    k = struct.unpack("<8I", key)
    return [_SIGMA[0], *k[:4], _SIGMA[1], *n, _SIGMA[2], *k[4:], _SIGMA[3]]


def _hsalsa20(key: bytes, nonce16: bytes) -> bytes:
    x = _rounds(_state(key, struct.unpack("<4I", nonce16)))
    return struct.pack("<8I", x[0], x[5], x[10], x[15], x[6], x[7], x[8], x[9])


def _stream(key: bytes, nonce8: bytes, length: int) -> bytes:
    n0, n1 = struct.unpack("<2I", nonce8)
    out = bytearray()
    counter = 0
    while len(out) < length:
        state = _state(key, (n0, n1, counter & _M, counter >> 32))
        x = _rounds(state)
        out += struct.pack("<16I", *((x[i] + state[i]) & _M for i in range(16)))
        counter += 1
    return bytes(out[:length])


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "little") ^ int.from_bytes(b[: len(a)], "little")).to_bytes(len(a), "little")


def seal(message: bytes, nonce: bytes, key: bytes) -> bytes:
    """tag(16) || ciphertext, as ``crypto_secretbox_easy`` / Go's ``secretbox.Seal``."""
    if len(key) != 32 or len(nonce) != 24:
        raise ValueError("secretbox needs a 32-byte key and a 24-byte nonce")
    stream = _stream(_hsalsa20(key, nonce[:16]), nonce[16:], 32 + len(message))
    body = _xor(message, stream[32:]) if message else b""
    return Poly1305.generate_tag(stream[:32], body) + body


def open_box(boxed: bytes, nonce: bytes, key: bytes) -> bytes:
    """The plaintext of ``seal``'s output; ValueError when the tag does not verify."""
    if len(boxed) < 16:
        raise ValueError("secretbox: message too short")
    tag, body = boxed[:16], boxed[16:]
    stream = _stream(_hsalsa20(key, nonce[:16]), nonce[16:], 32 + len(body))
    try:
        Poly1305.verify_tag(stream[:32], body, tag)
    except InvalidSignature:
        raise ValueError("secretbox: authentication failed") from None
    return _xor(body, stream[32:]) if body else b""
