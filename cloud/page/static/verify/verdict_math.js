// Arithmetic for the verdict (docs/protocol.md §2/§4 chain_hash, §12.7 rounding, §12.8 MKT).
//
// ES module, no dependencies; synchronous. Mirrors protocol/analytics.py and
// protocol/record.py chain_hash:
//
//   sha256(bytes) -> Uint8Array(32)            synchronous SHA-256 (sha256.js, shared)
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

import { sha256 } from './sha256.js';

export { sha256 };

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
