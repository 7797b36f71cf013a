"""Witness cosignatures (c2sp.org/tlog-cosignature v1, Ed25519; docs/protocol.md §7.1).

Vectors live in testdata/cosignature/, one case per file, each naming its
source. ``kind``:

- ``parse``: the specification's cosigned example: the witness line's key id
  and timestamp, and the signed message rebuilt from the note body and that
  timestamp against the specification's example message (the specification
  publishes no witness key, so its signature cannot be checked);
- ``cosign``: our own vectors, a seed, a body and a time -> vkey, key id and
  the exact line, each re-derived here with hashlib and the raw Ed25519 key
  rather than through protocol.note.

Then: round trip, mutations (timestamp, body, key id, signature), unpinned
lines, duplicate lines, timestamps above 2^63 - 1, and the quorum in
``verify_bundle`` (§11 step 2) on bundles made by the scenario builder.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import errors
from protocol.checkpoint import (
    Checkpoint,
    cosign_checkpoint,
    open_checkpoint,
    open_cosigned_checkpoint,
    sign_checkpoint,
)
from protocol.note import (
    MAX_COSIGNATURE_TIME,
    NoteSignature,
    NoteSigner,
    WitnessSigner,
    WitnessVerifier,
    cosignature_message,
    parse_note,
    verify_cosignatures,
)
from protocol.verify import verify_bundle
from tests.protocol.scenario import T0, Scenario

DATA = Path(__file__).parent / "testdata" / "cosignature"


def _load(path: Path) -> dict[str, Any]:
    case: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return case


def _cases(kind: str) -> list[Path]:
    return sorted(p for p in DATA.glob("*.json") if _load(p)["kind"] == kind)


def _key(name: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(b"coldtrace test vector key: " + name.encode()).digest()
    )


ORIGIN = "coldtrace.example/acme/warehouse-7"
LOG = NoteSigner(ORIGIN, _key(ORIGIN))
W1 = WitnessSigner("witness.example/w1", _key("witness.example/w1"))
W2 = WitnessSigner("witness.example/w2", _key("witness.example/w2"))
CP = Checkpoint(ORIGIN, 123456789012, hashlib.sha256(b"root").digest())
T = 1_790_000_000


def _signed() -> str:
    return sign_checkpoint(CP, LOG)


# --- vectors -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", _cases("parse"), ids=lambda p: p.stem)
def test_published_example_parses(path: Path) -> None:
    case = _load(path)
    note = parse_note(case["note"])
    (line,) = [s for s in note.signatures if s.name == case["witness"]]
    want = case["want"]
    assert f"{line.key_id:08x}" == want["key_id"]
    assert int.from_bytes(line.sig[:8], "big") == want["time"]
    assert len(line.sig) - 8 == want["signature_bytes"]
    assert cosignature_message(note.body, want["time"]) == want["message"].encode()
    # With some other key pinned under that name, the line is ignored, not refused.
    other = WitnessSigner(case["witness"], _key("someone else")).verifier()
    assert other.key_id != line.key_id
    assert verify_cosignatures(note, [other]) == []


@pytest.mark.parametrize("path", _cases("cosign"), ids=lambda p: p.stem)
def test_own_vectors_recomputed_independently(path: Path) -> None:
    case = _load(path)
    want = case["want"]
    private = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(case["seed"]))
    public = private.public_key().public_bytes_raw()
    name, body, time = case["name"], case["body"], case["time"]

    # Key id and vkey, from the specification's formulas.
    kid = hashlib.sha256(name.encode() + b"\n" + b"\x04" + public).digest()[:4]
    assert kid.hex() == want["key_id"]
    assert want["vkey"] == f"{name}+{kid.hex()}+" + base64.b64encode(b"\x04" + public).decode()

    # The line: key id, 8-byte big-endian time, Ed25519 over the v1 message.
    dash, line_name, encoded = want["line"].rstrip("\n").split(" ")
    assert (dash, line_name) == ("\u2014", name)
    raw = base64.b64decode(encoded, validate=True)
    assert len(raw) == 4 + 8 + 64 and raw[:4] == kid
    assert int.from_bytes(raw[4:12], "big") == time
    message = b"cosignature/v1\ntime " + str(time).encode() + b"\n" + body.encode()
    private.public_key().verify(raw[12:], message)  # raises if wrong

    # Our code agrees both ways.
    signer = WitnessSigner(name, private)
    assert signer.vkey == want["vkey"]
    assert signer.cosign(body, time) == want["line"]  # Ed25519 is deterministic
    verifier = WitnessVerifier.from_vkey(want["vkey"])
    assert verifier.verify(body, raw[4:]) == time


def test_cosignature_and_log_key_ids_differ_by_the_type_byte() -> None:
    key = _key("witness.example/w1")
    as_log = NoteSigner("witness.example/w1", key)
    as_witness = WitnessSigner("witness.example/w1", key)
    assert as_log.key_id != as_witness.key_id
    assert as_log.vkey.split("+")[2][0] == "A" and as_witness.vkey.split("+")[2][0] == "B"
    with pytest.raises(errors.NoteKeyError, match="unsupported signature type"):
        WitnessVerifier.from_vkey(as_log.vkey)


# --- round trip and mutations ---------------------------------------------------------------


def test_cosign_and_open_round_trip() -> None:
    text = cosign_checkpoint(cosign_checkpoint(_signed(), W1, T), W2, T + 1)
    cp, cosigs = open_cosigned_checkpoint(text, [LOG.verifier()], [W1.verifier(), W2.verifier()])
    assert cp == CP
    assert [(c.witness, c.time) for c in cosigs] == [(W1.verifier(), T), (W2.verifier(), T + 1)]
    # Cosigning again replaces the witness's line instead of repeating it.
    again = cosign_checkpoint(text, W1, T + 5)
    assert len(parse_note(again).signatures) == 3
    _, cosigs = open_cosigned_checkpoint(again, [LOG.verifier()], [W1.verifier()])
    assert [c.time for c in cosigs] == [T + 5]
    # Pinning no witness: the checkpoint opens as before.
    assert open_checkpoint(text, [LOG.verifier()]) == CP


def _mutated_line(field: str) -> str:
    """The log's note with W1's line, one part of that line (or the body) changed."""
    line = W1.cosignature(CP.body(), T)
    sig = bytearray(line.sig)
    if field == "timestamp":
        sig[7] ^= 1
    elif field == "signature":
        sig[20] ^= 0x40
    elif field == "body":
        other = Checkpoint(ORIGIN, CP.size + 1, CP.root_hash)
        sig = bytearray(W1.cosignature(other.body(), T).sig)
    key_id = line.key_id ^ 1 if field == "key id" else line.key_id
    return _signed() + NoteSignature(W1.name, key_id, bytes(sig)).line()


@pytest.mark.parametrize("field", ["timestamp", "signature", "body"])
def test_a_pinned_witness_line_that_fails_refuses_the_note(field: str) -> None:
    with pytest.raises(errors.NoteSignatureError, match="does not verify") as info:
        open_cosigned_checkpoint(_mutated_line(field), [LOG.verifier()], [W1.verifier()])
    assert info.value.code == "bad_checkpoint"


def test_a_changed_key_id_makes_the_line_another_key_s_and_it_is_ignored() -> None:
    _, cosigs = open_cosigned_checkpoint(_mutated_line("key id"), [LOG.verifier()], [W1.verifier()])
    assert cosigs == []  # and so it counts for no quorum (see the verify tests)


def test_a_cosignature_of_the_wrong_length_is_refused() -> None:
    line = W1.cosignature(CP.body(), T)
    for sig in (line.sig[:-1], line.sig + b"\x00", line.sig[8:]):
        text = _signed() + NoteSignature(W1.name, W1.key_id, sig).line()
        with pytest.raises(errors.NoteSignatureError, match="wrong length"):
            open_cosigned_checkpoint(text, [LOG.verifier()], [W1.verifier()])


def test_a_timestamp_above_2_63_minus_1_is_refused_even_when_signed() -> None:
    key = _key("witness.example/w1")
    too_late = MAX_COSIGNATURE_TIME + 1
    message = b"cosignature/v1\ntime " + str(too_late).encode() + b"\n" + CP.body().encode()
    sig = too_late.to_bytes(8, "big") + key.sign(message)
    text = _signed() + NoteSignature(W1.name, W1.key_id, sig).line()
    with pytest.raises(errors.NoteSignatureError, match="2\\^63"):
        open_cosigned_checkpoint(text, [LOG.verifier()], [W1.verifier()])
    # The boundary itself is accepted; the signer refuses what it may not write.
    text = cosign_checkpoint(_signed(), W1, MAX_COSIGNATURE_TIME)
    _, cosigs = open_cosigned_checkpoint(text, [LOG.verifier()], [W1.verifier()])
    assert [c.time for c in cosigs] == [MAX_COSIGNATURE_TIME]
    for bad in (too_late, -1):
        with pytest.raises(errors.NoteSignatureError, match="out of range"):
            W1.cosign(CP.body(), bad)
    with pytest.raises(InvalidSignature):  # and the raw check agrees that the message differs
        key.public_key().verify(sig[8:], cosignature_message(CP.body(), 0))


def test_an_unpinned_witness_line_is_ignored_even_when_broken() -> None:
    stranger = WitnessSigner("witness.example/stranger", _key("stranger"))
    line = stranger.cosignature(CP.body(), T)
    broken = NoteSignature(line.name, line.key_id, line.sig[:8] + bytes(64))
    text = _signed() + broken.line()
    _, cosigs = open_cosigned_checkpoint(text, [LOG.verifier()], [W1.verifier()])
    assert cosigs == []


def test_a_witness_line_under_another_name_is_ignored() -> None:
    line = W1.cosignature(CP.body(), T)
    text = _signed() + NoteSignature("witness.example/w9", line.key_id, line.sig).line()
    _, cosigs = open_cosigned_checkpoint(text, [LOG.verifier()], [W1.verifier()])
    assert cosigs == []


def test_a_duplicate_cosignature_line_is_refused() -> None:
    text = cosign_checkpoint(_signed(), W1, T)
    twice = text + W1.cosign(CP.body(), T + 1)
    with pytest.raises(errors.MalformedNoteError, match="signs twice") as info:
        open_cosigned_checkpoint(twice, [LOG.verifier()], [W1.verifier()])
    assert info.value.code == "bad_checkpoint"


def test_a_witness_alone_does_not_make_a_checkpoint() -> None:
    text = cosign_checkpoint(_signed(), W1, T)
    with pytest.raises(errors.UnverifiedNoteError):
        open_cosigned_checkpoint(
            text, [NoteSigner("x.example/log", _key("x")).verifier()], [W1.verifier()]
        )


# --- the verifier: quorum (§11 step 2) ---------------------------------------------------------


def _scenario() -> Scenario:
    s = Scenario()
    dev = s.logger("tl-truck")
    s.readings(dev, T0, T0 + 3600, 300, lambda t: 250)
    return s


def _codes(report: Any) -> set[str]:
    return {c.code for c in report.failures}


def test_quorum_met_verifies_and_reports_the_count() -> None:
    s = _scenario()
    w1, w2 = s.witness("witness.example/w1"), s.witness("witness.example/w2")
    bundle = s.bundle(witnesses=[w1, w2], sizes=[3])
    assert len(parse_note(bundle.checkpoints[0]).signatures) == 3
    for quorum in (0, 1, 2):
        report = verify_bundle(bundle, s.trust(witnesses=[w1, w2], quorum=quorum), detail=True)
        assert report.verified, report.failures
        messages = [c.message for c in report.checks if c.check == "checkpoint.signature"]
        assert messages == [f"2 cosignature(s) from pinned witnesses, quorum {quorum}"] * 2


def test_quorum_not_met_is_insufficient_cosignatures() -> None:
    s = _scenario()
    w1, w2 = s.witness("witness.example/w1"), s.witness("witness.example/w2")
    report = verify_bundle(s.bundle(witnesses=[w1]), s.trust(witnesses=[w1, w2], quorum=2))
    assert not report.verified
    assert "insufficient_cosignatures" in _codes(report)
    (failure,) = [c for c in report.failures if c.code == "insufficient_cosignatures"]
    assert failure.check == "checkpoint.cosignatures"
    assert failure.message is not None and failure.message.startswith("1 cosignature(s)")
    assert failure.expected == ">= 2" and failure.found == f"['{w1.name}+{w1.key_id:08x}']"
    # Without any cosignature.
    report = verify_bundle(s.bundle(), s.trust(witnesses=[w1], quorum=1))
    assert "insufficient_cosignatures" in _codes(report) and not report.verified


def test_one_of_two_witnesses_is_enough_for_a_quorum_of_one() -> None:
    s = _scenario()
    w1, w2 = s.witness("witness.example/w1"), s.witness("witness.example/w2")
    for present in ([w1], [w2]):
        report = verify_bundle(s.bundle(witnesses=present), s.trust(witnesses=[w1, w2], quorum=1))
        assert report.verified, report.failures


def test_unpinned_witnesses_do_not_count_toward_the_quorum() -> None:
    s = _scenario()
    w1, stranger = s.witness("witness.example/w1"), s.witness("witness.example/stranger")
    report = verify_bundle(s.bundle(witnesses=[stranger]), s.trust(witnesses=[w1], quorum=1))
    assert _codes(report) >= {"insufficient_cosignatures"} and not report.verified
    # With quorum 0 the cosignatures change nothing.
    report = verify_bundle(s.bundle(witnesses=[stranger]), s.trust())
    assert report.verified, report.failures


def test_a_bad_pinned_cosignature_in_a_bundle_is_bad_checkpoint() -> None:
    s = _scenario()
    w1 = s.witness("witness.example/w1")
    bundle = s.bundle(witnesses=[w1])
    note = parse_note(bundle.checkpoints[0])
    last = note.signatures[-1]
    note.signatures[-1] = NoteSignature(last.name, last.key_id, last.sig[:-1] + b"\x00")
    bundle.checkpoints[0] = note.text()
    # Pinned with quorum 0, a failing cosignature still refuses the checkpoint.
    report = verify_bundle(bundle, s.trust(witnesses=[w1], quorum=0))
    assert "bad_checkpoint" in _codes(report) and not report.verified
    # Not pinned: ignored.
    assert verify_bundle(bundle, s.trust()).verified


def test_a_mutated_key_id_in_a_bundle_falls_short_of_the_quorum() -> None:
    s = _scenario()
    w1 = s.witness("witness.example/w1")
    bundle = s.bundle(witnesses=[w1])
    note = parse_note(bundle.checkpoints[0])
    last = note.signatures[-1]
    note.signatures[-1] = NoteSignature(last.name, last.key_id ^ 0x100, last.sig)
    bundle.checkpoints[0] = note.text()
    report = verify_bundle(bundle, s.trust(witnesses=[w1], quorum=1))
    assert _codes(report) >= {"insufficient_cosignatures"} and not report.verified


def test_the_builder_without_witnesses_is_unchanged() -> None:
    s = _scenario()
    assert s.bundle().to_json() == s.bundle(witnesses=()).to_json()
    assert s.trust_doc() == s.trust_doc(witnesses=())
    assert "witnesses" not in s.trust_doc() and "quorum" not in s.trust_doc()
