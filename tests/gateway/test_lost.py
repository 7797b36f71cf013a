"""Declared losses (docs/protocol.md §5.2, §2.4 event 11 with ``lost``), through Mosquitto.

A device whose flash lost a queued record for good can never send it; it
signs a status record (event 11, detail = how many, lost = the first seq)
and the gateway, once it has stored that record, counts those seqs as
settled: the ack moves past them, the loss is listed (chain event and the
store's declared-lost table, both naming the status record), a record that
turns up later under a declared seq is stored anyway, a declaration of seqs
the device has not numbered yet is quarantined, and the declared state
survives a restart and a kill -9. The last tests drive the ingest core
without MQTT (tests/gateway/core.py) through edge cases and random arrival
orders against a model of the settled point.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections.abc import Iterator

import pytest

from gateway.evidence.store import open_store
from gateway.service import Gateway
from protocol.cli import main as coldtrace
from protocol.record import chain_hash
from tests.gateway.core import Core, rec
from tests.gateway.devices import SimDevice, make_status, open_ack, wait_for


def _stored(gw: Gateway, dev: SimDevice, seq: int) -> bool:
    return gw.store.record_by_seq(dev.id, seq) is not None


def _ack_now(gw: Gateway, dev: SimDevice) -> tuple[int, bytes]:
    """(seq, head) of the ack the gateway would publish for ``dev`` now."""
    assert dev.ack_key is not None
    msg = gw.ingestor.ack_for(dev.id, int(time.time()))
    assert msg is not None
    seq, _t, head = open_ack(msg, dev.ack_key)
    return seq, head


def test_lost_record_is_declared_acked_past_listed_and_stored_if_it_comes(
    make_broker, make_gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    dev = SimDevice("tl-lost")
    broker = make_broker([dev.id])
    env = make_gateway(broker)
    env.register(dev)
    gw = env.start_gateway()
    try:
        env.connect(dev)
        sent = [dev.reading(temp=300 + k) for k in range(6)]  # seqs 0 ... 5
        dev.lose(3)  # its flash copy became unreadable: never sent
        for raw in sent[:3] + sent[4:]:
            dev.publish(raw)
        wait_for(lambda: _stored(gw, dev, 5), 15, "records after the hole")
        wait_for(lambda: dev.acked == 2, 15, "ack below the hole")
        time.sleep(0.3)
        assert dev.acked == 2 and not gw.store.declared_losses(dev.id)  # stuck on seq 3

        decl = dev.declare_lost(3)  # seq 6: event 11, detail 1, lost 3
        dev.publish(decl)
        wait_for(lambda: dev.acked == 6, 15, "the ack past the declared seq")
        assert not dev.unacked and dev.bad_acks == 0
        assert _ack_now(gw, dev) == (6, chain_hash(decl))
        assert gw.ingestor.states[dev.id].contig == 6

        # Listed with the reason and the declaring record's seq.
        (loss,) = gw.store.declared_losses(dev.id)
        assert (loss.seq_from, loss.seq_to, loss.status_seq) == (3, 3, 6)
        assert gw.store.record(loss.status_leaf).raw == decl
        events = gw.store.chain_events(dev.id)
        (ev,) = [e for e in events if e.kind == "declared_lost"]
        assert (ev.seq_from, ev.seq_to) == (3, 3)
        assert "status record seq 6" in ev.detail and "event 11" in ev.detail
        assert any(e.kind == "gap" and (e.seq_from, e.seq_to) == (3, 3) for e in events)

        capsys.readouterr()
        assert coldtrace(["gateway", "status", "-c", str(env.config_path), "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["declared_lost"] == [
            {"device": dev.id, "from": 3, "to": 3, "status_seq": 6, "time": loss.time}
        ]
        assert coldtrace(["gateway", "status", "-c", str(env.config_path)]) == 0
        text = capsys.readouterr().out
        assert f"{dev.id}: seq 3, declared by its status record seq 6" in text

        # It was not lost after all: the record turns up and is stored like any other.
        acks = dev.acks_seen
        dev.publish(sent[3])
        wait_for(lambda: _stored(gw, dev, 3), 15, "the late record")
        assert gw.store.record_by_seq(dev.id, 3).raw == sent[3]
        wait_for(lambda: dev.acks_seen > acks, 15, "an ack after the late record")
        assert dev.acked == 6 and dev.bad_acks == 0
        assert _ack_now(gw, dev) == (6, chain_hash(decl))
        events = gw.store.chain_events(dev.id)
        (late,) = [e for e in events if e.kind == "lost_arrived"]
        assert late.seq_from == 3 and "declared lost by status record seq 6" in late.detail
        assert not any(e.kind in ("break", "conflict") for e in events)
        assert gw.store.reject_counts() == {}
        stored = gw.store.records_of(dev.id, 0, 100)
        assert [r.raw for r in stored] == [*sent, decl]

        # Later records carry on from the declaration.
        nxt = dev.reading()
        dev.publish(nxt)
        wait_for(lambda: dev.acked == 7, 15, "the next record")
    finally:
        gw.stop()


def test_ack_names_the_stored_record_below_a_declared_settled_point(
    make_broker, make_gateway
) -> None:
    """The declaration arrives before the records between the lost seq and it:
    the settled point is the declared seq 3, which has no record, so the ack
    names seq 2 with record 2's hash (§5.2), also after a restart."""
    dev = SimDevice("tl-lost-head")
    broker = make_broker([dev.id])
    env = make_gateway(broker)
    env.register(dev)
    gw = env.start_gateway()
    try:
        env.connect(dev)
        sent = [dev.reading(temp=k) for k in range(6)]
        dev.lose(3)
        decl = dev.declare_lost(3)  # seq 6
        for raw in [*sent[:3], decl]:  # 4 and 5 are still on their way
            dev.publish(raw)
        wait_for(lambda: _stored(gw, dev, 6), 15, "the declaration")
        wait_for(lambda: gw.ingestor.states[dev.id].contig == 3, 15, "settled to seq 3")
        assert _ack_now(gw, dev) == (2, chain_hash(sent[2]))
        wait_for(lambda: dev.acked == 2, 15, "ack of seq 2")
        assert dev.bad_acks == 0 and list(dev.unacked) == [4, 5, 6]
    finally:
        gw.stop()
    dev.disconnect()

    gw = env.start_gateway()  # the settled point and the ack's head come back from the store
    try:
        st = gw.ingestor.states[dev.id]
        assert (st.contig, st.ack_seq, st.above) == (3, 2, {6})
        assert st.lost == [(3, 3, 6)]
        assert _ack_now(gw, dev) == (2, chain_hash(sent[2]))
        env.connect(dev)
        dev.resend_unacked()
        wait_for(lambda: dev.acked == 6, 15, "the ack past the declaration")
        assert not dev.unacked and dev.bad_acks == 0
        assert _ack_now(gw, dev) == (6, chain_hash(decl))
    finally:
        gw.stop()


def test_declaration_survives_kill_9(make_broker, make_gateway) -> None:
    """Seq 2 is missing when the device declares seq 3 lost: the declared
    range lies above the settled point. After a kill -9 the gateway must
    still know it, so that seq 2 arriving settles everything up to seq 6."""
    dev = SimDevice("tl-lost-kill")
    broker = make_broker([dev.id])
    env = make_gateway(broker)
    env.register(dev)
    proc = env.start_process()
    log_path = env.dir / "gateway.log"
    try:
        wait_for(lambda: "subscribed to" in log_path.read_text(), 30, "gateway subscribed")
        env.connect(dev)
        sent = [dev.reading(temp=k) for k in range(6)]
        dev.lose(3)
        decl = dev.declare_lost(3)  # seq 6
        for raw in [*sent[:2], *sent[4:], decl]:  # 2 is held back
            dev.publish(raw)

        def declared() -> bool:
            store = open_store(env.cfg, readonly=True)
            try:
                return bool(store.declared_losses(dev.id))
            finally:
                store.close()

        wait_for(declared, 30, "the declaration stored")
        wait_for(lambda: dev.acked == 1, 15, "ack below seq 2")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)

        proc = env.start_process()
        wait_for(lambda: log_path.read_text().count("subscribed to") >= 2, 30, "restarted")
        dev.publish(sent[2])
        wait_for(lambda: dev.acked == 6, 20, "the ack over the declared seq")
        assert not dev.unacked and dev.bad_acks == 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    store = open_store(env.cfg)
    try:
        (loss,) = store.declared_losses(dev.id)
        assert (loss.seq_from, loss.seq_to, loss.status_seq) == (3, 3, 6)
        kinds = [e.kind for e in store.chain_events(dev.id)]
        assert kinds.count("declared_lost") == 1 and "break" not in kinds
        assert [r.seq for r in store.records_of(dev.id, 0, 100)] == [0, 1, 2, 4, 5, 6]
        assert store.signer_states()[dev.id].contig == 6
        assert store.reject_counts() == {}
    finally:
        store.close()


def test_declaration_of_seqs_not_yet_numbered_is_quarantined(
    make_broker, make_gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    dev = SimDevice("tl-lost-bad")
    broker = make_broker([dev.id])
    env = make_gateway(broker)
    env.register(dev)
    gw = env.start_gateway()
    try:
        env.connect(dev)
        for _ in range(3):
            dev.publish(dev.reading())
        wait_for(lambda: dev.acked == 2, 15, "records 0 ... 2")

        def crafted(**fields: int) -> bytes:
            """A status record under the device's next seq (the device does not keep it)."""
            return make_status(
                dev.id,
                dev.key,
                boot=dev.boot,
                seq=dev.seq,
                time_=int(time.time()),
                tq=dev.tq,
                prev=dev.prev,
                **fields,
            )

        bad = {
            "own seq": crafted(event=11, detail=1, lost=3),  # lost = own seq 3
            "above": crafted(event=11, detail=2, lost=5),
            "overlaps own": crafted(event=11, detail=2, lost=2),  # 2 ... 3
            "no count": crafted(event=11, detail=0, lost=1),
            "other event": crafted(event=2, detail=1, lost=1),
        }
        for raw in bad.values():
            dev.publish(raw)

        def refused() -> dict[bytes, str]:
            rows = gw.store.rejects(limit=100, reason="bad_declaration")
            return {r.raw: r.detail for r in rows}

        wait_for(lambda: len(refused()) == len(bad), 15, "the declarations in quarantine")
        details = refused()
        assert "own seq is 3" in details[bad["own seq"]]
        assert "seqs 5..6" in details[bad["above"]]
        assert "seqs 2..3" in details[bad["overlaps own"]]
        assert "at least 1" in details[bad["no count"]]
        assert "event 11 only" in details[bad["other event"]]
        assert all(r.seq == 3 and r.signer == dev.id for r in gw.store.rejects(limit=100))
        assert gw.store.reject_counts() == {"bad_declaration": len(bad)}
        assert not gw.store.declared_losses(dev.id)
        assert not _stored(gw, dev, 3) and dev.acked == 2

        # A valid record under that seq is still accepted, and the ack moves.
        good = dev.reading()
        dev.publish(good)
        wait_for(lambda: dev.acked == 3, 15, "the next good record")
        assert gw.store.record_by_seq(dev.id, 3).raw == good

        capsys.readouterr()
        args = ["gateway", "rejects", "-c", str(env.config_path), "--json"]
        assert coldtrace([*args, "--reason", "bad_declaration"]) == 0
        rows = json.loads(capsys.readouterr().out)
        assert len(rows) == len(bad) and {r["reason"] for r in rows} == {"bad_declaration"}
    finally:
        gw.stop()


# --- the settled point without MQTT (tests/gateway/core.py) ----------------------------------


@pytest.fixture
def core(tmp_path) -> Iterator[Core]:
    c = Core(tmp_path)
    yield c
    c.close()


def _core_ack(core: Core, dev: SimDevice) -> tuple[int, bytes] | None:
    msg = core.ingestor.ack_for(dev.id, int(time.time()))
    if msg is None:
        return None
    seq, _t, head = open_ack(msg, dev.ack_key)
    return seq, head


def test_no_ack_while_nothing_at_or_below_the_settled_point_is_stored(core: Core) -> None:
    dev = SimDevice("tl-lost-0")
    core.register(dev)
    raws = [dev.reading() for _ in range(3)]
    dev.lose(0, 1)
    decl = dev.declare_lost(0, 2)  # seq 3
    core.send(rec(dev, decl))
    assert core.ingestor.states[dev.id].contig == 1
    assert _core_ack(core, dev) is None  # seqs 0, 1 settled, no record to name
    core.reopen()
    assert core.ingestor.states[dev.id].contig == 1 and _core_ack(core, dev) is None
    core.send(rec(dev, raws[2]))
    assert _core_ack(core, dev) == (3, chain_hash(decl))


def test_declared_range_over_stored_records_and_a_second_declaration(core: Core) -> None:
    dev = SimDevice("tl-lost-over")
    core.register(dev)
    raws = [dev.reading() for _ in range(7)]  # 0 ... 6
    core.send(*(rec(dev, raws[s]) for s in (0, 1, 3, 5)))
    # The device lost 2 ... 4 from flash; the gateway has 3 already.
    decl = dev.declare_lost(2, 3)  # seq 7
    core.send(rec(dev, decl))
    st = core.ingestor.states[dev.id]
    assert (st.contig, st.ack_seq, st.above) == (5, 5, {7})
    assert _core_ack(core, dev) == (5, chain_hash(raws[5]))
    decl2 = dev.declare_lost(6)  # seq 8
    core.send(rec(dev, decl2))
    assert _core_ack(core, dev) == (8, chain_hash(decl2))
    losses = [(x.seq_from, x.seq_to, x.status_seq) for x in core.store.declared_losses(dev.id)]
    assert losses == [(6, 6, 8), (2, 4, 7)]
    # Both missing records turn up after all: stored, noted, the chain links.
    core.send(rec(dev, raws[4]), rec(dev, raws[2]))
    assert _core_ack(core, dev) == (8, chain_hash(decl2))
    events = core.store.chain_events(dev.id)
    assert sorted(e.seq_from for e in events if e.kind == "lost_arrived") == [2, 4]
    assert not any(e.kind == "break" for e in events)


@pytest.mark.parametrize("seed", range(6))
def test_settled_point_matches_a_model_in_any_arrival_order(core: Core, seed: int) -> None:
    """Random losses, declarations, late arrivals, batches and restarts: the ack
    always names the highest stored seq at or below the highest seq up to which
    every seq is stored or declared lost by a stored declaration."""
    rng = random.Random(seed)
    dev = SimDevice(f"tl-lost-m{seed}")
    core.register(dev)
    n = 24
    raws = {s: dev.reading(temp=s) for s in range(n)}
    lost = sorted(rng.sample(range(n), 6))
    runs: list[list[int]] = []
    for s in lost:
        if runs and runs[-1][-1] == s - 1:
            runs[-1].append(s)
        else:
            runs.append([s])
    decls: dict[int, tuple[int, int]] = {}
    for run in runs:
        seq = dev.seq
        decls[seq] = (run[0], run[-1])
        raws[seq] = dev.declare_lost(run[0], len(run))
    pending = [s for s in raws if s not in lost]
    rng.shuffle(pending)
    late = rng.sample(lost, 2)  # these were not lost after all: sent at the end
    pending += late
    stored: set[int] = set()
    while pending:
        k = rng.randint(1, 4)
        batch, pending = pending[:k], pending[k:]
        core.send(*(rec(dev, raws[s]) for s in batch))
        stored.update(batch)
        if rng.random() < 0.2:
            core.reopen()
        settled = set(stored)
        for by, (a, b) in decls.items():
            if by in stored:
                settled.update(range(a, b + 1))
        point = -1
        while point + 1 in settled:
            point += 1
        head = max((s for s in stored if s <= point), default=-1)
        st = core.ingestor.states[dev.id]
        assert (st.contig, st.ack_seq) == (point, head), (seed, batch)
        expect = None if head < 0 else (head, chain_hash(raws[head]))
        assert _core_ack(core, dev) == expect, (seed, batch)
    assert core.ingestor.states[dev.id].contig == max(raws)
    assert not any(e.kind == "break" for e in core.store.chain_events(dev.id, limit=1000))
    assert core.store.reject_counts() == {}
