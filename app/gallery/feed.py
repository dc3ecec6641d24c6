"""Keep one replica's in-memory index in step with the database, through the gallery_changes feed.

Every enroll, replace and delete appends a row to `gallery_changes` in its own transaction (see
app.gallery.repository). Each replica remembers the last sequence number it applied and, in a background
thread, reads what came after it and re-reads the current template of each employee named there: an
upsert or a removal in its index. Applying is idempotent, so a replica's own writes coming back, or a
change read twice, do no harm.

When does it look? On PostgreSQL it LISTENs on a channel that every write NOTIFYs at commit, so a change
arrives within milliseconds; it also polls every `poll_interval` seconds in case a notification is lost
(a dropped connection, say). SQLite has no notifications: polling alone.

Sequence numbers are handed out when a row is inserted, not when it commits, so a slow transaction can
commit seq 41 after seq 42 was already read. Numbers skipped over are therefore kept as "pending" and
asked for again on each pass, until they show up or `gap_timeout` passes (a rolled-back transaction
leaves a hole for ever).
"""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app.gallery import repository
from app.gallery.index import EmbeddingIndex

log = logging.getLogger(__name__)


class ChangeFollower:
    def __init__(self, *, engine: Engine, sessions: sessionmaker[Session], index: EmbeddingIndex, model_id: str,
                 since: int, poll_interval: float = 0.25, gap_timeout: float = 30.0) -> None:
        self.engine, self.sessions, self.index, self.model_id = engine, sessions, index, model_id
        self.last_seq, self.poll_interval, self.gap_timeout = since, poll_interval, gap_timeout
        self.pending: dict[int, float] = {}  # skipped sequence number -> when it was first missed
        self.applied = 0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._threads.append(threading.Thread(target=self._poll, name="gallery-feed", daemon=True))
        if self.engine.dialect.name == "postgresql":
            self._threads.append(threading.Thread(target=self._listen, name="gallery-listen", daemon=True))
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=5)

    def catch_up(self) -> int:
        """Apply every change not applied yet; returns how many employees were refreshed."""
        with self._lock, self.sessions() as session:
            now = time.monotonic()
            self.pending = {seq: t for seq, t in self.pending.items() if now - t < self.gap_timeout}
            changes = repository.changes_since(session=session, seq=self.last_seq, also=set(self.pending))
            if not changes:
                return 0
            for seq, _ in changes:
                self.pending.pop(seq, None)
            newest = max(seq for seq, _ in changes)
            seen = {seq for seq, _ in changes}
            for missing in range(self.last_seq + 1, newest):
                if missing not in seen:
                    self.pending.setdefault(missing, now)
            self.last_seq = max(self.last_seq, newest)
            employee_ids = sorted({employee_id for _, employee_id in changes})
            current = repository.current_templates(session=session, employee_ids=employee_ids,
                                                   model_id=self.model_id)
        for employee_id in employee_ids:
            if employee_id in current:
                name, vector = current[employee_id]
                self.index.upsert(employee_id, name, vector)
            else:
                self.index.remove(employee_id)
        self.applied += len(employee_ids)
        return len(employee_ids)

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                self.catch_up()
            except SQLAlchemyError as exc:  # the database is away; the next pass tries again
                log.warning("gallery feed: %s", exc.__class__.__name__)
            self._wake.wait(self.poll_interval)
            self._wake.clear()

    def _listen(self) -> None:
        """Wake the poller as soon as PostgreSQL announces a commit."""
        import psycopg

        url = self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        while not self._stop.is_set():
            try:
                with psycopg.connect(url, autocommit=True) as connection:
                    connection.execute(f"LISTEN {repository.CHANNEL}")
                    self._wake.set()  # catch up on anything committed while not listening
                    while not self._stop.is_set():
                        for _ in connection.notifies(timeout=1.0, stop_after=1):
                            self._wake.set()
            except psycopg.Error as exc:
                log.warning("gallery feed: LISTEN connection lost (%s); polling meanwhile", exc.__class__.__name__)
                self._stop.wait(1.0)
