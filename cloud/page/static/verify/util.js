// Small helpers shared by the verifier modules: errors with §11 codes, bytes, hex, base64.

/** A failed check: `code` is a failure code of docs/protocol.md §11 (protocol/errors.py). */
export class VError extends Error {
  constructor(code, message, { expected = null, found = null } = {}) {
    super(message);
    this.code = code;
    this.expected = expected;
    this.found = found;
  }
}

export const fail = (code) => (message, extra) => new VError(code, message, extra);

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

export function toHex(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i++) s += HEX[bytes[i]];
  return s;
}

export function fromHex(text) {
  const out = new Uint8Array(text.length >> 1);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.substr(2 * i, 2), 16);
  return out;
}

export function bytesEqual(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Bytewise comparison (-1, 0, 1), shorter first on a common prefix. */
export function compareBytes(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] < b[i] ? -1 : 1;
  return a.length === b.length ? 0 : a.length < b.length ? -1 : 1;
}

export function concat(...parts) {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let pos = 0;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length;
  }
  return out;
}

const ENC = new TextEncoder();
export const utf8 = (text) => ENC.encode(text);
const DEC = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
/** Strict UTF-8 decoding; null when the bytes are not UTF-8. */
export function fromUtf8(bytes) {
  try {
    return DEC.decode(bytes);
  } catch {
    return null;
  }
}

/** Bytes as a binary string key (for maps keyed by byte strings). */
export function bkey(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i += 4096) {
    s += String.fromCharCode.apply(null, bytes.subarray(i, i + 4096));
  }
  return s;
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const B64_INDEX = new Int16Array(128).fill(-1);
for (let i = 0; i < 64; i++) B64_INDEX[B64.charCodeAt(i)] = i;

export function b64encode(bytes) {
  let out = '';
  let i = 0;
  const n = bytes.length;
  const parts = [];
  for (; i + 3 <= n; i += 3) {
    const v = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    out += B64[v >> 18] + B64[(v >> 12) & 63] + B64[(v >> 6) & 63] + B64[v & 63];
    if (out.length > 8192) {
      parts.push(out);
      out = '';
    }
  }
  if (n - i === 1) {
    const v = bytes[i] << 16;
    out += B64[v >> 18] + B64[(v >> 12) & 63] + '==';
  } else if (n - i === 2) {
    const v = (bytes[i] << 16) | (bytes[i + 1] << 8);
    out += B64[v >> 18] + B64[(v >> 12) & 63] + B64[(v >> 6) & 63] + '=';
  }
  parts.push(out);
  return parts.join('');
}

/**
 * Canonical standard base64 with padding (RFC 4648 §4): the bytes, or null when the
 * text is not the one spelling of its bytes (bad characters, whitespace, missing or
 * surplus padding, bits set beyond the data). The empty string is the empty bytes.
 */
export function b64decode(text) {
  if (typeof text !== 'string') return null;
  const n = text.length;
  if (n % 4) return null;
  if (n === 0) return new Uint8Array(0);
  let pad = 0;
  if (text.charCodeAt(n - 1) === 61) pad = text.charCodeAt(n - 2) === 61 ? 2 : 1;
  const out = new Uint8Array((n / 4) * 3 - pad);
  let o = 0;
  for (let i = 0; i < n; i += 4) {
    const last = i + 4 === n;
    const c0 = text.charCodeAt(i), c1 = text.charCodeAt(i + 1);
    const c2 = text.charCodeAt(i + 2), c3 = text.charCodeAt(i + 3);
    const a = c0 < 128 ? B64_INDEX[c0] : -1;
    const b = c1 < 128 ? B64_INDEX[c1] : -1;
    if (a < 0 || b < 0) return null;
    if (last && pad === 2) {
      if (c2 !== 61 || c3 !== 61 || (b & 15)) return null;
      out[o++] = (a << 2) | (b >> 4);
      break;
    }
    const c = c2 < 128 ? B64_INDEX[c2] : -1;
    if (c < 0) return null;
    if (last && pad === 1) {
      if (c3 !== 61 || (c & 3)) return null;
      out[o++] = (a << 2) | (b >> 4);
      out[o++] = ((b & 15) << 4) | (c >> 2);
      break;
    }
    const d = c3 < 128 ? B64_INDEX[c3] : -1;
    if (d < 0) return null;
    out[o++] = (a << 2) | (b >> 4);
    out[o++] = ((b & 15) << 4) | (c >> 2);
    out[o++] = ((c & 3) << 6) | d;
  }
  return out;
}

/** Python's repr-free str() of a value for messages. */
export function show(value, limit = 40) {
  const text = typeof value === 'string' ? value : String(value);
  const cut = text.slice(0, limit);
  return JSON.stringify(cut) + (text.length > limit ? '…' : '');
}

/** Integer compare that works for Numbers and BigInts mixed. */
export function cmpInt(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}

export const isInt = (v) => (typeof v === 'number' && Number.isInteger(v)) || typeof v === 'bigint';

/** Count of Unicode code points (Python's len of a str). */
export function codePoints(text) {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0xd800 || c > 0xdbff) n++;
  }
  return n;
}
