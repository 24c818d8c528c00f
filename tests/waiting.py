"""Polling until something holds: shared by the tests, and by the probes that the Docker-mode
tests run inside the stack's containers, where pytest is not installed."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(
    condition: Callable[[], object], *, timeout_s: float, what: str, every_s: float = 0.2
) -> object:
    """Poll ``condition`` every ``every_s`` until it returns something truthy; fail with
    ``what`` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(every_s)
