"""C2SP signed notes with Ed25519 keys (https://c2sp.org/signed-note).

A signed note is a text ending in a newline, an empty line, and one or more
signature lines::

    <text, ending in \\n>
    \\n
    — <key name> <base64(4-byte key id || signature)>\\n

The dash is U+2014. The key id of an Ed25519 key (signature type 0x01) is
``SHA-256(name || 0x0A || 0x01 || public key)[:4]``, read big-endian; a key is
written as a *vkey* ``<name>+<8 hex key id>+<base64(0x01 || public key)>`` and,
privately, as the ``PRIVATE+KEY+<name>+<8 hex key id>+<base64(0x01 || seed)>``
*skey* of Go's ``golang.org/x/mod/sumdb/note``, so keys made with Go tooling
work here and the other way round.

Verification follows the specification and, where it leaves a choice, Go's
reference implementation:

- a signature whose (key name, key id) matches no given verifier is ignored —
  verifiers MUST ignore unknown keys, even one sharing a name *or* an id with a
  known key (c2sp.org/signed-note, "Signatures");
- a signature from a known key that does not verify rejects the whole note
  (:class:`NoteSignatureError`), even when another known key's signature on it
  is good. The specification says clients SHOULD reject; Go's ``note.Open``
  returns ``InvalidSignatureError``; a note carrying a forged signature of a key
  we trust is evidence of an attack, not a note to accept;
- no verified signature at all is :class:`UnverifiedNoteError`; an empty list
  of verifiers is :class:`NoteKeyError`, never a pass.

The parser is stricter than Go's in three ways, none of which a note written by
Go's ``note.Sign`` can trip: base64 must be canonical (no stray bits in the
last character, so one signature has one spelling); one (name, key id) pair may
sign a note only once (Go silently drops repeats); and a note is at most 16 KiB
(Go bounds only the number of signatures, to 100, as we do too).

Witness cosignatures (https://c2sp.org/tlog-cosignature, v1, Ed25519;
docs/protocol.md §7.1) are signature lines of keys of signature type 0x04:
key id ``SHA-256(name || 0x0A || 0x04 || public key)[:4]``, payload ``key id
|| timestamp (8 bytes, big-endian, at most 2^63 - 1) || signature``, the
signature over ``cosignature/v1\ntime <timestamp>\n`` followed by the body.
:class:`WitnessVerifier` and :class:`WitnessSigner` are their keys;
:func:`verify_cosignatures` applies the same rules as :func:`verify_note`
(unknown keys ignored, a pinned key's failure rejects the note) and leaves the
quorum to the caller. No timestamp is compared with the clock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Self

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol.errors import (
    MalformedNoteError,
    NoteKeyError,
    NoteSignatureError,
    UnverifiedNoteError,
)

__all__ = [
    "ALG_COSIGNATURE_V1",
    "ALG_ED25519",
    "COSIGNATURE_HEADER",
    "MAX_NOTE_BYTES",
    "MAX_SIGNATURES",
    "Cosignature",
    "Note",
    "NoteSignature",
    "NoteSigner",
    "NoteVerifier",
    "WitnessSigner",
    "WitnessVerifier",
    "cosignature_message",
    "is_valid_key_name",
    "key_id",
    "open_note",
    "parse_note",
    "sign_note",
    "verify_cosignatures",
    "verify_note",
]

ALG_ED25519 = 0x01
ALG_COSIGNATURE_V1 = 0x04  # c2sp.org/tlog-cosignature: timestamped Ed25519 cosignature
COSIGNATURE_HEADER = "cosignature/v1"
MAX_COSIGNATURE_TIME = 2**63 - 1
MAX_NOTE_BYTES = 16 * 1024
MAX_SIGNATURES = 100

_DASH = "\u2014 "  # em dash, space: the start of every signature line
_HEX8 = re.compile(r"[0-9a-f]{8}")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")


# --- helpers ----------------------------------------------------------------------


def is_valid_key_name(name: str) -> bool:
    """Whether ``name`` may name a key: non-empty, well-formed UTF-8, no Unicode
    space, no ``+`` (c2sp.org/signed-note), and — stricter than the spec — no
    ASCII control character (a note may not contain one anyway)."""
    if not name or "+" in name:
        return False
    if any(c.isspace() or c < " " or c == "\x7f" for c in name):
        return False
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


def key_id(name: str, typed_key: bytes) -> int:
    """``SHA-256(name || 0x0A || typed_key)[:4]`` as a big-endian integer, where
    ``typed_key`` is the signature type byte followed by the public key."""
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + typed_key).digest()
    return int.from_bytes(digest[:4], "big")


def _b64decode_canonical(text: str) -> bytes | None:
    """Standard base64 with padding, in its one canonical spelling, or None."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    if base64.b64encode(raw).decode("ascii") != text:
        return None
    return raw


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _check_text(text: str, what: str) -> bytes:
    """Return the UTF-8 of ``text``; refuse what a note may not contain."""
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MalformedNoteError(f"{what} is not valid UTF-8 (lone surrogate)") from exc
    control = _CONTROL.search(text)
    if control is not None:
        raise MalformedNoteError(
            f"{what} contains a control character",
            expected="no character below U+0020 other than newline",
            found=f"U+{ord(control.group()):04X} at offset {control.start()}",
        )
    return raw


def _as_text(text: str | bytes) -> str:
    if isinstance(text, bytes):
        if len(text) > MAX_NOTE_BYTES:
            raise MalformedNoteError(
                "note too large", expected=f"<= {MAX_NOTE_BYTES} bytes", found=len(text)
            )
        try:
            return text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedNoteError(
                f"note is not valid UTF-8: {exc.reason} at byte {exc.start}"
            ) from exc
    if not isinstance(text, str):
        raise TypeError(f"a note is str or bytes, not {type(text).__name__}")
    return text


# --- the note -----------------------------------------------------------------------


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, key id, and the signature bytes after the id."""

    name: str
    key_id: int
    sig: bytes

    def line(self) -> str:
        """The signature line, ending in a newline."""
        encoded = _b64(self.key_id.to_bytes(4, "big") + self.sig)
        return f"{_DASH}{self.name} {encoded}\n"


@dataclass
class Note:
    """A parsed note: its text (``body``, ending in a newline) and its signatures
    in the order they appear. Nothing here has been verified."""

    body: str
    signatures: list[NoteSignature] = field(default_factory=list)

    def text(self) -> str:
        """The note as it is written: body, empty line, signature lines."""
        return self.body + "\n" + "".join(s.line() for s in self.signatures)


def parse_note(text: str | bytes) -> Note:
    """Split a signed note into body and signatures, checking only its form.

    Raises :class:`MalformedNoteError` unless ``text`` is valid UTF-8 of at most
    16 KiB, has no control character but newline, and ends in an empty line
    followed by 1 to 100 well-formed signature lines, no two from one
    (name, key id). The body is everything up to and including the newline
    before the *last* empty line; it may itself contain empty lines.
    """
    text = _as_text(text)
    if len(text) > MAX_NOTE_BYTES:  # at least as many bytes as characters
        raise MalformedNoteError(
            "note too large", expected=f"<= {MAX_NOTE_BYTES} bytes", found=f"{len(text)} characters"
        )
    raw = _check_text(text, "note")
    if len(raw) > MAX_NOTE_BYTES:
        raise MalformedNoteError(
            "note too large", expected=f"<= {MAX_NOTE_BYTES} bytes", found=len(raw)
        )

    split = text.rfind("\n\n")
    if split < 0:
        raise MalformedNoteError(
            "no empty line between the text and the signatures", expected="\\n\\n", found="none"
        )
    body, block = text[: split + 1], text[split + 2 :]
    if not block:
        raise MalformedNoteError("note has no signature lines", expected=">= 1", found=0)
    if not block.endswith("\n"):
        raise MalformedNoteError("last signature line does not end in a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedNoteError(
            "too many signature lines", expected=f"<= {MAX_SIGNATURES}", found=len(lines)
        )

    signatures: list[NoteSignature] = []
    seen: set[tuple[str, int]] = set()
    for number, line in enumerate(lines, start=1):
        signature = _parse_signature_line(line, number)
        if (signature.name, signature.key_id) in seen:
            raise MalformedNoteError(
                f"signature line {number}: key {signature.name}+{signature.key_id:08x} signs twice",
                expected="one signature per (key name, key id)",
                found=f"{signature.name}+{signature.key_id:08x}",
            )
        seen.add((signature.name, signature.key_id))
        signatures.append(signature)
    return Note(body, signatures)


def _parse_signature_line(line: str, number: int) -> NoteSignature:
    where = f"signature line {number}"
    if not line.startswith(_DASH):
        raise MalformedNoteError(
            f"{where} does not start with an em dash (U+2014) and a space",
            expected=_DASH,
            found=line[:2],
        )
    name, space, encoded = line[len(_DASH) :].partition(" ")
    if not space:
        raise MalformedNoteError(f"{where} has no space between key name and signature")
    if not is_valid_key_name(name):
        raise MalformedNoteError(f"{where}: invalid key name", found=name)
    raw = _b64decode_canonical(encoded)
    if raw is None:
        raise MalformedNoteError(
            f"{where}: signature is not canonical standard base64", found=encoded
        )
    if len(raw) < 5:
        raise MalformedNoteError(
            f"{where}: signature too short",
            expected=">= 5 bytes (key id and signature)",
            found=len(raw),
        )
    return NoteSignature(name, int.from_bytes(raw[:4], "big"), raw[4:])


# --- keys -----------------------------------------------------------------------------


def _parse_key_parts(
    name: str, hex_id: str, encoded: str, *, what: str, show_key: bool, alg: int = ALG_ED25519
) -> bytes:
    """Check the name, id and typed key of a vkey or skey; return the 32 key bytes.
    The id itself is checked by the caller, once the public key is known."""
    if not is_valid_key_name(name):
        raise NoteKeyError(f"{what}: invalid key name", found=name)
    if not _HEX8.fullmatch(hex_id):
        raise NoteKeyError(f"{what}: key id is not 8 lowercase hex digits", found=hex_id)
    typed = _b64decode_canonical(encoded)
    if not typed:  # None (bad base64) or empty
        shown = encoded if show_key else "(secret key not shown)"
        raise NoteKeyError(f"{what}: key is not canonical standard base64", found=shown)
    if typed[0] != alg:
        raise NoteKeyError(f"{what}: unsupported signature type", expected=alg, found=typed[0])
    if len(typed) != 33:
        raise NoteKeyError(f"{what}: an Ed25519 key is 32 bytes", expected=32, found=len(typed) - 1)
    return typed[1:]


class _NamedKey:
    """An Ed25519 public key with its name, of one signature type (``ALG``):
    what a note reader pins. Written as ``<name>+<8 hex key id>+<base64(ALG || key)>``."""

    ALG: ClassVar[int]
    WHAT: ClassVar[str]  # how errors name the key

    def __init__(self, name: str, public_key: Ed25519PublicKey) -> None:
        if not is_valid_key_name(name):
            raise NoteKeyError("invalid key name", found=name)
        self.name = name
        self.public_key = public_key
        self._typed_key = bytes([self.ALG]) + public_key.public_bytes_raw()
        self.key_id = key_id(name, self._typed_key)

    @classmethod
    def from_vkey(cls, vkey: str) -> Self:
        """Parse ``<name>+<8 lowercase hex key id>+<base64(ALG || public key)>``; the
        vkey is split at its first two ``+`` (the base64 may hold more)."""
        if not isinstance(vkey, str):
            raise NoteKeyError("a vkey is a string", found=type(vkey).__name__)
        parts = vkey.split("+", 2)
        if len(parts) != 3:
            raise NoteKeyError("vkey is not <name>+<key id>+<key>", found=vkey)
        name, hex_id, encoded = parts
        raw = _parse_key_parts(name, hex_id, encoded, what=cls.WHAT, show_key=True, alg=cls.ALG)
        verifier = cls(name, Ed25519PublicKey.from_public_bytes(raw))
        if f"{verifier.key_id:08x}" != hex_id:
            raise NoteKeyError(
                f"{cls.WHAT}: key id does not match name and key",
                expected=f"{verifier.key_id:08x}",
                found=hex_id,
            )
        return verifier

    @property
    def vkey(self) -> str:
        return f"{self.name}+{self.key_id:08x}+{_b64(self._typed_key)}"


class NoteVerifier(_NamedKey):
    """An Ed25519 verifier key (signature type 0x01) with its name: a log's key."""

    ALG = ALG_ED25519
    WHAT = "vkey"

    def verify(self, body: bytes | str, sig: bytes) -> None:
        """Check ``sig`` (without the key id) over ``body``; raise NoteSignatureError."""
        message = body.encode("utf-8") if isinstance(body, str) else body
        if len(sig) != 64:
            raise NoteSignatureError(
                f"signature by {self.name}+{self.key_id:08x} has the wrong length",
                expected=64,
                found=len(sig),
            )
        try:
            self.public_key.verify(sig, message)
        except InvalidSignature:
            raise NoteSignatureError(
                f"signature by pinned key {self.name}+{self.key_id:08x} does not verify"
            ) from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NoteVerifier):
            return NotImplemented
        return self.name == other.name and self._typed_key == other._typed_key

    def __hash__(self) -> int:
        return hash((self.name, self._typed_key))

    def __repr__(self) -> str:
        return f"NoteVerifier({self.vkey!r})"


class NoteSigner:
    """An Ed25519 signing key with its name. Keep it secret: see :attr:`skey`."""

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        if not is_valid_key_name(name):
            raise NoteKeyError("invalid key name", found=name)
        self.name = name
        self._private_key = private_key
        self._verifier = NoteVerifier(name, private_key.public_key())
        self.key_id = self._verifier.key_id

    @classmethod
    def generate(cls, name: str) -> NoteSigner:
        """A new random key for ``name``."""
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_skey(cls, skey: str) -> NoteSigner:
        """Parse Go's ``PRIVATE+KEY+<name>+<8 hex key id>+<base64(0x01 || seed)>``."""
        if not isinstance(skey, str):
            raise NoteKeyError("an skey is a string", found=type(skey).__name__)
        parts = skey.split("+", 4)
        if len(parts) != 5 or parts[0] != "PRIVATE" or parts[1] != "KEY":
            raise NoteKeyError("skey is not PRIVATE+KEY+<name>+<key id>+<key>")
        _, _, name, hex_id, encoded = parts
        seed = _parse_key_parts(name, hex_id, encoded, what="skey", show_key=False)
        signer = cls(name, Ed25519PrivateKey.from_private_bytes(seed))
        # The id is a hash of the public key: check it once the key is derived.
        if f"{signer.key_id:08x}" != hex_id:
            raise NoteKeyError(
                "skey: key id does not match name and key",
                expected=f"{signer.key_id:08x}",
                found=hex_id,
            )
        return signer

    @property
    def skey(self) -> str:
        """The private key in Go's skey format. Anyone holding it can sign."""
        seed = self._private_key.private_bytes_raw()
        return f"PRIVATE+KEY+{self.name}+{self.key_id:08x}+{_b64(bytes([ALG_ED25519]) + seed)}"

    @property
    def vkey(self) -> str:
        return self._verifier.vkey

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._verifier.public_key

    def verifier(self) -> NoteVerifier:
        return self._verifier

    def signature(self, body: str | bytes) -> NoteSignature:
        """Sign ``body`` (the note text, ending in a newline)."""
        message = body.encode("utf-8") if isinstance(body, str) else body
        return NoteSignature(self.name, self.key_id, self._private_key.sign(message))

    def sign(self, body: str | bytes) -> str:
        """The signature line for ``body``: ``— <name> <base64>\\n``."""
        return self.signature(body).line()

    def __repr__(self) -> str:
        return f"NoteSigner({self.name}+{self.key_id:08x})"


# --- witness cosignatures (c2sp.org/tlog-cosignature, Ed25519, v1) ---------------------


def _check_time(time: object) -> int:
    if type(time) is not int or not 0 <= time <= MAX_COSIGNATURE_TIME:
        raise NoteSignatureError(
            "cosignature timestamp out of range",
            expected=f"an integer in 0..{MAX_COSIGNATURE_TIME}",
            found=time,
        )
    return time


def cosignature_message(body: str | bytes, time: int) -> bytes:
    """What a witness signs: ``cosignature/v1\\ntime <time>\\n`` and the note body
    (ending in its newline, without the empty line and the signature lines)."""
    text = body.encode("utf-8") if isinstance(body, str) else body
    header = f"{COSIGNATURE_HEADER}\ntime {_check_time(time)}\n"
    return header.encode("ascii") + text


@dataclass(frozen=True)
class Cosignature:
    """A cosignature that verified: the pinned witness and its timestamp."""

    witness: WitnessVerifier
    time: int


class WitnessVerifier(_NamedKey):
    """A witness's Ed25519 cosigner key (signature type 0x04) with its name.

    Its signature lines carry ``key id (4) || timestamp (8, big-endian) ||
    Ed25519 signature (64)``; the signed message is :func:`cosignature_message`.
    """

    ALG = ALG_COSIGNATURE_V1
    WHAT = "witness vkey"

    def verify(self, body: bytes | str, sig: bytes) -> int:
        """Check a cosignature (the line's bytes after the key id: timestamp and
        signature) over ``body``; return its timestamp or raise NoteSignatureError."""
        who = f"cosignature by pinned witness {self.name}+{self.key_id:08x}"
        if len(sig) != 8 + 64:
            raise NoteSignatureError(
                f"{who} has the wrong length",
                expected="72 bytes (timestamp and Ed25519 signature)",
                found=len(sig),
            )
        time = int.from_bytes(sig[:8], "big")
        if time > MAX_COSIGNATURE_TIME:
            raise NoteSignatureError(
                f"{who}: timestamp above 2^63 - 1",
                expected=f"<= {MAX_COSIGNATURE_TIME}",
                found=time,
            )
        try:
            self.public_key.verify(sig[8:], cosignature_message(body, time))
        except InvalidSignature:
            raise NoteSignatureError(f"{who} does not verify", found=f"time {time}") from None
        return time

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WitnessVerifier):
            return NotImplemented
        return self.name == other.name and self._typed_key == other._typed_key

    def __hash__(self) -> int:
        return hash((self.name, self._typed_key))

    def __repr__(self) -> str:
        return f"WitnessVerifier({self.vkey!r})"


class WitnessSigner:
    """A witness's Ed25519 cosigning key with its name. Keep it secret.

    One key serves one witness name only: the v1 message does not commit to the
    name (c2sp.org/tlog-cosignature)."""

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        if not is_valid_key_name(name):
            raise NoteKeyError("invalid key name", found=name)
        self.name = name
        self._private_key = private_key
        self._verifier = WitnessVerifier(name, private_key.public_key())
        self.key_id = self._verifier.key_id

    @classmethod
    def generate(cls, name: str) -> WitnessSigner:
        """A new random key for ``name``."""
        return cls(name, Ed25519PrivateKey.generate())

    @property
    def vkey(self) -> str:
        return self._verifier.vkey

    def verifier(self) -> WitnessVerifier:
        return self._verifier

    def cosignature(self, body: str | bytes, time: int) -> NoteSignature:
        """Cosign ``body`` (a checkpoint body, ending in a newline) as of ``time``
        (Unix seconds, 0 … 2^63 - 1). The caller must have checked the body: a
        cosignature says the witness saw this tree consistent with all before."""
        text = body.encode("utf-8") if isinstance(body, str) else body
        if not text.endswith(b"\n"):
            raise MalformedNoteError("a cosigned body must end in a newline")
        message = cosignature_message(text, time)
        sig = time.to_bytes(8, "big") + self._private_key.sign(message)
        return NoteSignature(self.name, self.key_id, sig)

    def cosign(self, body: str | bytes, time: int) -> str:
        """The cosignature line for ``body``: ``— <name> <base64>\\n``."""
        return self.cosignature(body, time).line()

    def __repr__(self) -> str:
        return f"WitnessSigner({self.name}+{self.key_id:08x})"


def verify_cosignatures(note: Note, witnesses: Sequence[WitnessVerifier]) -> list[Cosignature]:
    """The cosignatures on ``note`` by the pinned ``witnesses``, in line order.

    Lines whose (name, key id) matches no pinned witness are ignored; a pinned
    witness's line that does not verify rejects the note (NoteSignatureError),
    as for a pinned log key. Each witness appears at most once: parse_note
    refuses a repeated (name, key id). No witnesses: an empty list.
    """
    known: dict[tuple[str, int], WitnessVerifier] = {}
    for w in witnesses:
        other = known.setdefault((w.name, w.key_id), w)
        if other != w:
            raise NoteKeyError(
                f"two different witness keys share the name and key id {w.name}+{w.key_id:08x}",
                expected="distinct (name, key id) per key",
                found=[other.vkey, w.vkey],
            )
    message = note.body.encode("utf-8")
    out: list[Cosignature] = []
    for s in note.signatures:
        witness = known.get((s.name, s.key_id))
        if witness is not None:
            out.append(Cosignature(witness, witness.verify(message, s.sig)))
    return out


# --- signing and opening -------------------------------------------------------------


def sign_note(body: str | Note, signers: Sequence[NoteSigner]) -> str:
    """Sign a text, or add signatures to a parsed note, and return the note text.

    ``body`` is the text (ending in a newline) or a :class:`Note` whose existing
    signatures are kept, first, except those by a key among ``signers``, which
    are replaced (as Go's ``note.Sign``). Adding a signature does not verify the
    existing ones: open the note first if that matters (a witness must).
    """
    if not signers:
        raise NoteKeyError("sign_note needs at least one signer")
    if isinstance(body, Note):
        text, existing = body.body, list(body.signatures)
    else:
        text, existing = body, []
    _check_text(text, "note text")
    if not text.endswith("\n"):
        raise MalformedNoteError("note text must end in a newline", found=text[-1:])

    fresh = [signer.signature(text) for signer in signers]
    new_keys = [(s.name, s.key_id) for s in fresh]
    if len(set(new_keys)) != len(new_keys):
        raise NoteKeyError("two signers with the same key name and key id")
    kept = [s for s in existing if (s.name, s.key_id) not in set(new_keys)]
    out = Note(text, kept + fresh).text()
    parse_note(out)  # never hand out a note we would refuse (size, count, names)
    return out


def _index(verifiers: Sequence[NoteVerifier]) -> dict[tuple[str, int], NoteVerifier]:
    if isinstance(verifiers, NoteVerifier) or not verifiers:
        raise NoteKeyError("no verifier keys given: an empty key set verifies nothing")
    known: dict[tuple[str, int], NoteVerifier] = {}
    for v in verifiers:
        other = known.setdefault((v.name, v.key_id), v)
        if other != v:
            raise NoteKeyError(
                f"two different keys share the name and key id {v.name}+{v.key_id:08x}",
                expected="distinct (name, key id) per key",
                found=[other.vkey, v.vkey],
            )
    return known


def verify_note(note: Note, verifiers: Sequence[NoteVerifier]) -> list[NoteVerifier]:
    """Check the signatures of ``note`` made by any of ``verifiers``.

    Returns the verifiers whose signatures verified, in signature order. Raises
    :class:`NoteSignatureError` when a known key's signature fails,
    :class:`UnverifiedNoteError` when no known key signed, :class:`NoteKeyError`
    when ``verifiers`` is empty or holds two keys with one (name, key id).
    """
    known = _index(verifiers)
    message = note.body.encode("utf-8")
    verified: list[NoteVerifier] = []
    for s in note.signatures:
        verifier = known.get((s.name, s.key_id))
        if verifier is None:
            continue  # unknown key: ignored, as the specification requires
        verifier.verify(message, s.sig)
        verified.append(verifier)
    if not verified:
        raise UnverifiedNoteError(
            "no signature from a pinned key",
            expected=sorted(f"{n}+{i:08x}" for n, i in known),
            found=[f"{s.name}+{s.key_id:08x}" for s in note.signatures],
        )
    return verified


def open_note(
    text: str | bytes, verifiers: Sequence[NoteVerifier]
) -> tuple[Note, list[NoteVerifier]]:
    """Parse a signed note and verify it; return the note and the verifiers that
    verified it. See :func:`parse_note` and :func:`verify_note` for the errors."""
    _index(verifiers)  # an empty key set is an error before anything else
    note = parse_note(text)
    return note, verify_note(note, verifiers)
