// ColdTrace gateway dashboard: renders the server's snapshots and live readings
// (server-sent events from /api/stream) and sends acknowledgements. No framework.
"use strict";

const S = JSON.parse(document.getElementById("strings").textContent);
const MAX_READINGS = 50;
let readings = [];          // newest first
let lastNow = Math.floor(Date.now() / 1000);
let ackTarget = null;

// --- helpers -----------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function td(content, attrs) {
  return el("td", attrs || {}, content === null || content === undefined ? "–" : content);
}

function temp(centi) {
  return centi === null || centi === undefined ? "–" : (centi / 100).toFixed(2) + " °C";
}

function volts(mv) {
  return mv === null || mv === undefined ? "–" : (mv / 1000).toFixed(2) + " V";
}

function utc(t) {
  if (!t) return "–";
  return new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19) + "Z";
}

function ago(t) {
  if (!t) return S.never;
  const d = Math.max(0, lastNow - t);
  if (d < 120) return d + " " + S.ago_s;
  if (d < 7200) return Math.floor(d / 60) + " " + S.ago_min;
  return Math.floor(d / 3600) + " " + S.ago_h;
}

function timeCell(t) {
  return td(el("time", { datetime: t ? new Date(t * 1000).toISOString() : null, title: utc(t) }, ago(t)));
}

function fill(name, rows) {
  const table = document.getElementById("t-" + name);
  const body = table.querySelector("tbody");
  // each cell names its column, for the stacked layout of narrow screens
  const heads = [...table.querySelectorAll("thead th")].map((th) => th.textContent);
  for (const row of rows)
    [...row.children].forEach((cell, i) => { if (heads[i]) cell.dataset.label = heads[i]; });
  body.replaceChildren(...rows);
  const empty = document.getElementById("e-" + name);
  if (empty) empty.hidden = rows.length > 0;
  document.getElementById("t-" + name).hidden = rows.length === 0;
}

function toast(text) {
  const t = document.getElementById("toast");
  t.textContent = text;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 4000);
}

// --- sections ------------------------------------------------------------------------

function renderGateway(g) {
  document.getElementById("gw-id").textContent = g.id;
  const state = S["gw_" + g.state] || g.state;
  const parts = [S.gateway + ": " + state];
  if (g.connected !== null && g.connected !== undefined)
    parts.push(g.connected ? S.broker_connected : S.broker_disconnected);
  if (g.tree_size !== null && g.tree_size !== undefined) parts.push(S.tree_size + " " + g.tree_size);
  if (g.ingest_rate !== null && g.ingest_rate !== undefined) parts.push(g.ingest_rate + " " + S.rate);
  if (g.backlog) parts.push(S.backlog + " " + g.backlog);
  const p = document.getElementById("gw-status");
  p.textContent = parts.join(" · ");
  p.className = "gw gw-" + g.state;
}

function renderAlerts(alerts) {
  fill("alerts", alerts.map((a) => {
    let status;
    if (a.acked) {
      status = el("span", { class: "ok" }, S.acknowledged + " " + S.by + " " + a.acked_by,
        el("br"), el("q", {}, a.comment || ""));
    } else {
      status = el("span", { class: "warn" }, S.unacknowledged);
    }
    if (a.escalated) status.append(el("br"), el("span", { class: "tag" }, S.escalated + " " + utc(a.escalated)));
    const what = a.kind + (a.side ? " (" + a.side + ")" : "") + (a.reason ? " · " + a.reason : "");
    const button = a.acked ? null : el("button", {
      type: "button", class: "primary ack", "data-id": a.id,
      "aria-label": S.acknowledge + ": " + a.kind + " " + a.device,
    }, S.acknowledge);
    return el("tr", { class: a.acked ? "" : (a.open ? "alarm" : "pending"), "data-id": a.id },
      td(what), td(a.device), td(a.place), td(utc(a.start)),
      td(a.ended ? utc(a.ended) : el("strong", {}, S.still_open)),
      td(temp(a.peak)), td(status), el("td", {}, button));
  }));
}

function renderDevices(devices) {
  fill("devices", devices.map((d) => {
    const state = el("span", { class: "state st-" + d.state }, S["st_" + d.state] || d.state);
    const info = el("small", {}, S.expected_every + " " + d.upload_interval + " s");
    const queue = (d.queued === null ? "–" : String(d.queued)) + " · " + d.gaps + " " + S.gaps;
    const conn = d.connected === null ? "–" : (d.connected ? S.connected : S.asleep);
    return el("tr", { "data-device": d.id },
      el("th", { scope: "row" }, el("span", {}, d.id, el("br"), el("small", {}, d.role + " · " + d.org + (d.firmware ? " · " + d.firmware : "")))),
      td(el("span", {}, state, el("br"), info)), td(d.place), td(temp(d.temp)),
      td(volts(d.battery_mv)), timeCell(d.last_seen), td(queue), td(conn));
  }));
}

function readingRow(r, fresh) {
  const value = r.fault !== null && r.fault !== undefined ? S.fault + " " + r.fault : temp(r.temp);
  return el("tr", { class: fresh ? "fresh" : "", "data-leaf": String(r.leaf) },
    td(el("time", { datetime: new Date(r.time * 1000).toISOString() }, utc(r.time))),
    td(r.device), td(String(r.ch)), td(value, { class: "num" }), td(r.place), td(volts(r.batt)));
}

function renderReadings(fresh) {
  fill("readings", readings.map((r) => readingRow(r, fresh && fresh.has(r.leaf))));
}

// a reading block's readings share its leaf: i is the reading's index in it
const readingKey = (r) => r.leaf + ":" + (r.i || 0);

function addReadings(list, live) {
  const have = new Set(readings.map(readingKey));
  const fresh = new Set();
  for (const r of list) {
    if (have.has(readingKey(r))) continue;
    readings.push(r);
    if (live) fresh.add(r.leaf);
  }
  readings.sort((a, b) => b.leaf - a.leaf || (b.i || 0) - (a.i || 0));
  readings = readings.slice(0, MAX_READINGS);
  renderReadings(fresh);
}

function renderTransit(items) {
  fill("transit", items.map((x) => el("tr", {},
    td(x.lot), td(el("code", {}, x.item || x.uid)), td(x.action), td(x.place), td(x.ref), timeCell(x.since))));
}

function renderCheckpoints(cps) {
  fill("checkpoints", cps.map((c) => el("tr", {},
    td(String(c.size), { class: "num" }), td(el("code", { title: c.root }, c.root.slice(0, 16) + "…")),
    timeCell(c.time), td(c.anchored ? S.anchored : S.not_anchored))));
}

function renderWitnesses(w) {
  document.getElementById("w-of").textContent = w.checkpoint === null ? "" : S.witnesses_of + " " + w.checkpoint;
  fill("witnesses", w.cosignatures.map((c) => el("tr", {},
    td(c.name), td(el("code", {}, c.key_id)), td(utc(c.time)))));
  const peers = document.getElementById("w-peers");
  peers.replaceChildren(...(w.peers.length ? [el("li", {}, el("strong", {}, S.peers))] : []),
    ...w.peers.map((p) => el("li", {}, p.origin + ": " + (p.size === null || p.size === undefined ? "–" : p.size) + " · " + ago(p.time))));
}

function renderAnchors(anchors) {
  fill("anchors", anchors.map((a) => el("tr", {},
    td(String(a.size), { class: "num" }), td(a.backend), td(a.index === null ? "–" : String(a.index)), timeCell(a.time))));
}

function renderRejects(rejects) {
  fill("rejects", rejects.map((r) => el("tr", {},
    timeCell(r.last_seen || r.received), td(r.reason), td(r.signer ? r.signer + (r.seq === null ? "" : " #" + r.seq) : r.topic),
    td(String(r.count), { class: "num" }), td(r.detail))));
}

function renderAudit(rows) {
  fill("audit", rows.map((a) => el("tr", {},
    td(utc(a.time)), td(a.actor), td(a.action), td(el("code", {}, a.target)), td(a.comment))));
}

function render(snap) {
  lastNow = snap.now;
  renderGateway(snap.gateway);
  renderAlerts(snap.alerts);
  renderDevices(snap.devices);
  addReadings(snap.readings, false);
  renderTransit(snap.in_transit);
  renderCheckpoints(snap.checkpoints);
  renderWitnesses(snap.witnesses);
  renderAnchors(snap.anchors);
  renderRejects(snap.rejects);
  renderAudit(snap.audit);
}

// --- live updates ----------------------------------------------------------------------

function setConn(text, cls) {
  const c = document.getElementById("conn");
  c.textContent = text;
  c.className = "badge " + cls;
}

function connect() {
  const source = new EventSource("/api/stream");
  source.addEventListener("open", () => setConn(S.live, "live"));
  source.addEventListener("snapshot", (e) => render(JSON.parse(e.data)));
  source.addEventListener("reading", (e) => addReadings([JSON.parse(e.data)], true));
  source.addEventListener("error", () => {
    setConn(S.disconnected, "down");
    if (source.readyState === EventSource.CLOSED) {
      // e.g. the session ended: check and go to the login page if so
      fetch("/api/alerts").then((r) => {
        if (r.status === 401) location.href = "/login";
        else setTimeout(connect, 2000);
      }).catch(() => setTimeout(connect, 2000));
    }
  });
}

// --- acknowledge ---------------------------------------------------------------------------

function openAck(id) {
  ackTarget = id;
  const dialog = document.getElementById("ack");
  document.getElementById("ack-what").textContent = id;
  document.getElementById("ack-error").textContent = "";
  document.getElementById("ack-comment").value = "";
  document.getElementById("ack-name").value = localStorage.getItem("ct-ack-name") || "";
  dialog.showModal();
  document.getElementById("ack-comment").focus();
}

async function submitAck(event) {
  event.preventDefault();
  const comment = document.getElementById("ack-comment").value.trim();
  const by = document.getElementById("ack-name").value.trim();
  const error = document.getElementById("ack-error");
  if (!comment) {
    error.textContent = S.ack_comment_required;
    document.getElementById("ack-comment").focus();
    return;
  }
  localStorage.setItem("ct-ack-name", by);
  const r = await fetch("/api/alerts/ack", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ id: ackTarget, comment, by }),
  });
  if (!r.ok) {
    let why = r.statusText;
    try { why = (await r.json()).error || why; } catch (_) { /* keep statusText */ }
    error.textContent = S.ack_failed + why;
    return;
  }
  document.getElementById("ack").close();
  toast(S.ack_done);
  const snap = await fetch("/api/snapshot");
  if (snap.ok) render(await snap.json());
}

document.addEventListener("DOMContentLoaded", () => {
  if (document.body.dataset.auth) document.getElementById("logout").hidden = false;
  document.getElementById("t-alerts").addEventListener("click", (e) => {
    const b = e.target.closest("button.ack");
    if (b) openAck(b.dataset.id);
  });
  document.getElementById("ack-form").addEventListener("submit", submitAck);
  document.getElementById("ack-comment").addEventListener("input", () => {
    document.getElementById("ack-error").textContent = "";
  });
  document.getElementById("ack-cancel").addEventListener("click", () => document.getElementById("ack").close());
  for (const name of ["alerts", "devices", "readings", "transit", "checkpoints", "witnesses", "anchors", "rejects", "audit"])
    fill(name, []);
  connect();
});
