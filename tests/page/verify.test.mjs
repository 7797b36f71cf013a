// The page's JavaScript verifier (cloud/page/static/verify/index.js) against the Python
// verifier's reports (tests/page/make_expected.py writes them to tests/page/data/).
//
//   node --test tests/page/
//
// For every verdict vector (data/vectors/<name>, bundle and trust from
// tests/protocol/vectors/verdict/<name>), every scenario bundle (data/extra/<name>) and every
// bundle edited one way (data/json/<name>: JSON rules, members, base64, runs, receipts...):
// the verified flag, the multiset of failures (check, subject, code; and their message,
// expected and found), the summary and the counts of passed checks must equal Python's. An unreadable input must be refused with
// Python's code. The verdict document (§13.1) of a verified bundle must equal the vector's
// expected.json and Python's report: THOSE ASSERTIONS NEED verdict.js (judge), marked
// "[verdict.js]" below.

import assert from 'node:assert/strict';
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { verifyBundle } from '../../cloud/page/static/verify/index.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, '..', '..');
const VECTORS = join(ROOT, 'tests', 'protocol', 'vectors', 'verdict');
const DATA = join(HERE, 'data');
const VERDICT_MEMBERS = ['verified', 'verdict', 'reasons', 'subject', 'profile', 'legs', 'excursions', 'totals'];
const NOT_VERDICT = ['summary', 'failures', 'passed_counts', 'checks', 'error', 'message'];

const read = (p) => new Uint8Array(readFileSync(p));
const json = (p) => JSON.parse(readFileSync(p, 'utf8'));
const failureKeys = (failures) => failures.map((f) => `${f.check} | ${f.subject} | ${f.code}`).sort();

function cases() {
  const out = [];
  for (const name of readdirSync(join(DATA, 'vectors')).sort()) {
    out.push({
      name: `vector ${name}`,
      bundle: join(VECTORS, name, 'bundle.json'),
      trust: join(VECTORS, name, 'trust.json'),
      report: join(DATA, 'vectors', name, 'report.json'),
      expected: join(VECTORS, name, 'expected.json'),
    });
  }
  const PROVENANCE = join(ROOT, 'tests', 'protocol', 'vectors', 'provenance');
  for (const name of readdirSync(join(DATA, 'provenance')).sort()) {
    out.push({
      name: `provenance ${name}`,
      bundle: join(PROVENANCE, name, 'bundle.json'),
      trust: join(PROVENANCE, name, 'trust.json'),
      report: join(DATA, 'provenance', name, 'report.json'),
      expected: join(PROVENANCE, name, 'expected.json'),
      tag: json(join(PROVENANCE, name, 'input.json')).tag,
    });
  }
  for (const sub of ['extra', 'json']) {
    for (const name of readdirSync(join(DATA, sub)).sort()) {
      const d = join(DATA, sub, name);
      out.push({ name: `${sub} ${name}`, bundle: join(d, 'bundle.json'), trust: join(d, 'trust.json'), report: join(d, 'report.json') });
    }
  }
  return out;
}

for (const c of cases()) {
  test(`JS verifier agrees with Python: ${c.name}`, async () => {
    const want = json(c.report);
    const got = JSON.parse(JSON.stringify(await verifyBundle(read(c.bundle), read(c.trust), { tag: c.tag ?? 'unknown' })));
    assert.equal(got.verified, want.verified, 'verified');
    if ('error' in want) {
      assert.equal(got.error, want.error, 'unreadable input: the same code');
      return;
    }
    assert.equal(got.error, undefined, `read the input: ${got.message}`);
    assert.deepEqual(failureKeys(got.failures), failureKeys(want.failures), 'failures (check, subject, code)');
    // and the same words: message, expected and found of each failure, in Python's order
    const words = (fs) => fs.map((f) => JSON.stringify([f.check, f.subject, f.code, f.message, f.expected, f.found])).sort();
    assert.deepEqual(words(got.failures), words(want.failures), 'failures: message, expected, found');
    assert.deepEqual(got.summary, want.summary, 'summary');
    assert.deepEqual(got.passed_counts, want.passed_counts, 'counts of passed checks');
    // [verdict.js] the verdict document (§13.1): Python's, and the vector's expected.json
    assert.deepEqual(Object.keys(got).filter((k) => !(k in want)), [], 'no member Python does not have');
    // (the §13.1 members and any the verdict adds, e.g. `provenance` of §12.10)
    const members = Object.keys(want).filter((k) => !NOT_VERDICT.includes(k));
    for (const k of VERDICT_MEMBERS) assert.ok(members.includes(k), k);
    const doc = Object.fromEntries(members.map((k) => [k, got[k]]));
    assert.deepEqual(doc, Object.fromEntries(members.map((k) => [k, want[k]])), '[verdict.js] verdict document = Python');
    if (c.expected && existsSync(c.expected)) {
      const expected = json(c.expected);
      const mine = Object.fromEntries(Object.keys(expected).map((k) => [k, got[k]]));
      assert.deepEqual(mine, expected, '[verdict.js] verdict document = expected.json');
    }
  });
}

test('version 2 and version 3 of one bundle give the same report', async () => {
  const trust = read(join(DATA, 'extra', 'scenario_v2', 'trust.json'));
  const a = await verifyBundle(read(join(DATA, 'extra', 'scenario_v2', 'bundle.json')), trust);
  const b = await verifyBundle(read(join(DATA, 'extra', 'scenario_v3', 'bundle.json')), trust);
  assert.deepEqual(JSON.parse(JSON.stringify(a)), JSON.parse(JSON.stringify(b)));
});

test('onProgress is called, ending at 1', async () => {
  const seen = [];
  await verifyBundle(read(join(VECTORS, 'pass', 'bundle.json')), read(join(VECTORS, 'pass', 'trust.json')), {
    onProgress: (p) => seen.push(p),
  });
  assert.ok(seen.length > 3);
  assert.equal(seen.at(-1).fraction, 1);
});
