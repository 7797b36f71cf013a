// The page's verifier (cloud/page/static/verify/index.js) on the attack suite's bundles:
// reads a JSON array [{bundle, trust, tag?}] (texts) on stdin and writes the array of
// reports (Python's Report.to_json() shape) on stdout. Used by tests/attacks/outcome.py.
import { verifyBundle } from '../../cloud/page/static/verify/index.js';

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const cases = JSON.parse(Buffer.concat(chunks).toString('utf8'));
const enc = new TextEncoder();
const out = [];
for (const c of cases) {
  out.push(await verifyBundle(enc.encode(c.bundle), enc.encode(c.trust), { tag: c.tag ?? 'unknown' }));
}
process.stdout.write(JSON.stringify(out));
