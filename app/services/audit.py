"""The audit trail: one row per enroll, replace, delete, verify and identify, failures included.

A row says when, which key, what action, which employee and what was decided (and at what distance). It
never holds an image or an embedding. A request only queues its row; one writer thread inserts what has
queued up in one transaction, so concurrent requests never queue behind each other's audit commits (on
SQLite, one commit per request made the tail latency at 16 concurrent requests seconds long). Rows reach
the database within about `interval` seconds, and close() writes the rest. An audit failure (the database
going away) is logged and never turns a decision into an error.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app.core.errors import DomainError
from app.gallery.models import AuditRecord, utcnow
from app.keys import Caller
from model.faces.errors import FaceError

log = logging.getLogger(__name__)


@dataclass
class AuditEntry:
    action: str
    employee_id: str | None = None
    decision: str = "error"  # what an unexpected failure leaves behind
    distance: float | None = None
    at: datetime = field(default_factory=utcnow)


class AuditTrail:
    def __init__(self, sessions: sessionmaker[Session], interval: float = 0.1) -> None:
        self.sessions, self.interval = sessions, interval
        # a row, an Event to set once everything before it is written (flush), or None to stop
        self._queue: queue.SimpleQueue[tuple[Caller, AuditEntry] | threading.Event | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._writer.start()

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
            self._queue.put((caller, entry))

    def flush(self) -> None:
        """Wait until everything recorded so far is in the database."""
        done = threading.Event()
        self._queue.put(done)
        done.wait(timeout=30)

    def close(self) -> None:
        self._queue.put(None)
        self._writer.join(timeout=30)

    def _run(self) -> None:
        """Gather what arrives within `interval` of the last item (at most 1,000 rows), write it, repeat."""
        while True:
            batch = [self._queue.get()]
            while batch[-1] is not None and len(batch) < 1000:
                try:
                    batch.append(self._queue.get(timeout=self.interval))
                except queue.Empty:
                    break
            self._write([item for item in batch if isinstance(item, tuple)])
            for item in batch:
                if isinstance(item, threading.Event):
                    item.set()
            if batch[-1] is None:
                return

    def _write(self, rows: list[tuple[Caller, AuditEntry]]) -> None:
        if not rows:
            return
        try:
            with self.sessions() as session:
                session.add_all([AuditRecord(at=entry.at, key_id=caller.key_id, action=entry.action,
                                             employee_id=entry.employee_id, decision=entry.decision,
                                             distance=entry.distance) for caller, entry in rows])
                session.commit()
        except SQLAlchemyError as exc:
            log.error("%d audit records lost (%s), the first: %s %s %s by %s", len(rows), exc.__class__.__name__,
                      rows[0][1].action, rows[0][1].employee_id, rows[0][1].decision, rows[0][0].key_id)
