"""Deliver queued records over MQTT until the gateway's ack proves them stored.

    up = Uplink(new_client, "tl-7f3a21", ack_key, queue, state, feed=wdt.feed)
    up.declare = core_declare   # optional: (first, n) -> signed, queued record
    events = up.upload(20000)   # OSError if no connection could be made
    up.close()

    events: ("ack", seq, time)  every valid ack; time = its gateway time if
                                the ack is fresh (below), else None
            ("time", unix)      once, if a fresh ack came: the gateway's
                                time now (its time + local time since), for
                                the clock (tq 3)
            ("cmd", fields)     a verified command; ("cmd", None) once if
                                any was refused
            ("lost", first, n)  seqs first..first+n-1 declared lost (below)

``new_client()`` returns a micropython-lib ``umqtt.simple.MQTTClient`` (or
anything with its API). Topics and messages are docs/protocol.md §5:
records go to ``ct/v1/{dev}/rec`` in queue order; the retained COSE_Mac0
ack on ``ct/v1/{dev}/ack`` says the highest seq stored contiguously and the
hash of that record; commands arrive on ``ct/v1/{dev}/cmd``.

Delivery is proven by the ack alone, never by a PUBACK:
  * a record leaves the queue only when a valid ack names a seq whose record
    is in the queue with the same chain hash (§5.2); everything up to it
    goes. A forged, stale, duplicate or mismatching ack deletes nothing.
  * after every (re)connect the whole unacked queue is sent again from its
    head, in order; the gateway acks duplicates again (§5.1).
  * at most ``window`` records are in flight past the acked point; without
    ack progress for ``ack_wait_ms`` the window is sent again.
  * the queue's mark (ct_queue) is committed with every ack: the seq the
    head record should have. It survives sleep and power loss, so the
    device always knows where the gateway's settled range ends.

Fresh acks. The retained ack a session starts with, and acks a persistent
session kept while the device slept, may be hours old. An ack is fresh
when it arrived after this upload published a record it covers (its seq
>= that record's seq): the gateway made it after receiving that record.
An ack that covers none of them is fresh too when it arrived after this
upload's first record and is newer than every ack that came before it
(the gateway's reply to a record it refused, §5.2 "Records dated
ahead"): the retained and queued acks reach the device before its first
record (the broker sends queued messages after CONNACK and the retained
ack after the ack topic's SUBACK, which _connect reads before the cmd
topic's SUBACK), and the retained ack is the newest of them. Only fresh
acks give the gateway's time.

Records dated ahead (§5.2). After each fresh ack the queue head (what the
ack did not cover) is checked: dated (a block: its last reading) more than
``max_ahead`` s (``hold_ahead`` s for tq 1) past the ack's gateway time,
the gateway refuses it as ``bad_time`` and will refuse it again: the clock
ran fast. ``sync(unix)`` (ct_core, from the app) sets the clock
at once (the app closes its open blocks, then signs the clock-set record);
then the contiguous run of queued records from the head that are dated
ahead is declared lost with ``declare(first, n)``, unless a queued
declaration already covers it, and those records are not sent again.
They leave the queue with the ack that covers the declaration.

Declared losses (§5.2). While sending, the walk from the head counts seqs
(ct_lost): a seq missing between queued records, before the first one, or
after the last one up to ct_state's next seq, is a record the device can
never send - its frame failed its CRC (the queue skips it) or the queue
lost it. When the gateway's ack is stuck right before such a hole and the
walk has reached the tail (so it has seen any declaration an earlier wake
queued) or the window's edge, ``declare(first, n)`` (ct_core) signs and
queues status event 11 with detail n and lost = first; it is published at
once if it would wait behind the window, and the gateway then counts those
seqs as settled, so its ack moves past them and the queue (skipping
damaged frames) drains. An ack only ever names a stored record: while the
gateway's settled point is a declared seq, it names the record below it.
Seqs are never reused: a hole is only ever below ct_state's next seq, and
the declaration takes the next seq.

umqtt.simple pitfalls handled here (shared/FIELD-NOTES.md):
  * ``wait_msg`` calls ``sock.setblocking(True)``, which drops any timeout,
    so a lost PUBACK (QoS 1) or SUBACK would block forever. The client's
    socket is wrapped after connect: setblocking(True) becomes
    settimeout(timeout), so every read and write has a deadline.
  * the packet id is never wrapped (micropython-lib #94): it is reset
    before it reaches 65535.
  * errors surface as OSError, MQTTException, or (bad packets) assert /
    IndexError: any exception in a client call drops the connection,
    which is re-made with exponential backoff while time remains: after a
    failed connect and after a session that failed (at once or later)
    alike, from ``backoff_ms`` doubling up to ``backoff_max_ms``, reset
    only when acks moved; never a hot reconnect loop.
  * ``getaddrinfo`` has no timeout in MicroPython: use an IP address or a
    local resolver (not testable without a board, see the README).

Commands (§5.3) are verified (MAC, then a counter strictly above the last
accepted one, persisted by ct_state before the command is returned). A
refused command is reported once per upload as ("cmd", None) so the app
writes status event 10 with detail -1.
"""

import ct_lost
import ct_record
import ct_ticks
from ct_queue import MARK_UNKNOWN, CorruptRecord
from ct_state import StateError

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_PID_WRAP = const(65000)
_INBOX = const(8)
_POLL_MS = const(50)
_LINGER_MS = const(300)  # after the queue drained: commands queued for us
_U32 = 0xFFFFFFFF
_EV_DROPPED = const(11)  # status event "records dropped" (§2.4)


class UplinkError(OSError):
    pass


def _reason(e):
    try:
        import ct_tls
    except ImportError:
        return repr(e)
    return ct_tls.reason(e)


class _Guard:
    """A socket whose blocking mode always keeps a timeout."""

    def __init__(self, sock, timeout_s):
        self._s = sock
        self._t = timeout_s
        sock.settimeout(timeout_s)

    def setblocking(self, flag):
        if flag:
            self._s.settimeout(self._t)
        else:
            self._s.setblocking(False)

    def settimeout(self, t):
        self._s.settimeout(self._t if t is None else t)

    def read(self, n):
        return self._s.read(n)

    def write(self, b, n=None):
        return self._s.write(b) if n is None else self._s.write(b, n)

    def close(self):
        self._s.close()

    def __getattr__(self, name):  # anything else (test fakes)
        return getattr(self._s, name)


class Uplink:
    def __init__(self, new_client, dev_id, ack_key, queue, state, feed=None, qos=1,
                 window=16, timeout_ms=5000, ack_wait_ms=8000, backoff_ms=1000,
                 backoff_max_ms=30000, clean_session=False, ticks=ct_ticks):
        if len(ack_key) != 32:
            raise UplinkError("ack key must be 32 bytes")
        self._new = new_client
        self._key = ack_key
        self._q = queue
        self._st = state
        self._feed = feed or (lambda: None)
        self._qos = qos
        self._window = window
        self._timeout_ms = timeout_ms
        self._ack_wait = ack_wait_ms
        self._backoff0 = max(1, backoff_ms)
        self._backoff_max = max(self._backoff0, backoff_max_ms)
        self._clean = clean_session
        self._t = ticks
        base = b"ct/v1/" + (dev_id.encode() if type(dev_id) is str else dev_id)
        self.t_rec = base + b"/rec"
        self.t_ack = base + b"/ack"
        self.t_cmd = base + b"/cmd"
        self.t_state = base + b"/state"
        self.declare = None  # (first, n) -> record bytes or None (ct_core)
        self.sync = None  # (unix) -> True if the clock was set (ct_core, records dated ahead)
        self.max_ahead = 300  # s a record (tq 2, 3) may be dated past the gateway's time
        self.hold_ahead = 86400  # the same for tq 1 (holdover)
        self._skip = None  # (first, last, end qid): queued records declared lost
        self._stuck = None  # (gateway time, ticks, highest seq sent) of a fresh ack to check
        self._before = -1  # newest gateway time of the acks that came before any record
        self._c = None
        self._inbox = []
        self._events = None
        self._refused = False
        self._sent_min = None  # lowest seq published in this upload
        self._sent_max = None  # highest
        self._fresh = None  # (gateway time, ticks at arrival) of the last fresh ack
        self._lost = ct_lost.Losses()
        # figures for status records and tests
        self.sent = 0
        self.acked = 0
        self.forged = 0
        self.mismatched = 0
        self.reconnects = 0
        self.corrupt = 0  # damaged queue frames passed over
        self.declared = 0  # seqs declared lost
        self.error = None  # why the last connection failed (ct_tls.reason), or None

    # --- connection ------------------------------------------------------------

    def connected(self):
        return self._c is not None

    def _connect(self):
        self._feed()
        c = self._new()
        c.set_callback(self._on_msg)
        c.set_last_will(self.t_state, b"offline", True, 1)
        self._c = c  # so that _drop closes a half-made connection
        c.connect(self._clean, self._timeout_ms / 1000)
        c.sock = _Guard(c.sock, self._timeout_ms / 1000)
        self._feed()
        self._pid_check()
        c.subscribe(self.t_ack, 1)
        self._pid_check()
        c.subscribe(self.t_cmd, 1)
        self._pid_check()
        c.publish(self.t_state, b"online", True, self._qos)
        self._feed()

    def _drop(self):
        c = self._c
        self._c = None
        if c is not None and c.sock is not None:
            try:
                c.sock.close()
            except Exception:
                pass

    def close(self):
        """Say offline (retained) and disconnect; never raises."""
        c = self._c
        if c is None:
            return
        try:
            c.publish(self.t_state, b"offline", True, 0)
            c.disconnect()
        except Exception:
            pass
        self._drop()

    def _pid_check(self):
        if self._c.pid >= _PID_WRAP:
            self._c.pid = 0

    def _publish(self, rec, seq):
        self._pid_check()
        self._c.publish(self.t_rec, rec, False, self._qos)
        self.sent += 1
        if self._sent_min is None or seq < self._sent_min:
            self._sent_min = seq
        if self._sent_max is None or seq > self._sent_max:
            self._sent_max = seq

    # --- incoming ----------------------------------------------------------------

    def _on_msg(self, topic, msg):
        # called from inside umqtt; keep it short and never raise. What was
        # published before it arrived decides whether an ack is fresh.
        if len(self._inbox) >= _INBOX:
            self._inbox.pop(0)  # the retained ack comes again; commands retry
        self._inbox.append((bytes(topic), bytes(msg), self._sent_min, self._t.ticks_ms(),
                            self._sent_max))

    def _poll(self):
        for _ in range(_INBOX):
            if self._c.check_msg() is None:
                break

    def _process(self):
        moved = False
        while self._inbox:
            topic, msg, sent_min, rx, sent_max = self._inbox.pop(0)
            if topic == self.t_ack:
                moved = self._ack(msg, sent_min, rx, sent_max) or moved
            elif topic == self.t_cmd:
                self._cmd(msg)
        return moved

    def _ack(self, msg, sent_min, rx, sent_max=None):
        try:
            _, f = ct_record.verify_mac0(msg, self._key)
        except ct_record.MacError:
            self.forged += 1
            return False
        seq, gwt, link = f.get(1), f.get(2), f.get(3)
        if type(seq) is not int or type(link) is not bytes or len(link) != 16:
            self.forged += 1
            return False
        ours = 0 <= seq < self._st.seq  # a seq we signed
        fresh = False
        if ours and type(gwt) is int:
            if sent_min is None:
                self._before = max(self._before, gwt)
            else:  # a reply to this upload's records (see the module docstring)
                fresh = seq >= sent_min or gwt > self._before
        if fresh:
            self._fresh = (gwt, rx)
            self._stuck = (gwt, rx, sent_max)  # is our head dated ahead of it? (_ahead)
        self._events.append(("ack", seq, gwt if fresh else None))
        q = self._q
        c = q.head()
        while c is not None:
            try:
                rec, nxt = q.read(c)
            except CorruptRecord as e:
                c = e.next
                continue
            if rec is None:
                break  # beyond our newest queued record
            s = ct_record.record_seq(rec)
            if s > seq:
                break  # stale or duplicate, or it names a record we lost (it has it)
            if s == seq:
                if ct_record.chain_link(rec) != link:
                    self.mismatched += 1  # the gateway stored something else
                    return False
                self.acked += q.ack(nxt, (seq + 1) & _U32)
                self._lost.settled(seq)
                return True
            c = nxt
        if ours:
            # settled there: the gateway stored that record (an ack never
            # names a declared-lost seq, §5.2; were one to, this still holds)
            self._lost.settled(seq)
        return False

    def _cmd(self, msg):
        try:
            _, f = ct_record.verify_mac0(msg, self._key)
            self._st.accept_command(f.get(1))
        except (ct_record.MacError, StateError):
            if not self._refused:
                self._refused = True
                self._events.append(("cmd", None))
            return
        self._events.append(("cmd", f))

    def command(self, msg):
        """A message from the cmd topic that arrived outside ``upload`` (on
        the firmware download's connection, ct_ota): its events, as upload
        would report them."""
        self._events = []
        self._refused = False
        try:
            self._cmd(msg)
            return self._events
        finally:
            self._events = None

    # --- declared losses -------------------------------------------------------------

    def _rewind(self):
        """Start the walk at the queue head; returns the head cursor."""
        m = self._q.mark
        self._lost.rewind(None if m == MARK_UNKNOWN else m)
        return self._q.head()

    def _declare_due(self):
        """Sign and queue the declarations the gateway waits on. True if
        any was made."""
        if self.declare is None:
            return False
        made = False
        for first, n in self._lost.due():
            rec = self.declare(first, n)
            if rec is None:
                continue  # the queue refused even a status record: next upload
            self.declared += n
            self._events.append(("lost", first, n))
            made = True
            if self._q.count() > self._window:
                # it would wait behind the window, which waits for the ack,
                # which waits for it: send it now, out of order
                self._publish(rec, ct_record.record_seq(rec))
        return made

    # --- records dated ahead (§5.2) ------------------------------------------------

    def _ahead(self):
        """After a fresh ack: if the queue head is dated ahead of the
        gateway's time, set the clock and declare the run. True if the
        queue changed."""
        gwt, rx, sent = self._stuck
        self._stuck = None
        if self.sync is None or self.declare is None:
            return False
        now = gwt + (self._t.ticks_diff(self._t.ticks_ms(), rx) + 500) // 1000
        run = self._run(now, sent)
        if run is None:
            return False  # the head is not dated ahead, or the gateway has not seen it
        if not run[3]:  # not declared yet: the clock first, so the declaration is dated right
            if not self.sync(now):
                return False
            run = self._run(now, sent)  # again: the app may have closed a block
            if run is None:
                return False
        first, n, end, done = run
        skip = (first, first + n - 1, end)
        if done:
            moved = skip != self._skip
            self._skip = skip
            return moved
        if self.declare(first, n) is None:
            return False  # the queue refused even a status record: next upload
        self._skip = skip
        self.declared += n
        self._events.append(("lost", first, n))
        return True

    def _run(self, now, sent):
        """(first seq, count, qid after it, already declared) of the run of
        queued records from the head dated ahead of ``now``, or None. The
        head must have been sent before the ack came (seq <= ``sent``): the
        gateway refused it, and keeps it in its quarantine."""
        q = self._q
        c = q.head()
        first = None
        n = 0
        end = None
        while c is not None:
            try:
                rec, nxt = q.read(c)
            except CorruptRecord:
                break  # a damaged frame ends the run (and the search)
            if rec is None:
                break
            f = ct_record.record_fields(rec)
            if end is None:
                t = f[4]
                if f[1] == 7:  # a block: its last reading (§2.8)
                    t += (len(f[18]) // 2 - 1) * f[17]
                lim = self.hold_ahead if f[5] == 1 else self.max_ahead
                if f[5] and t > now + lim and (first is None or f[3] == first + n):
                    if first is None:
                        if sent is None or f[3] > sent:
                            return None  # the gateway has not seen it yet
                        first = f[3]
                    n += 1
                    c = nxt
                    continue
                if first is None:
                    return None
                end = c[0]
            if f[1] == 3 and f.get(30) == _EV_DROPPED and f.get(38) == first and f.get(37) == n:
                return first, n, end, True  # an earlier upload declared it
            c = nxt
        if first is None:
            return None
        return first, n, c[0] if end is None and c is not None else end, False

    def _skipped(self, seq):
        k = self._skip
        return k is not None and k[0] <= seq <= k[1]

    # --- the upload ----------------------------------------------------------------

    def upload(self, timeout_ms):
        """Send the queue and collect acks/commands until everything is acked
        or ``timeout_ms`` passed. Raises OSError only if no connection could
        be made at all; otherwise returns the events (possibly partial)."""
        t = self._t
        t0 = t.ticks_ms()
        self._events = []
        self._refused = False
        self._sent_min = None
        self._sent_max = None
        self._fresh = None
        self._stuck = None
        self._skip = None
        self._before = -1
        m = self._q.mark
        self._lost = ct_lost.Losses(-1 if m == MARK_UNKNOWN else m - 1)
        ever = False
        backoff = self._backoff0
        err = None
        while t.ticks_diff(t.ticks_ms(), t0) < timeout_ms:
            self._feed()
            acked = self.acked
            try:
                if self._c is None:
                    self._connect()
                    ever = True
                    self.error = None
                if self._session(t0, timeout_ms):
                    break
            except Exception as e:  # noqa: BLE001 - any failure is a dropped link
                err = e
                self.error = _reason(e)
                self._drop()
                self.reconnects += 1
                if self.acked != acked:
                    backoff = self._backoff0  # the link worked: start again gently
                backoff = self._pause(t0, timeout_ms, backoff)
        if not ever and err is not None:
            raise err if isinstance(err, OSError) else UplinkError(str(err))
        if self._fresh is not None:
            gwt, rx = self._fresh
            self._events.append(("time", gwt + (t.ticks_diff(t.ticks_ms(), rx) + 500) // 1000))
        ev = self._events
        self._events = None
        return ev

    def _pause(self, t0, timeout_ms, backoff):
        """Wait ``backoff`` ms (or what is left of the upload) before the
        next attempt; returns the next backoff, doubled up to the maximum."""
        left = timeout_ms - self._t.ticks_diff(self._t.ticks_ms(), t0)
        if left > 0:
            self._sleep(min(backoff, left))
        return min(backoff * 2, self._backoff_max)

    def _sleep(self, ms):
        # back off in slices, feeding the watchdog
        while ms > 0:
            n = min(ms, 1000)
            self._t.sleep_ms(n)
            self._feed()
            ms -= n

    def _session(self, t0, timeout_ms):
        """Work one connection. True when done (all acked), False on timeout."""
        t = self._t
        q = self._q
        lost = self._lost
        cur = self._rewind()  # resend everything unacked, in order
        last = t.ticks_ms()
        done_at = None
        while t.ticks_diff(t.ticks_ms(), t0) < timeout_ms:
            self._feed()
            self._poll()
            if self._process():
                last = t.ticks_ms()
            if self._stuck is not None and self._ahead():
                cur = self._rewind()  # on, past the declared run
                last = t.ticks_ms()
                continue
            head = q.head()
            if head is None:
                # drained: were seqs signed after the last acked one lost?
                cur = self._rewind()
                lost.end(self._st.seq)
                if self._declare_due():
                    continue
                # linger briefly for queued commands, then finish
                if done_at is None:
                    done_at = t.ticks_ms()
                elif t.ticks_diff(t.ticks_ms(), done_at) >= _LINGER_MS:
                    return True
                t.sleep_ms(_POLL_MS)
                continue
            done_at = None
            if cur is None or ((cur[0] - head[0]) & _U32) > q.count():
                cur = self._rewind()  # the ack moved past our cursor
            inflight = (cur[0] - head[0]) & _U32
            if self._skip is not None:  # the declared run at the head is not in flight
                k = (self._skip[2] - head[0]) & _U32 if self._skip[2] is not None else 0
                if k <= q.count():
                    inflight = max(0, inflight - k)
            if inflight < self._window:
                try:
                    rec, nxt = q.read(cur)
                except CorruptRecord as e:
                    self.corrupt += 1
                    lost.skipped((e.next[0] - cur[0]) & _U32)
                    cur = e.next
                    continue
                if rec is not None:
                    f = ct_record.record_fields(rec)
                    lost.record(f[3])
                    if f[1] == 3 and f.get(30) == _EV_DROPPED and 38 in f:
                        lost.declared(f[38], f[37])  # queued by an earlier wake
                    if not self._skipped(f[3]):
                        self._publish(rec, f[3])
                    cur = nxt
                    continue
                lost.end(self._st.seq)  # the walk reached the tail
            # at the tail or the window's edge: declare what the ack waits on
            if self._declare_due():
                continue
            if t.ticks_diff(t.ticks_ms(), last) >= self._ack_wait:
                cur = self._rewind()  # no progress: send the window again
                last = t.ticks_ms()
                continue
            t.sleep_ms(_POLL_MS)
        return False
