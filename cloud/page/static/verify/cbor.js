// A strict decoder of deterministic CBOR (RFC 8949 §4.2.1), the subset of §2:
// shortest heads, definite lengths, integer map keys once each in ascending bytewise
// order, no floats, no simple values, no tags (unless allowed), valid UTF-8 text,
// bounded depth, exactly one item. Every refusal is a VError('malformed_record').
//
// Values: integers as Numbers when they are safe integers (|n| <= 2^53 - 1), else
// BigInt; byte strings as Uint8Array (views into the input); text as strings; arrays;
// maps as Map with integer keys in encoded order.

import { VError, fromUtf8 } from './util.js';

const bad = (message, extra) => new VError('malformed_record', message, extra);
// Python's TruncatedError messages (protocol/cbor.py), for the same report
const ended = (n) => bad('CBOR input ends inside an item', { expected: 'more bytes', found: `${n} bytes` });
export const truncated = (pos, need, n) =>
  bad(`CBOR input ends inside an item at offset ${pos}`, { expected: `${need} more bytes`, found: `${n - pos} bytes` });
const nonCanonical = (pos, width, arg) =>
  bad(`head at offset ${pos} not in shortest form`, { expected: `shortest head for ${arg}`, found: `${width}-byte argument` });
const NAMES = ['uint', 'negative int', 'bstr', 'tstr', 'array', 'map', 'tag', 'simple/float'];

export class Tag {
  constructor(tag, value) {
    this.tag = tag;
    this.value = value;
  }
}

// The decoder's position: decodeAt() returns the value and leaves the offset after it here
// (no [value, pos] pair allocated per item: a 10,000-record bundle decodes 150,000 items).
let POS = 0;

function readArg(data, pos, ai, start) {
  // returns the argument (Number or BigInt) and sets POS after the head
  if (ai < 24) {
    POS = pos;
    return ai;
  }
  if (ai === 24) {
    if (pos >= data.length) throw ended(data.length);
    const v = data[pos];
    if (v < 24) throw nonCanonical(start, 1, v);
    POS = pos + 1;
    return v;
  }
  if (ai === 25) {
    if (pos + 2 > data.length) throw truncated(pos, 2, data.length);
    const v = (data[pos] << 8) | data[pos + 1];
    if (v < 0x100) throw nonCanonical(start, 2, v);
    POS = pos + 2;
    return v;
  }
  if (ai === 26) {
    if (pos + 4 > data.length) throw truncated(pos, 4, data.length);
    const v = ((data[pos] << 24) >>> 0) + ((data[pos + 1] << 16) | (data[pos + 2] << 8) | data[pos + 3]);
    if (v < 0x10000) throw nonCanonical(start, 4, v);
    POS = pos + 4;
    return v;
  }
  if (ai === 27) {
    if (pos + 8 > data.length) throw truncated(pos, 8, data.length);
    const hi = ((data[pos] << 24) >>> 0) + ((data[pos + 1] << 16) | (data[pos + 2] << 8) | data[pos + 3]);
    const lo = ((data[pos + 4] << 24) >>> 0) + ((data[pos + 5] << 16) | (data[pos + 6] << 8) | data[pos + 7]);
    const big = (BigInt(hi) << 32n) | BigInt(lo);
    if (hi === 0) throw nonCanonical(start, 8, lo);
    POS = pos + 8;
    return big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
  }
  throw bad(`reserved additional information ${ai} at offset ${start}`);
}

/** Decode the item at `pos`; returns [value, newPos]. */
export function decodeAt(data, pos, depth = 4, tags = null) {
  const v = item(data, pos, depth, tags);
  return [v, POS];
}

function item(data, pos, depth, tags) {
  if (pos >= data.length) throw ended(data.length);
  const start = pos;
  const ib = data[pos++];
  const major = ib >> 5;
  const ai = ib & 31;
  if (major === 7) {
    if (ai >= 25 && ai <= 27) {
      throw bad(`floating-point value at offset ${start}`, { expected: 'integer (fixed-point)', found: `float${16 << (ai - 25)} (0x${hex2(ib)})` });
    }
    if (ai === 31) throw bad(`'break' stop code outside an indefinite-length item at offset ${start}`, { expected: 'a CBOR item', found: '0xff' });
    if (ai >= 28) throw bad(`reserved additional information ${ai} at offset ${start}`, { expected: '0..27', found: ai });
    const names = { 20: 'false', 21: 'true', 22: 'null', 23: 'undefined', 24: 'simple(n)' };
    throw bad(`simple value at offset ${start}`, { expected: 'integer, bstr, tstr, array or map', found: names[ai] || `simple(${ai})` });
  }
  if (ai === 31) {
    if (major >= 2 && major <= 5) throw bad(`indefinite-length ${NAMES[major]} at offset ${start}`, { expected: 'definite length', found: `0x${hex2(ib)}` });
    throw bad(`indefinite marker on ${NAMES[major]} at offset ${start}`, { expected: 'additional information 0..27', found: `0x${hex2(ib)}` });
  }
  if (ai >= 28) throw bad(`reserved additional information ${ai} at offset ${start}`, { expected: '0..27', found: `0x${hex2(ib)}` });
  const arg = readArg(data, pos, ai, start);
  pos = POS;
  if (major === 0) return arg;
  if (major === 1) {
    if (typeof arg === 'bigint') return -1n - arg;
    const v = -1 - arg;
    return Number.isSafeInteger(v) ? v : -1n - BigInt(arg);
  }
  if (major === 2 || major === 3) {
    if (typeof arg === 'bigint' || pos + arg > data.length) throw truncated(pos, arg, data.length);
    const raw = data.subarray(pos, pos + arg);
    POS = pos + arg;
    if (major === 2) return raw;
    let ascii = true;
    for (let i = 0; i < raw.length; i++) if (raw[i] > 0x7f) { ascii = false; break; }
    if (ascii) return String.fromCharCode.apply(null, raw);
    const text = fromUtf8(raw);
    if (text === null) {
      const at = pos + invalidUtf8At(raw);
      throw bad(`text string at offset ${start} is not valid UTF-8`, { expected: 'UTF-8', found: `byte 0x${hex2(data[at])} at offset ${at}` });
    }
    return text;
  }
  if (major === 6 && !(tags && tags.has(arg))) {
    throw bad(`tag ${arg} at offset ${start} not allowed here`, { expected: tags && tags.size ? `[${[...tags].sort((a, b) => a - b).join(', ')}]` : 'no tags', found: arg });
  }
  if (depth <= 0) throw bad(`${NAMES[major]} at offset ${start} nested too deep`, { expected: 'no deeper nesting', found: NAMES[major] });
  if (major === 4) {
    if (typeof arg === 'bigint' || arg > data.length - pos) throw truncated(pos, arg, data.length);
    const items = [];
    for (let k = 0; k < arg; k++) {
      items.push(item(data, pos, depth - 1, tags));
      pos = POS;
    }
    POS = pos;
    return items;
  }
  if (major === 5) {
    if (typeof arg === 'bigint' || 2 * arg > data.length - pos) throw truncated(pos, typeof arg === 'bigint' ? 2n * arg : 2 * arg, data.length);
    const m = new Map();
    let prev = -1;
    for (let k = 0; k < arg; k++) {
      const kpos = pos;
      const kb = data[pos];
      if (kpos >= data.length) throw ended(data.length);
      if (kb >= 0x40) throw bad(`map key at offset ${kpos} is not an integer`, { expected: 'uint or negative int', found: NAMES[kb >> 5] });
      const key = item(data, pos, 0, tags);
      pos = POS;
      // sort key: unsigned keys as themselves, negative keys after every unsigned one
      const skey = typeof key === 'number' && key >= 0 ? key : BigInt(key) >= 0n ? BigInt(key) : (1n << 64n) - 1n - BigInt(key);
      if (skey <= prev) {
        if (skey === prev || (typeof skey !== typeof prev && BigInt(skey) === BigInt(prev))) {
          throw bad(`map key ${key} repeated at offset ${kpos}`, { expected: 'each key once', found: key });
        }
        const before = BigInt(prev) < 1n << 64n ? prev : (1n << 64n) - 1n - BigInt(prev);
        throw bad(`map key ${key} at offset ${kpos} out of order`, { expected: 'keys in ascending bytewise order (RFC 8949 §4.2.1)', found: `${key} after ${before}` });
      }
      prev = skey;
      m.set(key, item(data, pos, depth - 1, tags));
      pos = POS;
    }
    POS = pos;
    return m;
  }
  // an allowed tag
  const v = item(data, pos, depth - 1, tags);
  return new Tag(arg, v);
}

/** Decode exactly one item filling `data`. */
export function decode(data, { maxSize, maxDepth = 4, tags = null }) {
  if (data.length > maxSize) throw bad('CBOR input too large', { expected: `<= ${maxSize} bytes`, found: data.length });
  if (data.length === 0) throw ended(0);
  const v = item(data, 0, maxDepth, tags);
  if (POS !== data.length) throw bad(`bytes after the CBOR item at offset ${POS}`, { expected: `${POS} bytes`, found: `${data.length} bytes` });
  return v;
}

const hex2 = (b) => b.toString(16).padStart(2, '0');

/** Where Python's UTF-8 decoder reports the first error: the start of the bad sequence. */
function invalidUtf8At(b) {
  let i = 0;
  while (i < b.length) {
    const c = b[i];
    if (c < 0x80) { i++; continue; }
    let need, min, lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) need = 1;
    else if (c >= 0xe0 && c <= 0xef) { need = 2; if (c === 0xe0) lo = 0xa0; if (c === 0xed) hi = 0x9f; }
    else if (c >= 0xf0 && c <= 0xf4) { need = 3; if (c === 0xf0) lo = 0x90; if (c === 0xf4) hi = 0x8f; }
    else return i;
    for (let k = 1; k <= need; k++) {
      if (i + k >= b.length) return i;
      const x = b[i + k];
      if (x < (k === 1 ? lo : 0x80) || x > (k === 1 ? hi : 0xbf)) return i;
    }
    min = need;
    i += min + 1;
  }
  return b.length;
}
