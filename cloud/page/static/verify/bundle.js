// The trace bundle (§9) in version 2 and version 3 (§9.1, the compact encoding), read
// as protocol/bundle.py reads it. Both versions give the same object:
//
//   {version, created, subject: {uid: Uint8Array, item: string|null},
//    records: [{log, index, raw}], checkpoints: [string],
//    proofs: [{log, treeSize, leaves: [int], nodes: [Uint8Array]}],
//    consistency: [{log, oldSize, newSize, path: [Uint8Array]}],
//    anchors: [{log, treeSize, receipt (the JSON object), parsed}]}
//
// Integers are Numbers up to 2^53 - 1 and BigInts above. Every refusal is a
// BundleError (malformed_bundle) naming the member.

import { parseEvmReceipt, parseLocalReceipt } from './anchor.js';
import { InflateError, inflateRaw } from './inflate.js';
import { StrictJSONError, isObject, parseStrict, typeName } from './strictjson.js';
import { b64decode, fromHex, utf8 } from './util.js';

export class BundleError extends Error {
  constructor(message) {
    super(message);
    this.code = 'malformed_bundle';
  }
}

export const MAX_BUNDLE_BYTES = 64 * 1024 * 1024;
const MAX_RECORDS = 1_000_000;
const MAX_CHECKPOINTS = 10_000;
const MAX_PROOFS = 100_000;
const MAX_CONSISTENCY = 100_000;
const MAX_ANCHORS = 100_000;
const MAX_PATH = 64;
const MAX_NODES_PER_LEAF = 64;
const MAX_RECORD_BYTES = 1024;
const MAX_CHECKPOINT_BYTES = 16 * 1024;
const MAX_INDEX = (1n << 63n) - 1n;
const MAX_TREE_SIZE = (1n << 64n) - 1n;
const MAX_PROOF_LEAVES = 1_000_000;
const MAX_INFLATED_BYTES = 64 * 1024 * 1024;
const MAX_TIME = 2 ** 32 - 1;
// Version 3 (§9.1): a blob of n records is at least 32 × n compressed bytes (a genuine record
// carries a 64-byte signature, which does not compress), and a record in a blob is at least
// the shortest envelope §3 allows (78 bytes).
const MIN_PACKED_BYTES_PER_RECORD = 32;
const MIN_RECORD_BYTES = 78;
const ORIGIN_RE = /^[\x21-\x2a\x2c-\x7e]{1,128}$/;
const UID_RE = /^([0-9a-f]{8}|[0-9a-f]{14}|[0-9a-f]{20})$/;
const CONTROL = /[\x00-\x1f\x7f-\x9f]/;

const fail = (where, message) => new BundleError(`bundle ${where}: ${message}`);
const isInt = (v) => typeof v === 'number' || typeof v === 'bigint';
const norm = (v) => (typeof v === 'bigint' && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);

function members(value, where, allowed, required = allowed) {
  if (!isObject(value)) throw fail(where, `want an object, not ${typeName(value)}`);
  for (const k of Object.keys(value)) if (!allowed.includes(k)) throw fail(where, `unknown member ${JSON.stringify(k.slice(0, 40))}`);
  for (const k of required) if (!(k in value)) throw fail(where, `missing member ${JSON.stringify(k)}`);
  return value;
}
function list(value, where, limit) {
  if (!Array.isArray(value)) throw fail(where, `want a list, not ${typeName(value)}`);
  if (value.length > limit) throw fail(where, `more than ${limit} entries`);
  return value;
}
function integer(value, where, lo, hi) {
  if (!isInt(value)) throw fail(where, `want an integer, not ${typeName(value)}`);
  if (BigInt(value) < BigInt(lo) || BigInt(value) > BigInt(hi)) throw fail(where, `want an integer in ${lo}..${hi}`);
  return value;
}
function b64(text, where, lo, hi) {
  if (typeof text !== 'string') throw fail(where, 'want a base64 string');
  if (text.length > 4 * Math.floor((hi + 2) / 3)) throw fail(where, `want ${lo}..${hi} bytes`);
  const raw = b64decode(text);
  if (raw === null) throw fail(where, 'not canonical standard base64 with padding');
  if (raw.length < lo || raw.length > hi) throw fail(where, `want ${lo}..${hi} bytes`);
  return raw;
}
function origin(value, where) {
  if (typeof value !== 'string') throw fail(where, 'want a log origin (a string)');
  if (!ORIGIN_RE.test(value)) throw fail(where, "not a log origin (1-128 bytes of printable ASCII, no '+')");
  return value;
}
function checkItem(item, where) {
  if (typeof item !== 'string') throw fail(where, 'want a string');
  const n = utf8(item).length;
  if (n < 1 || n > 128) throw fail(where, 'want 1..128 bytes');
  if (CONTROL.test(item)) throw fail(where, 'holds a control character');
  return item;
}
function hashes(value, where, limit) {
  const items = list(value, where, limit);
  return items.map((text, i) => {
    const raw = typeof text === 'string' && text.length === 44 ? b64decode(text) : null;
    if (raw === null || raw.length !== 32) throw fail(`${where}[${i}]`, 'want a 32-byte hash in canonical base64');
    return raw;
  });
}
function hashString(value, where, limit) {
  const raw = b64(value, where, 0, limit * 32);
  if (raw.length % 32) throw fail(where, 'want a multiple of 32 bytes (whole hashes)');
  const out = [];
  for (let k = 0; k < raw.length; k += 32) out.push(raw.subarray(k, k + 32));
  return out;
}

/** Parse and check a bundle from its bytes; throws BundleError. */
export function parseBundleBytes(bytes) {
  let doc;
  try {
    doc = parseStrict(bytes, { limit: MAX_BUNDLE_BYTES, what: 'bundle' });
  } catch (e) {
    if (e instanceof StrictJSONError) throw new BundleError(e.message);
    throw e;
  }
  return parseBundle(doc);
}

export function parseBundle(doc) {
  if (!isObject(doc)) throw fail('(top level)', 'want an object');
  const version = doc.version;
  if (version !== 2 && version !== 3) {
    if (!('version' in doc)) throw fail('(top level)', "missing member 'version'");
    if (version === 1) throw new BundleError('version 1 bundles are not supported by this verifier (protocol v2); rebuild the bundle');
    throw fail('version', 'want the integer 2 or 3');
  }
  const v3 = version === 3;
  const req = ['format', 'version', 'subject', v3 ? 'logs' : 'records', 'checkpoints', 'proofs', 'consistency', 'anchors'];
  const top = members(doc, '(top level)', [...req, 'created'], req);
  if (top.format !== 'coldtrace-bundle') throw fail('format', "not a ColdTrace bundle: want 'coldtrace-bundle'");
  let created = null;
  if ('created' in top) created = integer(top.created, 'created', 0, MAX_TIME);
  const subject = parseSubject(top.subject);
  const records = v3 ? parseLogs(top.logs) : parseRecords(top.records);
  return {
    version,
    created,
    subject,
    records,
    checkpoints: parseCheckpoints(top.checkpoints),
    proofs: parseProofs(top.proofs, v3, records),
    consistency: parseConsistency(top.consistency, v3),
    anchors: parseAnchors(top.anchors),
  };
}

function parseSubject(value) {
  const o = members(value, 'subject', ['uid', 'item'], ['uid']);
  if (typeof o.uid !== 'string' || !UID_RE.test(o.uid)) throw fail('subject.uid', 'want lowercase hex of 4, 7 or 10 bytes');
  const item = 'item' in o ? checkItem(o.item, 'subject.item') : null;
  return { uid: fromHex(o.uid), item };
}

function parseRecords(value) {
  const items = list(value, 'records', MAX_RECORDS);
  return items.map((o, i) => {
    members(o, `records[${i}]`, ['log', 'index', 'record']);
    const index = integer(o.index, `records[${i}].index`, 0, MAX_INDEX);
    const raw = b64(o.record, `records[${i}].record`, 1, MAX_RECORD_BYTES);
    return { log: origin(o.log, `records[${i}].log`), index: norm(index), raw };
  });
}

function parseCheckpoints(value) {
  const items = list(value, 'checkpoints', MAX_CHECKPOINTS);
  items.forEach((text, i) => {
    if (typeof text !== 'string') throw fail(`checkpoints[${i}]`, 'want a signed note (a string)');
    const n = utf8(text).length;
    if (n < 1 || n > MAX_CHECKPOINT_BYTES) throw fail(`checkpoints[${i}]`, `want 1..${MAX_CHECKPOINT_BYTES} bytes`);
  });
  return items.slice();
}

function runs(value, where, end, budget, what, limit) {
  const items = list(value, where, MAX_RECORDS);
  if (!items.length) throw fail(where, 'want at least one run');
  const out = [];
  let after = -1n;
  let total = 0;
  items.forEach((run, j) => {
    const w = `${where}[${j}]`;
    if (!Array.isArray(run) || run.length !== 2) throw fail(w, 'want a run [first, count]');
    const first = BigInt(integer(run[0], `${w}[0]`, 0n, end - 1n));
    const count = BigInt(integer(run[1], `${w}[1]`, 1n, end - first));
    if (first <= after) {
      throw fail(w, first === after ? 'adjacent runs must be one run (not canonical)' : 'runs must be ascending and must not overlap');
    }
    total += Number(count > BigInt(limit) + 1n ? BigInt(limit) + 1n : count);
    if (total > budget) throw fail(where, `more than ${limit} ${what} in all in the bundle`);
    after = first + count;
    out.push([first, Number(count)]);
  });
  return out;
}
function expand(rs) {
  const out = [];
  for (const [first, count] of rs) {
    if (first + BigInt(count) - 1n <= BigInt(Number.MAX_SAFE_INTEGER)) {
      const f = Number(first);
      for (let k = 0; k < count; k++) out.push(f + k);
    } else {
      for (let k = 0n; k < BigInt(count); k++) out.push(norm(first + k));
    }
  }
  return out;
}

function parseProofs(value, v3, records) {
  const items = list(value, 'proofs', MAX_PROOFS);
  let budget = MAX_PROOF_LEAVES;
  const held = new Map(); // version 3: records of each log in `logs`
  if (v3) for (const r of records) held.set(r.log, (held.get(r.log) || 0) + 1);
  return items.map((o, i) => {
    const where = `proofs[${i}]`;
    members(o, where, ['log', 'tree_size', 'leaves', 'nodes']);
    const log = origin(o.log, `${where}.log`);
    const size = integer(o.tree_size, `${where}.tree_size`, 1n, MAX_TREE_SIZE);
    let leaves;
    if (v3) {
      const rs = runs(o.leaves, `${where}.leaves`, BigInt(size), budget, 'leaves', MAX_PROOF_LEAVES);
      const named = rs.reduce((a, [, n]) => a + n, 0);
      const have = held.get(log) || 0;
      if (named > have) throw fail(`${where}.leaves`, `names more leaves than logs holds records of its log (${have})`);
      leaves = expand(rs);
    } else {
      const ls = list(o.leaves, `${where}.leaves`, MAX_RECORDS);
      if (!ls.length) throw fail(`${where}.leaves`, 'a proof proves at least one leaf');
      if (ls.length > budget) throw fail(`${where}.leaves`, `more than ${MAX_PROOF_LEAVES} leaves in all in the bundle`);
      let prev = -1n;
      ls.forEach((leaf, j) => {
        if (!isInt(leaf)) throw fail(`${where}.leaves[${j}]`, 'want an integer');
        const b = BigInt(leaf);
        if (b >= BigInt(size)) throw fail(`${where}.leaves[${j}]`, `not in a tree of ${size} leaves`);
        if (b <= prev) throw fail(`${where}.leaves[${j}]`, 'leaves must be strictly ascending');
        prev = b;
      });
      leaves = ls.map(norm);
    }
    budget -= leaves.length;
    const limit = MAX_NODES_PER_LEAF * leaves.length;
    const nodes = v3 ? hashString(o.nodes, `${where}.nodes`, limit) : hashes(o.nodes, `${where}.nodes`, limit);
    return { log, treeSize: norm(size), leaves, nodes };
  });
}

function parseConsistency(value, v3) {
  const items = list(value, 'consistency', MAX_CONSISTENCY);
  return items.map((o, i) => {
    const where = `consistency[${i}]`;
    members(o, where, ['log', 'old_size', 'new_size', 'path']);
    const log = origin(o.log, `${where}.log`);
    const oldSize = integer(o.old_size, `${where}.old_size`, 1n, MAX_TREE_SIZE);
    const newSize = integer(o.new_size, `${where}.new_size`, 1n, MAX_TREE_SIZE);
    const path = v3 ? hashString(o.path, `${where}.path`, MAX_PATH) : hashes(o.path, `${where}.path`, MAX_PATH);
    return { log, oldSize: norm(oldSize), newSize: norm(newSize), path };
  });
}

function parseLogs(value) {
  const items = list(value, 'logs', MAX_RECORDS);
  const out = [];
  const seen = new Set();
  let budget = MAX_RECORDS;
  let inflated = MAX_INFLATED_BYTES;
  items.forEach((o, i) => {
    const where = `logs[${i}]`;
    members(o, where, ['log', 'runs', 'records']);
    const log = origin(o.log, `${where}.log`);
    if (seen.has(log)) throw fail(`${where}.log`, 'a log appears at most once in logs');
    seen.add(log);
    const rs = runs(o.runs, `${where}.runs`, MAX_INDEX + 1n, budget, 'records', MAX_RECORDS);
    const count = rs.reduce((a, [, n]) => a + n, 0);
    budget -= count;
    const packed = b64(o.records, `${where}.records`, 1, MAX_BUNDLE_BYTES);
    if (packed.length < MIN_PACKED_BYTES_PER_RECORD * count) {
      throw fail(
        `${where}.records`,
        `fewer than ${MIN_PACKED_BYTES_PER_RECORD} compressed bytes per record (want at least ${MIN_PACKED_BYTES_PER_RECORD * count} for ${count} records)`,
      );
    }
    const cap = Math.min(inflated, count * 1026);
    let r;
    try {
      r = inflateRaw(packed, cap);
    } catch (e) {
      if (e instanceof InflateError) throw fail(`${where}.records`, `not a valid raw DEFLATE stream or too large: ${e.message}`);
      throw e;
    }
    if (!r.eof) throw fail(`${where}.records`, 'the DEFLATE stream is truncated (no final block)');
    if (r.end !== packed.length) throw fail(`${where}.records`, 'bytes after the end of the DEFLATE stream');
    const blob = r.out;
    inflated -= blob.length;
    const raws = splitRecords(blob, count, `${where}.records`);
    const indexes = expand(rs);
    for (let k = 0; k < raws.length; k++) out.push({ log, index: indexes[k], raw: raws[k] });
  });
  return out;
}

function splitRecords(blob, count, where) {
  const out = [];
  let pos = 0;
  const end = blob.length;
  for (let k = 0; k < count; k++) {
    if (pos + 2 > end) throw fail(where, `holds ${k} records, fewer than its runs count`);
    const n = (blob[pos] << 8) | blob[pos + 1];
    pos += 2;
    if (n < MIN_RECORD_BYTES || n > MAX_RECORD_BYTES) {
      throw fail(`${where} (record ${k})`, `want ${MIN_RECORD_BYTES}..${MAX_RECORD_BYTES} bytes`);
    }
    if (pos + n > end) throw fail(`${where} (record ${k})`, 'cut short: the data ends inside it');
    out.push(blob.slice(pos, pos + n));
    pos += n;
  }
  if (pos !== end) throw fail(where, 'holds more than its runs count (trailing bytes)');
  return out;
}

function parseAnchors(value) {
  const items = list(value, 'anchors', MAX_ANCHORS);
  return items.map((o, i) => {
    const where = `anchors[${i}]`;
    members(o, where, ['log', 'tree_size', 'receipt']);
    const log = origin(o.log, `${where}.log`);
    const size = integer(o.tree_size, `${where}.tree_size`, 1n, MAX_TREE_SIZE);
    const receipt = o.receipt;
    if (!isObject(receipt)) throw fail(`${where}.receipt`, 'want an object');
    let parsed;
    try {
      if (receipt.type === 'local') parsed = { type: 'local', ...parseLocalReceipt(receipt) };
      else if (receipt.type === 'evm') parsed = { type: 'evm', ...parseEvmReceipt(receipt) };
      else throw fail(`${where}.receipt.type`, "want 'local' or 'evm'");
    } catch (e) {
      if (e instanceof BundleError) throw e;
      throw fail(`${where}.receipt`, e.message);
    }
    return { log, treeSize: norm(size), receipt, parsed };
  });
}
