// A strict JSON reader for documents from outside: bundles and trust files (§9, §10).
//
// Refuses, with StrictJSONError (the caller turns it into malformed_bundle or
// malformed_trust): more than `limit` bytes; a byte order mark; bytes that are not
// UTF-8; nesting deeper than `maxDepth` (8) or more than `maxContainers` (4,000,000)
// objects and arrays; an object with a member name twice; a number that is not an
// integer written as one (1.0, 1e3, NaN, Infinity); a string holding a lone surrogate
// (from an escape such as \ud800) or a raw control character; anything else RFC 8259
// refuses, and trailing non-whitespace. Integers are Numbers when |n| <= 2^53 - 1 and
// BigInts beyond (the callers check ranges; tree sizes go up to 2^64 - 1). Objects are
// null-prototype objects (a member named "__proto__" is just a member).

import { fromUtf8 } from './util.js';

export class StrictJSONError extends Error {}

export const MAX_DEPTH = 8;
export const MAX_CONTAINERS = 4_000_000;

export function parseStrict(bytes, { limit, what = 'document', maxDepth = MAX_DEPTH, maxContainers = MAX_CONTAINERS }) {
  const err = (m) => new StrictJSONError(`the ${what} ${m}`);
  if (!(bytes instanceof Uint8Array)) throw new TypeError('parseStrict wants a Uint8Array');
  if (bytes.length > limit) throw err(`is too large (more than ${limit} bytes)`);
  if (bytes.length >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) {
    throw err('starts with a byte order mark (RFC 8259 §8.1: no BOM)');
  }
  const text = fromUtf8(bytes);
  if (text === null) throw err('is not UTF-8');
  const n = text.length;
  let i = 0;
  let containers = 0;

  const ws = () => {
    for (; i < n; i++) {
      const c = text.charCodeAt(i);
      if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) return;
    }
  };
  const bad = (m) => err(`is not valid JSON: ${m} at offset ${i}`);

  function str() {
    // text[i] === '"'
    i++;
    let start = i;
    let out = '';
    for (;;) {
      if (i >= n) throw bad('unterminated string');
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        out += text.slice(start, i);
        i++;
        return out;
      }
      if (c < 0x20) throw bad('control character in a string');
      if (c === 0x5c) {
        out += text.slice(start, i);
        const e = text.charCodeAt(i + 1);
        i += 2;
        switch (e) {
          case 0x22: out += '"'; break;
          case 0x5c: out += '\\'; break;
          case 0x2f: out += '/'; break;
          case 0x62: out += '\b'; break;
          case 0x66: out += '\f'; break;
          case 0x6e: out += '\n'; break;
          case 0x72: out += '\r'; break;
          case 0x74: out += '\t'; break;
          case 0x75: {
            let u = hex4(i);
            i += 4;
            if (u >= 0xdc00 && u <= 0xdfff) throw err('holds a lone surrogate (not valid Unicode)');
            if (u >= 0xd800 && u <= 0xdbff) {
              // Python joins an escaped high surrogate with an escaped low one that follows
              if (text.charCodeAt(i) === 0x5c && text.charCodeAt(i + 1) === 0x75) {
                const v = hex4(i + 2);
                if (v >= 0xdc00 && v <= 0xdfff) {
                  i += 6;
                  out += String.fromCharCode(u, v);
                  break;
                }
              }
              throw err('holds a lone surrogate (not valid Unicode)');
            }
            out += String.fromCharCode(u);
            break;
          }
          default:
            throw bad('invalid escape');
        }
        start = i;
        continue;
      }
      i++;
    }
  }
  function hex4(at) {
    if (at + 4 > n) throw bad('invalid \\u escape');
    let v = 0;
    for (let k = 0; k < 4; k++) {
      const c = text.charCodeAt(at + k);
      let d;
      if (c >= 0x30 && c <= 0x39) d = c - 0x30;
      else if (c >= 0x61 && c <= 0x66) d = c - 87;
      else if (c >= 0x41 && c <= 0x46) d = c - 55;
      else throw bad('invalid \\u escape');
      v = (v << 4) | d;
    }
    return v;
  }
  function num() {
    const start = i;
    if (text.charCodeAt(i) === 0x2d) i++;
    const d0 = text.charCodeAt(i);
    if (d0 === 0x30) i++;
    else if (d0 >= 0x31 && d0 <= 0x39) {
      while (i < n && text.charCodeAt(i) >= 0x30 && text.charCodeAt(i) <= 0x39) i++;
    } else {
      if (text.startsWith('Infinity', i)) throw err('has -Infinity, which is not a JSON number');
      throw bad('invalid number');
    }
    const c = text.charCodeAt(i);
    if (c === 0x2e || c === 0x65 || c === 0x45) throw err(`has a number that is not an integer: ${text.slice(start, i + 8)}`);
    const lit = text.slice(start, i);
    if (lit.length > 4300) throw err('has an integer literal that is too long');
    const v = Number(lit);
    if (Number.isSafeInteger(v)) return v === 0 ? 0 : v;
    return BigInt(lit);
  }
  function value(depth) {
    ws();
    if (i >= n) throw bad('expected a value');
    const c = text.charCodeAt(i);
    if (c === 0x7b || c === 0x5b) {
      if (depth >= maxDepth) throw err(`nests objects and arrays deeper than ${maxDepth} levels`);
      if (++containers > maxContainers) throw err(`holds more than ${maxContainers} objects and arrays`);
      i++;
      if (c === 0x5b) {
        const arr = [];
        ws();
        if (text.charCodeAt(i) === 0x5d) {
          i++;
          return arr;
        }
        for (;;) {
          arr.push(value(depth + 1));
          ws();
          const d = text.charCodeAt(i);
          i++;
          if (d === 0x2c) continue;
          if (d === 0x5d) return arr;
          i--;
          throw bad("expected ',' or ']'");
        }
      }
      const obj = Object.create(null);
      ws();
      if (text.charCodeAt(i) === 0x7d) {
        i++;
        return obj;
      }
      for (;;) {
        ws();
        if (text.charCodeAt(i) !== 0x22) throw bad('expected a member name');
        const key = str();
        ws();
        if (text.charCodeAt(i) !== 0x3a) throw bad("expected ':'");
        i++;
        const v = value(depth + 1);
        if (key in obj) throw err(`has an object with the member ${JSON.stringify(key.slice(0, 40))} twice`);
        obj[key] = v;
        ws();
        const d = text.charCodeAt(i);
        i++;
        if (d === 0x2c) continue;
        if (d === 0x7d) return obj;
        i--;
        throw bad("expected ',' or '}'");
      }
    }
    if (c === 0x22) return str();
    if (c === 0x2d || (c >= 0x30 && c <= 0x39)) return num();
    if (text.startsWith('true', i)) { i += 4; return true; }
    if (text.startsWith('false', i)) { i += 5; return false; }
    if (text.startsWith('null', i)) { i += 4; return null; }
    if (text.startsWith('NaN', i) || text.startsWith('Infinity', i)) throw err('has NaN or Infinity, which is not a JSON number');
    throw bad('expected a value');
  }
  const doc = value(0);
  ws();
  if (i !== n) throw bad('extra data');
  return doc;
}

/** The JSON type name of a parsed value, for messages. */
export function typeName(v) {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'list';
  if (typeof v === 'bigint' || (typeof v === 'number')) return 'int';
  if (typeof v === 'boolean') return 'bool';
  if (typeof v === 'string') return 'str';
  return 'dict';
}

export const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
