"""The consumer page: what a shopper sees after tapping a product's tag (docs/cloud.md,
"The consumer page").

``GET /01/{gtin}[/10/{lot}][/21/{serial}]?picc=…&cmac=…`` - the GS1 Digital Link of
the item, with the NTAG 424 DNA SUN parameters the tag appends on every tap. The page

1. checks the tap (``cloud.tags.check_tap``: genuine, replayed, invalid, unknown tag
   or unauthenticated) and finds the item's trace;
2. renders the basic facts in the HTML itself - the product, the tag's status, the
   journey, the verdict and its reasons - marked "as reported by the server", so
   they read without JavaScript;
3. pins the cloud's trust document in the page; the page's JavaScript fetches the
   trace bundle (``/v1/public/bundle``), verifies it in a Web Worker with the
   JavaScript verifier (``static/verify/``) against that trust, and replaces the
   server's claim with what this device verified, the temperature charts and a
   panel of what was checked.

All user-facing text is in ``static/strings.js`` (read here too, between its
markers). No template engine: ``templates/page.html`` is a :class:`string.Template`
filled with values escaped here.
"""

from __future__ import annotations

import html
import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path as FilePath
from string import Template
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import HTTPException, Path, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["install", "render_page", "strings"]

log = logging.getLogger("coldtrace.cloud")

HERE = FilePath(__file__).with_name("page")
STATIC = HERE / "static"
TEMPLATES = HERE / "templates"
STATIC_URL = "/page/static"

ACTIONS = {
    1: "commission",
    2: "load",
    3: "unload",
    4: "receive",
    5: "ship",
    6: "sell",
    7: "install",
}
TAG_STATES = ("genuine", "replayed", "invalid", "unknown_tag", "unauthenticated")

# one GS1 AI (10)/(21) value, percent-encoded or not (docs/protocol.md §1)
_VALUE = r"[A-Za-z0-9!\"%&'()*+,\-./:;<=>?_]{1,60}"

Gtin = Annotated[str, Path(pattern=r"^[0-9]{14}$")]
Value = Annotated[str, Path(pattern=f"^{_VALUE}$")]


@cache
def strings(lang: str = "en") -> dict[str, str]:
    """The page's texts, from ``static/strings.js`` (the one place they are kept)."""
    src = (STATIC / "strings.js").read_text(encoding="utf-8")
    m = re.search(r"/\*BEGIN\*/(.*?)/\*END\*/", src, re.S)
    if m is None:
        raise RuntimeError("static/strings.js lacks its /*BEGIN*/ … /*END*/ markers")
    table: dict[str, dict[str, str]] = json.loads(m.group(1))
    return {**table["en"], **table.get(lang, {})}


def t(key: str, **values: Any) -> str:
    """The text for ``key`` with its {placeholders} filled (missing ones left empty)."""
    text = strings().get(key, key)
    return re.sub(r"\{(\w+)\}", lambda m: str(values.get(m.group(1), "") or ""), text)


# --- formats shared with page.js (docs/protocol.md §12.9: C, D, T) ------------------------
def fmt_temp(c: int | None) -> str:
    if c is None:
        return "–"
    sign = "-" if c < 0 else ""
    return f"{sign}{abs(c) // 100}.{abs(c) % 100:02d} °C"


def fmt_duration(s: int) -> str:
    h, n, r = s // 3600, (s % 3600) // 60, s % 60
    out = f"{h} h {n} min" if h > 0 else f"{n} min"
    return out + (f" {r} s" if r else "")


def fmt_time(ts: int | None) -> str:
    if ts is None:
        return "–"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _time(ts: int | None) -> str:
    """A <time> element (page.js rewrites it in the reader's own time zone)."""
    if ts is None:
        return "–"
    iso = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f'<time datetime="{iso}" data-ts="{ts}">{html.escape(fmt_time(ts))}</time>'


# --- the tap -----------------------------------------------------------------------------
@dataclass
class Tap:
    status: str
    uid: bytes | None = None
    counter: int | None = None
    item: str | None = None
    message: str = ""


def check_tap(cloud: Any, params: dict[str, str]) -> Tap:
    """The tag's status for this request (``cloud.tags.check_tap`` when it exists)."""
    try:
        from cloud import tags
    except ImportError:
        tags = None  # type: ignore[assignment]
    if tags is None or not hasattr(tags, "check_tap"):
        msg = "" if "picc" not in params else "tag codes cannot be checked by this cloud"
        return Tap("unauthenticated", message=msg)
    try:
        r = tags.check_tap(cloud, params)
    except Exception:  # a tap that cannot be checked authenticates nothing
        log.exception("checking a tap failed")
        return Tap("invalid", message="the tag's code could not be checked")
    uid = r.uid
    if isinstance(uid, str):
        try:
            uid = bytes.fromhex(uid)
        except ValueError:
            uid = None
    status = str(getattr(r.status, "value", r.status))
    return Tap(
        status if status in TAG_STATES else "invalid",
        uid,
        r.counter,
        r.item,
        r.message or "",
    )


#: The tap's status as the provenance verdict's ``tag`` input (docs/protocol.md §12.10):
#: a SUN message that does not verify under the tag's keys, or none, is "unauthenticated".
TAG_INPUT = {
    "genuine": "genuine",
    "replayed": "replayed",
    "invalid": "unauthenticated",
    "unknown_tag": "unauthenticated",
    "unauthenticated": "unauthenticated",
}
PROVENANCE = ("GENUINE", "SUSPECT", "UNCONFIRMED")
_JUDGED: dict[tuple[str, str], dict[str, Any]] = {}


def with_tap(
    summary: dict[str, Any], trace: Any, trust: dict[str, Any], tap: Tap, rpc: Any = None
) -> dict[str, Any]:
    """The summary with the verdict judged for this tap. The cloud's trace summary is
    judged without a tap (``tag`` unknown); a provenance verdict (§12.10) depends on the
    tag's authentication, so it is judged again, on the same bundle, with the tap's result.
    A cold-chain verdict does not use the tag and is kept."""
    doc = summary.get("verdict") or {}
    if not summary.get("verified") or doc.get("verdict") not in PROVENANCE:
        return summary
    tag = TAG_INPUT.get(tap.status, "unauthenticated")
    key = (trace.etag, tag)
    if key not in _JUDGED:
        from protocol.bundle import loads_bundle
        from protocol.trust import parse_trust
        from protocol.verify import verify_bundle

        report = verify_bundle(
            loads_bundle(trace.bundle_text.encode()), parse_trust(trust), tag=tag, rpc=rpc
        )
        if len(_JUDGED) > 1024:
            _JUDGED.clear()
        _JUDGED[key] = report.verdict_document() if report.verified else doc
    return {**summary, "verdict": _JUDGED[key]}


# --- rendering -----------------------------------------------------------------------------
def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x))


def _json_script(doc: Any) -> str:
    """JSON safe inside <script type="application/json">."""
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _reason_text(r: dict[str, Any], profile: dict[str, Any] | None) -> str:
    code = r.get("code")
    leg = r.get("leg")
    values = {
        "leg": None if leg is None else leg + 1,
        "device": r.get("device"),
        "from": fmt_time(r.get("from")),
        "to": fmt_time(r.get("to")),
        "value": r.get("value"),
        "text": r.get("text"),
    }
    if code == "excursion":
        side = r.get("detail") or "high"
        frm, to = r.get("from") or 0, r.get("to") or 0
        delay = (profile or {}).get("delay")
        return t(
            f"reason.excursion.{'fail' if r.get('severity') == 'fail' else 'note'}",
            side_word=t(f"reason.side.{side}"),
            peak=fmt_temp(r.get("value")),
            duration=fmt_duration(to - frm),
            delay=fmt_duration(delay) if delay is not None else "",
            **{"from": values["from"], "to": values["to"]},
        )
    if code == "cumulative":
        return t("reason.cumulative", duration=fmt_duration(int(r.get("value") or 0)))
    if code == "mkt":
        return t("reason.mkt", value=fmt_temp(r.get("value")))
    if code == "wrong_role":  # a scan by a logger, or readings by a reader (§12.1)
        return t(
            f"reason.wrong_role.{'reading' if r.get('detail') == 'reading' else 'scan'}", **values
        )
    key = f"reason.{code}"
    if key in strings():
        return t(key, **values)
    return t("reason.other", **values)


def _profile_band(p: dict[str, Any] | None) -> str:
    if not p:
        return ""
    low, high = p.get("low"), p.get("high")
    if low is not None and high is not None:
        return t("profile_band", low=fmt_temp(low), high=fmt_temp(high))
    if low is not None:
        return t("profile_above", low=fmt_temp(low))
    return t("profile_below", high=fmt_temp(high))


def _legs_html(summary: dict[str, Any], *, monitored: bool = True) -> str:
    doc = summary.get("verdict") or {}
    stats = {leg["index"]: leg for leg in doc.get("legs") or []}
    out = []
    for n, leg in enumerate(summary.get("legs") or []):
        action = ACTIONS.get(leg.get("action"), str(leg.get("action")))
        start, end = leg.get("start"), leg.get("end")
        when = (
            t("leg.from_to", **{"from": _time(start), "to": _time(end)})
            if end is not None and start is not None and end > start
            else t("leg.at_time", **{"from": _time(start)})
        )
        where = t("leg.at", place=_e(leg.get("place")))
        if leg.get("vehicle") and leg.get("location"):
            where += " " + t("leg.into", location=_e(leg.get("location")))
        by = t("leg.by", org=_e(leg.get("organisation"))) if leg.get("organisation") else ""
        devices = sorted({m["device"] for m in leg.get("monitors") or []})
        s = stats.get(leg.get("index"), {})
        lines = []
        if devices:
            lines.append(_e(t("leg.monitored", devices=", ".join(devices))))
            if s.get("min") is not None:
                lines.append(
                    _e(
                        t(
                            "leg.stats",
                            min=fmt_temp(s["min"]),
                            max=fmt_temp(s["max"]),
                            mean=fmt_temp(s["mean"]),
                        )
                    )
                )
        elif monitored and end is not None and start is not None and end > start:
            lines.append(_e(t("leg.unmonitored")))
        detail = "".join(f'<p class="leg-detail">{x}</p>' for x in lines)
        kind = "vehicle" if leg.get("vehicle") else "place"
        out.append(
            f'<li class="leg leg-{kind}" id="leg-{n}" data-leg="{_e(leg.get("index"))}">'
            f'<span class="leg-n" aria-hidden="true">{n + 1}</span>'
            f'<div class="leg-body"><h3 class="leg-title">'
            f'<span class="sr">{n + 1}. </span>{_e(t("action." + action))} {where}</h3>'
            f'<p class="leg-meta">{by}{" · " if by else ""}{when}</p>{detail}'
            f'<div class="chart" id="chart-{n}" data-leg="{_e(leg.get("index"))}"></div>'
            f"</div></li>"
        )
    return "\n".join(out)


def _verdict_html(summary: dict[str, Any]) -> tuple[str, str]:
    doc = summary.get("verdict") or {}
    word = doc.get("verdict") if summary.get("verified") else None
    key = f"verdict.{word}" if word else "verdict.none"
    reasons = doc.get("reasons") or []
    items = []
    for r in reasons:
        sev = r.get("severity", "note")
        items.append(
            f'<li class="reason sev-{_e(sev)}"><span class="sev">{_e(t("severity." + sev))}</span> '
            f"{_e(_reason_text(r, doc.get('profile')))}"
            f"<details><summary>{_e(t('reason.technical'))}</summary>"
            f"<code>{_e(r.get('code'))}</code> {_e(r.get('text'))}</details></li>"
        )
    if not items and word:
        items.append(f'<li class="reason sev-none">{_e(t("reasons.none"))}</li>')
    body = (
        f'<p class="verdict-word" id="verdict-word">{_e(t(key))}</p>'
        f'<p class="verdict-text" id="verdict-text">{_e(t(key + ".text"))}</p>'
        f'<h3 class="reasons-h">{_e(t("reasons"))}</h3>'
        f'<ul class="reasons" id="reasons">{"".join(items)}</ul>'
    )
    return (word or "none"), body


def names_another(tag_item: str | None, link: str | None) -> bool:
    """Whether ``link`` (a Digital Link, perhaps without lot or serial) names another item
    than ``tag_item``: a GTIN, lot or serial the link gives differs from the tag's."""
    a, b = _item_parts(tag_item), _item_parts(link)
    if a["gtin"] is None or b["gtin"] is None:
        return False
    return any(b[k] is not None and a[k] != b[k] for k in ("gtin", "lot", "serial"))


def _tag_html(tap: Tap, item: str | None, link: str | None = None) -> str:
    status = tap.status
    parts = [
        f'<h2 id="tag-h" class="tag-word">{_e(t("tag." + status))}</h2>',
        f'<p class="tag-text">{_e(t("tag." + status + ".text"))}</p>',
    ]
    # the tag's item against the trace's, and against the link that was opened: a tag's
    # SUN parameters pasted onto another product's link (the path is not under the MAC)
    if tap.item and (
        (item and tap.item != item) or (link and names_another(tap.item, link.split("?")[0]))
    ):
        parts.append(f'<p class="tag-text mismatch">{_e(t("tag.mismatch", item=tap.item))}</p>')
    if tap.message:
        parts.append(
            f'<details class="tag-detail"><summary>{_e(t("reason.technical"))}</summary>'
            f"{_e(tap.message)}</details>"
        )
    return "".join(parts)


def _item_parts(item: str | None) -> dict[str, str | None]:
    from protocol.verdict import parse_item

    p = parse_item(item) if item else None
    if p is None:
        return {"gtin": None, "lot": None, "serial": None}
    return {"gtin": p.gtin, "lot": p.lot, "serial": p.serial}


def render_page(summary: dict[str, Any], trust: dict[str, Any], tap: Tap, dl: str) -> str:
    """The page's HTML for a trace summary (``Trace.summary``) and the trust to pin."""
    item = summary.get("item")
    doc = summary.get("verdict") or {}
    parts = _item_parts(item)
    profile = doc.get("profile")
    rows = [
        (t("gtin"), parts["gtin"]),
        (t("lot"), parts["lot"]),
        (t("serial"), parts["serial"]),
    ]
    band = _profile_band(profile)
    if profile:
        name = profile.get("name")
        rows.append((t("profile"), f"{name} ({band})" if name else band))
    product = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows if v)
    provenance = doc.get("verdict") in PROVENANCE
    if not profile and summary.get("verified"):
        none = t("profile_provenance") if provenance else t("profile_none")
        product += f"<dt>{_e(t('profile'))}</dt><dd>{_e(none)}</dd>"
    word, verdict = _verdict_html(summary)
    # what the cloud awaits is monitoring evidence: a part's origin does not need it
    awaited = [] if provenance else summary.get("awaiting") or []
    awaiting = "".join(
        "<li>"
        + _e(t("awaiting.text", org=a.get("organisation"), until=fmt_time(a.get("need_until"))))
        + "</li>"
        for a in awaited
    )
    bundle_url = f"/v1/public/bundle?dl={quote(item or dl, safe='/')}"
    data = {
        "dl": item or dl,
        "bundle": bundle_url,
        "trust": trust,
        "server": {
            "verified": summary.get("verified"),
            "verdict": doc,
            "legs": summary.get("legs"),
            "awaiting": summary.get("awaiting"),
        },
        "tag": {"status": tap.status, "counter": tap.counter},
        "static": STATIC_URL,
    }
    page = Template((TEMPLATES / "page.html").read_text(encoding="utf-8"))
    return page.substitute(
        lang="en",
        static=STATIC_URL,
        title=_e(t("title")),
        heading=_e(t("title")),
        item=_e(item or dl),
        h_product=_e(t("product")),
        product=product,
        tag_status=_e(tap.status),
        tag=_tag_html(tap, item, dl),
        h_verdict=_e(t("verdict")),
        verdict_class=_e(word),
        verdict=verdict,
        source_badge=_e(t("source.server")),
        source_text=_e(t("source.server.text")),
        nojs=_e(t("source.nojs")),
        h_check=_e(t("check")),
        h_journey=_e(t("journey")),
        legs=_legs_html(summary, monitored=not provenance),
        awaiting_hidden="" if awaiting else " hidden",
        h_awaiting=_e(t("awaiting")),
        awaiting=awaiting,
        bundle_url=_e(bundle_url),
        evidence=_e(t("evidence")),
        evidence_text=_e(t("evidence.text")),
        footer=_e(t("footer")),
        data=_json_script(data),
    )


def render_not_found(dl: str) -> str:
    page = Template((TEMPLATES / "notfound.html").read_text(encoding="utf-8"))
    return page.substitute(
        static=STATIC_URL,
        title=_e(t("notfound")),
        text=_e(t("notfound.text")),
        item=_e(dl),
        footer=_e(t("footer")),
    )


HEADERS = {
    "Cache-Control": "no-store",  # a tap's status is for this tap only
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; worker-src 'self'; connect-src 'self'; "
        "style-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def install(app: Any, cloud: Any, needs: Any, public: Any) -> None:
    """Add the consumer page (the GS1 Digital Link paths) and its static files."""
    app.mount(STATIC_URL, StaticFiles(directory=STATIC), name="page-static")

    def find(dl: str, gtin: str, lot: str | None, serial: str | None) -> bytes:
        """The tag of the item the link names: its commission scan's item exactly, or the
        one item of that GTIN and serial (GS1: GTIN + serial names one item, lot or not)."""
        svc = app.state.traces
        try:
            return bytes(svc.resolve(dl))
        except HTTPException as e:
            if e.status_code != 404 or serial is None:
                raise
            found = svc.items(lot=lot, serial=serial, gtin=gtin)
            if len(found) != 1:
                raise
            return bytes.fromhex(found[0]["uid"])

    def page(request: Request, gtin: str, lot: str | None, serial: str | None) -> HTMLResponse:
        dl = f"/01/{gtin}" + (f"/10/{lot}" if lot else "") + (f"/21/{serial}" if serial else "")
        params = dict(request.query_params)  # check_tap knows SUN's parameter names
        tap = check_tap(cloud, params)
        svc = app.state.traces
        try:
            uid = tap.uid if tap.uid is not None else find(dl, gtin, lot, serial)
            trace = svc.trace(uid)
        except HTTPException as e:
            if e.status_code != 404:
                raise
            return HTMLResponse(render_not_found(dl), status_code=404, headers=HEADERS)
        trust = cloud.trust()
        judged = with_tap(trace.summary, trace, trust, tap, cloud.config.evm_rpc())
        body = render_page(judged, trust, tap, dl)
        return HTMLResponse(body, headers=HEADERS)

    deps = [public]  # rate-limited like the other public endpoints

    @app.get(
        "/01/{gtin}/10/{lot}/21/{serial}",
        tags=["consumers"],
        dependencies=deps,
        response_class=HTMLResponse,
    )
    def page_full(request: Request, gtin: Gtin, lot: Value, serial: Value) -> HTMLResponse:
        """The consumer page of one item (GS1 Digital Link with lot and serial)."""
        return page(request, gtin, lot, serial)

    @app.get(
        "/01/{gtin}/21/{serial}", tags=["consumers"], dependencies=deps, response_class=HTMLResponse
    )
    def page_serial(request: Request, gtin: Gtin, serial: Value) -> HTMLResponse:
        """The consumer page of one item (GS1 Digital Link with a serial)."""
        return page(request, gtin, None, serial)

    @app.get(
        "/01/{gtin}/10/{lot}", tags=["consumers"], dependencies=deps, response_class=HTMLResponse
    )
    def page_lot(request: Request, gtin: Gtin, lot: Value) -> HTMLResponse:
        """The consumer page of a lot's item (the tap's tag names which)."""
        return page(request, gtin, lot, None)

    @app.get("/01/{gtin}", tags=["consumers"], dependencies=deps, response_class=HTMLResponse)
    def page_gtin(request: Request, gtin: Gtin) -> HTMLResponse:
        """The consumer page by GTIN alone (the tap's tag names the item)."""
        return page(request, gtin, None, None)
