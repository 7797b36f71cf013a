"""Custody from a tag's scans (cloud/trace.py): where the item was, and when."""

from __future__ import annotations

from cloud.trace import custody
from protocol.record import ZERO_PREV, Scan

UID = bytes.fromhex("04a23c5a1b6f80")


def scan(t: int, action: int, place: str, ref: str | None = None) -> Scan:
    return Scan(
        boot=1, seq=0, time=t, tq=3, prev=ZERO_PREV, uid=UID, action=action, place=place, ref=ref
    )


def test_after_a_load_the_item_is_in_the_vehicle_its_ref_names_until_the_next_scan() -> None:
    stays = custody(
        [
            ("rd-a", scan(100, 1, "packhouse")),
            ("rd-a", scan(200, 2, "packhouse", ref="truck:NL-1")),
            ("rd-b", scan(900, 3, "dc:dock")),
            ("rd-c", scan(950, 4, "dc:cold-room", ref="ignored: not a load")),
            ("rd-b", scan(2000, 5, "dc:dock")),
        ]
    )
    assert [(s.location, s.start, s.end, s.reader) for s in stays] == [
        ("packhouse", 100, 200, "rd-a"),
        ("truck:NL-1", 200, 900, "rd-a"),
        ("dc:dock", 900, 950, "rd-b"),
        ("dc:cold-room", 950, 2000, "rd-c"),
        ("dc:dock", 2000, 2000, "rd-b"),  # the last scan ends the trace
    ]


def test_a_load_without_a_ref_stays_at_the_loading_place() -> None:
    stays = custody([("rd-a", scan(100, 2, "dock-1")), ("rd-b", scan(300, 3, "dock-2"))])
    assert [s.location for s in stays] == ["dock-1", "dock-2"]
