"""Firmware-update attacks on the logger as it runs on the board (ct_app with
ct_ota, docs/protocol.md §5.4), for tests/attacks/test_system_tags_ota.py: run
by tests/firmware/harness.py under the real MicroPython and under CPython.

Each attack is refused with status event 13 and its reason code in a signed
status record (key 30 = event, key 37 = detail), and the board keeps booting
what it booted. Each test prints one line ``REFUSED <attack> <codes>``. The
device, the release and the fake gateway are tests/firmware/scripts/app_ota.py's
and _otadata.py's.
"""

import hashlib

import ct_app
import ct_ota
from _otadata import OTHER, FwServer, Release
from app_ota import V2, Device, status
from fwrun import main


def refusals(d):
    return [r[37] for r in status(d.core, ct_ota.EV_REFUSED)]


def report(name, d):
    print("REFUSED", name, " ".join(str(c) for c in refusals(d)))


def running(d):
    return status(d.core, ct_app.EV_BOOT)[-1][39]


def test_downgrade_to_an_older_signed_release():
    v3 = Release(3, "coldtrace-0.3.0", V2)
    d = Device(FwServer(v3))
    d.core.commands = [v3.offer()]
    d.wake()  # downloaded, verified, switched
    d.wake()  # the trial boot uploads; the fresh ack confirms it
    assert [r[37] for r in status(d.core, ct_ota.EV_UPDATED)] == [3]
    old = Release(2, "coldtrace-0.2.0", V2)  # genuinely signed, but older
    d.server = FwServer(old)
    d.core.commands = [old.offer()]
    d.wake()
    assert refusals(d) == [ct_ota.R_DOWNGRADE], refusals(d)
    assert d.booted[-1] == "/slot_b" and d.server.requests == 0  # nothing fetched
    report("downgrade", d)


def test_a_file_changed_after_signing():
    rel = Release(2, "coldtrace-0.2.0", V2)
    d = Device(FwServer(rel))
    bad = bytearray(V2[1][1])
    bad[3] ^= 0x01
    d.server.tamper[2] = bytes(bad)  # the gateway (or the path) serves another file
    d.core.commands = [rel.offer()]
    d.wake()
    d.wake()
    assert refusals(d) == [ct_ota.R_HASH], refusals(d)
    assert set(d.booted) == {"/lib"} and running(d) == 1
    report("tampered", d)


def test_a_manifest_signed_by_another_key():
    evil = Release(2, "evil", V2, OTHER)
    d = Device(FwServer(evil))
    d.core.commands = [evil.offer()]
    d.wake()
    d.wake()
    assert refusals(d) == [ct_ota.R_SIGNATURE], refusals(d)
    assert set(d.booted) == {"/lib"} and running(d) == 1
    report("other-key", d)


def test_a_manifest_that_is_not_the_offered_one():
    rel = Release(2, "coldtrace-0.2.0", V2)
    swapped = Release(2, "coldtrace-0.2.1", V2)  # signed, as long, but not what was offered
    d = Device(FwServer(swapped))
    d.core.commands = [rel.offer()]
    d.wake()
    d.wake()
    assert len(swapped.cose) == len(rel.cose)
    assert refusals(d) == [ct_ota.R_OFFER], refusals(d)
    assert set(d.booted) == {"/lib"}
    assert hashlib.sha256(swapped.cose).digest() != rel.hash
    report("swapped", d)


if __name__ == "__main__":
    main(globals())
