"""Keccak-256 as Ethereum uses it, in pure Python.

Ethereum's ``keccak256`` is the Keccak submission to the SHA-3 competition
(round 3, "Keccak[r=1088, c=512]" with 256 output bits), *not* FIPS 202
SHA3-256: the two share the permutation Keccak-f[1600] and the rate, and
differ only in the first padding byte (Keccak ``0x01``, SHA-3 ``0x06``). So
``keccak256(b"")`` is ``c5d24601…`` while ``SHA3-256("")`` is ``a7ffc6f8…``.
``hashlib.sha3_256`` and ``cryptography`` implement only the FIPS variant,
hence this module.

It is needed for a handful of short inputs per EVM anchor (§8.2 of
docs/protocol.md: the ``Anchored`` event topic and ``keccak256(origin)``), so it
is written to be read, not to be fast: about a millisecond per 136-byte block
on CPython.

References: The Keccak reference, version 3.0 (Bertoni, Daemen, Peeters,
Van Assche), §1.2 (Keccak-f) and §5.1 (padding); FIPS 202 §3.2 for the step
mappings θ, ρ, π, χ, ι under the same names.
"""

from __future__ import annotations

__all__ = ["DIGEST_SIZE", "RATE", "keccak256"]

DIGEST_SIZE = 32
RATE = 136  # bytes: (1600 - 2 * 256) / 8

_MASK = (1 << 64) - 1

# ι: round constants RC[i] (Keccak reference §1.2).
_ROUND_CONSTANTS = (
    0x0000000000000001,
    0x0000000000008082,
    0x800000000000808A,
    0x8000000080008000,
    0x000000000000808B,
    0x0000000080000001,
    0x8000000080008081,
    0x8000000000008009,
    0x000000000000008A,
    0x0000000000000088,
    0x0000000080008009,
    0x000000008000000A,
    0x000000008000808B,
    0x800000000000008B,
    0x8000000000008089,
    0x8000000000008003,
    0x8000000000008002,
    0x8000000000000080,
    0x000000000000800A,
    0x800000008000000A,
    0x8000000080008081,
    0x8000000000008080,
    0x0000000080000001,
    0x8000000080008008,
)

# ρ: rotation offsets r[x][y], indexed here as lane x + 5*y.
_ROTATIONS = (
    0, 1, 62, 28, 27,
    36, 44, 6, 55, 20,
    3, 10, 43, 25, 39,
    41, 45, 15, 21, 8,
    18, 2, 61, 56, 14,
)  # fmt: skip


def _rotl(value: int, shift: int) -> int:
    return ((value << shift) | (value >> (64 - shift))) & _MASK if shift else value


def _keccak_f1600(lanes: list[int]) -> None:
    """Apply the 24-round permutation to 25 lanes (lane x + 5*y) in place."""
    for round_constant in _ROUND_CONSTANTS:
        # θ: xor each lane with the parities of two neighbouring columns.
        columns = [
            lanes[x] ^ lanes[x + 5] ^ lanes[x + 10] ^ lanes[x + 15] ^ lanes[x + 20]
            for x in range(5)
        ]
        for x in range(5):
            d = columns[(x - 1) % 5] ^ _rotl(columns[(x + 1) % 5], 1)
            for y in range(0, 25, 5):
                lanes[x + y] ^= d
        # ρ and π: rotate every lane and move lane (x, y) to (y, 2x + 3y).
        moved = [0] * 25
        for x in range(5):
            for y in range(5):
                moved[y + 5 * ((2 * x + 3 * y) % 5)] = _rotl(
                    lanes[x + 5 * y], _ROTATIONS[x + 5 * y]
                )
        # χ: the only non-linear step, along each row.
        for y in range(0, 25, 5):
            row = moved[y : y + 5]
            for x in range(5):
                lanes[x + y] = row[x] ^ (~row[(x + 1) % 5] & row[(x + 2) % 5])
        # ι: break the symmetry between rounds.
        lanes[0] ^= round_constant


def keccak256(data: bytes | bytearray | memoryview) -> bytes:
    """Return the 32-byte Keccak-256 digest of ``data`` (Ethereum's ``keccak256``)."""
    return _sponge_256(bytes(data), _KECCAK_DOMAIN)


_KECCAK_DOMAIN = 0x01  # original Keccak padding: pad10*1 only
_SHA3_DOMAIN = 0x06  # FIPS 202 appends the bits 01 first; used only by the tests


def _sponge_256(message: bytes, domain: int) -> bytes:
    """Absorb ``message`` at rate 136 with the given first padding byte, squeeze 32 bytes."""
    # Padding pad10*1: the domain byte, zeros, and a final 0x80 bit. When only
    # one byte is missing, the domain byte and 0x80 share it (0x81 for Keccak).
    padded = bytearray(message)
    padded.append(domain)
    padded.extend(b"\x00" * (-len(padded) % RATE))
    padded[-1] |= 0x80

    lanes = [0] * 25
    for start in range(0, len(padded), RATE):
        block = padded[start : start + RATE]
        for i in range(RATE // 8):
            lanes[i] ^= int.from_bytes(block[8 * i : 8 * i + 8], "little")
        _keccak_f1600(lanes)

    # One squeeze suffices: 32 output bytes < 136 bytes of rate.
    return b"".join(lane.to_bytes(8, "little") for lane in lanes[:4])
