// Raw DEFLATE (RFC 1951) with an output bound fixed before decompressing (§9.1).
//
// Why not DecompressionStream("deflate-raw")? §9.1 refuses a stream that has bytes after
// its final block, and Node 20's DecompressionStream silently ignores them (Chrome throws):
// the same bundle would verify in one place and not in another. This decoder reports
// exactly what Python's zlib.decompressobj(-15) tells apart: invalid data (with zlib's
// rules: over-subscribed or incomplete codes, except a lone 1-bit code for literals/lengths
// or distances; more than 286 literal/length or 30 distance codes; no end-of-block code;
// invalid distance too far back; stored length check), output above the cap (it stops at
// cap + 1 bytes), a truncated stream (no final block), and bytes after the end.

export class InflateError extends Error {}

const LBASE = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258];
const LEXT = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
const DBASE = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577];
const DEXT = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13];
const ORDER = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

class Truncated extends Error {}

/**
 * A canonical Huffman code as a lookup table over FAST bits plus, for longer codes, a
 * bit-by-bit walk. kind: 'codes' (code-length code), 'lens' or 'dists' (zlib's rules).
 */
function build(lengths, n, kind) {
  const count = new Uint16Array(16);
  for (let i = 0; i < n; i++) count[lengths[i]]++;
  count[0] = 0;
  let max = 0;
  for (let l = 1; l <= 15; l++) if (count[l]) max = l;
  let left = 1;
  for (let l = 1; l <= 15; l++) {
    left = (left << 1) - count[l];
    if (left < 0) throw new InflateError(`invalid ${kind} code: over-subscribed`);
  }
  if (max === 0) {
    if (kind === 'codes') throw new InflateError('invalid code lengths set');
    return { count, symbol: new Uint16Array(0), max: 0, fast: new Uint16Array(1 << FAST) };
  }
  if (left > 0 && (kind === 'codes' || max !== 1)) throw new InflateError(`invalid ${kind} code: incomplete set`);
  const offs = new Uint16Array(16);
  for (let l = 1; l < 15; l++) offs[l + 1] = offs[l] + count[l];
  const symbol = new Uint16Array(n);
  for (let s = 0; s < n; s++) if (lengths[s]) symbol[offs[lengths[s]]++] = s;
  // A lookup table over the next FAST bits (LSB first, so codes bit-reversed): entry
  // (symbol << 4) | length for codes of at most FAST bits, 0 for longer or unused codes
  // (decoded bit by bit, which also reports an unused code of an incomplete set).
  const fast = new Uint16Array(1 << FAST);
  let code = 0, index = 0;
  for (let len = 1; len <= FAST; len++) {
    for (let k = 0; k < count[len]; k++) {
      let rev = 0;
      for (let b = 0; b < len; b++) rev |= ((code >> b) & 1) << (len - 1 - b);
      const entry = (symbol[index + k] << 4) | len;
      for (let fill = rev; fill < 1 << FAST; fill += 1 << len) fast[fill] = entry;
      code++;
    }
    index += count[len];
    code <<= 1;
  }
  return { count, symbol, max, fast };
}

const FAST = 9;

export function inflateRaw(input, cap) {
  const n = input.length;
  let pos = 0; // next input byte
  let bitbuf = 0;
  let bitcnt = 0;
  let out = new Uint8Array(Math.min(cap, Math.max(1024, n * 4)));
  let outLen = 0;

  function need(k) {
    while (bitcnt < k) {
      if (pos >= n) throw new Truncated();
      bitbuf |= input[pos++] << bitcnt;
      bitcnt += 8;
    }
  }
  function bits(k) {
    need(k);
    const v = bitbuf & ((1 << k) - 1);
    bitbuf >>>= k;
    bitcnt -= k;
    return v;
  }
  function decode(h, what) {
    // fast path: FAST bits at hand (without reading past the input)
    while (bitcnt < FAST && pos < n) {
      bitbuf |= input[pos++] << bitcnt;
      bitcnt += 8;
    }
    if (bitcnt >= FAST) {
      const entry = h.fast[bitbuf & ((1 << FAST) - 1)];
      if (entry) {
        const len = entry & 15;
        bitbuf >>>= len;
        bitcnt -= len;
        return entry >> 4;
      }
    }
    let code = 0, first = 0, index = 0;
    for (let len = 1; len <= 15; len++) {
      code |= bits(1);
      const c = h.count[len];
      if (code - c < first) return h.symbol[index + (code - first)];
      index += c;
      first = (first + c) << 1;
      code <<= 1;
    }
    throw new InflateError(`invalid ${what} code`);
  }
  function grow(k) {
    if (outLen + k > cap) {
      throw new InflateError(`decompresses to more than ${cap} bytes`);
    }
    if (outLen + k <= out.length) return;
    let size = Math.max(out.length * 2, 1024);
    while (size < outLen + k) size *= 2;
    const bigger = new Uint8Array(Math.min(size, cap));
    bigger.set(out.subarray(0, outLen));
    out = bigger;
  }

  let fixedL = null, fixedD = null;
  try {
    for (;;) {
      const last = bits(1);
      const type = bits(2);
      if (type === 0) {
        pos -= bitcnt >> 3; // whole bytes read ahead go back; the partial one is skipped
        bitbuf = 0;
        bitcnt = 0;
        if (pos + 4 > n) throw new Truncated();
        const len = input[pos] | (input[pos + 1] << 8);
        const nlen = input[pos + 2] | (input[pos + 3] << 8);
        pos += 4;
        if (len !== (~nlen & 0xffff)) throw new InflateError('invalid stored block lengths');
        if (pos + len > n) {
          // what is there is output before the stream is found truncated
          const have = n - pos;
          grow(have);
          out.set(input.subarray(pos, n), outLen);
          outLen += have;
          throw new Truncated();
        }
        grow(len);
        out.set(input.subarray(pos, pos + len), outLen);
        outLen += len;
        pos += len;
      } else if (type === 3) {
        throw new InflateError('invalid block type');
      } else {
        let L, D;
        if (type === 1) {
          if (!fixedL) {
            const l = new Uint8Array(288);
            l.fill(8, 0, 144); l.fill(9, 144, 256); l.fill(7, 256, 280); l.fill(8, 280, 288);
            fixedL = build(l, 288, 'lens');
            // zlib's fixed distance code: 32 five-bit codes, 30 and 31 invalid on use.
            fixedD = buildFixedDist();
          }
          L = fixedL;
          D = fixedD;
        } else {
          const nlen = bits(5) + 257;
          const ndist = bits(5) + 1;
          const ncode = bits(4) + 4;
          if (nlen > 286 || ndist > 30) throw new InflateError('too many length or distance symbols');
          const cl = new Uint8Array(19);
          for (let i = 0; i < ncode; i++) cl[ORDER[i]] = bits(3);
          const C = build(cl, 19, 'codes');
          const lengths = new Uint8Array(nlen + ndist);
          let i = 0;
          while (i < nlen + ndist) {
            const sym = decode(C, 'code lengths');
            if (sym < 16) {
              lengths[i++] = sym;
            } else {
              let value = 0, rep;
              if (sym === 16) {
                if (i === 0) throw new InflateError('invalid bit length repeat');
                value = lengths[i - 1];
                rep = 3 + bits(2);
              } else if (sym === 17) rep = 3 + bits(3);
              else rep = 11 + bits(7);
              if (i + rep > nlen + ndist) throw new InflateError('invalid bit length repeat');
              while (rep--) lengths[i++] = value;
            }
          }
          if (lengths[256] === 0) throw new InflateError('invalid code -- missing end-of-block');
          L = build(lengths.subarray(0, nlen), nlen, 'lens');
          D = build(lengths.subarray(nlen), ndist, 'dists');
        }
        for (;;) {
          const sym = decode(L, 'literal/length');
          if (sym < 256) {
            if (outLen >= out.length) grow(1);
            out[outLen++] = sym;
          } else if (sym === 256) {
            break;
          } else {
            const li = sym - 257;
            if (li >= 29) throw new InflateError('invalid literal/length code');
            const len = LBASE[li] + bits(LEXT[li]);
            const ds = decode(D, 'distance');
            if (ds >= 30) throw new InflateError('invalid distance code');
            const dist = DBASE[ds] + bits(DEXT[ds]);
            if (dist > outLen) throw new InflateError('invalid distance too far back');
            grow(len);
            for (let k = 0; k < len; k++, outLen++) out[outLen] = out[outLen - dist];
          }
        }
      }
      if (last) break;
    }
  } catch (e) {
    if (e instanceof Truncated) return { out: out.subarray(0, outLen), eof: false, end: n };
    throw e;
  }
  // the final block ended inside byte pos - 1 (bits left in bitbuf belong to it)
  const end = pos - (bitcnt >> 3);
  return { out: out.subarray(0, outLen), eof: true, end };
}

function buildFixedDist() {
  // 32 symbols of 5 bits (complete), symbols 30 and 31 rejected on use.
  return build(new Uint8Array(32).fill(5), 32, 'dists');
}
