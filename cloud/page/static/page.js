// The consumer page's script. The HTML already holds the facts as the server reports
// them; this fetches the trace bundle, verifies it in a Web Worker (worker.js, with the
// verifier in ./verify/) against the trust pinned in the page, and replaces the server's
// claim with what this device verified: the verdict and its reasons, a panel of what was
// checked (or what failed, naming the record), and a temperature chart per leg.
import { t } from "./strings.js";
import { renderChart, fmtTemp } from "./chart.js";

const $ = (id) => document.getElementById(id);
const el = (tag, attrs = {}, ...kids) => {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") n.className = v;
    else if (k === "text") n.textContent = v;
    else n.setAttribute(k, v);
  }
  for (const k of kids) if (k !== null && k !== undefined) n.append(k);
  return n;
};

const data = JSON.parse($("ct-data").textContent);
const state = { status: "pending", report: null, ms: null, progress: [] };
window.coldtrace = state; // for the browser tests and the curious

// --- formats (docs/protocol.md §12.9) ---------------------------------------------------------
const dtf = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const tf = new Intl.DateTimeFormat(undefined, { timeStyle: "short" });
const df = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });
const fmtTime = (ts) => (ts === null || ts === undefined ? "–" : dtf.format(new Date(ts * 1000)));
function fmtDuration(s) {
  const h = Math.floor(s / 3600), n = Math.floor((s % 3600) / 60), r = s % 60;
  return (h > 0 ? `${h} h ${n} min` : `${n} min`) + (r ? ` ${r} s` : "");
}
const fmtBytes = (n) => (n >= 1e6 ? `${(n / 1e6).toFixed(1)} MB` : `${Math.round(n / 1e3)} kB`);

function localTimes() {
  for (const node of document.querySelectorAll("time[data-ts]")) {
    const ts = Number(node.dataset.ts);
    node.textContent = fmtTime(ts);
    node.title = new Date(ts * 1000).toISOString().replace(".000Z", "Z");
  }
}

// --- the verdict ------------------------------------------------------------------------------
function reasonText(r, profile) {
  const leg = r.leg === null || r.leg === undefined ? null : r.leg + 1;
  const vals = { leg, device: r.device, from: fmtTime(r.from), to: fmtTime(r.to), value: r.value, text: r.text };
  if (r.code === "excursion") {
    return t(`reason.excursion.${r.severity === "fail" ? "fail" : "note"}`, {
      ...vals,
      side_word: t(`reason.side.${r.detail || "high"}`),
      peak: fmtTemp(r.value),
      duration: fmtDuration((r.to || 0) - (r.from || 0)),
      delay: profile && profile.delay !== undefined && profile.delay !== null ? fmtDuration(profile.delay) : "",
    });
  }
  if (r.code === "cumulative") return t("reason.cumulative", { duration: fmtDuration(r.value || 0) });
  if (r.code === "mkt") return t("reason.mkt", { value: fmtTemp(r.value) });
  if (r.code === "wrong_role") { // a scan by a logger, or readings by a reader (§12.1)
    return t(`reason.wrong_role.${r.detail === "reading" ? "reading" : "scan"}`, vals);
  }
  const key = `reason.${r.code}`;
  const text = t(key, vals);
  return text === key ? t("reason.other", vals) : text;
}

function renderVerdict(doc, word) {
  const key = word ? `verdict.${word}` : "verdict.none";
  const body = $("verdict-body");
  body.replaceChildren(
    el("p", { class: "verdict-word", id: "verdict-word", text: t(key) }),
    el("p", { class: "verdict-text", id: "verdict-text", text: t(`${key}.text`) }),
  );
  if (!word) return;
  body.append(el("h3", { class: "reasons-h", text: t("reasons") }));
  const ul = el("ul", { class: "reasons", id: "reasons" });
  for (const r of doc.reasons || []) {
    const sev = r.severity || "note";
    ul.append(
      el(
        "li",
        { class: `reason sev-${sev}` },
        el("span", { class: "sev", text: t(`severity.${sev}`) }),
        ` ${reasonText(r, doc.profile)}`,
        el("details", {}, el("summary", { text: t("reason.technical") }), el("code", { text: r.code }), ` ${r.text || ""}`),
      ),
    );
  }
  if (!ul.children.length) ul.append(el("li", { class: "reason sev-none", text: t("reasons.none") }));
  body.append(ul);
  $("verdict").className = `card verdict v-${word}`;
}

function setSource(kind, extra = {}) {
  const badge = { server: "source.server", device: "source.device", failed: "source.failed", error: "source.error" }[kind];
  $("source-badge").textContent = t(badge);
  for (const b of document.querySelectorAll(".src-badge")) {
    b.textContent = t(badge);
    b.dataset.source = kind;
  }
  $("source-text").textContent = t(`${badge}.text`, extra);
  $("verdict").dataset.source = kind;
  document.body.dataset.verification = kind;
}

// --- the panel of checks ------------------------------------------------------------------------
// which row of the panel a check (its name in the report) belongs to
const GROUPS = [
  ["cosignatures", /^checkpoint\.cosignatures$/],
  ["checkpoints", /^checkpoint\.(signature|consistency)$/],
  ["anchors", /^(anchor|checkpoint\.anchored)/],
  ["proofs", /^record\.inclusion$/],
  ["signatures", /^(record\.(signature|key)|registry\.)/],
  ["chains", /^(chain|statement|subject)/],
];

function group(check) {
  for (const [name, re] of GROUPS) if (re.test(check || "")) return name;
  return "records";
}

function renderChecks(report, counts, ms, bytes) {
  const s = report.summary || {};
  const failures = report.failures || [];
  const failed = {};
  for (const f of failures) failed[group(f.check)] = (failed[group(f.check)] || 0) + 1;
  const passed = {};
  for (const [k, v] of Object.entries(report.passed_counts || {})) passed[group(k)] = (passed[group(k)] || 0) + Number(v);
  const n = (x) => (x === undefined || x === null ? "–" : String(x));
  const rows = [
    ["records", `${n(s.records_verified)} / ${n(s.records ?? counts.records)}`],
    ["signatures", n(passed.signatures)],
    ["proofs", n(counts.proofs ?? passed.proofs)],
    ["checkpoints", n(counts.checkpoints ?? s.checkpoints)],
    ["cosignatures", n(counts.cosignatures)],
    ["anchors", `${n(s.anchored_checkpoints)} / ${n(counts.anchors)}`],
    ["chains", n(passed.chains)],
  ];
  const table = el("table", { class: "checks" });
  table.append(el("caption", { class: "sr", text: t("check") }));
  if ((s.records_verified ?? 0) < (s.records ?? 0)) failed.records = (failed.records || 0) + (s.records - (s.records_verified ?? 0));
  for (const [name, count] of rows) {
    const bad = failed[name] || 0;
    table.append(
      el(
        "tr",
        { class: bad ? "bad" : "ok", "data-check": name },
        el("th", { scope: "row", text: t(`check.${name}`) }),
        el("td", { class: "count", text: count }),
        el("td", { class: "result", text: bad ? `✗ ${t("check.failed", { n: bad })}` : `✓ ${t("check.ok")}` }),
      ),
    );
  }
  const body = $("check-body");
  body.replaceChildren(table);
  if (failures.length) {
    body.append(el("h3", { text: t("check.failures") }));
    const ul = el("ul", { class: "failures", id: "failures" });
    for (const g of groupFailures(failures).slice(0, 30)) {
      if (g.items.length === 1) {
        const f = g.items[0];
        ul.append(el("li", { class: g.first ? "first" : "" }, t("check.failure", { subject: f.subject, message: f.message, code: f.code })));
      } else {
        const subjects = g.items.slice(0, 6).map((f) => f.subject).join(", ") + (g.items.length > 6 ? ", …" : "");
        ul.append(el("li", {}, t("check.failure.many", { n: g.items.length, message: g.items[0].message, code: g.code, subjects })));
      }
    }
    body.append(ul);
  }
  body.append(el("p", { class: "timing", id: "timing", text: t("check.time", { ms: Math.round(ms), bytes: fmtBytes(bytes) }) }));
}

// Failures grouped by (check, code), the ones that name a changed record first: a record
// whose signature fails is the one that was altered; the proofs that include it fail with
// it, for every record they cover.
const FIRST = /^(record\.(signature|format|entry)|registry\.signature|checkpoint\.signature|anchor$)/;
function groupFailures(failures) {
  const groups = new Map();
  for (const f of failures) {
    const key = `${f.check}|${f.code}`;
    if (!groups.has(key)) groups.set(key, { check: f.check, code: f.code, items: [], first: FIRST.test(f.check) });
    groups.get(key).items.push(f);
  }
  return [...groups.values()].sort((a, b) => (b.first - a.first) || (a.items.length - b.items.length));
}

// --- the journey, from the verified document ----------------------------------------------------
// The legs' places, times, readers, loggers and figures as this device verified them; the
// organisations' names stay the server's (which organisation registered which key is the
// cloud's record, pinned in the trust it served).
const PROVENANCE = ["GENUINE", "SUSPECT", "UNCONFIRMED"];

function renderTimeline(doc, serverLegs) {
  const items = document.querySelectorAll("#timeline > li.leg");
  const legs = doc.legs || [];
  items.forEach((li, n) => {
    const leg = legs[n];
    const server = (serverLegs || [])[n] || {};
    if (!leg) return;
    const scan = leg.scan || {};
    const where = [t("leg.at", { place: scan.place ?? "" })];
    if (leg.vehicle && leg.location) where.push(t("leg.into", { location: leg.location }));
    const title = li.querySelector(".leg-title");
    title.replaceChildren(el("span", { class: "sr", text: `${n + 1}. ` }), `${t(`action.${scan.action}`)} ${where.join(" ")}`);
    const meta = li.querySelector(".leg-meta");
    const when = leg.to > leg.from
      ? t("leg.from_to", { from: fmtTime(leg.from), to: fmtTime(leg.to) })
      : t("leg.at_time", { from: fmtTime(leg.from) });
    meta.textContent = (server.organisation ? `${t("leg.by", { org: server.organisation })} · ` : "") + when;
    for (const d of li.querySelectorAll(".leg-detail")) d.remove();
    const devices = [...new Set((leg.monitors || []).map((m) => m.device))].sort();
    const lines = [];
    if (devices.length) {
      lines.push(t("leg.monitored", { devices: devices.join(", ") }));
      if (leg.min !== null && leg.min !== undefined) lines.push(t("leg.stats", { min: fmtTemp(leg.min), max: fmtTemp(leg.max), mean: fmtTemp(leg.mean) }));
    } else if (leg.to > leg.from && !PROVENANCE.includes(doc.verdict)) lines.push(t("leg.unmonitored"));
    let after = meta;
    for (const text of lines) {
      const p = el("p", { class: "leg-detail", text });
      after.after(p);
      after = p;
    }
  });
}

// --- the charts ---------------------------------------------------------------------------------
function renderCharts(doc, readings) {
  const profile = doc.profile || {};
  const legs = doc.legs || [];
  const charts = document.querySelectorAll(".chart[data-leg]");
  charts.forEach((box, n) => {
    const leg = legs.find((l) => String(l.index) === box.dataset.leg);
    box.replaceChildren();
    if (!leg || !leg.monitors || !leg.monitors.length || leg.to <= leg.from) return;
    const series = [];
    // a device whose readings the verdict refused (not registered as a logger, wrong_role)
    const refused = new Set((doc.reasons || [])
      .filter((r) => r.code === "wrong_role" && r.detail === "reading").map((r) => r.device));
    for (const m of leg.monitors) {
      if (refused.has(m.device)) continue;
      const byCh = {};
      for (const [ts, temp, ch] of readings[m.device] || []) {
        if (temp === null || ts < m.from - 1800 || ts > m.to) continue;
        (byCh[ch] ||= []).push([Math.max(ts, m.from), temp]);
      }
      for (const [ch, points] of Object.entries(byCh)) series.push({ label: ch === "0" ? m.device : `${m.device} ch ${ch}`, points });
    }
    const count = series.reduce((a, s) => a + s.points.length, 0);
    if (!count) {
      box.append(el("p", { class: "chart-none", text: t("chart.none") }));
      return;
    }
    const band = profile.low !== undefined || profile.high !== undefined ? bandText(profile) : "";
    const all = series.flatMap((s) => s.points.map((p) => p[1]));
    const id = `c${n}`;
    const title = t("chart.title", { n: n + 1, location: leg.location || "" });
    const desc = t("chart.desc", {
      count, devices: series.map((s) => s.label).join(", "), from: fmtTime(leg.from), to: fmtTime(leg.to),
      min: fmtTemp(Math.min(...all)), max: fmtTemp(Math.max(...all)), band,
    });
    const width = Math.max(280, Math.round(box.getBoundingClientRect().width) || 640);
    const svg = renderChart({
      id, width, height: width < 500 ? 180 : 220, from: leg.from, to: leg.to, low: profile.low ?? null, high: profile.high ?? null, series,
      gap: profile.gap ?? 3600,
      excursions: (doc.excursions || []).filter((e) => e.to > leg.from && e.from < leg.to),
      title, desc, fmtTime: (ts, span) => (span > 36 * 3600 ? df : tf).format(new Date(ts * 1000)),
      labels: { excursion: t("chart.excursion"), allowed: t("chart.allowed") },
    });
    const fig = el("figure", { class: "chart-fig" });
    fig.innerHTML = svg; // built by chart.js from numbers, every text escaped
    fig.append(el("figcaption", { text: desc }));
    box.append(fig);
  });
}

function bandText(p) {
  if (p.low !== null && p.low !== undefined && p.high !== null && p.high !== undefined)
    return t("profile_band", { low: fmtTemp(p.low), high: fmtTemp(p.high) });
  if (p.low !== null && p.low !== undefined) return t("profile_above", { low: fmtTemp(p.low) });
  if (p.high !== null && p.high !== undefined) return t("profile_below", { high: fmtTemp(p.high) });
  return "";
}

// --- the run ------------------------------------------------------------------------------------
function progressUI() {
  const label = el("p", { id: "progress-label", text: t("check.download") });
  const bar = el("progress", { id: "progress", max: "1", "aria-labelledby": "progress-label" });
  $("check").hidden = false;
  $("check-body").replaceChildren(label, bar);
  return {
    set(fraction, stage) {
      state.progress.push({ fraction, stage });
      label.textContent = stage ? t("check.progress.step", { stage }) : t("check.progress");
      if (fraction === null || fraction === undefined) bar.removeAttribute("value");
      else bar.value = fraction;
    },
  };
}

// the tap's result as the provenance verdict's tag input (docs/protocol.md §12.10: a SUN
// message that does not verify, or none at all, is "unauthenticated"); page.py uses the same
const TAG_INPUT = { genuine: "genuine", replayed: "replayed", invalid: "unauthenticated", unknown_tag: "unauthenticated", unauthenticated: "unauthenticated" };

function fail(error) {
  state.status = "error";
  state.error = String(error);
  setSource("error", { error: String(error) });
  $("check-body").replaceChildren(el("p", { class: "error", text: t("source.error.text", { error: String(error) }) }));
}

async function main() {
  localTimes();
  const ui = progressUI();
  let bundle;
  try {
    const r = await fetch(data.bundle, { headers: { Accept: "application/json" } });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    bundle = await r.arrayBuffer();
  } catch (e) {
    fail(e.message || e);
    return;
  }
  ui.set(0, null);
  const trust = new TextEncoder().encode(JSON.stringify(data.trust)).buffer;
  const size = bundle.byteLength;
  let worker;
  try {
    worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
  } catch (e) {
    fail(e.message || e);
    return;
  }
  worker.onerror = (e) => fail(e.message || "worker error");
  worker.onmessage = (ev) => {
    const m = ev.data;
    if (m.type === "progress") ui.set(m.fraction, m.stage);
    else if (m.type === "error") { fail(m.error); worker.terminate(); }
    else if (m.type === "done") {
      worker.terminate();
      done(m.report, m.ms, m.readings || {}, m.counts || {}, m.bytes || size);
    }
  };
  worker.postMessage({ bundle, trust, tag: TAG_INPUT[data.tag.status] || "unauthenticated" }, [bundle, trust]);
}

function done(report, ms, readings, counts, bytes) {
  // the report has the verdict document's members (§13.1); a verifier may also nest it
  const doc = report.verdict && typeof report.verdict === "object" ? report.verdict : report;
  const word = report.verified ? doc.verdict : null;
  state.report = report;
  state.doc = doc;
  state.ms = ms;
  state.verdict = word;
  state.status = report.verified ? "verified" : "failed";
  renderChecks(report, counts, ms, bytes);
  renderVerdict(doc, word);
  const said = data.server.verified && data.server.verdict ? data.server.verdict.verdict : null;
  if (said !== word) {
    // what the server claimed and what this device found differ: say so, plainly
    $("verdict-body").prepend(
      el("p", { class: "differs", id: "differs", text: t("verdict.differs", { server: said ? t(`verdict.${said}`) : t("verdict.none") }) }),
    );
  }
  if (report.verified) {
    setSource("device");
    renderTimeline(doc, data.server.legs);
    renderCharts(doc, readings);
  } else {
    setSource("failed");
    $("verdict").className = "card verdict v-none";
  }
}

main();
