// The page verifier's raw DEFLATE decoder (cloud/page/static/verify/inflate.js) against
// Python's zlib as protocol/bundle.py uses it (decompressobj(-15) bounded to cap + 1 bytes,
// then too large / truncated / trailing bytes), on ~200 streams of every block type and
// level and on copies with a byte changed, cut or added (tests/page/data/records/
// inflate.json, written by tests/page/make_expected.py): the same acceptance, the same output.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { InflateError, inflateRaw } from '../../cloud/page/static/verify/inflate.js';
import { sha256 } from '../../cloud/page/static/verify/sha256.js';
import { b64decode, toHex } from '../../cloud/page/static/verify/util.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const cases = JSON.parse(readFileSync(join(HERE, 'data', 'records', 'inflate.json'), 'utf8'));

test(`inflateRaw agrees with zlib on ${cases.length} streams`, () => {
  let accepted = 0;
  for (const c of cases) {
    const data = b64decode(c.data);
    let got;
    try {
      const r = inflateRaw(data, c.cap);
      got = r.eof && r.end === data.length ? { ok: true, sha256: toHex(sha256(r.out)) } : { ok: false };
    } catch (err) {
      if (!(err instanceof InflateError)) throw err;
      got = { ok: false };
    }
    const want = c.ok ? { ok: true, sha256: c.sha256 } : { ok: false };
    assert.deepEqual(got, want, `stream ${c.data.slice(0, 60)}… cap ${c.cap}`);
    if (got.ok) accepted++;
  }
  assert.ok(accepted > 40, `${accepted} accepted`);
});
