"""Pushing the gateway's log to the cloud (docs/operations.md "Pushing to the cloud").

With a ``[cloud]`` section in gateway.toml, ``coldtrace gateway run`` runs a
:class:`Pusher` on a thread of its own; ``coldtrace gateway push`` runs one
round to the end and exits (0 when the cloud holds everything up to the latest
checkpoint and its receipts).

**The backlog is the gateway's own store**: every checkpoint above the size the
cloud confirmed. Nothing is queued in memory, so a restart (or a kill -9)
resumes where the cloud is. The store's meta keeps:

- ``cloud.size``: the log size the cloud last confirmed (a checkpoint size);
- ``cloud.receipt``: the highest checkpoint size whose anchor receipt it took.

A round: ask ``GET /v1/logs/{origin}`` where the cloud is (at start and after
any 409); then push checkpoint by checkpoint, in ascending order, the records
[cloud size, checkpoint size) with the signed checkpoint, a consistency proof
from the cloud's size (when it is not 0) and the receipts that are new; then
receipts that appeared later for checkpoints already pushed (a batch of no
records). Each request is signed with the log key (protocol/push.py). The
cloud answers with the checkpoint note cosigned by its witness (and peers):
the stored note is replaced by it - same body, more signature lines - so the
bundles ``coldtrace gateway trace`` writes carry the cosignatures. When there
is nothing to push, the latest cosigned note is fetched now and then so that
peers' later cosignatures reach the store as well.

Failures: network errors, timeouts, 5xx and 409 conflicts are retried with
exponential backoff and jitter (1 s … ``[cloud] retry_max``, default 60 s);
400/422 refusals are logged with the cloud's reasons and retried slowly
(every 60 s: never is a record skipped); ``log_forked`` (409) and
``log_frozen`` (423) stop the pusher and raise an alert: the cloud froze the
log, an operator must look.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import httpx

from gateway.config import GatewayConfig
from gateway.evidence.proofs import TreeReader
from gateway.evidence.store import CheckpointRow, SqlStore
from protocol.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from protocol.errors import VerificationError
from protocol.note import NoteSigner, WitnessVerifier, parse_note
from protocol.push import MAX_BATCH_RECORDS, PushBatch, auth_header

__all__ = ["PushStopped", "Pusher", "merge_cosigned"]

log = logging.getLogger("coldtrace.push")
logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise

META_SIZE = "cloud.size"
META_RECEIPT = "cloud.receipt"
META_FROZEN = "cloud.frozen"
BACKOFF_MIN = 1.0
BACKOFF_MAX = 60.0
SLOW_RETRY = 60.0
RECEIPT_GRACE = 3.0  # s a fresh checkpoint waits for its anchor receipt before it is pushed


class PushStopped(Exception):
    """The cloud froze the log (forked or frozen): pushing stops, an alert is raised."""


class _Retry(Exception):
    """This round failed; retry after ``delay`` seconds (None: the backoff decides)."""

    def __init__(self, reason: str, message: str, delay: float | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.delay = delay


@dataclass
class PushStats:
    records: int = 0
    batches: int = 0
    duplicates: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    cloud_size: int | None = None
    backlog: int = 0
    last_push: int | None = None
    stopped: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "pushed_records": self.records,
            "pushed_batches": self.batches,
            "duplicates": self.duplicates,
            "failures": dict(self.failures),
            "cloud_size": self.cloud_size,
            "backlog": self.backlog,
            "last_push": self.last_push,
            "stopped": self.stopped,
        }


def merge_cosigned(
    store: SqlStore,
    signer: NoteSigner,
    size: int,
    note: str,
    witnesses: Sequence[WitnessVerifier],
) -> bool:
    """Add to the stored note of checkpoint ``size`` the cosignatures on ``note`` (the
    cloud's copy) that verify under ``witnesses``; True when the stored note changed.

    The cloud's note must have our body and the log's signature must verify on it.
    Only lines that verify are kept - a line under a witness's name and key id that did
    not verify would make a verifier pinning that witness refuse the whole note -
    the log's own lines come first, then the witnesses' in the cloud's order."""
    ours = store.checkpoint_at(size)
    if ours is None or note == ours.note:
        return False
    try:
        theirs, mine = parse_note(note), parse_note(ours.note)
        open_checkpoint(note, [signer.verifier()])
    except VerificationError as exc:
        log.warning("the cloud's note of checkpoint %d does not verify: %s", size, exc)
        return False
    if theirs.body != mine.body:
        log.error("the cloud's note of checkpoint %d has another body; ours kept", size)
        return False
    known = {(w.name, w.key_id): w for w in witnesses}
    have = {(s.name, s.key_id) for s in mine.signatures}
    added = []
    for line in theirs.signatures:
        key = (line.name, line.key_id)
        if key in have:
            continue
        witness = known.get(key)
        if witness is None:
            log.debug("checkpoint %d: a line by %s+%08x, no known witness", size, *key)
            continue
        try:
            witness.verify(theirs.body.encode("utf-8"), line.sig)
        except VerificationError as exc:
            log.warning("checkpoint %d: %s's cosignature does not verify: %s", size, key[0], exc)
            continue
        added.append(line)
        have.add(key)
    if not added:
        return False
    mine.signatures.extend(added)
    return store.replace_checkpoint_note(size, mine.text())


class CloudLoop:
    """A loop in its own thread that talks to the cloud over ``self.http`` until
    ``stop()``: the pusher here and the peer witness (gateway/witness.py)."""

    thread_name = "coldtrace-cloud"
    http: httpx.Client
    _stop: threading.Event
    _thread: threading.Thread | None

    def run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.http.close()


class Pusher(CloudLoop):
    """Pushes ``store``'s log to ``cfg.cloud.url``; see the module docstring.

    ``run()`` loops until ``stop()``; ``push_all(deadline)`` pushes until the cloud
    holds everything up to the latest checkpoint (True) or the deadline passes.
    ``alert(kind, message)`` is called once when the cloud froze the log."""

    def __init__(
        self,
        cfg: GatewayConfig,
        store: SqlStore,
        signer: NoteSigner,
        *,
        alert: Callable[[str, str], None] | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        assert cfg.cloud is not None, "[cloud] is not configured"
        self.cfg = cfg
        self.store = store
        self.signer = signer
        self.origin = signer.name
        self.url = cfg.cloud.url
        self.interval = cfg.cloud.interval
        self.http = client or httpx.Client(timeout=cfg.cloud.timeout)
        self.alert = alert
        self.stats = PushStats()
        self.synced = False  # the cloud's size was read since the last 409/start
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures = 0
        self._next_refresh = 0.0
        self.retry_max = cfg.cloud.retry_max
        self._witnesses: list[WitnessVerifier] | None = None
        self._witnesses_at = 0.0

    # --- lifecycle --------------------------------------------------------------------

    thread_name = "coldtrace-push"

    def run(self) -> None:
        log.info("pushing %s to %s", self.origin, self.url)
        while not self._stop.is_set():
            try:
                busy = self.round()
                self._failures = 0
                delay = 0.0 if busy else self.interval
            except PushStopped:
                return
            except _Retry as r:
                delay = self._failed(r)
            except Exception as exc:  # never let the thread die on a surprise
                log.exception("push round failed")
                delay = self._failed(_Retry("error", str(exc)))
            if delay:
                self._stop.wait(delay)

    def push_all(self, deadline: float) -> bool:
        """Push until the cloud holds everything up to the latest checkpoint and its
        receipts; False when ``deadline`` (monotonic) passes first. PushStopped when
        the cloud froze the log."""
        latest = self.store.latest_checkpoint()
        target = 0 if latest is None else latest.size  # a running gateway signs more
        while True:
            try:
                while not self.done(target) and self.round():
                    if time.monotonic() > deadline:
                        return False
                self._failures = 0
                if self.done(target):
                    return True
                delay = 0.2
            except _Retry as r:
                delay = self._failed(r)
            if time.monotonic() + delay > deadline:
                return False
            time.sleep(delay)

    def done(self, target: int | None = None) -> bool:
        """Whether the cloud holds the log up to ``target`` (default: the latest
        checkpoint) and every receipt of a checkpoint up to there."""
        if target is None:
            latest = self.store.latest_checkpoint()
            target = 0 if latest is None else latest.size
        if not self.synced or self.cloud_size() < target:
            return False
        receipts = self.store.anchors_after(self.receipt_size(), target)
        return not receipts

    # --- state in the store -----------------------------------------------------------

    def cloud_size(self) -> int:
        return int(self.store.get_meta(META_SIZE) or 0)

    def receipt_size(self) -> int:
        return int(self.store.get_meta(META_RECEIPT) or 0)

    def _set_size(self, size: int) -> None:
        self.store.set_meta(META_SIZE, str(size))
        self.stats.cloud_size = size

    # --- one round ---------------------------------------------------------------------

    def round(self) -> bool:
        """One step: sync, then push the next batch if any. True when it pushed something
        (call again at once), False when everything is pushed."""
        if not self.synced:
            self.sync()
        size = self.cloud_size()
        cps = self.store.checkpoints_after(size, limit=1)
        latest_row = self.store.latest_checkpoint()
        latest = size if latest_row is None else max(size, latest_row.size)
        self.stats.backlog = latest - size
        if cps:
            cp = cps[0]
            receipt = bool(self.store.anchors_after(cp.size - 1, cp.size))
            if not receipt and time.time() - cp.time < RECEIPT_GRACE:
                # The gateway anchors a checkpoint right after signing it: wait a moment
                # so that the receipt goes with it (a later one is pushed on its own).
                self._stop.wait(0.1)
                return True
            self._push_checkpoint(size, self._next_target(size, cp))
            return True
        if self._pending_receipts(size, size):
            self._push_receipts(size)
            return True
        if time.monotonic() >= self._next_refresh:
            self._next_refresh = time.monotonic() + max(self.interval * 5, 1.0)
            self._refresh(size)
        return False

    def sync(self) -> None:
        """Read where the cloud is (``GET /v1/logs/{origin}``) and check it is our log."""
        r = self._request("GET", f"/v1/logs/{self.origin}")
        doc = r.json()
        if doc.get("frozen"):
            self._stopped(
                "log_frozen", f"the cloud froze {self.origin}: {doc.get('frozen_reason')}"
            )
        size = int(doc["size"])
        if size:
            ours = self.store.checkpoint_at(size)
            note = doc.get("checkpoint") or ""
            if ours is None:
                self._stopped(
                    "cloud_ahead",
                    f"the cloud holds {size} records of {self.origin} but this gateway has no "
                    "checkpoint of that size (a database restored from an old copy?)",
                )
            try:
                cp = open_checkpoint(note, [self.signer.verifier()])
            except VerificationError as exc:
                raise _Retry(
                    "bad_answer", f"the cloud's checkpoint does not verify: {exc}"
                ) from None
            if cp.size != size or cp.root_hash != ours.root:
                self._stopped(
                    "log_forked",
                    f"the cloud's checkpoint {size} of {self.origin} has another root than ours",
                )
            if merge_cosigned(self.store, self.signer, size, note, self.witnesses(note)):
                log.info("checkpoint %d: cosignatures from the cloud stored", size)
        if size != self.cloud_size():
            log.info("the cloud holds %d records of %s", size, self.origin)
        self._set_size(size)
        if self.store.get_meta(META_FROZEN):
            self.store.set_meta(META_FROZEN, "")  # the operator thawed the log
        if self.receipt_size() > size:
            self.store.set_meta(META_RECEIPT, str(size))
        self.synced = True

    def _next_target(self, size: int, cp: CheckpointRow) -> CheckpointRow:
        """The next checkpoint to push: ``cp``, or - when it is more than a batch away -
        an intermediate checkpoint this gateway signs and stores now."""
        if cp.size - size <= MAX_BATCH_RECORDS:
            return cp
        mid = size + MAX_BATCH_RECORDS
        have = self.store.checkpoint_at(mid)
        if have is not None:
            return have
        reader = TreeReader(self.cfg.tree_dir, cp.size)
        try:
            root = reader.root(mid)
        finally:
            reader.close()
        note = sign_checkpoint(Checkpoint(self.origin, mid, root), self.signer)
        row = CheckpointRow(mid, root, note, int(time.time()))
        self.store.add_checkpoint(row)
        log.info("signed intermediate checkpoint %d to push in batches", mid)
        return row

    def _pending_receipts(self, lo: int, hi: int) -> list[tuple[int, dict[str, Any]]]:
        done = self.receipt_size()
        out: dict[int, dict[str, Any]] = {}
        for a in self.store.anchors_after(done, hi):
            if a.size <= hi and (a.size == hi or a.size <= lo):
                out.setdefault(a.size, a.receipt)
        return sorted(out.items())

    def _push_checkpoint(self, size: int, cp: CheckpointRow) -> None:
        records = list(self.store.raw_between(size, cp.size))
        consistency = None
        if size:
            reader = TreeReader(self.cfg.tree_dir, cp.size)
            try:
                consistency = (size, reader.consistency_proof(size, cp.size))
            finally:
                reader.close()
        anchors = self._pending_receipts(size, cp.size)
        batch = PushBatch(size, records, cp.note, consistency, anchors)
        self._send(batch, cp.size)

    def _push_receipts(self, size: int) -> None:
        cp = self.store.checkpoint_at(size)
        assert cp is not None
        self._send(PushBatch(size, [], cp.note, None, self._pending_receipts(size, size)), size)

    def _send(self, batch: PushBatch, size: int) -> None:
        body = json.dumps(batch.to_json(), separators=(",", ":")).encode()
        path = f"/v1/logs/{self.origin}/push"
        r = self._request(
            "POST",
            path,
            content=body,
            headers={
                "Authorization": auth_header(self.signer, "POST", self._path(path), body),
                "Content-Type": "application/json",
            },
        )
        doc = r.json()
        self.stats.batches += 1
        self.stats.records += int(doc.get("stored", 0))
        if doc.get("duplicate"):
            self.stats.duplicates += 1
        self.stats.last_push = int(time.time())
        note = doc.get("checkpoint")
        if isinstance(note, str) and merge_cosigned(
            self.store, self.signer, size, note, self.witnesses(note)
        ):
            log.debug("checkpoint %d: cosigned note stored", size)
        self._set_size(max(int(doc.get("size", size)), size))
        if batch.anchors:
            top = max(s for s, _ in batch.anchors)
            if top > self.receipt_size():
                self.store.set_meta(META_RECEIPT, str(top))
        log.info(
            "pushed %d record(s), checkpoint %d%s to the cloud",
            len(batch.records),
            size,
            f" and {len(batch.anchors)} receipt(s)" if batch.anchors else "",
        )

    def _refresh(self, size: int) -> None:
        """Fetch the latest cosigned note (peers cosign after the push) and keep it."""
        if not size:
            return
        try:
            r = self.http.get(f"{self.url}/v1/logs/{self.origin}/checkpoint")
        except httpx.HTTPError:
            return
        if r.status_code == 200:
            try:
                cp = open_checkpoint(r.text, [self.signer.verifier()])
            except VerificationError:
                return
            if merge_cosigned(self.store, self.signer, cp.size, r.text, self.witnesses(r.text)):
                log.info("checkpoint %d: new cosignatures stored", cp.size)

    def witnesses(self, note: str | None = None) -> list[WitnessVerifier]:
        """The witness keys whose lines the cloud serves (``GET /v1/witnesses``): its own
        and the registered peers'. Read once, and again (at most every 5 s) when ``note``
        carries a line by a key not among them."""
        now = time.monotonic()
        stale = self._witnesses is None
        if not stale and note is not None and now - self._witnesses_at > 5:
            try:
                lines = {(s.name, s.key_id) for s in parse_note(note).signatures}
            except VerificationError:
                lines = set()
            known = {(w.name, w.key_id) for w in self._witnesses or []}
            stale = any(k not in known and k[0] != self.origin for k in lines)
        if stale:
            try:
                r = self.http.get(f"{self.url}/v1/witnesses")
                if r.status_code == 200:
                    self._witnesses = [WitnessVerifier.from_vkey(w["vkey"]) for w in r.json()]
                    self._witnesses_at = now
            except (httpx.HTTPError, ValueError, KeyError, TypeError, VerificationError) as exc:
                log.warning("could not read the cloud's witness keys: %s", exc)
        return list(self._witnesses or [])

    # --- HTTP and errors -----------------------------------------------------------------

    def _path(self, path: str) -> str:
        """The request path as the server sees it (the URL may carry a prefix)."""
        return httpx.URL(self.url + path).raw_path.decode().split("?")[0]

    def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            r = self.http.request(method, self.url + path, **kw)
        except httpx.TimeoutException as exc:
            raise _Retry("timeout", f"{method} {path}: timed out ({exc})") from None
        except httpx.HTTPError as exc:
            raise _Retry("network", f"{method} {path}: {type(exc).__name__}: {exc}") from None
        if r.status_code < 300:
            return r
        try:
            doc = r.json()
        except ValueError:
            doc = {}
        code = str(doc.get("error", f"http_{r.status_code}")) if isinstance(doc, dict) else ""
        message = str(doc.get("message", r.text[:300])) if isinstance(doc, dict) else r.text[:300]
        if code in ("log_forked", "log_frozen") or r.status_code == 423:
            self._stopped(code or "log_frozen", message)
        if r.status_code == 409:
            self.synced = False
            raise _Retry(code or "conflict", f"{method} {path}: {code}: {message}")
        if r.status_code >= 500 or r.status_code == 429:
            raise _Retry(f"http_{r.status_code}", f"{method} {path}: {r.status_code} {message}")
        failures = doc.get("failures") if isinstance(doc, dict) else None
        detail = ""
        if failures:
            detail = "; ".join(
                f"{f.get('subject')}: {f.get('code')} {f.get('message')}" for f in failures[:10]
            )
        if r.status_code == 404:
            self.synced = False
        raise _Retry(
            code or f"http_{r.status_code}",
            f"{method} {path}: refused ({r.status_code} {code}): {message}"
            + (f" [{detail}]" if detail else ""),
            SLOW_RETRY,
        )

    def _failed(self, r: _Retry) -> float:
        self.stats.failures[r.reason] = self.stats.failures.get(r.reason, 0) + 1
        self._failures += 1
        if r.delay is not None:
            delay = min(r.delay, max(self.retry_max, SLOW_RETRY))
            log.error("push to the cloud refused; retrying in %.0f s: %s", delay, r)
            return delay
        delay = min(self.retry_max, BACKOFF_MIN * 2 ** min(self._failures - 1, 10))
        delay = random.uniform(delay / 2, delay)  # jitter
        log.warning("push to the cloud failed (%s); retrying in %.1f s", r, delay)
        return delay

    def _stopped(self, kind: str, message: str) -> NoReturn:
        self.stats.stopped = f"{kind}: {message}"
        self.stats.failures[kind] = self.stats.failures.get(kind, 0) + 1
        self.store.set_meta(META_FROZEN, json.dumps({"kind": kind, "message": message}))
        log.error("pushing %s stopped: %s: %s", self.origin, kind, message)
        if self.alert is not None:
            try:
                self.alert(kind, message)
            except Exception:
                log.exception("raising the alert failed")
        raise PushStopped(f"{kind}: {message}")
