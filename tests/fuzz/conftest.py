"""Write the inputs each fuzzer tried to test-artifacts/fuzz/<parser>.json at the end."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fuzz.harness import TRIED, write_counts


@pytest.fixture(scope="session", autouse=True)
def _fuzz_counts() -> Iterator[None]:
    yield
    if TRIED:
        write_counts()
