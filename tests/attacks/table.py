"""The attack table of docs/security.md, generated from the register (tests/attacks/registry.py).

    python -m tests.attacks.table           # rewrites the table in docs/security.md
    python -m tests.attacks.table --check   # exit 1 when the committed table differs

Every ``tests/attacks/test_*.py`` module is imported, so that its ``@attack`` decorators
fill :data:`~tests.attacks.registry.ATTACKS`; the rows are written grouped in the order of
:data:`~tests.attacks.registry.GROUPS`, in register order within a group, between the
markers ``<!-- attacks:begin -->`` and ``<!-- attacks:end -->``.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from tests.attacks.registry import ATTACKS, GROUPS, Attack

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DOC = ROOT / "docs" / "security.md"
BEGIN, END = "<!-- attacks:begin -->", "<!-- attacks:end -->"


def load() -> dict[str, Attack]:
    """Import every attack module; the register, filled."""
    for path in sorted(HERE.glob("test_*.py")):
        importlib.import_module(f"tests.attacks.{path.stem}")
    return ATTACKS


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def render(attacks: dict[str, Attack]) -> str:
    """The table, markers excluded: one section per group that has attacks."""
    out: list[str] = []
    for group in GROUPS:
        rows = [a for a in attacks.values() if a.group == group]
        if not rows:
            continue
        out += [f"#### {group[0].upper()}{group[1:]}", ""]
        out.append("| attack | attacker | tries to | refused by | recorded in | test |")
        out.append("|--------|----------|----------|------------|-------------|------|")
        for a in rows:
            path, name = a.test.split("::")
            link = f"[`{name}`](../{path})"
            cells = (f"`{a.id}`", a.attacker, a.tries, a.refused_by, a.recorded)
            out.append("| " + " | ".join(_cell(c) for c in cells) + f" | {link} |")
        out.append("")
    return "\n".join(out)


def splice(doc: str, table: str) -> str:
    """``doc`` with the text between the markers replaced by ``table``."""
    start, end = doc.find(BEGIN), doc.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{DOC.name} needs the markers {BEGIN} and {END}, in that order")
    return doc[: start + len(BEGIN)] + "\n" + table + "\n" + doc[end:]


def main(argv: list[str]) -> int:
    doc = DOC.read_text(encoding="utf-8")
    new = splice(doc, render(load()))
    if "--check" in argv:
        if new != doc:
            print(f"{DOC.relative_to(ROOT)}: the attack table is stale", file=sys.stderr)
            return 1
        return 0
    if new != doc:
        DOC.write_text(new, encoding="utf-8")
    print(f"{DOC.relative_to(ROOT)}: {len(ATTACKS)} attacks")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
