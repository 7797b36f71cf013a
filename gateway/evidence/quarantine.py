"""The quarantine's caps: what of a batch's refusals is stored whole, cut, or only counted.

Every refused message is kept with its reason (gateway/evidence/ingest.py),
but anyone with a broker account can send garbage, so the quarantine is
bounded (docs/decisions.md D29):

- a message longer than ``keep_bytes`` is stored cut to its first
  ``keep_bytes`` bytes, with its full length and the SHA-256 of all of it;
- while the quarantine holds ``max_rows`` rows or ``max_bytes`` bytes of
  disk, a new refusal is not stored: it is counted in a
  summary per (cause ``full``, reason, topic device) with first and last
  seen, its bytes, and a running digest over the dropped messages
  (:class:`gateway.evidence.store.DroppedRow`);
- a message over its device's rate (reason ``rate_limited``,
  gateway/evidence/ratelimit.py) is never stored one by one: it is counted
  in a summary of cause ``rate``.

A row's disk space is estimated as 1.25 x (raw + detail + topic) + 160
bytes: SQLite's page fill, the row's other columns and its two index
entries (measured: 984 rows of 1024 kept bytes took 1.43 MB with their
indexes, 1457 bytes a row; the estimate gives 1491).

Stored rows are never deleted here; only the operator's ``rejects --purge``
deletes, and it leaves a summary of cause ``purged`` and an audit line. The
usage is read from the store at start and every ``refresh`` seconds while
full (a purge from the command line frees room); in between it is counted
here, conservatively (an identical refusal only raises a stored row's count).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from hashlib import sha256

from gateway.evidence.store import DroppedRow, RejectRow, Store, WriteBatch

__all__ = ["RATE_LIMITED", "Quarantine", "QuarantineLimits"]

log = logging.getLogger("coldtrace.gateway.quarantine")

RATE_LIMITED = "rate_limited"
_MAX_DEVICES = 1000  # distinct topic devices in the summaries; beyond, they share "*"
_DETAIL = 500  # the store keeps this much of a detail
_ROW = 160  # bytes of disk per row beyond 1.25 x its content (see the module docstring)


def disk_bytes(rows: int, content: int) -> int:
    """The estimated disk space of ``rows`` quarantine rows of ``content`` bytes in all."""
    return (content * 5 + 3) // 4 + _ROW * rows


@dataclass(frozen=True)
class QuarantineLimits:
    """``[quarantine]``: the caps (docs/operations.md)."""

    max_bytes: int = 64 << 20
    max_rows: int = 100_000
    keep_bytes: int = 2048


class Quarantine:
    """Applies :class:`QuarantineLimits` to each batch before the store commits it."""

    def __init__(
        self,
        store: Store,
        limits: QuarantineLimits | None = None,
        *,
        refresh: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.limits = limits or QuarantineLimits()
        self.refresh = refresh
        self.clock = clock
        self._usage()
        self._read = clock()
        self.full = False
        self.dropped = {"full": 0, "rate": 0}  # since start
        self._devices = {d.device for d in store.quarantine_dropped()}  # type: ignore[attr-defined]

    def _usage(self) -> None:
        rows, content = self.store.quarantine_usage()  # type: ignore[attr-defined]
        self.rows, self.bytes = rows, disk_bytes(rows, content)

    def _is_full(self, cost: int) -> bool:
        lim = self.limits
        return self.rows + 1 > lim.max_rows or self.bytes + cost > lim.max_bytes

    def admit(self, batch: WriteBatch) -> None:
        """Cut, keep or count ``batch.rejects``: what stays in ``rejects`` is stored,
        the rest goes to ``batch.dropped``."""
        if not batch.rejects:
            return
        now = self.clock()
        if self.full and now - self._read >= self.refresh:
            self._usage()
            self._read = now
        keep = self.limits.keep_bytes
        kept: list[RejectRow] = []
        groups: dict[tuple[str, str, str], DroppedRow] = {}
        was_full = self.full
        for r in batch.rejects:
            raw = r.raw
            if r.reason == RATE_LIMITED:
                cause = "rate"
            else:
                if len(raw) > keep:
                    r.size, r.digest, r.raw = len(raw), sha256(raw).digest(), raw[:keep]
                cost = disk_bytes(1, len(r.raw) + min(len(r.detail), _DETAIL) + len(r.topic))
                if not self._is_full(cost):
                    self.rows += 1
                    self.bytes += cost
                    self.full = False
                    kept.append(r)
                    continue
                self.full = True
                cause = "full"
            size = r.size if r.size is not None else len(raw)
            digest = r.digest if r.digest is not None else sha256(raw).digest()
            key = (cause, r.reason, self._device(r.topic))
            g = groups.get(key)
            if g is None:
                g = groups[key] = DroppedRow(*key, 0, 0, r.received, r.received)
            g.count += 1
            g.bytes += size
            g.first_seen = min(g.first_seen, r.received)
            g.last_seen = max(g.last_seen, r.received)
            g.digests.append(digest)
            self.dropped[cause] += 1
        if self.full and not was_full:
            lim = self.limits
            log.warning(
                "the quarantine is full (%d rows, %d bytes; limits %d rows, %d bytes): new "
                "refusals are counted, not stored (`coldtrace gateway rejects` shows them; "
                "--purge makes room)",
                self.rows,
                self.bytes,
                lim.max_rows,
                lim.max_bytes,
            )
        batch.rejects = kept
        batch.dropped.extend(groups.values())

    def _device(self, topic: str) -> str:
        parts = topic.split("/")
        dev = parts[2][:64] if len(parts) == 4 and parts[:2] == ["ct", "v1"] else ""
        if dev in self._devices:
            return dev
        if len(self._devices) >= _MAX_DEVICES:
            return "*"
        self._devices.add(dev)
        return dev

    def stats(self) -> dict[str, object]:
        """For ``status`` and metrics: usage, limits, what was dropped since start."""
        lim = self.limits
        return {
            "rows": self.rows,
            "bytes": self.bytes,
            "max_rows": lim.max_rows,
            "max_bytes": lim.max_bytes,
            "full": self.full,
            "dropped": dict(self.dropped),
        }
