"""Every engine a cloud test opened is disposed after the test (its pooled connections
closed before the test's PostgreSQL database is dropped)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cloud import cloudkit


@pytest.fixture(autouse=True)
def _close_engines() -> Iterator[None]:
    yield
    while cloudkit.OPEN:
        cloudkit.OPEN.pop().dispose()
