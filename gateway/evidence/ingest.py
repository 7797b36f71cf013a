"""Ingest: every check a record goes through, and the batched pipeline.

A message goes through two stages.

**Stateless checks** (:func:`check_message`, run by a verifier on every core:
worker processes or a thread pool, gateway/evidence/verifiers.py). Each failure has
its own rejection reason:

============== ================================================================
oversized      more than 1024 bytes (§3, §12)
malformed_cbor the envelope or payload is not the deterministic CBOR of §2
bad_cose       not the COSE_Sign1 profile of §3 (tag, headers, kid, sizes)
wrong_algorithm alg is not ES256 (-7)
wrong_topic    kid is not the device of the topic ``ct/v1/{dev}/rec``
unknown_device no registration for the kid
unknown_key    a record from the outbox (a registry record, or one imported
               with ``registry import-statement``) whose kid is neither this
               gateway's registry nor a ``[[registry.authorities]]`` entry
revoked_device the device was revoked before this record arrived
bad_payload    the payload breaks a rule of §2 (fields, ranges, kinds), or a
               registry record (kinds 4-6) not signed by a registry, or a
               registry signing something else
bad_signature  the ES256 signature does not verify (or has a high s)
bad_time       a set clock (tq >= 1) claims a time before ``min_time`` or
               ahead of the gateway's clock by more than the allowed skew
               (for a reading block, kind 7: its last reading's time)
bad_declaration a status record whose ``lost`` (key 38) declares no valid
               range: not event 11, ``detail`` below 1, or seqs at or above
               the record's own seq (a device only loses seqs it numbered)
============== ================================================================

**Stateful checks** (:class:`Ingestor`, one thread, in arrival order),
against what is stored:

============== ================================================================
duplicate      the identical record is already stored: not a rejection - it is
               counted and the device is acked again (§5.1)
conflict       another record is stored under this (signer, seq): quarantined,
               alarm (two different records signed for one sequence number)
replayed_seq   as conflict, but the new record's boot is higher: the device
               reused sequence numbers after a reboot (§2.1 forbids it); alarm
bad_registration a registration the registry may not apply (another key for a
               known device, a revoked id reused, revoking an unknown device)
out_of_scope   a registration, binding or profile for a device id, place or
               GTIN outside the registry's ``[registry]`` scopes (a verifier
               would refuse it, §10); from a ``[[registry.authorities]]`` key
               (a brand owner), anything but a profile of a GTIN it is the
               authority for
statement_fork a binding or profile whose ``cseq`` is already taken in its
               statement chain (§4.2) by another statement
statement_gap  a statement whose ``cseq`` skips positions of its chain (or a
               chain's first statement that is not cseq 0)
statement_unlinked a statement whose ``cprev`` is not the chain hash of the
               chain's previous statement
statement_backdated a statement whose ``time`` is before the previous
               statement's: time never goes back along a chain
broken_link    a record of another authority (``[[registry.authorities]]``)
               whose ``prev`` is not the hash of its stored seq - 1, or whose
               stored seq + 1 does not link to it (its seqs may have gaps here:
               it sends its statements to several gateways; a fork is a
               ``conflict``)
============== ================================================================

Logged statements move the registry's chain heads and current bindings
(:class:`gateway.evidence.registry.Registry`): which target each device monitors, for
alerts and status.

A record refused as ``bad_time`` (a signature that verifies, a time ahead
of the skew) makes its device's ack due again, like a duplicate: the
device's clock ran fast, and the ack's gateway time lets it set its clock
and declare the refused records lost (§5.2 "Records dated ahead").

Accepted records that leave a hole are stored: the hole is recorded as a
``gap`` chain event (and ``gap_filled`` when the missing seq arrives); a
``prev`` that does not match the stored predecessor is a ``break`` event.
The device ack (§5.2) only moves over contiguous stored records, so a
device keeps what the gateway does not have.

**Declared losses** (§5.2). Once a status record with event 11, ``detail``
= n and ``lost`` = first is stored, seqs first..first+n-1 of its device are
declared lost: a ``declared_lost`` chain event and a row of the store's
``declared_lost`` table (both with the status record's seq) record them,
and the ack's settled point moves over them as over stored records. A
declared-lost seq has no record, so no hash: the ack names the highest
stored seq at or below the settled point (:attr:`SignerState.ack_seq`).
A record that arrives later under a declared-lost seq is stored like any
other, with a ``lost_arrived`` chain event.

Every refused message is stored in quarantine with its reason, detail, topic
and raw bytes, within the quarantine's caps (gateway/evidence/quarantine.py:
beyond them, and for messages over their device's rate, counted with a
digest). Nothing a message contains can raise out of this module:
anything unexpected is quarantined as ``internal_error`` and logged.

:class:`Pipeline` batches messages: the verification of batch *k+1* runs on
a verifier (gateway/evidence/verifiers.py: worker processes by default, or a thread
pool) while batch *k* is committed (one transaction), appended to the log,
PUBACKed to the broker and acked to the devices.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.evidence.checks import (
    EV_DROPPED,
    ZERO_PREV,
    Accepted,
    Handle,
    IngestSettings,
    Presence,
    Refused,
    Result,
    declared_range,
    make_ack,
)
from gateway.evidence.diskfull import is_disk_full
from gateway.evidence.quarantine import RATE_LIMITED, Quarantine
from gateway.evidence.ratelimit import DeviceRateLimiter
from gateway.evidence.registry import Registry, RegistryError, StatementError
from gateway.evidence.store import (
    ChainEvent,
    DeclaredLoss,
    RejectRow,
    SignerState,
    Store,
    StoredRecord,
    WriteBatch,
    connection_lost,
)
from gateway.evidence.verifiers import ThreadVerifier
from gateway.transport.mqtt import Inbound
from protocol.cose import parse_sign1
from protocol.record import (
    Binding,
    ProductProfile,
    Registration,
    Scan,
    Status,
    chain_hash,
    decode_payload,
)

__all__ = ["BatchOutcome", "Ingestor", "Pipeline", "Verifier"]

log = logging.getLogger("coldtrace.gateway.ingest")
_REGISTRY_PAYLOADS = (Registration, Binding, ProductProfile)  # not claimed fleet-wide (D28)

# --- stateful checks and the commit ------------------------------------------------------


@dataclass
class BatchOutcome:
    mids: dict[int, list[int]] = field(default_factory=dict)  # gen -> mids to PUBACK
    accepted: list[tuple[StoredRecord, Any]] = field(default_factory=list)
    rejected: int = 0
    duplicates: int = 0
    ack_due: set[str] = field(default_factory=set)
    presence: dict[str, str] = field(default_factory=dict)


class Ingestor:
    """The stateful half: duplicates, conflicts, chain, registry; one thread only."""

    def __init__(
        self,
        store: Store,
        registry: Registry,
        *,
        gateway_id: str,
        settings: IngestSettings | None = None,
        append_to_log: Callable[[int, list[bytes]], None] | None = None,
        clock: Callable[[], float] = time.time,
        quarantine: Quarantine | None = None,
    ) -> None:
        self.store = store
        self.quarantine = quarantine if quarantine is not None else Quarantine(store)
        self.registry = registry
        self.gateway_id = gateway_id
        self.settings = settings or IngestSettings()
        self.clock = clock
        self.append_to_log = append_to_log
        self.states = store.signer_states()
        self.ack_keys = store.ack_keys()
        self._ack_keys_read = clock()
        self.next_leaf = store.leaf_count()
        self.alarms: collections.deque[str] = collections.deque(maxlen=100)
        self.totals = collections.Counter[str]()

    # The hash of stored record (signer, seq), from this batch or the store.
    def _stored_hash(
        self, signer: str, seq: int, batch_hashes: dict[tuple[str, int], bytes]
    ) -> bytes | None:
        h = batch_hashes.get((signer, seq))
        if h is not None:
            return h
        st = self.states.get(signer)
        if st is None or not (seq <= st.contig or seq in st.above):
            return None
        if seq == st.max_seq and st.max_hash:
            return st.max_hash
        if seq == st.ack_seq and st.contig_hash:
            return st.contig_hash
        rec = self.store.record_by_seq(signer, seq)
        return None if rec is None else chain_hash(rec.raw)

    def _existing(
        self, signer: str, seq: int, batch_raw: dict[tuple[str, int], bytes]
    ) -> tuple[bytes, int] | None:
        raw = batch_raw.get((signer, seq))
        if raw is not None:
            p = decode_payload(parse_sign1(raw).payload)
            return raw, p.boot
        st = self.states.get(signer)
        if st is None or not (seq <= st.contig or seq in st.above):
            return None
        rec = self.store.record_by_seq(signer, seq)
        return None if rec is None else (rec.raw, rec.boot)

    def _authority_link(
        self,
        signer: str,
        seq: int,
        prev: bytes,
        chash: bytes,
        batch_raw: dict[tuple[str, int], bytes],
        batch_hash: dict[tuple[str, int], bytes],
    ) -> str | None:
        """Why another authority's record does not link to its stored neighbours, or
        None. Its seqs may have gaps in this log, so only adjacent seqs are checked."""
        if seq == 0 and prev != ZERO_PREV:
            return f"{signer} seq 0 with a non-zero prev"
        want = self._stored_hash(signer, seq - 1, batch_hash) if seq > 0 else None
        if want is not None and want != prev:
            return (
                f"{signer} seq {seq}: prev {prev.hex()} is not the hash of its stored "
                f"seq {seq - 1} ({want.hex()})"
            )
        nxt = batch_raw.get((signer, seq + 1))
        if nxt is None:
            rec = self.store.record_by_seq(signer, seq + 1)
            nxt = rec.raw if rec is not None else None
        if nxt is not None and decode_payload(parse_sign1(nxt).payload).prev != chash:
            return f"{signer} seq {seq}: its stored seq {seq + 1} does not link to it"
        return None

    def process(self, results: Sequence[Result]) -> BatchOutcome:
        """Apply the stateful checks to checked messages, commit, append to the log.

        In a gateway fleet (gateway/evidence/fleet.py, D28) the store first locks
        the batch's devices fleet-wide and hands back their current states, which
        replace this instance's before any check; the commit releases them."""
        begin = getattr(self.store, "begin_batch", None)
        if begin is None:
            return self._process(results)
        devices = {
            r.signer
            for r in results
            if type(r) is Accepted and type(r.payload) not in _REGISTRY_PAYLOADS
        }
        self.states.update(begin(devices))
        try:
            return self._process(results)
        except BaseException:
            self.store.abort_batch()  # type: ignore[attr-defined]
            raise

    def _process(self, results: Sequence[Result]) -> BatchOutcome:
        now = int(self.clock())
        out = BatchOutcome()
        batch = WriteBatch()
        batch_raw: dict[tuple[str, int], bytes] = {}
        batch_hash: dict[tuple[str, int], bytes] = {}
        touched: dict[str, SignerState] = {}
        first_leaf = self.next_leaf
        leaf = first_leaf
        raws: list[bytes] = []
        registry = self.registry
        states = self.states

        def refuse(r: Refused) -> None:
            batch.rejects.append(
                RejectRow(
                    int(r.msg.received or now),
                    r.msg.topic,
                    r.reason,
                    r.detail,
                    r.msg.payload,
                    r.signer,
                    r.seq,
                )
            )
            out.rejected += 1
            self.totals[r.reason] += 1

        for r in results:
            msg = r.msg
            if msg.mid:
                out.mids.setdefault(msg.gen, []).append(msg.mid)
            if msg.outbox_id:
                batch.outbox_done.append(msg.outbox_id)
            if msg.release_id:
                batch.release_done.append(msg.release_id)
            if isinstance(r, Refused):
                refuse(r)
                if r.reason == "bad_time" and r.signer:
                    # its device resends it until its ack moves: the ack again,
                    # with this gateway's time, lets it set its clock and declare
                    # the record lost (§5.2 "Records dated ahead")
                    out.ack_due.add(r.signer)
                continue
            if isinstance(r, Presence):
                if r.device in registry.keys and r.state in ("online", "offline"):
                    batch.presence.append((r.device, r.state, now))
                    out.presence[r.device] = r.state
                continue
            signer = r.signer
            p = r.payload
            seq = p.seq
            entry = registry.keys.get(signer)
            if entry is None or not entry.active:  # revoked since the check ran
                refuse(Refused(msg, "revoked_device", f"{signer!r} is revoked", signer, seq))
                continue
            st = touched.get(signer) or states.get(signer)
            if st is None:
                st = SignerState(signer)
                states[signer] = st
            touched[signer] = st
            raw = msg.payload
            if seq <= st.max_seq:
                existing = self._existing(signer, seq, batch_raw)
                if existing is not None:
                    old_raw, old_boot = existing
                    if old_raw == raw:
                        out.duplicates += 1
                        out.ack_due.add(signer)
                        continue
                    reason = "replayed_seq" if p.boot > old_boot else "conflict"
                    detail = (
                        f"{signer} seq {seq}: stored record {chain_hash(old_raw).hex()}, "
                        f"received {r.chash.hex()} (boot {old_boot} -> {p.boot})"
                    )
                    refuse(Refused(msg, reason, detail, signer, seq))
                    batch.events.append(ChainEvent(signer, reason, seq, seq, now, detail))
                    self._alarm(f"{reason}: {detail}")
                    out.ack_due.add(signer)
                    continue
            kind = type(p)
            if kind is Registration:
                try:
                    registry.check(p, signer)
                except RegistryError as exc:
                    why = exc.reason if isinstance(exc, StatementError) else "bad_registration"
                    refuse(Refused(msg, why, str(exc), signer, seq))
                    continue
            elif kind is Binding or kind is ProductProfile:
                try:
                    registry.check_statement(p, signer)
                except StatementError as exc:
                    refuse(Refused(msg, exc.reason, str(exc), signer, seq))
                    continue
            if signer in registry.authorities:
                broken = self._authority_link(signer, seq, p.prev, r.chash, batch_raw, batch_hash)
                if broken is not None:
                    refuse(Refused(msg, "broken_link", broken, signer, seq))
                    continue
            # --- accepted: chain bookkeeping --------------------------------------
            if seq == 0:
                if p.prev != ZERO_PREV:
                    batch.events.append(
                        ChainEvent(signer, "break", 0, 0, now, "seq 0 with a non-zero prev")
                    )
            else:
                want = batch_hash.get((signer, seq - 1)) or self._stored_hash(
                    signer, seq - 1, batch_hash
                )
                if want is not None and want != p.prev:
                    batch.events.append(
                        ChainEvent(
                            signer,
                            "break",
                            seq - 1,
                            seq,
                            now,
                            f"prev {p.prev.hex()} is not the hash of stored seq {seq - 1} "
                            f"({want.hex()})",
                        )
                    )
                    self._alarm(f"chain break: {signer} seq {seq - 1} -> {seq}")
            nxt = batch_raw.get((signer, seq + 1))
            if nxt is None and (seq + 1 in st.above or seq + 1 <= st.contig):
                rec = self.store.record_by_seq(signer, seq + 1)
                nxt = rec.raw if rec is not None else None
            if nxt is not None:
                nprev = decode_payload(parse_sign1(nxt).payload).prev
                if nprev != r.chash:
                    batch.events.append(
                        ChainEvent(
                            signer,
                            "break",
                            seq,
                            seq + 1,
                            now,
                            f"stored seq {seq + 1} does not link to the record received "
                            f"for seq {seq}",
                        )
                    )
            if seq > st.max_seq + 1:
                batch.events.append(ChainEvent(signer, "gap", st.max_seq + 1, seq - 1, now))
            elif seq <= st.max_seq:
                by = st.declared_by(seq) if st.lost else None
                if by is None:
                    batch.events.append(ChainEvent(signer, "gap_filled", seq, seq, now))
                else:
                    detail = (
                        f"seq {seq} was declared lost by status record seq {by}; "
                        "it arrived after all and is stored"
                    )
                    batch.events.append(ChainEvent(signer, "lost_arrived", seq, seq, now, detail))
                    log.info("%s: %s", signer, detail)
            if seq > st.max_seq:
                if p.boot < st.max_boot:
                    batch.events.append(
                        ChainEvent(
                            signer,
                            "boot_regressed",
                            st.max_seq,
                            seq,
                            now,
                            f"boot {st.max_boot} -> {p.boot} while seq grew",
                        )
                    )
                st.max_seq, st.max_hash, st.max_boot = seq, r.chash, p.boot
            if seq <= st.contig:
                # A declared-lost seq (everything else up to contig is stored):
                # it may become the ack's head.
                if seq > st.ack_seq:
                    st.head_below = None if seq == st.contig else seq
                    st.contig_hash = r.chash
            elif seq == st.contig + 1:
                st.contig, st.contig_hash, st.head_below = seq, r.chash, None
                if st.above or st.lost:  # otherwise there is nothing to move over
                    self._settle(st)
            else:
                st.above.add(seq)
            st.count += 1
            st.last_seen = now
            batch_raw[(signer, seq)] = raw
            batch_hash[(signer, seq)] = r.chash
            rec = StoredRecord(
                leaf, signer, seq, p.boot, p.kind, p.time, p.tq, int(msg.received or now), raw
            )
            batch.records.append(rec)
            raws.append(raw)
            out.accepted.append((rec, p))
            if kind is Registration:
                row = registry.apply(p, signer, leaf, now)
                batch.devices.append(row)
                batch.placements.append((row.id, leaf, p.time, None, p.cal))
            elif kind is Binding or kind is ProductProfile:
                batch.statements.append(registry.apply_statement(p, signer, leaf, r.chash))
            else:
                out.ack_due.add(signer)
                if kind is Scan:
                    batch.scans.append((leaf, p.uid, p.action, p.item))
                lost = declared_range(p) if type(p) is Status else None
                if lost is not None:
                    self._declare(st, lost, seq, leaf, now, batch)
            leaf += 1

        for st in touched.values():
            if not st.contig_hash and st.ack_seq >= 0:
                h = self._stored_hash(st.signer, st.ack_seq, batch_hash)
                st.contig_hash = h or b""
        batch.states = list(touched.values())
        if out.duplicates:
            batch.counters["duplicates"] = out.duplicates
        if batch.records:
            batch.counters["accepted"] = len(batch.records)
        self.quarantine.admit(batch)
        self.store.commit(batch)
        self.next_leaf = leaf
        self.totals["accepted"] += len(batch.records)
        self.totals["duplicates"] += out.duplicates
        if raws and self.append_to_log is not None:
            self.append_to_log(first_leaf, raws)
        return out

    def _settle(self, st: SignerState) -> None:
        """Move ``st.contig`` over stored seqs (``above``) and declared-lost ranges."""
        above = st.above
        moved = False
        while True:
            nxt = st.contig + 1
            if nxt in above:
                above.discard(nxt)
                st.contig, st.head_below = nxt, None
                moved = True
                continue
            end = st.lost_end(nxt) if st.lost else None
            if end is None:
                break
            stored = [s for s in above if s <= end]
            above.difference_update(stored)
            if stored:
                top = max(stored)
                st.head_below = None if top == end else top
            elif st.head_below is None:
                st.head_below = st.contig  # stored (or -1: nothing stored yet)
            st.contig = end
            moved = True
        if moved:
            st.contig_hash = b""  # the head's hash, resolved at the end of the batch

    def _declare(
        self,
        st: SignerState,
        lost: tuple[int, int],
        status_seq: int,
        leaf: int,
        now: int,
        batch: WriteBatch,
    ) -> None:
        """Apply a stored status record's declaration of lost seqs (§5.2)."""
        first, last = lost
        n = last - first + 1
        st.lost.append((first, last, status_seq))
        batch.losses.append(DeclaredLoss(st.signer, first, last, status_seq, leaf, now))
        detail = (
            f"declared lost by status record seq {status_seq} (event {EV_DROPPED}, "
            f"detail {n}, lost {first}): the device can no longer send "
            f"{'this record' if n == 1 else 'these records'}"
        )
        batch.events.append(ChainEvent(st.signer, "declared_lost", first, last, now, detail))
        log.info("%s: seqs %d..%d %s", st.signer, first, last, detail)
        self._settle(st)

    def _alarm(self, text: str) -> None:
        log.warning("ALARM %s", text)
        self.alarms.append(text)

    def ack_for(self, signer: str, now: int) -> bytes | None:
        """The ack message for ``signer`` now, or None (no ack key, nothing settled).

        It names the highest stored seq at or below the settled point (§5.2:
        a declared-lost seq has no record to hash) and that record's hash.
        """
        st = self.states.get(signer)
        key = self.ack_keys.get(signer)
        if key is None and st is not None and self.clock() - self._ack_keys_read >= 1.0:
            # a device registered while the gateway runs (registry add/import writes its
            # ack key to the store): read the keys again, at most once a second
            self.ack_keys = self.store.ack_keys()
            self._ack_keys_read = self.clock()
            key = self.ack_keys.get(signer)
        if st is None or key is None or st.ack_seq < 0 or not st.contig_hash:
            return None
        return make_ack(self.gateway_id, key, st.ack_seq, st.contig_hash, now)


class Verifier(Protocol):
    """Runs the stateless checks (:func:`precheck`, then the signatures) somewhere
    (gateway/evidence/verifiers.py) and hands back results, in message order."""

    workers: int

    def submit(self, msgs: list[Inbound], registry: Registry, now: int) -> list[Handle]: ...
    def close(self) -> None: ...


class Pipeline:
    """Batches messages, checks them on a verifier, commits them in order on one thread.

    ``feed(list)`` is called by the MQTT thread. ``on_committed(outcome)`` is
    called on the pipeline thread after every commit (PUBACKs, device acks,
    checkpoints, alerts hang there). ``idle()`` is called when there is
    nothing to do for ``batch_wait``. While batch *k* is committed, batch *k+1*
    is being verified.
    """

    DEPTH = 2  # batches in the pipeline: one verifying while one commits

    def __init__(
        self,
        ingestor: Ingestor,
        *,
        verifier: Verifier | None = None,
        threads: int = 2,
        batch_size: int = 500,
        batch_wait: float = 0.02,
        on_committed: Callable[[BatchOutcome], None] | None = None,
        idle: Callable[[], None] | None = None,
        limiter: DeviceRateLimiter | None = None,
    ) -> None:
        self.ingestor = ingestor
        self.limiter = limiter  # per-device rate limits, before the checks (None: off)
        if verifier is None:
            verifier = ThreadVerifier(threads, ingestor.settings)
        self.verifier = verifier
        self.batch_size = batch_size
        self.batch_wait = batch_wait
        self.on_committed = on_committed
        self.idle = idle
        self._inbox: collections.deque[Inbound] = collections.deque()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._in_flight = 0  # fed but not committed
        self.error: BaseException | None = None
        self.committed_batches = 0

    def feed(self, msgs: list[Inbound]) -> None:
        with self._cond:
            self._inbox.extend(msgs)
            self._in_flight += len(msgs)
            self._cond.notify()

    def backlog(self) -> int:
        return self._in_flight

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ingest", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish what was taken, stop, and close the verifier (safe to call twice)."""
        self._stop.set()
        with self._cond:
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)
        if self.verifier is not None:
            self.verifier.close()
            self.verifier = None  # type: ignore[assignment]

    def _take(self, wait: float) -> list[Inbound]:
        with self._cond:
            if not self._inbox:
                self._cond.wait(wait)
            if len(self._inbox) < self.batch_size and self._inbox and wait > 0:
                # A partial batch: give the broker a moment to fill it.
                self._cond.wait(min(wait, 0.002))
            n = min(len(self._inbox), self.batch_size)
            return [self._inbox.popleft() for _ in range(n)]

    def _submit(self, msgs: list[Inbound]) -> list[Handle]:
        limiter = self.limiter
        if limiter is None:
            return self.verifier.submit(msgs, self.ingestor.registry, int(time.time()))
        msgs, over = limiter.split(msgs, self.ingestor.registry.keys)
        handles = []
        if msgs:
            handles = self.verifier.submit(msgs, self.ingestor.registry, int(time.time()))
        if over:
            detail = (
                f"over the device's rate limit ({limiter.rate:g} messages/s, burst "
                f"{limiter.burst:g}): counted, not checked"
            )
            handles.append(lambda: [Refused(m, RATE_LIMITED, detail) for m in over])
        return handles

    def run_once(self, msgs: list[Inbound]) -> BatchOutcome:
        """Check and commit ``msgs`` synchronously (tests, the outbox, recovery)."""
        results: list[Result] = []
        for handle in self._submit(msgs):
            results.extend(handle())
        return self.ingestor.process(results)

    def _finish(self, msgs: list[Inbound], handles: list[Handle]) -> None:
        results: list[Result] = []
        for handle in handles:
            results.extend(handle())
        outcome = self.ingestor.process(results)
        with self._cond:
            self._in_flight -= len(msgs)
        self.committed_batches += 1
        if self.on_committed is not None:
            self.on_committed(outcome)

    def _run(self) -> None:
        pending: collections.deque[tuple[list[Inbound], list[Handle]]] = collections.deque()
        try:
            while not self._stop.is_set():
                msgs = self._take(0 if pending else self.batch_wait)
                if msgs:
                    pending.append((msgs, self._submit(msgs)))
                if pending and (len(pending) >= self.DEPTH or not msgs):
                    self._finish(*pending.popleft())
                if not msgs and not pending:
                    heal = getattr(self.verifier, "heal", None)
                    if heal is not None:  # restart verification workers that died idle
                        heal()
                    if self.idle is not None:
                        self.idle()
            while pending:
                self._finish(*pending.popleft())
        except BaseException as exc:  # a store or verifier failure: stop, ack nothing more
            self.error = exc
            if is_disk_full(exc):  # the gateway says so in one sentence (no traceback)
                log.debug("ingest stopped: the disk is full", exc_info=True)
            elif connection_lost(exc):  # so does it for the database (D38)
                log.debug("ingest stopped: the store's database is unreachable", exc_info=True)
            else:
                log.exception("ingest stopped")
