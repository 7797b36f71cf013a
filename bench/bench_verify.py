"""Verifier: time and peak memory of `coldtrace verify` on 10^4- and 10^5-record trace bundles.

A trace of five legs (packhouse, truck, cross-dock, cold room, shop), each
watched by four loggers reading every five minutes, with the scans, bindings,
profile and registrations a real bundle holds (tests/protocol/scenario.py).
Each bundle is verified by the command line in a fresh process, as a user
runs it, so the figures include reading and parsing the file; peak memory
is the child's peak resident set (VmHWM). Goals (issue 7): a 10^5-record
bundle in <= 15 s and <= 300 MB, growing linearly from 10^4.

The baseline, measured in the same run, is the raw cost of the dominant work:
checking the bundle's ECDSA signatures one by one with pyca/cryptography.

The same bundles are then verified in a browser, as the consumer page does:
the page's JavaScript verifier (cloud/page/static/verify/) in a module Web
Worker of headless Chromium (/usr/bin/chromium, driven by Playwright), with
WebCrypto, loaded from tests/page/browser/ over a local HTTP server. The
figure is the worker's own time from the bundle bytes to the report (the
fetch is not counted, as the CLI's figure counts reading the file); the
baseline is the CLI's time for the same bundle: the mean of its run above
and a second run right after the browser's (a shared machine's speed
drifts). Memory:
the peak resident set (VmHWM) of Chromium's renderer process, which runs
the worker, against the CLI's peak; and, in a second run on the page's main
thread, the JS heap (``performance.memory.usedJSHeapSize`` with
``--enable-precise-memory-info``) sampled at every progress step and every
10 ms the event loop is free: a lower bound of the peak (parsing runs
without a pause). Without Chromium or Playwright the browser figures are
skipped and the run says so.
"""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

from bench.results import Recorder

PLACES = ["pack:dock-1", "fleet:truck-1", "xdock:bay-2", "dc:cold-room-2", "shop:chiller-1"]
ACTIONS = [
    1,
    2,
    3,
    4,
    5,
]  # commission, load (ref = truck), unload, receive, ship -> receive at shop


def build(n: int, out: Path) -> tuple[Path, Path, int]:
    """Write a bundle of about ``n`` records and its trust file; return their paths."""
    from tests.protocol.scenario import GTIN, ITEM, T0, Scenario

    s = Scenario(deterministic=False)
    every = 300
    per_leg = max(2, n // (len(PLACES) * 4))
    leg_len = per_leg * every
    s.profile(GTIN, T0 - 3600, low=0, high=800, delay=1800, gap=1800, cumul=7200)
    loggers = {}
    for place in PLACES:
        devs = [s.logger(f"tl-{place.split(':')[0]}-{k}") for k in range(4)]
        loggers[place] = devs
        s.bind(place, [d.id for d in devs], T0 - 3600)
    readers = [s.reader(f"rd-{i}", PLACES[i] if i != 1 else PLACES[0]) for i in range(5)]
    t = T0
    for leg, place in enumerate(PLACES):
        action = [1, 2, 3, 4, 4][leg]
        ref = {"ref": PLACES[1]} if action == 2 else {}
        kw = {"item": ITEM} if action == 1 else {}
        s.scan(readers[leg], action, t, **ref, **kw)
        for k, dev in enumerate(loggers[place]):
            s.readings(
                dev, t - every, t + leg_len, every, lambda x, k=k: 300 + (x // every + k) % 200
            )
        t += leg_len
    s.scan(readers[4], 6, t)
    s.profile(GTIN, t + 60, low=0, high=800, delay=1800, gap=1800, cumul=7200)  # restated
    for place in PLACES:
        s.bind(place, [d.id for d in loggers[place]], t + 60)  # restated: closes every leg
    bundle, trust = out / f"bundle-{n}.json", out / f"trust-{n}.json"
    bundle.write_text(s.bundle().dumps())
    import json

    trust.write_text(json.dumps(s.trust_doc()))
    return bundle, trust, len(s.records)


def _verify_in_child(bundle: Path, trust: Path) -> tuple[float, float, int]:
    """Seconds and peak MiB of `coldtrace verify --json` in a fresh process; its exit status."""
    code = (
        "import sys, time;"
        "from protocol.cli import main;"
        "t = time.perf_counter();"
        f"rc = main(['verify', {str(bundle)!r}, '--trust', {str(trust)!r}, '--json']);"
        "dt = time.perf_counter() - t;"
        # VmHWM, not ru_maxrss: after fork + exec, ru_maxrss still holds the
        # parent's high-water mark (Linux carries it over); VmHWM is this image's.
        "rss = next(int(x.split()[1]) for x in open('/proc/self/status') if x.startswith('VmHWM'));"
        "print('BENCH', dt, rss, rc, file=sys.stderr)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parent.parent,
    )
    line = next(x for x in proc.stderr.splitlines() if x.startswith("BENCH"))
    _, dt, rss_kib, rc = line.split()
    return float(dt), int(rss_kib) / 1024, int(rc)


def _raw_verify_rate(bundle: Path, trust: Path) -> float:
    """Signatures per second, one by one, with pyca (the baseline)."""
    from protocol.bundle import load_bundle
    from protocol.record import open_record, verify_record
    from protocol.trust import load_trust

    b = load_bundle(bundle)
    load_trust(trust)
    from cryptography.hazmat.primitives.asymmetric import ec

    from protocol.keys import p256_public_from_sec1
    from protocol.record import Registration

    keys: dict[str, ec.EllipticCurvePublicKey] = {}
    recs = [open_record(r.raw) for r in b.records]
    for r in recs:
        if isinstance(r.payload, Registration):
            keys[r.payload.device] = p256_public_from_sec1(r.payload.key)
    sample = [r for r in recs if r.signer in keys][:5000]
    t0 = time.perf_counter()
    for r in sample:
        verify_record(r.raw, keys[r.signer])
    return len(sample) / (time.perf_counter() - t0)


ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--enable-precise-memory-info",
]
PAGE = "/tests/page/browser/verify.html"  # its worker runs the page's verifier
DATA = "/bench-data/"  # the bundles, served from the bench's temporary folder


class _Handler(SimpleHTTPRequestHandler):
    """The repository root, plus DATA mapped to ``data`` (set by functools.partial)."""

    extensions_map: ClassVar[dict[str, str]] = {
        **SimpleHTTPRequestHandler.extensions_map,
        ".mjs": "text/javascript",
        ".js": "text/javascript",
    }

    def __init__(self, *args: Any, data: str, **kw: Any) -> None:
        self.data = data
        super().__init__(*args, **kw)

    def translate_path(self, path: str) -> str:
        if path.startswith(DATA):
            return os.path.join(self.data, os.path.basename(path.split("?", 1)[0]))
        return super().translate_path(path)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def _serve(data: Path) -> Iterator[str]:
    handler = functools.partial(_Handler, directory=str(ROOT), data=str(data))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def _descendants(pid: int) -> list[int]:
    parent: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out += kids
        todo += kids
    return out


def _renderer_hwm_mib() -> float:
    """Peak resident MiB (VmHWM) of the largest Chromium renderer this process started."""
    best = 0.0
    for pid in _descendants(os.getpid()):
        try:
            if b"--type=renderer" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                continue
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                best = max(best, int(line.split()[1]) / 1024)
    return best


_MAIN_THREAD = """([b, t]) => {
  window.done = null;
  window.heapPeak = 0;
  const sample = () => {
    window.heapPeak = Math.max(window.heapPeak, performance.memory.usedJSHeapSize);
  };
  const timer = setInterval(sample, 10);
  window.job = (async () => {
    const m = await import('/cloud/page/static/verify/index.js');
    const [bb, tt] = await Promise.all([b, t].map(
      async (u) => new Uint8Array(await (await fetch(u)).arrayBuffer())));
    sample();
    const t0 = performance.now();
    const rep = await m.verifyBundle(bb, tt, { tag: 'unknown', onProgress: sample });
    sample();
    window.done = { ms: performance.now() - t0, verified: rep.verified, peak: window.heapPeak };
  })().catch((e) => { window.done = { error: String(e && e.stack ? e.stack : e) }; })
    .finally(() => clearInterval(timer));
}"""


def _verify_in_browser(bundles: list[tuple[Path, Path]]) -> list[dict[str, Any]] | str:
    """Each bundle verified by the page's verifier in Chromium: a Web Worker run (time,
    renderer peak RSS) then a main-thread run (sampled JS heap peak). A reason string
    when the browser cannot run."""
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM}"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return "Python playwright not installed"
    out = []
    with _serve(bundles[0][0].parent) as base, sync_playwright() as p:
        for bundle, trust in bundles:
            b, t = DATA + bundle.name, DATA + trust.name
            # a fresh browser per bundle: the renderer's VmHWM is this bundle's peak
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
                page.goto(base + PAGE)
                page.wait_for_function("window.ready === true", timeout=30_000)
                idle = _renderer_hwm_mib()
                t0 = time.perf_counter()
                w = page.evaluate(
                    "([b, t]) => verifyInWorker(b, t, 'unknown')"
                    ".then(r => ({ ms: r.ms, verified: r.report.verified }))",
                    [b, t],
                )
                wall = time.perf_counter() - t0
                hwm = _renderer_hwm_mib()
                page.evaluate(_MAIN_THREAD, [b, t])
                page.wait_for_function("window.done !== null", timeout=600_000, polling=200)
                m = page.evaluate("window.done")
                if "error" in m or errors:
                    raise RuntimeError(f"browser verify failed: {m.get('error')} {errors}")
                out.append(
                    {
                        "seconds": w["ms"] / 1000,
                        "wall_s": wall,
                        "verified": w["verified"],
                        "renderer_hwm_mib": hwm,
                        "renderer_idle_mib": idle,
                        "main_seconds": m["ms"] / 1000,
                        "main_verified": m["verified"],
                        "heap_peak_mib": m["peak"] / 2**20,
                    }
                )
            finally:
                browser.close()
    return out


def run(rec: Recorder) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        figures = {}
        made: dict[int, tuple[Path, Path, int, float, float]] = {}
        for n in (10_000, 100_000):
            t0 = time.perf_counter()
            bundle, trust, count = build(n, out)
            print(
                f"   built a {count}-record bundle ({bundle.stat().st_size / 2**20:.1f} MiB) "
                f"in {time.perf_counter() - t0:.1f} s",
                flush=True,
            )
            seconds, mib, rc = _verify_in_child(bundle, trust)
            figures[n] = (count, seconds, mib)
            made[n] = (bundle, trust, count, seconds, mib)
            rate = _raw_verify_rate(bundle, trust)
            rec.add(
                f"verify.bundle_{n}.seconds",
                seconds,
                "s",
                baseline="raw pyca ECDSA verify of the same records, one core",
                baseline_value=count / rate,
                note=f"{count} records, exit status {rc}, goal <= 15 s at 10^5",
            )
            rec.add(
                f"verify.bundle_{n}.peak_mib",
                mib,
                "MiB",
                baseline="bundle file size",
                baseline_value=bundle.stat().st_size / 2**20,
                note="peak resident memory of the verifying process; goal <= 300 MB at 10^5",
            )
        (c4, s4, _), (c5, s5, _) = figures[10_000], figures[100_000]
        rec.add(
            "verify.growth_10x.time_ratio",
            (s5 / c5) / (s4 / c4),
            "x",
            note="per-record time at 10^5 over per-record time at 10^4 (1.0 = linear)",
        )
        _browser(rec, made)


def _browser(rec: Recorder, made: dict[int, tuple[Path, Path, int, float, float]]) -> None:
    for n, (bundle, trust, count, cli_s, cli_mib) in made.items():
        t0 = time.perf_counter()
        got = _verify_in_browser([(bundle, trust)])
        if isinstance(got, str):
            print(f"   browser verification skipped: {got}")
            return
        r = got[0]
        # the CLI again, right after the browser: the machine's speed drifts (shared), so
        # the baseline is the mean of the CLI just before and just after
        cli_after, _, _ = _verify_in_child(bundle, trust)
        cli = (cli_s + cli_after) / 2
        print(
            f"   browser runs of {count} records took {time.perf_counter() - t0:.1f} s", flush=True
        )
        mib = bundle.stat().st_size / 2**20
        rec.add(
            f"verify.bundle_{n}.browser_seconds",
            r["seconds"],
            "s",
            baseline="coldtrace verify (CLI) of the same bundle, this run",
            baseline_value=cli,
            note=f"{count} records ({mib:.1f} MiB), page verifier in a Chromium Web Worker "
            f"(WebCrypto), verified {r['verified']}; with the fetch {r['wall_s']:.2f} s; "
            f"on the main thread {r['main_seconds']:.2f} s; baseline = mean of the CLI's "
            f"{cli_s:.2f} s before and {cli_after:.2f} s after",
        )
        rec.add(
            f"verify.bundle_{n}.browser_peak_rss_mib",
            r["renderer_hwm_mib"],
            "MiB",
            baseline="the CLI's peak resident memory, same bundle",
            baseline_value=cli_mib,
            note=f"VmHWM of Chromium's renderer process (page + worker); "
            f"{r['renderer_idle_mib']:.0f} MiB with the page loaded, before verifying",
        )
        rec.add(
            f"verify.bundle_{n}.browser_js_heap_peak_mib",
            r["heap_peak_mib"],
            "MiB",
            baseline="bundle file size",
            baseline_value=mib,
            note="performance.memory.usedJSHeapSize, main-thread run, sampled at each "
            "progress step and every 10 ms the loop is free (a lower bound of the peak)",
        )
