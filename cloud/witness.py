"""Witnessing: the cloud's own cosignatures, and other witnesses' (docs/cloud.md §3).

The cloud is a C2SP ``tlog-cosignature`` witness: it cosigns a checkpoint
only after it has proven it consistent with everything it holds of that log
(:mod:`cloud.push` cosigns as it stores). Other witnesses - gateways that
witness each other's logs (gateway/witness.py) - fetch a checkpoint and a
consistency proof from the cloud, check them against what *they* saw before,
and post their cosignature line back. A cosignature authenticates itself: the
cloud stores a line only when it verifies under a witness key the operator
registered, over a checkpoint the cloud holds.
"""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import Connection

from cloud.logs import LogRow, add_cosignature, checkpoint_at
from protocol.checkpoint import parse_checkpoint
from protocol.errors import VerificationError
from protocol.keys import generate_ed25519, load_ed25519_private_key, save_private_key
from protocol.note import WitnessSigner, parse_note, verify_cosignatures

__all__ = ["CosignatureRefused", "accept_cosignatures", "load_or_create_witness"]


class CosignatureRefused(ValueError):
    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def load_or_create_witness(path: Path, name: str) -> WitnessSigner:
    """The cloud's witness key at ``path`` (PKCS#8 PEM, mode 0600), made on first use."""
    if not path.exists():
        key = generate_ed25519()
        save_private_key(key, path)
        return WitnessSigner(name, key)
    return WitnessSigner(name, load_ed25519_private_key(path))


def accept_cosignatures(conn: Connection, log: LogRow, note_text: str) -> list[str]:
    """Store the cosignature lines on ``note_text`` by registered witnesses; return
    their "name+keyid". The note's body must be a checkpoint the cloud holds."""
    from cloud.orgs import witness_verifiers

    try:
        note = parse_note(note_text)
        cp = parse_checkpoint(note.body)
    except VerificationError as e:
        raise CosignatureRefused(f"not a checkpoint note: {e}") from None
    if cp.origin != log.origin:
        raise CosignatureRefused(f"the checkpoint is of {cp.origin!r}, not {log.origin!r}")
    held = checkpoint_at(conn, log.id, cp.size)
    if held is None or bytes(held.root) != cp.root_hash:
        raise CosignatureRefused(
            f"the cloud holds no checkpoint of {log.origin} of size {cp.size} with that root",
            409,
        )
    try:
        cosigs = verify_cosignatures(note, witness_verifiers(conn))
    except VerificationError as e:
        raise CosignatureRefused(f"a registered witness's line does not verify: {e}") from None
    if not cosigs:
        raise CosignatureRefused("no line of the note is by a witness registered here")
    lines = {(s.name, s.key_id): s.line() for s in note.signatures}
    stored = []
    for c in cosigs:
        label = f"{c.witness.name}+{c.witness.key_id:08x}"
        line = lines[(c.witness.name, c.witness.key_id)]
        add_cosignature(conn, log.id, cp.size, label, line, c.time or int(time.time()))
        stored.append(label)
    return stored
