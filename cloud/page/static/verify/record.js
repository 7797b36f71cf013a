// Record payloads (§2), the chain hash (§4) and records (§3): openRecord checks the
// envelope and the payload, NOT the signature (verifySign1 in cose.js does that).
//
// payloadFields — what a decoded payload object holds (the names of the Python
// dataclasses of protocol/record.py, which verdict.js relies on):
//
//   every kind:  kind, boot, seq, time, tq (Numbers), prev (Uint8Array, 16 bytes),
//                extensions (a Map: integer key >= 1000 -> Number | Uint8Array | string;
//                an extension integer beyond ±(2^53 - 1) — §2 allows any 64-bit
//                integer there — is the one place a BigInt can appear; no field
//                the verdict reads is ever a BigInt: every bound of §2.1-§2.7 fits 2^53)
//   1 Reading:       temp rh fault ch cal batt alarm                     (Numbers or null)
//   2 Scan:          uid (Uint8Array) action (Number) place (string) sun (Uint8Array|null)
//                    item (string|null) parent (Uint8Array|null) ref (string|null)
//                    link (Uint8Array|null) batt (Number|null)
//   3 Status:        event uptime fw(string) queued free rssi reset detail lost batt
//   4 Registration:  device (string) key (Uint8Array, 65) role org (string) state cal
//   5 Binding:       cseq cprev (Uint8Array) target (string) devices (string|null)
//   6 ProductProfile: cseq cprev gtin (string) delay gap lot (string|null) low high
//                    cumul mkt lots links (Numbers|null) name (string|null)
//   7 ReadingBlock:  ivl (Number) temps (Uint8Array) rhs (Uint8Array|null) ch cal batt alarm;
//                    blockReadings(p) expands it into kind-1 readings (§2.8)
//
// Absent optional fields are null (so `ch` absent and `ch = 0` stay distinct).
// Every refusal is VError('malformed_record') naming the rule.

import { decode } from './cbor.js';
import { ID_RE, parseSign1 } from './cose.js';
import { sha256 } from './sha256.js';
import { VError, bytesEqual, codePoints, toHex, utf8 } from './util.js';

export const KIND_READING = 1, KIND_SCAN = 2, KIND_STATUS = 3;
export const KIND_REGISTRATION = 4, KIND_BINDING = 5, KIND_PROFILE = 6, KIND_BLOCK = 7;
export const REGISTRY_KINDS = new Set([4, 5, 6]);
export const STATEMENT_KINDS = new Set([5, 6]);
export const ACTION_COMMISSION = 1;
export const STATE_REVOKED = 2;
export const EVENT_RECORDS_DROPPED = 11;
export const ZERO_PREV = new Uint8Array(16);
export const MAX_PAYLOAD_SIZE = 512;
const U32 = 2 ** 32 - 1;

const bad = (m, extra) => new VError('malformed_record', m, extra);

const UINT = 0, INT = 1, BSTR = 2, BSTR_SET = 3, TSTR = 4;
const UID_LENGTHS = new Set([4, 7, 10]);
const COMMON = { 2: ['boot', UINT, 0, U32], 3: ['seq', UINT, 0, U32], 4: ['time', UINT, 0, U32], 5: ['tq', UINT, 0, 3], 6: ['prev', BSTR, 16, 16] };
const BATT = ['batt', UINT, 0, 20000];
const STATEMENT = { 7: ['cseq', UINT, 0, U32], 8: ['cprev', BSTR, 16, 16] };
const KIND_FIELDS = {
  1: { 10: ['temp', INT, -10000, 15000], 11: ['rh', UINT, 0, 10000], 12: ['fault', UINT, 1, 255], 13: ['ch', UINT, 0, 15], 14: ['cal', UINT, 0, U32], 15: BATT, 16: ['alarm', UINT, 0, 7] },
  2: { 15: BATT, 20: ['uid', BSTR_SET, UID_LENGTHS, 0], 21: ["action", UINT, 1, 7], 22: ['place', TSTR, 1, 64], 23: ['sun', BSTR, 24, 24], 24: ['item', TSTR, 1, 128], 25: ['parent', BSTR_SET, UID_LENGTHS, 0], 26: ['ref', TSTR, 1, 64], 27: ['link', BSTR, 16, 16] },
  3: { 15: BATT, 30: ['event', UINT, 1, 255], 31: ['uptime', UINT, 0, U32], 32: ['fw', TSTR, 1, 32], 33: ['queued', UINT, 0, U32], 34: ['free', UINT, 0, U32], 35: ['rssi', INT, -128, 0], 36: ['reset', UINT, 0, 255], 37: ['detail', INT, -(2 ** 31), U32], 38: ['lost', UINT, 0, U32], 39: ['fwv', UINT, 0, U32] },
  4: { 14: ['cal', UINT, 0, U32], 40: ['device', TSTR, 1, 32], 41: ['key', BSTR, 65, 65], 42: ['role', UINT, 1, 2], 43: ['org', TSTR, 1, 64], 45: ['state', UINT, 1, 2] },
  5: { ...STATEMENT, 50: ['target', TSTR, 1, 64], 51: ['devices', TSTR, 1, 128] },
  7: { 13: ['ch', UINT, 0, 15], 14: ['cal', UINT, 0, U32], 15: BATT, 16: ['alarm', UINT, 0, 7], 17: ['ivl', UINT, 1, 86400], 18: ['temps', BSTR, 2, 128], 19: ['rhs', BSTR, 2, 128] },
  6: { ...STATEMENT, 60: ['gtin', TSTR, 14, 14], 61: ['lot', TSTR, 1, 20], 62: ['low', INT, -10000, 15000], 63: ['high', INT, -10000, 15000], 64: ['delay', UINT, 0, U32], 65: ['cumul', UINT, 1, U32], 66: ['mkt', INT, -10000, 15000], 67: ['gap', UINT, 60, 86400], 68: ['lots', UINT, 1, 1], 69: ['links', UINT, 1, 1], 70: ['name', TSTR, 1, 32] },
};
const SPECS = {};
for (const k of [1, 2, 3, 4, 5, 6, 7]) SPECS[k] = { ...COMMON, ...KIND_FIELDS[k] };
const KIND_NAMES = { 1: 'reading', 2: 'scan', 3: 'status', 4: 'registration', 5: 'binding', 6: 'profile', 7: 'reading block' };
// the fields of each kind, in the dataclass order (all null when absent)
const FIELD_NAMES = {
  1: ['temp', 'rh', 'fault', 'ch', 'cal', 'batt', 'alarm'],
  2: ['uid', 'action', 'place', 'sun', 'item', 'parent', 'ref', 'link', 'batt'],
  3: ['event', 'uptime', 'fw', 'queued', 'free', 'rssi', 'reset', 'detail', 'lost', 'fwv', 'batt'],
  4: ['device', 'key', 'role', 'org', 'state', 'cal'],
  5: ['cseq', 'cprev', 'target', 'devices'],
  6: ['cseq', 'cprev', 'gtin', 'delay', 'gap', 'lot', 'low', 'high', 'cumul', 'mkt', 'lots', 'links', 'name'],
  7: ['ivl', 'temps', 'rhs', 'ch', 'cal', 'batt', 'alarm'],
};
const REQUIRED = {
  1: [],
  2: ['uid', 'action', 'place'],
  3: ['event'],
  4: ['device', 'key', 'role', 'org', 'state'],
  5: ['cseq', 'cprev', 'target'],
  6: ['cseq', 'cprev', 'gtin', 'delay', 'gap'],
  7: ['ivl', 'temps'],
};
const COMMON_REQUIRED = ['boot', 'seq', 'time', 'tq', 'prev'];
const CONTROL = /[\x00-\x1f\x7f-\x9f]/;
const GTIN_RE = /^[0-9]{14}$/;
const LOT_RE = /^[!"%&'()*+,\-./0-9:;<=>?A-Z_a-z]{1,20}$/;

const isIntVal = (v) => typeof v === 'bigint' || typeof v === 'number';

function checkText(value, what) {
  const m = CONTROL.exec(value);
  if (m) {
    throw bad(`${what} contains a control character`, {
      expected: 'no U+0000-U+001F, U+007F-U+009F',
      found: `U+${m[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')} at character ${codePoints(value.slice(0, m.index))}`,
    });
  }
}

/** Python's _type_name of a decoded value, for messages. */
function typeName(v) {
  if (typeof v === 'number' || typeof v === 'bigint') return v >= 0 ? 'uint' : 'negative int';
  if (v instanceof Uint8Array) return 'bstr';
  if (typeof v === 'string') return 'tstr';
  if (Array.isArray(v)) return 'array';
  if (v instanceof Map) return 'map';
  return 'Tag';
}
const TYPE_NAMES = ['uint', 'int', 'bstr', 'bstr', 'tstr'];
// key -> name over every kind, to say "key 10 (temp) is not a field of a scan"
const ALL_NAMES = {};
for (const k of [1, 2, 3, 4, 5, 6, 7]) for (const [key, f] of Object.entries(KIND_FIELDS[k])) ALL_NAMES[key] = f[0];
const keyOf = (kind, name) => (name === 'kind' ? 1 : Number(Object.keys(SPECS[kind]).find((k) => SPECS[kind][k][0] === name)));
const pyRepr = (text) => (text.includes("'") && !text.includes('"') ? `"${text}"` : `'${text.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`);

function checkExtension(key, value) {
  if (isIntVal(value)) return value;
  if (value instanceof Uint8Array || typeof value === 'string') {
    const size = typeof value === 'string' ? utf8(value).length : value.length;
    if (size > 64) throw bad(`extension ${key} too long`, { expected: '<= 64 bytes', found: `${size} bytes` });
    if (typeof value === 'string') checkText(value, `extension ${key}`);
    return value;
  }
  throw bad(`extension ${key} has the wrong type`, { expected: 'int, bstr or tstr', found: typeName(value) });
}

/** Decode and check a record payload (§2) from its exact bytes. */
export function decodePayload(data) {
  const m = decode(data, { maxSize: MAX_PAYLOAD_SIZE, maxDepth: 1 });
  if (!(m instanceof Map)) throw bad('payload must be a map', { expected: 'map', found: typeName(m) });
  if (!m.has(1)) throw bad('payload has no kind (key 1)', { expected: 'kind', found: 'absent' });
  const kind = m.get(1);
  const spec = typeof kind === 'number' ? SPECS[kind] : undefined;
  if (spec === undefined) {
    if (!isIntVal(kind) || kind < 0) throw bad('kind must be a uint', { expected: 'uint', found: typeName(kind) });
    throw bad('unknown record kind', { expected: '1..7', found: kind });
  }
  const values = {};
  const extensions = new Map();
  for (const [key, value] of m) {
    if (key === 1) continue;
    const f = spec[key];
    if (f === undefined) {
      if (key >= 1000) {
        extensions.set(typeof key === 'bigint' ? key : key, checkExtension(key, value));
        continue;
      }
      if (key < 0) throw bad(`payload key ${key} is negative`, { expected: 'unsigned integer keys', found: key });
      const other = ALL_NAMES[key];
      const where = other ? ` (${other}) is not a field of a ${KIND_NAMES[kind]}` : '';
      throw bad(`unknown critical field ${key}${where}`, { expected: `keys of kind ${kind} (${KIND_NAMES[kind]}) or >= 1000`, found: key });
    }
    const [name, check, lo, hi] = f;
    if (check === UINT || check === INT) {
      if (!isIntVal(value) || (check === UINT && value < 0)) {
        throw bad(`${name} (key ${key}) has the wrong type`, { expected: TYPE_NAMES[check], found: typeName(value) });
      }
      if (typeof value === 'bigint' || value < lo || value > hi) throw bad(`${name} (key ${key}) out of range`, { expected: `${lo}..${hi}`, found: value });
    } else if (check === TSTR) {
      if (typeof value !== 'string') throw bad(`${name} (key ${key}) has the wrong type`, { expected: 'tstr', found: typeName(value) });
      const size = utf8(value).length;
      if (size < lo || size > hi) throw bad(`${name} (key ${key}) has the wrong length`, { expected: `${lo}..${hi} bytes`, found: `${size} bytes` });
      checkText(value, `${name} (key ${key})`);
    } else {
      if (!(value instanceof Uint8Array)) throw bad(`${name} (key ${key}) has the wrong type`, { expected: 'bstr', found: typeName(value) });
      const size = value.length;
      if ((check === BSTR && (size < lo || size > hi)) || (check === BSTR_SET && !lo.has(size))) {
        const want = check === BSTR ? `${lo}..${hi}` : [...lo].sort((a, b) => a - b).join(' or ');
        throw bad(`${name} (key ${key}) has the wrong length`, { expected: `${want} bytes`, found: `${size} bytes` });
      }
    }
    values[name] = value;
  }
  for (const name of [...COMMON_REQUIRED, ...REQUIRED[kind]]) {
    if (!(name in values)) throw bad(`${KIND_NAMES[kind]} lacks required field ${name} (key ${keyOf(kind, name)})`, { expected: name, found: 'absent' });
  }
  RULES[kind](values);
  const p = { kind, boot: values.boot, seq: values.seq, time: values.time, tq: values.tq, prev: values.prev };
  for (const name of FIELD_NAMES[kind]) p[name] = name in values ? values[name] : null;
  p.extensions = extensions;
  return p;
}

function registryRules(v, kind) {
  if (v.boot !== 0) throw bad(`a ${KIND_NAMES[kind]}'s boot must be 0 (registries do not reboot)`, { expected: 0, found: v.boot });
}
function statementRules(v, kind) {
  registryRules(v, kind);
  if (v.tq < 1) throw bad(`a ${KIND_NAMES[kind]}'s time is its effective time: tq (key 5) must be >= 1`, { expected: '>= 1', found: v.tq });
  if (v.cseq === 0 && !bytesEqual(v.cprev, ZERO_PREV)) {
    throw bad('cprev (key 8) of the first statement of a chain (cseq 0) must be 16 zero bytes', { expected: toHex(ZERO_PREV), found: toHex(v.cprev) });
  }
}

export function gtinCheckDigit(digits13) {
  let total = 0;
  for (let i = 0; i < 13; i++) total += Number(digits13[12 - i]) * (i % 2 === 0 ? 3 : 1);
  return (10 - (total % 10)) % 10;
}

const RULES = {
  1(v) {
    const t = 'temp' in v, f = 'fault' in v;
    if (t && f) throw bad('a reading carries either temp or fault, not both', { expected: 'temp xor fault', found: 'temp and fault' });
    if (!t && !f) throw bad('a reading needs temp (key 10) or fault (key 12)', { expected: 'temp xor fault', found: 'neither' });
    if (f && 'rh' in v) throw bad('rh may accompany temp, never fault', { expected: 'no rh with fault', found: 'rh and fault' });
  },
  2(v) {
    if (v.action === ACTION_COMMISSION) {
      if (!('item' in v)) throw bad('a commission scan needs item (key 24)', { expected: 'item', found: 'absent' });
      if ('link' in v) {
        throw bad('a commission scan carries no custody link (key 27): the tag has none yet', { expected: 'no link with action 1', found: 'link' });
      }
    }
  },
  3(v) {
    if (!('lost' in v)) return;
    if (v.event !== EVENT_RECORDS_DROPPED) throw bad('lost (key 38) belongs to event 11 only', { expected: 'event 11', found: `event ${v.event}` });
    if (!('detail' in v)) throw bad('a declaration of lost records needs detail (key 37), the count', { expected: 'detail', found: 'absent' });
    if (v.detail < 1) throw bad('detail (key 37) of a declaration of lost records is a count of at least 1', { expected: '>= 1', found: v.detail });
    const last = v.lost + v.detail - 1;
    if (last >= v.seq) {
      throw bad(`declares seqs ${v.lost}..${last} lost, but its own seq is ${v.seq}: a device can only lose seqs it has already numbered`, {
        expected: `lost + detail - 1 < ${v.seq}`,
        found: last,
      });
    }
  },
  4(v) {
    registryRules(v, 4);
    if (!ID_RE.test(v.device)) {
      throw bad('device (key 40) is not a valid device id (§1)', { expected: '1-32 bytes of [a-z0-9._-], starting with a letter or digit', found: v.device });
    }
    if (v.key[0] !== 0x04 || !onP256(v.key)) {
      throw bad('key (key 41) is not an uncompressed SEC1 P-256 point', { expected: '0x04 ‖ X ‖ Y on P-256', found: toHex(v.key.subarray(0, 1)) + '…' });
    }
  },
  5(v) {
    statementRules(v, 5);
    if (!('devices' in v)) return;
    const ids = v.devices.split(' ');
    for (let i = 0; i < ids.length; i++) {
      if (!ID_RE.test(ids[i])) throw bad(`devices (key 51): entry ${i} is not a valid device id (§1)`, { expected: 'device ids separated by single spaces', found: ids[i] });
      if (i && !(ids[i - 1] < ids[i])) {
        throw bad('devices (key 51) must be strictly ascending (so each id once)', { expected: `an id after ${pyRepr(ids[i - 1])}`, found: ids[i] });
      }
    }
  },
  6(v) {
    statementRules(v, 6);
    const gtin = v.gtin;
    if (!GTIN_RE.test(gtin)) throw bad('gtin (key 60) must be 14 ASCII digits', { expected: '14 digits', found: gtin });
    const check = gtinCheckDigit(gtin.slice(0, 13));
    if (Number(gtin[13]) !== check) throw bad('gtin (key 60) has a wrong GS1 check digit', { expected: check, found: Number(gtin[13]) });
    if ('lot' in v && !LOT_RE.test(v.lot)) {
      throw bad("lot (key 61) holds a character outside GS1 AI (10)'s set (CSET 82)", { expected: `[!"%&'()*+,-./0-9:;<=>?A-Z_a-z]`, found: v.lot });
    }
    const low = 'low' in v ? v.low : null, high = 'high' in v ? v.high : null;
    if (low === null && high === null) throw bad('a profile needs low (key 62), high (key 63) or both', { expected: 'low or high', found: 'neither' });
    if (low !== null && high !== null && low > high) throw bad("a profile's low (key 62) is above its high (key 63)", { expected: `low <= ${high}`, found: low });
    if ('lot' in v && 'lots' in v) throw bad('lots (key 68) belongs to a profile without lot (key 61)', { expected: 'lots or lot, not both', found: 'lot and lots' });
  },
};

// §2.8: a temperature slot 0x80 c is fault code c; an rh slot 0xFFFF is no rh.
const SLOT_FAULT = 0x80, RH_NONE = 0xffff;
const TEMP_SLOT = '-10000..15000 or 0x80 followed by a fault code 1..255';
const int16 = (b, k) => ((b[k] << 8) | b[k + 1]) << 16 >> 16;

RULES[7] = function blockRules(v) {
  const temps = v.temps, size = temps.length;
  if (size % 2) throw bad('temps (key 18) holds 2-byte slots: its length must be even', { expected: 'an even length, 2..128 bytes', found: `${size} bytes` });
  const n = size / 2;
  const end = v.time + (n - 1) * v.ivl;
  if (end > U32) throw bad("a block's last reading time (time + (N - 1) * ivl) must be below 2^32", { expected: `<= ${U32}`, found: end });
  for (let i = 0; i < n; i++) {
    if (temps[2 * i] === SLOT_FAULT) {
      if (temps[2 * i + 1] === 0) throw bad(`temps (key 18) slot ${i} is 0x8000: neither a temperature nor a fault`, { expected: TEMP_SLOT, found: '0x8000' });
      continue;
    }
    const t = int16(temps, 2 * i);
    if (t < -10000 || t > 15000) throw bad(`temps (key 18) slot ${i} is out of range`, { expected: TEMP_SLOT, found: t });
  }
  if (!('rhs' in v)) return;
  const rhs = v.rhs;
  if (rhs.length !== size) throw bad('rhs (key 19) must have one slot per reading: the length of temps (key 18)', { expected: `${size} bytes`, found: `${rhs.length} bytes` });
  let some = false;
  for (let i = 0; i < n; i++) {
    const h = (rhs[2 * i] << 8) | rhs[2 * i + 1];
    if (h === RH_NONE) continue;
    if (h > 10000) throw bad(`rhs (key 19) slot ${i} is out of range`, { expected: '0..10000 or 0xFFFF (no rh)', found: h });
    if (temps[2 * i] === SLOT_FAULT) throw bad(`rhs (key 19) slot ${i} has a humidity for a faulted reading`, { expected: '0xFFFF (rh never accompanies a fault)', found: h });
    some = true;
  }
  if (!some) throw bad('rhs (key 19) has no humidity in any slot: omit it (one encoding per block)', { expected: 'at least one slot 0..10000', found: 'every slot 0xFFFF' });
};

/** The temperature of each reading of a block (§2.8), in order; null for a faulted slot. */
export function blockTemps(p) {
  const out = [];
  for (let k = 0; k < p.temps.length; k += 2) out.push(p.temps[k] === SLOT_FAULT ? null : int16(p.temps, k));
  return out;
}

/**
 * A block's readings as kind-1 payloads (§2.8): reading i at time + i × ivl, with the block's
 * boot, seq, tq, prev, ch and cal, and the temp or fault and rh of its slots.
 */
export function blockReadings(p) {
  const out = [];
  for (let i = 0; i < p.temps.length / 2; i++) {
    const fault = p.temps[2 * i] === SLOT_FAULT ? p.temps[2 * i + 1] : null;
    const h = p.rhs === null ? RH_NONE : (p.rhs[2 * i] << 8) | p.rhs[2 * i + 1];
    out.push({
      kind: KIND_READING, boot: p.boot, seq: p.seq, time: p.time + i * p.ivl, tq: p.tq, prev: p.prev,
      temp: fault === null ? int16(p.temps, 2 * i) : null, rh: h === RH_NONE ? null : h, fault,
      ch: p.ch, cal: p.cal, batt: null, alarm: null, extensions: new Map(),
    });
  }
  return out;
}

const P = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn;
const B = 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604bn;
function big(bytes) {
  return BigInt('0x' + toHex(bytes));
}
/** Whether 04 ‖ X ‖ Y is a point of P-256: x, y < p and y² = x³ − 3x + b (mod p). */
export function onP256(sec1) {
  if (sec1.length !== 65 || sec1[0] !== 0x04) return false;
  const x = big(sec1.subarray(1, 33));
  const y = big(sec1.subarray(33, 65));
  if (x >= P || y >= P) return false;
  return (((y * y - (x * x * x - 3n * x + B)) % P) + P) % P === 0n;
}

/** chain_hash(R): the first 16 bytes of SHA-256 of the whole record (§4). */
export function chainHash(raw) {
  return sha256(raw).subarray(0, 16);
}

/** The statement chain of a binding or profile (§4.2), as a string key and its parts. */
export function statementChainKey(signer, p) {
  if (p.kind === KIND_BINDING) return ['binding', signer, p.target];
  return ['profile', signer, p.gtin, p.lot];
}

/**
 * Check a record's envelope (§3) and payload (§2), not its signature. Returns
 * {raw, signer, payload, msg} where msg is the parsed COSE_Sign1 (for verifySign1).
 */
export function openRecord(raw) {
  const msg = parseSign1(raw);
  return { raw, signer: msg.kid, payload: decodePayload(msg.payload), msg };
}
