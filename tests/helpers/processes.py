"""Child processes a test runs to the end (races between processes)."""

from __future__ import annotations

from collections.abc import Sequence
from multiprocessing.process import BaseProcess


def run_to_completion(processes: Sequence[BaseProcess], timeout: float) -> None:
    """Start every process, then wait for each (up to `timeout` seconds) and assert that it exited 0."""
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout)
        assert process.exitcode == 0
