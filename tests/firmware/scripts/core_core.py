"""ct_core: boot/seq/prev filled in, the chain holds across power cuts, the
full-storage policy, and real ES256 records end to end."""

import hashlib

import ct_cbor
import ct_p256
import ct_record
from ct_core import Core, CoreError
from ct_queue import Queue
from ct_state import State
from fakefs import Disk, FakeFs, PowerCut
from fwrun import main, raises

DEV = "tl-7f3a21"


class CountingSigner:
    def __init__(self, real=None):
        self.real = real
        self.calls = 0

    def sign_digest(self, h):
        self.calls += 1
        if self.real is not None:
            return self.real.sign_digest(h)
        return hashlib.sha256(h).digest() * 2


def make(fs, signer=None, **qkw):
    st = State(fs, "ct/state")
    q = Queue(fs, "ct/q", qkw.get("segments", 6), qkw.get("seg_size", 600),
              qkw.get("reserve", 0), 0)
    c = Core(DEV, signer or CountingSigner(), st, q)
    c.start()
    return c


def fields(rec):
    _, p, _ = ct_record.parse_sign1(rec)
    return ct_cbor.decode_map(p)


def reading(c, t=450):
    return c.record({1: 1, 4: 1790000000, 5: 3, 10: t})


def queued(c):
    out = []
    cur = c.queue.head()
    while cur is not None:
        r, cur = c.queue.read(cur)
        if r is None:
            break
        out.append(r)
    return out


def check_chain(recs):
    for a, b in zip(recs, recs[1:]):  # noqa: B905, RUF007 (MicroPython)
        fa, fb = fields(a), fields(b)
        assert fb[3] == fa[3] + 1, (fa[3], fb[3])
        assert fb[6] == ct_record.chain_link(a)
        assert fb[2] >= fa[2]  # boot never decreases


def test_real_records_verify_and_chain():
    s = ct_p256.Signer(bytes(range(1, 33)))
    c = make(FakeFs(), s)
    recs = []
    for t in (450, -1850, 720):
        r = reading(c, t)
        assert c.enqueue(r)
        recs.append(r)
    f = fields(recs[0])
    assert (f[2], f[3], f[6], f[10]) == (1, 0, bytes(16), 450)
    check_chain(recs)
    for r in recs:
        prot, p, sig = ct_record.parse_sign1(r)
        tbs = b"\x84\x6aSignature1" + ct_cbor.head_bytes(2, len(prot)) + bytes(prot) + \
            b"\x40" + ct_cbor.head_bytes(2, len(p)) + bytes(p)
        ct_p256.verify(s.public_key(), tbs, bytes(sig))


def test_record_then_enqueue_one_at_a_time():
    c = make(FakeFs())
    a = reading(c)
    b = reading(c)  # replaces a, same seq: a was never queued
    assert fields(a)[3] == fields(b)[3] == 0
    raises(CoreError, c.enqueue, a)
    assert c.enqueue(reading(c))
    assert not c.enqueue(None)
    raises(ct_record.RecordError, c.record, {1: 1, 4: 0, 5: 0, 10: 99999})


def test_full_queue_refuses_without_signing_or_consuming_a_seq():
    sig = CountingSigner()
    c = make(FakeFs(), sig, segments=3, seg_size=600, reserve=200)
    n = 0
    while True:
        r = reading(c)
        if r is None:
            break
        assert c.enqueue(r)
        n += 1
    calls = sig.calls
    assert reading(c) is None and sig.calls == calls  # no signature wasted
    seq = c.state.seq
    st = c.record({1: 3, 4: 1790000000, 5: 3, 30: 5, 33: n})  # "storage full" status
    assert st is not None and c.enqueue(st) and fields(st)[3] == seq
    check_chain(queued(c))


def test_power_cut_anywhere_never_reuses_or_skips_a_seq():
    def work(fs, log):
        c = make(fs)
        for i in range(14):
            r = reading(c, i)
            log["doing"] = r
            if c.enqueue(r):
                log["ok"].append(r)
            log["doing"] = None
            if i in (5, 11):
                cur = c.queue.head()
                for _ in range(4):
                    _, cur = c.queue.read(cur)
                log["acking"] = log["acked"] + 4
                c.queue.ack(cur)
                log["acked"] += 4
                log["acking"] = None

    fs = FakeFs()
    work(fs, {"ok": [], "acked": 0, "doing": None, "acking": None})
    total = fs.steps
    for cut in range(1, total + 1):
        disk = Disk()
        log = {"ok": [], "acked": 0, "doing": None, "acking": None}
        try:  # noqa: SIM105 (no contextlib in MicroPython)
            work(FakeFs(disk, cut), log)
        except PowerCut:
            pass
        c = make(FakeFs(disk))
        before = queued(c)
        for i in range(3):
            assert c.enqueue(reading(c, 100 + i))
        after = queued(c)
        check_chain(after)
        # every confirmed, unacked record is still there, byte for byte
        for r in log["ok"][log["acked"]:]:
            if r not in after:
                # only an ack in flight may have taken it
                assert log["acking"] and fields(r)[3] < log["acking"], (cut, fields(r)[3])
        # the new records continue the chain of what survived
        if before:
            assert fields(after[len(before)])[3] == fields(before[-1])[3] + 1
        seqs = [fields(r)[3] for r in after]
        assert len(set(seqs)) == len(seqs)


if __name__ == "__main__":
    main(globals())
