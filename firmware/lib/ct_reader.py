"""The handover reader: tap a tag, pick an action, get a signed scan record.

The operator chooses the action (1 commission, 2 load, 3 unload, 4 receive,
5 ship, 6 sell, 7 install - docs/protocol.md §2.3) with the button: a short press steps
to the next action allowed by the config, and the LED blinks its number; a
long press goes back to the configured default. Each new tag in the field
gives one scan record with the full UID, the action, the reader's place, and
- for NTAG 424 DNA - the SUN data and the GS1 item from the tag's URL. The
same tag is not recorded again within ``repeat_ms``. A commission scan needs
an item: without one the reader shows the error pattern and records
nothing. The item comes from the tag, so it is untrusted: one holding a
control character (docs/protocol.md §1) is an item no record may carry,
and the reader treats the tap the same way, whatever the action. Green =
recorded, red = error (tag pulled away mid-read, a tag it cannot read or
whose item it cannot use, the queue full, the custody link not written).

The config's texts (``place``, ``ref``) go into every scan: ``check_config``
refuses them, with the reason, when they break §1 or §2.3.

Custody link (scan field 27, ct_custody): a tag with a custody file (NTAG
424 DNA file 03, NTAG 21x pages 20h-24h) names the previous custody scan
of its item. A scan carries that ``link`` unless it is a commission (which
starts the item's chain, even on a reused tag). Once the scan is signed
and durably queued, the reader writes the scan's own chain link to the tag,
in the same tap. If that write fails (the tag was pulled away), the scan
stays recorded - it is signed evidence - the LED shows the error pattern
and ``link_fails`` counts it; the tag keeps its older link (or none), so
the next scan names the older scan and a verifier sees the branch.

``step(now_ms)`` never blocks longer than one tag poll (every tag command
has the driver's timeout); main.py calls it in a loop and uploads when
``upload_due()``.
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x

import ct_record
import ct_ui

COMMISSION = const(1)
ACTIONS = (1, 2, 3, 4, 5, 6, 7)
_POLL_MS = const(200)
_REPEAT_MS = const(3000)
_UPLOAD_IDLE_MS = const(1000)


class ReaderError(Exception):
    pass


def _check_text(name, v):
    # place (22) and ref (26): 1 to 64 bytes of UTF-8, no control character
    if not isinstance(v, str) or not 1 <= len(v.encode()) <= 64:
        raise ReaderError("%s: 1 to 64 bytes" % name)
    o = ct_record.control_char(v)
    if o >= 0:
        raise ReaderError("%s: control character U+%04X not allowed" % (name, o))


def check_config(cfg):
    _check_text("place", cfg.get("place"))
    allowed = cfg.get("actions", list(ACTIONS))
    if not allowed or any(a not in ACTIONS for a in allowed):
        raise ReaderError("actions: among 1 ... 7")
    if cfg.get("action", allowed[0]) not in allowed:
        raise ReaderError("default action not allowed")
    ref = cfg.get("ref")
    if ref is not None:
        _check_text("ref", ref)
    return allowed


class Reader:
    """``read_tag()`` -> ct_ntag.Tag or None (raises on a failed read; the
    reader calls ``Tag.release()`` when it is done with the tap);
    ``core`` as in ct_app (record, enqueue); ``clock`` a ct_clock.Clock;
    ``button`` a ct_ui.Button; ``ok``/``err`` ct_ui.Led; ``batt_mv()``."""

    def __init__(self, cfg, read_tag, core, clock, button, ok, err, batt_mv=None):
        self.allowed = check_config(cfg)
        self.cfg = cfg
        self.place = cfg["place"]
        self.default = cfg.get("action", self.allowed[0])
        self.action = self.default
        self._read = read_tag
        self.core = core
        self.clock = clock
        self.button = button
        self.ok = ok
        self.err = err
        self._batt = batt_mv
        self._next_poll = 0
        self._last_uid = None
        self._last_at = 0
        self._last_record = None
        self.scans = 0
        self.errors = 0
        self.link_fails = 0  # scans recorded whose link the tag did not take
        self.poll_ms = cfg.get("poll_ms", _POLL_MS)
        self.repeat_ms = cfg.get("repeat_ms", _REPEAT_MS)

    def select(self, press, now):
        if press == ct_ui.SHORT:
            i = self.allowed.index(self.action)
            self.action = self.allowed[(i + 1) % len(self.allowed)]
        elif press == ct_ui.LONG:
            self.action = self.default
        else:
            return
        self.ok.play(ct_ui.count_pattern(self.action), now)

    def step(self, now):
        """Poll button, LEDs and (every poll_ms) the tag reader. Returns the
        scan record made this step, or None."""
        self.select(self.button.poll(now), now)
        self.ok.poll(now)
        self.err.poll(now)
        if now < self._next_poll or self.ok.busy() or self.err.busy():
            return None
        self._next_poll = now + self.poll_ms
        try:
            tag = self._read()
        except Exception:  # a read that broke off: the operator taps again
            self.errors += 1
            self.err.play(ct_ui.ERROR, now)
            return None
        if tag is None:
            return None
        try:
            if tag.uid == self._last_uid and now - self._last_at < self.repeat_ms:
                self._last_at = now
                return None
            self._last_uid = tag.uid
            self._last_at = now
            return self.record(tag, now)
        finally:
            try:
                tag.release()
            except Exception:  # the chip did not take the release: the next poll shows it
                self.errors += 1

    def _usable(self, tag):
        # a commission needs an item; an item with a control character is
        # one no record may carry (docs/protocol.md §1), whatever the action
        if tag.item:
            return ct_record.control_char(tag.item) < 0
        return self.action != COMMISSION

    def record(self, tag, now):
        if not self._usable(tag):
            self.errors += 1
            self.err.play(ct_ui.ERROR, now)
            return None
        t, tq = self.clock.now()
        f = {1: 2, 4: t, 5: tq, 20: tag.uid, 21: self.action, 22: self.place}
        if tag.sun:
            f[23] = tag.sun
        if tag.item:
            f[24] = tag.item
        if self.cfg.get("parent"):
            f[25] = self.cfg["parent"]
        if self.cfg.get("ref"):
            f[26] = self.cfg["ref"]
        if tag.link is not None and self.action != COMMISSION:
            f[27] = tag.link
        if self._batt:
            f[15] = self._batt()
        rec = self.core.record(f)
        if not self.core.enqueue(rec):
            self.errors += 1
            self.err.play(ct_ui.ERROR, now)
            return None
        self.scans += 1
        self._last_record = now
        if tag.custody is not None:
            try:
                tag.write_link(ct_record.chain_link(rec))
            except Exception:  # tag pulled away mid-write: the scan stands
                self.link_fails += 1
                self.err.play(ct_ui.ERROR, now)
                return rec
        self.ok.play(ct_ui.OK, now)
        return rec

    def upload_due(self, now):
        """Upload soon after a scan, once the operator has stopped tapping."""
        return self._last_record is not None and now - self._last_record >= _UPLOAD_IDLE_MS

    def uploaded(self):
        self._last_record = None
