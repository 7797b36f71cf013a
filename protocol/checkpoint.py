"""Checkpoints: C2SP tlog-checkpoint bodies in signed notes (docs/protocol.md §7).

A checkpoint body is three lines, each ending in a newline::

    <origin>
    <tree size, decimal, no leading zeros>
    <root hash, standard base64 with padding>

and, in C2SP but not in ColdTrace version 1, optional non-empty extension
lines (https://c2sp.org/tlog-checkpoint). The log signs the body as a signed
note (:mod:`protocol.note`) with an Ed25519 key whose name is the origin.

Two parsers: :func:`parse_checkpoint` applies the rules of this protocol
(origin syntax of §1, no extension lines, size below 2^64 so it fits the EVM
anchor's ``uint64``), :func:`parse_c2sp_checkpoint` only those of C2SP, for
reading other ecosystems' checkpoints (Go's checksum database calls its log
``go.sum database tree``, which has spaces). Both refuse anything that does not
re-encode to the same bytes, so a parsed :class:`Checkpoint`'s :meth:`body` is
exactly the text that was signed and :func:`checkpoint_hash` can use it.

Witnesses cosign a checkpoint (c2sp.org/tlog-cosignature, §7.1):
:func:`cosign_checkpoint` adds a witness's line to a signed note, and
:func:`open_cosigned_checkpoint` returns the cosignatures of the pinned
witnesses along with the checkpoint.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from protocol.errors import (
    CheckpointOriginError,
    MalformedCheckpointError,
    UnverifiedNoteError,
)
from protocol.note import (
    Cosignature,
    NoteSigner,
    NoteVerifier,
    WitnessSigner,
    WitnessVerifier,
    parse_note,
    sign_note,
    verify_cosignatures,
    verify_note,
)

__all__ = [
    "MAX_ORIGIN_BYTES",
    "MAX_TREE_SIZE",
    "Checkpoint",
    "check_origin",
    "checkpoint_hash",
    "cosign_checkpoint",
    "open_checkpoint",
    "open_cosigned_checkpoint",
    "parse_c2sp_checkpoint",
    "parse_checkpoint",
    "sign_checkpoint",
]

MAX_ORIGIN_BYTES = 128
MAX_TREE_SIZE = 2**64 - 1  # the anchor contract's uint64 treeSize (§8.2)
HASH_SIZE = 32

_ORIGIN = re.compile(r"[\x21-\x2a\x2c-\x7e]{1,128}")  # printable ASCII, no space, no '+'
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}")


@dataclass(frozen=True)
class Checkpoint:
    """A log's signed statement: tree ``size`` and ``root_hash`` of ``origin``."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # The C2SP rules, so that body() always writes a parseable checkpoint.
        if not self.origin or not _is_single_line(self.origin):
            raise MalformedCheckpointError("origin must be one non-empty line", found=self.origin)
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 0:
            raise MalformedCheckpointError("tree size must be an integer >= 0", found=self.size)
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != HASH_SIZE:
            raise MalformedCheckpointError(
                "root hash must be 32 bytes", expected=HASH_SIZE, found=_length(self.root_hash)
            )
        for line in self.extensions:
            if not line or not _is_single_line(line):
                raise MalformedCheckpointError(
                    "extension lines must be non-empty lines", found=line
                )

    def body(self) -> str:
        """The note text: origin, size, root hash and extensions, one per line."""
        root = base64.b64encode(self.root_hash).decode("ascii")
        return "".join(
            f"{line}\n" for line in (self.origin, str(self.size), root, *self.extensions)
        )


def _is_single_line(text: str) -> bool:
    return not any(c < " " for c in text)


def _length(value: object) -> object:
    return len(value) if isinstance(value, bytes | str) else type(value).__name__


def check_origin(origin: str) -> None:
    """Raise MalformedCheckpointError unless ``origin`` follows §1: 1 to 128 bytes
    of printable ASCII with neither space nor ``+``."""
    if not isinstance(origin, str) or not _ORIGIN.fullmatch(origin):
        raise MalformedCheckpointError(
            "origin must be 1 to 128 bytes of printable ASCII without space or '+' (§1)",
            found=origin,
        )


def parse_c2sp_checkpoint(body: str) -> Checkpoint:
    """Parse a checkpoint body by the C2SP rules alone (extension lines allowed).

    Raises :class:`MalformedCheckpointError` unless the body is at least three
    newline-terminated lines: a non-empty origin, a decimal tree size without
    leading zeros below 2^64, the canonical standard base64 of a 32-byte root
    hash, then only non-empty extension lines.
    """
    if not isinstance(body, str):
        raise MalformedCheckpointError("a checkpoint body is a str", found=type(body).__name__)
    if not body.endswith("\n"):
        raise MalformedCheckpointError("checkpoint body must end in a newline")
    lines = body[:-1].split("\n")
    if len(lines) < 3:
        raise MalformedCheckpointError(
            "checkpoint body needs origin, size and root hash lines",
            expected=">= 3",
            found=len(lines),
        )
    origin, size_text, root_text, *extensions = lines
    if not origin or not _is_single_line(origin):
        raise MalformedCheckpointError(
            "origin line is empty or has a control character", found=origin
        )
    if not _DECIMAL.fullmatch(size_text):
        raise MalformedCheckpointError(
            "tree size is not ASCII decimal without leading zeros", found=size_text
        )
    size = int(size_text)
    if size > MAX_TREE_SIZE:
        raise MalformedCheckpointError("tree size too large", expected="< 2^64", found=size_text)
    try:
        root = base64.b64decode(root_text, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedCheckpointError(
            "root hash is not standard base64", found=root_text
        ) from None
    if len(root) != HASH_SIZE:
        raise MalformedCheckpointError(
            "root hash must be 32 bytes", expected=HASH_SIZE, found=len(root)
        )
    if base64.b64encode(root).decode("ascii") != root_text:
        raise MalformedCheckpointError("root hash is not canonical base64", found=root_text)
    for line in extensions:
        if not line or not _is_single_line(line):
            raise MalformedCheckpointError("extension lines must be non-empty", found=line)
    return Checkpoint(origin, size, root, tuple(extensions))


def parse_checkpoint(body: str) -> Checkpoint:
    """Parse a ColdTrace version 1 checkpoint body (§7): the C2SP rules, an
    origin as in §1, and no extension lines. Raises MalformedCheckpointError."""
    cp = parse_c2sp_checkpoint(body)
    check_origin(cp.origin)
    if cp.extensions:
        raise MalformedCheckpointError(
            "version 1 checkpoints have no extension lines", expected=0, found=len(cp.extensions)
        )
    return cp


def checkpoint_hash(cp_or_body: Checkpoint | str | bytes) -> bytes:
    """``SHA-256(body)``, what a ledger anchors (§8). A str or bytes is taken as
    the body exactly as signed; a Checkpoint is hashed through :meth:`~Checkpoint.body`."""
    if isinstance(cp_or_body, Checkpoint):
        data = cp_or_body.body().encode("utf-8")
    elif isinstance(cp_or_body, str):
        data = cp_or_body.encode("utf-8")
    else:
        data = bytes(cp_or_body)
    return hashlib.sha256(data).digest()


def sign_checkpoint(cp: Checkpoint, signer: NoteSigner) -> str:
    """Sign ``cp`` as the log and return the signed note text.

    Refuses (MalformedCheckpointError) a checkpoint that :func:`parse_checkpoint`
    would refuse, and (CheckpointOriginError) a signer whose key name is not the
    origin: a verifier would not accept it (§7).
    """
    check_origin(cp.origin)
    if cp.extensions:
        raise MalformedCheckpointError(
            "version 1 checkpoints have no extension lines", expected=0, found=len(cp.extensions)
        )
    if cp.size > MAX_TREE_SIZE:
        raise MalformedCheckpointError("tree size too large", expected="< 2^64", found=cp.size)
    if signer.name != cp.origin:
        raise CheckpointOriginError(
            "the log's key name must be the checkpoint origin",
            expected=cp.origin,
            found=signer.name,
        )
    return sign_note(cp.body(), [signer])


def open_checkpoint(note_text: str | bytes, verifiers: Sequence[NoteVerifier]) -> Checkpoint:
    """Parse and verify a signed checkpoint (§7); return the checkpoint.

    In order: the note's form (:class:`MalformedNoteError`), the body's form
    (:class:`MalformedCheckpointError`), every signature by a key in
    ``verifiers`` (:class:`NoteSignatureError` if one fails; keys not given are
    ignored), and at least one verified signature by a key whose name is the
    origin (:class:`UnverifiedNoteError` otherwise — a good witness cosignature
    alone does not make a checkpoint). An empty ``verifiers`` is NoteKeyError.
    """
    return open_cosigned_checkpoint(note_text, verifiers, ())[0]


def open_cosigned_checkpoint(
    note_text: str | bytes,
    verifiers: Sequence[NoteVerifier],
    witnesses: Sequence[WitnessVerifier],
) -> tuple[Checkpoint, list[Cosignature]]:
    """:func:`open_checkpoint`, then the cosignatures of the pinned ``witnesses``
    (§7.1): lines of other keys are ignored, a pinned witness's line that fails
    is NoteSignatureError (the note is refused). Returns the checkpoint and the
    verified cosignatures, at most one per witness; counting them against a
    quorum is the caller's business."""
    note = parse_note(note_text)
    cp = parse_checkpoint(note.body)
    verified = verify_note(note, verifiers)
    if not any(v.name == cp.origin for v in verified):
        raise UnverifiedNoteError(
            "no verified signature by a pinned key named as the origin",
            expected=cp.origin,
            found=[v.name for v in verified],
        )
    return cp, verify_cosignatures(note, witnesses)


def cosign_checkpoint(note_text: str | bytes, witness: WitnessSigner, time: int) -> str:
    """Add ``witness``'s cosignature as of ``time`` to a signed checkpoint note.

    Checks only the form of the note and of its body: a witness must first
    verify the log's signature and the consistency with what it saw before. A
    line already there from the same (name, key id) is replaced."""
    note = parse_note(note_text)
    parse_c2sp_checkpoint(note.body)
    fresh = witness.cosignature(note.body, time)
    kept = [s for s in note.signatures if (s.name, s.key_id) != (fresh.name, fresh.key_id)]
    note.signatures = [*kept, fresh]
    out = note.text()
    parse_note(out)  # never hand out a note we would refuse (size, count)
    return out
