"""The fault suite's OTA part (issue 12): an update cut at every step.

ota.py cuts the power at every filesystem step of an update (ct_ota alone)
and checks that every boot runs the factory firmware or the whole signed
release. Here the same sweep runs again to count what it did, and two more
run the logger with the real core, queue and uplink (tests/firmware/scripts
/_rig.py) and the updater, so that records are in flight while the update
is cut: an update that completes (the device ends on the release, event 12)
and a trial that never gets its ack (the device rolls back, event 14). In
every run no record is lost or doubled across the update, and every boot
runs the factory firmware or the complete release. Each test prints a line
``REL-OTA {json}`` with its counts (tests/reliability reads them).
"""

import json
import sys

import ct_app
import ct_ota
from _otadata import REL, FwClient, FwServer, Release
from _rig import CFG, DEV, KEY, Rig, payloads, readings
from fakeclock import FakeTicks
from fakefs import FakeFs
from fwrun import main
from ota import K, check_boot, fresh_disk, power_cut_at_every_step

# a release of one chunk per file: ota.py sweeps the chunked download; here
# the records in flight around the switch are what is checked
SMALL = [("ct_app.py", b"# app v2\n" * 20), ("ct_core.py", b"# core v2\n" * 20)]


class FastSigner:
    """The scripted gateway checks chains, not signatures: a stand-in for
    P-256 that keeps hundreds of runs quick under MicroPython."""

    def sign_digest(self, h):
        return bytes(h) + bytes(h)


# every step under CPython; every third under the wasm MicroPython, which is
# about five times slower (ota.py's sweep of ct_ota alone cuts every step in both)
STRIDE = 1 if sys.implementation.name == "cpython" else 3


def report(name, counts):
    counts["test"] = name
    print("REL-OTA " + json.dumps(counts))


def test_sweep_of_ota_py_counts():
    for torn in (False, True):
        stats = {}
        finals = power_cut_at_every_step(torn, stats)
        if not torn:
            assert list(finals) == [2], finals
        stats["finals"] = sorted(finals.items())
        report("ota_py_torn" if torn else "ota_py", stats)


class Device:
    """The rig with the updater of boot.py and main.py: each wake selects the
    slot to boot, then runs the logger with the updater."""

    def __init__(self, rel, upload=0):
        self.rel = rel
        self.server = FwServer(rel)
        cfg = dict(CFG)
        cfg["upload"] = upload
        self.rig = Rig(
            [500 + i for i in range(200)], size=4, cfg=cfg, disk=fresh_disk(), signer=FastSigner()
        )
        self.booted = []
        self.offering = True
        self.rig.ota = self.updater

    def updater(self, fs):
        self.booted.append(ct_ota.select(fs, "", K))  # boot.py
        u = self._updater(fs)
        if self.offering and u.running()[1] < self.rel.ver and not (u.pending() or u.in_trial()):
            self.offer()  # the gateway offers until the device runs the release
        return u

    def _updater(self, fs):
        return ct_ota.Updater(
            fs,
            "",
            DEV,
            KEY,
            REL.public_key(),
            lambda: FwClient(self.server),
            k=K,
            chunk=256,
            factory=(1, ct_app.FW),
            ticks=FakeTicks(),
        )

    def offer(self):
        o = self.rel.offer()
        self.rig.gw.command({20: o[20], 21: o[21], 22: o[22]})

    def running(self):
        u = self._updater(FakeFs(self.rig.disk))
        return u.running()[1], u.in_trial()

    def events(self, ev):
        return [p[37] for p in payloads(self.rig.gw) if p[1] == 3 and p[30] == ev]


def _steps(make, wakes):
    """Filesystem steps of each of ``wakes`` uncut wakes of a fresh device."""
    d = make()
    out = []
    for _ in range(wakes):
        d.rig.wake(1)
        out.append(d.rig.fs.steps)
    return out


def _cut_run(make, before, cut_at, settle):
    """``before`` uncut wakes, a wake cut at ``cut_at``, then wakes until
    ``settle(d)`` holds: every boot ran the factory or the release, every
    stored reading reached the gateway once, in order, the chain intact."""
    d = make()
    d.rig.wake(before)
    n = len(d.rig.measured)
    fell = not d.rig.wake(1, cut_at)
    cut = d.rig.measured[n:]
    for _ in range(12):
        d.rig.later(300)
        d.rig.wake(1)
        if settle(d):
            break
    d.rig.flush()
    assert settle(d), (before, cut_at, d.running(), d.booted)
    for b in d.booted:
        check_boot(d.rig.disk, b, d.rel)
    seqs = sorted(d.rig.gw.records)
    assert seqs == list(range(len(seqs))) and d.rig.gw.chain_errors == 0, (before, cut_at)
    got = [r[2] for r in readings(d.rig.gw)]
    for v in got:
        assert got.count(v) == 1, (before, cut_at, v)
    assert got == sorted(got), (before, cut_at, got)  # in the order measured
    missing = [v for v in d.rig.measured if v not in got]
    assert all(v in cut for v in missing) and len(missing) <= 1, (before, cut_at, missing)
    return fell, d, len(missing)


def _sweep(name, make, wakes, settle, check):
    steps = _steps(make, wakes)
    counts = {
        "steps_per_wake": steps,
        "stride": STRIDE,
        "cuts": 0,
        "boots": 0,
        "lost_in_cut_wake": 0,
        "records": 0,
        "finals": {},
    }
    for w, total in enumerate(steps):
        for cut_at in range(1 + w % STRIDE, total + 1, STRIDE):
            fell, d, lost = _cut_run(make, w, cut_at, settle)
            assert fell, (w, cut_at)
            check(d)
            counts["cuts"] += 1
            counts["boots"] += len(d.booted)
            counts["lost_in_cut_wake"] += lost
            counts["records"] += len(d.rig.gw.records)
            v = str(d.running()[0])
            counts["finals"][v] = counts["finals"].get(v, 0) + 1
    report(name, counts)
    return counts


def test_update_cut_at_every_step_loses_no_record():
    rel = Release(2, "coldtrace-0.2.0", SMALL)

    def make():
        return Device(rel)

    def settle(d):
        return d.running() == (2, False)

    def check(d):
        # on the release, confirmed once by its first fresh ack; no rollback
        assert d.running() == (2, False)
        assert d.events(ct_ota.EV_UPDATED) == [2], d.events(ct_ota.EV_UPDATED)
        assert not d.events(ct_ota.EV_ROLLBACK)

    c = _sweep("update", make, 3, settle, check)
    assert c["cuts"] * STRIDE > 60 and c["finals"] == {"2": c["cuts"]}


def test_rollback_cut_at_every_step_loses_no_record():
    rel = Release(2, "coldtrace-0.2.0", SMALL)

    class Silent(Device):
        """The gateway stores but never acks while the trial runs."""

        def updater(self, fs):
            if "/slot_b" in self.booted:
                self.offering = False  # one attempt: no offer after the rollback
            u = Device.updater(self, fs)
            self.rig.gw.silent = self.booted[-1] != "/lib"
            return u

    def make():
        d = Silent(rel)
        d.rig.wake(1)  # download, verify, switch: the trial runs from the next boot
        return d

    def settle(d):
        return d.running() == (1, False) and bool(d.events(ct_ota.EV_ROLLBACK))

    def check(d):
        assert d.running() == (1, False)
        assert d.events(ct_ota.EV_ROLLBACK) == [2], d.events(ct_ota.EV_ROLLBACK)
        assert not d.events(ct_ota.EV_UPDATED)
        assert d.booted.count("/slot_b") <= K + 1, d.booted

    c = _sweep("rollback", make, K + 1, settle, check)
    assert c["cuts"] * STRIDE > 60 and c["finals"] == {"1": c["cuts"]}


if __name__ == "__main__":
    main(globals())
