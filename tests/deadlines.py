"""Deadlines that scale with the machine's load, so the suite passes on a shared CI machine.

A test polls until what it waits for has happened, and fails only when it has not happened by a
deadline. A deadline written for an idle machine is too short on one where other jobs take the
cores, so every deadline of the suite goes through `scaled`: the figure in the test is for an idle
machine, stretched by the run queue per core at the moment the wait starts (the 1-minute load
average), and by `TEST_DEADLINE_SCALE` when set. A passing test never waits for its deadline, so
a longer one costs nothing but the time a genuine failure takes to report.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

# The suite's own processes (pytest, the function host, Azurite, the emulator) keep about one
# core's worth of run queue busy; only load beyond that stretches a deadline.
_OWN_LOAD = 1.0


def load_factor() -> float:
    """How many times slower than idle the machine is likely to run work now (at least 1)."""
    override = os.environ.get("TEST_DEADLINE_SCALE")
    if override:
        return max(1.0, float(override))
    try:
        load = os.getloadavg()[0]
    except OSError:  # no load average on this platform
        return 1.0
    cores = os.cpu_count() or 1
    return max(1.0, 1.0 + (load - _OWN_LOAD) / cores)


def scaled(seconds: float) -> float:
    """`seconds` of an idle machine, stretched for the load now."""
    return seconds * load_factor()


def deadline(seconds: float) -> float:
    """The `time.monotonic()` value by which something that takes `seconds` when idle is done."""
    return time.monotonic() + scaled(seconds)


def wait_until(check: Callable[[], T], seconds: float, what: str,
               explain: Callable[[], Any] | None = None) -> T:
    """Poll `check` until it returns something truthy and return that, or raise AssertionError
    naming `what` (and what `explain` says of the state then) once the scaled deadline passes."""
    end = deadline(seconds)
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            state = f"; {explain()}" if explain is not None else ""
            raise AssertionError(f"timed out after {seconds:g} s (scaled) waiting for {what}"
                                 f"{state}")
        time.sleep(0.05)
