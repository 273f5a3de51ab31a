"""Fixtures of the simulator unit tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tradeflow.simulator.market import clear_caches


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    # Each test must produce its numbers from seeds, not from another test's cached blocks.
    clear_caches()
    yield
    clear_caches()
