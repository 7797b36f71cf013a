// The COSE_Sign1 profile of §3: exact envelope, ES256 with low-S, r ‖ s signatures.
//
//   D2 84 <bstr: A2 01 26 04 <bstr kid>> A0 <bstr payload> 58 40 <r ‖ s>
//
// parseSign1 checks that shape on the exact bytes (no re-encoding) and returns the
// kid, the payload bytes and the Sig_structure ["Signature1", protected, h'', payload]
// sliced from the received bytes. verifySign1 checks 1 <= r < n, 1 <= s <= (n-1)/2
// (a high s is bad_signature) and then ECDSA P-256/SHA-256 through WebCrypto, which
// takes the raw r ‖ s form (IEEE P1363) directly: no DER is involved.

import { Tag, decode, decodeAt } from './cbor.js';
import { VError, compareBytes, concat } from './util.js';

export const MAX_MESSAGE_SIZE = 1024;
export const ID_RE = /^[a-z0-9][a-z0-9._-]{0,31}$/;
const malformed = (m, extra) => new VError('malformed_record', m, extra);

const N = new Uint8Array([
  0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
  0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
]);
const HALF_N = (() => {
  // (n - 1) / 2
  const out = new Uint8Array(32);
  let carry = 0;
  for (let i = 0; i < 32; i++) {
    const v = (carry << 8) | N[i];
    out[i] = v >> 1;
    carry = v & 1;
  }
  return out;
})();
const ZERO32 = new Uint8Array(32);
const SIG1_CONTEXT = new Uint8Array([0x84, 0x6a, ...new TextEncoder().encode('Signature1')]);

const NAMES = ['uint', 'negative int', 'bstr', 'tstr', 'array', 'map', 'tag', 'simple/float'];
const hex2 = (b) => b.toString(16).padStart(2, '0');

/** Python's _kind() of a decoded value. */
function kindOf(v) {
  if (v instanceof Tag) return `tag ${v.tag}`;
  if (typeof v === 'number' || typeof v === 'bigint') return 'int';
  if (v instanceof Uint8Array) return 'bstr';
  if (typeof v === 'string') return 'tstr';
  if (Array.isArray(v)) return 'array';
  return 'map';
}
/** Python's repr of bytes: b'...'. */
export function bytesRepr(b) {
  let dq = false, sq = false;
  for (const c of b) {
    if (c === 0x27) sq = true;
    if (c === 0x22) dq = true;
  }
  const q = sq && !dq ? '"' : "'";
  let out = 'b' + q;
  for (const c of b) {
    if (c === 0x5c) out += '\\\\';
    else if (c === q.charCodeAt(0)) out += '\\' + q;
    else if (c === 0x09) out += '\\t';
    else if (c === 0x0a) out += '\\n';
    else if (c === 0x0d) out += '\\r';
    else if (c >= 0x20 && c < 0x7f) out += String.fromCharCode(c);
    else out += '\\x' + hex2(c);
  }
  return out + q;
}
/** str() of a decoded value as Python prints it (the common cases). */
function pyStr(v) {
  if (v instanceof Uint8Array) return bytesRepr(v);
  if (Array.isArray(v)) return `[${v.map((x) => (typeof x === 'string' ? `'${x}'` : pyStr(x))).join(', ')}]`;
  if (v instanceof Map) return `{${[...v].map(([k, x]) => `${k}: ${typeof x === 'string' ? `'${x}'` : pyStr(x)}`).join(', ')}}`;
  return String(v);
}
const labels = (m) => `labels [${[...m.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)).join(', ')}]`;

function tagFound(data) {
  const ib = data[0];
  if (ib >> 5 !== 6) return `untagged ${NAMES[ib >> 5]} (0x${hex2(ib)})`;
  const ai = ib & 31;
  if (ai < 24) return `tag ${ai}`;
  const width = { 24: 1, 25: 2, 26: 4, 27: 8 }[ai];
  if (width === undefined || data.length < 1 + width) return `0x${hex2(ib)}`;
  let v = 0n;
  for (let i = 1; i <= width; i++) v = (v << 8n) | BigInt(data[i]);
  return `tag ${v}`;
}

function expectMajor(data, pos, major, what, want) {
  if (pos >= data.length) throw malformed(`${what} missing`, { expected: want, found: 'end of input' });
  if (data[pos] >> 5 !== major) {
    const [value] = decodeAt(data, pos, 16);
    throw malformed(`${what} has the wrong type`, { expected: want, found: kindOf(value) });
  }
}

/**
 * Check a record envelope (§3) without crypto, as protocol/cose.py's _parse_envelope (the
 * same checks in the same order, the same errors). Returns
 * {raw, kid, payload (Uint8Array view), signature (64 bytes), tbs (Sig_structure)}.
 */
export function parseSign1(data) {
  const n = data.length;
  const name = 'COSE_Sign1';
  if (n > MAX_MESSAGE_SIZE) throw malformed(`${name} too large`, { expected: `<= ${MAX_MESSAGE_SIZE} bytes`, found: `${n} bytes` });
  if (n === 0) throw malformed(`empty ${name}`, { expected: 'tag 18', found: '0 bytes' });
  if (data[0] !== 0xd2) throw malformed(`not a tagged ${name}`, { expected: 'tag 18 (0xd2)', found: tagFound(data) });
  if (n < 2) throw malformed(`${name} ends after its tag`, { expected: 'array(4)', found: `${n} bytes` });
  if (data[1] !== 0x84) {
    const [value] = decodeAt(data, 1, 3);
    const found = Array.isArray(value)
      ? `array(${value.length})`
      : typeof value === 'number' || typeof value === 'bigint' ? 'int'
      : value instanceof Uint8Array ? 'bytes' : typeof value === 'string' ? 'str' : value instanceof Map ? 'dict' : 'Tag';
    throw malformed(`${name} must be a 4-element array`, { expected: 'array(4)', found });
  }
  // protected
  expectMajor(data, 2, 2, `${name} protected header`, 'bstr');
  const [prot, pend] = decodeAt(data, 2, 0);
  const kid = checkProtected(prot, name);
  // unprotected
  expectMajor(data, pend, 5, `${name} unprotected header`, 'map');
  const [unprot, y] = decodeAt(data, pend, 1);
  if (unprot.size) throw malformed(`${name} unprotected header must be empty`, { expected: '{}', found: labels(unprot) });
  // payload
  if (y < n && data[y] === 0xf6) throw malformed(`${name} payload is nil (detached)`, { expected: 'bstr payload', found: 'nil' });
  expectMajor(data, y, 2, `${name} payload`, 'bstr');
  const [payload, yend] = decodeAt(data, y, 0);
  // signature
  expectMajor(data, yend, 2, `${name} signature`, 'bstr');
  const [signature, send] = decodeAt(data, yend, 0);
  if (signature.length !== 64) {
    throw malformed(`${name} signature has the wrong length`, { expected: '64 bytes', found: `${signature.length} bytes` });
  }
  if (send !== n) throw malformed(`bytes after the ${name}`, { expected: `${send} bytes`, found: `${n} bytes` });
  return {
    raw: data,
    kid,
    payload,
    signature,
    // Sig_structure: array(4) "Signature1", protected bstr (as received), h'', payload bstr
    tbs: concat(SIG1_CONTEXT, data.subarray(2, pend), new Uint8Array([0x40]), data.subarray(y, yend)),
  };
}

const KID_RE = /^[a-z0-9][a-z0-9._-]{0,31}$/;

function checkProtected(p, name) {
  if (p.length === 0) {
    throw malformed(`${name} protected header is empty`, { expected: '{1: -7, 4: kid}', found: "h'' (no protected parameters)" });
  }
  const header = decode(p, { maxSize: MAX_MESSAGE_SIZE, maxDepth: 4 });
  if (!(header instanceof Map)) throw malformed(`${name} protected header is not a map`, { expected: 'map', found: kindOf(header) });
  if (!header.has(1)) {
    throw malformed(`${name} protected header has no alg`, { expected: 'alg ES256 (-7) in the protected header', found: labels(header) });
  }
  if (header.get(1) !== -7) throw malformed(`${name}: wrong algorithm`, { expected: 'ES256 (-7)', found: pyStr(header.get(1)) });
  const extra = [...header.keys()].filter((k) => k !== 1 && k !== 4);
  if (extra.length) {
    throw malformed(`${name} protected header has parameters outside the profile`, {
      expected: 'only alg (1) and kid (4)',
      found: labels(new Map(extra.map((k) => [k, 0]))),
    });
  }
  if (!header.has(4)) throw malformed(`${name} protected header has no kid`, { expected: 'kid (4)', found: 'no kid' });
  const raw = header.get(4);
  if (!(raw instanceof Uint8Array)) throw malformed(`${name} kid must be a bstr`, { expected: 'bstr', found: kindOf(raw) });
  let kid = '';
  for (const c of raw) kid += String.fromCharCode(c);
  if (!KID_RE.test(kid)) {
    throw malformed(`${name} kid is not a valid id (§1)`, { expected: '1-32 bytes of [a-z0-9._-], starting with a letter or digit', found: bytesRepr(raw) });
  }
  return kid;
}

/** The scalar checks of §3 before any crypto: 1 <= r < n, 1 <= s <= (n - 1) / 2. */
export function checkScalars(signature) {
  const r = signature.subarray(0, 32);
  const s = signature.subarray(32, 64);
  if (compareBytes(r, ZERO32) === 0 || compareBytes(r, N) >= 0) {
    throw new VError('bad_signature', 'ES256 signature r out of range', { expected: '1 <= r < n' });
  }
  if (compareBytes(s, ZERO32) === 0 || compareBytes(s, N) >= 0) {
    throw new VError('bad_signature', 'ES256 signature s out of range', { expected: '1 <= s < n' });
  }
  if (compareBytes(s, HALF_N) > 0) {
    throw new VError('bad_signature', 'ES256 signature has a high s (the profile demands low-S)', { expected: 's <= n/2' });
  }
}

const subtle = globalThis.crypto.subtle;

/** A WebCrypto ECDSA P-256 public key from a 65-byte SEC1 point (already checked on the curve). */
export function importP256(sec1) {
  return subtle.importKey('raw', sec1, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['verify']);
}

/** Verify a parsed record's signature under `key` (a CryptoKey); throws VError('bad_signature'). */
export async function verifySign1(msg, key) {
  checkScalars(msg.signature);
  const ok = await subtle.verify({ name: 'ECDSA', hash: 'SHA-256' }, key, msg.signature, msg.tbs);
  if (!ok) {
    throw new VError('bad_signature', 'ES256 signature does not verify', {
      expected: `a signature by the registered key of ${msg.kid}`,
      found: 'signature mismatch',
    });
  }
}
