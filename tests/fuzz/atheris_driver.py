"""libFuzzer (atheris) driver for one parser of tests/fuzz/targets.py.

    python tests/fuzz/atheris_driver.py PARSER CORPUS_DIR [libFuzzer flags]

Run by :func:`tests.fuzz.harness.run_atheris` in a subprocess (libFuzzer owns
the process: it exits on a finding and cannot run twice). The product modules
(protocol, cloud, the firmware's ct_record and ct_cbor) are instrumented for
coverage; every input goes through :func:`tests.fuzz.harness.attempt`, so a
disallowed error, a slow input or an oversized allocation is a finding.
"""

import sys

import atheris

with atheris.instrument_imports(include=["protocol", "cloud", "ct_record", "ct_cbor"]):
    from tests.fuzz import targets

from tests.fuzz.harness import attempt

ENTRY = {**targets.TARGETS, **targets.ATHERIS_ONLY}[sys.argv[1]]


def one(data: bytes) -> None:
    attempt(ENTRY.target, ENTRY.run, data, engine="atheris")


if __name__ == "__main__":
    atheris.Setup([sys.argv[0], *sys.argv[2:]], one)
    atheris.Fuzz()
