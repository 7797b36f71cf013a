"""Gateways witness each other's logs through the cloud (docs/operations.md
"Pushing to the cloud and witnessing peers"; docs/protocol.md §7.1).

Configured with ``[witness]`` (``name``, ``key_file``, ``interval``) and one
``[[witness.peers]]`` table (``origin``, ``vkey``) per peer log. For each
peer, a round:

1. fetches the cloud's latest checkpoint of the peer's log
   (``GET /v1/logs/{origin}/checkpoint``) and opens it with the peer's log key
   (:func:`protocol.checkpoint.open_checkpoint`);
2. checks it against the last (size, root) this gateway witnessed for that
   peer (store meta ``witness.peer.<origin>``): a larger size needs a
   consistency proof from the cloud (``GET .../consistency?old=A&new=B``,
   :func:`protocol.merkle.verify_consistency`); the same size needs the same
   root; a smaller size is a rollback. The first checkpoint seen is trusted on
   first use;
3. only then cosigns it (c2sp.org/tlog-cosignature with the witness key,
   :func:`protocol.checkpoint.cosign_checkpoint`), remembers it and posts the
   cosigned note to ``POST /v1/logs/{origin}/cosignatures``.

An inconsistency is **not** cosigned: the remembered state is kept, an error
is logged, the ``inconsistent`` counter goes up and an alert is raised (the
gateway's alerts: MQTT and webhook). The operator registers the witness key
with the cloud (``coldtrace gateway witness-key`` prints it; ``coldtrace cloud
witness add ORG VKEY``) - until then the cloud refuses the cosignatures.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from gateway.config import GatewayConfig, Peer
from gateway.evidence.store import SqlStore
from gateway.push import CloudLoop
from protocol.checkpoint import cosign_checkpoint, open_checkpoint
from protocol.errors import VerificationError
from protocol.keys import generate_ed25519, load_ed25519_private_key, save_private_key
from protocol.merkle import verify_consistency
from protocol.note import NoteVerifier, WitnessSigner, parse_note

__all__ = ["Inconsistent", "Witness", "load_or_create_witness_key"]

log = logging.getLogger("coldtrace.witness")

META_PREFIX = "witness.peer."


class Inconsistent(Exception):
    """A peer's checkpoint is not consistent with what this gateway witnessed."""


def load_or_create_witness_key(cfg: GatewayConfig) -> WitnessSigner:
    """The witness key (``[witness] key_file``, Ed25519 PKCS#8 PEM, 0600), made on first use."""
    path = cfg.witness.key_file
    name = cfg.witness.name
    assert name is not None
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        save_private_key(generate_ed25519(), path)
        log.info("made the witness key %s", path)
    return WitnessSigner(name, load_ed25519_private_key(path))


@dataclass
class WitnessStats:
    cosigned: int = 0
    unchanged: int = 0
    inconsistent: int = 0
    failures: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "cosigned": self.cosigned,
            "unchanged": self.unchanged,
            "inconsistent": self.inconsistent,
            "failures": dict(self.failures),
        }


class Witness(CloudLoop):
    """Witnesses ``cfg.witness.peers`` through ``cfg.cloud.url``; see the module docstring."""

    def __init__(
        self,
        cfg: GatewayConfig,
        store: SqlStore,
        *,
        alert: Callable[[str, str], None] | None = None,
        client: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        assert cfg.cloud is not None, "[cloud] is not configured"
        self.cfg = cfg
        self.store = store
        self.url = cfg.cloud.url
        self.signer = load_or_create_witness_key(cfg)
        self.peers: list[Peer] = list(cfg.witness.peers)
        self.http = client or httpx.Client(timeout=cfg.cloud.timeout)
        self.alert = alert
        self.clock = clock
        self.stats = WitnessStats()
        self._alerted: set[tuple[str, int, str]] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------

    thread_name = "coldtrace-witness"

    def run(self) -> None:
        log.info("witnessing %s as %s", [p.origin for p in self.peers], self.signer.name)
        while not self._stop.is_set():
            try:
                self.round()
            except Exception:
                log.exception("witness round failed")
            self._stop.wait(self.cfg.witness.interval)

    # --- state ----------------------------------------------------------------------

    def state(self, origin: str) -> tuple[int, bytes] | None:
        raw = self.store.get_meta(META_PREFIX + origin)
        if raw is None:
            return None
        doc = json.loads(raw)
        return int(doc["size"]), base64.b64decode(doc["root"])

    def remember(self, origin: str, size: int, root: bytes) -> None:
        doc = {"size": size, "root": base64.b64encode(root).decode(), "time": int(self.clock())}
        self.store.set_meta(META_PREFIX + origin, json.dumps(doc))

    # --- rounds ---------------------------------------------------------------------

    def round(self) -> dict[str, str]:
        """Witness every peer once; {origin: outcome} (cosigned, unchanged, none,
        inconsistent: ..., error: ...)."""
        out = {}
        for peer in self.peers:
            try:
                out[peer.origin] = self.witness(peer)
            except Inconsistent as exc:
                out[peer.origin] = f"inconsistent: {exc}"
            except (httpx.HTTPError, _Failed, VerificationError) as exc:
                reason = type(exc).__name__
                self.stats.failures[reason] = self.stats.failures.get(reason, 0) + 1
                log.warning("witnessing %s failed: %s", peer.origin, exc)
                out[peer.origin] = f"error: {exc}"
        return out

    def witness(self, peer: Peer) -> str:
        """Check and cosign the cloud's latest checkpoint of ``peer``; the outcome."""
        r = self.http.get(f"{self.url}/v1/logs/{peer.origin}/checkpoint")
        if r.status_code == 404:
            return "none"
        _ok(r)
        note = r.text
        cp = open_checkpoint(note, [NoteVerifier.from_vkey(peer.vkey)])
        if cp.origin != peer.origin:
            raise _Failed(f"the cloud served a checkpoint of {cp.origin!r} for {peer.origin!r}")
        seen = self.state(peer.origin)
        if seen is not None:
            old_size, old_root = seen
            if cp.size < old_size:
                self._inconsistent(
                    peer, cp.size, f"the cloud serves size {cp.size}, below {old_size} witnessed"
                )
            if cp.size == old_size and cp.root_hash != old_root:
                self._inconsistent(
                    peer, cp.size, f"two checkpoints of size {cp.size} with different roots"
                )
            if cp.size > old_size and old_size > 0:
                c = self.http.get(
                    f"{self.url}/v1/logs/{peer.origin}/consistency",
                    params={"old": old_size, "new": cp.size},
                )
                _ok(c)
                path = [base64.b64decode(h) for h in c.json()["path"]]
                try:
                    verify_consistency(old_size, cp.size, path, old_root, cp.root_hash)
                except VerificationError as exc:
                    self._inconsistent(
                        peer,
                        cp.size,
                        f"checkpoint {cp.size} is not consistent with {old_size}: {exc}",
                    )
        mine = (self.signer.name, self.signer.key_id)
        if (
            seen is not None
            and seen == (cp.size, cp.root_hash)
            and any((s.name, s.key_id) == mine for s in parse_note(note).signatures)
        ):
            self.stats.unchanged += 1
            return "unchanged"
        self.remember(peer.origin, cp.size, cp.root_hash)
        cosigned = cosign_checkpoint(note, self.signer, int(self.clock()))
        p = self.http.post(
            f"{self.url}/v1/logs/{peer.origin}/cosignatures", json={"note": cosigned}
        )
        _ok(p)
        self.stats.cosigned += 1
        log.info("cosigned %s at size %d", peer.origin, cp.size)
        return "cosigned"

    def _inconsistent(self, peer: Peer, size: int, message: str) -> None:
        self.stats.inconsistent += 1
        text = f"{peer.origin}: {message}; NOT cosigned (the state witnessed before is kept)"
        log.error("witness: %s", text)
        key = (peer.origin, size, message)
        if self.alert is not None and key not in self._alerted:
            self._alerted.add(key)
            try:
                self.alert("witness_inconsistent", text)
            except Exception:
                log.exception("raising the alert failed")
        raise Inconsistent(message)


class _Failed(Exception):
    pass


def _ok(r: httpx.Response) -> None:
    if r.status_code >= 300:
        try:
            doc = r.json()
            msg = f"{doc.get('error')}: {doc.get('message')}"
        except ValueError:
            msg = r.text[:300]
        raise _Failed(f"{r.request.method} {r.request.url.path}: {r.status_code} {msg}")
