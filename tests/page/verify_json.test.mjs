// The page verifier's strict JSON reader (cloud/page/static/verify/strictjson.js) against
// Python's protocol.strictjson.loads_strict on ~90 odd texts (tests/page/data/records/
// json_texts.json, written by tests/page/make_expected.py): the same acceptance, the same
// value. One difference by design: Python's reader keeps a string with a lone surrogate
// (from an escape such as \ud800) for the bundle or trust parser to refuse, which they
// always do; the JavaScript reader refuses it at once (`lone_surrogate` cases).

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { parseStrict } from '../../cloud/page/static/verify/strictjson.js';
import { b64decode } from '../../cloud/page/static/verify/util.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const cases = JSON.parse(readFileSync(join(HERE, 'data', 'records', 'json_texts.json'), 'utf8'));

// Python's json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
function dumps(v) {
  if (v === null) return 'null';
  if (typeof v === 'boolean') return String(v);
  if (typeof v === 'number' || typeof v === 'bigint') return String(v);
  if (typeof v === 'string') {
    let out = '"';
    for (const ch of v) {
      const c = ch.codePointAt(0);
      if (ch === '"') out += '\\"';
      else if (ch === '\\') out += '\\\\';
      else if (ch === '\n') out += '\\n';
      else if (ch === '\r') out += '\\r';
      else if (ch === '\t') out += '\\t';
      else if (ch === '\b') out += '\\b';
      else if (ch === '\f') out += '\\f';
      else if (c < 0x20 || (c >= 0x7f && c <= 0xffff)) out += '\\u' + c.toString(16).padStart(4, '0');
      else if (c > 0xffff) {
        const h = 0xd800 + ((c - 0x10000) >> 10), l = 0xdc00 + ((c - 0x10000) & 0x3ff);
        out += '\\u' + h.toString(16) + '\\u' + l.toString(16);
      } else out += ch;
    }
    return out + '"';
  }
  if (Array.isArray(v)) return '[' + v.map(dumps).join(',') + ']';
  return '{' + Object.keys(v).sort().map((k) => dumps(k) + ':' + dumps(v[k])).join(',') + '}';
}

test(`parseStrict agrees with Python's loads_strict on ${cases.length} texts`, () => {
  for (const c of cases) {
    const bytes = b64decode(c.text);
    let got;
    try {
      got = { ok: true, value: dumps(parseStrict(bytes, { limit: 64, what: 'bundle' })) };
    } catch (err) {
      if (err.name === 'TypeError') throw err;
      got = { ok: false };
    }
    const shown = new TextDecoder().decode(bytes);
    if (c.lone_surrogate) {
      assert.equal(got.ok, false, `lone surrogate refused at once: ${shown}`);
      continue;
    }
    assert.equal(got.ok, c.ok, `accepted or not: ${JSON.stringify(shown)}`);
    if (c.ok) assert.equal(got.value, c.value, `value of ${JSON.stringify(shown)}`);
  }
});
