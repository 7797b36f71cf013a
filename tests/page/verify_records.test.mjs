// Record decoding (§2, §3) of the page's JavaScript verifier against Python's open_record,
// on ~700 records of the pass vector with payload fields set to edge values, removed or
// added, and bytes flipped, cut or appended (tests/page/data/records/cases.json, written by
// tests/page/make_expected.py): the same acceptance; for a refused record the same code,
// message, expected and found; for an accepted one the same signer and payload fields (the
// objects verdict.js reads).

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { openRecord } from '../../cloud/page/static/verify/record.js';
import { fromHex, toHex } from '../../cloud/page/static/verify/util.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const cases = JSON.parse(readFileSync(join(HERE, 'data', 'records', 'cases.json'), 'utf8'));

function jsonValue(v) {
  if (v instanceof Uint8Array) return { hex: toHex(v) };
  if (typeof v === 'bigint') return { int: String(v) };
  return v;
}

test(`openRecord agrees with Python's open_record on ${cases.length} records`, () => {
  let accepted = 0;
  for (const c of cases) {
    let got;
    try {
      const rec = openRecord(fromHex(c.record));
      const payload = {};
      for (const [k, v] of Object.entries(rec.payload)) {
        payload[k] = k === 'extensions' ? Object.fromEntries([...v].map(([key, x]) => [String(key), jsonValue(x)])) : jsonValue(v);
      }
      got = { ok: true, code: null, signer: rec.signer, payload };
      accepted++;
    } catch (err) {
      if (!err.code) throw err;
      const str = (v) => (v === null || v === undefined ? null : String(v));
      got = { ok: false, code: err.code, message: err.message, expected: str(err.expected), found: str(err.found) };
    }
    const want = { ...c };
    delete want.record;
    assert.deepEqual(got, want, `record ${c.record}: ${got.ok ? '' : 'refused'}`);
  }
  assert.ok(accepted > 100);
});
