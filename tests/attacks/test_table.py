"""The attack table in docs/security.md is the register's (tests/attacks/table.py), and
every registered attack names a test that exists."""

from __future__ import annotations

import importlib

import pytest

from tests.attacks import table
from tests.attacks.registry import GROUPS, Attack, attack


def test_the_committed_table_is_the_generated_one():
    doc = table.DOC.read_text(encoding="utf-8")
    assert table.splice(doc, table.render(table.load())) == doc, (
        "the attack table in docs/security.md is stale: run python -m tests.attacks.table"
    )


def test_every_attack_names_a_test_function_that_exists():
    attacks = table.load()
    assert attacks, "no attack registered"
    for a in attacks.values():
        path, name = a.test.split("::")
        assert path.startswith("tests/attacks/test_") and path.endswith(".py"), a
        module = importlib.import_module(path[: -len(".py")].replace("/", "."))
        fn = getattr(module, name, None)
        assert callable(fn) and name.startswith("test_"), f"{a.id}: no test {a.test}"
        assert (table.ROOT / path).is_file(), a.test
        assert a.group in GROUPS and all((a.attacker, a.tries, a.refused_by, a.recorded)), a


def test_a_missing_test_or_a_stale_table_is_caught():
    ghost = Attack(
        "ghost",
        GROUPS[0],
        "nobody",
        "nothing",
        "`x`",
        "nowhere",
        "tests/attacks/test_table.py::test_ghost",
    )
    table.ATTACKS["ghost"] = ghost
    try:
        with pytest.raises(AssertionError, match="ghost"):
            test_every_attack_names_a_test_function_that_exists()
        with pytest.raises(AssertionError, match=r"run python -m tests\.attacks\.table"):
            test_the_committed_table_is_the_generated_one()
    finally:
        del table.ATTACKS["ghost"]


def test_an_unknown_group_is_refused():
    with pytest.raises(ValueError, match="unknown group"):
        attack("x", group="elsewhere", attacker="a", tries="t", refused_by="r", recorded="r")
