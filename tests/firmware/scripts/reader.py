"""Handover reader: action selection, debounce, LED patterns, scan records."""

import binascii

import ct_clock
import ct_ntag
import ct_pn532
import ct_reader
import ct_record
import ct_ui
import fake_nfc
from _readers import ITEM, Station, fields, new_core, queued
from fake_board import FakeCore
from fake_nfc import FakePin
from fwrun import data, main, raises

AN = data("an12196_sun.json")
H = binascii.unhexlify
CFG = {"place": "urn:epc:id:sgln:9506000.13435.0", "actions": [2, 3, 4, 5], "action": 4}


class Field:
    """What the antenna sees: a tag, nothing, or a broken read."""

    def __init__(self):
        self.tag = None
        self.fail = False

    def __call__(self):
        if self.fail:
            raise ct_pn532.PN532Error("timeout")
        return self.tag


def make(cfg=CFG, core=None):
    btn = FakePin(1)
    okp, errp = FakePin(0), FakePin(0)
    field = Field()
    clock = ct_clock.Clock(lambda: 1790000000, lambda t: None)
    clock.sync(1790000000, ct_clock.GATEWAY)
    core = core or FakeCore()
    r = ct_reader.Reader(cfg, field, core, clock, ct_ui.Button(btn), ct_ui.Led(okp),
                         ct_ui.Led(errp), lambda: 4100)
    return r, field, btn, okp, errp, core


def run(r, t0, t1, step=10):
    out = []
    for t in range(t0, t1, step):
        rec = r.step(t)
        if rec is not None:
            out.append(rec)
    return out


def press(btn, r, t, ms, bounce=True):
    """Press for ms with contact bounce at both edges; returns the end time."""
    seq = [0, 1, 0, 1, 0] if bounce else [0]
    for v in seq:
        btn.v = v
        r.step(t)
        t += 2
    btn.v = 0
    t = _hold(r, t, ms)
    for v in ([1, 0, 1, 0, 1] if bounce else [1]):
        btn.v = v
        r.step(t)
        t += 2
    btn.v = 1
    return _hold(r, t, 60)


def _hold(r, t, ms):
    end = t + ms
    while t < end:
        r.step(t)
        t += 5
    return t


def test_scan_record_fields_for_ntag424():
    r, field, _btn, okp, errp, _core = make()
    field.tag = ct_ntag.Tag(H(AN["uid"]), H(AN["sun"]), "/01/09506000134352/10/L42/21/7")
    recs = run(r, 0, 500)
    assert len(recs) == 1
    f = recs[0]
    assert f[1] == 2 and f[20] == H(AN["uid"]) and len(f[20]) == 7
    assert f[21] == 4 and f[22] == CFG["place"] and f[23] == H(AN["sun"])
    assert f[24] == "/01/09506000134352/10/L42/21/7" and f[15] == 4100
    assert f[5] == 3
    assert 1 in okp.history and 1 not in errp.history


def test_same_tag_not_recorded_twice_while_held_then_again_later():
    r, field, *_ = make()
    field.tag = ct_ntag.Tag(H("04a1b2c3d4e5f6"))
    assert len(run(r, 0, 5000)) == 1  # held on the reader for 5 s
    field.tag = None
    run(r, 5000, 9000)
    field.tag = ct_ntag.Tag(H("04a1b2c3d4e5f6"))
    assert len(run(r, 9000, 10000)) == 1


def test_short_press_steps_action_long_press_resets():
    r, _field, btn, okp, *_ = make()
    t = press(btn, r, 0, 100)
    assert r.action == 5
    t = press(btn, r, t, 100)
    assert r.action == 2  # wraps within the allowed list
    t = press(btn, r, t, 2000)
    assert r.action == 4
    assert okp.history.count(1) >= 4  # blinks showing the number


def test_bounce_shorter_than_debounce_is_ignored():
    r, _field, btn, *_ = make()
    for i in range(10):  # 2 ms spikes
        btn.v = 0
        r.step(i * 10)
        btn.v = 1
        r.step(i * 10 + 2)
    assert r.action == 4


def test_failed_read_shows_error_and_records_nothing():
    r, field, _btn, _okp, errp, core = make()
    field.fail = True
    assert run(r, 0, 300) == []
    assert 1 in errp.history and r.errors >= 1 and not core.records


def test_commission_needs_an_item():
    cfg = dict(CFG, actions=[1, 2], action=1)
    r, field, _btn, _okp, errp, _core = make(cfg)
    field.tag = ct_ntag.Tag(H("04a1b2c3d4e5f6"))
    assert run(r, 0, 300) == [] and 1 in errp.history
    r2, field2, *_ = make(cfg)
    field2.tag = ct_ntag.Tag(H("04a1b2c3d4e5f6"), None, "/01/09506000134352/10/L42/21/7")
    assert len(run(r2, 0, 300)) == 1


def test_an_item_with_a_control_character_is_refused_whatever_the_action():
    # the item comes from an untrusted tag (docs/protocol.md §1): C0, DEL, C1
    item = "/01/09506000134352/10/L42/21/7"
    for c in ("\x00", "\n", "\x1b", "\x7f", "\x85", "\x9f"):
        for action in (1, 2):
            r, field, _btn, okp, errp, core = make(dict(CFG, actions=[1, 2], action=action),
                                                   new_core())
            field.tag = Tap("04a1b2c3d4e5f6", item[:20] + c + item[20:], bytes(16))
            assert run(r, 0, 300) == [] and r.errors == 1 and r.scans == 0
            assert 1 in errp.history and 1 not in okp.history
            assert queued(core) == [] and core.state.seq == 0  # nothing signed
            assert field.tag.written == [] and field.tag.released == 1
    r, field, *_ = make(dict(CFG, actions=[1, 2], action=1), new_core())
    field.tag = Tap("04a1b2c3d4e5f6", item + "\xa0\u0105")  # printable neighbours
    (rec,) = run(r, 0, 300)
    assert fields(rec)[24] == item + "\xa0\u0105"


def test_queue_full_is_an_error():
    r, field, _btn, _okp, errp, _core = make(core=FakeCore(capacity=0))
    field.tag = ct_ntag.Tag(H("04a1b2c3d4e5f6"))
    assert run(r, 0, 300) == [] and 1 in errp.history


def test_upload_due_after_idle():
    r, field, *_ = make()
    field.tag = ct_ntag.Tag(H("04a1b2c3d4e5f6"))
    run(r, 0, 100)
    assert not r.upload_due(500) and r.upload_due(1200)
    r.uploaded()
    assert not r.upload_due(5000)


def test_bad_config_refused():
    raises(ct_reader.ReaderError, ct_reader.check_config, {"place": ""})
    raises(ct_reader.ReaderError, ct_reader.check_config, {"place": "x", "actions": [8]})
    ct_reader.check_config({"place": "x", "actions": [6, 7]})  # sell and install
    raises(ct_reader.ReaderError, ct_reader.check_config,
           {"place": "x", "actions": [2], "action": 3})
    raises(ct_reader.ReaderError, ct_reader.check_config, {"place": "x" * 65})
    raises(ct_reader.ReaderError, ct_reader.check_config, {"place": "x", "ref": ""})
    raises(ct_reader.ReaderError, ct_reader.check_config, {"place": "x", "ref": 4711})


def test_config_text_with_a_control_character_is_refused():
    for c in ("\x00", "\t", "\n", "\x1f", "\x7f", "\x80", "\x9f"):
        e = raises(ct_reader.ReaderError, ct_reader.check_config, {"place": "dock" + c + "3"})
        assert str(e) == f"place: control character U+{ord(c):04X} not allowed", e
        e = raises(ct_reader.ReaderError, ct_reader.check_config,
                   {"place": "dock-3", "ref": "PO-" + c})
        assert str(e) == f"ref: control character U+{ord(c):04X} not allowed", e
        raises(ct_reader.ReaderError, make, dict(CFG, place=CFG["place"] + c))
    ct_reader.check_config({"place": "quai-\xe9 \u0105", "ref": "PO\xa04711"})


def test_end_to_end_with_fake_pn532_and_ntag424():
    tag = fake_nfc.Ntag424(H(AN["uid"]), AN["url"])
    s = Station(1)
    rec = s.tap(tag, 4)
    f = fields(rec)
    assert f[23] == H(AN["sun"]) and f[20] == H(AN["uid"]) and f[21] == 4 and 27 not in f
    assert s.ok() and s.reader.link_fails == 0 and s.reader.scans == 1
    assert tag.data03[:20] == b"CTL\x01" + ct_record.chain_link(rec)


def test_end_to_end_a_tag_url_with_a_control_character_commissions_nothing():
    query = AN["url"][AN["url"].index("?"):]
    good = fake_nfc.Ntag424(H(AN["uid"]), "https://id.example.com" + ITEM + query)
    bad = fake_nfc.Ntag424(H(AN["uid"]), "https://id.example.com" + ITEM + "\x1b[2J" + query)
    s = Station(1)
    for action in (1, 4):
        assert s.tap(bad, action) is None
        assert s.failed() and s.reader.scans == 0 and queued(s.core) == []
    assert bad.data03[:4] != b"CTL\x01"  # no link written either
    rec = s.tap(good, 1)
    assert fields(rec)[24] == ITEM and s.ok() and queued(s.core) == [rec]


class Tap(ct_ntag.Tag):
    """A tag as the drivers give it, with a custody file that records writes
    (one object for every poll: it counts each release)."""

    def __init__(self, uid, item=None, link=None, fail=False, custody=True):
        ct_ntag.Tag.__init__(self, H(uid), None, item)
        self.link = link
        self.custody = self if custody else None
        self.fail = fail
        self.written = []
        self.released = 0
        self.on_release = None

    def release(self):
        self.released += 1
        if self.on_release:
            self.on_release()

    def write_link(self, link):
        if self.fail:
            raise ct_pn532.PN532Error("timeout")
        self.written.append(link)


def test_link_from_the_tag_goes_into_every_scan_but_a_commission():
    old = bytes(range(16))
    r, field, *_ = make(dict(CFG, actions=[1, 2], action=1), new_core())
    field.tag = Tap("04a1b2c3d4e5f6", "/01/09506000134352/10/L42/21/7", old)
    (c,) = run(r, 0, 300)
    assert 27 not in fields(c) and field.tag.written == [ct_record.chain_link(c)]
    r.action = 2
    field.tag = Tap("04a1b2c3d4e5f7", None, old)
    (s,) = run(r, 1000, 1300)
    assert fields(s)[27] == old and field.tag.written == [ct_record.chain_link(s)]
    field.tag = Tap("04a1b2c3d4e5f8")
    (n,) = run(r, 2000, 2300)
    assert 27 not in fields(n) and field.tag.written == [ct_record.chain_link(n)]


def test_failed_link_write_keeps_the_scan_and_shows_the_error():
    r, field, _btn, okp, errp, core = make(CFG, new_core())
    field.tag = Tap("04a1b2c3d4e5f6", None, bytes(16), fail=True)
    (rec,) = run(r, 0, 300)
    assert queued(core) == [rec] and r.scans == 1 and r.link_fails == 1
    assert 1 in errp.history and 1 not in okp.history


def test_every_tap_is_released():
    r, field, _btn, _okp, _errp, core = make(dict(CFG, actions=[1, 2], action=1))
    field.tag = Tap("04a1b2c3d4e5f6", custody=False)  # commission without item: refused
    run(r, 0, 300)
    assert field.tag.released == 1 and not core.records
    r.action = 2
    run(r, 4000, 5400)  # recorded, then held: not recorded again
    assert field.tag.released >= 3 and len(core.records) == 1

    def boom():
        raise ct_pn532.PN532Error("no ack")

    field.tag = Tap("04a1b2c3d4e5f9", custody=False)
    field.tag.on_release = boom
    errors = r.errors
    assert len(run(r, 9000, 9300)) == 1 and r.errors == errors + 1


def test_led_pattern_timing():
    p = FakePin(0)
    led = ct_ui.Led(p)
    led.play(ct_ui.ERROR, 0)
    for t in range(0, 1000, 10):
        led.poll(t)
    assert p.history[1:].count(1) == 3 and p.history[-1] == 0 and not led.busy()


main(globals())
