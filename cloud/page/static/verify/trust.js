// The trust file, version 2 (§10): what a verifier pins. Parsed as protocol/trust.py;
// every refusal is TrustError (malformed_trust). Scopes and authorities as
// protocol/scope.py: a pattern's `*` matches any run of characters, specificity is the
// number of other characters, the most specific registry wins, a tie means none.

import { evmAddress } from './anchor.js';
import { ID_RE, importP256 } from './cose.js';
import { ALG_COSIGNATURE_V1, ALG_ED25519, importEd25519, parseVkey } from './note.js';
import { onP256 } from './record.js';
import { parseStrict, StrictJSONError, isObject, typeName } from './strictjson.js';
import { b64decode, codePoints, utf8 } from './util.js';

export const MAX_TRUST_BYTES = 1024 * 1024;
export class TrustError extends Error {
  constructor(message) {
    super(message);
    this.code = 'malformed_trust';
  }
}
const ORIGIN_RE = /^[\x21-\x2a\x2c-\x7e]{1,128}$/;
const CONTROL = /[\x00-\x1f\x7f-\x9f]/;
const MAX_UINT64 = (1n << 64n) - 1n;
const fail = (where, message) => new TrustError(`trust file ${where}: ${message}`);

function members(value, where, allowed, required = allowed) {
  if (!isObject(value)) throw fail(where, `want an object, not ${typeName(value)}`);
  for (const k of Object.keys(value)) if (!allowed.includes(k)) throw fail(where, `unknown member ${JSON.stringify(k)}`);
  for (const k of required) if (!(k in value)) throw fail(where, `missing member ${JSON.stringify(k)}`);
  return value;
}
function list(doc, name) {
  const v = name in doc ? doc[name] : [];
  if (!Array.isArray(v)) throw fail(name, 'want a list');
  return v;
}
function id(value, where) {
  if (typeof value !== 'string' || !ID_RE.test(value)) throw fail(where, 'not an id (1-32 bytes of [a-z0-9._-], first a letter or digit)');
  return value;
}
function origin(value, where) {
  if (typeof value !== 'string' || !ORIGIN_RE.test(value)) throw fail(where, "not an origin (1-128 bytes of printable ASCII, no '+')");
  return value;
}
function keyBytes(value, where) {
  if (typeof value !== 'string') throw fail(where, 'want a base64 string');
  const raw = b64decode(value);
  if (raw === null) throw fail(where, 'not canonical standard base64');
  return raw;
}
function p256(value, where) {
  const raw = keyBytes(value, where);
  if (raw.length !== 65) throw fail(where, 'P-256 public key has the wrong length');
  if (raw[0] !== 0x04) throw fail(where, 'P-256 public key is not an uncompressed SEC1 point');
  if (!onP256(raw)) throw fail(where, 'P-256 public key is not on the curve');
  const p = importP256(raw);
  p.catch(() => {});
  return { raw, cryptoKey: p };
}
function vkey(value, where, alg) {
  if (typeof value !== 'string') throw fail(where, 'want a vkey string');
  let v;
  try {
    v = parseVkey(value, alg);
  } catch (e) {
    throw fail(where, `bad ${alg === ALG_ED25519 ? '' : 'witness '}vkey: ${e.message}`);
  }
  if (!ORIGIN_RE.test(v.name)) throw fail(where, 'a vkey name here has the origin syntax (§1)');
  return v;
}
function patterns(value, where) {
  if (!Array.isArray(value)) throw fail(where, 'want a list of patterns');
  value.forEach((p, i) => {
    const w = `${where}[${i}]`;
    if (typeof p !== 'string') throw fail(w, 'want a pattern (a string)');
    const n = utf8(p).length;
    if (n < 1 || n > 128) throw fail(w, 'a pattern is 1..128 bytes');
    if (CONTROL.test(p)) throw fail(w, 'holds a control character');
  });
  return value.slice();
}

// --- scopes (§10, protocol/scope.py) ---------------------------------------------------

export function specificity(pattern) {
  return codePoints(pattern) - pattern.split('*').length + 1;
}
export function patternMatches(pattern, text) {
  const pieces = pattern.split('*');
  if (pieces.length === 1) return pattern === text;
  const first = pieces[0], last = pieces[pieces.length - 1];
  let pos = first.length;
  const end = text.length - last.length;
  if (end < pos || !text.startsWith(first) || !text.endsWith(last)) return false;
  for (const piece of pieces.slice(1, -1)) {
    if (!piece) continue;
    const found = text.indexOf(piece, pos);
    if (found < 0 || found + piece.length > end) return false;
    pos = found + piece.length;
  }
  return true;
}
/** The registry whose matching pattern is the most specific, or null (none, or a tie). */
export function authority(scopes /* [[registry, patterns]] */, text) {
  let best = -1, winner = null, tied = false;
  for (const [registry, pats] of scopes) {
    let mine = -1;
    for (const p of pats) if (patternMatches(p, text)) mine = Math.max(mine, specificity(p));
    if (mine < 0) continue;
    if (mine > best) {
      best = mine;
      winner = registry;
      tied = false;
    } else if (mine === best && registry !== winner) tied = true;
  }
  return tied ? null : winner;
}

/** The parsed trust file (the object verdict.js receives as `trust`). */
export class Trust {
  constructor() {
    this.logs = []; // parsed vkeys (type 0x01)
    this.registries = new Map(); // id -> {raw, cryptoKey}
    this.scopes = new Map(); // id -> {devices, places, gtins}
    this.ledgers = new Map(); // ledger id -> Promise<CryptoKey> (Ed25519)
    this.evm = []; // {chainId (BigInt), contract (lowercase)}
    this.devices = new Map(); // device id -> {raw, cryptoKey}
    this.witnesses = []; // parsed vkeys (type 0x04)
    this.quorum = 0;
  }
  _auth(kind, text) {
    return authority([...this.scopes].map(([r, s]) => [r, s[kind]]), text);
  }
  deviceAuthority(device) {
    return this._auth('devices', device);
  }
  placeAuthority(place) {
    return this._auth('places', place);
  }
  gtinAuthority(gtin) {
    return this._auth('gtins', gtin);
  }
}

export function parseTrustBytes(bytes) {
  let doc;
  try {
    doc = parseStrict(bytes, { limit: MAX_TRUST_BYTES, what: 'trust file' });
  } catch (e) {
    if (e instanceof StrictJSONError) throw new TrustError(e.message);
    throw e;
  }
  return parseTrust(doc);
}

export function parseTrust(doc) {
  const TOP = ['format', 'version', 'logs', 'registries', 'ledgers', 'devices', 'witnesses', 'quorum'];
  const top = members(doc, '(top level)', TOP, ['format', 'version']);
  if (top.format !== 'coldtrace-trust') throw fail('format', "not a ColdTrace trust file: want 'coldtrace-trust'");
  if (top.version !== 2) {
    if (top.version === 1) throw new TrustError('version 1 trust files are not supported by this verifier (protocol v2): rewrite it with registry scopes');
    throw fail('version', 'want the integer 2');
  }
  const t = new Trust();
  const origins = new Set();
  list(top, 'logs').forEach((item, i) => {
    const where = `logs[${i}]`;
    const o = members(item, where, ['origin', 'vkey']);
    const og = origin(o.origin, `${where}.origin`);
    const v = vkey(o.vkey, `${where}.vkey`, ALG_ED25519);
    if (v.name !== og) throw fail(`${where}.vkey`, `the key's name must be the origin ${JSON.stringify(og)}`);
    if (origins.has(og)) throw fail(where, 'log origin pinned twice');
    origins.add(og);
    t.logs.push(v);
  });
  list(top, 'registries').forEach((item, i) => {
    const where = `registries[${i}]`;
    const o = members(item, where, ['id', 'key', 'devices', 'places', 'gtins']);
    const rid = id(o.id, `${where}.id`);
    const key = p256(o.key, `${where}.key`);
    const scopes = {
      devices: patterns(o.devices, `${where}.devices`),
      places: patterns(o.places, `${where}.places`),
      gtins: patterns(o.gtins, `${where}.gtins`),
    };
    if (t.registries.has(rid)) throw fail(where, 'registry id pinned twice');
    t.registries.set(rid, key);
    t.scopes.set(rid, scopes);
  });
  const contracts = new Set();
  list(top, 'ledgers').forEach((item, i) => {
    const where = `ledgers[${i}]`;
    const kind = isObject(item) ? item.type : undefined;
    if (kind === 'local') {
      const o = members(item, where, ['type', 'id', 'key']);
      const lid = origin(o.id, `${where}.id`);
      const raw = keyBytes(o.key, `${where}.key`);
      if (raw.length !== 32) throw fail(`${where}.key`, 'an Ed25519 key is 32 bytes');
      if (t.ledgers.has(lid)) throw fail(where, 'ledger id pinned twice');
      t.ledgers.set(lid, importEd25519(raw));
    } else if (kind === 'evm') {
      const o = members(item, where, ['type', 'chain_id', 'contract']);
      const c = o.chain_id;
      if ((typeof c !== 'number' && typeof c !== 'bigint') || BigInt(c) < 1n || BigInt(c) > MAX_UINT64) throw fail(`${where}.chain_id`, 'want an integer in 1..2^64-1');
      let contract;
      try {
        contract = evmAddress(o.contract);
      } catch (e) {
        throw fail(`${where}.contract`, e.message);
      }
      const k = `${BigInt(c)}:${contract}`;
      if (contracts.has(k)) throw fail(where, 'EVM contract pinned twice');
      contracts.add(k);
      t.evm.push({ chainId: BigInt(c), contract });
    } else {
      members(item, where, ['type', 'id', 'key', 'chain_id', 'contract'], ['type']);
      throw fail(`${where}.type`, "want 'local' or 'evm'");
    }
  });
  list(top, 'devices').forEach((item, i) => {
    const where = `devices[${i}]`;
    const o = members(item, where, ['id', 'key']);
    const did = id(o.id, `${where}.id`);
    const key = p256(o.key, `${where}.key`);
    if (t.devices.has(did)) throw fail(where, 'device id pinned twice');
    t.devices.set(did, key);
  });
  const wseen = new Set();
  list(top, 'witnesses').forEach((item, i) => {
    const where = `witnesses[${i}]`;
    const o = members(item, where, ['vkey']);
    const w = vkey(o.vkey, `${where}.vkey`, ALG_COSIGNATURE_V1);
    if (wseen.has(w.vkey)) throw fail(where, 'witness key pinned twice');
    wseen.add(w.vkey);
    t.witnesses.push(w);
  });
  const quorum = 'quorum' in top ? top.quorum : 0;
  if (typeof quorum !== 'number' || quorum < 0 || quorum > t.witnesses.length) {
    throw fail('quorum', `want an integer in 0..${t.witnesses.length} (the witnesses)`);
  }
  t.quorum = quorum;
  if (!(t.logs.length || t.registries.size || t.ledgers.size || t.evm.length || t.devices.size)) {
    throw new TrustError('trust file pins no keys: nothing could be verified against it');
  }
  return t;
}
