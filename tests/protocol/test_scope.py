"""Registry scopes (protocol/scope.py, docs/protocol.md §1 "Pattern", §10 "Scopes")."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.scope import authority, pattern_matches, specificity


@pytest.mark.parametrize(
    ("pattern", "text", "want"),
    [
        ("tl-1", "tl-1", True),
        ("tl-1", "tl-10", False),
        ("tl-1", "tl-", False),
        ("*", "", True),
        ("*", "anything at all", True),
        ("**", "", True),
        ("tl-*", "tl-", True),
        ("tl-*", "tl-7f3a21", True),
        ("tl-*", "rd-7f3a21", False),
        ("tl-*", "xtl-1", False),
        ("*:dock-*", "dc-rotterdam:dock-3", True),
        ("*:dock-*", "dc-rotterdam:room-3", False),
        ("dc-rotterdam:*", "dc-rotterdam:", True),
        ("dc-rotterdam:*", "dc-rotterdam", False),
        ("0950600013435*", "09506000134352", True),
        ("0950600013435*", "09506000134360", False),
        ("a*a", "a", False),
        ("a*a", "aa", True),
        ("a*a", "aba", True),
        ("a*b*c", "abc", True),
        ("a*b*c", "acb", False),
        ("a*b*c", "aXbYbZc", True),
        ("*ab*ab*", "abab", True),
        ("*ab*ab*", "aba", False),
        ("*x", "xxx", True),
        ("x*", "", False),
        # nothing but * is special: regular-expression and glob characters match themselves
        ("a.b", "a.b", True),
        ("a.b", "axb", False),
        ("[ab]", "a", False),
        ("[ab]", "[ab]", True),
        ("a?", "ab", False),
        ("a+", "aa", False),
        ("(x)|y", "y", False),
        ("\\d*", "\\d1", True),
        ("^$", "", False),
        ("é*", "été", True),
    ],
)
def test_pattern_matches(pattern: str, text: str, want: bool) -> None:
    assert pattern_matches(pattern, text) is want


def reference(pattern: str, text: str) -> bool:
    regex = ".*".join(re.escape(piece) for piece in pattern.split("*"))
    return re.fullmatch(regex, text, re.DOTALL) is not None


@given(st.text("ab*", min_size=1, max_size=8), st.text("ab", max_size=10))
@settings(max_examples=2000)
def test_pattern_matches_agrees_with_a_regex_reference(pattern: str, text: str) -> None:
    assert pattern_matches(pattern, text) is reference(pattern, text)


@given(st.text(min_size=1, max_size=12), st.text(max_size=12))
@settings(max_examples=500)
def test_pattern_matches_any_characters(pattern: str, text: str) -> None:
    assert pattern_matches(pattern, text) is reference(pattern, text)
    assert pattern_matches(pattern.replace("*", ""), pattern.replace("*", ""))


def test_specificity_counts_characters_other_than_star() -> None:
    assert [specificity(p) for p in ("*", "tl-*", "**", "a*b*c", "09506000134352")] == [
        0,
        3,
        0,
        3,
        14,
    ]


SCOPES = {
    "acme": ["*"],
    "brand": ["0950600013435*"],
    "dc": ["dc-rotterdam:*", "dc-rotterdam:dock-*"],
    "other-dc": ["dc-*"],
    "twin-a": ["shared-*"],
    "twin-b": ["shared-?", "shared-*"],
}


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("09506000134352", "brand"),  # 13 characters beat the catch-all
        ("12345678901231", "acme"),
        ("dc-rotterdam:dock-4", "dc"),  # one registry, two patterns: no tie
        ("dc-amsterdam:dock-4", "other-dc"),
        ("shared-x", None),  # two registries tie at 7
        ("shared-?", "twin-b"),  # the literal ? is more specific
        ("", "acme"),
    ],
)
def test_authority_is_the_most_specific_registry(text: str, want: str | None) -> None:
    assert authority(SCOPES, text) == want


def test_authority_without_a_match_or_with_empty_scopes_is_none() -> None:
    assert authority({"a": ["tl-*"], "b": []}, "rd-1") is None
    assert authority({}, "tl-1") is None
    assert authority({"a": []}, "tl-1") is None


def test_a_tie_below_the_best_does_not_matter() -> None:
    scopes = {"a": ["x*"], "b": ["x*"], "c": ["xy*"]}
    assert authority(scopes, "xyz") == "c"
    assert authority(scopes, "xz") is None
