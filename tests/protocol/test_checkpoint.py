"""Checkpoints (protocol/checkpoint.py): vectors, mutated negatives, bit flips.

Vectors live in testdata/checkpoint/, one case per file. ``kind``:

- ``parse``: parse_checkpoint (``rules`` coldtrace) or parse_c2sp_checkpoint
  (``rules`` c2sp) of a body -> fields and checkpoint_hash, or an error class;
- ``open``: open_checkpoint(note, vkeys) (ColdTrace rules, §7);
- ``open_c2sp``: open_note + parse_c2sp_checkpoint, for published checkpoints of
  other logs (Go's checksum database: origin ``go.sum database tree``);
- ``sign``: sign_checkpoint with an skey -> the exact note text.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import errors
from protocol.checkpoint import (
    Checkpoint,
    checkpoint_hash,
    open_checkpoint,
    parse_c2sp_checkpoint,
    parse_checkpoint,
    sign_checkpoint,
)
from protocol.note import NoteSigner, NoteVerifier, open_note, parse_note, sign_note

DATA = Path(__file__).parent / "testdata" / "checkpoint"


def _load(path: Path) -> dict[str, Any]:
    case: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return case


def _cases(kind: str) -> list[Path]:
    return sorted(p for p in DATA.glob("*.json") if _load(p)["kind"] == kind)


def _error(name: str) -> type[errors.VerificationError]:
    cls = getattr(errors, name)
    assert issubclass(cls, errors.VerificationError)
    return cls  # type: ignore[no-any-return]


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


def _check_fields(cp: Checkpoint, want: dict[str, Any]) -> None:
    assert cp.origin == want["origin"]
    assert cp.size == want["size"]
    assert base64.b64encode(cp.root_hash).decode() == want["root_hash"]
    assert list(cp.extensions) == want["extensions"]
    assert checkpoint_hash(cp).hex() == want["checkpoint_hash"]


PARSE = _cases("parse")
OPEN = _cases("open")
OPEN_C2SP = _cases("open_c2sp")
SIGN = _cases("sign")


def test_vector_files_are_present() -> None:
    assert len(PARSE) >= 25 and len(OPEN) >= 15 and len(OPEN_C2SP) >= 6 and len(SIGN) >= 2


@pytest.mark.parametrize("path", PARSE, ids=_ids(PARSE))
def test_parse_vector(path: Path) -> None:
    case = _load(path)
    parse = parse_checkpoint if case["rules"] == "coldtrace" else parse_c2sp_checkpoint
    want = case["want"]
    if "error" in want:
        with pytest.raises(errors.NoteError) as caught:
            parse(case["body"])
        assert type(caught.value) is _error(want["error"]), caught.value
        return
    cp = parse(case["body"])
    _check_fields(cp, want)
    assert cp.body() == case["body"]
    assert checkpoint_hash(case["body"]) == checkpoint_hash(cp)


@pytest.mark.parametrize("path", OPEN, ids=_ids(OPEN))
def test_open_checkpoint_vector(path: Path) -> None:
    case = _load(path)
    verifiers = [NoteVerifier.from_vkey(v) for v in case["vkeys"]]
    want = case["want"]
    if "error" in want:
        with pytest.raises(errors.NoteError) as caught:
            open_checkpoint(case["note"], verifiers)
        assert type(caught.value) is _error(want["error"]), caught.value
        return
    _check_fields(open_checkpoint(case["note"], verifiers), want)


@pytest.mark.parametrize("path", OPEN_C2SP, ids=_ids(OPEN_C2SP))
def test_open_c2sp_checkpoint_vector(path: Path) -> None:
    case = _load(path)
    verifiers = [NoteVerifier.from_vkey(v) for v in case["vkeys"]]
    want = case["want"]
    if "error" in want:
        with pytest.raises(errors.NoteError) as caught:
            note, _ = open_note(case["note"], verifiers)
            parse_c2sp_checkpoint(note.body)
        assert type(caught.value) is _error(want["error"]), caught.value
        return
    note, verified = open_note(case["note"], verifiers)
    assert [f"{v.name}+{v.key_id:08x}" for v in verified] == want["verified"]
    _check_fields(parse_c2sp_checkpoint(note.body), want)


@pytest.mark.parametrize("path", SIGN, ids=_ids(SIGN))
def test_sign_checkpoint_vector(path: Path) -> None:
    case = _load(path)
    fields = case["checkpoint"]
    cp = Checkpoint(fields["origin"], fields["size"], base64.b64decode(fields["root_hash"]))
    signer = NoteSigner.from_skey(case["skey"])
    assert sign_checkpoint(cp, signer) == case["want_note"]
    assert checkpoint_hash(cp).hex() == case["want_checkpoint_hash"]
    assert open_checkpoint(case["want_note"], [signer.verifier()]) == cp


# --- API rules -----------------------------------------------------------------------------

ORIGIN = "coldtrace.example/acme/warehouse-7"
ROOT = hashlib.sha256(b"root").digest()


def _signer(name: str = ORIGIN) -> NoteSigner:
    seed = hashlib.sha256(b"coldtrace test vector key: " + name.encode()).digest()
    return NoteSigner(name, Ed25519PrivateKey.from_private_bytes(seed))


def test_sign_checkpoint_refuses_a_signer_not_named_as_the_origin() -> None:
    with pytest.raises(errors.CheckpointOriginError) as caught:
        sign_checkpoint(Checkpoint(ORIGIN, 1, ROOT), _signer("coldtrace.example/other"))
    assert (caught.value.expected, caught.value.found) == (ORIGIN, "coldtrace.example/other")


def test_sign_checkpoint_refuses_what_parse_checkpoint_would_refuse() -> None:
    with pytest.raises(errors.MalformedCheckpointError):
        sign_checkpoint(Checkpoint(ORIGIN, 1, ROOT, ("ext",)), _signer())
    with pytest.raises(errors.MalformedCheckpointError):
        sign_checkpoint(Checkpoint("go.sum database tree", 1, ROOT), _signer())
    with pytest.raises(errors.MalformedCheckpointError):
        sign_checkpoint(Checkpoint(ORIGIN, 2**64, ROOT), _signer())


@pytest.mark.parametrize(
    ("origin", "size", "root", "extensions"),
    [
        ("", 1, ROOT, ()),
        ("a\nb", 1, ROOT, ()),
        (ORIGIN, -1, ROOT, ()),
        (ORIGIN, True, ROOT, ()),
        (ORIGIN, 1, ROOT[:31], ()),
        (ORIGIN, 1, ROOT, ("",)),
        (ORIGIN, 1, ROOT, ("two\nlines",)),
    ],
)
def test_checkpoint_refuses_fields_that_cannot_be_written(
    origin: str, size: int, root: bytes, extensions: tuple[str, ...]
) -> None:
    with pytest.raises(errors.MalformedCheckpointError):
        Checkpoint(origin, size, root, extensions)


def test_open_checkpoint_with_no_verifiers_is_an_error_not_a_pass() -> None:
    note = sign_checkpoint(Checkpoint(ORIGIN, 1, ROOT), _signer())
    with pytest.raises(errors.NoteKeyError):
        open_checkpoint(note, [])


def test_open_checkpoint_checks_the_body_before_any_signature() -> None:
    # A malformed body is reported as such, even with only unknown keys on it.
    note = sign_note(f"{ORIGIN}\n01\n{base64.b64encode(ROOT).decode()}\n", [_signer()])
    with pytest.raises(errors.MalformedCheckpointError):
        open_checkpoint(note, [NoteSigner.generate("unrelated").verifier()])


def test_checkpoint_hash_is_sha256_of_the_body_and_ignores_cosignatures() -> None:
    cp = Checkpoint(ORIGIN, 7, ROOT)
    note = sign_checkpoint(cp, _signer())
    cosigned = sign_note(parse_note(note), [_signer("witness.example/w1")])
    assert checkpoint_hash(cp) == hashlib.sha256(cp.body().encode()).digest()
    assert checkpoint_hash(cp.body().encode()) == checkpoint_hash(cp)
    assert open_checkpoint(cosigned, [_signer().verifier()]) == cp


# --- single-bit flips ---------------------------------------------------------------------


def _witnessed(cp: Checkpoint) -> tuple[bytes, range]:
    """A checkpoint note signed by the log and cosigned by a witness whose key
    the verifier does not pin, and the byte range of the witness's line that
    lies after its '— ' and before its newline (key name, space, base64)."""
    log, witness = _signer(cp.origin), _signer("witness.example/w1")
    text = sign_note(parse_note(sign_checkpoint(cp, log)), [witness]).encode()
    line = witness.sign(cp.body()).encode()
    start = text.rindex(line) + len("\u2014 ".encode())
    return text, range(start, text.rindex(line) + len(line) - 1)


def _flip_outcome(
    text: bytes, unknown_line: range, cp: Checkpoint, position: int, bit: int
) -> None:
    """The property, stated precisely.

    A single-bit flip of a checkpoint note signed by the pinned log key and by
    one unknown key makes open_checkpoint raise a NoteError subclass — except
    when the flip lies in the unknown key's line after its em dash and space and
    before its newline: there the note either still verifies, to the very same
    checkpoint (the flip changed only the unknown key's name, key id or
    signature bytes, which are ignored), or is MalformedNoteError (the line is no
    longer well-formed: bad name, space or base64).
    """
    flipped = bytearray(text)
    flipped[position] ^= 1 << bit
    pinned = [_signer(cp.origin).verifier()]
    if position in unknown_line:
        try:
            assert open_checkpoint(bytes(flipped), pinned) == cp
        except errors.NoteError as err:
            assert type(err) is errors.MalformedNoteError, (position, bit, err)
    else:
        with pytest.raises(errors.NoteError):
            open_checkpoint(bytes(flipped), pinned)


def test_every_single_bit_flip_of_a_witnessed_checkpoint() -> None:
    cp = Checkpoint(ORIGIN, 123456789012, ROOT)
    text, unknown_line = _witnessed(cp)
    assert open_checkpoint(text, [_signer().verifier()]) == cp
    still_verifies = 0
    for position in range(len(text)):
        for bit in range(8):
            _flip_outcome(text, unknown_line, cp, position, bit)
            flipped = bytearray(text)
            flipped[position] ^= 1 << bit
            try:
                open_checkpoint(bytes(flipped), [_signer().verifier()])
                still_verifies += 1
            except errors.NoteError:
                pass
    # Some flips of the unknown key's line are harmless (that is the point of
    # ignoring unknown keys); none elsewhere.
    assert 0 < still_verifies < 8 * len(unknown_line)


_ORIGIN_CHARS = st.sampled_from(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789./-_~:@"
)


@settings(max_examples=150, deadline=None)
@given(
    origin=st.text(_ORIGIN_CHARS, min_size=1, max_size=64),
    size=st.integers(min_value=0, max_value=2**64 - 1),
    root=st.binary(min_size=32, max_size=32),
    where=st.floats(min_value=0, max_value=1, exclude_max=True),
    bit=st.integers(min_value=0, max_value=7),
)
def test_any_single_bit_flip_of_a_signed_checkpoint_fails_unless_only_an_unknown_key_line(
    origin: str, size: int, root: bytes, where: float, bit: int
) -> None:
    cp = Checkpoint(origin, size, root)
    text, unknown_line = _witnessed(cp)
    _flip_outcome(text, unknown_line, cp, int(where * len(text)), bit)


@settings(max_examples=200, deadline=None)
@given(
    origin=st.text(_ORIGIN_CHARS, min_size=1, max_size=128),
    size=st.integers(min_value=0, max_value=2**64 - 1),
    root=st.binary(min_size=32, max_size=32),
)
def test_parse_checkpoint_inverts_body(origin: str, size: int, root: bytes) -> None:
    cp = Checkpoint(origin, size, root)
    assert parse_checkpoint(cp.body()) == cp


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_parse_c2sp_checkpoint_raises_only_malformed_checkpoint_error(body: str) -> None:
    try:
        cp = parse_c2sp_checkpoint(body)
    except errors.MalformedCheckpointError:
        return
    assert cp.body() == body
