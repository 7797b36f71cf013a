"""Where the stateless checks run: worker processes (default) or a thread pool.

Both verifiers take a batch of messages and run every stateless check but
the signature's (:func:`gateway.evidence.checks.precheck`: envelope, topic, registry,
payload, time, declaration) on the calling thread, where the registry
lives: each message is parsed and its payload decoded once, there. Only the
signature checks of the messages that got that far go to the workers, split
into one chunk per worker, and only the failures come back
(:func:`verify_signatures`). ``submit`` hands back one handle
(``handle() -> list[Result]``, in message order); the pipeline keeps the
next batch verifying while it commits the previous one.

- :class:`ProcessVerifier` (``verify_mode = "processes"``, the default): one
  worker process per core, each with its own job queue. On the 2-core test
  machine a thread pool loses CPU to GIL hand-overs around every signature
  (the ingest thread and the MQTT thread want the GIL back); a process has
  its own. The trip is small: per chunk one bytes object with the records,
  one with three uint32 per record (signer, end, protected end) and the
  signers' ids; back, the list of failed signatures (usually empty). No
  payload object crosses. Workers are started with ``spawn`` (the gateway
  has threads: never fork it), follow the registry through
  ``Registry.updates`` (keys loaded once), leave when the gateway dies (even
  by kill -9), and a dead worker is never a hang: it is restarted and the
  chunks it had not answered are sent again to its successor, so nothing is
  lost and nothing is accepted unverified. Restarts are logged and counted
  (``restarts``); a worker dying ``max_restarts`` times within
  ``restart_window`` seconds (5 in 60 s) is a fatal error instead.
- :class:`ThreadVerifier` (``verify_mode = "threads"``): a thread pool in the
  gateway process. Simpler, and enough for a small site.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import queue
import time
from array import array
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import accumulate
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.evidence.checks import Handle, IngestSettings, Pending, Result, precheck
from gateway.evidence.registry import KeyEntry, Registry
from gateway.transport.mqtt import Inbound
from protocol.cose import Sign1, verify_sign1
from protocol.errors import SignatureError
from protocol.keys import p256_public_from_sec1
from protocol.rfc6979 import HALF_N, N

__all__ = [
    "KeyTable",
    "ProcessVerifier",
    "ThreadVerifier",
    "make_verifier",
    "verify_signatures",
]

log = logging.getLogger("coldtrace.gateway.verify")


class KeyTable:
    """The keys a verification process knows: ``keys`` as :attr:`Registry.keys`.

    It follows the registry by applying ``Registry.updates`` in order.
    """

    def __init__(self) -> None:
        self.keys: dict[str, KeyEntry] = {}
        self._loaded: dict[bytes, Any] = {}

    def apply(self, updates: Sequence[tuple[str, bytes, bool, bool]]) -> None:
        for kid, sec1, active, is_registry in updates:
            key = self._loaded.get(sec1)
            if key is None:
                key = self._loaded[sec1] = p256_public_from_sec1(sec1)
            self.keys[kid] = KeyEntry(key, active, is_registry)


# --- the signature checks, as the workers run them ---------------------------------------

# Sig_structure (RFC 9052 §4.4) of a record is ``84 6A "Signature1"``, its
# protected bstr, an empty bstr (no external data) and its payload bstr; the
# record carries the two bstrs, heads included, at known offsets
# (:func:`_protected_end`), so the structure is sliced from the received bytes.
# tests/gateway/test_ingest.py checks these bytes against
# protocol.cose.sig_structure and the DER below against pyca's encoder.
_SIG1_PREFIX = b"\x84\x6aSignature1"
_EMPTY_BSTR = b"\x40"
_DER_R32 = b"\x30\x44\x02\x20"  # SEQUENCE(68), INTEGER(32)
_DER_R33 = b"\x30\x45\x02\x21\x00"  # SEQUENCE(69), INTEGER(33): r's top bit set
_DER_S32 = b"\x02\x20"
_N_BYTES = N.to_bytes(32, "big")
_HALF_N_BYTES = HALF_N.to_bytes(32, "big")
_R_MIN = (1).to_bytes(32, "big")
_ZERO32 = bytes(32)
_ES256 = ec.ECDSA(hashes.SHA256())


def _protected_end(s1: Sign1) -> int:
    """Offset of the unprotected map (``A0``) in a record :func:`parse_sign1` accepted.

    The record is ``D2 84 <protected bstr> A0 <payload bstr> 58 40 <r ‖ s>``
    in shortest-head encoding (the profile is deterministic CBOR), and the
    protected header is at most 38 bytes: a one- or two-byte head.
    """
    n = len(s1.protected)
    return 3 + n if n < 24 else 4 + n


def verify_signatures(
    keys: Sequence[Any], raws: Sequence[bytes], pends: Sequence[int]
) -> list[tuple[int, str]]:
    """ES256 check of records already through :func:`gateway.evidence.checks.precheck`.

    ``raws[i]`` is record i as :func:`parse_sign1` returned it (``Sign1.raw``),
    ``pends[i]`` its :func:`_protected_end`, ``keys[i]`` its signer's key.
    Returns ``[(i, detail)]`` for the records whose signature fails, ``detail``
    being the text of the :class:`SignatureError` that
    :func:`protocol.cose.verify_sign1` raises: the hot path below only says
    yes; anything it does not pass (a scalar out of range, a high s, an r or
    s with a leading zero byte, a signature that does not verify) is
    checked again by verify_sign1 for the precise error.
    """
    failed: list[tuple[int, str]] = []
    verify_slow = _verify_slow
    for i, raw in enumerate(raws):
        sig = raw[-64:]
        sb = sig[32:]
        if (
            _R_MIN <= sig < _N_BYTES  # 1 <= r < n
            and sb <= _HALF_N_BYTES  # low-S (so s < n, and its top bit is clear)
            and sig[0]
            and sig[32]  # no leading zero byte: fixed DER layout
        ):
            pend = pends[i]
            try:
                keys[i].verify(
                    b"".join((_DER_R32 if sig[0] < 0x80 else _DER_R33, sig[:32], _DER_S32, sb)),
                    b"".join((_SIG1_PREFIX, raw[2:pend], _EMPTY_BSTR, raw[pend + 1 : -66])),
                    _ES256,
                )
                continue
            except InvalidSignature:
                pass
        detail = verify_slow(raw, keys[i])
        if detail is not None:
            failed.append((i, detail))
    return failed


def _verify_slow(raw: bytes, key: Any) -> str | None:
    """protocol.cose.verify_sign1's verdict: None, or the SignatureError's text."""
    try:
        verify_sign1(raw, key)
    except SignatureError as exc:
        return str(exc)
    return None


def _settle(
    results: list[Any], failures: Sequence[tuple[int, str]], where: Sequence[int], first: int
) -> None:
    """Turn the Pendings whose signature failed into refusals (``where[first + i]``: item i)."""
    for i, detail in failures:
        k = where[first + i]
        results[k] = results[k].refused(detail)


def _finish(results: list[Any]) -> list[Result]:
    return [r.after if type(r) is Pending else r for r in results]


def _precheck_batch(
    msgs: Sequence[Inbound], registry: Registry, now: int, settings: IngestSettings
) -> tuple[list[Any], list[int]]:
    """Results (Pending where only the signature is left) and the Pendings' positions."""
    results = [precheck(m, registry, now, settings) for m in msgs]
    where = [k for k, r in enumerate(results) if type(r) is Pending]
    return results, where


def _worker_main(jobs: Any, results: Any, settings: IngestSettings) -> None:
    """A verification process: check the signatures of chunks, answer with the failures.

    A job is ``(job_id, registry updates, kids, meta, blob)``: the records
    concatenated in ``blob``, and in ``meta`` three uint32 arrays of one
    entry per record, one after the other: the index of its signer in
    ``kids``, the end of the record in ``blob``, its protected end. The
    answer is ``(job_id, [(index, detail)])`` for the signatures that fail -
    usually an empty list - or ``("error", text)``.
    """
    table = KeyTable()
    parent = os.getppid()
    results.put(("ready", os.getpid()))
    while True:
        try:
            job = jobs.get(timeout=0.5)
        except queue.Empty:
            if os.getppid() != parent:  # the gateway was killed: do not linger
                return
            continue
        except (EOFError, OSError):
            return
        if job is None:
            return
        job_id, updates, kids, meta, blob = job
        answer: tuple[Any, Any]
        try:
            if updates:
                table.apply(updates)
            known = [table.keys[k].key for k in kids]
            m = array("I")
            m.frombytes(meta)
            count = len(m) // 3
            ends = m[count : 2 * count]
            starts = [0, *ends[:-1]]
            raws = [blob[a:b] for a, b in zip(starts, ends, strict=True)]
            keys = [known[k] for k in m[:count]]
            answer = (job_id, verify_signatures(keys, raws, m[2 * count :]))
        except Exception as exc:  # never a hang: the gateway raises it
            answer = ("error", f"{type(exc).__name__}: {exc}")
        results.put(answer)


class _DiedAtStart(RuntimeError):
    """A verification process died before it said it was ready."""


class ThreadVerifier:
    """Signature checks on a thread pool in this process (pyca releases the GIL).

    The other stateless checks run in :meth:`submit`, on the calling thread;
    a pool thread runs only :func:`verify_signatures` (a few lines of Python
    around each signature).
    """

    mode = "threads"

    def __init__(self, workers: int, settings: IngestSettings) -> None:
        self.workers = max(1, workers)
        self.settings = settings
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="verify")

    def submit(self, msgs: list[Inbound], registry: Registry, now: int) -> list[Handle]:
        results, where = _precheck_batch(msgs, registry, now, self.settings)
        futures = []
        if where:
            size = -(-len(where) // self.workers)
            for i in range(0, len(where), size):
                part = [results[k].sign1 for k in where[i : i + size]]
                keys = [results[k].key for k in where[i : i + size]]
                pends = [_protected_end(x) for x in part]
                raws = [x.raw for x in part]
                futures.append((i, self._pool.submit(verify_signatures, keys, raws, pends)))

        def result() -> list[Result]:
            for i, fut in futures:
                _settle(results, fut.result(), where, i)
            return _finish(results)

        return [result]

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class ProcessVerifier:
    """Signature checks in worker processes, one job queue each, answers in order.

    The other stateless checks run in :meth:`submit` (see the module
    docstring); a worker gets per chunk the records as one bytes object plus
    three uint32 each (see :func:`_worker_main`) and answers with the failed
    signatures only. Workers are started with ``spawn`` (the gateway has
    threads: never fork it) and follow the registry through
    ``Registry.updates``.
    """

    mode = "processes"

    def __init__(
        self,
        workers: int,
        settings: IngestSettings,
        *,
        start_timeout: float = 60.0,
        max_restarts: int = 5,
        restart_window: float = 60.0,
    ):
        import multiprocessing

        self._ctx = multiprocessing.get_context("spawn")
        self.settings = settings
        self.start_timeout = start_timeout
        self.max_restarts = max_restarts
        self.restart_window = restart_window
        self.restarts = 0  # workers restarted since start
        self._deaths: collections.deque[float] = collections.deque()
        self._procs: list[Any] = []
        self._jobs: list[Any] = []
        self._results: list[Any] = []
        self._applied: list[int] = []
        # Per worker, the jobs sent and not yet answered: sent again to a successor.
        self._outstanding: list[collections.deque[tuple[int, list[str], bytes, bytes]]] = []
        self._updates: list[Any] = []  # the registry's updates list (grows in place)
        self._next_job = 0
        for i in range(max(1, workers)):
            self._procs.append(None)
            self._jobs.append(None)
            self._results.append(None)
            self._applied.append(0)
            self._outstanding.append(collections.deque())
            self._spawn(i)
        for i in range(len(self._results)):
            self._get(i, start_timeout)  # ("ready", pid)
        self.workers = len(self._procs)

    def _spawn(self, i: int) -> None:
        """Start worker ``i`` with fresh queues (a killed worker may hold a queue's lock)."""
        jq, rq = self._ctx.Queue(), self._ctx.Queue()
        proc = self._ctx.Process(
            target=_worker_main, args=(jq, rq, self.settings), name=f"verify-{i}", daemon=True
        )
        proc.start()
        self._procs[i], self._jobs[i], self._results[i] = proc, jq, rq
        self._applied[i] = 0

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    def _restart(self, w: int) -> None:
        """Replace dead worker ``w`` and send it the chunks its predecessor left
        (a successor that dies while starting is one more death, replaced in turn)."""
        pending = self._outstanding[w]
        while True:
            dead = self._procs[w]
            now = time.monotonic()
            self._deaths.append(now)
            while self._deaths and now - self._deaths[0] > self.restart_window:
                self._deaths.popleft()
            if len(self._deaths) >= self.max_restarts:
                raise RuntimeError(
                    f"verification processes died {len(self._deaths)} times within "
                    f"{self.restart_window:g} s (the last: process {w}, exit code "
                    f"{dead.exitcode}); not restarting them again - see the system log "
                    "(out of memory?)"
                )
            log.warning(
                "verification process %d (pid %s) died with exit code %s; restarting it and "
                "checking its %d unanswered chunk(s) again",
                w,
                dead.pid,
                dead.exitcode,
                len(pending),
            )
            for q_ in (self._jobs[w], self._results[w]):
                q_.cancel_join_thread()
                q_.close()
            dead.join(1)
            self._spawn(w)
            self.restarts += 1
            try:
                ready = self._get(w, self.start_timeout, resend=False)
            except _DiedAtStart:
                continue
            if ready[0] != "ready":
                raise RuntimeError(f"verification process {w} answered {ready[0]!r} at start")
            break
        for job in pending:
            self._send(w, job)

    def heal(self) -> None:
        """Restart the workers that died while idle (the pipeline calls this when idle;
        a death during a batch is found when its answer is awaited)."""
        for w, proc in enumerate(self._procs):
            if not proc.is_alive():
                self._restart(w)

    def _send(self, w: int, job: tuple[int, list[str], bytes, bytes]) -> None:
        news = self._updates[self._applied[w] :]
        self._applied[w] = len(self._updates)
        job_id, kids, meta, blob = job
        self._jobs[w].put((job_id, news, kids, meta, blob))

    def _get(self, worker: int, timeout: float = 600.0, *, resend: bool = True) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self._results[worker].get(timeout=1.0)
            except queue.Empty:
                if not self._procs[worker].is_alive():
                    if not resend:
                        raise _DiedAtStart(
                            f"verification process {worker} died at start "
                            f"(exit code {self._procs[worker].exitcode})"
                        ) from None
                    self._restart(worker)
                    deadline = time.monotonic() + timeout
                    continue
                if time.monotonic() > deadline:
                    raise RuntimeError(f"verification process {worker} does not answer") from None

    def submit(self, msgs: list[Inbound], registry: Registry, now: int) -> list[Handle]:
        results, where = _precheck_batch(msgs, registry, now, self.settings)
        sent: list[tuple[int, int, int]] = []  # (worker, job id, first index in where)
        if where:
            n = self.workers
            size = -(-len(where) // n)
            self._updates = registry.updates  # after the prechecks: covers every key they used
            for k, i in enumerate(range(0, len(where), size)):
                w = k % n
                part = [results[j].sign1 for j in where[i : i + size]]
                raws = [x.raw for x in part]
                kids: dict[str, int] = {}
                meta = (
                    array("I", [kids.setdefault(x.kid, len(kids)) for x in part]).tobytes()
                    + array("I", accumulate(map(len, raws))).tobytes()
                    + array("I", [_protected_end(x) for x in part]).tobytes()
                )
                job_id = self._next_job
                self._next_job += 1
                job = (job_id, list(kids), meta, b"".join(raws))
                self._outstanding[w].append(job)
                self._send(w, job)
                sent.append((w, job_id, i))

        def result() -> list[Result]:
            for w, job_id, i in sent:
                got_id, failures = self._get(w)
                if got_id == "error":
                    raise RuntimeError(f"verification process {w} failed: {failures}")
                if got_id != job_id:
                    raise RuntimeError(f"verification answers out of order ({got_id} != {job_id})")
                self._outstanding[w].popleft()
                _settle(results, failures, where, i)
            return _finish(results)

        return [result]

    def close(self) -> None:
        for jq in self._jobs:
            with contextlib.suppress(Exception):
                jq.put(None)
        for proc in self._procs:
            proc.join(5)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
        for q_ in (*self._jobs, *self._results):
            q_.close()
            q_.join_thread()


def make_verifier(
    mode: str, workers: int, settings: IngestSettings
) -> ThreadVerifier | ProcessVerifier:
    if mode == "threads":
        return ThreadVerifier(workers, settings)
    if mode == "processes":
        return ProcessVerifier(workers, settings)
    raise ValueError(f"unknown verify mode {mode!r} (threads or processes)")


# --- the pipeline ------------------------------------------------------------------------
