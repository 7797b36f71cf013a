// Arithmetic for the verdict (docs/protocol.md §2/§4 chain_hash, §12.7 rounding, §12.8 MKT).
//
// ES module, no dependencies; synchronous. Mirrors protocol/analytics.py and
// protocol/record.py chain_hash:
//
//   sha256(bytes) -> Uint8Array(32)            synchronous FIPS 180-4 SHA-256
//   chainHash(bytes) -> Uint8Array(16)         first 16 bytes of sha256 (§4)
//   roundDiv(n, d) -> number                   ⌊(2n + d) / (2d)⌋ on BigInt (§12.7)
//   meanCenti([[temp, w], ...]) -> number|null round(Σ temp·w / Σ w)
//   dexp(y), dlog(v)                           §12.8's fixed binary64 exp and log
//   mktCenti([[temp, w], ...]) -> number|null  §12.8, in the order given
//
// JavaScript numbers are IEEE 754 binary64 with round-to-nearest-even, like
// Python floats, and every operator below is one binary64 operation in the
// spec's order, so the results are bit-identical to Python's. Math.exp and
// Math.log are never used (they are not correctly rounded).

// --- SHA-256 ---------------------------------------------------------------------------------

const K256 = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

/** SHA-256 of a Uint8Array, synchronously. */
export function sha256(data) {
  const bitLen = data.length * 8;
  const padded = new Uint8Array(((data.length + 9 + 63) >> 6) << 6);
  padded.set(data);
  padded[data.length] = 0x80;
  const view = new DataView(padded.buffer);
  view.setUint32(padded.length - 8, Math.floor(bitLen / 0x100000000));
  view.setUint32(padded.length - 4, bitLen >>> 0);
  const h = new Uint32Array([
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
  ]);
  const w = new Uint32Array(64);
  for (let off = 0; off < padded.length; off += 64) {
    for (let i = 0; i < 16; i++) w[i] = view.getUint32(off + 4 * i);
    for (let i = 16; i < 64; i++) {
      const a = w[i - 15], b = w[i - 2];
      const s0 = ((a >>> 7) | (a << 25)) ^ ((a >>> 18) | (a << 14)) ^ (a >>> 3);
      const s1 = ((b >>> 17) | (b << 15)) ^ ((b >>> 19) | (b << 13)) ^ (b >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) >>> 0;
    }
    let [a, b, c, d, e, f, g, hh] = h;
    for (let i = 0; i < 64; i++) {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const ch = (e & f) ^ (~e & g);
      const t1 = (hh + S1 + ch + K256[i] + w[i]) >>> 0;
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const maj = (a & b) ^ (a & c) ^ (b & c);
      const t2 = (S0 + maj) >>> 0;
      hh = g; g = f; f = e; e = (d + t1) >>> 0;
      d = c; c = b; b = a; a = (t1 + t2) >>> 0;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
  }
  const out = new Uint8Array(32);
  const ov = new DataView(out.buffer);
  for (let i = 0; i < 8; i++) ov.setUint32(4 * i, h[i]);
  return out;
}

/** chain_hash (§2, §4): the first 16 bytes of SHA-256 of the record bytes. */
export function chainHash(raw) {
  return sha256(raw).subarray(0, 16);
}

// --- integers (§12.7) -----------------------------------------------------------------------------

function floorDivBig(a, b) {
  const q = a / b;
  return (a % b !== 0n && (a < 0n) !== (b < 0n)) ? q - 1n : q;
}

/** round(n / d) = ⌊(2n + d) / (2d)⌋, d > 0, exactly (n, d numbers or BigInts). */
export function roundDiv(n, d) {
  const bn = BigInt(n), bd = BigInt(d);
  if (bd <= 0n) throw new RangeError(`roundDiv needs a positive divisor, got ${d}`);
  return Number(floorDivBig(2n * bn + bd, 2n * bd));
}

/** Time-weighted mean of [temp, w] samples, rounded halves up; null when Σ w = 0. */
export function meanCenti(samples) {
  let total = 0n, weight = 0n;
  for (const [temp, w] of samples) {
    if (w < 0) throw new RangeError(`negative weight ${w}`);
    total += BigInt(temp) * BigInt(w);
    weight += BigInt(w);
  }
  return weight ? Number(floorDivBig(2n * total + weight, 2n * weight)) : null;
}

// --- §12.8 ------------------------------------------------------------------------------------------

const LOG2E = 1.4426950408889634; // 0x1.71547652b82fep+0
const LN2_HI = 0.6931471803691238; // 0x1.62e42fee00000p-1
const LN2_LO = 1.9082149292705877e-10; // 0x1.a39ef35793c76p-33
const SQRT_HALF = 0.7071067811865476; // 0x1.6a09e667f3bcdp-1
const DH_R_CENTI = 1000000;
const ZERO_C = 27315;

function pow2Exact(k) {
  const buf = new DataView(new ArrayBuffer(8));
  if (k >= -1022) {
    buf.setUint32(0, (k + 1023) << 20);
    buf.setUint32(4, 0);
  } else {
    const bit = k + 1074; // 0..51: the mantissa bit of a subnormal
    if (bit >= 32) {
      buf.setUint32(0, 2 ** (bit - 32));
      buf.setUint32(4, 0);
    } else {
      buf.setUint32(0, 0);
      buf.setUint32(4, 2 ** bit);
    }
  }
  return buf.getFloat64(0);
}

const POW2 = new Float64Array(1074 + 1024); // 2^k at k + 1074, filled on first use
const POW2_SET = new Uint8Array(1074 + 1024);

/** 2^k exactly as a binary64 (0 below 2^-1074, Infinity above 2^1023). */
export function pow2(k) {
  if (k > 1023) return Infinity;
  if (k < -1074) return 0;
  const i = k + 1074;
  if (!POW2_SET[i]) {
    POW2[i] = pow2Exact(k);
    POW2_SET[i] = 1;
  }
  return POW2[i];
}

/** e^y for y ≤ 0 in §12.8's fixed binary64 steps. */
export function dexp(y) {
  const k = Math.floor(y * LOG2E + 0.5);
  const r = (y - k * LN2_HI) - k * LN2_LO;
  let p = 1.0;
  for (let n = 13; n >= 1; n--) p = 1.0 + (r * p) / n;
  return p * pow2(k);
}

/** ln v for 0 < v ≤ 1 in §12.8's fixed binary64 steps. */
export function dlog(v) {
  if (!(v > 0.0)) throw new RangeError(`dlog needs a positive argument, got ${v}`);
  let e = 0;
  let f = v;
  while (f < SQRT_HALF) {
    f = f * 2.0;
    e = e - 1;
  }
  const s = (f - 1.0) / (f + 1.0);
  const s2 = s * s;
  let t = 0.0;
  for (let n = 12; n >= 0; n--) t = 1.0 / (2 * n + 1) + s2 * t;
  return e * LN2_HI + (e * LN2_LO + (2.0 * s) * t);
}

/** Mean kinetic temperature in 0.01 °C of [temp, w] samples in the order given; null if Σ w = 0. */
export function mktCenti(samples) {
  const pairs = [];
  for (const [temp, w] of samples) {
    if (w < 0) throw new RangeError(`negative weight ${w}`);
    if (w) pairs.push([temp, w]);
  }
  if (!pairs.length) return null;
  let total = 0n; // exact, then converted to binary64 (rounded to nearest like Python's float())
  const xs = [];
  for (const [temp, w] of pairs) {
    total += BigInt(w);
    xs.push(-DH_R_CENTI / (temp + ZERO_C));
  }
  let m = xs[0];
  for (const x of xs) if (x > m) m = x;
  let s = 0.0;
  for (let i = 0; i < pairs.length; i++) s = s + pairs[i][1] * dexp(xs[i] - m);
  const bigL = m + dlog(s / Number(total));
  const k = -DH_R_CENTI / bigL;
  return Math.floor(k - ZERO_C + 0.5);
}
