// Verifies bundles with cloud/page/static/verify/index.js inside a module Web Worker
// (WebCrypto ECDSA P-256 and Ed25519, no Node APIs), for test_js_verifier_browser.py.
import { verifyBundle } from '../../../cloud/page/static/verify/index.js';

self.onmessage = async (ev) => {
  const { id, bundle, trust, tag } = ev.data;
  try {
    const [b, t] = await Promise.all([bundle, trust].map(async (url) => new Uint8Array(await (await fetch(url)).arrayBuffer())));
    const t0 = performance.now();
    const report = await verifyBundle(b, t, { tag, onProgress: (p) => self.postMessage({ id, progress: p.fraction }) });
    self.postMessage({ id, report: JSON.parse(JSON.stringify(report)), ms: performance.now() - t0 });
  } catch (e) {
    self.postMessage({ id, error: `${e && e.stack ? e.stack : e}` });
  }
};
