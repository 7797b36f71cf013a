"""Per-device rate limits on ingest: a token bucket per topic device, before any check.

Anyone with a broker account can publish as fast as the network allows;
signature checks cost the gateway about 100 us a message and the
quarantine's room is shared. So each message is charged, before the
expensive checks, to a token bucket (``[ingest] device_rate`` messages/s,
``device_burst`` deep):

- the bucket of its topic device (``ct/v1/{dev}/rec`` or ``/state``) when
  ``dev`` is registered (a key in the registry);
- otherwise one bucket shared by every topic that names no known device
  (unregistered accounts, malformed topics), so they cannot crowd out the
  registered ones.

A message over its bucket is refused as ``rate_limited``: PUBACKed to the
broker, counted in the quarantine's ``rate`` summary with its digest
(gateway/evidence/quarantine.py), never stored. It is not acked to the
device either (the ack covers stored records only), so a registered device
keeps it and sends it again (firmware/lib/ct_uplink.py resends its window).
Messages from the outboxes (registry records, released quarantine) are not
charged. The defaults sit far above what the firmware sends (docs/decisions.md D29).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Container, Sequence

from gateway.transport.mqtt import Inbound

__all__ = ["DeviceRateLimiter"]

_SHARED = ""  # the bucket of topics that name no registered device


class DeviceRateLimiter:
    """Token buckets keyed by topic device; :meth:`split` sorts a batch."""

    def __init__(
        self, rate: float, burst: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = float(rate)
        self.burst = float(burst)
        self.clock = clock
        self._buckets: dict[str, list[float]] = {}  # key -> [tokens, last refill]
        self.limited: dict[str, int] = {}  # messages refused, per bucket key, since start

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def split(
        self, msgs: Sequence[Inbound], known: Container[str]
    ) -> tuple[list[Inbound], list[Inbound]]:
        """(allowed, over the limit), each in arrival order."""
        if not self.enabled:
            return list(msgs), []
        now = self.clock()
        allowed: list[Inbound] = []
        over: list[Inbound] = []
        buckets, rate, burst = self._buckets, self.rate, self.burst
        for m in msgs:
            if m.outbox_id or getattr(m, "release_id", 0):
                allowed.append(m)
                continue
            key = _key(m.topic, known)
            b = buckets.get(key)
            if b is None:
                b = buckets[key] = [burst, now]
            elif now > b[1]:
                b[0] = min(burst, b[0] + (now - b[1]) * rate)
                b[1] = now
            if b[0] >= 1.0:
                b[0] -= 1.0
                allowed.append(m)
            else:
                over.append(m)
                self.limited[key or "*"] = self.limited.get(key or "*", 0) + 1
        return allowed, over


def _key(topic: str, known: Container[str]) -> str:
    parts = topic.split("/")
    if len(parts) == 4 and parts[0] == "ct" and parts[1] == "v1" and parts[2] in known:
        return parts[2]
    return _SHARED
