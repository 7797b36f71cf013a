"""Where the stateless checks run: worker processes (default) or a thread pool.

Both verifiers take a batch of messages, split it into one chunk per worker,
run :func:`gateway.ingest.check_chunk` on each chunk and hand back, in order,
one handle per chunk (``handle() -> list[Result]``); the pipeline keeps the
next batch verifying while it commits the previous one.

- :class:`ProcessVerifier` (``verify_mode = "processes"``, the default): one
  worker process per core, each with its own job queue. On the 2-core test
  machine the thread pool below loses about 40 us of CPU per record to GIL
  hand-overs: pyca releases the GIL during the signature check, but every
  record's own Python (envelope, payload), the ingest thread and the MQTT
  thread all want it back. A process has its own GIL; the price is the trip
  (the raw bytes out, small tuples back; measured ~3 us) and rebuilding the
  payload object on arrival. Workers are started with ``spawn`` (the gateway
  has threads: never fork it), follow the registry through
  ``Registry.updates``, leave when the gateway dies (even by kill -9), and a
  dead worker is an error, never a hang.
- :class:`ThreadVerifier` (``verify_mode = "threads"``): a thread pool in the
  gateway process. Simpler, and enough for a small site.
"""

from __future__ import annotations

import contextlib
import os
import queue
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields
from types import MappingProxyType
from typing import Any

from gateway.ingest import (
    Accepted,
    Handle,
    IngestSettings,
    Presence,
    Refused,
    Result,
    check_chunk,
)
from gateway.mqtt import Inbound
from gateway.registry import KeyEntry, Registry
from protocol.keys import p256_public_from_sec1
from protocol.record import Reading, Registration, Scan, Status

__all__ = ["KeyTable", "ProcessVerifier", "ThreadVerifier", "make_verifier"]


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


_PAYLOAD_CLASSES: dict[int, type[Any]] = {c.kind: c for c in (Reading, Scan, Status, Registration)}
_PAYLOAD_FIELDS: dict[int, tuple[str, ...]] = {
    kind: tuple(f.name for f in fields(cls) if f.name != "extensions")
    for kind, cls in _PAYLOAD_CLASSES.items()
}


def _encode(results: list[Result]) -> list[tuple[Any, ...]]:
    """Results as plain tuples for the trip back from a verification process.

    A decoded payload travels as its kind and field values (its dataclass
    holds a mappingproxy, which does not pickle) and is rebuilt on arrival.
    """
    out: list[tuple[Any, ...]] = []
    for r in results:
        if isinstance(r, Accepted):
            p = r.payload
            values = tuple([getattr(p, name) for name in _PAYLOAD_FIELDS[p.kind]])
            ext = tuple(p.extensions.items()) if p.extensions else ()
            out.append(("A", r.signer, r.chash, p.kind, values, ext))
        elif isinstance(r, Refused):
            out.append(("R", r.reason, r.detail, r.signer, r.seq))
        else:
            out.append(("P", r.device, r.state))
    return out


def _decode(msgs: Sequence[Inbound], encoded: list[tuple[Any, ...]]) -> list[Result]:
    out: list[Result] = []
    for msg, e in zip(msgs, encoded, strict=True):
        tag = e[0]
        if tag == "A":
            kind = e[3]
            kw = dict(zip(_PAYLOAD_FIELDS[kind], e[4], strict=True))
            if e[5]:
                kw["extensions"] = MappingProxyType(dict(e[5]))
            out.append(Accepted(msg, e[1], _PAYLOAD_CLASSES[kind](**kw), e[2]))
        elif tag == "R":
            out.append(Refused(msg, e[1], e[2], e[3], e[4]))
        else:
            out.append(Presence(msg, e[1], e[2]))
    return out


def _worker_main(jobs: Any, results: Any, settings: IngestSettings) -> None:
    """A verification process: check chunks of messages, answer with encoded results."""
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
        job_id, updates, now, items = job
        if updates:
            table.apply(updates)
        msgs = [
            Inbound(topic, payload, 0, 0, 0.0, outbox_id) for topic, payload, outbox_id in items
        ]
        results.put((job_id, _encode(check_chunk(msgs, table, now, settings))))  # type: ignore[arg-type]


class ThreadVerifier:
    """Stateless checks on a thread pool in this process (pyca releases the GIL)."""

    mode = "threads"

    def __init__(self, workers: int, settings: IngestSettings) -> None:
        self.workers = max(1, workers)
        self.settings = settings
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="verify")

    def submit(self, msgs: list[Inbound], registry: Registry, now: int) -> list[Handle]:
        size = -(-len(msgs) // self.workers)
        return [
            self._pool.submit(check_chunk, msgs[i : i + size], registry, now, self.settings).result
            for i in range(0, len(msgs), size)
        ]

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class ProcessVerifier:
    """Stateless checks in worker processes, one job queue each, answers in order.

    Measured on a 2-core machine: with the checks on threads, the GIL
    hand-overs around every signature (the checks' own Python, the ingest
    thread, the MQTT thread all want it) cost about 40 us of CPU per record
    beyond the signature itself; in processes each worker has its own GIL.
    The price is the trip (pickled bytes out, small tuples back) and decoding
    each accepted payload a second time on the ingest thread. Workers are
    started with ``spawn`` (the gateway has threads: never fork it) and follow
    the registry through ``Registry.updates``.
    """

    mode = "processes"

    def __init__(self, workers: int, settings: IngestSettings, *, start_timeout: float = 60.0):
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self.settings = settings
        self._procs: list[Any] = []
        self._jobs: list[Any] = []
        self._results: list[Any] = []
        self._applied: list[int] = []
        self._next_job = 0
        for i in range(max(1, workers)):
            jq, rq = ctx.Queue(), ctx.Queue()
            proc = ctx.Process(
                target=_worker_main, args=(jq, rq, settings), name=f"verify-{i}", daemon=True
            )
            proc.start()
            self._procs.append(proc)
            self._jobs.append(jq)
            self._results.append(rq)
            self._applied.append(0)
        for i in range(len(self._results)):
            self._get(i, start_timeout)  # ("ready", pid)
        self.workers = len(self._procs)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    def _get(self, worker: int, timeout: float = 600.0) -> Any:
        deadline = time.monotonic() + timeout
        rq = self._results[worker]
        while True:
            try:
                return rq.get(timeout=1.0)
            except queue.Empty:
                if not self._procs[worker].is_alive():
                    raise RuntimeError(
                        f"verification process {worker} died "
                        f"(exit code {self._procs[worker].exitcode})"
                    ) from None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"verification process {worker} does not answer") from None

    def submit(self, msgs: list[Inbound], registry: Registry, now: int) -> list[Handle]:
        n = self.workers
        size = -(-len(msgs) // n)
        handles: list[Handle] = []
        updates = registry.updates
        for k, i in enumerate(range(0, len(msgs), size)):
            w = k % n
            chunk = msgs[i : i + size]
            job_id = self._next_job
            self._next_job += 1
            news = updates[self._applied[w] :]
            self._applied[w] = len(updates)
            self._jobs[w].put(
                (job_id, news, now, [(m.topic, m.payload, m.outbox_id) for m in chunk])
            )
            handles.append(self._handle(w, job_id, chunk))
        return handles

    def _handle(self, worker: int, job_id: int, chunk: list[Inbound]) -> Handle:
        def result() -> list[Result]:
            got_id, encoded = self._get(worker)
            if got_id != job_id:
                raise RuntimeError(f"verification answers out of order ({got_id} != {job_id})")
            return _decode(chunk, encoded)

        return result

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
