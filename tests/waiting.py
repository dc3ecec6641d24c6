"""Waiting for something that happens in another thread or replica, with a bound."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

# How soon a change made on one replica must be seen on another (the change feed's bound).
PROPAGATION_S = 1.0


def within(seconds: float, check: Callable[[], bool]) -> float:
    """Seconds until check() is true; fails the test after `seconds`."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > seconds:
            pytest.fail(f"not seen within {seconds} s")
        time.sleep(0.01)
    return time.monotonic() - started
