"""The reliability suite: faults, load, bad input and secrets (see RELIABILITY.md).

Every test here is marked `reliability` and `slow`, so `pytest --fast` leaves
them out and `pytest -m reliability` runs them alone. The long load run is
behind `--load-seconds` (or INTEGRATIONS_LOAD_SECONDS); CI runs the short one.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.reliability)
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def load_seconds(request: pytest.FixtureRequest) -> float:
    """How long the load test runs: 60 s unless --load-seconds / INTEGRATIONS_LOAD_SECONDS says more."""
    option = request.config.getoption("--load-seconds", default=None)
    return float(option or os.environ.get("INTEGRATIONS_LOAD_SECONDS") or 60)


@pytest.fixture(scope="session")
def figures_dir() -> Path:
    """Where tests write the figures RELIABILITY.md quotes (JSON, one file per test)."""
    path = Path(os.environ.get("INTEGRATIONS_TEST_ARTIFACTS", "test-artifacts")) / "reliability"
    path.mkdir(parents=True, exist_ok=True)
    return path
