"""The signed-record core the apps call: sign, chain, queue, deliver.

    core = open_device(cfg, board, wifi)      # on the board (ct_main)
    core = Core("tl-7f3a21", signer, state, queue, uplink)
    core.start(wake=False)                    # boot counter, recovery
    rec = core.record({1: 1, 4: t, 5: tq, 10: 450})   # signed bytes, or None
    ok = core.enqueue(rec)                    # durable; False when full
    n, free = core.queued()
    events = core.upload(20000, ntp=False, now=clock.now)
                                              # see ct_uplink; OSError if offline
    rec = core.declare_lost(first, n, t, tq)  # status event 11 (ct_uplink calls it)
    core.close()

``record`` fills boot (2), seq (3) and prev (6) from ct_state and checks
every other field against docs/protocol.md §2 (RecordError). It returns
None, without signing, when the queue could not take the record: the app
counts it as dropped (full-storage policy: the oldest unacked records are
kept). Status records (kind 3) may use the queue's reserve.

``record`` then ``enqueue``, in that order, one record at a time: the seq
is consumed only when the record is durably queued, so a refused record
never leaves a gap or a reused seq in what the gateway sees. (The
full-storage policy therefore never drops a record that has a seq: the
app counts refused readings and reports them with event 11 without
``lost``.) A queued record that flash later loses is a gap the device
declares (docs/protocol.md §5.2): during ``upload`` the uplink finds it and
calls ``declare_lost``, which signs status event 11 with detail = count
and lost = first seq, stamped by ``now()`` -> (time, tq) (the app's
ct_clock); without ``now`` nothing is declared.
"""

import ct_record
from ct_state import StateError

_PRIORITY_KINDS = (3,)
_EV_DROPPED = 11  # docs/protocol.md §2.4


class CoreError(Exception):
    pass


class Core:
    def __init__(self, dev_id, signer, state, queue, uplink=None, wifi=None, ntp=None,
                 offset=0):
        self.kid = dev_id.encode() if type(dev_id) is str else bytes(dev_id)
        self._prot = ct_record.protected(self.kid)
        self._hdr = 2 + len(ct_record._bstr_head(len(self._prot))) + len(self._prot) + 1 + 66
        self.signer = signer
        self.state = state
        self.queue = queue
        self.uplink = uplink
        self._wifi = wifi
        self._ntp = ntp  # callable -> Unix seconds or None
        self._offset = offset
        self._pending = None

    def start(self, wake=False):
        """Count this start and make sure no queued seq is ever reused."""
        self.state.begin(wake)
        last = self.queue.last()
        if last is not None:
            self.state.recover(ct_record.record_seq(last), ct_record.chain_link(last))
        return self.state.boot

    def record(self, fields):
        f = dict(fields)
        st = self.state
        f[2] = st.boot
        f[3] = st.seq
        f[6] = st.head
        p = ct_record.payload(f)
        n = self._hdr + len(ct_record._bstr_head(len(p))) + len(p)
        if not self.queue.fits(n, f[1] in _PRIORITY_KINDS):
            self._pending = None
            return None
        rec = ct_record.sign1(p, self.kid, self.signer, self._prot)
        if len(rec) != n:
            raise CoreError("record size %d, expected %d" % (len(rec), n))
        self._pending = (rec, f[3], f[1] in _PRIORITY_KINDS)
        return rec

    def enqueue(self, rec):
        if rec is None:
            return False
        pend = self._pending
        if pend is None or pend[0] is not rec:
            raise CoreError("enqueue() takes the record record() just made")
        self._pending = None
        if pend[1] != self.state.seq:
            raise StateError("seq moved between record() and enqueue()")
        if not self.queue.put(rec, pend[2]):
            return False
        self.state.advance(pend[1], ct_record.chain_link(rec))
        return True

    def queued(self):
        return self.queue.count(), self.queue.free()

    def declare_lost(self, first, n, t, tq):
        """Sign and queue the status record declaring seqs first ..
        first+n-1 lost for good (§2.4 event 11, detail n, lost first; §5.2).
        Returns the record, or None when the queue refused it."""
        if n < 1 or first < 0 or first + n > self.state.seq:
            raise CoreError("only seqs already handed out can be lost")
        rec = self.record({1: 3, 4: t, 5: tq, 30: _EV_DROPPED, 37: n, 38: first})
        if not self.enqueue(rec):
            return None
        return rec

    def upload(self, timeout_ms, ntp=False, now=None, on_time=None, sync=None, ahead=None):
        """Deliver the queue (ct_uplink events, plus ("ntp", unix) first when
        asked); ``now()`` -> (time, tq) stamps declarations of lost records.
        ``on_time(unix)`` takes the NTP time instead of the event, before
        the broker connection: TLS checks certificate dates, so the clock
        must be set before the handshake. ``sync(unix)`` -> bool sets the
        clock from the gateway during the upload, when the gateway refuses
        records dated ``ahead`` = (max_ahead, hold_ahead) s past its time
        (ct_uplink, docs/protocol.md §5.2 "Records dated ahead")."""
        if self.uplink is None:
            raise OSError(19)  # ENODEV: no uplink configured
        if self._wifi is not None:
            self._wifi.up()
        if now is not None:
            self.uplink.declare = lambda first, n: self.declare_lost(first, n, *now())
            self.uplink.sync = sync
        if ahead is not None:
            self.uplink.max_ahead, self.uplink.hold_ahead = ahead
        try:
            ev = []
            if ntp and self._ntp is not None:
                t = self._ntp()
                if t and on_time is not None:
                    on_time(t + self._offset)
                elif t:
                    ev.append(("ntp", t + self._offset))
            ev.extend(self.uplink.upload(timeout_ms))
            self.uplink.close()
        finally:
            self.uplink.declare = None
            self.uplink.sync = None
            if self._wifi is not None:
                self._wifi.down()
        return ev

    def close(self):
        if self.uplink is not None:
            self.uplink.close()
        self.queue.close()


def _read(fs, path):
    if fs.size(path) < 0:
        return None
    with fs.open(path, "rb") as f:
        return f.read()


def mqtt_factory(cfg, dev, client=None):
    """A function making umqtt.simple clients from config.json's "mqtt"
    (``client``: the MQTTClient class, umqtt.simple's by default). With
    "tls", ct_tls.Context: the broker CA, the client certificate, the
    server name; it is built at the first connect, so a bad file is a
    failed upload (ct_uplink ``error``), not a boot loop."""
    if client is None:
        from umqtt.simple import MQTTClient as client

    m = cfg.get("mqtt", {})
    host = m.get("host", "192.168.4.1")
    tls = m.get("tls")
    ctx = []

    def new():
        ssl = None
        if tls:
            if not ctx:
                import ct_tls

                ctx.append(ct_tls.Context(tls, host))
            ssl = ctx[0]
        c = client(dev, host, m.get("port", 0), m.get("user"), m.get("password"),
                   m.get("keepalive", 60), ssl)
        if ssl is not None:
            c.connect = ssl.checked(c.connect)  # an old umqtt would ignore the context
        return c

    return new


def open_device(cfg, board, wifi=None, fs=None, new_client=None, rtc_mem=None):
    """Build and start the core from config.json on a board (ct_main)."""
    import ct_fs
    import ct_provision
    import ct_queue
    import ct_state
    import ct_uplink

    fs = fs or ct_fs.Fs()
    root = cfg.get("dir", ct_provision.ROOT)
    dev = cfg["id"]
    if rtc_mem is None:
        import ct_rtcmem

        rtc_mem = ct_rtcmem.RTCMem(board.rtc)
    signer = ct_provision.load_signer(cfg, fs, root)
    state = ct_state.State(fs, root + "/state", rtc_mem)
    q = cfg.get("queue", {})
    queue = ct_queue.Queue(fs, root + "/q", q.get("segments", 96), q.get("seg_size", 8188),
                           q.get("reserve", 2048), q.get("low_water", 16384))
    key = _read(fs, root + "/" + ct_provision.ACK_KEY)
    uplink = None
    if key is not None:
        m = cfg.get("mqtt", {})
        uplink = ct_uplink.Uplink(new_client or mqtt_factory(cfg, dev), dev, key, queue, state,
                                  board.feed, m.get("qos", 1), m.get("window", 16),
                                  m.get("timeout_ms", 5000), m.get("ack_wait_ms", 8000))
    ntp = None
    if cfg.get("ntp"):
        def ntp():
            import ntptime

            import ct_net

            return ct_net.ntp_time(ntptime, cfg["ntp"])

    core = Core(dev, signer, state, queue, uplink, wifi, ntp, getattr(board, "offset", 0))
    core.start(board.reset_cause() == board.DEEPSLEEP)
    return core
