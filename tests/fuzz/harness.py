"""Shared machinery of the fuzzers (issue 12): one rule for every parser an attacker can feed.

For every input a fuzzer tries, :func:`attempt` runs the parser and checks:

* **no crash**: the parser returns, or raises one of the error types documented
  for it (a :class:`Target` names them); anything else is a bug;
* **a clear error**: the message is non-empty, and where the error carries a
  ``code`` it is one of the documented ones (for the protocol package, a code
  named in docs/protocol.md; for the SUN parser, the codes of ``SunError``);
* **time bounded**: at most :data:`CASE_SECONDS` per input;
* **memory bounded**: the tracemalloc peak of one input stays under
  ``CASE_PEAK_BYTES + 64 x len(input)``, so a few-KiB input cannot make the
  parser allocate more than a few MiB (a small input claiming a huge length or
  count is refused before anything is allocated for it).

Sizes come from :func:`tests.soak.scale`: :data:`EXAMPLES` hypothesis examples
per test and :data:`ATHERIS_RUNS` libFuzzer runs per parser under ``make test``
(derandomized, so CI sees the same inputs every time), many more under
``make soak``. Every input tried is counted per parser; at the end of the
session the counts go to ``test-artifacts/fuzz/<parser>.json`` (gitignored),
which the closing note of issue 12 tables as "inputs tried".

Atheris (coverage-guided, libFuzzer) cannot run twice in one process and
exits the process on a finding, so :func:`run_atheris` runs it in a
subprocess with ``-runs=N`` on a small seed corpus, as
tests/protocol/test_fuzz_verify.py does; the subprocess calls the same
:func:`attempt` (it imports this module) and its counts come back on stdout.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import subprocess
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests.soak import SOAK, scale

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "fuzz"
PROTOCOL_MD = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")

CASE_SECONDS = 2.0
CASE_PEAK_BYTES = 4 << 20
EXAMPLES = scale(200, 20000)
ATHERIS_RUNS = scale(2000, 200000)

#: hypothesis settings of every fuzz test: bounded and derandomized under
#: ``make test``; random and long under ``make soak``.
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not SOAK,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: inputs tried so far in this process, per parser and per engine
TRIED: Counter[tuple[str, str]] = Counter()


@dataclass(frozen=True)
class Target:
    """A parser under fuzzing: its name (the artifact's) and what it may raise."""

    name: str
    allowed: tuple[type[BaseException], ...]
    codes: frozenset[str] | None = None  # None: the protocol's documented codes

    def code_ok(self, code: object) -> bool:
        if self.codes is not None:
            return code in self.codes
        return isinstance(code, str) and f"`{code}`" in PROTOCOL_MD


class FuzzFailure(AssertionError):
    """A parser broke one of the rules above; the message holds the input."""


def _show(args: Sequence[Any]) -> str:
    text = repr(args)
    return text if len(text) < 600 else text[:600] + "..."


def _size(args: Sequence[Any]) -> int:
    n = 0
    for a in args:
        if isinstance(a, (bytes, bytearray, str)):
            n += len(a)
        elif isinstance(a, (list, tuple)):
            n += _size(a)
        elif isinstance(a, dict):
            n += _size(list(a.keys())) + _size(list(a.values()))
        else:
            n += 8
    return n


def attempt(
    target: Target, fn: Callable[..., Any], *args: Any, engine: str = "hypothesis"
) -> BaseException | None:
    """Run ``fn(*args)`` under the rules; return the documented error it raised, if any."""
    TRIED[(target.name, engine)] += 1
    started = tracemalloc.is_tracing()
    if not started:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    error: BaseException | None = None
    try:
        fn(*args)
    except target.allowed as e:
        error = e
    except Exception as e:  # anything else escaping is the bug we look for
        raise FuzzFailure(
            f"{target.name}: {type(e).__name__}: {e} escaped for input {_show(args)}"
        ) from e
    finally:
        elapsed = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1] - base
        if not started:
            tracemalloc.stop()
    if elapsed > CASE_SECONDS:
        raise FuzzFailure(f"{target.name}: took {elapsed:.2f} s for input {_show(args)}")
    limit = CASE_PEAK_BYTES + 64 * _size(args)
    if peak > limit:
        raise FuzzFailure(
            f"{target.name}: allocated {peak} bytes (limit {limit}) for input {_show(args)}"
        )
    if error is not None:
        message = str(error)
        if not message.strip():
            raise FuzzFailure(f"{target.name}: {type(error).__name__} without a message")
        code = getattr(error, "code", None)
        if code is not None and not target.code_ok(code):
            raise FuzzFailure(f"{target.name}: undocumented code {code!r} ({message})")
    return error


def peak_bytes(fn: Callable[[], Any], allowed: tuple[type[BaseException], ...]) -> int:
    """The tracemalloc peak of ``fn()``, which must raise one of ``allowed`` or return."""
    tracemalloc.start()
    try:
        with contextlib.suppress(allowed):
            fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# --- inputs ----------------------------------------------------------------------------


@st.composite
def mutations(draw: st.DrawFn, seeds: Sequence[bytes], max_ops: int = 4) -> bytes:
    """A genuine input with a few byte-level edits: flips, overwrites, inserts,
    deletions, truncation, a duplicated slice (the edits of libFuzzer's mutator)."""
    data = bytearray(draw(st.sampled_from(list(seeds))))
    for _ in range(draw(st.integers(1, max_ops))):
        op = draw(st.integers(0, 5))
        n = len(data)
        at = draw(st.integers(0, n)) if n else 0
        if op == 0 and n:  # flip a bit
            i = min(at, n - 1)
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == 1 and n:  # overwrite bytes
            junk = draw(st.binary(min_size=1, max_size=8))
            data[at : at + len(junk)] = junk
        elif op == 2:  # insert bytes
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == 3 and n:  # delete a range
            data[at : at + draw(st.integers(1, 16))] = b""
        elif op == 4:  # truncate
            del data[at:]
        else:  # duplicate a slice
            k = draw(st.integers(1, 32))
            data[at:at] = data[at : at + k]
    return bytes(data)


def mutate(rng: random.Random, data: bytes, max_ops: int = 4) -> bytes:
    """The edits of :func:`mutations` drawn from ``rng``: for fixed corpora (the
    MicroPython run, the atheris seeds) that must not depend on hypothesis."""
    out = bytearray(data)
    for _ in range(rng.randint(1, max_ops)):
        op, n = rng.randint(0, 5), len(out)
        at = rng.randint(0, n)
        if op == 0 and n:
            out[min(at, n - 1)] ^= 1 << rng.randint(0, 7)
        elif op == 1 and n:
            out[at : at + 4] = rng.randbytes(rng.randint(1, 4))
        elif op == 2:
            out[at:at] = rng.randbytes(rng.randint(1, 8))
        elif op == 3 and n:
            del out[at : at + rng.randint(1, 16)]
        elif op == 4:
            del out[at:]
        else:
            k = rng.randint(1, 32)
            out[at:at] = out[at : at + k]
    return bytes(out)


def text_mutations(seeds: Sequence[str], max_ops: int = 4) -> st.SearchStrategy[str]:
    """Mutations of genuine text inputs, kept as text (invalid UTF-8 is replaced)."""
    return mutations([s.encode() for s in seeds], max_ops).map(
        lambda b: b.decode("utf-8", "replace")
    )


# --- counts ----------------------------------------------------------------------------


def write_counts(counts: Iterable[tuple[tuple[str, str], int]] | None = None) -> list[Path]:
    """Add this session's counts to ``test-artifacts/fuzz/<parser>.json``; return the files."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    by_parser: dict[str, dict[str, int]] = {}
    for (name, engine), n in counts if counts is not None else TRIED.items():
        by_parser.setdefault(name, {})[engine] = by_parser.get(name, {}).get(engine, 0) + n
    written = []
    for name, engines in sorted(by_parser.items()):
        path = ARTIFACTS / f"{name}.json"
        doc = {
            "parser": name,
            "inputs_tried": engines,
            "total": sum(engines.values()),
            "soak": SOAK,
            "limits": {
                "case_seconds": CASE_SECONDS,
                "case_peak_bytes": f"{CASE_PEAK_BYTES} + 64 x input size",
            },
        }
        path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)
    return written


# --- atheris ---------------------------------------------------------------------------

_DONE = re.compile(r"Done (\d+) runs")

ATHERIS_DRIVER = Path(__file__).with_name("atheris_driver.py")


def run_atheris(parser: str, corpus: Iterable[bytes], tmp: Path, runs: int = ATHERIS_RUNS) -> int:
    """libFuzzer-run ``parser`` (a name in targets.TARGETS) ``runs`` times in a subprocess,
    seeded with ``corpus``; fail on any finding; return the inputs tried."""
    seeds = tmp / f"corpus-{parser}"
    seeds.mkdir(parents=True, exist_ok=True)
    for i, data in enumerate(corpus):
        (seeds / f"seed-{i:04d}").write_bytes(data)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    budget = scale(60, 3600)
    proc = subprocess.run(
        [
            sys.executable,
            str(ATHERIS_DRIVER),
            parser,
            str(seeds),
            f"-runs={runs}",
            f"-max_total_time={budget}",
            "-rss_limit_mb=1024",
            f"-timeout={int(CASE_SECONDS) + 3}",
            "-max_len=4096",
            f"-seed={0 if SOAK else 1}",
            f"-artifact_prefix={tmp}/crash-{parser}-",
        ],
        capture_output=True,
        text=True,
        timeout=budget + 120,
        env=env,
        cwd=tmp,
        check=False,
    )
    tail = proc.stderr[-4000:]
    assert proc.returncode == 0, f"atheris found a failure in {parser}:\n{tail}"
    done = _DONE.findall(proc.stderr)
    assert done, tail
    tried = int(done[-1])
    TRIED[(parser, "atheris")] += tried
    write_counts([(k, n) for k, n in TRIED.items() if k[0] == parser])  # run from any folder
    return tried
