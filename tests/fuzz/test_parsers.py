"""Every parser of tests/fuzz/targets.py against arbitrary bytes and against
mutations of its genuine inputs (hypothesis), under the rules of
tests/fuzz/harness.py: only the documented errors escape, with a message and a
documented code, within the time and memory limits.

Allowed errors per parser: the protocol parsers (record payload, COSE_Sign1,
COSE_Mac0, the three Merkle proof checks, checkpoint, cosignature) raise only
protocol.errors.VerificationError subclasses whose ``code`` is named in
docs/protocol.md; the SUN parser only cloud.sun.SunError (a ValueError) with
code malformed, invalid or unknown_tag; the firmware's ack check only
ct_record.MacError and its map decoder only ct_cbor.CBORError (both
ValueError).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.harness import FUZZ, attempt, mutations
from tests.fuzz.targets import TARGETS

NAMES = sorted(TARGETS)


@pytest.mark.parametrize("name", NAMES)
def test_genuine_inputs_pass(name):
    entry = TARGETS[name]
    for seed in entry.seeds:
        assert attempt(entry.target, entry.run, seed) is None, (name, seed)


@pytest.mark.parametrize("name", NAMES)
@FUZZ
@given(data=st.binary(max_size=4096))
def test_arbitrary_bytes_are_refused_cleanly(name, data):
    entry = TARGETS[name]
    attempt(entry.target, entry.run, data)


@pytest.mark.parametrize("name", NAMES)
@FUZZ
@given(data=st.data())
def test_mutated_genuine_inputs_are_refused_cleanly(name, data):
    entry = TARGETS[name]
    attempt(entry.target, entry.run, data.draw(mutations(entry.seeds)))
