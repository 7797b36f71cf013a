// §9.1's floors in the page verifier (cloud/page/static/verify/bundle.js), as in
// protocol/bundle.py (docs/decisions.md D44): a version-3 blob of n records under 32 × n
// compressed bytes is refused before it is inflated, a record under 78 bytes when it is
// unpacked, and a proof naming more leaves than the bundle holds records of its log before
// its runs are expanded. The bundles are tests/page/data/extra/floor_*/ (written by
// tests/page/make_expected.py; verify.test.mjs checks the same code as Python's,
// malformed_bundle); here, that the refusal is the rule's and that it comes at once.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { BundleError, parseBundleBytes } from '../../cloud/page/static/verify/bundle.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const EXTRA = join(HERE, 'data', 'extra');

const CASES = {
  floor_million_tiny_records: 'logs[0].records: fewer than 32 compressed bytes per record (want at least 32000000 for 1000000 records)',
  floor_repeated_records: 'logs[0].records: fewer than 32 compressed bytes per record (want at least 64000 for 2000 records)',
  floor_record_77_bytes: 'logs[0].records (record 0): want 78..1024 bytes',
  floor_proof_million_leaves: 'proofs[0].leaves: names more leaves than logs holds records of its log (25)',
  floor_proof_other_log: 'proofs[0].leaves: names more leaves than logs holds records of its log (0)',
};

for (const [name, message] of Object.entries(CASES)) {
  test(`the page refuses ${name} as Python does`, () => {
    const bytes = readFileSync(join(EXTRA, name, 'bundle.json'));
    const start = performance.now();
    assert.throws(
      () => parseBundleBytes(new Uint8Array(bytes)),
      (e) => e instanceof BundleError && e.code === 'malformed_bundle' && e.message === `bundle ${message}`,
    );
    assert.ok(performance.now() - start < 1000, `${name}: ${performance.now() - start} ms`);
  });
}

test('the genuine version-3 bundle is above both floors', () => {
  const bytes = readFileSync(join(EXTRA, 'scenario_v3', 'bundle.json'));
  const b = parseBundleBytes(new Uint8Array(bytes));
  assert.ok(b.records.length > 0 && b.records.every((r) => r.raw.length >= 78));
});
