"""The page's JavaScript verifier in a real browser: Chromium (Playwright), in a module Web
Worker, with the browser's WebCrypto (ECDSA P-256, Ed25519) and no Node API. Every case of
tests/page/data/ (verdict and provenance vectors, scenario bundles, edited bundles) must
give Python's report: the verified flag, the failures (check, subject, code), the summary
and the verdict document. tests/page/browser/ holds the page and the worker; the files are
served from the repository root by a local HTTP server (module workers need http)."""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.page import make_expected

playwright_api = pytest.importorskip("playwright.sync_api")

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
NOT_VERDICT = {"summary", "failures", "passed_counts", "checks", "error", "message"}

if not Path(CHROMIUM).exists():
    pytest.skip("no Chromium at /usr/bin/chromium", allow_module_level=True)


class _Quiet(SimpleHTTPRequestHandler):
    extensions_map: ClassVar[dict[str, str]] = {
        **SimpleHTTPRequestHandler.extensions_map,
        ".mjs": "text/javascript",
        ".js": "text/javascript",
    }

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(ROOT)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def cases() -> list[tuple[str, str, str, Path, str]]:
    """(name, bundle path, trust path, report path, tag), paths relative to the root."""
    data = make_expected.OUT
    out = []
    for kind, src in (("vectors", make_expected.VECTORS), ("provenance", make_expected.PROVENANCE)):
        for d in sorted((data / kind).iterdir()):
            tag = "unknown"
            if (src / d.name / "input.json").exists():
                tag = json.loads((src / d.name / "input.json").read_text())["tag"]
            out.append(
                (
                    f"{kind}/{d.name}",
                    str((src / d.name / "bundle.json").relative_to(ROOT)),
                    str((src / d.name / "trust.json").relative_to(ROOT)),
                    d / "report.json",
                    tag,
                )
            )
    for kind in ("extra", "json"):
        for d in sorted((data / kind).iterdir()):
            out.append(
                (
                    f"{kind}/{d.name}",
                    str((d / "bundle.json").relative_to(ROOT)),
                    str((d / "trust.json").relative_to(ROOT)),
                    d / "report.json",
                    "unknown",
                )
            )
    return out


def _failures(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    return sorted((f["check"], f["subject"], f["code"]) for f in report.get("failures", []))


def test_the_verifier_in_a_chromium_web_worker_agrees_with_python(base: str) -> None:
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{base}/tests/page/browser/verify.html")
            page.wait_for_function("window.ready === true", timeout=20_000)
            checked = 0
            for name, bundle, trust, report_path, tag in cases():
                want = json.loads(report_path.read_text())
                got = page.evaluate(
                    "([b, t, tag]) => verifyInWorker('/' + b, '/' + t, tag)", [bundle, trust, tag]
                )
                report = got["report"]
                assert report["verified"] == want["verified"], name
                if "error" in want:
                    assert report.get("error") == want["error"], name
                else:
                    assert _failures(report) == _failures(want), name
                    assert report["summary"] == want["summary"], name
                    assert report["passed_counts"] == want["passed_counts"], name
                    members = set(want) - NOT_VERDICT
                    assert {k: report.get(k) for k in members} == {k: want[k] for k in members}, (
                        name
                    )
                    assert got["progress"] and got["progress"][-1] == 1, name
                checked += 1
            assert not errors, errors
            assert checked >= 100
            ms = page.evaluate(
                "() => verifyInWorker('/tests/protocol/vectors/verdict/pass/bundle.json',"
                " '/tests/protocol/vectors/verdict/pass/trust.json', 'unknown').then(r => r.ms)"
            )
            print(f"verify-timing: pass vector in Chromium's Web Worker: {ms:.1f} ms")
        finally:
            browser.close()
