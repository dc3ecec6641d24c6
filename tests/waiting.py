"""Waiting for something that happens in another thread or replica, with a bound."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

# How long a test waits for a change made on one replica to be seen on another: a bound that tells "it arrives"
# from "it never does", with room for a slow machine (a full suite on slow disks once took 66 min, and a
# SQLite replica then missed 1.0 s once). How soon it arrives is benchmarks.replicas's figure, not a test's.
PROPAGATION_S = 5.0


def within(seconds: float, check: Callable[[], bool]) -> float:
    """Seconds until check() is true; fails the test after `seconds`."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > seconds:
            pytest.fail(f"not seen within {seconds} s")
        time.sleep(0.01)
    return time.monotonic() - started
