"""The state of a statement chain over an interval (docs/protocol.md §12.5)."""

from __future__ import annotations

import pytest

from protocol.chainstate import ChainState, StatementChain, chain_state
from protocol.record import Reading
from tests.protocol.traces import REG, TRUCK, Signer


def test_chain_state_pieces_and_what_is_shown():
    reg = Signer(REG, boot=0)
    s0 = reg.bind(TRUCK, 100, "a")
    s1 = reg.bind(TRUCK, 200, "b")
    s2 = reg.bind(TRUCK, 200, "c")
    s3 = reg.bind(TRUCK, 400, None)
    s4 = reg.bind(TRUCK, 500, None)
    all_ = [s4, s2, s0, s3, s1]
    assert chain_state(all_, 150, 450) == ChainState(
        [(s0, 150, 200), (s2, 200, 400), (s3, 400, 450)], 450
    )
    assert chain_state(all_, 50, 150) == ChainState([(None, 50, 100), (s0, 100, 150)], 150)
    assert chain_state(all_, 10, 20) == ChainState([(None, 10, 20)], 20)
    # closed exactly at b
    assert chain_state([s0, s1, s2, s3], 250, 400) == ChainState([(s2, 250, 400)], 400)
    # the run ends: shown up to the last statement's time
    assert chain_state([s0, s1, s2], 150, 450) == ChainState([(s0, 150, 200)], 200)
    assert chain_state([s0, s2, s3], 150, 450) == ChainState([], 150)
    # cseq 0 missing and nothing at or before a: nothing shown
    assert chain_state([s1, s2, s3], 150, 450) == ChainState([], 150)
    assert chain_state([], 150, 450) == ChainState([], 150)
    with pytest.raises(ValueError):
        chain_state(all_, 5, 5)


def test_one_index_answers_many_intervals_like_fresh_ones():
    reg = Signer(REG, boot=0)
    chain = [reg.bind(TRUCK, t, d) for t, d in ((0, "a"), (10, None), (10, "b"), (30, "a b"))]
    indexed = StatementChain(chain)
    for a in range(-5, 40, 3):
        for b in range(a + 1, 45, 4):
            assert indexed.state(a, b) == chain_state(list(reversed(chain)), a, b)
            state = indexed.state(a, b)
            assert all(s < e for _, s, e in state.pieces)
            ends = [a] + [e for _, _, e in state.pieces]
            assert [s for _, s, _ in state.pieces] == ends[:-1]  # contiguous from a
            assert ends[-1] == state.shown_until


def test_records_that_are_not_statements_are_ignored():
    reg = Signer(REG, boot=0)
    s0 = reg.bind(TRUCK, 0, "a")
    s1 = reg.bind(TRUCK, 100, "a")
    reading = Signer("tl-1").sign(Reading, 0, temp=1)
    assert chain_state([s0, reading, s1], 10, 20) == ChainState([(s0, 10, 20)], 20)
