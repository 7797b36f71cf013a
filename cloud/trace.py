"""The trace of one tagged item: where it was, who watched its temperature.

The custody of a tag follows from the readers' scans of it (§2.3), in time
order. After each scan the item is at the scan's ``place``, except after a
``load``: then it is in the vehicle or container the scan's ``ref`` names
(the operator enters it at loading; without one, the loading place). It stays
there until the next scan; the last scan ends the trace.

A logger *held* the item while it was at the place the logger is registered
for (§2.5 field 44). The trace bundle holds the tag's scans and, for each
stay, the records of the loggers that held it during that stay
(gateway/proofs.py ``bundle_for_tag``); stays without a logger are gaps in
the temperature evidence and are reported as such.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.proofs import ProofSource, bundle_for_tag, tag_scans
from gateway.store import Store
from protocol.bundle import Bundle
from protocol.record import Scan

LOAD = 2
ACTIONS = {1: "commission", 2: "load", 3: "unload", 4: "receive", 5: "ship", 6: "sell"}


@dataclass
class Stay:
    """The item at ``location`` from ``start`` to ``end`` (Unix s), after ``scan``."""

    location: str
    start: int
    end: int
    scan: Scan
    reader: str
    loggers: list[str] = field(default_factory=list)


def custody(scans: list[tuple[str, Scan]]) -> list[Stay]:
    """Stays from ``(reader, scan)`` pairs in time order (see the module docstring)."""
    stays: list[Stay] = []
    for k, (reader, scan) in enumerate(scans):
        where = scan.ref if scan.action == LOAD and scan.ref else scan.place
        end = scans[k + 1][1].time if k + 1 < len(scans) else scan.time
        stays.append(Stay(where, scan.time, end, scan, reader))
    return stays


def trace_bundle(
    store: Store, tree: ProofSource, origin: str, uid: bytes
) -> tuple[Bundle, list[Stay]]:
    """The tag's trace bundle and its custody, with the loggers of each stay."""
    scans = [(rec.signer, scan) for rec, scan in tag_scans(store, uid)]
    stays = custody(scans)
    loggers = [d for d in store.devices().values() if d.role == 1 and d.state == 1]
    holders: list[tuple[str, int, int]] = []
    for stay in stays:
        if stay.end <= stay.start:
            continue
        stay.loggers = sorted(d.id for d in loggers if d.place == stay.location)
        holders += [(dev, stay.start, stay.end) for dev in stay.loggers]
    return bundle_for_tag(store, tree, origin, uid, holders), stays
