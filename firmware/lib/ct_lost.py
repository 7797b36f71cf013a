"""Which seqs the device lost for good, and when to declare them
(docs/protocol.md §5.2 "Declared losses", §2.4 event 11 with ``lost``).

The queue (ct_queue) holds the signer's records in seq order, and ct_state
hands every seq out once, after its record is durably queued. So a seq
that should be in the queue and is not - its frame failed its CRC, or a
damaged header made the queue drop it - shows up as a hole in the seqs a
walk of the queue reads:

    lo = Losses(top)      # top: highest seq the gateway has settled (-1: none)
    lo.rewind(expected)   # a walk starts at the queue head, whose record
                          # should have seq ``expected`` (None: not known)
    lo.record(seq)        # the walk read a record
    lo.declared(first, n) # ... which declares first..first+n-1 (an earlier wake)
    lo.skipped(n)         # ... passed n damaged frames
    lo.end(next_seq)      # ... reached the tail; next_seq = ct_state.seq
    lo.settled(seq)       # an ack: the gateway has everything up to seq
    for first, n in lo.due(): ...   # sign event 11 (detail n, lost first)

Holes: between two records read (a, b: a+1 ... b-1); before the first
record s, from ``expected`` (or, when that is unknown, one seq per damaged
frame passed: s-n ... s-1); after the last record, up to ct_state's next
seq (seqs signed but no longer queued). A hole is declared only once the
gateway has settled everything before it, and only the part it has not
settled: a declaration goes out exactly when the ack is stuck on it, never
for records the gateway holds, never twice in one upload, and not again
when the walk finds the earlier declaration still queued.
"""


class Losses:
    def __init__(self, top=-1):
        self.top = top
        self._prev = None
        self._skip = 0
        self._open = []  # (first, last) found, not declared yet
        self._done = []  # (first, last) declared, or settled after all

    def rewind(self, expected):
        self._prev = None if expected is None else expected - 1
        self._skip = 0

    def skipped(self, n):
        self._skip += n

    def record(self, seq):
        self._upto(seq)
        self._prev = seq
        self._skip = 0

    def end(self, next_seq):
        self._upto(next_seq)

    def declared(self, first, n):
        self._done.append((first, first + n - 1))
        old, self._open = self._open, []
        for a, b in old:
            self._add(a, b)

    def settled(self, seq):
        if seq > self.top:
            self.top = seq

    def _upto(self, s):
        # seqs before s that the walk did not read since the last record
        p = self._prev
        if p is not None:
            if s > p + 1:
                self._add(p + 1, s - 1)
        elif self._skip:
            self._add(s - self._skip, s - 1)

    def _add(self, first, last):
        first = max(first, 0)
        moved = True
        while moved and first <= last:
            moved = False
            for a, b in self._open + self._done:
                if a <= first <= b:
                    first, moved = b + 1, True
                if a <= last <= b:
                    last, moved = a - 1, True
        if first <= last:
            self._open.append((first, last))

    def due(self):
        """[(first, n)] to declare now (each range is handed out once)."""
        out = []
        for g in self._open[:]:
            first, last = g
            if self.top < first - 1:
                continue  # the gateway still waits for records before it
            self._open.remove(g)
            self._done.append(g)
            first = max(first, self.top + 1)
            if first <= last:
                out.append((first, last - first + 1))
        return out

    def pending(self):
        """Holes found and not declared yet: [(first, last)]."""
        return list(self._open)
