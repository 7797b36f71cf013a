// The page's JavaScript verdict (cloud/page/static/verify/verdict.js) against the verdict
// vectors (docs/protocol.md §13.4).
//
//   node --test tests/page/verdict.test.mjs
//
// For each vector, tests/page/data/verdict_inputs/<name>.json holds what the Python verifier
// hands to protocol.verdict.judge (tests/page/make_verdict_inputs.py): the verified records,
// the trust file's scopes and the subject's uid. This rebuilds the JavaScript inputs
// (Uint8Array bytes, a trust object with the §10 scope rules), runs judge() and compares its
// document with the vector's expected.json, exactly (after JSON).

import assert from "node:assert/strict";
import { gunzipSync } from "node:zlib";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import { judge } from "../../cloud/page/static/verify/verdict.js";
import {
  dexp,
  dlog,
  meanCenti,
  mktCenti,
  pow2,
  roundDiv,
  sha256,
} from "../../cloud/page/static/verify/verdict_math.js";
import { cmpStr, fmtCenti, fmtDuration, fmtTime } from "../../cloud/page/static/verify/verdict_reasons.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, "..", "..");
const INPUTS = join(HERE, "data", "verdict_inputs");
const VECTORS = join(ROOT, "tests", "protocol", "vectors", "verdict");
// §12.10's provenance vectors; their inputs are provenance.<name>.json (with the tag).
const PROVENANCE = join(ROOT, "tests", "protocol", "vectors", "provenance");
const PREFIX = "provenance.";

function vectorDir(name) {
  return name.startsWith(PREFIX) ? join(PROVENANCE, name.slice(PREFIX.length)) : join(VECTORS, name);
}

function fromHex(hex) {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function toHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function value(v) {
  return v !== null && typeof v === "object" && typeof v.hex === "string" ? fromHex(v.hex) : v;
}

// --- §10 scopes, as protocol/scope.py -------------------------------------------------------------

function specificity(pattern) {
  return [...pattern].filter((c) => c !== "*").length;
}

function patternMatches(pattern, text) {
  const pieces = pattern.split("*");
  if (pieces.length === 1) return pattern === text;
  const first = pieces[0];
  const last = pieces[pieces.length - 1];
  let pos = first.length;
  const end = text.length - last.length;
  if (end < pos || !text.startsWith(first) || !text.endsWith(last)) return false;
  for (const piece of pieces.slice(1, -1)) {
    if (piece) {
      const found = text.indexOf(piece, pos);
      if (found < 0 || found + piece.length > end) return false;
      pos = found + piece.length;
    }
  }
  return true;
}

function authority(scopes, text) {
  let best = -1;
  let winner = null;
  let tied = false;
  for (const [registry, patterns] of scopes) {
    let mine = -1;
    for (const p of patterns) if (patternMatches(p, text)) mine = Math.max(mine, specificity(p));
    if (mine < 0) continue;
    if (mine > best) {
      best = mine;
      winner = registry;
      tied = false;
    } else if (mine === best && registry !== winner) tied = true;
  }
  return tied ? null : winner;
}

function makeTrust(doc) {
  const regs = Object.entries(doc.registries);
  const of = (what) => regs.map(([id, s]) => [id, s[what]]);
  return {
    quorum: doc.quorum,
    deviceAuthority: (id) => authority(of("devices"), id),
    placeAuthority: (place) => authority(of("places"), place),
    gtinAuthority: (gtin) => authority(of("gtins"), gtin),
  };
}

function load(name) {
  const doc = JSON.parse(readFileSync(join(INPUTS, `${name}.json`), "utf8"));
  const records = doc.records.map((r) => ({
    raw: fromHex(r.raw),
    signer: r.signer,
    payload: Object.fromEntries(Object.entries(r.payload).map(([k, v]) => [k, value(v)])),
  }));
  return { records, trust: makeTrust(doc.trust), uid: fromHex(doc.uid), tag: doc.tag };
}

function dirs(root) {
  if (!existsSync(root)) return [];
  return readdirSync(root, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => d.name)
    .sort();
}

// a vector whose bundle is refused (unverified_*: no verdict) is judged by nobody
const VERDICT_NAMES = dirs(VECTORS).filter(
  (n) => JSON.parse(readFileSync(join(VECTORS, n, "expected.json"), "utf8")).verified,
);
const PROVENANCE_NAMES = dirs(PROVENANCE).map((n) => PREFIX + n);
const NAMES = [...VERDICT_NAMES, ...PROVENANCE_NAMES];

test("there are 20 or more verdict vectors, each with its inputs", () => {
  assert.ok(VERDICT_NAMES.length >= 20, `${VERDICT_NAMES.length} vectors`);
  const inputs = readdirSync(INPUTS)
    .filter((f) => f.endsWith(".json") && !f.startsWith("_"))
    .map((f) => f.slice(0, -5));
  assert.deepEqual(inputs.sort(), [...NAMES].sort());
});

for (const name of NAMES) {
  test(`verdict vector ${name}`, () => {
    const { records, trust, uid, tag } = load(name);
    const expected = JSON.parse(readFileSync(join(vectorDir(name), "expected.json"), "utf8"));
    const got = JSON.parse(JSON.stringify(judge(records, trust, uid, tag)));
    assert.deepStrictEqual(got, expected);
  });

  test(`verdict vector ${name}: the order and repeats of the records do not matter`, () => {
    const { records, trust, uid, tag } = load(name);
    const expected = JSON.parse(readFileSync(join(vectorDir(name), "expected.json"), "utf8"));
    const shuffled = [...records].reverse().concat(records.slice(0, 7));
    const got = JSON.parse(JSON.stringify(judge(shuffled, trust, uid, tag)));
    assert.deepStrictEqual(got, expected);
  });
}

// --- the arithmetic, against values Python computes (make_verdict_inputs.py, _arithmetic.json) ---

test("sha256 matches known digests", () => {
  assert.equal(toHex(sha256(new Uint8Array())),
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  assert.equal(toHex(sha256(new TextEncoder().encode("abc"))),
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const long = new TextEncoder().encode("a".repeat(1000));
  assert.equal(toHex(sha256(long)),
    "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3");
});

test("pow2 is exact down to the smallest subnormal", () => {
  assert.equal(pow2(0), 1);
  assert.equal(pow2(-1), 0.5);
  assert.equal(pow2(-1022), 2.2250738585072014e-308);
  assert.equal(pow2(-1074), 5e-324);
  assert.equal(pow2(-1075), 0);
  assert.equal(pow2(-1050), 2 ** -1050);
});

test("roundDiv rounds halves up, towards +infinity", () => {
  assert.equal(roundDiv(5, 2), 3);
  assert.equal(roundDiv(-5, 2), -2);
  assert.equal(roundDiv(-7, 2), -3);
  assert.equal(roundDiv(7, 3), 2);
  assert.equal(roundDiv(-1, 60), 0);
  assert.equal(roundDiv(-31, 60), -1);
});

const GOLDEN = JSON.parse(readFileSync(join(INPUTS, "_arithmetic.json"), "utf8"));

test("dexp and dlog agree bit for bit with protocol/analytics.py", () => {
  for (const [y, want] of GOLDEN.dexp) assert.equal(dexp(y), want, `dexp(${y})`);
  for (const [v, want] of GOLDEN.dlog) assert.equal(dlog(v), want, `dlog(${v})`);
});

test("mkt and mean agree with protocol/analytics.py", () => {
  for (const [samples, mkt, mean] of GOLDEN.mkt) {
    assert.equal(mktCenti(samples), mkt, JSON.stringify(samples));
    assert.equal(meanCenti(samples), mean, JSON.stringify(samples));
  }
});

test("T, C and D format as protocol/reasons.py", () => {
  for (const [t, want] of GOLDEN.time) assert.equal(fmtTime(t), want);
  for (const [c, want] of GOLDEN.centi) assert.equal(fmtCenti(c), want);
  for (const [s, want] of GOLDEN.duration) assert.equal(fmtDuration(s), want);
});

test("strings compare as UTF-8 bytes", () => {
  for (const [a, b, want] of GOLDEN.strings) assert.equal(cmpStr(a, b), want, `${a} ${b}`);
});

// --- random traces: Python's verdict over them (make_verdict_inputs.py, _fuzz.json.gz) -----------------

for (const [file, least] of [["_fuzz.json.gz", 100], ["_fuzz_blocks.json.gz", 50]]) test(`random traces (${file}): the same document as protocol/verdict.py (provenance verdicts too)`, () => {
  const cases = JSON.parse(gunzipSync(readFileSync(join(INPUTS, file))).toString("utf8"));
  assert.ok(cases.length >= least);
  cases.forEach((c, n) => {
    const records = c.records.map((r) => ({
      raw: fromHex(r.raw),
      signer: r.signer,
      payload: Object.fromEntries(Object.entries(r.payload).map(([k, v]) => [k, value(v)])),
    }));
    const doc = judge(records, makeTrust(c.trust), fromHex(c.uid), c.tag);
    assert.deepStrictEqual(JSON.parse(JSON.stringify(doc)), c.expected, `case ${n}`);
  });
});
