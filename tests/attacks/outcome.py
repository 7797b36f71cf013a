"""What both verifiers make of a bundle: the Python library (protocol.verify) and the
consumer page's JavaScript (cloud/page/static/verify/index.js, run by Node through
tests/attacks/js_verify.mjs). An attack on a bundle is refused only when *both* refuse
it with the same code: a holder picks the verifier that suits them.

    out = outcome(bundle, trust)
    assert out.failures == {"bad_signature"} and out.verdict is None
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol.bundle import Bundle, loads_bundle
from protocol.trust import loads_trust
from protocol.verify import verify_bundle

ROOT = Path(__file__).resolve().parents[2]
_SCRIPT = Path(__file__).with_name("js_verify.mjs")


@dataclass(frozen=True)
class Outcome:
    """One verifier's answer: the failure codes of §11, the verdict of §12 and its reason
    codes (with their severities), and the whole verdict document (§13.1)."""

    failures: frozenset[str]
    verdict: str | None
    reasons: frozenset[str]
    document: dict[str, Any]
    messages: dict[str, list[str]]  # failure code -> the failures' messages
    checks: dict[str, set[str]]  # failure code -> the checks that failed with it

    @property
    def verified(self) -> bool:
        return bool(self.document["verified"])

    def reason(self, code: str) -> list[dict[str, Any]]:
        return [r for r in self.document["reasons"] if r["code"] == code]

    @classmethod
    def of(cls, report: dict[str, Any]) -> Outcome:
        messages: dict[str, list[str]] = {}
        checks: dict[str, set[str]] = {}
        for f in report["failures"]:
            messages.setdefault(f["code"], []).append(str(f["message"]))
            checks.setdefault(f["code"], set()).add(f["check"])
        doc = {
            k: report[k]
            for k in (
                *("verified", "verdict", "reasons", "subject"),
                *("profile", "legs", "excursions", "totals"),
            )
        }
        return cls(
            frozenset(f["code"] for f in report["failures"]),
            report["verdict"],
            frozenset(r["code"] for r in report["reasons"]),
            doc,
            messages,
            checks,
        )


def js_reports(cases: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """The page verifier's reports for (bundle text, trust text) pairs, in one Node run."""
    node = shutil.which("node")
    assert node is not None, "Node 20 is needed for the page's verifier (make setup)"
    payload = json.dumps([{"bundle": b, "trust": t} for b, t in cases])
    proc = subprocess.run(
        [node, str(_SCRIPT)],
        input=payload,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    reports: list[dict[str, Any]] = json.loads(proc.stdout)
    return reports


def outcomes(cases: Sequence[tuple[Bundle, dict[str, Any]]], *, version: int = 3) -> list[Outcome]:
    """Each bundle (with its trust document) written out and verified from the text by
    both verifiers; they must agree, and the one outcome is returned (the verdict
    document compared whole). ``version`` 2 writes one JSON object per record (version 3
    cannot hold a (log, index) twice)."""
    texts, pys = [], []
    for bundle, trust in cases:
        text, trust_text = bundle.dumps(version=version), json.dumps(trust)
        report = verify_bundle(loads_bundle(text), loads_trust(trust_text.encode()))
        pys.append(Outcome.of(report.to_json()))
        texts.append((text, trust_text))
    for py, report in zip(pys, js_reports(texts), strict=True):
        js = Outcome.of(report)
        assert js.failures == py.failures, ("JS and Python disagree", js.failures, py.failures)
        assert js.document == py.document, "JS and Python verdict documents differ"
    return pys


def outcome(bundle: Bundle, trust: dict[str, Any], *, version: int = 3) -> Outcome:
    return outcomes([(bundle, trust)], version=version)[0]
