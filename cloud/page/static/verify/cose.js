// The COSE_Sign1 profile of §3: exact envelope, ES256 with low-S, r ‖ s signatures.
//
//   D2 84 <bstr: A2 01 26 04 <bstr kid>> A0 <bstr payload> 58 40 <r ‖ s>
//
// parseSign1 checks that shape on the exact bytes (no re-encoding) and returns the
// kid, the payload bytes and the Sig_structure ["Signature1", protected, h'', payload]
// sliced from the received bytes. verifySign1 checks 1 <= r < n, 1 <= s <= (n-1)/2
// (a high s is bad_signature) and then ECDSA P-256/SHA-256 through WebCrypto, which
// takes the raw r ‖ s form (IEEE P1363) directly: no DER is involved.

import { truncated } from './cbor.js';
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

/** Read a bstr head at pos with shortest form; returns [length, dataStart] or throws
 * (Python's _expect_major, then cbor.decode_at: the same errors). */
function bstrHead(data, pos, what) {
  const n = data.length;
  if (pos >= n) throw malformed(`${what} missing`, { expected: 'bstr', found: 'end of input' });
  const ib = data[pos];
  if (ib >> 5 !== 2) throw malformed(`${what} has the wrong type`, { expected: 'bstr' });
  const ai = ib & 31;
  const ended = () => malformed('CBOR input ends inside an item', { expected: 'more bytes', found: `${n} bytes` });
  const shortest = (width, arg) => malformed(`head at offset ${pos} not in shortest form`, { expected: `shortest head for ${arg}`, found: `${width}-byte argument` });
  let len, start;
  if (ai < 24) [len, start] = [ai, pos + 1];
  else if (ai === 24) {
    if (pos + 1 >= n) throw ended();
    if (data[pos + 1] < 24) throw shortest(1, data[pos + 1]);
    [len, start] = [data[pos + 1], pos + 2];
  } else if (ai === 25) {
    if (pos + 3 > n) throw truncated(pos + 1, 2, n);
    const v = (data[pos + 1] << 8) | data[pos + 2];
    if (v < 256) throw shortest(2, v);
    [len, start] = [v, pos + 3];
  } else if (ai === 26 || ai === 27) {
    const w = ai === 26 ? 4 : 8;
    if (pos + 1 + w > n) throw truncated(pos + 1, w, n);
    let v = 0n;
    for (let i = 1; i <= w; i++) v = (v << 8n) | BigInt(data[pos + i]);
    if (v < (ai === 26 ? 0x10000n : 0x100000000n)) throw shortest(w, v);
    throw truncated(pos + 1 + w, v, n); // longer than any message of the profile
  } else if (ai === 31) {
    throw malformed(`indefinite-length bstr at offset ${pos}`, { expected: 'definite length', found: `0x${ib.toString(16)}` });
  } else {
    throw malformed(`reserved additional information ${ai} at offset ${pos}`, { expected: '0..27', found: `0x${ib.toString(16)}` });
  }
  if (start + len > n) throw truncated(start, len, n);
  return [len, start];
}

/**
 * Check a record envelope (§3) without crypto. Returns
 * {raw, kid, payload (Uint8Array view), signature (64 bytes), tbs (Sig_structure)}.
 */
export function parseSign1(data) {
  const n = data.length;
  if (n > MAX_MESSAGE_SIZE) throw malformed('COSE_Sign1 too large', { expected: `<= ${MAX_MESSAGE_SIZE} bytes`, found: `${n} bytes` });
  if (n === 0) throw malformed('empty COSE_Sign1');
  if (data[0] !== 0xd2) throw malformed('not a tagged COSE_Sign1', { expected: 'tag 18 (0xd2)' });
  if (n < 2) throw malformed('COSE_Sign1 ends after its tag');
  if (data[1] !== 0x84) throw malformed('COSE_Sign1 must be a 4-element array');
  // protected: exactly the deterministic encoding of {1: -7, 4: kid}
  const [plen, p0] = bstrHead(data, 2, 'COSE_Sign1 protected header');
  const pend = p0 + plen;
  const prot = data.subarray(p0, pend);
  const kid = checkProtected(prot);
  // unprotected: empty map
  if (pend >= n) throw malformed('COSE_Sign1 unprotected header missing', { expected: 'map', found: 'end of input' });
  if (data[pend] !== 0xa0) throw malformed('COSE_Sign1 unprotected header must be empty', { expected: '{}' });
  // payload
  const y = pend + 1;
  if (y < n && data[y] === 0xf6) throw malformed('COSE_Sign1 payload is nil (detached)');
  const [ylen, y0] = bstrHead(data, y, 'COSE_Sign1 payload');
  const yend = y0 + ylen;
  // signature: 58 40 <64 bytes>
  const [slen, s0] = bstrHead(data, yend, 'COSE_Sign1 signature');
  if (slen !== 64) throw malformed('COSE_Sign1 signature has the wrong length', { expected: '64 bytes', found: `${slen} bytes` });
  if (s0 + slen !== n) throw malformed('bytes after the COSE_Sign1', { expected: `${s0 + slen} bytes`, found: `${n} bytes` });
  return {
    raw: data,
    kid,
    payload: data.subarray(y0, yend),
    signature: data.subarray(s0, s0 + 64),
    // Sig_structure: array(4) "Signature1", protected bstr (as received), h'', payload bstr
    tbs: concat(SIG1_CONTEXT, data.subarray(2, pend), new Uint8Array([0x40]), data.subarray(y, yend)),
  };
}

function checkProtected(p) {
  // A2 01 26 04 (4n | 58 nn) kid: the only deterministic encoding of {1: -7, 4: kid}
  if (p.length === 0) throw malformed('COSE_Sign1 protected header is empty');
  if (p.length < 5 || p[0] !== 0xa2 || p[1] !== 0x01 || p[3] !== 0x04) {
    throw malformed('COSE_Sign1 protected header is not exactly {1: alg, 4: kid}');
  }
  if (p[2] !== 0x26) throw malformed('COSE_Sign1: wrong algorithm', { expected: 'ES256 (-7)' });
  let k0, klen;
  if (p[4] >= 0x41 && p[4] <= 0x57) {
    klen = p[4] - 0x40;
    k0 = 5;
  } else if (p[4] === 0x58 && p.length >= 6 && p[5] >= 24) {
    klen = p[5];
    k0 = 6;
  } else {
    throw malformed('COSE_Sign1 kid must be a bstr id of 1-32 bytes');
  }
  if (k0 + klen !== p.length) throw malformed('COSE_Sign1 protected header is not exactly {1: alg, 4: kid}');
  let kid = '';
  for (let i = k0; i < p.length; i++) kid += String.fromCharCode(p[i]);
  if (!ID_RE.test(kid)) throw malformed('COSE_Sign1 kid is not a valid id (§1)', { found: kid });
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
