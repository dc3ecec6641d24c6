"""Brute-force guard for /verify: too many failed verifications, against one employee or by one key, within a
window, and further attempts get 429 with Retry-After until the oldest of those failures leaves the window.

The failures are rows in the database (`verify_failures`), not counters in memory, so every replica counts
the same ones. A refused attempt is not itself counted: a locked-out caller cannot extend the lock. The cost is
that anyone with a verify key can lock an employee out of the door for up to one window by failing on purpose;
that is the usual trade of a lockout, and the audit trail names the key that did it.
"""

from __future__ import annotations

import math
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.core.errors import TooManyAttempts
from app.gallery.models import VerifyFailure, utcnow


class FailedAttempts:
    def __init__(self, settings: Settings) -> None:
        self.window = timedelta(seconds=settings.lockout.failure_window_seconds)
        self.limits = (("employee_id", settings.lockout.max_failures),
                       ("key_id", settings.lockout.max_failures_per_key))
        self.enabled = any(limit for _, limit in self.limits)

    def check(self, session: Session, *, employee_id: str, key_id: str | None) -> None:
        """Raise TooManyAttempts when the employee, or the key, has used up its failures in the window."""
        now = utcnow()
        for column, limit in self.limits:
            value = employee_id.lower() if column == "employee_id" else key_id
            if not limit or value is None:
                continue
            field = getattr(VerifyFailure, column)
            recent = session.scalars(
                select(VerifyFailure.at).where(field == value, VerifyFailure.at > now - self.window)
                .order_by(VerifyFailure.at.desc()).limit(limit)
            ).all()
            if len(recent) >= limit:
                retry_after = max(1, math.ceil((recent[-1] + self.window - now).total_seconds()))
                who = f"employee {employee_id!r}" if column == "employee_id" else "this key"
                raise TooManyAttempts(f"{limit} failed verifications of {who} within "
                                      f"{self.window.total_seconds():g} s; try again in {retry_after} s",
                                      retry_after=retry_after)

    def record(self, session: Session, *, employee_id: str, key_id: str | None) -> None:
        """Count one failed verification, and forget those that have left the window (a write: none when both
        limits are off)."""
        if not self.enabled:
            return
        now = utcnow()
        session.add(VerifyFailure(at=now, employee_id=employee_id.lower(), key_id=key_id))
        session.execute(delete(VerifyFailure).where(VerifyFailure.at <= now - self.window))
        session.commit()
