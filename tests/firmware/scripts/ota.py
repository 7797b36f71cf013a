"""Signed OTA updates (ct_ota, docs/protocol.md §5.4): a power cut at every
step of an update always leaves a verified version to boot; a tampered file,
a wrong key, a downgrade and a foreign manifest are refused with status
event 13; a trial that never becomes healthy rolls back after K boots."""

import hashlib

import ct_ota
from _otadata import ACK, DEV, OTHER, REL, FwClient, FwServer, Release
from fakeclock import FakeTicks
from fakefs import Disk, FakeFs, PowerCut
from fwrun import main

PUB = REL.public_key()
FACTORY = [("ct_app.py", b"# factory app\n" * 40), ("ct_core.py", b"# factory core\n" * 30)]
V2 = [("ct_app.py", b"# app v2 " + bytes(range(48, 58)) * 70 + b"\n"),
      ("ct_core.py", b"# core v2\n" * 90), ("ct_new.py", b"X = 2\n" * 50)]
K = 3


def fresh_disk():
    d = Disk()
    d.dirs.add("/lib")
    for n, b in FACTORY:
        d.files["/lib/" + n] = b
    return d


def updater(fs, server, ticks=None):
    return ct_ota.Updater(fs, "", DEV, ACK, PUB, lambda: FwClient(server), k=K, chunk=256,
                          factory=(1, "coldtrace-0.1.0"), ticks=ticks or FakeTicks())


def booted_files(disk, d):
    pre = d + "/"
    return sorted((p[len(pre):], b) for p, b in disk.files.items()
                  if p.startswith(pre) and "/" not in p[len(pre):] and not p.endswith("/.manifest"))


def check_boot(disk, d, rel):
    """What boots is the factory firmware or the release, byte for byte,
    with the signed manifest beside it."""
    got = booted_files(disk, d)
    if d == "/lib":
        assert got == sorted(FACTORY), got
        return 1
    assert got == sorted(rel.files), (d, [g[0] for g in got])
    assert disk.files[d + "/.manifest"] == rel.cose
    return rel.ver


def wake(fs, server, rel, log):
    """One start of the board: boot selection, then the app: health on the
    first ack, offers, download/verify/switch."""
    d = ct_ota.select(fs, "", K)
    log.append(d)
    u = updater(fs, server)
    u.notes()
    if u.in_trial():
        u.healthy()  # the trial's first record was acked
    ver = u.running()[1]
    if ver < rel.ver:
        u.offer(rel.offer())  # the gateway offers until the device runs it
    u.work(600000)
    return d


def test_update_without_cuts():
    disk = fresh_disk()
    rel = Release(2, "coldtrace-0.2.0", V2)
    server = FwServer(rel)
    log = []
    for _ in range(3):
        wake(FakeFs(disk), server, rel, log)
    assert log == ["/lib", "/slot_b", "/slot_b"], log
    u = updater(FakeFs(disk), server)
    assert u.running() == ("coldtrace-0.2.0", 2)
    assert u.ptr()["hi"] == 2 and not u.pending()
    assert check_boot(disk, "/slot_b", rel) == 2


def power_cut_at_every_step(torn, stats=None):
    """Cut the power at each filesystem step of an update, in turn; ``stats``
    (a dict) gets the counts: steps cut, boots, boots by slot, final versions."""
    rel = Release(2, "coldtrace-0.2.0", V2)
    server = FwServer(rel)
    # steps of an uncut update, from the offer to the confirmed trial
    disk = fresh_disk()
    fs = FakeFs(disk)
    for _ in range(3):
        wake(fs, server, rel, [])
    total = fs.steps
    assert total > 30, total
    kinds = {}
    finals = {}
    for cut in range(1, total + 1):
        disk = fresh_disk()
        fs = FakeFs(disk, cut_at=cut, torn=torn)
        booted = []
        try:
            for _ in range(3):
                wake(fs, server, rel, booted)
        except PowerCut:
            kinds[fs.trace[-1][1]] = 1
        for _ in range(8):  # power back: wake until the update settles
            fs = FakeFs(disk, torn=torn)
            d = wake(fs, server, rel, booted)
            check_boot(disk, d, rel)
            if updater(fs, server).running()[1] == 2 and not ct_ota._ptr(fs, "")["try"]:
                break
        for d in booted:  # every boot ran the factory firmware or the whole release
            check_boot(disk, d, rel)
        if stats is not None:
            stats["boots"] = stats.get("boots", 0) + len(booted)
            for d in booted:
                stats[d] = stats.get(d, 0) + 1
        u = updater(FakeFs(disk), server)
        finals[u.running()[1]] = finals.get(u.running()[1], 0) + 1
        if not torn:  # LittleFS: every cut update completes on the next wakes
            assert u.running() == ("coldtrace-0.2.0", 2), (cut, u.ptr())
            assert u.ptr()["hi"] == 2
    assert "rename" in kinds and "write" in kinds and "flush" in kinds, kinds
    if stats is not None:
        stats["steps"] = total
        stats["cut_kinds"] = sorted(kinds)
        stats["finals"] = finals
    return finals


def test_power_cut_at_every_step():
    assert list(power_cut_at_every_step(False)) == [2]


def test_power_cut_at_every_step_torn_writes():
    # a weaker filesystem: a cut flush leaves part of the new bytes. The
    # download resumes at the file's size and the SHA-256 decides; a refused
    # update (event 13) is offered again. A pointer is never torn: it is
    # written to .tmp and renamed only after the close.
    finals = power_cut_at_every_step(True)
    assert set(finals) <= {1, 2} and finals.get(2), finals


def refused(rel, server=None, disk=None):
    disk = disk or fresh_disk()
    server = server or FwServer(rel)
    fs = FakeFs(disk)
    u = updater(fs, server)
    ev = u.offer(rel.offer()) + u.work(600000)
    assert ct_ota.select(fs, "", K) in ("/lib", "/slot_a", "/slot_b")
    return ev, u


def test_tampered_file_is_refused():
    rel = Release(2, "coldtrace-0.2.0", V2)
    server = FwServer(rel)
    bad = bytearray(V2[1][1])
    bad[5] ^= 1
    server.tamper[2] = bytes(bad)
    ev, u = refused(rel, server)
    assert ev == [(ct_ota.EV_REFUSED, ct_ota.R_HASH)], ev
    assert u.running()[1] == 1 and not u.in_trial() and not u.pending()


def test_wrong_key_is_refused():
    rel = Release(2, "coldtrace-0.2.0", V2, OTHER)
    ev, u = refused(rel)
    assert ev == [(ct_ota.EV_REFUSED, ct_ota.R_SIGNATURE)], ev
    assert u.running()[1] == 1 and not u.in_trial()


def test_downgrade_is_refused():
    disk = fresh_disk()
    rel3 = Release(3, "coldtrace-0.3.0", V2)
    server = FwServer(rel3)
    for _ in range(3):
        wake(FakeFs(disk), server, rel3, [])
    assert updater(FakeFs(disk), server).running()[1] == 3
    old = Release(2, "coldtrace-0.2.0", V2)
    ev, u = refused(old, FwServer(old), disk)
    assert ev == [(ct_ota.EV_REFUSED, ct_ota.R_DOWNGRADE)], ev
    assert u.running()[1] == 3
    # a manifest whose signed version is lower than the offer claims
    rel4 = Release(4, "x", V2)
    o = rel4.offer()
    low = Release(2, "coldtrace-0.2.0", V2)
    o[21], o[22] = low.hash, len(low.cose)
    fs = FakeFs(disk)
    u = updater(fs, FwServer(low))
    assert u.offer(o) == []
    assert u.work(600000) == [(ct_ota.EV_REFUSED, ct_ota.R_OFFER)]
    assert u.running()[1] == 3


def test_manifest_not_the_offered_one_is_refused():
    rel = Release(2, "coldtrace-0.2.0", V2)
    o = rel.offer()
    o[21] = hashlib.sha256(b"another manifest").digest()
    fs = FakeFs(fresh_disk())
    u = updater(fs, FwServer(rel))
    u.offer(o)
    assert u.work(600000) == [(ct_ota.EV_REFUSED, ct_ota.R_OFFER)]


def test_malformed_offer_is_refused():
    u = updater(FakeFs(fresh_disk()), None)
    assert u.offer({1: 1, 20: 2, 21: b"short", 22: 10}) == [(13, ct_ota.R_FORMAT)]
    assert u.offer({1: 1, 20: 2, 21: bytes(32), 22: 99999}) == [(13, ct_ota.R_FORMAT)]
    assert not u.pending()


def test_rollback_after_k_unhealthy_boots():
    disk = fresh_disk()
    rel = Release(2, "coldtrace-0.2.0", V2)
    server = FwServer(rel)
    fs = FakeFs(disk)
    u = updater(fs, server)
    u.offer(rel.offer())
    assert u.work(600000) == []
    assert u.in_trial()
    seen = [ct_ota.select(FakeFs(disk), "", K) for _ in range(K + 2)]
    assert seen == ["/slot_b"] * K + ["/lib", "/lib"], seen
    u = updater(FakeFs(disk), server)
    assert u.notes() == [(ct_ota.EV_ROLLBACK, 2)]
    assert u.notes() == []
    assert u.running() == ("coldtrace-0.1.0", 1) and u.ptr()["hi"] == 0
    # the same release may be offered again: it never became healthy
    u.offer(rel.offer())
    assert u.work(600000) == [] and u.in_trial()


def test_cut_between_switch_and_offer_removal_never_reinstalls():
    rel = Release(2, "coldtrace-0.2.0", V2)
    server = FwServer(rel)
    fs = FakeFs(fresh_disk())
    u = updater(fs, server)
    u.offer(rel.offer())
    u.work(600000)
    step = next(n for n, kind, path in fs.trace if kind == "remove" and path == "/ota/offer")
    disk = fresh_disk()
    fs = FakeFs(disk, cut_at=step)
    u = updater(fs, server)
    u.offer(rel.offer())
    try:
        u.work(600000)
        raise AssertionError("no cut")
    except PowerCut:
        pass
    u = updater(FakeFs(disk), server)
    assert u.pending() and u.in_trial()
    for _ in range(K + 1):
        ct_ota.select(FakeFs(disk), "", K)  # the trial never gets healthy
    u = updater(FakeFs(disk), server)
    assert not u.in_trial() and u.notes() == [(ct_ota.EV_ROLLBACK, 2)]
    assert u.work(600000) == [] and not u.in_trial() and not u.pending()


def test_offer_during_a_trial_waits_and_goes_to_the_free_slot():
    disk = fresh_disk()
    r2, r3, r4 = (Release(v, "v" + str(v), V2) for v in (2, 3, 4))
    u = updater(FakeFs(disk), FwServer(r2))
    u.offer(r2.offer())
    u.work(600000)
    u.healthy()  # 2 runs in slot b
    u = updater(FakeFs(disk), FwServer(r3))
    u.offer(r3.offer())
    u.work(600000)
    assert u.ptr()["try"] == "a"
    u = updater(FakeFs(disk), FwServer(r4))
    assert u.offer(r4.offer()) == [] and u.work(600000) == [] and u.pending()
    assert u.healthy() == [(ct_ota.EV_UPDATED, 3)]  # 3 runs in slot a
    assert u.work(600000) == [] and u.ptr()["try"] == "b" and u.ptr()["tver"] == 4
    assert check_boot(disk, ct_ota.select(FakeFs(disk), "", K), r4) == 4


def test_forged_chunk_is_ignored_and_link_loss_resumes():
    rel = Release(2, "coldtrace-0.2.0", V2)
    server = FwServer(rel)
    server.forge = 3
    disk = fresh_disk()
    u = updater(FakeFs(disk), server)
    u.offer(rel.offer())
    assert u.work(600000) == [] and u.in_trial()
    # link loss part way: OSError, the bytes fetched stay, the next wake resumes
    disk = fresh_disk()
    server = FwServer(rel)
    u = updater(FakeFs(disk), server)
    u.offer(rel.offer())
    ticks = FakeTicks()
    u._t = ticks
    n = [0]
    real = FwClient.publish

    def flaky(self, topic, msg, retain=False, qos=0):
        n[0] += 1
        if n[0] == 7:
            raise OSError(104, "link lost")
        real(self, topic, msg, retain, qos)

    FwClient.publish = flaky
    try:
        try:
            u.work(600000)
            raise AssertionError("no OSError")
        except OSError:
            pass
    finally:
        FwClient.publish = real
    before = server.requests
    assert u.pending() and not u.in_trial()
    assert u.work(600000) == [] and u.in_trial()
    total = sum((len(b) + 255) // 256 for _, b in V2) + (len(rel.cose) + 255) // 256
    assert server.requests - before == total - 6, (server.requests - before, total)


def test_bad_manifests_are_format_errors():
    p = ct_ota.parse_manifest
    ok = Release(2, "l", V2).cose
    import ct_record

    _, pay, _ = ct_record.parse_sign1(ok)
    assert p(pay)[0] == 2
    for bad in (pay[:-1], pay + b"\x00", b"\xa2" + pay[1:], b"\x80"):
        e = None
        try:
            p(bad)
        except ct_ota.OtaError as x:
            e = x
        assert e is not None and e.args[0] == ct_ota.R_FORMAT, bad
    from _otadata import manifest_payload

    for files in ([("../boot.py", b"x")], [("main.txt", b"x")], [("a.py", b"x"), ("a.py", b"y")]):
        e = None
        try:
            p(manifest_payload(2, "l", files))
        except ct_ota.OtaError as x:
            e = x
        assert e is not None and e.args[0] == ct_ota.R_FORMAT, files


if __name__ == "__main__":
    main(globals())
