"""Every parser an attacker can feed, as a function of one byte string, with its
genuine inputs (the seeds that mutations start from) and its allowed errors.

One entry per parser in :data:`TARGETS`; the hypothesis tests (tests/fuzz/test_*.py)
and the atheris driver (atheris_driver.py) call the same functions, under the
rules of :func:`tests.fuzz.harness.attempt`. Keys are fixed (deterministic
scalars and seeds) so a failing input found once reproduces anywhere.

Where a parser has a fast path and a strict reference path (the record decoder,
the COSE_Sign1 split), the entry point also checks that they agree: the fast
path may only accept what the strict path accepts, with the same result.
"""

from __future__ import annotations

import hashlib
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud import sun
from protocol import cose
from protocol import record as rec
from protocol.checkpoint import Checkpoint, open_cosigned_checkpoint, sign_checkpoint
from protocol.errors import VerificationError
from protocol.keys import p256_private_from_scalar, p256_public_to_sec1
from protocol.merkle import MerkleTree
from protocol.merkle.multiproof import verify_multiproof
from protocol.merkle.verify import verify_consistency, verify_inclusion
from protocol.note import NoteSigner, WitnessSigner, parse_note, verify_cosignatures
from tests.fuzz.harness import Target
from tests.protocol.scenario import COMMISSION, ITEM, LOAD, T0, Scenario

ROOT = Path(__file__).resolve().parents[2]
for _p in (ROOT / "firmware" / "lib", ROOT / "tests" / "firmware" / "fakes"):
    if str(_p) not in sys.path:
        sys.path.append(str(_p))

import ct_cbor  # noqa: E402
import ct_record  # noqa: E402

# --- keys --------------------------------------------------------------------------------

DEVICE_KEY = p256_private_from_scalar(0x1234567890ABCDEF1234567890ABCDEF)
DEVICE_PUB = DEVICE_KEY.public_key()
ACK_KEY = bytes(range(32))
LOG = NoteSigner("fuzz.example/log", Ed25519PrivateKey.from_private_bytes(bytes(32)))
WITNESS = WitnessSigner("witness.example/w1", Ed25519PrivateKey.from_private_bytes(bytes([1]) * 32))
OTHER_WITNESS = WitnessSigner(
    "witness.example/w2", Ed25519PrivateKey.from_private_bytes(bytes([2]) * 32)
)
SUN_KEYS = sun.TagKeys(app_master=bytes(16), meta_read=bytes([1]) * 16, file_read=bytes([2]) * 16)
SUN_UID = bytes.fromhex("04a23c5a1b6f80")


# --- genuine inputs ---------------------------------------------------------------------------


def _common(seq: int, boot: int = 3) -> dict[str, object]:
    return {"boot": boot, "seq": seq, "time": T0 + seq * 300, "tq": 2, "prev": bytes(range(16))}


def genuine_payloads() -> list[bytes]:
    """One payload of every record kind (§2), with optional fields, a reading block (kind 7)
    with humidity and faults, and an extension field."""
    sec1 = p256_public_to_sec1(DEVICE_PUB)
    temps, rhs = rec.pack_block(
        [450, None, 460, -120], [None, 7, None, None], [5000, None, 5100, None]
    )
    payloads = [
        rec.Reading(**_common(1), temp=450, rh=5000, ch=0, cal=7, batt=3900, alarm=0),
        rec.Reading(**_common(2), fault=3),
        rec.Reading(**_common(3), temp=-50, extensions={1000: 5, 1001: b"x", 1002: "y"}),
        rec.Scan(
            **_common(4),
            uid=bytes.fromhex("04a23c5a1b6f80"),
            action=2,
            place="pack:dock-1",
            item="01095060001343520",
            link=bytes(16),
        ),
        rec.Status(**_common(5), event=1, uptime=100, fw="1.2.3", queued=3, free=1000, rssi=-70),
        rec.Registration(
            **_common(6, boot=0), device="tl-truck", key=sec1, role=1, org="acme", state=1, cal=2
        ),
        rec.Binding(
            **_common(7, boot=0), cseq=0, cprev=bytes(16), target="fleet:truck-1", devices="tl-a"
        ),
        rec.ProductProfile(
            **_common(8, boot=0),
            cseq=0,
            cprev=bytes(16),
            gtin="09506000134352",
            delay=1800,
            gap=1800,
            low=0,
            high=800,
            name="vaccine",
        ),
        rec.ReadingBlock(**_common(9), ivl=300, temps=temps, rhs=rhs, ch=0, batt=3800),
        rec.ReadingBlock(**_common(10), ivl=60, temps=rec.pack_block([1, 2])[0]),
    ]
    return [rec.encode_payload(p) for p in payloads]


PAYLOADS = genuine_payloads()
RECORDS = [cose.sign1_deterministic(p, "tl-truck", DEVICE_KEY) for p in PAYLOADS]
_ACK_PAYLOADS = [
    bytes.fromhex("a3")
    + b"\x01\x05"
    + b"\x02\x1a"
    + struct.pack(">I", T0)
    + b"\x03\x50"
    + bytes(16),
    bytes.fromhex("a4")
    + b"\x01\x07\x0a\x19\x02\x58\x0c\x19\x03\xe8\x0f\x1a"
    + struct.pack(">I", T0),
    bytes.fromhex("a5")
    + b"\x01\x08\x10\x00\x11\x19\x04\x12\x12\x48"
    + struct.pack(">2i", -1987, -2000)
    + b"\x14\x05",
]
ACKS = [cose.mac0(p, "gw-1", ACK_KEY) for p in _ACK_PAYLOADS]


def _checkpoint_notes() -> list[str]:
    tree = MerkleTree()
    for i in range(5):
        tree.append(b"leaf %d" % i)
    cp = Checkpoint(LOG.name, tree.size, tree.root())
    note = sign_checkpoint(cp, LOG)
    cosigned = WITNESS.cosign(cp.body(), T0)
    parsed = parse_note(note)
    both = parsed.text().rstrip("\n") + "\n" + cosigned.split("\n\n")[-1]
    empty = sign_checkpoint(Checkpoint(LOG.name, 0, hashlib.sha256(b"").digest()), LOG)
    return [note, both, empty]


NOTES = _checkpoint_notes()


def small_world() -> Scenario:
    """A small genuine trace (a logger on a truck, a dock reader, profile and bindings)
    whose bundle verifies, so mutations of it start from a pass."""
    s = Scenario()
    s.profile("09506000134352", T0 - 600, low=0, high=400, delay=1800, gap=1800)
    tl = s.logger("tl-truck")
    s.bind("fleet:truck-1", ["tl-truck"], T0 - 600)
    rd = s.reader("rd-dock", "pack:dock-1")
    s.bind("pack:dock-1", ["tl-truck"], T0 - 600)
    s.scan(rd, COMMISSION, T0, item=ITEM)
    s.readings(tl, T0 - 300, T0 + 1800, 300, lambda t: 250)
    s.scan(rd, LOAD, T0 + 600, ref="fleet:truck-1")
    s.bind("fleet:truck-1", ["tl-truck"], T0 + 2000)
    s.bind("pack:dock-1", ["tl-truck"], T0 + 2000)
    return s


_WORLD: Scenario | None = None


def world() -> Scenario:
    global _WORLD
    if _WORLD is None:
        _WORLD = small_world()
    return _WORLD


def bundle_text() -> str:
    """The small world's bundle, version 3 (the compact encoding, §9.1)."""
    return world().bundle().dumps()


def _sun_queries() -> list[str]:
    out = []
    for counter, enc, lrp in (
        (1, None, False),
        (0xFFFFFE, b"0123456789abcdef", False),
        (5, None, True),
        (6, bytes(32), True),
    ):
        url = sun.make_sun_url(SUN_KEYS, SUN_UID, counter, "https://t.example/", "t", enc, lrp=lrp)
        out.append(url.partition("?")[2])
    return out


def _frame(ints: list[int], hashes: list[bytes]) -> bytes:
    """The framing of _ints_and_hashes, for genuine proofs."""
    out = b"".join(i.to_bytes(9, "big") for i in ints)
    return out + b"".join(bytes([len(h)]) + h for h in hashes)


def _merkle_seeds() -> tuple[list[bytes], list[bytes], list[bytes]]:
    tree = MerkleTree()
    tree.extend(b"leaf %d" % i for i in range(13))
    inc, con, multi = [], [], []
    for index, size in ((0, 1), (3, 8), (12, 13), (5, 13)):
        proof = tree.inclusion_proof(index, size)
        inc.append(_frame([index, size], [tree.leaf_hash(index), tree.root(size), *proof]))
    for s1, s2 in ((1, 2), (3, 8), (4, 13), (7, 7)):
        proof = tree.consistency_proof(s1, s2) if s1 < s2 else []
        con.append(_frame([s1, s2], [tree.root(s1), tree.root(s2), *proof]))
    for leaves in ([0], [2, 3, 9], [12]):
        multi.append(
            _frame(
                [13, len(leaves)],
                [
                    *(i.to_bytes(2, "big") for i in leaves),
                    *(b"leaf %d" % i for i in leaves),
                    tree.root(),
                    *tree.multiproof(leaves),
                ],
            )
        )
    return inc, con, multi


MERKLE_INCLUSION, MERKLE_CONSISTENCY, MERKLE_MULTIPROOF = _merkle_seeds()


# --- entry points: one byte string in ---------------------------------------------------


def record_payload(data: bytes) -> None:
    """decode_payload (§2), and the fused fast path agrees with the strict one."""
    fast = rec._decode_payload_fast(data)
    try:
        strict = rec._decode_payload_strict(data)
    except VerificationError:
        if fast is not None:
            raise AssertionError("fast path accepted what the strict path refuses") from None
        raise
    if fast is not None and fast != strict:
        raise AssertionError(f"fast path decoded {fast!r}, strict {strict!r}")
    rec.decode_payload(data)


def cose_sign1(data: bytes) -> None:
    """verify_record: envelope (§3), payload (§2), ES256 signature; open_record agrees,
    and so do the envelope's fast and strict parsers."""
    fast = cose._parse_sign1_fast(data)
    if fast is not None and fast != cose._parse_sign1_strict(data):
        raise AssertionError("the fast COSE_Sign1 parser disagrees with the strict one")
    try:
        opened = rec.open_record(data)
    except VerificationError:
        opened = None
    try:
        rec.verify_record(data, DEVICE_PUB)
    except VerificationError:
        if opened is None:
            cose.parse_sign1(data)  # the strict parser refuses it too, with its own error
        raise
    if opened is None:
        raise AssertionError("verify_record accepted what open_record refuses")


def cose_mac0(data: bytes) -> None:
    """An ack or command as the gateway's peer would check it (§5.2): parse, then HMAC."""
    cose.parse_mac0(data)
    cose.verify_mac0(data, ACK_KEY)


def _ints_and_hashes(data: bytes, n_ints: int) -> tuple[list[int], list[bytes]]:
    """Frame bytes as ``n_ints`` 9-byte big-endian integers (enough to exceed 2^64),
    then hashes, each with a one-byte length (so wrong sizes come up too)."""
    ints = [int.from_bytes(data[9 * i : 9 * i + 9], "big") for i in range(n_ints)]
    rest = data[9 * n_ints :]
    hashes = []
    while rest:
        n, rest = rest[0], rest[1:]
        n = 32 if n >= 0x80 else n  # mostly right-sized, sometimes not
        hashes.append(rest[:n])
        rest = rest[n:]
    return ints, hashes


def _small(value: int, data: bytes) -> int:
    # fold most integers into small trees, keep some huge (the top bit of the first byte)
    return value if data[:1] >= b"\x80" else value % 4096


def merkle_inclusion(data: bytes) -> None:
    (index, size), hashes = _ints_and_hashes(data, 2)
    index, size = _small(index, data), _small(size, data[9:])
    leaf, root, proof = (hashes + [b""] * 2)[0], (hashes + [b""] * 2)[1], hashes[2:]
    verify_inclusion(index, size, leaf, proof, root)


def merkle_consistency(data: bytes) -> None:
    (size1, size2), hashes = _ints_and_hashes(data, 2)
    size1, size2 = _small(size1, data), _small(size2, data[9:])
    root1, root2, proof = (hashes + [b""] * 2)[0], (hashes + [b""] * 2)[1], hashes[2:]
    verify_consistency(size1, size2, proof, root1, root2)


def merkle_multiproof(data: bytes) -> None:
    """A multiproof as the bundle reader hands it over: size, leaf indexes, leaf data,
    root, nodes (framing: size and count, then ``count`` index items, ``count`` leaf
    data items, the root, the nodes)."""
    (size, count), items = _ints_and_hashes(data, 2)
    size, count = _small(size, data), count % 64
    leaves = [int.from_bytes(h, "big") for h in items[:count]]
    leaf_hashes = [hashlib.sha256(b"\x00" + h).digest() for h in items[count : 2 * count]]
    root = (items[2 * count :] or [b""])[0]
    verify_multiproof(size, leaves, leaf_hashes, items[2 * count + 1 :], root)


def checkpoint(data: bytes) -> None:
    """A signed checkpoint note (§7) with cosignatures (§7.1), log and witness pinned."""
    open_cosigned_checkpoint(data, [LOG.verifier()], [WITNESS.verifier(), OTHER_WITNESS.verifier()])


def cosignature(data: bytes) -> None:
    """The cosignature lines of a note alone (c2sp.org/tlog-cosignature), as a witness
    registry (cloud/witness.py) reads a note before the log's signature matters."""
    verify_cosignatures(parse_note(data), [WITNESS.verifier(), OTHER_WITNESS.verifier()])


def _file_key(uid: bytes) -> bytes | None:
    return SUN_KEYS.file_read if uid == SUN_UID else None


def sun_url(data: bytes) -> None:
    """A tap's query string (AN12196 SUN: PICCData, CMAC, encrypted file data)."""
    params = dict(parse_qsl(data.decode("utf-8", "replace"), keep_blank_values=True))
    msg = sun.parse_sun(params)
    if msg is not None:
        sun.verify_sun(SUN_KEYS.meta_read, _file_key, msg)


def fw_mac0(data: bytes) -> None:
    """The firmware's ack/command check (ct_record.verify_mac0), under CPython."""
    ct_record.verify_mac0(data, ACK_KEY)


def fw_cbor_map(data: bytes) -> None:
    """The firmware's strict flat-map decoder (ct_cbor.decode_map) behind every ack."""
    ct_cbor.decode_map(data)


def bundle(data: bytes) -> None:
    """A trace bundle (§9, either version) read and verified against the small world's
    trust file; only the reader may refuse (the verifier reports, it does not raise)."""
    from protocol.bundle import loads_bundle
    from protocol.verify import verify_bundle

    verify_bundle(loads_bundle(data), world().trust())


@dataclass(frozen=True)
class Entry:
    target: Target
    run: Callable[[bytes], None]
    seeds: list[bytes]


_V = (VerificationError,)
SUN_CODES = frozenset({"malformed", "invalid", "unknown_tag"})

TARGETS: dict[str, Entry] = {
    "record_payload": Entry(Target("record_payload", _V), record_payload, PAYLOADS),
    "cose_sign1": Entry(Target("cose_sign1", _V), cose_sign1, RECORDS),
    "cose_mac0": Entry(Target("cose_mac0", _V), cose_mac0, ACKS),
    "merkle_inclusion": Entry(Target("merkle_inclusion", _V), merkle_inclusion, MERKLE_INCLUSION),
    "merkle_consistency": Entry(
        Target("merkle_consistency", _V), merkle_consistency, MERKLE_CONSISTENCY
    ),
    "merkle_multiproof": Entry(
        Target("merkle_multiproof", _V), merkle_multiproof, MERKLE_MULTIPROOF
    ),
    "checkpoint": Entry(Target("checkpoint", _V), checkpoint, [n.encode() for n in NOTES]),
    "cosignature": Entry(Target("cosignature", _V), cosignature, [n.encode() for n in NOTES]),
    "sun_url": Entry(
        Target("sun_url", (sun.SunError,), SUN_CODES), sun_url, [q.encode() for q in _sun_queries()]
    ),
    "fw_mac0": Entry(Target("fw_mac0", (ct_record.MacError,), frozenset()), fw_mac0, ACKS),
    "fw_cbor_map": Entry(
        Target("fw_cbor_map", (ct_cbor.CBORError,), frozenset()), fw_cbor_map, _ACK_PAYLOADS
    ),
}

#: Parsers fuzzed only by atheris here: the bundle reader and verifier have their
#: own hypothesis tests (tests/protocol/test_fuzz_verify.py).
ATHERIS_ONLY: dict[str, Entry] = {
    "bundle": Entry(Target("bundle", _V), bundle, []),
}
