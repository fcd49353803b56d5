"""Child processes a test runs to the end (races between processes)."""

from __future__ import annotations

from collections.abc import Sequence
from multiprocessing.process import BaseProcess
from typing import Any


def run_to_completion(processes: Sequence[BaseProcess], timeout: float) -> None:
    """Start every process, then wait for each (up to `timeout` seconds) and assert that it exited 0."""
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout)
        assert process.exitcode == 0


def results_of(processes: Sequence[BaseProcess], results: Any, timeout: float) -> list[Any]:
    """Start every process and take one result per process from the `results` queue (each within
    `timeout` seconds), in the order they arrive; every process is joined, whatever happens."""
    for process in processes:
        process.start()
    try:
        return [results.get(timeout=timeout) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=10)
