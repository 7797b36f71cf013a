"""Verification workers killed with kill -9: restarted, their chunks checked again.

A dead worker must neither hang the gateway nor stop it, and nothing may be
accepted without its signature checked: the chunks the dead worker had not
answered go to its successor. A worker that keeps dying (5 times in a
minute) is a fatal error with a plain message instead.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from gateway.evidence.checks import Accepted, IngestSettings, Refused
from gateway.evidence.store import open_store
from gateway.evidence.verifiers import ProcessVerifier
from gateway.transport.mqtt import Inbound
from tests.gateway.core import Core
from tests.gateway.devices import SimDevice, wait_for
from tests.gateway.test_crash import check_exactly_once, publish_stream, resend_until_acked


def forged(raw: bytes) -> bytes:
    """The record with its signature's last byte changed (a bad signature)."""
    return raw[:-1] + bytes([raw[-1] ^ 1])


def batch(dev: SimDevice, n: int) -> tuple[list[Inbound], set[int]]:
    """``n`` records of ``dev``, every 7th with a forged signature; the forged positions."""
    msgs, bad = [], set()
    for i in range(n):
        raw = dev.reading(keep=False)
        if i % 7 == 3:
            raw, _ = forged(raw), bad.add(i)
        msgs.append(Inbound(f"ct/v1/{dev.id}/rec", raw, i + 1, 1, time.time()))
    return msgs, bad


def check(results: list, bad: set[int]) -> None:
    for i, r in enumerate(results):
        if i in bad:
            assert isinstance(r, Refused) and r.reason == "bad_signature", i
        else:
            assert isinstance(r, Accepted), (i, r)


def kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not Path(f"/proc/{pid}").exists() or _zombie(pid), 10, f"{pid} dead")


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.fixture
def core(tmp_path: Path):
    c = Core(tmp_path)
    yield c
    c.close()


def test_a_killed_worker_is_restarted_and_its_chunks_checked_again(core: Core, caplog) -> None:
    dev = SimDevice("tl-w1")
    core.register(dev)
    v = ProcessVerifier(2, IngestSettings())
    try:
        first = v.pids
        msgs, bad = batch(dev, 400)
        handles = v.submit(msgs, core.registry, int(time.time()))
        msgs2, bad2 = batch(dev, 100)
        handles2 = v.submit(msgs2, core.registry, int(time.time()))  # two batches in flight
        kill(first[0])
        check([r for h in handles for r in h()], bad)
        check([r for h in handles2 for r in h()], bad2)
        assert v.restarts == 1 and v.pids[0] != first[0] and v.pids[1] == first[1]
        assert f"verification process 0 (pid {first[0]}) died with exit code -9" in caplog.text
        msgs3, bad3 = batch(dev, 50)  # the successor knows the keys
        check([r for h in v.submit(msgs3, core.registry, int(time.time())) for r in h()], bad3)
    finally:
        v.close()


def test_a_worker_that_keeps_dying_is_a_fatal_error(core: Core) -> None:
    dev = SimDevice("tl-w2")
    core.register(dev)
    v = ProcessVerifier(1, IngestSettings(), max_restarts=3, restart_window=60)
    try:
        for _ in range(2):
            msgs, bad = batch(dev, 20)
            handles = v.submit(msgs, core.registry, int(time.time()))
            kill(v.pids[0])
            check([r for h in handles for r in h()], bad)
        assert v.restarts == 2
        handles = v.submit(batch(dev, 20)[0], core.registry, int(time.time()))
        kill(v.pids[0])
        with pytest.raises(RuntimeError, match="died 3 times within 60 s"):
            handles[0]()
    finally:
        v.close()


def test_the_gateway_keeps_ingesting_when_workers_are_killed(make_broker, make_gateway) -> None:
    devs = [SimDevice(f"tl-wk{i}") for i in range(3)]
    broker = make_broker([d.id for d in devs])
    env = make_gateway(broker, batch_size=50, verify_workers=2)
    env.register(*devs)
    gw = env.start_gateway()
    try:
        wait_for(lambda: gw.log.size == len(devs), 20, "registrations logged")
        env.connect(*devs)
        stop = threading.Event()
        result: dict = {}
        publisher = threading.Thread(
            target=lambda: result.setdefault("sent", publish_stream(devs, 800, 0.004, stop))
        )
        publisher.start()
        for n in (1, 2):
            time.sleep(0.4)
            kill(gw.pipeline.verifier.pids[0])
            wait_for(lambda n=n: gw.pipeline.verifier.restarts == n, 20, f"restart {n}")
        publisher.join(120)
        resend_until_acked(devs)
        # A forged record after the kills is refused: nothing passes unchecked.
        bad = forged(devs[0].reading(keep=False))
        devs[0].publish(bad)
        wait_for(
            lambda: [r.raw for r in gw.store.rejects()] == [bad], 20, "the forged record refused"
        )
        assert gw.pipeline.error is None and gw.mqtt.connected.is_set()
        assert gw.status()["verify_restarts"] == 2
    finally:
        gw.stop()
    store = open_store(env.cfg)
    try:  # the refusal was checked above; the exactly-once check wants an empty quarantine
        assert store.purge_rejects(reason="bad_signature", actor="test")["rows"] == 1
    finally:
        store.close()
    check_exactly_once(env.cfg, result["sent"], devs)


def test_a_worker_killed_while_idle_is_restarted_before_it_is_needed(
    make_broker, make_gateway
) -> None:
    broker = make_broker([])
    env = make_gateway(broker, verify_workers=2)
    gw = env.start_gateway()
    try:
        old = gw.pipeline.verifier.pids
        kill(old[1])  # no message arrives: the idle pipeline notices
        wait_for(lambda: gw.pipeline.verifier.restarts == 1, 20, "the restart")
        new = gw.pipeline.verifier.pids
        assert new[0] == old[0] and new[1] != old[1] and Path(f"/proc/{new[1]}").exists()
        assert gw.pipeline.error is None
    finally:
        gw.stop()
