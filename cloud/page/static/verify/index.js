// ColdTrace verifier in the browser (and Node 20): the authenticity part of
// docs/protocol.md §11 as a second, independent implementation of protocol/verify.py,
// then the verdict (§12) from verdict.js. ES modules, no dependencies, no build step.
//
//   import { verifyBundle } from './index.js';
//   const report = await verifyBundle(bundleBytes, trustBytes, { onProgress, tag });
//   (bundleBytes, trustBytes: Uint8Array; an ArrayBuffer or other typed view is taken too)
//
// `report` has the shape and values of Python's protocol.verify.Report.to_json():
// {verified, verdict, reasons, subject, profile, legs, excursions, totals, summary,
//  failures: [{check, subject, ok, code, message, expected, found}]} plus
// `passed_counts` ({check name: passed count}). An unreadable bundle or trust file
// (§11 step 1, the command line's exit status 2) gives verified false, no summary
// members, one failure {check: 'bundle' | 'trust', code: 'malformed_bundle' |
// 'malformed_trust'} and the members `error` (the code) and `message`.
// onProgress({stage, fraction}) is called as the steps go (for a Web Worker's UI); `tag` is
// the tap's tag authentication for the provenance verdict (§12.10): 'genuine', 'replayed',
// 'unauthenticated' or 'unknown' (the default: not checked), as Python's verify_bundle(tag=).

import { BundleError, parseBundleBytes } from './bundle.js';
import { TrustError, parseTrustBytes } from './trust.js';
import { verifyParsed } from './verify.js';

function unreadable(check, code, message) {
  return {
    verified: false,
    verdict: null,
    reasons: [],
    subject: null,
    profile: null,
    legs: [],
    excursions: [],
    totals: null,
    summary: {},
    failures: [{ check, subject: check, ok: false, code, message, expected: null, found: null }],
    passed_counts: {},
    error: code,
    message,
  };
}

const bytesOf = (b) => (b instanceof Uint8Array ? b : b instanceof ArrayBuffer ? new Uint8Array(b) : ArrayBuffer.isView(b) ? new Uint8Array(b.buffer, b.byteOffset, b.byteLength) : b);

export async function verifyBundle(bundleBytes, trustBytes, { onProgress, tag = 'unknown' } = {}) {
  bundleBytes = bytesOf(bundleBytes);
  trustBytes = bytesOf(trustBytes);
  let trust, bundle;
  // Python's command line reads the trust file first
  try {
    trust = parseTrustBytes(trustBytes);
  } catch (e) {
    if (e instanceof TrustError) return unreadable('trust', e.code, e.message);
    throw e;
  }
  try {
    bundle = parseBundleBytes(bundleBytes);
  } catch (e) {
    if (e instanceof BundleError) return unreadable('bundle', e.code, e.message);
    throw e;
  }
  const report = await verifyParsed(bundle, trust, { onProgress, tag });
  return report.toJSON();
}

export { parseBundleBytes, parseTrustBytes, verifyParsed };
