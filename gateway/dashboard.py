"""The operator's dashboard: a small web page at the gateway, updating live.

``coldtrace gateway run`` serves it from a thread when gateway.toml has a
``[dashboard]`` section; ``coldtrace gateway dashboard --config FILE`` serves
it alone against the gateway's store (another process may be running the
gateway). It reads everything from the store, so both show the same:

- **devices**: online / offline / never seen, battery, last seen, the
  device's own queue backlog and the gaps the gateway waits for, its place
  and latest temperature. A device counts as offline only when nothing has
  arrived for its expected upload interval plus ``offline_grace``. The
  interval is not in any signed record: it is the board's ``upload`` setting
  in ``config.json``, written at provisioning (gateway/provision.py from
  firmware/config.json, default 3600 s) and changed only by a command (key
  11, docs/protocol.md §5.3). The gateway therefore takes it from
  ``[dashboard] upload_interval`` and per device from
  ``[dashboard.upload_intervals]``; the MQTT presence (a device sleeps,
  disconnected, between uploads) is shown beside it but decides nothing.
- **live readings** (kind 1, and each reading of a block, kind 7), newest first;
- **alerts** (excursions, sensor faults, offline, the gateway's own
  alarms) as gateway/alerts.py kept them in the store, with **acknowledge**
  and a comment: the acknowledgement goes into the store's audit log;
- **rejected records** (the quarantine), **checkpoints**, the **witnesses**
  that cosigned the latest checkpoint, **anchors**;
- **lots in transit**: tagged items whose latest custody scan is a load or
  ship with no later unload or receive.

Updates are pushed with server-sent events (``GET /api/stream``,
``text/event-stream``): a ``snapshot`` event with everything above when
something changed (and every 15 s, as devices go offline with time alone),
and a ``reading`` event for each new reading.

Security: it listens on loopback by default; a non-loopback ``listen`` needs
a ``token`` (config.py refuses otherwise). With a token every request needs
``Authorization: Bearer <token>`` or the session cookie the login form sets
(HttpOnly, SameSite=Strict; an HMAC of the token, so changing the token ends
every session). State-changing requests take JSON only (no cross-site form
can send it) and a foreign ``Origin`` is refused. Responses carry a strict
Content-Security-Policy (no inline script).
"""

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import threading
import time
import urllib.parse
from collections import OrderedDict
from pathlib import Path
from typing import Any

from gateway.config import ConfigError, GatewayConfig
from gateway.evidence.store import SqlStore, StoredRecord, open_store

__all__ = ["DashboardData", "DashboardServer", "create_app", "run_dashboard", "serve_dashboard"]

log = logging.getLogger("coldtrace.dashboard")

STATIC = Path(__file__).with_name("static")
COOKIE = "ct_dashboard"
ROLES = {1: "logger", 2: "reader"}
ACTIONS = {1: "commission", 2: "load", 3: "unload", 4: "receive", 5: "ship", 6: "sell"}
IN_TRANSIT = (2, 5)  # load, ship
LIMIT = 50  # rows per list
SNAPSHOT_EVERY = 15.0  # s: a snapshot at least this often (offline comes with time alone)
POLL = 0.5  # s between two looks at the store


def strings() -> dict[str, str]:
    """Every text the page shows, from gateway/static/strings.json (one place)."""
    return json.loads((STATIC / "strings.json").read_text(encoding="utf-8"))


# --- what the page shows ------------------------------------------------------------------


class DashboardData:
    """The dashboard's views of a gateway store (read-mostly; acknowledgements write)."""

    def __init__(self, cfg: GatewayConfig, store: SqlStore) -> None:
        self.cfg = cfg
        self.store = store
        self.settings = cfg.dashboard if cfg.dashboard is not None else _default_settings()
        self._payloads: OrderedDict[int, Any] = OrderedDict()
        self._transit: tuple[Any, list[dict[str, Any]]] | None = None  # (scan mark, rows)

    def payload(self, rec: StoredRecord) -> Any:
        """The record's decoded payload (None if it does not decode), cached by leaf."""
        hit = self._payloads.get(rec.leaf)
        if hit is not None or rec.leaf in self._payloads:
            return hit
        from protocol.cose import parse_sign1
        from protocol.record import decode_payload

        try:
            p = decode_payload(parse_sign1(bytes(rec.raw)).payload)
        except Exception:
            p = None
        self._payloads[rec.leaf] = p
        if len(self._payloads) > 5000:
            self._payloads.popitem(last=False)
        return p

    def places(self) -> dict[str, str]:
        """Device -> the target of the latest binding naming it (the registry's view)."""
        best: dict[str, tuple[int, str]] = {}
        for head in self.store.statement_heads():
            if head.kind != 5 or not head.devices:
                continue
            for dev in head.devices.split(" "):
                if dev not in best or head.leaf > best[dev][0]:
                    best[dev] = (head.leaf, head.chain)
        return {d: chain for d, (_, chain) in best.items()}

    def reading(self, rec: StoredRecord, places: dict[str, str]) -> dict[str, Any] | None:
        p = self.payload(rec)
        if p is None or not hasattr(p, "temp"):
            return None
        return {
            "leaf": rec.leaf,
            "device": rec.signer,
            "seq": rec.seq,
            "time": rec.time,
            "received": rec.received,
            "temp": p.temp,
            "rh": p.rh,
            "fault": p.fault,
            "ch": p.ch or 0,
            "batt": p.batt,
            "place": places.get(rec.signer),
        }

    def block_readings(self, rec: StoredRecord, places: dict[str, str]) -> list[dict[str, Any]]:
        """The readings of a reading block (kind 7, §2.8), each at its own time;
        ``i`` is its index in the block (the rows share the block's leaf)."""
        p = self.payload(rec)
        if p is None or not hasattr(p, "readings"):
            return []
        out = []
        for i, r in enumerate(p.readings()):
            out.append(
                {
                    "leaf": rec.leaf,
                    "i": i,
                    "device": rec.signer,
                    "seq": rec.seq,
                    "time": r.time,
                    "received": rec.received,
                    "temp": r.temp,
                    "rh": r.rh,
                    "fault": r.fault,
                    "ch": r.ch or 0,
                    "batt": p.batt,
                    "place": places.get(rec.signer),
                }
            )
        return out

    def readings(self, *, after: int = -1, limit: int = LIMIT) -> list[dict[str, Any]]:
        """Readings with leaf > ``after``, oldest first (at most ``limit``, the newest);
        a reading block counts as its readings."""
        places = self.places()
        recs = self.store.recent_records(1, after=after, limit=limit)
        recs += self.store.recent_records(7, after=after, limit=limit)
        recs.sort(key=lambda rec: rec.leaf)
        out = []
        for rec in recs[-limit:]:
            if rec.kind == 7:
                out += self.block_readings(rec, places)
                continue
            r = self.reading(rec, places)
            if r is not None:
                out.append(r)
        return out[-limit:]

    def devices(self, now: int, places: dict[str, str]) -> list[dict[str, Any]]:
        s = self.settings
        states = self.store.signer_states()  # last_seen: when its last record was received
        presence = self.store.presence()
        out = []
        for dev in sorted(self.store.devices().values(), key=lambda d: d.id):
            interval = s.interval_of(dev.id)
            ss = states.get(dev.id)
            seen = ss.last_seen if ss is not None and ss.count else None
            if dev.state == 2:
                state = "revoked"
            elif seen is None:
                state = "never"
            elif now - seen <= interval + s.offline_grace:
                state = "online"
            else:
                state = "offline"
            temp, batt, queued, queued_time = None, None, None, None
            fw: str | None = None  # the firmware its newest status record names (§2.4)
            for rec in self.store.newest_of(dev.id, (1, 2, 3, 7)):  # + reading blocks
                p = self.payload(rec)
                if fw is None and getattr(p, "fw", None) is not None:
                    fwv = getattr(p, "fwv", None)
                    fw = p.fw if fwv is None else f"{p.fw} ({fwv})"
                if rec.kind == 7 and temp is None and p is not None:
                    last = p.readings()[-1]  # type: ignore[union-attr]
                    temp = -1 if last.temp is None else last.temp
                if rec.kind == 1 and temp is None and p is not None:
                    temp = -1 if p.temp is None else p.temp
                if batt is None and getattr(p, "batt", None) is not None:
                    batt = p.batt
                if queued is None and getattr(p, "queued", None) is not None:
                    queued, queued_time = p.queued, rec.time
                if batt is not None and queued is not None and temp is not None:
                    break
            temp = None if temp == -1 else temp  # the newest reading was a sensor fault
            gaps = 0 if ss is None else max(0, ss.max_seq - ss.contig - len(ss.above))
            conn = presence.get(dev.id)
            out.append(
                {
                    "id": dev.id,
                    "role": ROLES.get(dev.role, str(dev.role)),
                    "org": dev.org,
                    "state": state,
                    "place": places.get(dev.id),
                    "last_seen": seen,
                    "upload_interval": interval,
                    "offline_after": None if seen is None else seen + interval + s.offline_grace,
                    "battery_mv": batt,
                    "temp": temp,
                    "queued": queued,
                    "queued_time": queued_time,
                    "gaps": gaps,
                    "records": 0 if ss is None else ss.count,
                    "connected": None if conn is None else conn[0] == "online",
                    "firmware": fw,
                }
            )
        return out

    def checkpoints(self) -> list[dict[str, Any]]:
        anchored = {a.size for a in self.store.recent_anchors(100)}
        return [
            {"size": c.size, "root": c.root.hex(), "time": c.time, "anchored": c.size in anchored}
            for c in self.store.recent_checkpoints(10)
        ]

    def witnesses(self) -> dict[str, Any]:
        """The cosignatures on the latest checkpoint, and the peers this gateway witnesses."""
        from protocol.note import parse_note

        cp = self.store.latest_checkpoint()
        cosigs: list[dict[str, Any]] = []
        if cp is not None:
            try:
                note = parse_note(cp.note)
            except Exception:
                note = None
            for sig in [] if note is None else note.signatures:
                if sig.name == self.cfg.log.origin:
                    continue  # the log's own signature
                when = int.from_bytes(sig.sig[:8], "big") if len(sig.sig) == 72 else None
                cosigs.append({"name": sig.name, "key_id": f"{sig.key_id:08x}", "time": when})
        peers = []
        for peer in self.cfg.witness.peers:
            raw = self.store.get_meta("witness.peer." + peer.origin)
            doc = json.loads(raw) if raw else {}
            peers.append({"origin": peer.origin, "size": doc.get("size"), "time": doc.get("time")})
        return {
            "checkpoint": None if cp is None else cp.size,
            "cosignatures": cosigs,
            "peers": peers,
        }

    def anchors(self) -> list[dict[str, Any]]:
        return [
            {
                "size": a.size,
                "backend": a.backend,
                "time": a.time,
                "index": a.receipt.get("index") if isinstance(a.receipt, dict) else None,
            }
            for a in self.store.recent_anchors(10)
        ]

    def rejects(self) -> list[dict[str, Any]]:
        return [
            {
                "id": r.id,
                "received": r.received,
                "last_seen": r.last_seen,
                "count": r.count,
                "reason": r.reason,
                "signer": r.signer,
                "seq": r.seq,
                "topic": r.topic,
                "detail": r.detail[:200],
            }
            for r in self.store.rejects(limit=20)
        ]

    def in_transit(self) -> list[dict[str, Any]]:
        mark = self.store.scan_mark()
        if self._transit is not None and self._transit[0] == mark:
            return self._transit[1]
        out = self._in_transit()
        self._transit = (mark, out)
        return out

    def _in_transit(self) -> list[dict[str, Any]]:
        out = []
        for uid, action, rec, item in self.store.last_scans():
            if action not in IN_TRANSIT:
                continue
            p = self.payload(rec)
            out.append(
                {
                    "uid": uid.hex(),
                    "item": item,
                    "gtin": _ai(item, "01"),
                    "lot": _ai(item, "10"),
                    "action": ACTIONS.get(action, str(action)),
                    "since": rec.time,
                    "place": getattr(p, "place", None),
                    "ref": getattr(p, "ref", None),
                    "reader": rec.signer,
                }
            )
        out.sort(key=lambda x: (x["lot"] or "", x["item"] or "", x["uid"]))
        return out

    def gateway(self, now: int) -> dict[str, Any]:
        live = json.loads(self.store.get_meta("status") or "{}")
        t = live.get("time")
        if not live:
            state = "unknown"
        elif live.get("stopped"):
            state = "stopped"
        elif t is None or now - int(t) > 30:
            state = "stale"
        else:
            state = "running"
        return {
            "id": self.cfg.id,
            "origin": self.cfg.log.origin,
            "state": state,
            "connected": live.get("connected"),
            "ingest_rate": live.get("ingest_rate"),
            "backlog": live.get("backlog"),
            "tree_size": live.get("tree_size"),
            "status_time": t,
            "alarms": live.get("alarms", []),
        }

    def alerts(self) -> list[dict[str, Any]]:
        out = []
        for a in self.store.alerts(limit=LIMIT, open_only=False):
            e = a["event"]
            out.append(
                {
                    "id": a["id"],
                    "kind": a["kind"],
                    "device": a["device"],
                    "place": a["place"],
                    "start": a["start"],
                    "ended": a["ended"],
                    "raised": a["raised"],
                    "open": a["ended"] is None,
                    "side": e.get("side"),
                    "peak": e.get("peak_centi"),
                    "limit": e.get("limit_centi"),
                    "reason": e.get("reason"),
                    "acked": a["acked"],
                    "acked_by": a["acked_by"],
                    "comment": a["comment"],
                    "escalated": a["escalated"],
                }
            )
        # unacknowledged first, then open, then newest
        out.sort(key=lambda x: (x["acked"] is not None, not x["open"], -x["raised"]))
        return out

    def snapshot(self) -> dict[str, Any]:
        now = int(time.time())
        places = self.places()
        return {
            "now": now,
            "gateway": self.gateway(now),
            "devices": self.devices(now, places),
            "readings": self.readings(),
            "alerts": self.alerts(),
            "audit": self.store.audit_log(limit=20),
            "rejects": self.rejects(),
            "checkpoints": self.checkpoints(),
            "witnesses": self.witnesses(),
            "anchors": self.anchors(),
            "in_transit": self.in_transit(),
        }


def _ai(item: str | None, ai: str) -> str | None:
    """A GS1 Digital Link path's value for application identifier ``ai``."""
    if not item:
        return None
    parts = item.strip("/").split("/")
    for k, v in zip(parts[::2], parts[1::2], strict=False):
        if k == ai:
            return urllib.parse.unquote(v)
    return None


def _default_settings() -> Any:
    from gateway.config import DashboardConfig

    return DashboardConfig()


# --- the web app --------------------------------------------------------------------------


def _session(token: str) -> str:
    return hmac.new(token.encode(), b"coldtrace-dashboard-session", hashlib.sha256).hexdigest()


def _page(name: str, values: dict[str, str], raw: dict[str, str] | None = None) -> str:
    """A template from gateway/static with ``{{key}}`` replaced by HTML-escaped strings
    (``raw``: inserted as they are, e.g. JSON inside a data script element)."""
    import html
    import re

    raw = raw or {}
    text = (STATIC / name).read_text(encoding="utf-8")

    def value(m: Any) -> str:
        key = m.group(1)
        return raw[key] if key in raw else html.escape(values.get(key, ""))

    return re.sub(r"\{\{(\w+)\}\}", value, text)


CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def create_app(
    cfg: GatewayConfig, store: SqlStore | None = None, *, closing: threading.Event | None = None
) -> Any:
    """The ASGI app (FastAPI). ``store``: the gateway store (opened here if None)."""
    try:
        from fastapi import FastAPI, Request
        from fastapi.responses import (
            FileResponse,
            HTMLResponse,
            JSONResponse,
            RedirectResponse,
            Response,
            StreamingResponse,
        )
    except ImportError as exc:  # pragma: no cover - the gateway extra without fastapi
        raise ConfigError(f"[dashboard] needs fastapi and uvicorn: {exc}") from None

    if store is None:
        if cfg.store.url is None and not cfg.db_path.exists():
            raise ConfigError(f"no gateway database at {cfg.db_path} (has the gateway run?)")
        store = open_store(cfg)
    data = DashboardData(cfg, store)
    settings = data.settings
    token = settings.secret()
    cookie_value = None if token is None else _session(token)
    text = strings()
    closing = closing or threading.Event()
    lock = threading.Lock()  # one store user at a time from the worker threads

    async def call(fn: Any, *args: Any, **kw: Any) -> Any:
        def locked() -> Any:
            with lock:
                return fn(*args, **kw)

        return await asyncio.to_thread(locked)

    app = FastAPI(
        title="ColdTrace gateway dashboard", docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.data = data
    app.state.store = store

    def authorised(request: Request) -> bool:
        if token is None:
            return True
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer ") and hmac.compare_digest(
            auth[7:].strip().encode(), token.encode()
        ):
            return True
        got = request.cookies.get(COOKIE, "")
        return bool(got) and hmac.compare_digest(got.encode(), (cookie_value or "").encode())

    def actor(request: Request, given: Any) -> str:
        name = given.strip() if isinstance(given, str) else ""
        via = "token" if request.headers.get("authorization") else "session"
        who = name[:80] if name else "operator"
        return who if token is None else f"{who} ({via})"

    open_paths = {"/login", "/static/style.css", "/healthz"}

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Any:
        path = request.url.path
        if path not in open_paths and not authorised(request):
            if path.startswith("/api/"):
                response: Any = JSONResponse(
                    {"error": "unauthorised"},
                    status_code=401,
                    headers={"WWW-Authenticate": 'Bearer realm="coldtrace"'},
                )
            else:
                response = RedirectResponse("/login", status_code=303)
        elif request.method == "POST" and not _same_origin(request):
            response = JSONResponse({"error": "cross-origin request refused"}, status_code=403)
        else:
            response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        if path.startswith("/api/") or path in ("/", "/login"):
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/healthz")
    async def healthz() -> Any:
        return {"ok": True}

    @app.get("/", response_class=HTMLResponse)
    async def index() -> Any:
        values = dict(text)
        values["auth"] = "" if token is None else "token"
        blob = json.dumps(text).replace("<", "\\u003c")  # no "</script>" inside
        return HTMLResponse(_page("index.html", values, {"strings_json": blob}))

    @app.get("/login", response_class=HTMLResponse)
    async def login_page() -> Any:
        if token is None:
            return RedirectResponse("/", status_code=303)
        return HTMLResponse(_page("login.html", {**text, "error": ""}))

    @app.post("/login")
    async def login(request: Request) -> Any:
        if token is None:
            return RedirectResponse("/", status_code=303)
        form = urllib.parse.parse_qs((await request.body()).decode("utf-8", "replace"))
        given = (form.get("token") or [""])[0]
        if not hmac.compare_digest(given.encode(), token.encode()):
            await asyncio.sleep(0.5)  # a little friction for guessing
            body = _page("login.html", {**text, "error": text["login_failed"]})
            return HTMLResponse(body, status_code=401)
        await call(store.add_audit, "session", "login", "dashboard", "", {})
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            COOKIE,
            cookie_value or "",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
            max_age=12 * 3600,
        )
        return response

    @app.post("/logout")
    async def logout() -> Any:
        response = RedirectResponse("/login" if token else "/", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    @app.get("/static/{name}")
    async def static(name: str) -> Any:
        path = STATIC / name
        if name not in ("app.js", "style.css") or not path.is_file():
            return Response(status_code=404)
        return FileResponse(path, headers={"Cache-Control": "no-cache"})

    @app.get("/api/snapshot")
    async def snapshot() -> Any:
        return await call(data.snapshot)

    @app.get("/api/readings")
    async def readings(after: int = -1, limit: int = LIMIT) -> Any:
        return await call(data.readings, after=after, limit=max(1, min(limit, 500)))

    @app.get("/api/alerts")
    async def alerts() -> Any:
        return await call(data.alerts)

    @app.get("/api/audit")
    async def audit(limit: int = 100, target: str | None = None) -> Any:
        return await call(store.audit_log, limit=max(1, min(limit, 1000)), target=target)

    @app.post("/api/alerts/ack")
    async def acknowledge(request: Request) -> Any:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return JSONResponse({"error": "send application/json"}, status_code=415)
        try:
            body = json.loads(await request.body())
        except ValueError:
            return JSONResponse({"error": "the body is not JSON"}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse({"error": "the body must be an object"}, status_code=400)
        alert_id, comment = body.get("id"), body.get("comment")
        if not isinstance(alert_id, str) or not alert_id:
            return JSONResponse({"error": "id is required"}, status_code=400)
        if not isinstance(comment, str) or not comment.strip() or len(comment) > 2000:
            return JSONResponse({"error": text["ack_comment_required"]}, status_code=400)
        who = actor(request, body.get("by"))
        ok = await call(store.acknowledge_alert, alert_id, who, comment.strip())
        if not ok:
            return JSONResponse({"error": "no such alert"}, status_code=404)
        log.info("alert %s acknowledged by %s", alert_id, who)
        return await call(store.alert, alert_id)

    @app.get("/api/stream")
    async def stream(request: Request, after: int | None = None) -> Any:
        async def events() -> Any:
            last_leaf = after
            if last_leaf is None:
                recent = await call(data.readings, limit=1)
                last_leaf = recent[-1]["leaf"] if recent else -1
            fingerprint: Any = None
            sent_at = 0.0
            yield "retry: 2000\n\n"
            while not closing.is_set():
                if await request.is_disconnected():
                    return
                for r in await call(data.readings, after=last_leaf, limit=200):
                    last_leaf = max(last_leaf, r["leaf"])
                    yield f"id: {r['leaf']}\nevent: reading\ndata: {json.dumps(r)}\n\n"
                fp = await call(store.changes)
                now = time.monotonic()
                if fp != fingerprint or now - sent_at >= SNAPSHOT_EVERY:
                    fingerprint, sent_at = fp, now
                    snap = await call(data.snapshot)
                    yield f"event: snapshot\ndata: {json.dumps(snap)}\n\n"
                await asyncio.sleep(POLL)

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    return app


def _same_origin(request: Any) -> bool:
    origin = request.headers.get("origin")
    if origin is None:  # not a browser's cross-site request (curl, same-origin GET)
        return True
    host = request.headers.get("host", "")
    return urllib.parse.urlsplit(origin).netloc == host


# --- serving ----------------------------------------------------------------------------


class DashboardServer:
    """uvicorn serving the app from a daemon thread; ``port``, ``url``, ``close()``."""

    def __init__(self, cfg: GatewayConfig, *, store: SqlStore | None = None) -> None:
        try:
            import uvicorn
        except ImportError as exc:  # the gateway extra without the web parts
            raise ConfigError(f"[dashboard] needs fastapi and uvicorn: {exc}") from None

        settings = cfg.dashboard if cfg.dashboard is not None else _default_settings()
        self.closing = threading.Event()
        self._own_store = store is None
        self.store = store if store is not None else open_store(cfg)
        self.app = create_app(cfg, self.store, closing=self.closing)
        family = socket.AF_INET6 if _is_v6(settings.host) else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((settings.host, settings.port))
        except OSError as exc:
            self.sock.close()
            raise ConfigError(f"[dashboard] cannot listen on {settings.listen}: {exc}") from None
        self.sock.listen(64)
        self.host = settings.host
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
            proxy_headers=False,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run,
            kwargs={"sockets": [self.sock]},
            name="coldtrace-dashboard",
            daemon=True,
        )
        self.thread.start()
        log.info("dashboard on %s", self.url)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def close(self) -> None:
        self.closing.set()
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()
        if self._own_store:
            self.store.close()


def _is_v6(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).version == 6
    except ValueError:
        return False


def serve_dashboard(cfg: GatewayConfig) -> DashboardServer:
    """Start the dashboard of ``cfg`` (``[dashboard]``) in a thread."""
    return DashboardServer(cfg)


def run_dashboard(cfg: GatewayConfig) -> int:
    """``coldtrace gateway dashboard``: serve until SIGINT/SIGTERM."""
    import signal

    if cfg.store.url is None and not cfg.db_path.exists():
        raise ConfigError(f"no gateway database at {cfg.db_path} (has the gateway run?)")
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    server = DashboardServer(cfg)
    print(f"dashboard on {server.url}", flush=True)
    try:
        done.wait()
    finally:
        server.close()
    return 0
