"""Authenticated commands to devices (docs/protocol.md §5.3), queued on disk.

A command is a COSE_Mac0 under the device's ack key with payload
``{1: counter, 2: gateway time, ...fields}``. The command line signs one and
writes it to ``<data_dir>/commands/pending/``; the running gateway publishes
every pending command on ``ct/v1/{dev}/cmd`` (QoS 1, not retained) once it
is connected, then moves it to ``sent/``. The broker keeps it in the
device's persistent session (the firmware connects with clean_session =
False) until the device next wakes and connects. The command line never
connects to the broker itself: with ``use_username_as_clientid`` a second
connection under the gateway's user name would take over the gateway's
session.

The counter must be strictly above the last one the device accepted. It is
``max(last + 1, now)``: Unix seconds keep it increasing even when this
directory is lost (a restored backup, a new gateway host), and the stored
last value keeps two commands in the same second apart.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from protocol import cbor
from protocol.cose import mac0

__all__ = ["CommandError", "CommandSpool", "Pending", "command_payload"]

_U32 = 0xFFFFFFFF


class CommandError(Exception):
    pass


def command_payload(counter: int, now: int, fields: Mapping[int, int | bytes]) -> bytes:
    """The §5.3 payload map: 1 counter, 2 gateway time, then the command's keys."""
    if not 0 < counter <= _U32:
        raise CommandError(f"command counter {counter} out of range")
    if 1 in fields or 2 in fields:
        raise CommandError("keys 1 and 2 are the counter and the time")
    return cbor.encode({1: counter, 2: now, **fields})


@dataclass(frozen=True)
class Pending:
    path: Path
    device: str
    counter: int
    raw: bytes

    @property
    def topic(self) -> str:
        return f"ct/v1/{self.device}/cmd"


class CommandSpool:
    def __init__(self, data_dir: Path) -> None:
        self.dir = Path(data_dir) / "commands"
        self.pending_dir = self.dir / "pending"
        self.sent_dir = self.dir / "sent"
        self._counters = self.dir / "counters.json"

    def _last(self) -> dict[str, int]:
        try:
            got: dict[str, int] = json.loads(self._counters.read_text())
            return got
        except FileNotFoundError:
            return {}

    def queue(
        self,
        device: str,
        ack_key: bytes,
        gateway_id: str,
        fields: Mapping[int, int | bytes],
        now: int | None = None,
    ) -> Pending:
        """Sign a command for ``device`` and leave it for the gateway to publish."""
        now = int(time.time()) if now is None else now
        last = self._last()
        counter = max(last.get(device, 0) + 1, now)
        raw = mac0(command_payload(counter, now, fields), gateway_id, ack_key)
        self.pending_dir.mkdir(parents=True, exist_ok=True)
        path = self.pending_dir / f"{device}.{counter}.cose"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(raw)
        os.replace(tmp, path)
        last[device] = counter
        tmp = self._counters.with_suffix(".tmp")
        tmp.write_text(json.dumps(last, sort_keys=True))
        os.replace(tmp, self._counters)
        return Pending(path, device, counter, raw)

    def pending(self) -> list[Pending]:
        """Queued commands, oldest counter first per device."""
        if not self.pending_dir.is_dir():
            return []
        out = []
        for p in self.pending_dir.glob("*.cose"):
            device, _, counter = p.stem.rpartition(".")
            out.append(Pending(p, device, int(counter), p.read_bytes()))
        return sorted(out, key=lambda c: (c.device, c.counter))

    def drain(self, publish: Callable[[str, bytes], None]) -> int:
        """Publish every pending command and move it to ``sent/``; returns how many."""
        done = 0
        for c in self.pending():
            publish(c.topic, c.raw)
            self.sent_dir.mkdir(parents=True, exist_ok=True)
            os.replace(c.path, self.sent_dir / c.path.name)
            done += 1
        return done
