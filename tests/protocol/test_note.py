"""Signed notes (protocol/note.py): published vectors, mutated negatives, properties.

Vectors live in testdata/note/, one case per file, each naming its source
(Go's golang.org/x/mod/sumdb/note tests, the C2SP signed-note specification)
or the case it was derived from and the mutation. ``kind`` says what is tested:

- ``open``: open_note(note, vkeys) -> body and verified keys, or an error class;
- ``sign``: sign_note(body or existing note, skeys) -> the exact note text;
- ``parse``: parse_note(note) -> body and (name, key id) of each signature;
- ``vkey`` / ``skey``: key string -> name and key id, or an error class.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import errors
from protocol.note import (
    MAX_NOTE_BYTES,
    MAX_SIGNATURES,
    Note,
    NoteSignature,
    NoteSigner,
    NoteVerifier,
    is_valid_key_name,
    open_note,
    parse_note,
    sign_note,
    verify_note,
)

DATA = Path(__file__).parent / "testdata" / "note"


def _cases(kind: str) -> list[Path]:
    return sorted(p for p in DATA.glob("*.json") if _load(p)["kind"] == kind)


def _load(path: Path) -> dict[str, Any]:
    case: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return case


def _error(name: str) -> type[errors.VerificationError]:
    cls = getattr(errors, name)
    assert issubclass(cls, errors.VerificationError)
    return cls  # type: ignore[no-any-return]


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


def _key(v: NoteVerifier) -> str:
    return f"{v.name}+{v.key_id:08x}"


PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)


# --- vectors ---------------------------------------------------------------------------

OPEN = _cases("open")
SIGN = _cases("sign")
PARSE = _cases("parse")
VKEY = _cases("vkey")
SKEY = _cases("skey")


def test_vector_files_are_present() -> None:
    assert len(OPEN) >= 30 and len(SIGN) >= 3 and len(VKEY) >= 8 and len(SKEY) >= 4
    assert len(PARSE) >= 1


@pytest.mark.parametrize("path", OPEN, ids=_ids(OPEN))
def test_open_note_vector(path: Path) -> None:
    case = _load(path)
    verifiers = [NoteVerifier.from_vkey(v) for v in case["vkeys"]]
    text: str | bytes = case["note"] if "note" in case else bytes.fromhex(case["note_hex"])
    want = case["want"]
    if "error" in want:
        with pytest.raises(errors.NoteError) as caught:
            open_note(text, verifiers)
        assert type(caught.value) is _error(want["error"]), caught.value
        return
    note, verified = open_note(text, verifiers)
    assert note.body == want["body"]
    assert [_key(v) for v in verified] == want["verified"]
    if "signatures" in want:
        assert [[s.name, f"{s.key_id:08x}"] for s in note.signatures] == want["signatures"]
    assert note.text() == text  # nothing is lost or re-spelled


@pytest.mark.parametrize("path", SIGN, ids=_ids(SIGN))
def test_sign_note_vector(path: Path) -> None:
    case = _load(path)
    signers = [NoteSigner.from_skey(s) for s in case["skeys"]]
    body: str | Note = (
        parse_note(case["existing_note"]) if "existing_note" in case else case["body"]
    )
    assert sign_note(body, signers) == case["want_note"]


@pytest.mark.parametrize("path", PARSE, ids=_ids(PARSE))
def test_parse_note_vector(path: Path) -> None:
    case = _load(path)
    note = parse_note(case["note"])
    assert note.body == case["want"]["body"]
    assert [[s.name, f"{s.key_id:08x}"] for s in note.signatures] == case["want"]["signatures"]


@pytest.mark.parametrize("path", VKEY, ids=_ids(VKEY))
def test_vkey_vector(path: Path) -> None:
    case = _load(path)
    want = case["want"]
    if "error" in want:
        with pytest.raises(errors.NoteKeyError):
            NoteVerifier.from_vkey(case["vkey"])
        return
    verifier = NoteVerifier.from_vkey(case["vkey"])
    assert (verifier.name, f"{verifier.key_id:08x}") == (want["name"], want["key_id"])
    assert verifier.vkey == case["vkey"]


@pytest.mark.parametrize("path", SKEY, ids=_ids(SKEY))
def test_skey_vector(path: Path) -> None:
    case = _load(path)
    want = case["want"]
    if "error" in want:
        with pytest.raises(errors.NoteKeyError):
            NoteSigner.from_skey(case["skey"])
        return
    signer = NoteSigner.from_skey(case["skey"])
    assert (signer.name, f"{signer.key_id:08x}") == (want["name"], want["key_id"])
    assert signer.vkey == want["vkey"]
    assert signer.skey == case["skey"]


# --- keys ------------------------------------------------------------------------------


def test_from_vkey_rejects_every_proper_substring_and_every_byte_increment() -> None:
    # Go's TestNewVerifier: no mangling of a valid vkey is accepted.
    for i in range(len(PETER_VKEY) + 1):
        for j in range(i + 1, len(PETER_VKEY) + 1):
            if (i, j) != (0, len(PETER_VKEY)):
                with pytest.raises(errors.NoteKeyError):
                    NoteVerifier.from_vkey(PETER_VKEY[i:j])
    for i in range(len(PETER_VKEY)):
        mangled = PETER_VKEY[:i] + chr(ord(PETER_VKEY[i]) + 1) + PETER_VKEY[i + 1 :]
        with pytest.raises(errors.NoteKeyError):
            NoteVerifier.from_vkey(mangled)


def test_from_skey_rejects_every_proper_substring_and_every_byte_increment() -> None:
    # Go's TestNewSigner.
    for i in range(len(PETER_SKEY) + 1):
        for j in range(i + 1, len(PETER_SKEY) + 1):
            if (i, j) != (0, len(PETER_SKEY)):
                with pytest.raises(errors.NoteKeyError):
                    NoteSigner.from_skey(PETER_SKEY[i:j])
    for i in range(len(PETER_SKEY)):
        mangled = PETER_SKEY[:i] + chr(ord(PETER_SKEY[i]) + 1) + PETER_SKEY[i + 1 :]
        with pytest.raises(errors.NoteKeyError):
            NoteSigner.from_skey(mangled)


def test_generated_key_round_trips_through_skey_and_vkey() -> None:
    signer = NoteSigner.generate("example.com/log")
    again = NoteSigner.from_skey(signer.skey)
    assert again.vkey == signer.vkey
    verifier = NoteVerifier.from_vkey(signer.vkey)
    assert verifier == signer.verifier()
    assert (verifier.name, verifier.key_id) == (signer.name, signer.key_id)
    line = signer.sign("hi\n")
    assert line.startswith("\u2014 example.com/log ") and line.endswith("\n")
    verifier.verify(b"hi\n", signer.signature("hi\n").sig)


def test_signer_repr_does_not_show_the_secret_key() -> None:
    signer = NoteSigner.from_skey(PETER_SKEY)
    assert "AYEKFALV" not in repr(signer)
    assert repr(signer) == "NoteSigner(PeterNeumann+c74f20a3)"


@pytest.mark.parametrize(
    "name", ["", "a b", "a+b", "tab\there", "nl\n", "nbsp\u00a0x", "em\u2003x"]
)
def test_invalid_key_names_are_refused(name: str) -> None:
    assert not is_valid_key_name(name)
    with pytest.raises(errors.NoteKeyError):
        NoteSigner(name, Ed25519PrivateKey.generate())


def test_verifier_verify_raises_on_a_bad_or_short_signature() -> None:
    signer = NoteSigner.from_skey(PETER_SKEY)
    verifier = signer.verifier()
    sig = signer.signature(TEXT).sig
    verifier.verify(TEXT.encode(), sig)
    with pytest.raises(errors.NoteSignatureError):
        verifier.verify(TEXT.encode() + b"x", sig)
    with pytest.raises(errors.NoteSignatureError) as caught:
        verifier.verify(TEXT.encode(), sig[:63])
    assert (caught.value.expected, caught.value.found) == (64, 63)


# --- opening: which keys count ----------------------------------------------------------


def _peter_note() -> str:
    return sign_note(TEXT, [NoteSigner.from_skey(PETER_SKEY)])


def test_open_note_with_an_empty_verifier_list_is_an_error_not_a_pass() -> None:
    with pytest.raises(errors.NoteKeyError):
        open_note(_peter_note(), [])


def test_open_note_with_the_same_verifier_twice_is_fine() -> None:
    peter = NoteVerifier.from_vkey(PETER_VKEY)
    _, verified = open_note(_peter_note(), [peter, NoteVerifier.from_vkey(PETER_VKEY)])
    assert verified == [peter]


def test_open_note_refuses_two_different_keys_with_one_name_and_key_id() -> None:
    # A real 32-bit key id collision is expensive to find; force one.
    impostor = NoteVerifier("PeterNeumann", Ed25519PrivateKey.generate().public_key())
    impostor.key_id = 0xC74F20A3
    with pytest.raises(errors.NoteKeyError):
        open_note(_peter_note(), [NoteVerifier.from_vkey(PETER_VKEY), impostor])


def test_unknown_key_sharing_only_the_name_or_only_the_key_id_is_ignored() -> None:
    # c2sp.org/signed-note: verifiers MUST ignore signatures from unknown keys,
    # even if they share a name or ID (but not both) with a known key.
    same_name = NoteSignature("PeterNeumann", 0xC74F20A4, bytes(64))
    same_id = NoteSignature("Peter", 0xC74F20A3, bytes(64))
    note = parse_note(_peter_note())
    note.signatures += [same_name, same_id]
    _, verified = open_note(note.text(), [NoteVerifier.from_vkey(PETER_VKEY)])
    assert [_key(v) for v in verified] == ["PeterNeumann+c74f20a3"]


def test_signed_by_two_keys_verifies_with_either_pinned() -> None:
    a, b = NoteSigner.generate("a.example/log"), NoteSigner.generate("b.example/witness")
    text = sign_note("body\n", [a, b])
    for pinned in ([a.verifier()], [b.verifier()], [a.verifier(), b.verifier()]):
        _, verified = open_note(text, pinned)
        assert set(verified) == set(pinned)


def test_pinned_key_bad_signature_fails_even_if_another_pinned_key_is_good() -> None:
    a, b = NoteSigner.generate("a.example/log"), NoteSigner.generate("b.example/witness")
    note = parse_note(sign_note("body\n", [a, b]))
    bad = note.signatures[1]
    note.signatures[1] = NoteSignature(bad.name, bad.key_id, bytes([bad.sig[0] ^ 1]) + bad.sig[1:])
    with pytest.raises(errors.NoteSignatureError):
        open_note(note.text(), [a.verifier(), b.verifier()])
    _, verified = open_note(note.text(), [a.verifier()])  # b unknown: its signature is ignored
    assert verified == [a.verifier()]


def test_verify_note_reports_expected_and_found_keys() -> None:
    note = parse_note(_peter_note())
    other = NoteSigner.generate("other").verifier()
    with pytest.raises(errors.UnverifiedNoteError) as caught:
        verify_note(note, [other])
    assert caught.value.expected == [_key(other)]
    assert caught.value.found == ["PeterNeumann+c74f20a3"]


# --- limits ------------------------------------------------------------------------------


def _unknown_lines(count: int) -> str:
    return "".join(NoteSignature("unknown", i, bytes(64)).line() for i in range(count))


def test_one_hundred_signature_lines_are_accepted_one_hundred_and_one_are_not() -> None:
    base = _peter_note()
    peter = [NoteVerifier.from_vkey(PETER_VKEY)]
    open_note(base + _unknown_lines(MAX_SIGNATURES - 1), peter)
    with pytest.raises(errors.MalformedNoteError):
        open_note(base + _unknown_lines(MAX_SIGNATURES), peter)


def test_note_of_16_kib_is_accepted_one_byte_more_is_not() -> None:
    signer = NoteSigner.from_skey(PETER_SKEY)
    overhead = len(sign_note("\n", [signer]).encode()) - 1
    filler = "x" * (MAX_NOTE_BYTES - overhead - 1)
    text = sign_note(filler + "\n", [signer])
    assert len(text.encode()) == MAX_NOTE_BYTES
    open_note(text, [signer.verifier()])
    with pytest.raises(errors.MalformedNoteError):
        sign_note("y" + filler + "\n", [signer])
    too_big = ("y" + filler + "\n") + "\n" + signer.sign("y" + filler + "\n")
    with pytest.raises(errors.MalformedNoteError) as caught:
        open_note(too_big, [signer.verifier()])
    assert str(MAX_NOTE_BYTES + 1) in str(caught.value.found)
    wide = "\u00e9" * (MAX_NOTE_BYTES // 2) + "\n"  # fewer characters than 16 Ki, more bytes
    with pytest.raises(errors.MalformedNoteError) as caught:
        open_note(wide + "\n" + signer.sign(wide), [signer.verifier()])
    assert isinstance(caught.value.found, int) and caught.value.found > MAX_NOTE_BYTES
    with pytest.raises(errors.MalformedNoteError):
        open_note(too_big.encode(), [signer.verifier()])


def test_parse_note_refuses_a_signature_of_fewer_than_five_bytes() -> None:
    short = base64.b64encode(b"\x00\x00\x00\x01").decode()
    with pytest.raises(errors.MalformedNoteError):
        parse_note(f"{TEXT}\n\u2014 PeterNeumann {short}\n")


def test_parse_note_refuses_a_lone_surrogate() -> None:
    with pytest.raises(errors.MalformedNoteError):
        parse_note("\ud800" + _peter_note())


# --- signing -----------------------------------------------------------------------------


@pytest.mark.parametrize("body", ["", "no newline", "a\x00b\n", "tab\there\n"])
def test_sign_note_refuses_a_body_a_note_cannot_carry(body: str) -> None:
    with pytest.raises(errors.MalformedNoteError):
        sign_note(body, [NoteSigner.from_skey(PETER_SKEY)])


def test_sign_note_needs_a_signer_and_refuses_one_key_twice() -> None:
    signer = NoteSigner.from_skey(PETER_SKEY)
    with pytest.raises(errors.NoteKeyError):
        sign_note(TEXT, [])
    with pytest.raises(errors.NoteKeyError):
        sign_note(TEXT, [signer, NoteSigner.from_skey(PETER_SKEY)])


def test_body_with_empty_lines_and_dash_lines_round_trips() -> None:
    # The signatures start after the LAST empty line; the body may look like anything.
    body = "a\n\n\u2014 fake 0000\n\nb\n"
    signer = NoteSigner.generate("k")
    note, _ = open_note(sign_note(body, [signer]), [signer.verifier()])
    assert note.body == body


_BODY_CHARS = st.characters(codec="utf-8", min_codepoint=0x20)


@settings(max_examples=60, deadline=None)
@given(lines=st.lists(st.text(_BODY_CHARS, max_size=40), min_size=1, max_size=5))
def test_sign_then_open_round_trips(lines: list[str]) -> None:
    body = "\n".join(lines) + "\n"
    signer = NoteSigner.from_skey(PETER_SKEY)
    text = sign_note(body, [signer])
    note, verified = open_note(text, [signer.verifier()])
    assert note.body == body and verified == [signer.verifier()]
    assert parse_note(note.text()) == note


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300)))
def test_parse_note_raises_only_malformed_note_error(data: bytes | str) -> None:
    try:
        note = parse_note(data)
    except errors.MalformedNoteError:
        return
    text = data if isinstance(data, str) else data.decode()
    assert note.text() == text


@settings(max_examples=200, deadline=None)
@given(position=st.integers(min_value=0), bit=st.integers(min_value=0, max_value=7))
def test_any_single_bit_flip_of_a_signed_note_is_refused(position: int, bit: int) -> None:
    # Only one key signed, and it is pinned: no flip anywhere may still verify.
    raw = bytearray(_peter_note().encode())
    raw[position % len(raw)] ^= 1 << bit
    with pytest.raises(errors.NoteError):
        open_note(bytes(raw), [NoteVerifier.from_vkey(PETER_VKEY)])


def test_vkey_whose_base64_holds_a_plus_splits_at_the_first_two_plus_signs() -> None:
    """docs/protocol.md §7: name, key id, then a base64 key that may itself contain '+'."""
    for seed in range(256):
        signer = NoteSigner(
            "example.com/log", Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)
        )
        if "+" in signer.vkey.split("+", 2)[2]:
            break
    verifier = NoteVerifier.from_vkey(signer.vkey)
    assert (verifier.name, verifier.key_id) == ("example.com/log", signer.key_id)
    assert verifier.vkey == signer.vkey
    assert "+" in signer.vkey.split("+", 2)[2]
