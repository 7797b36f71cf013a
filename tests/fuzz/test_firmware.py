"""The firmware's ack and command parsers against hostile messages, in both interpreters.

Under CPython (hypothesis): arbitrary bytes, mutations of what a real gateway
sends (acks of queued records, settings, calibration, time and update
commands), and messages with a *valid* MAC over arbitrary or generated
payloads (a compromised or buggy gateway, or a leaked ack key: the parsing
behind the MAC must hold too). For each, tests/fuzz/fw_receive.py checks that
``ct_record.verify_mac0`` raises only ``MacError`` (with a message) and that the
device's receive path (uplink, then logger) raises nothing at all.

Under the real MicroPython (wasm, tests/firmware/harness.py): the same script
runs a fixed corpus of :data:`MP_CORPUS` mutated messages (half of them
re-MACed so they reach the map decoder and the command handling), in batches
(one ``runPython`` chunk each, so the wasm heap is collected between them), on
a 1 MiB heap. A MemoryError there fails the run like any other escape.
"""

from __future__ import annotations

import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import cose
from tests.firmware import harness as fw
from tests.fuzz.harness import ARTIFACTS, FUZZ, TRIED, Target, attempt, mutate, mutations
from tests.fuzz.test_structured import _cbor, payload_maps
from tests.soak import scale

for _p in (fw.LIB, fw.SIM, fw.FAKES):
    if str(_p) not in sys.path:
        sys.path.append(str(_p))

from tests.fuzz import fw_receive  # noqa: E402

MP_CORPUS = scale(500, 20000)
MP_BATCH = 50
GENUINE = fw_receive.genuine(fw_receive.Device())
_RECEIVE = Target("fw_receive", ())  # the receive path may raise nothing


def _receive(on_cmd: bool, msg: bytes) -> None:
    why = fw_receive.one(fw_receive.Device(), on_cmd, msg)
    if why is not None:
        raise AssertionError(f"device receive path: {why}")


def test_genuine_messages_are_accepted():
    for on_cmd, msg in GENUINE:
        assert fw_receive.check_mac0(msg) is not None
        dev = fw_receive.Device()
        events = dev.receive(on_cmd, msg)
        assert events and events[0][1] is not None, (on_cmd, msg.hex(), events)


@FUZZ
@given(st.booleans(), st.binary(max_size=600))
def test_arbitrary_bytes(on_cmd, msg):
    attempt(_RECEIVE, _receive, on_cmd, msg)


@FUZZ
@given(st.booleans(), mutations([m for _, m in GENUINE]))
def test_mutated_gateway_messages(on_cmd, msg):
    attempt(_RECEIVE, _receive, on_cmd, msg)


def _remac(payload: bytes) -> bytes:
    return cose.mac0(payload, "gw-1", fw_receive.KEY)


@FUZZ
@given(st.booleans(), st.binary(max_size=400))
def test_valid_mac_over_arbitrary_payloads(on_cmd, payload):
    attempt(_RECEIVE, _receive, on_cmd, _remac(payload))


@FUZZ
@given(st.booleans(), payload_maps(), st.integers(0, 2**32 + 1))
def test_valid_mac_over_generated_maps(on_cmd, m, counter):
    m = {k: v for k, v in m.items() if k < 64}
    m[1] = counter if on_cmd else m.get(1, 0)
    attempt(_RECEIVE, _receive, on_cmd, _remac(_cbor(m)))


_edge_ints = st.one_of(
    st.integers(-(2**64), 2**64 - 1),
    st.integers(-20000, 700000),
    st.sampled_from([0, -1, 1, 10, 86400, 7 * 86400, 15000, -10000, 2**31 - 1, 2**32 - 1]),
)
_points = st.sampled_from([8, 16, 0, 4, 12, 24]).flatmap(
    lambda n: st.lists(st.integers(-(2**31), 2**31 - 1), min_size=n // 4, max_size=n // 4).map(
        lambda v: b"".join(x.to_bytes(4, "big", signed=True) for x in v)
    )
)
command_maps = st.dictionaries(
    st.integers(10, 22) | st.integers(0, 40),
    _edge_ints | _points | st.binary(max_size=40) | st.text(max_size=8),
    max_size=10,
)


@FUZZ
@given(command_maps, st.integers(1, 2**32 - 1))
def test_valid_mac_over_generated_commands(m, counter):
    """Settings (10-14), time (15), calibration (16-19) and update offers (20-22)."""
    m[1] = counter
    attempt(_RECEIVE, _receive, True, _remac(_cbor(m)))


#: Messages claiming 2^32 .. 2^64 - 1 bytes or entries (test_limits.py checks them
#: under CPython); they open the MicroPython corpus.
CLAIMS = [
    (False, b"\xd1\x84\x5a\xff\xff\xff\xff"),
    (False, b"\xd1\x84\x5b" + b"\xff" * 8),
    (True, _remac(b"\xbb" + b"\xff" * 8)),
    (True, _remac(b"\xa2\x01\x05\x12\x5b" + b"\xff" * 8)),
    (True, _remac(b"\xa2\x01\x05\x12\x7a\xff\xff\xff\xff")),
]


def corpus(n: int, seed: int = 12) -> list[str]:
    """``n`` lines "A hex" / "C hex": the claims above, then mutations of the genuine
    messages, half of them with the mutation applied to the payload and the MAC made anew."""
    rng = random.Random(seed)
    out = [("C " if c else "A ") + m.hex() for c, m in CLAIMS]
    for i in range(n - len(out)):
        on_cmd, msg = GENUINE[i % len(GENUINE)]
        if i % 2:
            payload = cose.parse_mac0(msg).payload
            msg = _remac(mutate(rng, payload))
        else:
            msg = mutate(rng, msg)
        out.append(("C " if on_cmd else "A ") + msg.hex())
    return out


def test_claimed_lengths_are_refused_by_the_device():
    for on_cmd, msg in CLAIMS:
        assert fw_receive.check_mac0(msg) is None
        attempt(_RECEIVE, _receive, on_cmd, msg)


_TRIED = re.compile(r"FUZZ-TRIED (\d+) FAILED (\d+)")


def test_micropython_survives_a_mutated_corpus(tmp_path):
    try:
        fw.node()
    except RuntimeError as e:
        pytest.skip(str(e))
    data = tmp_path / "data"
    data.mkdir()
    (data / "corpus.txt").write_text("\n".join(corpus(MP_CORPUS)) + "\n")
    script = tmp_path / "fw_fuzz.py"
    chunks = [Path(fw_receive.__file__).read_text(encoding="utf-8")]
    chunks += [
        f"run_corpus('/fuzz/corpus.txt', {i}, {MP_BATCH})\n" for i in range(0, MP_CORPUS, MP_BATCH)
    ]
    script.write_text("\n# mp_run: split\n".join(chunks))
    cmd = fw.micropython_command(script, heap=1 << 20)
    cmd[-1:-1] = ["--put", f"{data}=/fuzz"]
    proc = subprocess.run(
        cmd, cwd=fw.ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    found = _TRIED.findall(proc.stdout)
    assert proc.returncode == 0 and found, proc.stdout[-3000:] + proc.stderr[-3000:]
    tried, failed = map(int, found[-1])
    TRIED[("fw_receive", "micropython")] += tried
    assert failed == 0, "\n".join(x for x in proc.stdout.splitlines() if x.startswith("FAIL"))[
        :4000
    ]
    assert tried == MP_CORPUS
    assert ARTIFACTS  # the counts go where the others go
