"""The logger with updates (ct_app + ct_ota, docs/protocol.md §5.4): status
records carry the running release (32 label, 39 number), an offer command
leads to a download and switch, a trial boot uploads at once and its fresh
ack confirms it (event 12), a refused release is event 13, a trial that never
gets an ack rolls back (event 14), and a command that arrives on the
download's connection is applied."""

import ct_app
import ct_ota
from _otadata import ACK, DEV, OTHER, REL, FwClient, FwServer, Release
from fake_board import FakeBoard, FakeCore
from fakeclock import FakeTicks
from fakefs import Disk, FakeFs
from fwrun import main

T0 = 1790000000
CFG = {"interval": 300, "upload": 0, "heartbeat": 86400,
       "alarm": {"high": 800, "low": 200, "delay": 600}}
HOURLY = dict(CFG, upload=3600)
V2 = [("ct_app.py", b"# app v2\n" * 100), ("ct_core.py", b"# core v2\n" * 60)]
K = 3


def probe():
    return 450, None


class Device:
    def __init__(self, server, cfg=CFG):
        self.cfg = cfg
        self.disk = Disk()
        self.disk.dirs.add("/lib")
        self.board = FakeBoard(t=0)
        self.core = FakeCore()
        self.core.gateway_time = T0
        self.server = server
        self.booted = []

    def reboot(self):
        self.board.power_cycle()

    def wake(self):
        fs = FakeFs(self.disk)
        self.booted.append(ct_ota.select(fs, "", K))  # boot.py
        u = ct_ota.Updater(fs, "", DEV, ACK, REL.public_key(), lambda: FwClient(self.server),
                           k=K, chunk=256, factory=(1, ct_app.FW), ticks=FakeTicks())
        lg = ct_app.Logger(self.cfg, self.board, self.core, [(0, None, probe)], None, u)
        self.board.deep_sleep(lg.cycle())
        return lg


def status(core, ev=None):
    return [r for r in core.records if r[1] == 3 and (ev is None or r[30] == ev)]


def test_offer_download_switch_trial_and_confirm():
    rel = Release(2, "coldtrace-0.2.0", V2)
    d = Device(FwServer(rel), HOURLY)
    d.core.commands = [rel.offer()]
    d.wake()
    boot = status(d.core, ct_app.EV_BOOT)[0]
    assert (boot[32], boot[39]) == (ct_app.FW, 1)
    assert ct_ota._ptr(FakeFs(d.disk), "")["try"] == "b"
    uploads = d.core.uploads
    lg = d.wake()  # a deep-sleep wake boots the trial too; no upload is due
    assert d.booted == ["/lib", "/slot_b"]
    assert d.core.uploads == uploads + 1  # the trial uploads at once
    assert [r[37] for r in status(d.core, ct_ota.EV_UPDATED)] == [2]
    assert (ct_ota.EV_UPDATED, 2) in lg.events
    d.wake()
    assert d.core.uploads == uploads + 1  # confirmed: back to the hourly schedule
    d.reboot()
    d.wake()
    boot = status(d.core, ct_app.EV_BOOT)[-1]
    assert (boot[32], boot[39]) == ("coldtrace-0.2.0", 2)
    assert d.booted[1:] == ["/slot_b"] * 3 and not status(d.core, ct_ota.EV_ROLLBACK)


def test_wrong_key_tampered_and_downgrade_are_status_events():
    bad = Release(2, "evil", V2, OTHER)
    d = Device(FwServer(bad))
    d.core.commands = [bad.offer()]
    d.wake()
    good = Release(2, "coldtrace-0.2.0", V2)
    d.server = FwServer(good)
    tampered = bytearray(V2[0][1])
    tampered[0] ^= 0x20
    d.server.tamper[1] = bytes(tampered)
    d.core.commands = [good.offer()]
    d.wake()
    old = Release(1, "coldtrace-0.0.9", V2)
    d.core.commands = [old.offer()]
    d.wake()
    got = [r[37] for r in status(d.core, ct_ota.EV_REFUSED)]
    assert got == [ct_ota.R_SIGNATURE, ct_ota.R_HASH, ct_ota.R_DOWNGRADE], got
    assert set(d.booted) == {"/lib"}


def test_trial_without_ack_rolls_back_after_k_boots():
    rel = Release(2, "coldtrace-0.2.0", V2)
    d = Device(FwServer(rel))
    d.core.commands = [rel.offer()]
    d.wake()
    d.core.online = False  # the gateway never acks the new firmware's records
    for _ in range(K + 1):
        d.reboot()
        d.wake()
    assert d.booted[1:] == ["/slot_b"] * K + ["/lib"], d.booted
    assert [r[37] for r in status(d.core, ct_ota.EV_ROLLBACK)] == [2]
    boot = status(d.core, ct_app.EV_BOOT)[-1]
    assert boot[39] == 1 and not status(d.core, ct_ota.EV_UPDATED)


class _Uplink:
    t_cmd = b"ct/v1/" + DEV.encode() + b"/cmd"

    def __init__(self):
        self.seen = []

    def command(self, msg):
        self.seen.append(msg)
        return [("cmd", {1: 9, 10: 600})]


def test_command_on_the_download_connection_is_applied():
    rel = Release(2, "coldtrace-0.2.0", V2)
    server = FwServer(rel)
    d = Device(server)
    d.core.uplink = _Uplink()
    real = FwClient.connect

    def connect(self, clean=False, timeout=None):
        real(self, clean, timeout)
        self.out.append(b"queued command")  # check_msg below delivers it on cmd

    FwClient.connect = connect
    orig_check = FwClient.check_msg

    def check(self):
        if self.out and self.out[0] == b"queued command":
            self.cb(_Uplink.t_cmd, self.out.pop(0))
            return 0x30
        return orig_check(self)

    FwClient.check_msg = check
    try:
        d.core.commands = [rel.offer()]
        lg = d.wake()
    finally:
        FwClient.connect = real
        FwClient.check_msg = orig_check
    assert d.core.uplink.seen == [b"queued command"]
    assert lg.settings == {"interval": 600}
    assert ct_ota._ptr(FakeFs(d.disk), "")["try"] == "b"


if __name__ == "__main__":
    main(globals())
