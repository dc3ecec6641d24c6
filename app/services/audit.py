"""The audit trail: one row per enroll, replace, delete, verify and identify, failures included.

A row says when, which key, what action, which employee and what was decided (and at what distance). It
never holds an image or an embedding. Rows are written in their own short transaction after the work, so
an audit failure (the database going away) is logged and never turns a decision into an error.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app.core.errors import DomainError
from app.faces.errors import FaceError
from app.gallery.models import AuditRecord
from app.keys import Caller

log = logging.getLogger(__name__)


@dataclass
class AuditEntry:
    action: str
    employee_id: str | None = None
    decision: str = "error"  # what an unexpected failure leaves behind
    distance: float | None = None


class AuditTrail:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    @contextmanager
    def record(self, caller: Caller, action: str, employee_id: str | None = None) -> Iterator[AuditEntry]:
        """Audit the block: the caller fills in the decision; a domain error's code becomes the decision."""
        entry = AuditEntry(action, employee_id)
        try:
            yield entry
        except (DomainError, FaceError) as exc:
            entry.decision = exc.code
            raise
        finally:
            self._write(caller, entry)

    def _write(self, caller: Caller, entry: AuditEntry) -> None:
        try:
            with self.sessions() as session:
                session.add(AuditRecord(key_id=caller.key_id, action=entry.action, employee_id=entry.employee_id,
                                        decision=entry.decision, distance=entry.distance))
                session.commit()
        except SQLAlchemyError as exc:
            log.error("audit record lost (%s): %s %s %s by %s", exc.__class__.__name__, entry.action,
                      entry.employee_id, entry.decision, caller.key_id)
