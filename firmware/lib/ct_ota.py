"""Signed firmware updates with rollback (docs/protocol.md §5.4, D36).

    path = select(fs, base, k)        # boot.py, before any other ct_ import
    u = Updater(fs, base, dev, ack_key, release_pub, new_client, k=3)
    u.offer(cmd_fields)   -> events   # a verified §5.3 command with key 20
    u.work(timeout_ms)    -> events   # download, verify, switch (resumable)
    u.healthy()           -> events   # the trial's first record was acked
    u.notes()             -> events   # a rollback select() made at boot
    u.running()           -> (label, version) for status records

Events are (status event, detail) pairs for the app's kind-3 records:
12 update confirmed (detail = version), 13 update refused (detail = reason
below), 14 rolled back (detail = the version that never became healthy).

What an update replaces: the firmware's Python modules (``.py``/``.mpy``
files, the contents of ``/lib``) in the VFS. Two slots, ``/slot_a`` and
``/slot_b``, take downloads; ``/lib`` is the factory slot, never written.
boot.py/main.py and the MicroPython binary are not updated (an ESP-IDF
app-partition update would go through ``esp32.Partition``; out of scope).

Persistent state under ``base + "/ota"``, each file written to ``.tmp``
then renamed (atomic on LittleFS):
  ``ptr``    JSON {cur, ver, lab, try, tver, tlab, n, hi, rb, last}: the
             slot that runs ("" = /lib) and its version, the slot on trial
             and how many boots it had, the highest version ever confirmed
             (anti-rollback: an offer at or below it is refused), a rollback
             not yet reported, and the manifest hash of the last switch
             (so a cut between the switch and the offer's removal never
             installs the same offer twice).
  ``offer``  JSON {ver, h, size, slot, clean}: the update being fetched;
             its slot is chosen when the download starts.

A download never writes into a slot that ``cur`` or ``try`` names, so a
power cut at any step leaves the device booting a slot that was verified
(or /lib). Files are appended chunk by chunk, each chunk flushed: after a
cut the file's size is where the download resumes; the final SHA-256 of
every file (and the manifest signature, again) decides.

Download (§5.4): request {1: ver, 2: file index (0 = the manifest), 3:
offset, 4: length} to ``ct/v1/{dev}/fwreq``; the gateway answers on
``ct/v1/{dev}/fw`` with a COSE_Mac0 under the ack key of {1: ver, 2: index,
3: offset, 4: bytes} - each chunk is authenticated on its own.
"""

import hashlib
import json

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


EV_UPDATED = const(12)
EV_REFUSED = const(13)
EV_ROLLBACK = const(14)
# reasons (status event 13's detail)
R_SIGNATURE = const(1)  # the manifest does not verify under the pinned key
R_HASH = const(2)  # a file's size or SHA-256 differs from the manifest
R_DOWNGRADE = const(3)  # version not above the running/highest one
R_FORMAT = const(4)  # malformed offer or manifest
R_OFFER = const(5)  # the manifest is not the one the offer named

_MAX_FILES = const(64)
_MAX_FILE = const(262144)
_MAX_MANIFEST = const(8192)
_SIG1 = b"\x84\x6aSignature1"
_MAN = ".manifest"


class OtaError(Exception):
    """args: (reason code, message)."""


def _read_json(fs, path):
    if fs.size(path) < 0:
        return None
    try:
        with fs.open(path, "rb") as f:
            v = json.loads(f.read().decode())
        return v if isinstance(v, dict) else None
    except (OSError, ValueError):
        return None


def _write_json(fs, path, v):
    with fs.open(path + ".tmp", "wb") as f:
        f.write(json.dumps(v).encode())
        f.flush()
    fs.rename(path + ".tmp", path)


def _ptr(fs, base):
    p = _read_json(fs, base + "/ota/ptr") or {}
    d = {"cur": "", "ver": 0, "lab": "", "try": "", "tver": 0, "tlab": "", "n": 0,
         "hi": 0, "rb": 0, "last": ""}
    for k in d:
        if k in p and type(p[k]) is type(d[k]):
            d[k] = p[k]
    if d["cur"] not in ("", "a", "b") or d["try"] not in ("", "a", "b"):
        d["cur"] = d["try"] = ""
    return d


def slot_dir(base, s):
    return base + ("/slot_" + s if s else "/lib")


def select(fs, base="", k=3):
    """At boot: the directory to put first on sys.path. A slot on trial
    gets k boots to report healthy; then the previous slot runs again."""
    p = _ptr(fs, base)
    if p["try"]:
        if p["n"] >= k:
            p["rb"] = p["tver"]
            p["try"], p["tver"], p["tlab"], p["n"] = "", 0, "", 0
        else:
            p["n"] += 1
        fs.mkdir(base + "/ota")
        _write_json(fs, base + "/ota/ptr", p)
        if p["try"]:
            return slot_dir(base, p["try"])
    return slot_dir(base, p["cur"])


# --- the manifest --------------------------------------------------------------


def _sig_digest(prot, p):
    import ct_record

    h = hashlib.sha256(_SIG1)
    for part in (ct_record._bstr_head(len(prot)), prot, b"\x40",
                 ct_record._bstr_head(len(p)), p):
        h.update(part)
    return h.digest()


def _name_ok(n):
    if not 4 <= len(n) <= 32 or not (n.endswith(".py") or n.endswith(".mpy")):
        return False
    for c in n:
        if not ("a" <= c <= "z" or "0" <= c <= "9" or c in "_."):
            return False
    return n[0] != "."


def parse_manifest(p):
    """(version, label, [(name, size, sha256)]) of a manifest payload:
    {1: version uint, 2: label tstr, 3: [[name, size, sha256], ...]}."""
    from ct_cbor import CBORError, read_head

    try:
        mj, n, pos = read_head(p, 0)
        if mj != 5 or n != 3:
            raise OtaError(R_FORMAT, "manifest is a map of 3")
        out = []
        for key in (1, 2, 3):
            mj, k, pos = read_head(p, pos)
            if mj != 0 or k != key:
                raise OtaError(R_FORMAT, "manifest keys are 1, 2, 3")
            if key == 1:
                mj, ver, pos = read_head(p, pos)
                if mj != 0 or not 1 <= ver <= 0xFFFFFFFF:
                    raise OtaError(R_FORMAT, "version is a uint 1 .. 2^32-1")
            elif key == 2:
                mj, m, pos = read_head(p, pos)
                if mj != 3 or not 1 <= m <= 32:
                    raise OtaError(R_FORMAT, "label is a tstr of 1 .. 32 bytes")
                lab = bytes(p[pos : pos + m]).decode()
                pos += m
            else:
                mj, m, pos = read_head(p, pos)
                if mj != 4 or not 1 <= m <= _MAX_FILES:
                    raise OtaError(R_FORMAT, "files: an array of 1 .. 64")
                for _ in range(m):
                    mj, three, pos = read_head(p, pos)
                    mj2, ln, pos = read_head(p, pos)
                    if mj != 4 or three != 3 or mj2 != 3:
                        raise OtaError(R_FORMAT, "file entry is [name, size, sha256]")
                    name = bytes(p[pos : pos + ln]).decode()
                    pos += ln
                    mj, size, pos = read_head(p, pos)
                    mj2, hl, pos = read_head(p, pos)
                    if mj != 0 or size > _MAX_FILE or mj2 != 2 or hl != 32:
                        raise OtaError(R_FORMAT, "file size or hash")
                    h = bytes(p[pos : pos + 32])
                    pos += 32
                    if not _name_ok(name) or name in [f[0] for f in out]:
                        raise OtaError(R_FORMAT, "file name %r" % name)
                    out.append((name, size, h))
        if pos != len(p):
            raise OtaError(R_FORMAT, "trailing bytes")
    except (CBORError, UnicodeError, IndexError) as e:
        raise OtaError(R_FORMAT, "manifest: %s" % e)
    return ver, lab, out


def verify_manifest(cose, pub):
    """Parse a manifest COSE_Sign1 and check its ES256 signature under the
    pinned release key (65-byte SEC1). Returns parse_manifest's triple."""
    import ct_p256
    import ct_record

    try:
        prot, p, sig = ct_record.parse_sign1(cose)
    except ct_record.RecordError as e:
        raise OtaError(R_FORMAT, "envelope: %s" % e)
    if len(prot) < 6 or prot[:4] != b"\xa2\x01\x26\x04":
        raise OtaError(R_FORMAT, "protected header must be {1: -7, 4: kid}")
    try:
        ct_p256.verify_digest(pub, _sig_digest(prot, p), sig)
    except ct_p256.P256Error as e:
        raise OtaError(R_SIGNATURE, "manifest signature: %s" % e)
    return parse_manifest(p)


def file_sha256(fs, path, buf=None):
    buf = buf or bytearray(512)
    h = hashlib.sha256()
    n = 0
    with fs.open(path, "rb") as f:
        while True:
            k = f.readinto(buf)
            if not k:
                break
            h.update(buf[:k] if k < len(buf) else buf)
            n += k
    return n, h.digest()


def verify_slot(fs, d, pub):
    """Check a slot directory: its manifest's signature, every file's size
    and SHA-256, and no file the manifest does not list. Returns the
    manifest's (version, label, files)."""
    if fs.size(d + "/" + _MAN) < 0:
        raise OtaError(R_FORMAT, "no manifest in " + d)
    with fs.open(d + "/" + _MAN, "rb") as f:
        m = verify_manifest(f.read(), pub)
    names = [x[0] for x in m[2]]
    for n in fs.listdir(d):
        if n != _MAN and n not in names:
            raise OtaError(R_HASH, "file %s is not in the manifest" % n)
    buf = bytearray(512)
    for name, size, h in m[2]:
        p = d + "/" + name
        if fs.size(p) != size or file_sha256(fs, p, buf) != (size, h):
            raise OtaError(R_HASH, "%s does not match the manifest" % name)
    return m


# --- the updater ---------------------------------------------------------------


class Updater:
    def __init__(self, fs, base, dev_id, key, release_pub, new_client=None, k=3,
                 chunk=1024, factory=(1, "factory"), ticks=None, feed=None,
                 timeout_ms=5000, wifi=None):
        if len(release_pub) != 65 or len(key) != 32:
            raise OtaError(R_FORMAT, "release key (65-byte SEC1) and ack key (32 bytes)")
        if ticks is None:
            import ct_ticks as ticks
        self.fs = fs
        self.base = base
        self.key = key
        self.pub = release_pub
        self.new_client = new_client
        self.k = k
        self.chunk = chunk
        self.factory = factory
        self._t = ticks
        self._feed = feed or (lambda: None)
        self.timeout_ms = timeout_ms
        self.wifi = wifi  # up()/down() around a download (ct_net.WiFi), or None
        dev = dev_id.encode() if type(dev_id) is str else dev_id
        self.t_req = b"ct/v1/" + dev + b"/fwreq"
        self.t_fw = b"ct/v1/" + dev + b"/fw"
        self._dir = base + "/ota"
        fs.mkdir(self._dir)
        self._got = None
        self.stash = []
        self.requests = 0

    # --- state ------------------------------------------------------------

    def ptr(self):
        return _ptr(self.fs, self.base)

    def _save(self, p):
        _write_json(self.fs, self._dir + "/ptr", p)

    def running(self):
        """(label, version) of the code this boot runs."""
        p = self.ptr()
        if p["try"]:
            return p["tlab"], p["tver"]
        if p["cur"]:
            return p["lab"], p["ver"]
        return self.factory[1], self.factory[0]

    def in_trial(self):
        return bool(self.ptr()["try"])

    def _floor(self, p):
        """Versions at or below this are refused (anti-rollback)."""
        return max(p["hi"], p["ver"] if p["cur"] else self.factory[0], p["tver"])

    def notes(self):
        p = self.ptr()
        if not p["rb"]:
            return []
        ev = [(EV_ROLLBACK, p["rb"])]
        p["rb"] = 0
        self._save(p)
        return ev

    def healthy(self):
        """The trial slot reached its health point: it becomes current."""
        p = self.ptr()
        if not p["try"]:
            return []
        p["cur"], p["ver"], p["lab"] = p["try"], p["tver"], p["tlab"]
        p["hi"] = max(p["hi"], p["tver"])
        p["try"], p["tver"], p["tlab"], p["n"] = "", 0, "", 0
        self._save(p)
        return [(EV_UPDATED, p["ver"])]

    # --- offers -----------------------------------------------------------

    def offer(self, f):
        """A verified command carrying 20 = version, 21 = manifest SHA-256,
        22 = manifest size. Returns events (a refusal)."""
        ver, h, size = f.get(20), f.get(21), f.get(22)
        if (type(ver) is not int or type(h) is not bytes or len(h) != 32
                or type(size) is not int or not 0 < size <= _MAX_MANIFEST):
            return [(EV_REFUSED, R_FORMAT)]
        p = self.ptr()
        if ver <= self._floor(p):
            return [(EV_REFUSED, R_DOWNGRADE)]
        o = _read_json(self.fs, self._dir + "/offer")
        if o and o.get("h") == h.hex():
            return []  # the same update again: keep what was fetched
        if p["last"] == h.hex():
            p["last"] = ""  # offered anew (after a rollback): it may be installed again
            self._save(p)
        _write_json(self.fs, self._dir + "/offer",
                    {"ver": ver, "h": h.hex(), "size": size, "slot": "", "clean": 0})
        return []

    def pending(self):
        return _read_json(self.fs, self._dir + "/offer") is not None

    def _drop_offer(self):
        if self.fs.size(self._dir + "/offer") >= 0:
            self.fs.remove(self._dir + "/offer")

    # --- download, verify, switch -------------------------------------------

    def work(self, timeout_ms=60000):
        """Advance the pending update as far as ``timeout_ms`` allows.
        Raises OSError when the link fails (everything fetched is kept)."""
        o = _read_json(self.fs, self._dir + "/offer")
        if o is None:
            return []
        p = self.ptr()
        if p["try"]:
            return []  # one trial at a time
        if (type(o.get("ver")) is not int or type(o.get("size")) is not int
                or o.get("slot") not in ("", "a", "b") or o.get("h") == p["last"]
                or o["ver"] <= self._floor(p) or (o.get("clean") and o["slot"] == p["cur"])):
            self._drop_offer()  # installed already (a cut before it was removed), or junk
            return []
        fs = self.fs
        if not o["clean"]:
            o["slot"] = "b" if p["cur"] != "b" else "a"
        d = slot_dir(self.base, o["slot"])
        if not o["clean"]:
            fs.mkdir(d)
            for n in fs.listdir(d):
                fs.remove(d + "/" + n)
            o["clean"] = 1
            _write_json(fs, self._dir + "/offer", o)
        try:
            m = self._fetch_all(o, d, timeout_ms)
            if m is None:
                return []  # out of time: resume next wake
            verify_slot(fs, d, self.pub)
        except OtaError as e:
            self._drop_offer()
            return [(EV_REFUSED, e.args[0])]
        p["try"], p["tver"], p["tlab"], p["n"] = o["slot"], m[0], m[1], 0
        p["last"] = o["h"]
        self._save(p)  # the switch: the next boot runs the trial
        self._drop_offer()
        return []

    def _fetch_all(self, o, d, timeout_ms):
        t = self._t
        t0 = t.ticks_ms()
        c = None
        if self.wifi is not None:
            self.wifi.up()
        try:
            mp = d + "/" + _MAN
            c = self._connect()
            if not self._fetch(c, o["ver"], 0, mp, o["size"], t0, timeout_ms):
                return None
            with self.fs.open(mp, "rb") as f:
                cose = f.read()
            if hashlib.sha256(cose).digest().hex() != o["h"]:
                raise OtaError(R_OFFER, "the manifest is not the one offered")
            m = verify_manifest(cose, self.pub)
            if m[0] != o["ver"]:
                raise OtaError(R_OFFER, "manifest version %d, offered %d" % (m[0], o["ver"]))
            for i, (name, size, _) in enumerate(m[2]):
                if not self._fetch(c, o["ver"], i + 1, d + "/" + name, size, t0, timeout_ms):
                    return None
            return m
        finally:
            if c is not None:
                try:
                    c.disconnect()
                except Exception:
                    pass
            if self.wifi is not None:
                self.wifi.down()

    def _connect(self):
        c = self.new_client()
        c.set_callback(self._on_msg)
        c.connect(False, self.timeout_ms / 1000)
        c.subscribe(self.t_fw, 1)
        return c

    def _on_msg(self, topic, msg):
        if bytes(topic) == self.t_fw:
            self._got = bytes(msg)
        elif len(self.stash) < 8:
            # the download resumes the device's MQTT session: a command
            # queued for it arrives here; the app hands it to the uplink
            self.stash.append((bytes(topic), bytes(msg)))

    def take_stash(self):
        """Messages for other topics that arrived during the download."""
        s, self.stash = self.stash, []
        return s

    def _fetch(self, c, ver, idx, path, size, t0, timeout_ms):
        """Append chunks to ``path`` until it holds ``size`` bytes. False
        when time ran out."""
        import ct_cbor
        import ct_record

        fs = self.fs
        t = self._t
        have = fs.size(path)
        if have > size:
            fs.remove(path)
            have = -1
        if have < 0:
            with fs.open(path, "wb") as f:
                f.flush()
            have = 0
        buf = bytearray(32)
        while have < size:
            self._feed()
            if t.ticks_diff(t.ticks_ms(), t0) >= timeout_ms:
                return False
            n = min(self.chunk, size - have)
            req = bytes(buf[: ct_cbor.encode_map({1: ver, 2: idx, 3: have, 4: n}, buf)])
            self._got = None
            c.publish(self.t_req, req, False, 1)
            self.requests += 1
            t1 = t.ticks_ms()
            data = None
            while data is None and t.ticks_diff(t.ticks_ms(), t1) < self.timeout_ms:
                c.check_msg()
                if self._got is None:
                    t.sleep_ms(5)
                    continue
                msg, self._got = self._got, None
                try:
                    _, f = ct_record.verify_mac0(msg, self.key)
                except ct_record.MacError:
                    continue  # forged or damaged: ask again
                v = f.get(4)
                if (f.get(1), f.get(2), f.get(3)) == (ver, idx, have) and type(v) is bytes \
                        and 0 < len(v) <= n:
                    data = v
            if data is None:
                raise OSError(110, "no chunk")
            with fs.open(path, "ab") as f:
                f.write(data)
                f.flush()
            have += len(data)
        return True


def from_config(cfg, core, feed=None, fs=None):
    """The updater config.json asks for ("ota": {"key": SEC1 hex of the
    release key, "k": boots on trial, "version": the factory firmware's
    number}), on the core's uplink; None without a pinned key or uplink."""
    o = cfg.get("ota") or {}
    if not o.get("key"):
        return None
    up = core.uplink
    if up is None:
        return None
    import binascii

    import ct_app
    import ct_fs

    return Updater(fs or ct_fs.Fs(), o.get("base", ""), cfg["id"], up._key,
                   binascii.unhexlify(o["key"]), up._new, o.get("k", 3), o.get("chunk", 1024),
                   (o.get("version", 1), ct_app.FW), feed=feed, wifi=core._wifi)


def activate(d):
    """boot.py: run the firmware in slot directory ``d``. Puts it first on
    sys.path and forgets the ct_ modules imported so far (this one too), so
    main.py imports the slot's own. /lib (the factory) needs nothing."""
    import sys

    if not d.endswith("/lib"):
        sys.path.insert(0, d)
        for m in [m for m in sys.modules if m.startswith("ct_")]:
            del sys.modules[m]
    return d


def boot(cfg_path="config.json"):
    """boot.py: the slot to run, with K from config.json (never raises)."""
    import ct_fs

    k, base = 3, ""
    try:
        with open(cfg_path) as f:
            o = json.loads(f.read()).get("ota") or {}
        k, base = o.get("k", 3), o.get("base", "")
    except (OSError, ValueError):
        pass
    return select(ct_fs.Fs(), base, k)
