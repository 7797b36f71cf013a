"""When a device is overdue: its expected upload interval, and the offline deadline.

A logger sleeps between uploads and disconnects from the broker each time
(the firmware publishes ``offline`` on its state topic as it goes to sleep),
so neither MQTT presence nor a fixed delay says that a device is gone. A
device is **offline** when nothing came from it for ``missed`` of its own
upload intervals plus ``grace`` seconds (docs/decisions.md D30).

The interval is not in any signed record or message (the board's ``upload``
setting lives in its config.json), so it comes from, in this order:

1. the operator's per-device setting (``[dashboard.upload_intervals]``);
2. the device's observed cadence: the median gap between the starts of its
   last uploads (at least ``MIN_GAPS`` of them), never below
   ``MIN_INTERVAL``. Records closer than ``SESSION_GAP`` seconds belong to
   one upload, so a batch of a hundred records is one upload, not a hundred;
3. the default (``[dashboard] upload_interval``, the firmware's 3600 s).

Times are the gateway's clock (when records arrived), never the devices'.
After a restart, nobody is overdue before ``missed`` intervals have passed
since the restart: uploads made while the gateway was down were not seen.

Interface::

    c = UploadCadence(default=3600, intervals={"tl-1": 600}, missed=2, grace=300)
    c.seen(device, now) -> bool              # activity; True when it starts an upload
    c.interval(device) -> (seconds, source)  # source "configured" | "observed" | "default"
    c.deadline(device, since) -> int | None  # when it becomes offline
    c.last(device) -> int | None
    c.snapshot() -> dict; c.restore(snapshot)   # JSON, kept with the alert state
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["MIN_GAPS", "MIN_INTERVAL", "SESSION_GAP", "UploadCadence"]

SESSION_GAP = 30  # s of silence that separate two uploads
MIN_INTERVAL = 60  # s: the floor of an observed interval
MIN_GAPS = 3  # gaps seen before the observed cadence is trusted
KEEP = 8  # gaps kept per device


@dataclass
class _Device:
    last: int  # gateway time of the latest activity
    start: int  # gateway time the current upload began
    gaps: list[int] = field(default_factory=list)  # between upload starts, newest last


class UploadCadence:
    """Per-device upload timing, on the gateway's clock. Not thread-safe (the engine locks)."""

    def __init__(
        self,
        default: int = 3600,
        intervals: Mapping[str, int] | None = None,
        *,
        missed: int = 2,
        grace: int = 300,
    ) -> None:
        if default < 1 or missed < 1 or grace < 0:
            raise ValueError("upload interval and missed uploads must be >= 1, grace >= 0")
        self.default = int(default)
        self.intervals = {str(k): int(v) for k, v in (intervals or {}).items()}
        self.missed = int(missed)
        self.grace = int(grace)
        self._devices: dict[str, _Device] = {}

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._devices))

    def seen(self, device: str, now: int) -> bool:
        """Something came from ``device`` at ``now``; True when it starts a new upload."""
        d = self._devices.get(device)
        if d is None:
            self._devices[device] = _Device(now, now)
            return True
        if now < d.last:  # the clock stepped back: keep the latest
            return False
        new = now - d.last >= SESSION_GAP
        if new:
            d.gaps = [*d.gaps, now - d.start][-KEEP:]
            d.start = now
        d.last = now
        return new

    def last(self, device: str) -> int | None:
        d = self._devices.get(device)
        return None if d is None else d.last

    def interval(self, device: str) -> tuple[int, str]:
        """The expected upload interval of ``device`` and where it comes from."""
        if device in self.intervals:
            return self.intervals[device], "configured"
        d = self._devices.get(device)
        if d is not None and len(d.gaps) >= MIN_GAPS:
            return max(MIN_INTERVAL, int(statistics.median(d.gaps))), "observed"
        return self.default, "default"

    def deadline(self, device: str, since: int) -> int | None:
        """When ``device`` counts as offline: ``missed`` intervals plus ``grace`` after
        its latest activity, or after ``since`` (the engine's start) if that is later."""
        d = self._devices.get(device)
        if d is None:
            return None
        interval, _ = self.interval(device)
        return max(d.last, since) + self.missed * interval + self.grace

    def snapshot(self) -> dict[str, Any]:
        return {dev: asdict(d) for dev, d in self._devices.items()}

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        for dev, d in snapshot.items():
            self._devices[str(dev)] = _Device(
                int(d["last"]), int(d["start"]), [int(g) for g in d["gaps"]][-KEEP:]
            )
