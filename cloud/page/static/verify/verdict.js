// The verdict: PASS, FAIL or INCOMPLETE over verified records (docs/protocol.md §12, §13.1), or
// for a product without a profile the provenance verdict GENUINE, SUSPECT or UNCONFIRMED (§12.10).
//
// A second implementation of protocol/verdict.py (and custody.py, chainstate.py,
// completeness.py, reasons.py, analytics.py, provenance.py) for the consumer page. ES module, no
// dependencies, no build step; runs in a browser Web Worker and under Node 20.
//
//   import { judge } from "./verdict.js";
//   const doc = judge(records, trust, uid, tag);  // SYNCHRONOUS: the document, not a Promise
//
// records: the verified, de-duplicated records (§11 step 14), each
//          {raw: Uint8Array, signer: string, payload: {...}} with the payload's fields named as
//          protocol/record.py's classes (kind, boot, seq, time, tq, prev and the kind's own),
//          absent optional fields null (or undefined), byte strings as Uint8Array, integers as
//          numbers. Their order does not matter, nor do repeats (§12.1).
// trust:   an object with placeAuthority(place) and gtinAuthority(gtin), each giving the id of
//          the registry that speaks for it (§10) or null. Nothing else of it is used.
// uid:     the bundle's subject.uid, a Uint8Array.
// tag:     optional, the tag's authentication at the tap (§12.10): "genuine", "replayed",
//          "unauthenticated" or "unknown" (the default); only the provenance verdict uses it.
//
// The result is the verdict document of §13.1 ({verified: true, verdict, reasons, subject,
// profile, legs, excursions, totals}, plus `provenance` for a provenance verdict), equal after
// JSON to Python's Report.verdict_document() of a verified bundle. chain_hash (§4) is computed
// with a synchronous SHA-256 (verdict_math.js), so nothing here awaits. Nothing here checks a
// signature, a proof or a chain link, and odd evidence is a reason, never an exception (a `tag`
// outside the four values is a RangeError).
//
// Files: verdict.js (§12.2-§12.7, §13.1), verdict_math.js (SHA-256, §12.7 rounding, §12.8
// dexp/dlog/MKT in binary64), verdict_reasons.js (§12.9/§12.10 reasons, texts, order, T/C/D),
// verdict_provenance.js (§12.10). Tests: tests/page/verdict.test.mjs (node --test).

import {
  chainHash,
  meanCenti,
  mktCenti,
  roundDiv,
} from "./verdict_math.js";
import { applies, judgeProvenance, TAG_VALUES } from "./verdict_provenance.js";
import * as why from "./verdict_reasons.js";
import { cmpNum, cmpStr, reasonCompare, verdictOf } from "./verdict_reasons.js";

/** How long a reading may stand for without a profile (§12.6 step 3), s. */
export const DEFAULT_GAP = 3600;

const KIND_READING = 1;
const KIND_SCAN = 2;
const KIND_STATUS = 3;
const KIND_REGISTRATION = 4;
const KIND_BINDING = 5;
const KIND_PROFILE = 6;
const KIND_BLOCK = 7;
const ACTION_COMMISSION = 1;
const ACTION_LOAD = 2;
const ACTION_UNLOAD = 3;
const ACTION_RECEIVE = 4;
const ACTION_SHIP = 5;
const ACTION_SELL = 6;
const ACTION_INSTALL = 7;
const EVENT_CLOCK_SET = 6;
const ROLE_LOGGER = 1;
const ROLE_READER = 2;
export const ACTION_NAMES = {
  1: "commission", 2: "load", 3: "unload", 4: "receive", 5: "ship", 6: "sell", 7: "install",
};
/** The actions that close an item's life (§2.3): every later scan is a contradiction. */
export const CLOSING = { [ACTION_SELL]: "after_sale", [ACTION_INSTALL]: "after_install" };
const HIGH = "high";
const LOW = "low";

// --- small helpers ------------------------------------------------------------------------------

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/** Lowercase hex of a Uint8Array; hex strings compare (<) as the bytes do. */
export function toHex(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += HEX[bytes[i]];
  return s;
}

function nil(v) {
  return v === null || v === undefined;
}

function opt(v) {
  return v === undefined ? null : v;
}

/** Index of the first element > x in a sorted number array (Python's bisect_right). */
function bisectRight(arr, x) {
  let lo = 0, hi = arr.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (x < arr[mid]) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/** Index of the first element >= x in a sorted number array (Python's bisect_left). */
function bisectLeft(arr, x) {
  let lo = 0, hi = arr.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (arr[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** bisect_right over sorted [s, e] pairs for the pair [x, y] (tuple order). */
function bisectRightPair(arr, x, y) {
  let lo = 0, hi = arr.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    const [s, e] = arr[mid];
    if (x < s || (x === s && y < e)) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

function cmpPair(a, b) {
  return cmpNum(a[0], b[0]) || cmpNum(a[1], b[1]);
}

/** The union as sorted, disjoint, non-touching, non-empty intervals. */
export function union(intervals) {
  const out = [];
  for (const [s, e] of [...intervals].sort(cmpPair)) {
    if (e <= s) continue;
    const last = out[out.length - 1];
    if (last && s <= last[1]) {
      if (e > last[1]) last[1] = e;
    } else out.push([s, e]);
  }
  return out;
}

/** The maximal parts of [x, y) outside `covered` (a union() result). */
export function subtract(x, y, covered) {
  const out = [];
  let i = Math.max(bisectRightPair(covered, x, x) - 1, 0);
  let at = x;
  while (i < covered.length && covered[i][0] < y) {
    const [s, e] = covered[i];
    if (e > at) {
      if (s > at) out.push([at, s]);
      at = e;
    }
    i++;
  }
  if (at < y) out.push([at, y]);
  return out;
}

/** A binary min-heap of numbers. */
class MinHeap {
  constructor() {
    this.a = [];
  }
  get size() {
    return this.a.length;
  }
  top() {
    return this.a[0];
  }
  push(v) {
    const a = this.a;
    a.push(v);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (a[p] <= v) break;
      a[i] = a[p];
      i = p;
    }
    a[i] = v;
  }
  pop() {
    const a = this.a;
    const top = a[0];
    const last = a.pop();
    if (a.length) {
      let i = 0;
      const n = a.length;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        const c = r < n && a[r] < a[l] ? r : l;
        if (a[c] >= last) break;
        a[i] = a[c];
        i = c;
      }
      a[i] = last;
    }
    return top;
  }
}

// --- records ------------------------------------------------------------------------------------

// Internally a record is {raw, hex, signer, p} (p its payload).
function wrap(r) {
  return { raw: r.raw, hex: toHex(r.raw), signer: r.signer, p: r.payload };
}

/** Each signer's records in seq order, one per seq (the lowest bytes); signers in byte order. */
function bySigner(records) {
  const groups = new Map(); // signer -> seq -> record
  for (const r of records) {
    let g = groups.get(r.signer);
    if (g === undefined) groups.set(r.signer, (g = new Map()));
    const have = g.get(r.p.seq);
    if (have === undefined || r.hex < have.hex) g.set(r.p.seq, r); // a repeat or a fork
  }
  const out = new Map();
  for (const signer of [...groups.keys()].sort(cmpStr)) {
    const g = groups.get(signer);
    out.set(signer, [...g.keys()].sort(cmpNum).map((seq) => g.get(seq)));
  }
  return out;
}

// --- §12.2 dates ---------------------------------------------------------------------------------

function clockDate(boot, time, c) {
  const cp = c ? c.p : null;
  if (!cp || cp.kind !== KIND_STATUS || nil(cp.detail) || cp.boot !== boot || time > cp.detail) {
    return null;
  }
  const date = time + cp.time - cp.detail;
  return date >= 0 ? date : null;
}

function datesOf(recs, dates) {
  let below = null;
  let aboveSeq = -1;
  for (let i = recs.length - 1; i >= 0; i--) {
    const r = recs[i];
    const p = r.p;
    const c = p.seq + 1 === aboveSeq ? below : null;
    if (p.tq >= 1) {
      dates.set(r.hex, p.time);
      const clockSet = p.kind === KIND_STATUS && p.event === EVENT_CLOCK_SET;
      below = clockSet && !nil(p.detail) ? r : null;
    } else {
      // a block is dated only if its last reading was taken before the clock set (§12.2)
      const end = p.kind === KIND_BLOCK ? endTime(p) : p.time;
      const date = clockDate(p.boot, end, c);
      const first = date === null ? null : date - (end - p.time);
      dates.set(r.hex, first !== null && first >= 0 ? first : null);
      below = c;
    }
    aboveSeq = p.seq;
  }
}

function datesOfSigners(groups) {
  const dates = new Map();
  for (const recs of groups.values()) datesOf(recs, dates);
  return dates;
}

function dateOf(dates, r) {
  const d = dates.get(r.hex);
  return d === undefined ? null : d;
}

// --- reading blocks (§2.8) -----------------------------------------------------------------------

/** A block's last reading time, time + (N − 1) × ivl. */
function endTime(p) {
  return p.time + (p.temps.length / 2 - 1) * p.ivl;
}

/** A record's last date (§12.2): its date, or a block's end date. */
function lastDate(r, d) {
  return d === null || r.p.kind !== KIND_BLOCK ? d : d + (r.p.temps.length / 2 - 1) * r.p.ivl;
}

/** The temperature of each reading of a kind-1 record or a block; null when faulted. */
function readingTemps(p) {
  if (p.kind === KIND_READING) return [nil(p.temp) ? null : p.temp];
  const out = [];
  for (let k = 0; k < p.temps.length; k += 2) {
    out.push(p.temps[k] === 0x80 ? null : (((p.temps[k] << 8) | p.temps[k + 1]) << 16) >> 16);
  }
  return out;
}

const isReading = (p) => p.kind === KIND_READING || p.kind === KIND_BLOCK;

// --- §12.1 roles ---------------------------------------------------------------------------------

/**
 * The keys of the scans whose role is not reader and of the readings and blocks whose role is not
 * logger (§12.1 "Roles"): evidence the verdict does not use. `items` are {key, signer, p, date}
 * (p the payload, date the record's §12.2 date or null), every record once; the registrations
 * among them give the roles. A record's role is its signer's registration in force at its date:
 * the highest seq with time ≤ date, else (undated, or dated before them all) the lowest seq. A
 * device with no registration among them (pinned directly) is refused nothing.
 */
export function wrongRole(items) {
  const regs = new Map(); // device -> [[seq, time, role]]
  for (const r of items) {
    if (r.p.kind !== KIND_REGISTRATION) continue;
    if (!regs.has(r.p.device)) regs.set(r.p.device, []);
    regs.get(r.p.device).push([r.p.seq, r.p.time, r.p.role]);
  }
  for (const held of regs.values()) {
    held.sort((a, b) => cmpNum(a[0], b[0]) || cmpNum(a[1], b[1]) || cmpNum(a[2], b[2]));
  }
  const refused = new Set();
  for (const r of items) {
    let want;
    if (r.p.kind === KIND_SCAN) want = ROLE_READER;
    else if (isReading(r.p)) want = ROLE_LOGGER;
    else continue;
    const held = regs.get(r.signer);
    if (!held || !held.length) continue;
    let role = held[0][2];
    if (r.date !== null) {
      for (const [, time, inForce] of held) if (time <= r.date) role = inForce;
    }
    if (role !== want) refused.add(r.key);
  }
  return refused;
}

/** wrongRole over wrapped records dated by `dates`: a Set of record hex strings. */
function refusedOf(records, dates) {
  const unique = new Map();
  for (const r of records) unique.set(r.hex, r);
  return wrongRole([...unique.values()].map((r) =>
    ({ key: r.hex, signer: r.signer, p: r.p, date: dateOf(dates, r) })));
}

// --- §1 the item ------------------------------------------------------------------------------------

const PCHAR = "(?:[A-Za-z0-9\\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})+";
const DIGITAL_LINK = new RegExp(`^/01/([0-9]{14})(?:/10/(${PCHAR}))?(?:/21/(${PCHAR}))?$`);
const CSET82 = /^[!"%&'()*+,\-./0-9:;<=>?A-Z_a-z]{1,20}$/;

/** Parse /01/{gtin}[/10/{lot}][/21/{serial}] exactly: {gtin, lot, serial} or null. */
export function parseItem(item) {
  const m = DIGITAL_LINK.exec(item);
  if (m === null) return null;
  const parts = [];
  for (const raw of [m[2], m[3]]) {
    if (raw === undefined) {
      parts.push(null);
      continue;
    }
    let textOut = "";
    for (let i = 0; i < raw.length; i++) {
      let code = raw.charCodeAt(i);
      if (raw[i] === "%") {
        code = parseInt(raw.slice(i + 1, i + 3), 16);
        i += 2;
      }
      if (code > 0x7f) return null; // not ASCII
      textOut += String.fromCharCode(code);
    }
    if (!CSET82.test(textOut)) return null;
    parts.push(textOut);
  }
  return { gtin: m[1], lot: parts[0], serial: parts[1] };
}

// --- §12.3 custody ---------------------------------------------------------------------------------

function action(r) {
  return r.p.kind === KIND_SCAN ? r.p.action : 0;
}

function legScanJson(leg) {
  const p = leg.scan.p;
  return {
    device: leg.scan.signer,
    seq: p.seq,
    action: ACTION_NAMES[p.action],
    place: p.place,
    ref: opt(p.ref),
  };
}

function custody(records, dates, uid) {
  const uidHex = toHex(uid);
  const reasons = [];
  const dated = [];
  const refused = refusedOf(records, dates);
  const mine = new Map();
  for (const r of records) {
    if (r.p.kind === KIND_SCAN && r.p.uid && toHex(r.p.uid) === uidHex) mine.set(r.hex, r);
  }
  for (const raw of [...mine.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))) {
    const r = mine.get(raw);
    const date = dateOf(dates, r);
    if (refused.has(raw)) reasons.push(why.wrongRoleScan(r.signer, r.p.seq, date));
    else if (date === null) reasons.push(why.undatedScan(r.signer, r.p.seq));
    else dated.push([date, r.signer, r.p.seq, r]);
  }
  dated.sort((a, b) => cmpNum(a[0], b[0]) || cmpStr(a[1], b[1]) || cmpNum(a[2], b[2]));
  const first = dated.findIndex((e) => action(e[3]) === ACTION_COMMISSION);
  if (first < 0) {
    reasons.push(why.noCommission(uidHex));
    reasons.sort(reasonCompare);
    return { commission: null, legs: [], reasons, unlinked: [], refused };
  }
  for (const [date, , seq, r] of dated.slice(0, first)) {
    reasons.push(why.custodyConflict(r.signer, seq, date, "before_commission"));
  }
  const kept = dated.slice(first);
  const legs = kept.map(([date, , , r], k) => {
    const load = action(r) === ACTION_LOAD;
    const end = k + 1 < kept.length ? kept[k + 1][0] : date;
    return {
      index: k, scan: r, start: date, end,
      location: load ? opt(r.p.ref) : r.p.place, vehicle: load,
    };
  });
  const result = { commission: kept[0][3], legs, reasons, unlinked: [], refused };
  links(result);
  contradictions(result);
  if (!legs.some((g) => g.end > g.start)) reasons.push(why.noCustody());
  reasons.sort(reasonCompare);
  return result;
}

function links(c) {
  const earlier = new Set();
  for (let i = 1; i < c.legs.length; i++) {
    const before = c.legs[i - 1];
    const leg = c.legs[i];
    const want = toHex(chainHash(before.scan.raw));
    const link = nil(leg.scan.p.link) ? null : toHex(leg.scan.p.link);
    let code = null;
    if (link === null) c.unlinked.push(leg);
    else if (earlier.has(link)) code = "custody_branch";
    else if (link !== want) code = "custody_gap";
    if (code !== null) {
      c.reasons.push(why.custodyLink(code, leg.scan.signer, leg.scan.p.seq, leg.start));
    }
    earlier.add(want);
  }
}

function contradictions(c) {
  let loaded = false;
  let closed = null; // after_sale | after_install, once the item's life is closed
  for (const leg of c.legs.slice(1)) {
    const a = leg.scan.p.action;
    const found = [];
    if (closed !== null) found.push(closed);
    if (a === ACTION_COMMISSION) found.push("recommissioned");
    else if (a === ACTION_LOAD && loaded) found.push("load_while_loaded");
    else if (a === ACTION_UNLOAD && !loaded) found.push("unload_not_loaded");
    else if ((a === ACTION_RECEIVE || a === ACTION_SHIP || a === ACTION_SELL ||
      a === ACTION_INSTALL) && loaded) {
      found.push("place_while_loaded");
    }
    for (const detail of found) {
      c.reasons.push(why.custodyConflict(leg.scan.signer, leg.scan.p.seq, leg.start, detail));
    }
    loaded = a === ACTION_LOAD;
    if (closed === null && Object.hasOwn(CLOSING, a)) closed = CLOSING[a];
  }
}

function unlinkedReasons(c, linksRequired) {
  const legs = linksRequired ? c.unlinked : c.unlinked.slice(0, 1);
  return legs.map((g) =>
    why.custodyLink("custody_unlinked", g.scan.signer, g.scan.p.seq, g.start, !linksRequired));
}

// --- §12.5 chain state ---------------------------------------------------------------------------

class StatementChain {
  constructor(statements) {
    const unique = new Map();
    for (const r of statements) {
      if (r.p.kind === KIND_BINDING || r.p.kind === KIND_PROFILE) unique.set(r.hex, r);
    }
    this.byCseq = new Map();
    for (const raw of [...unique.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))) {
      const r = unique.get(raw);
      if (!this.byCseq.has(r.p.cseq)) this.byCseq.set(r.p.cseq, r);
    }
    const timed = [...this.byCseq.entries()].map(([cseq, r]) => [r.p.time, cseq]).sort(cmpPair);
    this.times = timed.map(([t]) => t);
    this.best = [];
    let best = -Infinity;
    for (const [, c] of timed) {
      best = Math.max(best, c);
      this.best.push(best);
    }
  }

  /** §12.5 over [a, b): {pieces: [[statement|null, from, to]], shownUntil}. */
  state(a, b) {
    if (a >= b) throw new RangeError(`empty interval [${a}, ${b})`);
    const pieces = [];
    const i = bisectRight(this.times, a);
    let current;
    let start;
    if (i) {
      current = this.byCseq.get(this.best[i - 1]);
      start = a;
    } else if (this.byCseq.has(0)) {
      current = this.byCseq.get(0);
      start = Math.min(current.p.time, b);
      pieces.push([null, a, start]);
      if (start === b) return { pieces, shownUntil: b };
    } else {
      return { pieces, shownUntil: a };
    }
    for (;;) {
      const following = this.byCseq.get(current.p.cseq + 1);
      if (following === undefined) return { pieces, shownUntil: start };
      const t = following.p.time;
      if (t >= b) {
        pieces.push([current, start, b]);
        return { pieces, shownUntil: b };
      }
      if (t > start) {
        pieces.push([current, start, t]);
        start = t;
      }
      current = following;
    }
  }
}

// --- §12.6 one device's records ------------------------------------------------------------------

class DeviceRecords {
  // refused: the hex of the readings of the wrong role (§12.1): records for runs and spans,
  // never readings
  constructor(records, dates, refused = new Set()) {
    this.records = records;
    this.dates = dates;
    this.refused = refused;
    const runs = [];
    for (const r of records) {
      const last = runs[runs.length - 1];
      if (last && last[last.length - 1].p.seq + 1 === r.p.seq) last.push(r);
      else runs.push([r]);
    }
    this.runs = runs;
    const declared = [];
    for (const r of records) {
      const p = r.p;
      if (p.kind === KIND_STATUS && !nil(p.lost) && !nil(p.detail)) {
        declared.push([p.lost, p.lost + p.detail - 1]);
      }
    }
    declared.sort(cmpPair);
    this.lostFrom = declared.map(([lo]) => lo);
    this.lostTo = [];
    let hiMax = -Infinity;
    for (const [, hi] of declared) {
      hiMax = Math.max(hiMax, hi);
      this.lostTo.push(hiMax);
    }
    const spans = [];
    const losses = [];
    let joined = [];
    let gaps = [];
    runs.forEach((run, k) => {
      if (k && this.declared(runs[k - 1][runs[k - 1].length - 1].p.seq + 1, run[0].p.seq - 1)) {
        gaps.push(joined.length - 1);
      } else if (k) {
        this.span(joined, gaps, spans, losses);
        joined = [];
        gaps = [];
      }
      joined.push(...run);
    });
    this.span(joined, gaps, spans, losses);
    this.spans = union(spans);
    losses.sort((x, y) => cmpNum(Math.min(x.start, x.end), Math.min(y.start, y.end)) ||
      cmpNum(x.first, y.first));
    this.losses = losses;
    this.lossFrom = losses.map((x) => Math.min(x.start, x.end));
    this.lossReach = [];
    let reach = -Infinity;
    for (const x of losses) {
      reach = Math.max(reach, Math.max(x.start, x.end));
      this.lossReach.push(reach);
    }
  }

  declared(first, last) {
    const j = bisectRight(this.lostFrom, first);
    return j > 0 && this.lostTo[j - 1] >= last;
  }

  span(joined, gaps, spans, losses) {
    const ds = joined.map((r) => dateOf(this.dates, r));
    let lo = null;
    let hi = null;
    ds.forEach((d, i) => {
      if (d === null) return;
      const last = lastDate(joined[i], d); // a block reaches its end date
      if (lo === null || d < lo) lo = d;
      if (hi === null || last > hi) hi = last;
    });
    if (lo !== null) spans.push([lo, hi]);
    for (const g of gaps) {
      let before = null;
      for (let i = g; i >= 0; i--) {
        if (ds[i] !== null) {
          before = lastDate(joined[i], ds[i]);
          break;
        }
      }
      let after = null;
      for (let i = g + 1; i < ds.length; i++) {
        if (ds[i] !== null) {
          after = ds[i];
          break;
        }
      }
      if (before !== null && after !== null) {
        const first = joined[g].p.seq + 1;
        const last = joined[g + 1].p.seq - 1;
        losses.push({ first, last, start: before, end: after });
      }
    }
  }

  missing(x, y) {
    return subtract(x, y, this.spans);
  }

  lossesIn(x, y) {
    const out = [];
    let i = bisectLeft(this.lossFrom, y) - 1;
    while (i >= 0 && this.lossReach[i] >= x) {
      const loss = this.losses[i];
      const lo = Math.min(loss.start, loss.end);
      const hi = Math.max(loss.start, loss.end);
      if (lo < hi ? Math.max(lo, x) < Math.min(hi, y) : x <= lo) out.push(loss);
      i--;
    }
    return out.reverse();
  }

  /** §12.6 step 3: each dated reading with a temperature and what it stands for. */
  readings(gap) {
    const out = [];
    for (const run of this.runs) {
      const ds = run.map((r) => dateOf(this.dates, r));
      let lastDated = -1;
      ds.forEach((d, i) => {
        if (d !== null) lastDated = i;
      });
      // the last date of the run's last dated record
      const runEnd = lastDated >= 0 ? lastDate(run[lastDated], ds[lastDated]) : null;
      // channel -> date of its next reading in signing order (null if undated)
      const following = new Map();
      // channel -> the earliest date of its dated readings in later records, and whether a
      // block of the channel comes later (the later-signed reading stands)
      const earliest = new Map();
      const blockLater = new Set();
      for (let i = run.length - 1; i >= 0; i--) {
        const p = run[i].p;
        if (!isReading(p) || this.refused.has(run[i].hex)) continue;
        const ch = p.ch || 0;
        const d = ds[i];
        const isBlock = p.kind === KIND_BLOCK;
        const step = isBlock ? p.ivl : 0;
        const temps = readingTemps(p);
        const cap = (isBlock || blockLater.has(ch)) && earliest.has(ch) ? earliest.get(ch) : null;
        let hasNext = following.has(ch);
        let nxt = hasNext ? following.get(ch) : null;
        for (let j = temps.length - 1; j >= 0; j--) {
          const t = d === null ? null : d + j * step;
          const temp = temps[j];
          if (t !== null && temp !== null) {
            // the next reading's date (null if undated: this one stands for nothing), else
            // the run's last dated record after it, else t
            let e = hasNext ? (nxt === null ? t : nxt) : lastDated > i && runEnd !== null ? runEnd : t;
            if (cap !== null) e = Math.min(e, cap);
            e = Math.min(e, t + gap);
            if (e > t) out.push({ start: t, end: e, channel: ch, temp, tq: p.tq, seq: p.seq, index: j });
          }
          nxt = t;
          hasNext = true;
        }
        following.set(ch, d);
        if (d !== null) earliest.set(ch, earliest.has(ch) ? Math.min(d, earliest.get(ch)) : d);
        if (isBlock) blockLater.add(ch);
      }
    }
    return out;
  }

  /** §12.6 step 3: the dated blocks that overlap readings of their channel signed before or
   * after them (block_overlap), in seq order: [{seq, start, end}]. */
  overlaps() {
    const found = new Map();
    for (const run of this.runs) {
      const byCh = new Map();
      run.forEach((r, i) => {
        const d = dateOf(this.dates, r);
        if (d === null || !isReading(r.p) || this.refused.has(r.hex)) return;
        const ch = r.p.ch || 0;
        if (!byCh.has(ch)) byCh.set(ch, []);
        byCh.get(ch).push([d, lastDate(r, d), i]);
      });
      for (const items of byCh.values()) {
        let latest = null; // the highest date among earlier records' readings
        for (const [first, last, i] of items) {
          const p = run[i].p;
          if (p.kind === KIND_BLOCK && latest !== null && latest >= first) {
            found.set(p.seq, { seq: p.seq, start: first, end: last });
          }
          latest = latest === null ? last : Math.max(latest, last);
        }
        let earliest = null; // the lowest date among later records' readings
        for (let k = items.length - 1; k >= 0; k--) {
          const [first, last, i] = items[k];
          const p = run[i].p;
          if (p.kind === KIND_BLOCK && earliest !== null && earliest <= last) {
            found.set(p.seq, { seq: p.seq, start: first, end: last });
          }
          earliest = earliest === null ? first : Math.min(earliest, first);
        }
      }
    }
    return [...found.keys()].sort(cmpNum).map((k) => found.get(k));
  }
}

// --- §12.7 the sweep --------------------------------------------------------------------------------

function beyond(side, limit, temp) {
  return side === HIGH ? temp > limit : temp < limit;
}

/** One excursion on one side: built from contiguous pieces (protocol/analytics.py). */
class Excursion {
  constructor(side, limit) {
    this.side = side;
    this.limit = limit;
    this.start = null;
    this.end = null;
    this.peak = null;
    this.excess = 0n;
  }
  extend(start, end, temp) {
    if (this.start === null) this.start = start;
    this.end = end;
    if (this.peak === null || (this.side === HIGH ? temp > this.peak : temp < this.peak)) {
      this.peak = temp;
    }
    this.excess += BigInt(Math.abs(temp - this.limit)) * BigInt(end - start);
  }
  get degreeMinutes() {
    return roundDiv(this.excess, 60);
  }
}

// A segment: [from, device, channel, to, temp, leg, reading seq, tq, reading index], sorted as
// Python's tuples (the index: the reading's place in a block, 0 for a kind-1 reading).
function cmpSegment(a, b) {
  return (
    cmpNum(a[0], b[0]) || cmpStr(a[1], b[1]) || cmpNum(a[2], b[2]) || cmpNum(a[3], b[3]) ||
    cmpNum(a[4], b[4]) || cmpNum(a[5], b[5]) || cmpNum(a[6], b[6]) || cmpNum(a[7], b[7]) ||
    cmpNum(a[8], b[8])
  );
}

function sweep(legs, limits, segments) {
  const covered = legs.map(() => 0);
  const tor = legs.map(() => 0);
  const found = { [HIGH]: [], [LOW]: [] };
  const current = { [HIGH]: null, [LOW]: null };
  const events = [];
  for (const s of segments) {
    events.push([s[0], 1, s[4]]);
    events.push([s[3], -1, s[4]]);
  }
  events.sort((a, b) => cmpNum(a[0], b[0]) || cmpNum(a[1], b[1]) || cmpNum(a[2], b[2]));
  const starts = legs.map((g) => g.start);
  const count = new Map();
  const highs = new MinHeap(); // negated temperatures
  const lows = new MinHeap();
  let active = 0;
  let i = 0;
  while (i < events.length) {
    const u = events[i][0];
    while (i < events.length && events[i][0] === u) {
      const [, step, temp] = events[i];
      const n = count.get(temp) || 0;
      if (step > 0 && n === 0) {
        highs.push(-temp);
        lows.push(temp);
      }
      count.set(temp, n + step);
      active += step;
      i++;
    }
    if (i === events.length || active === 0) continue;
    const v = events[i][0];
    while ((count.get(-highs.top()) || 0) === 0) highs.pop();
    while ((count.get(lows.top()) || 0) === 0) lows.pop();
    const value = { [HIGH]: -highs.top(), [LOW]: lows.top() };
    const k = bisectRight(starts, u) - 1;
    covered[k] += v - u;
    let out = false;
    for (const side of [HIGH, LOW]) {
      const limit = limits[side];
      if (nil(limit) || !beyond(side, limit, value[side])) {
        current[side] = null;
        continue;
      }
      out = true;
      let cur = current[side];
      if (cur === null || cur.exc.end !== u) {
        cur = current[side] = { exc: new Excursion(side, limit), legs: new Set() };
        found[side].push(cur);
      }
      cur.exc.extend(u, v, value[side]);
      cur.legs.add(k);
    }
    if (out) tor[k] += v - u;
  }
  return { covered, tor, found };
}

function figures(segments, covered) {
  if (!segments.length) {
    return {
      readings: 0, covered, min: null, max: null, mean: null, mkt: null, tor: null, tq_min: null,
    };
  }
  const samples = segments.map((s) => [s[4], s[3] - s[0]]);
  // (reading seq, index in its block, device) names a reading
  const named = new Set(segments.map((s) => `${s[6]} ${s[8]} ${s[1]}`));
  let min = Infinity, max = -Infinity, tqMin = Infinity;
  for (const s of segments) {
    min = Math.min(min, s[4]);
    max = Math.max(max, s[4]);
    tqMin = Math.min(tqMin, s[7]);
  }
  return {
    readings: named.size,
    covered,
    min,
    max,
    mean: meanCenti(samples),
    mkt: mktCenti(samples),
    tor: null,
    tq_min: tqMin,
  };
}

// --- the judge --------------------------------------------------------------------------------------

function profileDocument(signer, p) {
  return {
    signer,
    gtin: p.gtin,
    lot: opt(p.lot),
    name: opt(p.name),
    low: opt(p.low),
    high: opt(p.high),
    delay: p.delay,
    cumul: opt(p.cumul),
    mkt: opt(p.mkt),
    gap: p.gap,
    lots: p.lots === 1,
    links: p.links === 1,
    cseq: p.cseq,
    time: p.time,
  };
}

function chainKey(kind, signer, name, lot) {
  return JSON.stringify([kind, signer, name, lot]);
}

class Judge {
  constructor(records, trust, uid, tag) {
    this.trust = trust;
    this.uid = uid;
    this.tag = tag;
    this.signers = bySigner(records.map(wrap));
    this.records = [];
    for (const recs of this.signers.values()) this.records.push(...recs);
    this.dates = datesOfSigners(this.signers);
    this.reasons = [];
    this.statements = new Map();
    for (const r of this.records) {
      const p = r.p;
      let key = null;
      if (p.kind === KIND_BINDING) key = chainKey("binding", r.signer, p.target, "");
      else if (p.kind === KIND_PROFILE) key = chainKey("profile", r.signer, p.gtin, opt(p.lot) ?? "");
      if (key !== null) {
        if (!this.statements.has(key)) this.statements.set(key, []);
        this.statements.get(key).push(r);
      }
    }
    this.indexed = new Map();
    this.profile = null;
    this.refused = new Set(); // records of the wrong role (§12.1), by hex
  }

  chain(key) {
    if (!this.indexed.has(key)) {
      this.indexed.set(key, new StatementChain(this.statements.get(key) || []));
    }
    return this.indexed.get(key);
  }

  run() {
    const cust = custody(this.records, this.dates, this.uid);
    this.refused = cust.refused;
    this.reasons.push(...cust.reasons);
    const doc = {
      commission: null, item: null, profile: null, legs: [], excursions: [], totals: null,
      provenance: null, commissionDate: null,
    };
    if (cust.commission !== null) {
      const commission = cust.commission.p;
      doc.commission = cust.commission;
      doc.commissionDate = cust.legs[0].start;
      doc.item = parseItem(commission.item);
      const item = doc.item;
      const brand = item !== null ? opt(this.trust.gtinAuthority(item.gtin)) : null;
      if (item !== null && brand !== null && applies(this.records, item, brand)) {
        const prov = judgeProvenance(this.records, this.dates, cust, item, brand, this.uid,
          this.tag, PROVENANCE_HELPERS);
        this.reasons = prov.reasons;
        doc.provenance = prov.provenance;
        return this.document(doc, prov.verdict);
      }
      doc.profile = this.selectProfile(doc.item, cust.legs[0].start);
      if (doc.profile !== null) this.profile = doc.profile.p;
      const linksRequired = this.profile !== null && this.profile.links === 1;
      this.reasons.push(...unlinkedReasons(cust, linksRequired));
      const monitors = cust.legs.map((leg) => this.monitor(leg));
      const segments = this.segments(cust.legs, monitors);
      [doc.legs, doc.excursions, doc.totals] = this.temperature(cust.legs, monitors, segments);
    }
    this.reasons.sort(reasonCompare);
    return this.document(doc, verdictOf(this.reasons));
  }

  document(d, verdict) {
    const scan = d.commission ? d.commission.p : null;
    const legs = d.legs;
    const t = d.totals;
    const out = {
      verified: true,
      verdict,
      reasons: this.reasons,
      subject: {
        uid: toHex(this.uid),
        item: scan ? opt(scan.item) : null,
        gtin: d.item ? d.item.gtin : null,
        lot: d.item ? d.item.lot : null,
        serial: d.item ? d.item.serial : null,
        commissioned: legs.length ? legs[0].leg.start : d.commissionDate,
        place: scan ? scan.place : null,
        reader: d.commission ? d.commission.signer : null,
      },
      profile: d.profile ? profileDocument(d.profile.signer, d.profile.p) : null,
      legs: legs.map(({ leg: g, monitors, figures: f }) => ({
        index: g.index,
        location: g.location,
        vehicle: g.vehicle,
        from: g.start,
        to: g.end,
        scan: legScanJson(g),
        monitors: monitors.map((m) => ({ device: m.device, from: m.start, to: m.end })),
        readings: f.readings,
        covered: f.covered,
        min: f.min,
        max: f.max,
        mean: f.mean,
        mkt: f.mkt,
        tor: f.tor,
        tq_min: f.tq_min,
      })),
      excursions: d.excursions,
      totals: t === null || !legs.length ? null : {
        from: legs[0].leg.start,
        to: legs[legs.length - 1].leg.start,
        readings: t.readings,
        covered: t.covered,
        min: t.min,
        max: t.max,
        mean: t.mean,
        mkt: t.mkt,
        tor: t.tor,
      },
    };
    if (d.provenance !== null) out.provenance = d.provenance;
    return out;
  }

  // §12.4
  selectProfile(item, c) {
    if (item === null) {
      this.reasons.push(why.noProfile("no_gtin"));
      return null;
    }
    const gtin = item.gtin;
    const authority = opt(this.trust.gtinAuthority(gtin));
    if (authority === null) {
      this.reasons.push(why.noProfile("no_authority", gtin));
      return null;
    }
    const lotKey = chainKey("profile", authority, gtin, item.lot ?? "");
    const lotChain = item.lot !== null && this.statements.has(lotKey);
    const key = lotChain ? lotKey : chainKey("profile", authority, gtin, "");
    const state = this.chain(key).state(c, c + 1);
    const statement = state.pieces.length ? state.pieces[0][0] : null;
    const p = statement !== null ? statement.p : null;
    if (state.shownUntil <= c) this.reasons.push(why.noProfile("unproven", gtin));
    else if (statement === null || p.kind !== KIND_PROFILE) {
      this.reasons.push(why.noProfile("none_in_force", gtin));
    } else if (!lotChain && p.lots === 1) {
      this.reasons.push(why.noProfile("lot_required", gtin, item.lot));
    } else return statement;
    return null;
  }

  // §12.6 step 1
  monitor(leg) {
    const a = leg.start, b = leg.end, where = leg.location, k = leg.index;
    if (b <= a) return [];
    if (where === null) {
      this.reasons.push(why.unmonitored(k, a, b, "no_location", null));
      return [];
    }
    const authority = opt(this.trust.placeAuthority(where));
    if (authority === null) {
      this.reasons.push(why.unmonitored(k, a, b, "no_authority", where));
      return [];
    }
    const state = this.chain(chainKey("binding", authority, where, "")).state(a, b);
    if (state.shownUntil < b) this.reasons.push(why.bindingUnproven(k, state.shownUntil, b, where));
    const opened = new Map(); // device -> start of its current monitoring interval
    const monitors = [];
    const idle = [];
    for (const [statement, s, e] of state.pieces) {
      const p = statement !== null ? statement.p : null;
      const devices = p !== null && p.kind === KIND_BINDING && !nil(p.devices)
        ? p.devices.split(" ") : [];
      if (!devices.length) idle.push([s, e]);
      for (const d of [...opened.keys()].filter((x) => !devices.includes(x))) {
        monitors.push({ device: d, start: opened.get(d), end: s });
        opened.delete(d);
      }
      for (const d of devices) if (!opened.has(d)) opened.set(d, s);
    }
    for (const [s, e] of union(idle)) {
      this.reasons.push(why.unmonitored(k, s, e, "no_devices", where));
    }
    const end = state.shownUntil;
    for (const [d, s] of opened) monitors.push({ device: d, start: s, end });
    monitors.sort((x, y) => cmpStr(x.device, y.device) || cmpNum(x.start, y.start));
    return monitors;
  }

  // §12.6 steps 2-4
  segments(legs, monitors) {
    const bound = new Map();
    legs.forEach((leg, li) => {
      for (const m of monitors[li]) {
        if (!bound.has(m.device)) bound.set(m.device, []);
        bound.get(m.device).push([m.start, m.end, leg.index]);
      }
    });
    const gap = this.profile !== null ? this.profile.gap : DEFAULT_GAP;
    const segments = [];
    for (const device of [...bound.keys()].sort(cmpStr)) {
      const dev = new DeviceRecords(this.signers.get(device) || [], this.dates, this.refused);
      const intervals = bound.get(device).sort((x, y) =>
        cmpNum(x[0], y[0]) || cmpNum(x[1], y[1]) || cmpNum(x[2], y[2]));
      const noted = new Set();
      for (const [x, y, k] of intervals) {
        for (const [s, e] of dev.missing(x, y)) {
          this.reasons.push(why.recordsMissing(k, device, s, e));
        }
        for (const loss of dev.lossesIn(x, y)) {
          const key = `${k} ${loss.first}`;
          if (!noted.has(key)) {
            noted.add(key);
            this.reasons.push(why.lost(k, device, loss.start, loss.end, loss.first, loss.last));
          }
        }
      }
      const ends = intervals.map(([, y]) => y);
      for (const held of dev.readings(gap)) {
        let i = bisectRight(ends, held.start);
        while (i < intervals.length && intervals[i][0] < held.end) {
          const [x, y, k] = intervals[i];
          const s = Math.max(x, held.start);
          const e = Math.min(y, held.end);
          if (s < e) {
            segments.push([s, device, held.channel, e, held.temp, k, held.seq, held.tq, held.index]);
          }
          i++;
        }
      }
      this.clockNotes(device, dev);
    }
    segments.sort(cmpSegment);
    const byLeg = new Map();
    for (const seg of segments) {
      if (!byLeg.has(seg[5])) byLeg.set(seg[5], []);
      byLeg.get(seg[5]).push([seg[0], seg[3]]);
    }
    legs.forEach((leg, li) => {
      const covered = union(byLeg.get(leg.index) || []);
      for (const [x, y] of union(monitors[li].map((m) => [m.start, m.end]))) {
        for (const [s, e] of subtract(x, y, covered)) {
          this.reasons.push(why.noReadings(leg.index, s, e));
        }
      }
    });
    return segments;
  }

  // §12.2's notes, and §12.1's count of readings that are not a logger's
  clockNotes(device, dev) {
    let clock = 0;
    let undated = 0;
    let wrong = 0;
    for (const r of dev.records) {
      if (!isReading(r.p)) continue;
      const n = r.p.kind === KIND_BLOCK ? r.p.temps.length / 2 : 1; // a block: N readings
      if (this.refused.has(r.hex)) wrong += n;
      else if (r.p.tq === 0) {
        if (dateOf(this.dates, r) === null) undated += n;
        else clock += n;
      }
    }
    if (clock) this.reasons.push(why.clockDated(device, clock));
    if (undated) this.reasons.push(why.undated(device, undated));
    if (wrong) this.reasons.push(why.wrongRoleReadings(device, wrong));
    for (const o of dev.overlaps()) this.reasons.push(why.blockOverlap(device, o.seq, o.start, o.end));
  }

  // §12.7
  temperature(legs, monitors, segments) {
    const prof = this.profile;
    const limits = prof !== null ? { [HIGH]: opt(prof.high), [LOW]: opt(prof.low) } : {};
    const sw = sweep(legs, limits, segments);
    const excursions = this.excursions(sw.found, segments);
    const byLeg = new Map();
    for (const seg of segments) {
      if (!byLeg.has(seg[5])) byLeg.set(seg[5], []);
      byLeg.get(seg[5]).push(seg);
    }
    const reports = legs.map((leg, li) => {
      const f = figures(byLeg.get(leg.index) || [], sw.covered[leg.index]);
      if (prof !== null) f.tor = sw.tor[leg.index];
      return { leg, monitors: monitors[li], figures: f };
    });
    const totals = figures(segments, sw.covered.reduce((x, y) => x + y, 0));
    if (prof !== null) {
      const tor = sw.tor.reduce((x, y) => x + y, 0);
      totals.tor = tor;
      if (!nil(prof.cumul) && tor >= prof.cumul) this.reasons.push(why.cumulative(tor, prof.cumul));
      if (!nil(prof.mkt) && totals.mkt !== null && totals.mkt > prof.mkt) {
        this.reasons.push(why.mkt(totals.mkt, prof.mkt));
      }
    }
    return [reports, excursions, totals];
  }

  excursions(found, segments) {
    const prof = this.profile;
    const out = [];
    if (prof === null) return out;
    for (const side of [HIGH, LOW]) {
      const items = found[side];
      const spans = items.map(({ exc }) => [exc.start, exc.end]);
      const devices = items.map(() => new Set());
      for (const seg of segments) {
        if (items.length && beyond(side, items[0].exc.limit, seg[4])) {
          let j = Math.max(bisectRightPair(spans, seg[0], seg[0]) - 1, 0);
          while (j < spans.length && spans[j][0] < seg[3]) {
            if (spans[j][1] > seg[0]) devices[j].add(seg[1]);
            j++;
          }
        }
      }
      items.forEach(({ exc, legs }, n) => {
        const { start, end, peak } = exc;
        out.push({
          side,
          from: start,
          to: end,
          duration: end - start,
          peak,
          degree_minutes: exc.degreeMinutes,
          devices: [...devices[n]].sort(cmpStr),
          legs: [...legs].sort(cmpNum),
          alarm: end - start >= prof.delay,
        });
        this.reasons.push(why.excursion(side, start, end, peak, prof.delay));
      });
    }
    out.sort((x, y) => cmpNum(x.from, y.from) || cmpNum(x.side !== HIGH ? 1 : 0, y.side !== HIGH ? 1 : 0));
    return out;
  }
}

const PROVENANCE_HELPERS = {
  toHex,
  parseItem,
  dateOf,
  actionNames: ACTION_NAMES,
  closing: CLOSING,
  unlinkedReasons,
};

/**
 * All of §12 over the verified records `records` for the tag `uid` (a Uint8Array), with the
 * §10 scopes of `trust` (placeAuthority, gtinAuthority). Synchronous. Returns the verdict
 * document of §13.1 (with `verified: true`). `tag` is the tag's authentication at the tap
 * ("genuine", "replayed", "unauthenticated" or "unknown", the default); only the provenance
 * verdict of §12.10 uses it (a product whose GTIN has no profile statement at all).
 */
export function judge(records, trust, uid, tag = "unknown") {
  if (!TAG_VALUES.includes(tag)) {
    throw new RangeError(`tag must be one of ${TAG_VALUES.join(", ")}, not ${tag}`);
  }
  return new Judge(records, trust, uid, tag).run();
}

