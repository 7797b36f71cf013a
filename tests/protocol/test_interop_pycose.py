"""Interoperability with an independent COSE library: pycose 1.1.

- Every record the protocol package makes (all four kinds, random-nonce and
  RFC 6979 signing) verifies in pycose: ``Sign1Message.decode`` and an
  ``EC2Key`` built from the registered SEC1 point.
- A record made by pycose with the registered key and the exact profile
  headers verifies in ``protocol.record.verify_record`` — when its s is low.
  pycose signs with RFC 6979 nonces (through python-ecdsa) but does not
  normalise s, so about half of its signatures are high-S; the profile
  refuses those (``HighSError``, §3) and accepts the same signature once s
  is replaced by n - s, as a profile signer must do. Either way the result
  is byte-identical to our own deterministic record.
- Acks: a COSE_Mac0 from either side verifies in the other.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from pycose.algorithms import HMAC256, Es256
from pycose.headers import KID, Algorithm
from pycose.keys import EC2Key, SymmetricKey  # type: ignore[attr-defined]
from pycose.keys.curves import P256
from pycose.messages import Mac0Message, Sign1Message  # type: ignore[attr-defined]

from protocol import cbor, cose, rfc6979
from protocol.errors import HighSError
from protocol.keys import generate_p256, p256_public_to_sec1
from protocol.record import (
    Payload,
    Reading,
    Registration,
    Scan,
    Status,
    encode_payload,
    make_record,
    verify_record,
)

DEVICE = generate_p256()
SEC1 = p256_public_to_sec1(DEVICE.public_key())
COMMON: dict[str, Any] = {"boot": 3, "seq": 9, "time": 1_790_000_000, "tq": 2, "prev": bytes(16)}
PAYLOADS: list[Payload] = [
    Reading(**COMMON, temp=-1850, rh=6120, batt=3710),
    Scan(**COMMON, uid=bytes.fromhex("04a1b2c3d4e5f6"), action=2, place="dock 4"),
    Status(**COMMON, event=1, fw="1.0.0", rssi=-70),
    Registration(**{**COMMON, "boot": 0}, device="tl-1", key=SEC1, role=1, org="Acme", state=1),
]


def pycose_public_key(sec1: bytes) -> EC2Key:
    return EC2Key(crv=P256, x=sec1[1:33], y=sec1[33:65])


def pycose_private_key() -> EC2Key:
    d = DEVICE.private_numbers().private_value.to_bytes(32, "big")
    return EC2Key(crv=P256, x=SEC1[1:33], y=SEC1[33:65], d=d)


@pytest.mark.parametrize("deterministic", [False, True], ids=["pyca", "rfc6979"])
@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: type(p).__name__)
def test_every_record_kind_verifies_in_pycose(payload: Any, deterministic: bool) -> None:
    raw = make_record(payload, "tl-1", DEVICE, deterministic=deterministic)
    msg = Sign1Message.decode(raw)
    msg.key = pycose_public_key(SEC1)
    assert msg.verify_signature()
    assert msg.phdr == {Algorithm: Es256, KID: b"tl-1"}
    assert msg.uhdr == {}
    assert msg.payload == encode_payload(payload)


def test_pycose_rejects_a_tampered_record() -> None:
    raw = bytearray(make_record(PAYLOADS[0], "tl-1", DEVICE))
    raw[30] ^= 1  # inside the payload
    msg = Sign1Message.decode(bytes(raw))
    msg.key = pycose_public_key(SEC1)
    assert not msg.verify_signature()


def pycose_record(payload: bytes) -> bytes:
    msg = Sign1Message(phdr={Algorithm: Es256, KID: b"tl-1"}, payload=payload)
    msg.key = pycose_private_key()
    raw: bytes = msg.encode()
    return raw


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: type(p).__name__)
def test_record_made_by_pycose_verifies_in_protocol(payload: Any) -> None:
    """pycose signs with RFC 6979 nonces (via python-ecdsa) but does not normalise s.

    So its record is byte-identical to ours when s is low, and differs only
    in s -> n - s when it is high; the profile refuses the high-S form.
    """
    seen_low = seen_high = False
    for seq in range(64):  # vary the payload to meet both a low and a high s
        p = dataclasses.replace(payload, seq=seq)
        body = encode_payload(p)
        raw = pycose_record(body)
        msg = cose.parse_sign1(raw)  # pycose writes exactly the profile's envelope
        assert msg.protected == cbor.encode({1: -7, 4: b"tl-1"})
        ours = make_record(p, "tl-1", DEVICE, deterministic=True)
        s = int.from_bytes(msg.signature[32:], "big")
        if s <= rfc6979.HALF_N:
            rec = verify_record(raw, DEVICE.public_key())
            assert rec.payload == p
            assert rec.signer == "tl-1"
            assert raw == ours
            seen_low = True
        else:
            with pytest.raises(HighSError):
                verify_record(raw, DEVICE.public_key())
            normalised = raw[:-32] + (rfc6979.N - s).to_bytes(32, "big")
            assert verify_record(normalised, DEVICE.public_key()).payload == p
            assert normalised == ours
            seen_high = True
        if seen_low and seen_high:
            break
    assert seen_low and seen_high


def test_ack_mac0_interoperates_both_ways() -> None:
    key = bytes(range(32))
    payload = cbor.encode({1: 41, 2: 1_790_000_000, 3: bytes(16)})
    ours = cose.mac0(payload, "gw-1", key)
    msg = Mac0Message.decode(ours)
    msg.key = SymmetricKey(k=key)
    assert msg.verify_tag()
    theirs = Mac0Message(phdr={Algorithm: HMAC256, KID: b"gw-1"}, payload=payload)
    theirs.key = SymmetricKey(k=key)
    raw = theirs.encode()
    assert cose.verify_mac0(raw, key).payload == payload
    assert raw == ours  # HMAC is deterministic: byte-identical messages
