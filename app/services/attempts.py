"""Brute-force guard for /verify: too many failed verifications, against one employee or by one key, within a
window, and further attempts get 429 with Retry-After until the oldest of those failures leaves the window.

The failures are rows in the database (`verify_failures`), not counters in memory, so every replica counts
the same ones. The count and the decision are one step: an attempt first reserves a row (`reserve`), under a
lock per employee and per key that every replica takes (a PostgreSQL advisory lock; SQLite's one write lock),
and only then is the photo compared. A match gives the row back (`release`), as does an attempt that ends in
an error; a failure keeps it. So no more than the limit of comparisons run for one employee within a window,
however many arrive at once and on however many replicas (checking first and recording after let 8 of 200
simultaneous wrong photos through on one server, and 12 on two).

A refused attempt is not itself counted: a locked-out caller cannot extend the lock. The cost is that anyone
with a verify key can lock an employee out of the door for up to one window by failing on purpose; that is
the usual trade of a lockout, and the audit trail names the key that did it.

The per-key limit is an alarm by default (FACEGATE_VERIFY_KEY_LIMIT=alarm): past it, each further failure by
the key counts in facegate_lockout_key_alarms_total and is logged (once a minute per key), and the door goes on
serving. A hard stop there (`block`) answers 429 to the whole door, its genuine employees included: a door
that sees 100 failed verifications in 15 minutes is a busy door as often as an attack. With the alarm, a
stolen door key is held by the per-employee limit alone (5 tries per employee per window) until it is
revoked, which the alarm is there to prompt.
"""

from __future__ import annotations

import logging
import math
import time
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

from app.core import metrics
from app.core.config import Settings
from app.core.errors import TooManyAttempts
from app.gallery.models import VerifyFailure, utcnow

log = logging.getLogger(__name__)


class FailedAttempts:
    def __init__(self, settings: Settings) -> None:
        self.window = timedelta(seconds=settings.lockout.failure_window_seconds)
        self.limits = (("employee_id", settings.lockout.max_failures),
                       ("key_id", settings.lockout.max_failures_per_key))
        self.enabled = any(limit for _, limit in self.limits)
        self.key_blocks = settings.lockout.key_limit == "block"
        self._alarmed_at: dict[str, float] = {}  # key id -> when its alarm was last logged

    def reserve(self, session: Session, *, employee_id: str, key_id: str | None, groups: str | None = None
                ) -> int | None:
        """Take one of the window's attempts for the employee and the key, or raise TooManyAttempts. Commits.
        Returns the reservation to `release` if the attempt does not fail (None when both limits are off).
        `groups`: those the key is bound to, comma-separated, kept with a failure for the operator to read."""
        if not self.enabled:
            return None
        session.rollback()  # a fresh transaction: on SQLite a read one could not take the write lock
        now = utcnow()
        values = {"employee_id": employee_id.lower(), "key_id": key_id}
        self._lock(session, values)
        session.execute(delete(VerifyFailure).where(VerifyFailure.at <= now - self.window))
        try:
            self._check(session, values, now, employee_id)
        except TooManyAttempts:
            session.rollback()
            raise
        row = VerifyFailure(at=now, groups=groups, **values)
        session.add(row)
        session.commit()
        return row.id

    def release(self, session: Session, reservation: int | None) -> None:
        """The reserved attempt did not fail (a match, or an error before any decision): it does not count."""
        if reservation is None:
            return
        session.rollback()
        session.execute(delete(VerifyFailure).where(VerifyFailure.id == reservation))
        session.commit()

    def _lock(self, session: Session, values: dict[str, str | None]) -> None:
        """Serialise the reservations of one employee, and of one key, across replicas until the commit. On
        PostgreSQL, transaction-scoped advisory locks, the employee's first (a fixed order: no deadlock); on
        SQLite the DELETE that follows takes the database's one write lock."""
        if session.get_bind().dialect.name != "postgresql":
            return
        for column, _ in self.limits:
            if values[column] is not None:
                session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:name))"),
                                {"name": f"facegate verify {column} {values[column]}"})

    def _alarm(self, key_id: str, limit: int) -> None:
        """The key is past its limit: counted, and logged at most once a minute per key."""
        metrics.LOCKOUT_KEY_ALARMS.inc()
        now = time.monotonic()
        if now - self._alarmed_at.get(key_id, -60.0) >= 60.0:
            self._alarmed_at[key_id] = now
            log.warning("key %s has failed %d or more verifications within %g s: a busy door, or an attack; its "
                        "door goes on serving (FACEGATE_VERIFY_KEY_LIMIT=alarm); revoke the key if it is not yours",
                        key_id, limit, self.window.total_seconds())

    def _check(self, session: Session, values: dict[str, str | None], now: datetime, employee_id: str) -> None:
        for column, limit in self.limits:
            if not limit or values[column] is None:
                continue
            field = getattr(VerifyFailure, column)
            in_window = (field == values[column], VerifyFailure.at > now - self.window)
            if session.scalar(select(func.count()).select_from(VerifyFailure).where(*in_window)) < limit:
                continue
            if column == "key_id" and not self.key_blocks:
                self._alarm(values[column], limit)
                continue
            oldest = session.scalars(select(VerifyFailure.at).where(*in_window).order_by(VerifyFailure.at.desc())
                                     .offset(limit - 1).limit(1)).one()
            retry_after = max(1, math.ceil((oldest + self.window - now).total_seconds()))
            who = f"employee {employee_id!r}" if column == "employee_id" else "this key"
            raise TooManyAttempts(f"{limit} failed verifications of {who} within {self.window.total_seconds():g} "
                                  f"s; try again in {retry_after} s", retry_after=retry_after)
