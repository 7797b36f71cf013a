"""The attack suite's register: every attack test says who attacks, what they try
and which code or status refuses it; ``python -m tests.attacks.table`` renders
the register into docs/security.md (tests/attacks/test_table.py keeps the
committed table equal to the generated one).

    @attack(
        "record-replay",
        group="device and transport",
        attacker="anyone on the network",
        tries="publishes a genuine record a second time",
        refused_by="ack of the stored copy; no second leaf (`duplicate`)",
        recorded="counted as a duplicate; the log holds one leaf",
    )
    def test_replayed_record_is_stored_once(...): ...

``refused_by`` names the exact verdict reason, quarantine reason, exit status,
HTTP status or device event code; ``recorded`` says where the refusal is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import pytest

F = TypeVar("F", bound=Callable[..., object])

GROUPS = (
    "device and transport",
    "gateway input",
    "log and ledger",
    "bundle and verdict",
    "cloud API",
    "tags",
    "firmware updates",
)


@dataclass(frozen=True)
class Attack:
    id: str
    group: str
    attacker: str
    tries: str
    refused_by: str
    recorded: str
    test: str  # "tests/attacks/test_x.py::test_name"


ATTACKS: dict[str, Attack] = {}


def attack(
    id: str, *, group: str, attacker: str, tries: str, refused_by: str, recorded: str
) -> Callable[[F], F]:
    if group not in GROUPS:
        raise ValueError(f"attack {id}: unknown group {group!r} (one of {GROUPS})")

    def deco(fn: F) -> F:
        module = fn.__module__.replace(".", "/") + ".py"
        test = f"{module}::{fn.__name__}"  # type: ignore[attr-defined]
        if id in ATTACKS and ATTACKS[id].test != test:
            raise ValueError(f"attack {id} registered twice ({ATTACKS[id].test}, {test})")
        ATTACKS[id] = Attack(id, group, attacker, tries, refused_by, recorded, test)
        return pytest.mark.attack(fn)  # type: ignore[no-any-return]

    return deco
