"""Deadlocks and serialisation failures: retried a few times, then answered 503 database_conflict.

PostgreSQL aborts one of two transactions that wait on each other (deadlock_detected, 40P01) or that cannot
be serialised (serialization_failure, 40001). Neither is the database being away, and both usually succeed
when run again: the write functions that can meet one (an enrollment's, a reference's, a deletion, a group's
members) are wrapped in `retried`, which rolls back and runs them again, up to ATTEMPTS times with a short
random pause, and then raises DatabaseConflict (503 with Retry-After) instead of passing the error on.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from sqlalchemy.exc import DBAPIError

from app.core.errors import DatabaseConflict

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")

CONFLICTS = frozenset({"40P01", "40001"})  # deadlock_detected, serialization_failure
ATTEMPTS = 3


def is_conflict(exc: BaseException) -> bool:
    """Whether a database error is a deadlock or a serialisation failure (PostgreSQL's SQLSTATE)."""
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in CONFLICTS


def retried(write: Callable[P, T]) -> Callable[P, T]:
    """Run `write` (a function of the keyword argument `session` that commits) again after a conflict, at most
    ATTEMPTS times in all; then DatabaseConflict."""

    @functools.wraps(write)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return write(*args, **kwargs)
            except DBAPIError as exc:
                if not is_conflict(exc):
                    raise
                kwargs["session"].rollback()
                log.warning("%s: %s (attempt %d of %d)", write.__qualname__, exc.orig.__class__.__name__, attempt,
                            ATTEMPTS)
                if attempt == ATTEMPTS:
                    raise DatabaseConflict(f"the write met another one {ATTEMPTS} times (a deadlock or a "
                                           "serialisation failure); try again") from exc
                time.sleep(random.uniform(0.01, 0.05) * attempt)
        raise AssertionError("unreachable")

    return run
