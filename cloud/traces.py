"""Traces across organisations: one item's custody, monitoring and verdict, with the
proofs, from every log the cloud mirrors (docs/cloud.md §4).

The records are chosen by the protocol's own planner (:func:`protocol.assemble.plan`,
the same code as ``coldtrace gateway trace``) over :class:`CloudSource` - every
mirrored log, each up to its latest *anchored* checkpoint, so that everything
chosen can be proven and anchored. The bundle (version 3, compact) carries,
per log, that checkpoint with every witness cosignature the cloud holds, one
multiproof and the anchor receipt. The verdict is computed by
:func:`protocol.verify.verify_bundle` on the bundle itself, never by a
second copy, with the cloud's trust (its registered logs, registries and
ledgers, its own witness key at the configured quorum).

A trace that needs a log the cloud has not received far enough lists it
under ``awaiting``: for each leg, the logs of the organisation that speaks
for the leg's place (the trust's places scopes) and of the organisations
that registered its monitoring devices, whose anchored records end before
the leg does. The verdict of such a trace is INCOMPLETE by the protocol's
own rules (the evidence is missing); ``awaiting`` says whose evidence.

Bundles are cached per item and the sizes of all logs (a push changes the
key), served with a strong ETag and gzip.
"""

import gzip
import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import HTTPException, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import Connection, and_, func, select

from cloud import db
from cloud.logs import anchor_of, cosigned_note, trust_of
from protocol.assemble import Authorities, Entry, Loss, Plan, TraceError, find_uid, plan
from protocol.bundle import AnchorRef, Bundle, BundleRecord, ConsistencyProof, MultiProof, Subject
from protocol.merkle import proof as merkle_proof
from protocol.merkle.multiproof import multiproof_ranges
from protocol.record import KIND_REGISTRATION, KIND_SCAN, Registration, open_record
from protocol.verdict import parse_item
from protocol.verify import verify_bundle

__all__ = ["CloudSource", "TraceService", "install"]

log = logging.getLogger("coldtrace.cloud")

r = db.records.c


@dataclass(frozen=True)
class LogView:
    id: int
    origin: str
    org_id: int
    org: str
    upto: int  # the latest anchored checkpoint's size (0: nothing proven yet)
    size: int
    frozen: bool


_UNTIL: dict[tuple[str, int, int], int | None] = {}
_UNTIL_LOCK = threading.Lock()


def have_until(conn: Connection, v: LogView) -> int | None:
    """The newest set-clock record time below the log's proven prefix (None: no such
    record): how far the cloud has received this log. Memoised per (log, prefix)."""
    key = (str(conn.engine.url), v.id, v.upto)
    with _UNTIL_LOCK:
        if key in _UNTIL:
            return _UNTIL[key]
    until = conn.execute(
        select(func.max(r.time)).where(and_(r.log_id == v.id, r.idx < v.upto, r.tq >= 1))
    ).scalar_one()
    with _UNTIL_LOCK:
        if len(_UNTIL) > 10_000:
            _UNTIL.clear()
        _UNTIL[key] = None if until is None else int(until)
    return _UNTIL[key]


def log_views(conn: Connection) -> dict[int, LogView]:
    """Every log with the prefix the cloud can prove: up to its latest anchored checkpoint."""
    anchored = {
        row.log_id: row.size
        for row in conn.execute(
            select(db.anchors.c.log_id, func.max(db.anchors.c.size).label("size")).group_by(
                db.anchors.c.log_id
            )
        )
    }
    out = {}
    for row in conn.execute(
        select(db.logs, db.orgs.c.name.label("org")).join(db.orgs, db.orgs.c.id == db.logs.c.org_id)
    ):
        upto = min(int(anchored.get(row.id, 0)), int(row.size))
        out[row.id] = LogView(
            row.id, row.origin, row.org_id, row.org, upto, row.size, bool(row.frozen)
        )
    return out


class CloudSource:
    """A :class:`protocol.assemble.Source` over every mirrored log, each below its
    latest anchored checkpoint; a record logged in two logs counts once."""

    def __init__(self, conn: Connection, views: dict[int, LogView]) -> None:
        self.conn = conn
        self.views = views
        self._proven = [
            and_(r.log_id == v.id, r.idx < v.upto) for v in views.values() if v.upto > 0
        ]

    @property
    def name(self) -> str:
        return "the logs this cloud holds"

    def _where(self, *cond: Any) -> Any:
        from sqlalchemy import false, or_

        proven = or_(*self._proven) if self._proven else false()
        return and_(proven, *cond)

    def _entries(self, q: Any) -> list[Entry]:
        out: list[Entry] = []
        seen: set[bytes] = set()
        for row in self.conn.execute(q):
            raw = bytes(row.raw)
            if raw in seen:
                continue
            seen.add(raw)
            out.append(self._entry(row, raw))
        return out

    def _entry(self, row: Any, raw: bytes) -> Entry:
        origin = self.views[row.log_id].origin
        return Entry(
            origin,
            int(row.idx),
            raw,
            row.signer,
            int(row.seq),
            int(row.tq),
            int(row.time),
            int(row.kind),
        )

    def _select(self) -> Any:
        return select(r.log_id, r.idx, r.raw, r.signer, r.seq, r.tq, r.time, r.kind)

    def scans_of(self, *, uid: bytes | None = None, item: str | None = None) -> list[Entry]:
        cond = r.uid == uid if uid is not None else r.item == item
        return self._entries(
            self._select().where(self._where(r.kind == KIND_SCAN, cond)).order_by(r.log_id, r.idx)
        )

    def statements(self, kind: int, chain: str, signer: str) -> list[Entry]:
        q = self._select().where(self._where(r.kind == kind, r.chain == chain, r.signer == signer))
        return self._entries(q.order_by(r.cseq, r.log_id, r.idx))

    def records_of(self, device: str, seq_lo: int, seq_hi: int) -> list[Entry]:
        q = self._select().where(self._where(r.signer == device, r.seq.between(seq_lo, seq_hi)))
        return self._entries(q.order_by(r.seq, r.log_id, r.idx))

    def seq_window(self, device: str, t0: int, t1: int) -> tuple[int, int] | None:
        mine = self._where(r.signer == device, r.kind.in_((1, 2, 3, 7)))
        lo_any, hi_any = self.conn.execute(
            select(func.min(r.seq), func.max(r.seq)).where(mine)
        ).one()
        if lo_any is None:
            return None
        # protocol.assemble.seq_bounds, in SQL: around the records dated inside
        in_lo, in_hi = self.conn.execute(
            select(func.min(r.seq), func.max(r.seq)).where(
                and_(mine, r.tq >= 1, r.time > t0, r.time < t1)
            )
        ).one()
        below = int(hi_any) + 1 if in_lo is None else int(in_lo)
        above = int(lo_any) - 1 if in_hi is None else int(in_hi)
        before = and_(mine, r.tq >= 1, r.time <= t0, r.seq < below)
        lo = self.conn.execute(
            select(func.max(r.seq)).where(and_(before, r.kind.in_((1, 7))))
        ).scalar_one()
        if lo is None:
            lo = self.conn.execute(select(func.max(r.seq)).where(before)).scalar_one()
        lo = int(lo_any if lo is None else lo)
        hi = self.conn.execute(
            select(func.min(r.seq)).where(
                and_(mine, r.seq >= lo, r.seq > above, r.tq >= 1, r.time >= t1)
            )
        ).scalar_one()
        return lo, int(hi_any if hi is None else hi)

    def declared_losses(self, device: str) -> list[Loss]:
        q = self._select().add_columns(r.lost_from, r.lost_to)
        q = q.where(self._where(r.signer == device, r.lost_from.is_not(None)))
        out = []
        seen: set[bytes] = set()
        for row in self.conn.execute(q.order_by(r.seq)):
            raw = bytes(row.raw)
            if raw in seen:
                continue
            seen.add(raw)
            out.append(Loss(int(row.lost_from), int(row.lost_to), self._entry(row, raw)))
        return out

    def registrations(self, device: str) -> list[Entry]:
        q = self._select().where(self._where(r.kind == KIND_REGISTRATION, r.chain == device))
        return self._entries(q.order_by(r.log_id, r.idx))


@dataclass
class Trace:
    uid: bytes
    item: str | None
    bundle_text: str
    etag: str
    orgs: set[int]  # organisations whose logs scanned the item (may read it)
    summarise: Callable[[], dict[str, Any]]  # the verifier's report on the bundle, and more
    _gzip: bytes | None = None
    _summary: dict[str, Any] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def summary(self) -> dict[str, Any]:
        """The trace as the API shows it, with the verdict: computed on first use (the
        bundle alone does not need the verifier), then kept with the trace."""
        with self._lock:
            if self._summary is None:
                self._summary = self.summarise()
            return self._summary

    @property
    def gzipped(self) -> bytes:
        """The bundle gzip'd, once per assembled trace (not once per request)."""
        if self._gzip is None:
            self._gzip = gzip.compress(self.bundle_text.encode(), 6, mtime=0)
        return self._gzip


class TraceService:
    """Assembles traces and keeps the latest 256 (see the module docstring).

    After a push, :meth:`refresh` rebuilds in the background the traces asked for
    most recently (bundle and verdict), so that the next request for them finds
    the new evidence already assembled and verified instead of paying for it."""

    WARM = 32  # traces rebuilt after a push

    def __init__(self, cloud: Any) -> None:
        self.cloud = cloud
        self._cache: OrderedDict[tuple[Any, ...], Trace] = OrderedDict()
        self._lock = threading.Lock()
        self._recent: OrderedDict[bytes, None] = OrderedDict()
        self._dirty = threading.Event()
        self._worker: threading.Thread | None = None
        self.refreshed = 0  # traces rebuilt in the background (for tests and metrics)

    def refresh(self) -> None:
        """Rebuild the recently asked traces in the background (coalesced)."""
        with self._lock:
            if not self._recent:
                return
            self._dirty.set()
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(
                    target=self._refresh_loop, name="coldtrace-trace-refresh", daemon=True
                )
                self._worker.start()

    def _refresh_loop(self) -> None:
        while self._dirty.is_set():
            self._dirty.clear()
            with self._lock:
                uids = list(self._recent)[-self.WARM :]
            for uid in reversed(uids):
                try:
                    _ = self.trace(uid, remember=False).summary
                    self.refreshed += 1
                except HTTPException:
                    continue  # an item no longer traceable: skip it
                except Exception:  # never let the worker die on a surprise
                    log.exception("rebuilding the trace of %s failed", uid.hex())

    # --- finding the item ------------------------------------------------------------------
    def resolve(self, what: str) -> bytes:
        with self.cloud.engine.connect() as conn:
            views = log_views(conn)
            try:
                return find_uid(CloudSource(conn, views), what)[0]
            except TraceError as e:
                raise HTTPException(404, {"error": "unknown_item", "message": str(e)}) from None

    def items(
        self, *, lot: str | None, serial: str | None, gtin: str | None
    ) -> list[dict[str, Any]]:
        """Commissioned items by lot or serial (and GTIN): their uid and Digital Link."""
        with self.cloud.engine.connect() as conn:
            views = log_views(conn)
            src = CloudSource(conn, views)
            q = select(r.log_id, r.uid, r.item).where(
                src._where(r.kind == KIND_SCAN, r.item.is_not(None))
            )
            out: dict[bytes, dict[str, Any]] = {}
            for row in conn.execute(q):
                parsed = parse_item(row.item)
                if parsed is None:
                    continue
                if gtin is not None and parsed.gtin != gtin:
                    continue
                if lot is not None and parsed.lot != lot:
                    continue
                if serial is not None and parsed.serial != serial:
                    continue
                uid = bytes(row.uid)
                out.setdefault(uid, {"uid": uid.hex(), "item": row.item, "orgs": set()})
            for uid, entry in out.items():  # who may see it: every organisation that scanned it
                for row in conn.execute(
                    select(r.log_id).where(src._where(r.kind == KIND_SCAN, r.uid == uid))
                ):
                    entry["orgs"].add(views[row.log_id].org_id)
            return list(out.values())

    # --- assembling ---------------------------------------------------------------------------
    def trace(self, uid: bytes, *, remember: bool = True) -> Trace:
        if remember:
            with self._lock:
                self._recent[uid] = None
                self._recent.move_to_end(uid)
                while len(self._recent) > self.WARM:
                    self._recent.popitem(last=False)
        with self.cloud.engine.connect() as conn:
            views = log_views(conn)
            pins = tuple(
                conn.execute(select(func.count(), func.max(t.c.id))).one()
                for t in (db.registries, db.ledgers, db.witness_keys)
            )  # a key pinned since changes whose word counts
            cosigs = conn.execute(select(func.count()).select_from(db.cosignatures)).scalar()
            pins = (*pins, cosigs)  # a peer's cosignature added since goes into the bundle
            key = (uid, pins, tuple(sorted((v.id, v.upto, v.frozen) for v in views.values())))
            with self._lock:
                hit = self._cache.get(key)
                if hit is not None:
                    self._cache.move_to_end(key)
                    return hit
            t = self._assemble(conn, uid, views)
        with self._lock:
            self._cache[key] = t
            while len(self._cache) > 256:
                self._cache.popitem(last=False)
        return t

    def _assemble(self, conn: Connection, uid: bytes, views: dict[int, LogView]) -> Trace:
        started = time.perf_counter()
        # the verdict the cloud shows is the one a client gets with /v1/trust: the cloud's
        # own witness at the configured quorum (peers' lines are carried, not counted)
        trust = trust_of(conn, [self.cloud.witness.verifier()], self.cloud.config.quorum)
        source = CloudSource(conn, views)
        try:
            p = plan(source, uid, Authorities.of_trust(trust))
        except TraceError as e:
            raise HTTPException(404, {"error": "unknown_item", "message": str(e)}) from None
        by_origin = {v.origin: v for v in views.values()}
        bundle = self._bundle(conn, p, by_origin)
        text = bundle.dumps()
        assembled = time.perf_counter() - started
        scanned = {by_origin[e.log].org_id for e in p.scans}
        etag = '"' + hashlib.sha256(text.encode()).hexdigest()[:32] + '"'

        def summarise() -> dict[str, Any]:
            t0 = time.perf_counter()
            report = verify_bundle(bundle, trust, rpc=self.cloud.config.evm_rpc())
            verified = time.perf_counter() - t0
            with self.cloud.engine.connect() as c2:
                out = self._summary(c2, p, report, views, by_origin, trust, len(text), bundle)
            out["timing_ms"] = {
                "assemble": round(assembled * 1000, 1),
                "verify": round(verified * 1000, 1),
            }
            return out

        return Trace(uid, p.item, text, etag, scanned, summarise)

    def _bundle(self, conn: Connection, p: Plan, by_origin: dict[str, LogView]) -> Bundle:
        groups: dict[str, list[Entry]] = {}
        for e in p.records():
            groups.setdefault(e.log, []).append(e)
        # "created" is when the newest checkpoint it rests on was received: the same
        # evidence gives the same bytes, so the ETag holds across rebuilds and processes
        received = [
            conn.execute(
                select(db.checkpoints.c.received).where(
                    and_(
                        db.checkpoints.c.log_id == by_origin[o].id,
                        db.checkpoints.c.size == by_origin[o].upto,
                    )
                )
            ).scalar()
            for o in groups
        ]
        created = max((int(x) for x in received if x is not None), default=0) or None
        bundle = Bundle(subject=Subject(p.uid, p.item), created=created)
        for origin, entries in sorted(groups.items()):
            v = by_origin[origin]
            note = cosigned_note(conn, v.id, v.upto)
            receipt = anchor_of(conn, v.id, v.upto)
            if note is None or receipt is None:
                continue
            tree = self.cloud.mirrors.tree(conn, _row(conn, v.id))
            leaves = [e.index for e in entries]
            get = tree.store.get
            nodes = tuple(
                merkle_proof.fold([get(lv, ix) for lv, ix in merkle_proof.subtree_nodes(lo, hi)])
                for lo, hi in multiproof_ranges(v.upto, leaves)
            )
            bundle.records += [BundleRecord(origin, e.index, e.raw) for e in entries]
            bundle.checkpoints.append(note)
            bundle.proofs.append(MultiProof(origin, v.upto, tuple(leaves), nodes))
            bundle.anchors.append(AnchorRef(origin, v.upto, receipt))
        _ = ConsistencyProof
        return bundle

    def _summary(
        self,
        conn: Connection,
        p: Plan,
        report: Any,
        views: dict[int, LogView],
        by_origin: dict[str, LogView],
        trust: Any,
        size: int,
        bundle: Bundle,
    ) -> dict[str, Any]:
        reg_org = {
            row.registry: row.name
            for row in conn.execute(
                select(db.registries.c.registry, db.orgs.c.name).join(
                    db.orgs, db.orgs.c.id == db.registries.c.org_id
                )
            )
        }
        org_logs: dict[str, list[LogView]] = {}
        for v in views.values():
            org_logs.setdefault(v.org, []).append(v)
        scan_log = {e.raw: by_origin[e.log] for e in p.scans}
        legs = []
        awaiting: dict[str, dict[str, Any]] = {}
        for lp in p.legs:
            leg = lp.leg
            pay = leg.payload
            authority = trust.place_authority(leg.location) if leg.location else None
            owner = reg_org.get(authority) if authority else None
            scanned_by = scan_log.get(leg.scan.raw)
            devices = sorted({d for d, _, _ in lp.monitors})
            legs.append(
                {
                    "index": leg.index,
                    "action": pay.action,
                    "place": pay.place,
                    "location": leg.location,
                    "vehicle": leg.vehicle,
                    "start": leg.start,
                    "end": leg.end,
                    "reader": leg.scan.signer,
                    "scanned_in": None if scanned_by is None else scanned_by.origin,
                    "organisation": owner or (scanned_by.org if scanned_by else None),
                    "monitors": [{"device": d, "from": a, "to": b} for d, a, b in lp.monitors],
                    "binding": None if lp.run is None else ("closed" if lp.run.closed else "open"),
                    "note": lp.why_none,
                }
            )
            need = leg.end
            orgs_needed = {owner} if owner else set()
            for dev in devices:
                reg = trust.device_authority(dev)
                if reg and reg in reg_org:
                    orgs_needed.add(reg_org[reg])
            for org in sorted(o for o in orgs_needed if o):
                for v in org_logs.get(org, []):
                    until = have_until(conn, v)
                    if leg.end > leg.start and (until is None or until < need):
                        a = awaiting.setdefault(
                            v.origin,
                            {
                                "log": v.origin,
                                "organisation": org,
                                "have_until": until,
                                "need_until": need,
                                "legs": [],
                            },
                        )
                        a["need_until"] = max(a["need_until"], need)
                        a["legs"].append(leg.index)
                if org not in org_logs:
                    awaiting.setdefault(
                        f"org:{org}",
                        {
                            "log": None,
                            "organisation": org,
                            "have_until": None,
                            "need_until": need,
                            "legs": [leg.index],
                            "message": f"{org} has no log registered with this cloud",
                        },
                    )
        for reason in p.custody.reasons:
            if reason.code != "custody_gap" or reason.start is None:
                continue
            # a custody scan is missing: any log not received as far as the scan after
            # the gap may hold it
            for v in views.values():
                until = have_until(conn, v)
                if until is None or until < reason.start:
                    a = awaiting.setdefault(
                        v.origin,
                        {
                            "log": v.origin,
                            "organisation": v.org,
                            "have_until": until,
                            "need_until": reason.start,
                            "legs": [],
                        },
                    )
                    a["need_until"] = max(a["need_until"], reason.start)
                    if reason.leg is not None and reason.leg not in a["legs"]:
                        a["legs"].append(reason.leg)
        raw = sum(len(rec.raw) for rec in bundle.records)
        logs_used = sorted({rec.log for rec in bundle.records})
        return {
            "uid": p.uid.hex(),
            "item": p.item,
            "verified": report.verified,
            "verdict": report.verdict_document() if report.verified else None,
            "failures": [
                {"check": f.check, "subject": f.subject, "code": f.code, "message": f.message}
                for f in report.failures[:50]
            ],
            "legs": legs,
            "logs": [
                {
                    "log": o,
                    "organisation": by_origin[o].org,
                    "checkpoint": by_origin[o].upto,
                    "frozen": by_origin[o].frozen,
                }
                for o in logs_used
            ],
            "awaiting": list(awaiting.values()),
            "profile_note": p.profile_note,
            "bundle": {
                "bytes": size,
                "records": len(bundle.records),
                "record_bytes": raw,
                "ratio": round(size / raw, 3) if raw else None,
            },
        }


def _row(conn: Connection, log_id: int) -> Any:
    from cloud.logs import log_row

    return log_row(conn.execute(select(db.logs).where(db.logs.c.id == log_id)).one())


def _bundle_response(request: Request, t: Trace) -> Response:
    if request.headers.get("if-none-match") == t.etag:
        return Response(status_code=304, headers={"ETag": t.etag, "Vary": "Accept-Encoding"})
    name = f"coldtrace-{t.uid.hex()}.bundle.json"
    headers = {
        "ETag": t.etag,
        "Cache-Control": "no-cache",
        "Vary": "Accept-Encoding",
        "Content-Disposition": f'attachment; filename="{name}"',
    }
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        return Response(t.gzipped, media_type="application/json", headers=headers)
    return Response(t.bundle_text, media_type="application/json", headers=headers)


UidPath = Annotated[str, Path(min_length=8, max_length=20, pattern=r"^[0-9a-fA-F]+$")]
#: a lot (AI 10) or serial (AI 21): 1 to 20 characters of GS1's character set 82, which has
#: no space and no control character (a search term outside it can name no item: 422)
GS1_VALUE = r"^[A-Za-z0-9!\"%&'()*+,\-./:;<=>?_]{1,20}$"


def not_yours() -> HTTPException:
    """The one answer to an organisation for an item it may not see or that does not exist."""
    return HTTPException(
        404, {"error": "unknown_item", "message": "no item of yours with that tag"}
    )


def install(app: Any, cloud: Any, needs: Any, public: Any) -> None:
    """Add the trace, bundle and export endpoints to ``app``."""
    from fastapi import Depends

    svc = TraceService(cloud)
    app.state.traces = svc
    reader = Depends(needs("read"))

    def uid_of(text: str) -> bytes:
        if len(text) not in (8, 14, 20):
            raise HTTPException(
                422, {"error": "bad_uid", "message": "a tag UID is 8, 14 or 20 hex digits"}
            )
        return bytes.fromhex(text)

    def visible(who: Any, t: Trace) -> None:
        if not who.operator and who.org_id not in t.orgs:
            raise not_yours()

    def visible_trace(who: Any, uid: bytes) -> Trace:
        """The trace for ``who``; an organisation gets the same 404 for an item that is not
        its own and for one that does not exist (no existence oracle across organisations)."""
        try:
            t = svc.trace(uid)
        except HTTPException as e:
            if e.status_code != 404 or who.operator:
                raise
            raise not_yours() from None
        visible(who, t)
        return t

    app.state.visible_trace = visible_trace

    @app.get("/v1/traces", tags=["traces"])
    def find(
        who: Any = reader,
        dl: Annotated[str | None, Query(max_length=300)] = None,
        lot: Annotated[str | None, Query(pattern=GS1_VALUE)] = None,
        serial: Annotated[str | None, Query(pattern=GS1_VALUE)] = None,
        gtin: Annotated[str | None, Query(pattern=r"^[0-9]{14}$")] = None,
    ) -> Any:
        """Find items: by Digital Link (``dl``), or by ``lot`` / ``serial`` (and ``gtin``)."""
        if dl is not None:
            try:
                uid = svc.resolve(dl)
            except HTTPException as e:
                if e.status_code != 404 or who.operator:
                    raise
                raise not_yours() from None
            t = visible_trace(who, uid)
            return [{"uid": uid.hex(), "item": t.item, "trace": f"/v1/traces/{uid.hex()}"}]
        if lot is None and serial is None:
            raise HTTPException(
                422, {"error": "bad_query", "message": "give dl, or lot and/or serial"}
            )
        found = svc.items(lot=lot, serial=serial, gtin=gtin)
        return [
            {"uid": i["uid"], "item": i["item"], "trace": f"/v1/traces/{i['uid']}"}
            for i in found
            if who.operator or who.org_id in i["orgs"]
        ]

    @app.get("/v1/traces/{uid}", tags=["traces"])
    def trace(uid: UidPath, who: Any = reader) -> Any:
        """The item's custody across organisations, the monitoring per leg, the verdict."""
        t = visible_trace(who, uid_of(uid))
        return {**t.summary, "bundle_url": f"/v1/traces/{uid.lower()}/bundle"}

    @app.get("/v1/traces/{uid}/bundle", tags=["traces"])
    def bundle(request: Request, uid: UidPath, who: Any = reader) -> Response:
        """The trace bundle (docs/protocol.md §9, version 3), ETag and gzip."""
        t = visible_trace(who, uid_of(uid))
        return _bundle_response(request, t)

    @app.get("/v1/traces/{uid}/export/{kind}", tags=["exports"])
    def export(
        uid: UidPath,
        kind: Annotated[str, Path(pattern=r"^(epcis|fsma)$")],
        who: Any = reader,
        format: Annotated[str | None, Query(pattern=r"^(jsonld|csv|xlsx)$")] = None,
        lot: Annotated[str | None, Query(pattern=GS1_VALUE)] = None,
        date_from: Annotated[str | None, Query(alias="from", max_length=40)] = None,
        date_to: Annotated[str | None, Query(alias="to", max_length=40)] = None,
    ) -> Response:
        """GS1 EPCIS 2.0 JSON-LD, or an FSMA 204 spreadsheet (CSV or XLSX), of the trace."""
        from cloud.exports import ExportError, render
        from protocol.trust import parse_trust

        t = visible_trace(who, uid_of(uid))
        options: dict[str, Any] = {}
        if format is not None:
            options["format"] = format
        if kind == "fsma":
            options.update(lot=lot, date_from=date_from, date_to=date_to)
        trust = parse_trust(cloud.trust())
        try:
            out = render(kind, t.bundle_text.encode(), trust, **options)
        except ExportError as e:
            raise HTTPException(422, {"error": "bad_export", "message": str(e)}) from None
        return Response(
            out.content,
            media_type=out.media_type,
            headers={"Content-Disposition": f'attachment; filename="{out.filename}"'},
        )

    # --- consumers: public, read-only, rate-limited ---------------------------------------------
    def public_trace(dl: str) -> Trace:
        if parse_item(dl.split("?", 1)[0]) is None and "/01/" not in dl:
            raise HTTPException(422, {"error": "bad_item", "message": "a GS1 Digital Link path"})
        return svc.trace(svc.resolve(dl))

    @app.get("/v1/public/trace", tags=["public"], dependencies=[public])
    def public_summary(dl: Annotated[str, Query(min_length=4, max_length=300)]) -> Any:
        """What a consumer's page shows for a product's Digital Link: the journey, the
        verdict, and where to get the bundle to check it."""
        t = public_trace(dl)
        s = t.summary
        return JSONResponse(
            {
                "item": s["item"],
                "verified": s["verified"],
                "verdict": s["verdict"],
                "legs": [
                    {
                        k: leg[k]
                        for k in (
                            "index",
                            "action",
                            "place",
                            "location",
                            "start",
                            "end",
                            "organisation",
                            "monitors",
                        )
                    }
                    for leg in s["legs"]
                ],
                "awaiting": [
                    {k: a[k] for k in ("log", "organisation", "need_until")} for a in s["awaiting"]
                ],
                "bundle_url": f"/v1/public/bundle?dl={s['item']}" if s["item"] else None,
            }
        )

    @app.get("/v1/public/bundle", tags=["public"], dependencies=[public])
    def public_bundle(
        request: Request, dl: Annotated[str, Query(min_length=4, max_length=300)]
    ) -> Response:
        """The product's trace bundle, for verification on the consumer's device."""
        return _bundle_response(request, public_trace(dl))

    _ = open_record, Registration
