// The consumer page's Web Worker: verifies the trace bundle off the main thread with
// the JavaScript verifier (./verify/index.js) against the trust pinned in the page,
// reports progress, then reads the verified bundle's temperature readings for the
// charts and counts what it carries (proofs, checkpoints, cosignatures, anchors).
//
// in:  {bundle: ArrayBuffer, trust: ArrayBuffer, tag: the tap's status for §12.10}
// out: {type: "progress", fraction, stage} ... then
//      {type: "done", report, ms, readings, counts} or {type: "error", error}

function progress(p) {
  let fraction = null;
  let stage = null;
  if (typeof p === "number") fraction = p;
  else if (p && typeof p === "object") {
    const done = p.done ?? p.completed ?? p.current ?? p.step;
    const total = p.total ?? p.steps ?? p.of;
    if (typeof p.fraction === "number") fraction = p.fraction;
    else if (typeof p.progress === "number") fraction = p.progress;
    else if (typeof done === "number" && typeof total === "number" && total > 0) fraction = done / total;
    stage = p.stage ?? p.phase ?? p.label ?? p.message ?? p.name ?? null;
  } else if (typeof p === "string") stage = p;
  if (fraction !== null) fraction = Math.max(0, Math.min(1, fraction));
  self.postMessage({ type: "progress", fraction, stage: stage === null ? null : String(stage) });
}

self.onmessage = async (ev) => {
  const { bundle, trust, tag } = ev.data;
  const bytes = new Uint8Array(bundle);
  let verifyBundle;
  try {
    ({ verifyBundle } = await import("./verify/index.js"));
  } catch (e) {
    self.postMessage({ type: "error", error: `the verifier could not be loaded: ${e && e.message ? e.message : e}` });
    return;
  }
  let report;
  let ms;
  try {
    const t0 = performance.now();
    report = await verifyBundle(bytes.slice(), new Uint8Array(trust), { onProgress: progress, tag });
    ms = performance.now() - t0;
    if (report && typeof report.toJSON === "function") report = report.toJSON(); // a class: send its data
    report = plain(report);
  } catch (e) {
    self.postMessage({ type: "error", error: e && e.message ? e.message : String(e) });
    return;
  }
  let readings = null;
  let counts = null;
  try {
    ({ readings, counts } = await readBundle(bytes));
  } catch (e) {
    counts = { error: String(e && e.message ? e.message : e) };
  }
  self.postMessage({ type: "done", report, ms, readings, counts, bytes: bytes.length });
};

// BigInts (64-bit values) as numbers when exact, else as text: the page only shows them
function plain(v) {
  if (typeof v === "bigint") return Number.isSafeInteger(Number(v)) ? Number(v) : v.toString();
  if (Array.isArray(v)) return v.map(plain);
  if (v instanceof Map) return Object.fromEntries([...v].map(([k, x]) => [k, plain(x)]));
  if (v && typeof v === "object" && !(v instanceof Uint8Array)) {
    const out = {};
    for (const [k, x] of Object.entries(v)) out[k] = plain(x);
    if (!("verified" in out) && "verified" in v) out.verified = v.verified;
    return out;
  }
  return v;
}

// --- reading the bundle for the charts (after it verified) ----------------------------------

function b64(text) {
  const bin = atob(text);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

async function inflateRaw(data) {
  const stream = new Blob([data]).stream().pipeThrough(new DecompressionStream("deflate-raw"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

// A minimal CBOR reader for the record profile (docs/protocol.md §2, §3): heads,
// integers, byte and text strings, one tag, one array, flat maps.
function head(buf, pos) {
  const ib = buf[pos++];
  const major = ib >> 5;
  const ai = ib & 31;
  let val;
  if (ai < 24) val = ai;
  else if (ai === 24) val = buf[pos++];
  else if (ai === 25) { val = (buf[pos] << 8) | buf[pos + 1]; pos += 2; }
  else if (ai === 26) { val = ((buf[pos] << 24) >>> 0) + ((buf[pos + 1] << 16) | (buf[pos + 2] << 8) | buf[pos + 3]); pos += 4; }
  else if (ai === 27) { val = 0; for (let i = 0; i < 8; i++) val = val * 256 + buf[pos + i]; pos += 8; }
  else throw new Error("unsupported CBOR head");
  return [major, val, pos];
}

function item(buf, pos) {
  const [major, val, p] = head(buf, pos);
  if (major === 0) return [val, p];
  if (major === 1) return [-1 - val, p];
  if (major === 2) return [buf.subarray(p, p + val), p + val];
  if (major === 3) return [new TextDecoder().decode(buf.subarray(p, p + val)), p + val];
  if (major === 5) {
    const map = new Map();
    let q = p;
    for (let i = 0; i < val; i++) {
      let k, v;
      [k, q] = item(buf, q);
      [v, q] = item(buf, q);
      map.set(k, v);
    }
    return [map, q];
  }
  throw new Error("unexpected CBOR item");
}

function openRecord(raw) {
  let [major, val, pos] = head(raw, 0);
  if (major !== 6 || val !== 18) throw new Error("not a COSE_Sign1");
  [major, val, pos] = head(raw, pos);
  if (major !== 4 || val !== 4) throw new Error("not a COSE_Sign1");
  let prot, payload;
  [prot, pos] = item(raw, pos);
  [, pos] = item(raw, pos); // unprotected
  [payload, pos] = item(raw, pos);
  const [hdr] = item(prot, 0);
  const kid = new TextDecoder().decode(hdr.get(4));
  const [map] = item(payload, 0);
  return { kid, p: map };
}

async function readBundle(bytes) {
  const doc = JSON.parse(new TextDecoder().decode(bytes));
  const raws = [];
  if (doc.version === 3) {
    for (const lg of doc.logs || []) {
      const blob = await inflateRaw(b64(lg.records));
      for (let pos = 0; pos + 2 <= blob.length; ) {
        const len = (blob[pos] << 8) | blob[pos + 1];
        raws.push(blob.subarray(pos + 2, pos + 2 + len));
        pos += 2 + len;
      }
    }
  } else {
    for (const r of doc.records || []) raws.push(b64(r.record));
  }
  const readings = {};
  const seen = new Set();
  let undated = 0;
  for (const raw of raws) {
    let rec;
    try {
      rec = openRecord(raw);
    } catch {
      continue;
    }
    const p = rec.p;
    const kind = p.get(1);
    if (kind !== 1 && !(kind === 7 && p.get(18) instanceof Uint8Array)) continue; // readings and reading blocks only
    const key = `${rec.kid}#${p.get(3)}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const t = p.get(18); // a block's temperature slots (docs/protocol.md §2.8)
    if (!(p.get(5) >= 1)) { undated += kind === 7 ? t.length / 2 : 1; continue; } // not dated by its own clock
    const list = (readings[rec.kid] ||= []);
    if (kind === 1) list.push([p.get(4), p.has(10) ? p.get(10) : null, p.get(13) ?? 0]);
    // reading i of a block at time + i × ivl; a slot 0x80 c is a fault (no temperature)
    else for (let k = 0; k < t.length; k += 2) {
      list.push([p.get(4) + (k / 2) * p.get(17), t[k] === 0x80 ? null : (((t[k] << 8) | t[k + 1]) << 16) >> 16, p.get(13) ?? 0]);
    }
  }
  for (const list of Object.values(readings)) list.sort((a, b) => a[0] - b[0]);
  let cosignatures = 0;
  for (const note of doc.checkpoints || []) {
    const sigs = note.split("\n\n").slice(1).join("\n\n").split("\n").filter((l) => l.startsWith("\u2014 "));
    cosignatures += Math.max(0, sigs.length - 1);
  }
  const counts = {
    records: raws.length,
    checkpoints: (doc.checkpoints || []).length,
    cosignatures,
    proofs: (doc.proofs || []).length,
    consistency: (doc.consistency || []).length,
    anchors: (doc.anchors || []).length,
    logs: (doc.logs || doc.records || []).length,
    undated,
  };
  return { readings, counts };
}
