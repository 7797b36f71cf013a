"""A large bundle for timing the page's JavaScript verifier: one logger's readings.

    python -m tests.page.make_big OUTDIR [N]     # writes OUTDIR/bundle.json, OUTDIR/trust.json

N readings (default 10,000) of one truck logger every 5 minutes, with the registry's
profile, binding and registrations, a packhouse reader's commission and load scans, one
checkpoint, one multiproof and a local-ledger anchor (tests/protocol/scenario.py), as a
version 3 bundle. Signatures use pyca's random nonces (RFC 6979 in pure Python would take
minutes): the bytes differ from run to run, the report does not.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.protocol.scenario import COMMISSION, GTIN, ITEM, LOAD, T0, Scenario

TRUCK = "fleet:truck-1"


def build(n: int) -> tuple[bytes, bytes]:
    s = Scenario(deterministic=False)
    s.profile(GTIN, T0 - 3600, low=0, high=800, delay=1800, gap=1800)
    truck = s.logger("tl-truck")
    s.bind(TRUCK, ["tl-truck"], T0 - 3600)
    dock = s.reader("rd-pack", "pack:dock-1")
    s.scan(dock, COMMISSION, T0, item=ITEM)
    s.scan(dock, LOAD, T0 + 60, ref=TRUCK)
    s.readings(truck, T0, T0 + 300 * (n - 1), 300, lambda t: 300 + (t // 300) % 50)
    bundle = s.bundle(item=ITEM, validate=False)
    import json

    return bundle.dumps(version=3, check=False).encode(), (
        json.dumps(s.trust_doc()) + "\n"
    ).encode()


def main(argv: list[str]) -> int:
    out = Path(argv[1])
    n = int(argv[2]) if len(argv) > 2 else 10_000
    out.mkdir(parents=True, exist_ok=True)
    bundle, trust = build(n)
    (out / "bundle.json").write_bytes(bundle)
    (out / "trust.json").write_bytes(trust)
    print(f"{out / 'bundle.json'}: {n} readings, {len(bundle)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
