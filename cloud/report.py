"""The shipment release report: the PDF a quality manager signs to release or reject a
shipment (docs/cloud.md, "Shipment release report").

:func:`render_report` verifies the trace bundle (docs/protocol.md §11) against the
pinned keys and draws, from the verified evidence only:

- the product (the profile's name, GTIN, lot, serial, tag), the quantity (given,
  or the signed item's GS1 AI 30 count, else a blank to fill in) and the profile;
- the verdict (PASS / FAIL / INCOMPLETE) and its reasons, in the protocol's words;
- the custody chain: each leg's times, place or vehicle, organisation, handover scan
  and where that scan is proven (log, leaf, record hash);
- a temperature chart per leg (reportlab vector graphics; the allowed band shaded,
  the verdict's excursions and every reading outside the band in red; long series
  cut to a min/max envelope, :mod:`cloud.chart`, so no peak is averaged away);
- the statistics per leg and overall - readings, coverage, min, max, mean, MKT,
  time out of range - exactly as the verdict document (§13.1) gives them: nothing
  is computed again here;
- the proof fingerprints: per log its checkpoint (origin, size, root hash), the
  witnesses that cosigned it (name, key id, whether the trust file pins them) and
  its anchor (ledger, index, entry hash);
- the verification URL as text and as a QR code (segno), how to check offline;
- a signature block (release / reject, name, role, date, signature), and on every
  page a footer with the page number, the generation time and the bundle's SHA-256.

**An unverified bundle is refused** (:class:`NotVerified`), as the exports refuse it:
a release report is a form with a signature block, and a form for evidence that
does not verify could be printed, separated from any warning and signed "release".
A quality manager needs to know the evidence failed, not a document to sign:
``coldtrace verify`` (or the API's trace) says which checks failed, and a rejection
is recorded without a report (``POST /v1/traces/{uid}/decision``).

The module also installs the report's endpoints in the cloud (:func:`install`):
``GET /v1/traces/{uid}/report.pdf``, ``POST /v1/traces/{uid}/decision`` and
``GET /v1/traces/{uid}/decisions``.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time
from collections import OrderedDict, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any, Literal
from urllib.parse import parse_qs, quote
from xml.sax.saxutils import escape

from fastapi import Depends, HTTPException, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from reportlab.graphics.shapes import Circle, Drawing, Line, PolyLine, Rect, String
from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas as rl_canvas
from reportlab.platypus import (
    CondPageBreak,
    KeepTogether,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from cloud import chart
from cloud.exports.evidence import Evidence, NotVerifiedError, evidence_from_bytes
from protocol.anchor import EvmReceipt, LocalReceipt
from protocol.checkpoint import checkpoint_hash, parse_checkpoint
from protocol.completeness import DeviceRecords
from protocol.custody import by_signer, dates_of_signers, parse_item, wrong_role
from protocol.errors import VerificationError
from protocol.note import parse_note
from protocol.reasons import fmt_centi, fmt_duration
from protocol.trust import Trust, loads_trust
from protocol.verdict import DEFAULT_GAP
from protocol.verify_cli import safe

__all__ = ["NotVerified", "ReportError", "install", "render_report"]

MEDIA_TYPE = "application/pdf"


class ReportError(Exception):
    """No report was made; the message says why (safe to show). ``code``: a short code."""

    code = "bad_input"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class NotVerified(ReportError):
    """The bundle did not verify: no release report is made (module docstring)."""

    code = "not_verified"

    def __init__(self, err: NotVerifiedError) -> None:
        codes = sorted({c.code or "?" for c in err.report.failures})
        why = (
            f"{len(err.report.failures)} check(s) failed: {', '.join(codes)}"
            if codes
            else "it holds no verifiable record"
        )
        super().__init__(
            f"the bundle is not verified ({why}): no release report is made; do not release "
            "this shipment on this evidence (coldtrace verify lists the failed checks)"
        )
        self.report = err.report


# --- fonts and styles --------------------------------------------------------------------------

_FONT_DIRS = (
    "/usr/share/fonts/truetype/dejavu",
    "/usr/share/fonts/TTF",
    "/usr/share/fonts/dejavu",
    "/usr/local/share/fonts",
    "/Library/Fonts",
)
_fonts_lock = threading.Lock()
_fonts: tuple[str, str, str] | None = None


def _register_fonts() -> tuple[str, str, str]:
    """(regular, bold, mono) font names: DejaVu when installed (wide Unicode coverage),
    else the Vera fonts that ship with reportlab, else the PDF base fonts."""
    global _fonts
    with _fonts_lock:
        if _fonts is not None:
            return _fonts
        for d in _FONT_DIRS:
            files = [os.path.join(d, f"DejaVuSans{s}.ttf") for s in ("", "-Bold", "Mono")]
            if all(os.path.exists(f) for f in files):
                for name, f in zip(("CT-Sans", "CT-Bold", "CT-Mono"), files, strict=True):
                    pdfmetrics.registerFont(TTFont(name, f))
                _fonts = ("CT-Sans", "CT-Bold", "CT-Mono")
                return _fonts
        try:
            pdfmetrics.registerFont(TTFont("CT-Sans", "Vera.ttf"))
            pdfmetrics.registerFont(TTFont("CT-Bold", "VeraBd.ttf"))
            _fonts = ("CT-Sans", "CT-Bold", "Courier")
        except Exception:
            _fonts = ("Helvetica", "Helvetica-Bold", "Courier")
        return _fonts


INK = colors.HexColor("#1a1a1a")
GREY = colors.HexColor("#666666")
RULE = colors.HexColor("#bbbbbb")
BAND = colors.HexColor("#e3f2e1")
RED = colors.HexColor("#c62828")
RED_SOFT = colors.Color(0.85, 0.16, 0.16, alpha=0.14)
VERDICT_COLOURS = {
    "PASS": colors.HexColor("#2e7d32"),
    "FAIL": colors.HexColor("#c62828"),
    "INCOMPLETE": colors.HexColor("#b26a00"),
}
LINE_COLOURS = [colors.HexColor(c) for c in ("#1f5fa8", "#6a3d9a", "#00838f", "#5d4037")]
MEANING = {
    "PASS": "The signed evidence covers the whole trace and the product was kept within its "
    "profile.",
    "FAIL": "The signed evidence shows the product's temperature profile was broken.",
    "INCOMPLETE": "No breach is shown, but the evidence does not cover the whole trace.",
}
SEVERITY = {"fail": "Fail", "incomplete": "Incomplete", "note": "Note"}


class _Styles:
    def __init__(self) -> None:
        sans, bold, mono = _register_fonts()
        self.sans, self.bold, self.mono = sans, bold, mono
        self.body = ParagraphStyle("body", fontName=sans, fontSize=8.6, leading=11, textColor=INK)
        self.small = ParagraphStyle("small", parent=self.body, fontSize=7.4, leading=9.2)
        self.cell = ParagraphStyle("cell", parent=self.body, fontSize=7.8, leading=9.6)
        self.cellb = ParagraphStyle("cellb", parent=self.cell, fontName=bold)
        self.code = ParagraphStyle("code", parent=self.cell, fontName=mono, fontSize=7.2)
        self.title = ParagraphStyle(
            "title", parent=self.body, fontName=bold, fontSize=17, leading=21
        )
        self.h2 = ParagraphStyle(
            "h2",
            parent=self.body,
            fontName=bold,
            fontSize=11,
            leading=14,
            spaceBefore=9,
            spaceAfter=4,
        )
        self.h3 = ParagraphStyle(
            "h3",
            parent=self.body,
            fontName=bold,
            fontSize=9,
            leading=12,
            spaceBefore=6,
            spaceAfter=2,
        )
        self.verdict = ParagraphStyle(
            "verdict",
            parent=self.body,
            fontName=bold,
            fontSize=22,
            leading=26,
            alignment=TA_CENTER,
            textColor=colors.white,
        )
        self.verdict_note = ParagraphStyle(
            "vnote", parent=self.body, fontSize=9, leading=11.5, textColor=colors.white
        )


def _e(value: object, limit: int = 200) -> str:
    """Bundle text for a Paragraph: printable (control characters escaped), cut, and
    XML-escaped (Paragraph reads markup)."""
    return escape(safe("" if value is None else value, limit))


# --- formatting -----------------------------------------------------------------------------


def _when(t: int | None) -> str:
    return "–" if t is None else time.strftime("%Y-%m-%d %H:%M", time.gmtime(t))


def _deg(c: int | None) -> str:
    return "–" if c is None else fmt_centi(c)


def _dur(s: int | None) -> str:
    return "–" if s is None else fmt_duration(s)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _short(h: bytes | str, n: int = 16) -> str:
    """The first ``n`` bytes of a hash in hex, then an ellipsis."""
    text = h.hex() if isinstance(h, bytes) else h
    return text[: 2 * n] + ("…" if len(text) > 2 * n else "")


# --- what the report shows -----------------------------------------------------------------


def _quantity(given: int | str | None, item: str | None) -> tuple[str | None, str]:
    """(quantity, where it comes from): the given one, else a GS1 AI 30 (count) in the
    signed item's query string, else (None, "")."""
    if given is not None and str(given).strip():
        return str(given).strip(), "as entered"
    if item and "?" in item:
        q = parse_qs(item.split("?", 1)[1])
        count = (q.get("30") or [None])[0]
        if count and count.isdigit() and len(count) <= 8:
            return str(int(count)), "GS1 AI 30 in the signed item"
    return None, ""


def _leg_series(ev: Evidence) -> dict[int, dict[str, list[tuple[int, int, int]]]]:
    """Per leg, per device (and channel), the dated readings (start, end, temp) inside the
    device's monitoring intervals in that leg: what the verdict's figures were made of
    (the protocol's own dating, :class:`~protocol.completeness.DeviceRecords`)."""
    verdict = ev.verdict
    profile = ev.document.get("profile") or {}
    gap = profile.get("gap") or DEFAULT_GAP
    signers = by_signer(ev.records)
    dates = dates_of_signers(signers)
    refused = wrong_role(ev.records, dates)  # readings of a device not registered as a logger
    out: dict[int, dict[str, list[tuple[int, int, int]]]] = defaultdict(lambda: defaultdict(list))
    readings: dict[str, list[Any]] = {}  # device -> its dated readings, made once
    for leg in verdict.legs:
        for m in leg.monitors:
            if m.device not in readings:
                recs = signers.get(m.device, [])
                readings[m.device] = DeviceRecords(recs, dates, refused).readings(gap)
            held = readings[m.device]
            channels = {h.channel for h in held}
            for h in held:
                s, e = max(m.start, h.start), min(m.end, h.end)
                if s < e:
                    name = m.device if channels == {0} else f"{m.device} ch{h.channel}"
                    out[leg.leg.index][name].append((s, e, h.temp))
    return {k: {n: sorted(v) for n, v in d.items()} for k, d in out.items()}


def _leg_chart(
    st: _Styles,
    leg: Mapping[str, Any],
    series: Mapping[str, Sequence[tuple[int, int, int]]],
    profile: Mapping[str, Any] | None,
    excursions: Sequence[Mapping[str, Any]],
    width: float,
    height: float = 132,
) -> Drawing:
    """One leg's temperatures: band shaded, excursions and readings outside it in red."""
    d = Drawing(width, height)
    left, right, bottom, top = 40, 8, 16, 16
    pw, ph = width - left - right, height - bottom - top
    t0, t1 = int(leg["from"]), int(leg["to"])
    low = profile.get("low") if profile else None
    high = profile.get("high") if profile else None
    values = [v for s in series.values() for _, _, v in s]
    lo_v = min(values + [x for x in (low, high) if x is not None] or [0])
    hi_v = max(values + [x for x in (low, high) if x is not None] or [800])
    pad = max(50, (hi_v - lo_v) // 10)
    v0, v1 = lo_v - pad, hi_v + pad

    def x(t: int) -> float:
        return left + (t - t0) / max(1, t1 - t0) * pw

    def y(v: int) -> float:
        return bottom + (v - v0) / max(1, v1 - v0) * ph

    d.add(Rect(left, bottom, pw, ph, fillColor=colors.white, strokeColor=RULE, strokeWidth=0.6))
    if low is not None or high is not None:  # the allowed band
        b0 = y(low) if low is not None else bottom
        b1 = y(high) if high is not None else bottom + ph
        d.add(Rect(left, b0, pw, b1 - b0, fillColor=BAND, strokeColor=None))
        for limit in (low, high):
            if limit is not None:
                d.add(
                    Line(
                        left,
                        y(limit),
                        left + pw,
                        y(limit),
                        strokeColor=colors.HexColor("#7cb342"),
                        strokeWidth=0.6,
                        strokeDashArray=[3, 2],
                    )
                )
    for ex in excursions:  # the verdict's excursions, clipped to the leg
        s, e = max(t0, int(ex["from"])), min(t1, int(ex["to"]))
        if s < e:
            d.add(
                Rect(x(s), bottom, max(0.8, x(e) - x(s)), ph, fillColor=RED_SOFT, strokeColor=None)
            )
    for v in chart.value_ticks(v0, v1):
        d.add(
            Line(
                left, y(v), left + pw, y(v), strokeColor=colors.HexColor("#eeeeee"), strokeWidth=0.4
            )
        )
        d.add(
            String(
                left - 3,
                y(v) - 2.5,
                f"{v / 100:g}",
                fontName=st.sans,
                fontSize=6.5,
                textAnchor="end",
                fillColor=GREY,
            )
        )
    d.add(String(4, bottom + ph / 2 - 3, "°C", fontName=st.sans, fontSize=7, fillColor=GREY))
    for t, label in chart.time_ticks(t0, t1, most=max(3, int(pw // 70))):
        d.add(Line(x(t), bottom, x(t), bottom - 2.5, strokeColor=GREY, strokeWidth=0.5))
        d.add(
            String(
                x(t),
                bottom - 10,
                label,
                fontName=st.sans,
                fontSize=6.5,
                textAnchor="middle",
                fillColor=GREY,
            )
        )
    buckets = max(50, int(pw))  # one min/max pair per point of width at most
    legend_x = left
    for i, (name, held) in enumerate(series.items()):
        colour = LINE_COLOURS[i % len(LINE_COLOURS)]
        for run in chart.runs(held):
            pts = chart.envelope(run, t0, t1, buckets)
            if len(pts) > 1:
                flat = [c for t, v in pts for c in (x(t), y(v))]
                d.add(PolyLine(flat, strokeColor=colour, strokeWidth=0.9))
            for t, v in pts:
                outside = (low is not None and v < low) or (high is not None and v > high)
                if outside:
                    d.add(Circle(x(t), y(v), 1.6, fillColor=RED, strokeColor=None))
                elif len(pts) == 1:
                    d.add(Circle(x(t), y(v), 1.2, fillColor=colour, strokeColor=None))
        d.add(
            Line(
                legend_x, height - 9, legend_x + 12, height - 9, strokeColor=colour, strokeWidth=1.2
            )
        )
        label = safe(name, 40)
        d.add(
            String(legend_x + 15, height - 11.5, label, fontName=st.sans, fontSize=7, fillColor=INK)
        )
        legend_x += 22 + pdfmetrics.stringWidth(label, st.sans, 7)
    notes = []
    if low is not None or high is not None:
        notes.append("allowed band shaded")
    notes.append("red: outside the band / excursions")
    d.add(
        String(
            left + pw,
            height - 11.5,
            "; ".join(notes) + " · UTC",
            fontName=st.sans,
            fontSize=6.5,
            textAnchor="end",
            fillColor=GREY,
        )
    )
    if not series:
        d.add(
            String(
                left + pw / 2,
                bottom + ph / 2,
                "no readings in the evidence for this leg",
                fontName=st.sans,
                fontSize=8,
                textAnchor="middle",
                fillColor=GREY,
            )
        )
    return d


def _checkbox(size: float) -> Drawing:
    """An empty tick box (drawn: no font needs a box glyph)."""
    d = Drawing(size, size)
    d.add(
        Rect(0.5, 0.5, size - 1, size - 1, fillColor=colors.white, strokeColor=INK, strokeWidth=0.9)
    )
    return d


def _qr(url: str, size: float) -> Drawing:
    """``url`` as a QR code (segno), drawn as vector squares ``size`` points wide."""
    import segno

    code = segno.make(url, error="m", micro=False)
    matrix = code.matrix
    n = len(matrix) + 8  # a 4-module quiet zone each side
    cell = size / n
    d = Drawing(size, size)
    d.add(Rect(0, 0, size, size, fillColor=colors.white, strokeColor=None))
    for r, row in enumerate(matrix):
        c = 0
        while c < len(row):
            if row[c]:
                start = c
                while c < len(row) and row[c]:
                    c += 1
                d.add(
                    Rect(
                        (start + 4) * cell,
                        size - (r + 5) * cell,
                        (c - start) * cell,
                        cell,
                        fillColor=colors.black,
                        strokeColor=None,
                        strokeWidth=0,
                    )
                )
            else:
                c += 1
    return d


def _fingerprints(ev: Evidence, trust: Trust) -> list[dict[str, Any]]:
    """Per checkpoint in the bundle: origin, size, root, checkpoint hash, cosignatures
    (name, key id, pinned), anchors (kind, ledger, index, entry hash, time)."""
    pinned = {(w.name, w.key_id) for w in trust.witnesses}
    out = []
    for text in ev.bundle.checkpoints:
        note = parse_note(text)
        cp = parse_checkpoint(note.body)
        witnesses = [
            {"name": s.name, "key_id": f"{s.key_id:08x}", "pinned": (s.name, s.key_id) in pinned}
            for s in note.signatures
            if s.name != cp.origin
        ]
        anchors = []
        for a in ev.bundle.anchors:
            if a.log != cp.origin or a.tree_size != cp.size:
                continue
            if a.receipt.get("type") == "local":
                lr = LocalReceipt.from_json(a.receipt)
                anchors.append(
                    {
                        "kind": "local ledger",
                        "ledger": lr.ledger,
                        "index": str(lr.index),
                        "entry": lr.entry_hash().hex(),
                        "time": lr.time,
                    }
                )
            else:
                er = EvmReceipt.from_json(a.receipt)
                anchors.append(
                    {
                        "kind": f"EVM chain {er.chain_id}",
                        "ledger": er.contract,
                        "index": f"block {er.block_number}, log {er.log_index}",
                        "entry": er.tx_hash.removeprefix("0x"),
                        "time": None,
                    }
                )
        out.append(
            {
                "origin": cp.origin,
                "size": cp.size,
                "root": cp.root_hash.hex(),
                "checkpoint_hash": checkpoint_hash(note.body).hex(),
                "witnesses": witnesses,
                "anchors": anchors,
                "records": sum(1 for r in ev.bundle.records if r.log == cp.origin),
            }
        )
    out.sort(key=lambda f: (f["origin"], f["size"]))
    return out


# --- the document -------------------------------------------------------------------------------


class _Numbered(rl_canvas.Canvas):
    """A canvas that writes "page n of N" and the footer once the page count is known."""

    footer: tuple[str, str, str] = ("", "", "")  # fonts set per render (class per render)
    fonts: tuple[str, str] = ("Helvetica", "Courier")

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._pages: list[dict[str, Any]] = []

    def showPage(self) -> None:
        self._pages.append(dict(self.__dict__))
        self._startPage()

    def save(self) -> None:
        total = len(self._pages)
        for state in self._pages:
            self.__dict__.update(state)
            self._draw_footer(total)
            super().showPage()
        super().save()

    def _draw_footer(self, total: int) -> None:
        sans, mono = self.fonts
        left, right = 18 * mm, A4[0] - 18 * mm
        head, generated, digest = self.footer
        self.saveState()
        self.setStrokeColor(RULE)
        self.setLineWidth(0.5)
        self.line(left, 17 * mm, right, 17 * mm)
        self.setFillColor(GREY)
        self.setFont(sans, 7)
        self.drawString(left, 13.5 * mm, head)
        self.drawRightString(right, 13.5 * mm, f"Page {self._pageNumber} of {total}")
        self.drawString(left, 10.2 * mm, generated)
        self.setFont(mono, 6.6)
        self.drawString(left, 7 * mm, f"bundle SHA-256 {digest}")
        if self._pageNumber > 1:  # a running head: a loose page still says what it is
            self.setFont(sans, 7)
            self.drawString(left, A4[1] - 11 * mm, head)
            self.line(left, A4[1] - 12.5 * mm, right, A4[1] - 12.5 * mm)
        self.restoreState()


def render_report(
    bundle_bytes: bytes,
    trust: Trust | bytes,
    *,
    verification_url: str | None,
    quantity: int | str | None = None,
    created: int | None = None,
    organisations: Mapping[int, str | None] | None = None,
    name: str = "bundle.json",
    rpc: Any = None,
) -> bytes:
    """The release report of a trace bundle, as PDF bytes (module docstring).
    ``rpc``: a JSON-RPC call that checks EVM anchors (docs/evm.md), or None.

    ``trust``: a :class:`~protocol.trust.Trust` or a trust file's bytes.
    ``verification_url``: where the trace can be checked (printed and as a QR code);
    None: the report says how to check the bundle offline, and the QR code holds the
    bundle's SHA-256 (``sha256:<hex>``) instead.
    ``quantity``: shown as given; None: the signed item's AI 30, else a blank.
    ``created``: the generation time (Unix seconds; default now); given, the PDF is
    byte-for-byte reproducible. ``organisations``: leg index → organisation name
    (the cloud's); otherwise a leg's organisation is the ``org`` of the handover
    reader's signed registration, when the bundle names one.

    Raises :class:`NotVerified` when the bundle does not verify and
    :class:`ReportError` (``code``: the protocol error code) when it or the trust
    file cannot be read.
    """
    try:
        pinned = trust if isinstance(trust, Trust) else loads_trust(trust)
        ev = evidence_from_bytes(bundle_bytes, pinned, name, rpc=rpc)
    except NotVerifiedError as err:
        raise NotVerified(err) from None
    except VerificationError as err:
        raise ReportError(f"{err.code}: {safe(str(err), 300)}", err.code) from None
    if verification_url is not None and not 1 <= len(verification_url) <= 1000:
        raise ReportError("a verification URL of 1 to 1000 characters is needed")
    return _Builder(ev, pinned, verification_url, quantity, created, organisations).pdf()


class _Builder:
    def __init__(
        self,
        ev: Evidence,
        trust: Trust,
        url: str | None,
        quantity: int | str | None,
        created: int | None,
        organisations: Mapping[int, str | None] | None,
    ) -> None:
        self.ev = ev
        self.trust = trust
        self.url = url
        self.doc = ev.document
        self.subject = self.doc.get("subject") or {}
        self.profile = self.doc.get("profile")
        self.quantity = _quantity(quantity, self.subject.get("item"))
        self.created = int(time.time()) if created is None else int(created)
        self.reproducible = created is not None
        self.organisations = dict(organisations or {})
        self.st = _Styles()
        self.width = A4[0] - 36 * mm

    # the parts, top to bottom
    def pdf(self) -> bytes:
        st = self.st
        verdict = self.doc["verdict"]
        item = self.subject.get("item") or f"tag {self.subject.get('uid')}"
        buf = io.BytesIO()
        doc = SimpleDocTemplate(
            buf,
            pagesize=A4,
            leftMargin=18 * mm,
            rightMargin=18 * mm,
            topMargin=17 * mm,
            bottomMargin=22 * mm,
            title=f"Shipment release report: {safe(item, 120)}",
            author="ColdTrace",
            subject=f"Verdict {verdict}; bundle SHA-256 {self.ev.sha256}",
            creator="ColdTrace cloud.report",
            invariant=1 if self.reproducible else 0,
        )
        head = f"ColdTrace shipment release report · {safe(item, 80)} · verdict {verdict}"
        gen = (
            f"Generated {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(self.created))} UTC "
            "from the verified trace bundle; every figure is the verifier's (docs/protocol.md "
            "§11-§13)."
        )
        canvas_cls = type(
            "_Canvas",
            (_Numbered,),
            {"footer": (head, gen, self.ev.sha256), "fonts": (st.sans, st.mono)},
        )
        story: list[Any] = []
        story += self.header()
        story += self.product()
        story += self.reasons()
        story += self.custody()
        story += self.temperatures()
        story += self.fingerprints()
        story += self.verification()
        story += self.signature()
        doc.build(story, canvasmaker=canvas_cls)
        return buf.getvalue()

    def _table(
        self,
        rows: list[list[Any]],
        widths: Sequence[float],
        *,
        header: bool = True,
        extra: Sequence[Any] = (),
    ) -> Table:
        t = Table(rows, colWidths=list(widths), repeatRows=1 if header else 0)
        style = [
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("LEFTPADDING", (0, 0), (-1, -1), 3),
            ("RIGHTPADDING", (0, 0), (-1, -1), 3),
            ("TOPPADDING", (0, 0), (-1, -1), 2),
            ("BOTTOMPADDING", (0, 0), (-1, -1), 2.5),
            ("LINEBELOW", (0, 0), (-1, -1), 0.3, RULE),
        ]
        if header:
            style += [
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#f0f0f0")),
                ("LINEBELOW", (0, 0), (-1, 0), 0.6, GREY),
            ]
        t.setStyle(TableStyle(style + list(extra)))
        return t

    def header(self) -> list[Any]:
        st = self.st
        verdict = self.doc["verdict"]
        colour = VERDICT_COLOURS.get(verdict, GREY)
        title = Paragraph("Shipment release report", st.title)
        sub = Paragraph(
            "Cold-chain evidence for one shipment, verified against pinned keys. "
            "Sign below to release or reject it.",
            st.small,
        )
        box = Table(
            [
                [
                    Paragraph(escape(verdict), st.verdict),
                    Paragraph(
                        f"<b>Verdict {escape(verdict)}.</b> {escape(MEANING.get(verdict, ''))}",
                        st.verdict_note,
                    ),
                ]
            ],
            colWidths=[48 * mm, self.width - 48 * mm],
        )
        box.setStyle(
            TableStyle(
                [
                    ("BACKGROUND", (0, 0), (-1, -1), colour),
                    ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
                    ("TOPPADDING", (0, 0), (-1, -1), 7),
                    ("BOTTOMPADDING", (0, 0), (-1, -1), 8),
                    ("LEFTPADDING", (0, 0), (-1, -1), 8),
                ]
            )
        )
        return [title, Spacer(1, 2), sub, Spacer(1, 7), box, Spacer(1, 4)]

    def product(self) -> list[Any]:
        st, s, p = self.st, self.subject, self.profile
        q, where = self.quantity
        qty = (
            Paragraph(f"<b>{_e(q)}</b> <font color='#666666'>({escape(where)})</font>", st.cell)
            if q is not None
            else Paragraph(
                "<font color='#999999'>______________________ (fill in: units / cases)</font>",
                st.cell,
            )
        )
        product_name = (p or {}).get("name") or "(no product name in the profile)"
        rows: list[list[Any]] = [
            [Paragraph("Product", st.cellb), Paragraph(f"<b>{_e(product_name)}</b>", st.cell)],
            [Paragraph("GTIN", st.cellb), Paragraph(_e(s.get("gtin") or "–"), st.cell)],
            [Paragraph("Lot", st.cellb), Paragraph(f"<b>{_e(s.get('lot') or '–')}</b>", st.cell)],
            [Paragraph("Serial", st.cellb), Paragraph(_e(s.get("serial") or "–"), st.cell)],
            [Paragraph("Quantity", st.cellb), qty],
            [
                Paragraph("Item", st.cellb),
                Paragraph(_e(s.get("item") or "(no signed item)", 300), st.code),
            ],
            [Paragraph("Tag UID", st.cellb), Paragraph(_e(s.get("uid")), st.code)],
            [
                Paragraph("Commissioned", st.cellb),
                Paragraph(
                    f"{_when(s.get('commissioned'))} UTC at {_e(s.get('place'))}, "
                    f"by reader {_e(s.get('reader'))}",
                    st.cell,
                ),
            ],
            [Paragraph("Profile", st.cellb), Paragraph(self._profile_text(), st.cell)],
        ]
        t = self._table(rows, [30 * mm, self.width - 30 * mm], header=False)
        return [Paragraph("Product", st.h2), t]

    def _profile_text(self) -> str:
        p = self.profile
        if not p:
            return "No temperature profile applies (the verdict cannot be PASS without one)."
        band = []
        if p.get("low") is not None:
            band.append(f"at least {_deg(p['low'])}")
        if p.get("high") is not None:
            band.append(f"at most {_deg(p['high'])}")
        rules = [" and ".join(band) or "no limits", f"alarm after {_dur(p.get('delay'))} outside"]
        if p.get("cumul") is not None:
            rules.append(f"at most {_dur(p['cumul'])} outside in total")
        if p.get("mkt") is not None:
            rules.append(f"MKT at most {_deg(p['mkt'])}")
        rules.append(f"a reading stands for at most {_dur(p.get('gap'))}")
        return (
            f"{escape(', '.join(rules))}. <font color='#666666'>Signed by registry "
            f"{_e(p.get('signer'))}, statement #{p.get('cseq')}.</font>"
        )

    def reasons(self) -> list[Any]:
        st = self.st
        reasons = self.doc.get("reasons") or []
        out: list[Any] = [Paragraph("Why: the verdict's reasons", st.h2)]
        if not reasons:
            out.append(
                Paragraph(
                    "None: the evidence covers every leg of the custody and every reading is "
                    "within the profile.",
                    st.body,
                )
            )
            return out
        order = {"fail": 0, "incomplete": 1, "note": 2}
        rows: list[list[Any]] = []
        marks = []
        for i, r in enumerate(sorted(reasons, key=lambda r: order.get(r["severity"], 3))):
            sev = r["severity"]
            rows.append(
                [
                    Paragraph(f"<b>{escape(SEVERITY.get(sev, sev))}</b>", st.cell),
                    Paragraph(_e(r.get("text"), 400), st.cell),
                ]
            )
            colour = {"fail": RED, "incomplete": VERDICT_COLOURS["INCOMPLETE"]}.get(sev, GREY)
            marks.append(("TEXTCOLOR", (0, i), (0, i), colour))
        shown = rows[:60]
        t = self._table(shown, [22 * mm, self.width - 22 * mm], header=False, extra=marks[:60])
        out.append(t)
        if len(rows) > len(shown):
            out.append(
                Paragraph(f"… and {len(rows) - len(shown)} more (coldtrace verify).", st.small)
            )
        return out

    def _org(self, leg: Any) -> str | None:
        k = leg.leg.index
        if k in self.organisations:
            return self.organisations[k]
        return self.ev.org_of(leg.leg.scan.signer)

    def custody(self) -> list[Any]:
        st = self.st
        rows: list[list[Any]] = [
            [
                Paragraph(h, st.cellb)
                for h in (
                    "#",
                    "From (UTC)",
                    "To (UTC)",
                    "Place / vehicle",
                    "Organisation",
                    "Handover scan (proof)",
                )
            ]
        ]
        for leg, doc in zip(self.ev.verdict.legs, self.doc["legs"], strict=True):
            scan = doc["scan"]
            where = doc["location"] if doc["location"] is not None else "(unknown vehicle)"
            if doc["vehicle"]:
                where = f"vehicle {where}"
            ref = self.ev.proof(leg)
            end = "end of trace" if doc["to"] == doc["from"] else _when(doc["to"])
            org = self._org(leg)
            rows.append(
                [
                    Paragraph(str(doc["index"]), st.cell),
                    Paragraph(_when(doc["from"]), st.cell),
                    Paragraph(end, st.cell),
                    Paragraph(_e(where, 80), st.cell),
                    Paragraph(_e(org) if org else "<font color='#999999'>unknown</font>", st.cell),
                    Paragraph(
                        f"<b>{_e(scan['action'])}</b> by {_e(scan['device'], 40)} "
                        f"#{scan['seq']} at {_e(scan['place'], 60)}<br/>"
                        f"<font color='#666666' size='6.8'>log {_e(ref.log, 80)} "
                        f"leaf {ref.index}, record {ref.sha256[:16]}…</font>",
                        st.cell,
                    ),
                ]
            )
        w = self.width
        t = self._table(rows, [7 * mm, 24 * mm, 24 * mm, 34 * mm, 24 * mm, w - 113 * mm])
        return [CondPageBreak(50 * mm), Paragraph("Custody chain", st.h2), t]

    def temperatures(self) -> list[Any]:
        st = self.st
        series = _leg_series(self.ev)
        excursions = self.doc.get("excursions") or []
        out: list[Any] = [CondPageBreak(80 * mm), Paragraph("Temperatures", st.h2)]
        for doc in self.doc["legs"]:
            if doc["to"] == doc["from"]:
                continue  # the last leg: where the trace ends, no interval
            mine = [x for x in excursions if doc["index"] in x["legs"]]
            where = doc["location"] if doc["location"] is not None else "(unknown vehicle)"
            title = Paragraph(
                f"Leg {doc['index']}: {_e(where, 80)}, {_when(doc['from'])} to {_when(doc['to'])}"
                " UTC",
                st.h3,
            )
            drawing = _leg_chart(
                st, doc, series.get(doc["index"], {}), self.profile, mine, self.width
            )
            stats = Paragraph(
                f"{_count(doc['readings'], 'reading')} covering {_dur(doc['covered'])} of "
                f"{_dur(doc['to'] - doc['from'])}; min {_deg(doc['min'])}, max "
                f"{_deg(doc['max'])}, mean {_deg(doc['mean'])}, MKT {_deg(doc['mkt'])}, "
                f"out of range {_dur(doc['tor'])}.",
                st.small,
            )
            out.append(KeepTogether([title, drawing, stats]))
        out += [Paragraph("Statistics (from the verdict document)", st.h3), self._stats()]
        if excursions:
            out += [Paragraph("Excursions", st.h3), self._excursions(excursions)]
        return out

    def _stats(self) -> Table:
        st = self.st
        head = ["Leg", "Readings", "Covered", "Min", "Max", "Mean", "MKT", "Out of range"]
        rows: list[list[Any]] = [[Paragraph(h, st.cellb) for h in head]]

        def row(label: str, f: Mapping[str, Any], span: int) -> list[Any]:
            return [
                Paragraph(label, st.cell),
                Paragraph(str(f.get("readings", 0)), st.cell),
                Paragraph(f"{_dur(f.get('covered'))} of {_dur(span)}", st.cell),
                *(Paragraph(_deg(f.get(k)), st.cell) for k in ("min", "max", "mean", "mkt")),
                Paragraph(_dur(f.get("tor")), st.cell),
            ]

        for doc in self.doc["legs"]:
            if doc["to"] != doc["from"]:
                rows.append(row(str(doc["index"]), doc, doc["to"] - doc["from"]))
        totals = self.doc.get("totals")
        extra = []
        if totals:
            span = (totals.get("to") or 0) - (totals.get("from") or 0)
            rows.append(row("<b>All</b>", totals, span))
            extra.append(
                ("BACKGROUND", (0, len(rows) - 1), (-1, len(rows) - 1), colors.HexColor("#f6f6f6"))
            )
        w = self.width
        widths = [12 * mm, 17 * mm, 40 * mm, 18 * mm, 18 * mm, 18 * mm, 18 * mm]
        widths.append(w - sum(widths))
        return self._table(rows, widths, extra=extra)

    def _excursions(self, excursions: Sequence[Mapping[str, Any]]) -> Table:
        st = self.st
        head = ["Side", "From (UTC)", "To (UTC)", "Duration", "Peak", "Legs", "Devices", "Alarm"]
        rows: list[list[Any]] = [[Paragraph(h, st.cellb) for h in head]]
        for x in excursions:
            rows.append(
                [
                    Paragraph(escape(str(x["side"])), st.cell),
                    Paragraph(_when(x["from"]), st.cell),
                    Paragraph(_when(x["to"]), st.cell),
                    Paragraph(_dur(x["duration"]), st.cell),
                    Paragraph(_deg(x["peak"]), st.cell),
                    Paragraph(", ".join(str(k) for k in x["legs"]), st.cell),
                    Paragraph(_e(", ".join(x["devices"]), 120), st.cell),
                    Paragraph(
                        "<font color='#c62828'><b>yes</b></font>"
                        if x["alarm"]
                        else "no (within the delay)",
                        st.cell,
                    ),
                ]
            )
        w = self.width
        widths = [12 * mm, 25 * mm, 25 * mm, 20 * mm, 18 * mm, 12 * mm]
        widths += [w - sum(widths) - 26 * mm, 26 * mm]
        return self._table(rows, widths)

    def fingerprints(self) -> list[Any]:
        st = self.st
        out: list[Any] = [
            CondPageBreak(60 * mm),
            Paragraph("Proof fingerprints", st.h2),
            Paragraph(
                "What the evidence rests on, per log: the signed checkpoint (tree size and root "
                "hash, first 16 bytes shown), the witnesses that cosigned it (and whether "
                "the trust file used here pins them) and the ledger entry that anchors it. "
                "Anyone holding the bundle can compare these with the logs, the witnesses "
                "and the ledgers.",
                st.small,
            ),
            Spacer(1, 3),
        ]
        head = ["Log (checkpoint)", "Witness cosignatures", "Anchor"]
        rows: list[list[Any]] = [[Paragraph(h, st.cellb) for h in head]]
        for f in _fingerprints(self.ev, self.trust):
            witnesses = (
                "<br/>".join(
                    f"{_e(w['name'], 80)} <font name='{st.mono}'>{w['key_id']}</font><br/>"
                    f"<font color='#666666' size='6.8'>"
                    + ("pinned: counts for the quorum" if w["pinned"] else "not pinned here")
                    + "</font>"
                    for w in f["witnesses"]
                )
                or "<font color='#999999'>none</font>"
            )
            anchors = (
                "<br/>".join(
                    f"{escape(a['kind'])} {_e(a['ledger'], 100)}, entry {escape(a['index'])}"
                    + (f", {_when(a['time'])} UTC" if a["time"] is not None else "")
                    + f"<br/><font name='{st.mono}' size='6.8'>entry {_short(a['entry'])}</font>"
                    for a in f["anchors"]
                )
                or "<font color='#999999'>none</font>"
            )
            rows.append(
                [
                    Paragraph(
                        f"<b>{_e(f['origin'], 100)}</b><br/>size {f['size']}, "
                        f"{f['records']} records used<br/><font name='{st.mono}' size='6.8'>"
                        f"root {_short(f['root'])}<br/>cp&#160;&#160; "
                        f"{_short(f['checkpoint_hash'])}</font>",
                        st.cell,
                    ),
                    Paragraph(witnesses, st.cell),
                    Paragraph(anchors, st.cell),
                ]
            )
        w = self.width
        out.append(self._table(rows, [62 * mm, 48 * mm, w - 110 * mm]))
        out.append(Spacer(1, 3))
        out.append(
            Paragraph(
                f"Bundle SHA-256: <font name='{st.mono}'>{self.ev.sha256}</font>; "
                f"{len(self.ev.bundle.records)} records, verified "
                f"{self.ev.report.summary.get('records_verified', 0)}; trust quorum "
                f"{self.trust.quorum} witness(es).",
                st.small,
            )
        )
        return out

    def verification(self) -> list[Any]:
        st = self.st
        size = 30 * mm
        text: list[Any] = [Paragraph("Check it yourself", st.h3)]
        if self.url is not None:
            code = self.url
            text += [
                Paragraph(
                    "Scan the code or open the address to see this trace and download its bundle:",
                    st.small,
                ),
                Paragraph(_e(self.url, 1000), st.code),
            ]
        else:
            code = f"sha256:{self.ev.sha256}"
            text += [
                Paragraph(
                    "No verification address was given: the code holds the bundle's SHA-256, to "
                    "compare with the bundle file's (sha256sum):",
                    st.small,
                ),
                Paragraph(escape(code), st.code),
            ]
        text += [
            Spacer(1, 3),
            Paragraph(
                "Offline, with nothing but the bundle and the pinned keys: "
                f"<font name='{st.mono}'>coldtrace verify {_e(self.ev.name, 80)} --trust "
                "trust.json</font> gives the same verdict, and the bundle's SHA-256 must be the "
                "one in the footer.",
                st.small,
            ),
        ]
        t = Table([[_qr(code, size), text]], colWidths=[size + 4 * mm, self.width - size - 4 * mm])
        t.setStyle(
            TableStyle(
                [
                    ("VALIGN", (0, 0), (-1, -1), "TOP"),
                    ("LEFTPADDING", (0, 0), (-1, -1), 0),
                    ("BOX", (0, 0), (-1, -1), 0.5, RULE),
                    ("LEFTPADDING", (1, 0), (1, 0), 4),
                    ("TOPPADDING", (0, 0), (-1, -1), 3),
                ]
            )
        )
        return [Spacer(1, 6), KeepTogether([Paragraph("Verification", st.h2), t])]

    def signature(self) -> list[Any]:
        st = self.st
        verdict = self.doc["verdict"]
        advice = {
            "PASS": "The evidence supports release.",
            "FAIL": "The evidence shows the profile was broken: release only with a documented "
            "deviation (e.g. stability data), and say so in the comments.",
            "INCOMPLETE": "The evidence does not cover the whole trace: release only once the "
            "missing evidence is accounted for, and say how in the comments.",
        }.get(verdict, "")
        w = self.width
        big = ParagraphStyle("dec", parent=st.body, fontSize=11, leading=14)
        label = ParagraphStyle("lab", parent=st.cellb, fontSize=8.6)
        decision = Table(
            [
                [
                    Paragraph("<b>Decision</b>", big),
                    _checkbox(11),
                    Paragraph("<b>Release</b>", big),
                    _checkbox(11),
                    Paragraph("<b>Reject</b>", big),
                ]
            ],
            colWidths=[26 * mm, 7 * mm, 32 * mm, 7 * mm, w - 72 * mm],
            hAlign="LEFT",
        )
        decision.setStyle(
            TableStyle(
                [
                    ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
                    ("LEFTPADDING", (0, 0), (-1, -1), 0),
                    ("TOPPADDING", (0, 0), (-1, -1), 4),
                    ("BOTTOMPADDING", (0, 0), (-1, -1), 4),
                ]
            )
        )
        blank = Paragraph("", st.cell)
        half = w / 2 - 22 * mm
        grid = Table(
            [
                [Paragraph("Name", label), blank, Paragraph("Role", label), blank],
                [Paragraph("Date", label), blank, Paragraph("Signature", label), blank],
                [Paragraph("Comments, deviation reference", label), "", "", ""],
                [blank, "", "", ""],
                [blank, "", "", ""],
            ],
            colWidths=[20 * mm, half, 24 * mm, half],
            rowHeights=[12 * mm, 12 * mm, 9 * mm, 9 * mm, 9 * mm],
            hAlign="LEFT",
        )
        grid.setStyle(
            TableStyle(
                [
                    ("VALIGN", (0, 0), (-1, -1), "BOTTOM"),
                    ("LEFTPADDING", (0, 0), (-1, -1), 0),
                    ("LEFTPADDING", (2, 0), (2, 1), 8),
                    ("LINEBELOW", (1, 0), (1, 1), 0.7, INK),
                    ("LINEBELOW", (3, 0), (3, 1), 0.7, INK),
                    ("SPAN", (0, 2), (-1, 2)),
                    ("SPAN", (0, 3), (-1, 3)),
                    ("SPAN", (0, 4), (-1, 4)),
                    ("LINEBELOW", (0, 3), (-1, 4), 0.5, GREY),
                ]
            )
        )
        comments: list[Any] = []
        body = [
            Paragraph("Release decision", st.h2),
            Paragraph(
                f"Verdict <b>{escape(verdict)}</b>. {escape(advice)} Tick one box, then sign. "
                "A decision can also be recorded in ColdTrace "
                f"(POST /v1/traces/{_e(self.subject.get('uid'))}/decision), tied to this "
                "bundle's SHA-256.",
                st.small,
            ),
            Spacer(1, 4),
            decision,
            grid,
            *comments,
        ]
        return [Spacer(1, 4), KeepTogether(body)]


# --- the cloud's endpoints ----------------------------------------------------------------------


class DecisionIn(BaseModel):
    """A release or reject decision on a trace, by a named person."""

    decision: Literal["release", "reject"]
    comment: str = Field(default="", max_length=2000)
    name: str = Field(min_length=1, max_length=128)


def _verification_url(app: Any, base: str, uid: str, item: str | None) -> str:
    """Where a reader of the report checks the trace: the item's GS1 Digital Link on this
    host when the cloud serves a page there (the consumer page), else the item's public
    trace, else (no signed item) the organisation's trace."""
    from starlette.routing import Match

    base = base.rstrip("/")
    if not item:
        return f"{base}/v1/traces/{uid}"
    path = quote(item, safe="/")
    if parse_item(item) is not None:
        scope = {"type": "http", "path": path, "method": "GET"}
        if any(route.matches(scope)[0] == Match.FULL for route in app.routes):
            return base + path
    return f"{base}/v1/public/trace?dl={path}"


def install(app: Any, cloud: Any, needs: Any, public: Any) -> None:
    """Add the report's endpoints: the PDF, and recording and listing decisions."""
    from sqlalchemy import and_, select

    from cloud import db, orgs
    from protocol.trust import parse_trust

    reader = Depends(needs("read"))
    cache: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
    lock = threading.Lock()

    UidPath = Path(min_length=8, max_length=20, pattern=r"^[0-9a-fA-F]+$")

    def visible_trace(uid: str, who: Any) -> Any:
        """The trace, under the rule of the trace endpoints (cloud/traces.py): an
        organisation whose logs scanned the item, or the operator; 404 for others."""
        if len(uid) not in (8, 14, 20):
            raise HTTPException(
                422, {"error": "bad_uid", "message": "a tag UID is 8, 14 or 20 hex digits"}
            )
        return app.state.visible_trace(who, bytes.fromhex(uid))

    @app.get(
        "/v1/traces/{uid}/report.pdf",
        tags=["traces"],
        response_class=Response,
        responses={200: {"content": {MEDIA_TYPE: {}}}, 404: {}, 422: {}},
    )
    def report_pdf(
        request: Request,
        uid: str = UidPath,
        who: Any = reader,
        quantity: int | None = Query(default=None, ge=1, le=10**9),
    ) -> Response:
        """The shipment release report (PDF) of the verified trace: product, custody,
        temperatures per leg, verdict and reasons, proof fingerprints, a verification
        QR code and a signature block. 422 when the trace does not verify."""
        t = visible_trace(uid, who)
        url = _verification_url(app, str(request.base_url), uid.lower(), t.item)
        key = (t.etag, url, quantity)
        with lock:
            pdf = cache.get(key)
        if pdf is None:
            legs = t.summary.get("legs") or []
            organisations = {leg["index"]: leg.get("organisation") for leg in legs}
            try:
                pdf = render_report(
                    t.bundle_text.encode(),
                    parse_trust(cloud.trust()),
                    verification_url=url,
                    quantity=quantity,
                    organisations=organisations,
                    name=f"coldtrace-{uid.lower()}.bundle.json",
                )
            except ReportError as e:
                raise HTTPException(422, {"error": e.code, "message": str(e)}) from None
            with lock:
                cache[key] = pdf
                while len(cache) > 32:
                    cache.popitem(last=False)
        name = f"coldtrace-{uid.lower()}-release-report.pdf"
        return Response(
            pdf,
            media_type=MEDIA_TYPE,
            headers={"Content-Disposition": f'inline; filename="{name}"', "ETag": t.etag},
        )

    def _decision_row(row: Any, org: str | None) -> dict[str, Any]:
        import json

        detail = json.loads(row.detail)
        return {
            "id": row.id,
            "uid": row.target,
            "time": row.time,
            "organisation": org,
            "token_id": row.token_id,
            **{
                k: detail.get(k)
                for k in ("decision", "name", "comment", "item", "verdict", "bundle_sha256")
            },
        }

    @app.post("/v1/traces/{uid}/decision", tags=["traces"], status_code=201)
    def decide(body: DecisionIn, uid: str = UidPath, who: Any = reader) -> dict[str, Any]:
        """Record a release or reject decision for the trace in the audit log, tied to
        the evidence it was made on (the bundle's SHA-256 and its verdict)."""
        t = visible_trace(uid, who)
        summary = t.summary
        verdict = (summary.get("verdict") or {}).get("verdict")
        target = uid.lower()
        with cloud.engine.begin() as conn:
            orgs.audit(
                conn,
                who,
                "trace.decision",
                target,
                decision=body.decision,
                name=body.name,
                comment=body.comment,
                item=t.item,
                verdict=verdict if summary.get("verified") else "NOT VERIFIED",
                bundle_sha256=hashlib.sha256(t.bundle_text.encode()).hexdigest(),
            )
            row = conn.execute(
                select(db.audit)
                .where(
                    and_(
                        db.audit.c.action == "trace.decision",
                        db.audit.c.target == target,
                        db.audit.c.token_id == who.token_id,
                    )
                )
                .order_by(db.audit.c.id.desc())
                .limit(1)
            ).one()
        return _decision_row(row, who.org)

    @app.get("/v1/traces/{uid}/decisions", tags=["traces"])
    def decisions(uid: str = UidPath, who: Any = reader) -> list[dict[str, Any]]:
        """The release and reject decisions recorded for the trace, newest first: the
        organisation's own (the operator: everyone's)."""
        visible_trace(uid, who)
        q = (
            select(db.audit, db.orgs.c.name.label("org"))
            .join(db.orgs, db.orgs.c.id == db.audit.c.org_id, isouter=True)
            .where(and_(db.audit.c.action == "trace.decision", db.audit.c.target == uid.lower()))
            .order_by(db.audit.c.id.desc())
            .limit(1000)
        )
        if not who.operator:
            q = q.where(db.audit.c.org_id == who.org_id)
        with cloud.engine.connect() as conn:
            return [_decision_row(r, r.org) for r in conn.execute(q)]

    _ = public
