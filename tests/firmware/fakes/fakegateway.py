"""A scripted gateway behind the fake broker (both interpreters).

It stores records by seq, checks each one's chain link against the record
before it, and publishes the retained COSE_Mac0 ack of docs/protocol.md
§5.2: the highest seq stored contiguously from the first it saw, with the
chain hash of that record.

Declared losses (§5.2): once it has stored a status record with event 11
and ``lost``, seqs lost ... lost + detail - 1 count as settled
(``declared``). A declared-lost seq has no record to hash, so the ack
names the highest stored seq at or below the settled point, with that
record's hash, as the real gateway does (``ack_settled`` keeps the settled
point of every such ack). The real gateway stores a record that arrives
later under a declared seq; here it fails the test, because the firmware
must never send one.

    gw = FakeGateway(broker, "tl-1", key, clock)
    gw.lose = {4}          # the first copy of seq 4 is "lost" (a gap)
    gw.ack_every = 5       # ack only every 5th record (batching)
    gw.duplicate = True    # publish every ack twice
    gw.silent = True       # store, never ack
    gw.command({10: 60})   # a command with the next counter
    gw.future_skew = 300   # refuse records dated further ahead of time() (tq 2, 3;
                           # ``holdover_skew`` for tq 1) as the real gateway's
                           # bad_time, and publish the ack again (``refused``)
"""

import ct_record


class FakeGateway:
    def __init__(self, broker, dev, key, clock, gw_id="gw-test", first=0):
        self.broker = broker
        self.dev = dev.encode() if isinstance(dev, str) else dev
        self.key = key
        self.clock = clock
        self.gw_id = gw_id
        self.records = {}
        self.arrivals = []  # seq of every record message, in arrival order
        self.acks = []  # payload fields of every ack published
        self.ack_settled = []  # per ack: the settled point it reported (None: forced seq)
        self.lose = set()
        self.ack_every = 1
        self.duplicate = False
        self.silent = False
        self.counter = 0
        self.next = first  # lowest seq not yet stored contiguously
        self.last_acked = first - 1
        self.chain_errors = 0
        self.declared = set()  # seqs settled as declared lost
        self.declarations = []  # (first, n, seq of the status record)
        self.future_skew = None  # None: no time check
        self.holdover_skew = 86400
        self.refused = []  # seq of every record refused as dated ahead
        self.quarantine = {}  # seq -> the record refused last under it
        broker.on_publish = self.on_publish

    def topic(self, leaf):
        return b"ct/v1/" + self.dev + b"/" + leaf

    def time(self):
        return 1790000000 + self.clock.ticks_ms() // 1000

    def on_publish(self, topic, msg):
        if topic != self.topic(b"rec"):
            return
        seq = ct_record.record_seq(msg)
        self.arrivals.append(seq)
        if seq in self.lose:
            self.lose.discard(seq)
            return
        if self.future_skew is not None and self._ahead(_fields(msg)):
            self.refused.append(seq)  # bad_time: quarantined, the ack again
            self.quarantine[seq] = msg
            if not self.silent and self.next > 0:
                self.ack()
            return
        if seq in self.records and self.records[seq] != msg:
            raise AssertionError(f"two different records with seq {seq}")
        if seq in self.declared:
            raise AssertionError(f"seq {seq} was declared lost, then came as a record")
        self.records[seq] = msg
        f = _fields(msg)
        if f[1] == 3 and f[30] == 11 and 38 in f:
            self.declarations.append((f[38], f[37], seq))
            for s in range(f[38], f[38] + f[37]):
                if s not in self.records:
                    self.declared.add(s)
        before = self.next
        while self.next in self.records or self.next in self.declared:
            if self.next - 1 in self.records and self.next in self.records:
                prev = ct_record.chain_link(self.records[self.next - 1])
                if _prev_of(self.records[self.next]) != prev:
                    self.chain_errors += 1
            self.next += 1
        if self.silent or self.next == 0:
            return
        if seq < before or self.next - 1 - self.last_acked >= self.ack_every:
            self.ack()

    def _ahead(self, f):
        t = f[4]
        if f[1] == 7:  # a reading block: its last reading (§2.8)
            t += (len(f[18]) // 2 - 1) * f[17]
        skew = self.holdover_skew if f[5] == 1 else self.future_skew
        return f[5] != 0 and t > self.time() + skew

    def ack(self, seq=None, link=None, key=None):
        settled = None
        if seq is None:
            settled = seq = self.next - 1
            while seq in self.declared:
                seq -= 1  # no record: name the stored one below (§5.2)
            if seq < 0:
                return None  # nothing stored at or below the settled point
        if link is None:
            link = ct_record.chain_link(self.records[seq]) if seq in self.records else bytes(16)
        f = {1: seq, 2: self.time(), 3: link}
        if key is None:
            self.last_acked = max(self.last_acked, seq if settled is None else settled)
        msg = ct_record.mac0(f, self.gw_id, key or self.key)
        self.acks.append(f)
        self.ack_settled.append(settled)
        self.broker.publish(self.topic(b"ack"), msg, True)
        if self.duplicate:
            self.broker.publish(self.topic(b"ack"), msg, True)
        return msg

    def command(self, fields, counter=None, key=None):
        if counter is None:
            self.counter += 1
            counter = self.counter
        f = dict(fields)
        f[1] = counter
        f[2] = self.time()
        msg = ct_record.mac0(f, self.gw_id, key or self.key)
        self.broker.publish(self.topic(b"cmd"), msg, False)
        return msg


def _fields(rec):
    import ct_cbor

    _, p, _ = ct_record.parse_sign1(rec)
    return ct_cbor.decode_map(p)


def _prev_of(rec):
    return _fields(rec)[6]
