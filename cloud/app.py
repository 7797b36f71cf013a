"""The cloud service: an ASGI application (FastAPI), documented in docs/cloud.md.

``create_app(config)`` builds it; ``coldtrace cloud serve`` runs it under
uvicorn. The OpenAPI document is at ``/openapi.json`` (``/docs`` renders it).

Who may call what:

- **gateways** push with a request signed by their log key (no token);
- **witnesses** post cosignatures, which authenticate themselves;
- **organisations** read with a bearer token (``Authorization: Bearer ct_…``)
  and see only their own logs' records, and the traces of items their logs
  scanned;
- **the operator** registers organisations and pins their keys;
- **anyone** reads checkpoints, consistency proofs and the trust file (what
  a verifier needs), and - rate-limited - a product's public trace.

Every refusal is a 4xx with ``{"error": code, "message": …}``; every request
is logged as one JSON line (logger ``coldtrace.cloud``). A full disk under the
database is ``507 disk_full`` with :data:`DISK_FULL`: nothing of the request was
stored, the sender retries (a gateway's pusher does, with backoff).
"""

import functools
import importlib
import importlib.util
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field
from sqlalchemy import Engine, and_, select
from starlette.exceptions import HTTPException as StarletteHTTPException

from cloud import db, orgs
from cloud.config import CloudConfig
from cloud.logs import (
    Mirrors,
    all_logs,
    cosigned_note,
    get_log,
    latest_checkpoint,
    trust_document,
)
from cloud.push import PushRefused, ingest
from cloud.witness import CosignatureRefused, accept_cosignatures, load_or_create_witness
from gateway.evidence.diskfull import is_disk_full
from protocol.keys import b64e
from protocol.note import WitnessSigner

__all__ = ["Cloud", "create_app"]

log = logging.getLogger("coldtrace.cloud")

DISK_FULL = (
    "the cloud's storage is full: nothing of this request was stored; "
    "retry when the operator has freed space"
)

ORIGIN_PATH = Path(min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$")


class Cloud:
    """What every request handler shares: the database, the mirrors, the witness key."""

    def __init__(self, config: CloudConfig, engine: Engine | None = None) -> None:
        self.config = config
        self.engine = engine if engine is not None else db.connect(config.database_url)
        self.mirrors = Mirrors()
        self.witness: WitnessSigner = load_or_create_witness(
            config.witness_key, config.witness_name
        )
        self.limiter = RateLimiter(config.public_rate)

    def trust(self) -> dict[str, Any]:
        """The trust file clients may pin: every registered log, registry and ledger, and
        the cloud's own witness at the configured quorum. Peer witnesses are left out:
        the trust file's quorum counts any pinned witness for any log, and a gateway's
        witness must not vouch for its own log (docs/decisions.md D23)."""
        with self.engine.connect() as conn:
            return trust_document(conn, [self.witness.verifier()], self.config.quorum)


class RateLimiter:
    """A token bucket per client address: ``rate`` requests per minute, bursts of ``rate``."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, client: str) -> bool:
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(client, (float(self.rate), now))
            tokens = min(float(self.rate), tokens + (now - last) * self.rate / 60.0)
            if tokens < 1.0:
                self._buckets[client] = (tokens, now)
                return False
            self._buckets[client] = (tokens - 1.0, now)
            if len(self._buckets) > 100_000:  # forget idle clients
                self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < 120}
            return True


def _error(status: int, code: str, message: str, **extra: Any) -> HTTPException:
    return HTTPException(status, {"error": code, "message": message, **extra})


# --- request bodies --------------------------------------------------------------------------


class OrgIn(BaseModel):
    name: str = Field(min_length=1, max_length=63, pattern=r"^[a-z0-9][a-z0-9-]*$")
    display: str = Field(default="", max_length=128)


class TokenIn(BaseModel):
    scopes: list[str] = Field(min_length=1, max_length=3)
    label: str = Field(default="", max_length=128)


class LogIn(BaseModel):
    vkey: str = Field(min_length=1, max_length=400)


class RegistryIn(BaseModel):
    id: str = Field(min_length=1, max_length=64)
    key: str = Field(min_length=1, max_length=200)
    devices: list[str] = Field(default_factory=list, max_length=100)
    places: list[str] = Field(default_factory=list, max_length=100)
    gtins: list[str] = Field(default_factory=list, max_length=100)


class LedgerIn(BaseModel):
    id: str = Field(min_length=1, max_length=255)
    key: str = Field(min_length=1, max_length=100)


class WitnessIn(BaseModel):
    vkey: str = Field(min_length=1, max_length=400)


class CosignatureIn(BaseModel):
    note: str = Field(min_length=1, max_length=16384)


# --- the application -----------------------------------------------------------------------------


def create_app(config: CloudConfig, engine: Engine | None = None) -> FastAPI:
    cloud = Cloud(config, engine)
    app = FastAPI(
        title="ColdTrace cloud",
        version="1",
        description="Cross-organisation traces of cold chains, with the proofs. See docs/cloud.md.",
    )
    app.state.cloud = cloud
    app.add_middleware(GZipMiddleware, minimum_size=1024)

    @app.middleware("http")
    async def access_log(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        start = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception as exc:
            if is_disk_full(exc):
                # One sentence, no traceback: the transaction rolled back whole (a push
                # is stored entirely or not at all) and the sender retries (D40).
                log.error(json.dumps({"event": "disk_full", "path": request.url.path}))
                response = JSONResponse(
                    {"error": "disk_full", "message": DISK_FULL}, status_code=507
                )
            else:
                log.exception(json.dumps({"event": "error", "path": request.url.path}))
                response = JSONResponse(
                    {"error": "internal", "message": "internal error (logged)"}, status_code=500
                )
        log.info(
            json.dumps(
                {
                    "event": "request",
                    "method": request.method,
                    "path": request.url.path,
                    "status": response.status_code,
                    "ms": round((time.perf_counter() - start) * 1000, 2),
                    "client": request.client.host if request.client else None,
                }
            )
        )
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail
        if not isinstance(detail, dict):
            detail = {"error": "http_" + str(exc.status_code), "message": str(detail)}
        return JSONResponse(detail, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"where": ".".join(str(x) for x in e.get("loc", ())), "message": e.get("msg", "")}
            for e in exc.errors()[:20]
        ]
        return JSONResponse(
            {
                "error": "bad_request",
                "message": "the request does not match the API",
                "problems": problems,
            },
            status_code=422,
        )

    def principal(
        authorization: Annotated[str | None, Header()] = None,
    ) -> orgs.Principal:
        if not authorization or not authorization.startswith("Bearer "):
            raise _error(
                401,
                "unauthenticated",
                "a bearer token is required",
            )
        with cloud.engine.connect() as conn:
            who = orgs.authenticate(conn, authorization[7:].strip())
        if who is None:
            raise _error(401, "unauthenticated", "unknown or revoked token")
        return who

    def needs(scope: str) -> Callable[..., orgs.Principal]:
        def check(who: Annotated[orgs.Principal, Depends(principal)]) -> orgs.Principal:
            if not who.can(scope):
                raise _error(403, "forbidden", f"this token lacks the {scope!r} scope")
            return who

        return check

    Reader = Annotated[orgs.Principal, Depends(needs("read"))]
    Admin = Annotated[orgs.Principal, Depends(needs("admin"))]

    def public(request: Request) -> None:
        client = request.client.host if request.client else "?"
        if not cloud.limiter.allow(client):
            raise HTTPException(
                429,
                {"error": "rate_limited", "message": "too many requests; slow down"},
                headers={"Retry-After": "1"},
            )

    Public = Depends(public)

    def org_call(fn: Callable[[Any], Any]) -> Any:
        try:
            with cloud.engine.begin() as conn:
                return fn(conn)
        except orgs.OrgError as e:
            raise _error(e.status, "refused", str(e)) from None

    # --- health and trust ----------------------------------------------------------------
    @app.get("/healthz", tags=["service"])
    def healthz() -> dict[str, Any]:
        with cloud.engine.connect() as conn:
            conn.execute(select(1))
        return {"ok": True, "witness": cloud.witness.vkey}

    @app.get("/v1/trust", tags=["public"], dependencies=[Public])
    def trust() -> dict[str, Any]:
        """The trust file (docs/protocol.md §10) of every key this cloud pins, with its
        witness key and quorum. Review it, then pin it; do not fetch it blindly."""
        return cloud.trust()

    @app.get("/v1/witnesses", tags=["public"], dependencies=[Public])
    def witnesses() -> list[dict[str, Any]]:
        """Every witness whose cosignatures the cloud stores and serves: its own, and the
        peer gateways' the operator registered, with their organisation."""
        with cloud.engine.connect() as conn:
            rows = conn.execute(
                select(db.witness_keys.c.vkey, db.orgs.c.name).join(
                    db.orgs, db.orgs.c.id == db.witness_keys.c.org_id
                )
            ).all()
        return [{"vkey": cloud.witness.vkey, "organisation": None, "cloud": True}] + [
            {"vkey": r.vkey, "organisation": r.name, "cloud": False} for r in rows
        ]

    # --- logs: push, checkpoints, consistency, cosignatures -----------------------------------
    @app.post(
        "/v1/logs/{origin:path}/push",
        tags=["gateways"],
        responses={400: {}, 401: {}, 404: {}, 409: {}, 422: {}, 423: {}},
    )
    async def push(request: Request, origin: Annotated[str, ORIGIN_PATH]) -> JSONResponse:
        """Push a batch of a log (docs/cloud.md §2), signed with the log's key."""
        body = await request.body()
        auth = request.headers.get("authorization", "")
        try:
            result = await _run(
                functools.partial(ingest, rpc=cloud.config.evm_rpc()),
                cloud.engine,
                cloud.mirrors,
                cloud.witness,
                origin,
                request.url.path,
                body,
                auth,
            )
        except PushRefused as err:
            log.warning(
                json.dumps(
                    {
                        "event": "push_refused",
                        "origin": origin,
                        "code": err.code,
                        "message": err.message,
                    }
                )
            )
            return JSONResponse(err.body(), status_code=err.status)
        log.info(
            json.dumps(
                {
                    "event": "push",
                    "origin": origin,
                    "size": result["size"],
                    "stored": result["stored"],
                    "duplicate": result["duplicate"],
                }
            )
        )
        if not result["duplicate"]:
            app.state.traces.refresh()  # rebuild what people look at, now
        return JSONResponse(result)

    @app.get("/v1/logs", tags=["public"], dependencies=[Public])
    def list_logs() -> list[dict[str, Any]]:
        """Every mirrored log: origin, size, whether it is frozen."""
        with cloud.engine.connect() as conn:
            return [
                {
                    "origin": lg.origin,
                    "size": lg.size,
                    "frozen": lg.frozen,
                    "frozen_reason": lg.frozen_reason,
                    "last_push": lg.last_push,
                }
                for lg in all_logs(conn)
            ]

    def _log(conn: Any, origin: str) -> Any:
        lg = get_log(conn, origin)
        if lg is None:
            raise _error(404, "unknown_log", f"no log {origin!r} here")
        return lg

    @app.get(
        "/v1/logs/{origin:path}/checkpoint",
        tags=["public"],
        dependencies=[Public],
        response_class=PlainTextResponse,
    )
    def checkpoint(
        origin: Annotated[str, ORIGIN_PATH],
        size: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    ) -> PlainTextResponse:
        """The latest (or ``size``'s) checkpoint with every cosignature the cloud holds."""
        with cloud.engine.connect() as conn:
            lg = _log(conn, origin)
            if size is None:
                cp = latest_checkpoint(conn, lg.id)
                size = None if cp is None else int(cp.size)
            note = None if size is None else cosigned_note(conn, lg.id, size)
        if note is None:
            raise _error(404, "no_checkpoint", f"no checkpoint of {origin} of that size here")
        return PlainTextResponse(note, media_type="text/plain; charset=utf-8")

    @app.get("/v1/logs/{origin:path}/consistency", tags=["public"], dependencies=[Public])
    def consistency(
        origin: Annotated[str, ORIGIN_PATH],
        old: Annotated[int, Query(ge=1, le=2**63 - 1)],
        new: Annotated[int, Query(ge=1, le=2**63 - 1)],
    ) -> dict[str, Any]:
        """An RFC 9162 consistency proof between two sizes of a mirrored log."""
        with cloud.engine.connect() as conn:
            lg = _log(conn, origin)
            if not old <= new <= lg.size:
                raise _error(422, "bad_sizes", f"need 1 <= old <= new <= {lg.size}")
            tree = cloud.mirrors.tree(conn, lg)
            path = tree.consistency_proof(old, new)
        return {"origin": origin, "old_size": old, "new_size": new, "path": [b64e(h) for h in path]}

    @app.post("/v1/logs/{origin:path}/cosignatures", tags=["witnesses"], dependencies=[Public])
    def cosignatures(origin: Annotated[str, ORIGIN_PATH], body: CosignatureIn) -> dict[str, Any]:
        """Add a registered witness's cosignature to a checkpoint the cloud holds."""
        try:
            with cloud.engine.begin() as conn:
                lg = _log(conn, origin)
                stored = accept_cosignatures(conn, lg, body.note)
        except CosignatureRefused as e:
            raise _error(e.status, "refused", str(e)) from None
        log.info(json.dumps({"event": "cosignature", "origin": origin, "witnesses": stored}))
        return {"stored": stored}

    # --- an organisation's own data ---------------------------------------------------------------
    @app.get("/v1/logs/{origin:path}/records", tags=["organisations"])
    def records(
        who: Reader,
        origin: Annotated[str, ORIGIN_PATH],
        start: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        """Records of one of the organisation's own logs, from index ``start``."""
        with cloud.engine.connect() as conn:
            lg = get_log(conn, origin)
            if lg is None or (lg.org_id != who.org_id and not who.operator):
                raise _error(404, "unknown_log", f"no log {origin!r} of yours here")
            rows = conn.execute(
                select(
                    db.records.c.idx,
                    db.records.c.raw,
                    db.records.c.signer,
                    db.records.c.kind,
                    db.records.c.seq,
                    db.records.c.time,
                )
                .where(and_(db.records.c.log_id == lg.id, db.records.c.idx >= start))
                .order_by(db.records.c.idx)
                .limit(limit)
            ).all()
        return {
            "origin": origin,
            "records": [
                {
                    "index": r.idx,
                    "signer": r.signer,
                    "kind": r.kind,
                    "seq": r.seq,
                    "time": r.time,
                    "record": b64e(r.raw),
                }
                for r in rows
            ],
        }

    @app.get("/v1/logs/{origin:path}", tags=["public"], dependencies=[Public])
    def log_status(origin: Annotated[str, ORIGIN_PATH]) -> dict[str, Any]:
        """A log's state here: what a gateway resumes its pushes from."""
        with cloud.engine.connect() as conn:
            lg = _log(conn, origin)
            cp = latest_checkpoint(conn, lg.id)
            return {
                "origin": lg.origin,
                "size": lg.size,
                "frozen": lg.frozen,
                "frozen_reason": lg.frozen_reason,
                "last_push": lg.last_push,
                "checkpoint": None if cp is None else cosigned_note(conn, lg.id, cp.size),
            }

    @app.get("/v1/rejected", tags=["organisations"])
    def rejected(who: Reader, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[Any]:
        """Pushes refused for the organisation's logs, newest first, with their reasons."""
        with cloud.engine.connect() as conn:
            q = (
                select(
                    db.rejected.c.id,
                    db.rejected.c.origin,
                    db.rejected.c.reason,
                    db.rejected.c.message,
                    db.rejected.c.received,
                )
                .join(db.logs, db.logs.c.id == db.rejected.c.log_id)
                .order_by(db.rejected.c.id.desc())
                .limit(limit)
            )
            if not who.operator:
                q = q.where(db.logs.c.org_id == who.org_id)
            return [
                {
                    "id": r.id,
                    "origin": r.origin,
                    "reason": r.reason,
                    "detail": json.loads(r.message),
                    "received": r.received,
                }
                for r in conn.execute(q)
            ]

    @app.get("/v1/alarms", tags=["organisations"])
    def alarms(who: Reader, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[Any]:
        """Alarms (forked logs) of the organisation's logs; the operator sees all."""
        with cloud.engine.connect() as conn:
            q = select(db.alarms).order_by(db.alarms.c.id.desc()).limit(limit)
            if not who.operator:
                q = q.where(db.alarms.c.org_id == who.org_id)
            return [
                {
                    "id": a.id,
                    "kind": a.kind,
                    "message": a.message,
                    "detail": json.loads(a.detail),
                    "created": a.created,
                }
                for a in conn.execute(q)
            ]

    @app.get("/v1/audit", tags=["organisations"])
    def audit(who: Admin, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[Any]:
        """The audit log of the organisation's own actions (the operator: all)."""
        with cloud.engine.connect() as conn:
            return orgs.audit_rows(conn, who, limit)

    # --- organisations and keys -----------------------------------------------------------------
    @app.get("/v1/orgs", tags=["organisations"])
    def list_orgs(who: Reader) -> list[Any]:
        with cloud.engine.connect() as conn:
            return orgs.list_orgs(conn, who)

    @app.post("/v1/orgs", tags=["operator"], status_code=201)
    def add_org(who: Admin, body: OrgIn) -> dict[str, Any]:
        if not who.operator:
            raise _error(403, "forbidden", "only the operator adds organisations")
        org_call(lambda c: orgs.add_org(c, who, body.name, body.display))
        return {"name": body.name}

    OrgName = Annotated[str, Path(min_length=1, max_length=63, pattern=r"^[a-z0-9][a-z0-9-]*$")]

    @app.post("/v1/orgs/{org}/tokens", tags=["organisations"], status_code=201)
    def add_token(who: Admin, org: OrgName, body: TokenIn) -> dict[str, Any]:
        """A new API token (shown once; the cloud keeps only its hash)."""
        tid, token = org_call(lambda c: orgs.new_token(c, who, org, body.scopes, body.label))
        return {"id": tid, "token": token, "scopes": sorted(set(body.scopes))}

    @app.delete("/v1/tokens/{token_id}", tags=["organisations"])
    def revoke(who: Admin, token_id: Annotated[int, Path(ge=1, le=2**31)]) -> dict[str, Any]:
        org_call(lambda c: orgs.revoke_token(c, who, token_id))
        return {"revoked": token_id}

    @app.post("/v1/orgs/{org}/logs", tags=["operator"], status_code=201)
    def add_log(who: Admin, org: OrgName, body: LogIn) -> dict[str, Any]:
        return {"origin": org_call(lambda c: orgs.add_log(c, who, org, body.vkey))}

    @app.post("/v1/orgs/{org}/registries", tags=["operator"], status_code=201)
    def add_registry(who: Admin, org: OrgName, body: RegistryIn) -> dict[str, Any]:
        scopes = {"devices": body.devices, "places": body.places, "gtins": body.gtins}
        org_call(lambda c: orgs.add_registry(c, who, org, body.id, body.key, scopes))
        return {"id": body.id}

    @app.post("/v1/orgs/{org}/ledgers", tags=["operator"], status_code=201)
    def add_ledger(who: Admin, org: OrgName, body: LedgerIn) -> dict[str, Any]:
        org_call(lambda c: orgs.add_ledger(c, who, org, body.id, body.key))
        return {"id": body.id}

    @app.post("/v1/orgs/{org}/witnesses", tags=["operator"], status_code=201)
    def add_witness(who: Admin, org: OrgName, body: WitnessIn) -> dict[str, Any]:
        return {"name": org_call(lambda c: orgs.add_witness(c, who, org, body.vkey))}

    app.state.needs = needs
    app.state.public = Public
    from cloud import traces

    traces.install(app, cloud, needs, Public)
    # the parts that add their own endpoints, each with install(app, cloud, needs, public)
    for part in ("tags", "page", "report"):
        if importlib.util.find_spec(f"cloud.{part}") is not None:
            module = importlib.import_module(f"cloud.{part}")
            if hasattr(module, "install"):  # not a directory of assets of the same name
                module.install(app, cloud, needs, Public)
    return app


async def _run(fn: Callable[..., Any], *args: Any) -> Any:
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(fn, *args)
