"""The audit trail: one row per decision and per refusal.

Enroll, replace, delete, verify and identify write a row whatever the outcome; so do requests refused before
their route ran (401 and 413 at the gate, 403, 422), and bulk enrollment, item by item. A row says when, which
key, what action, which employee, what was decided, at what distance and threshold, and the request's id
(X-Request-ID). It never holds an image or an embedding. Each row also counts in facegate_decisions_total.

Refusals of anonymous clients (no key, or an unknown one: 401; and 413 or 431 before any key) are counted
instead of written one by one: one row per source address, action and code in each `window` of seconds, with
their `count`. 30,000 requests with made-up keys cost a few rows, not 30,000; the metrics still count each.

A request only queues its row; one writer thread inserts what has queued up in one transaction, so concurrent
requests never queue behind each other's audit commits (on SQLite, one commit per request made the tail
latency at 16 concurrent requests seconds long). A row reaches the database within `interval` seconds of the
first row of its batch, plus the time of the insert.

When the database cannot take a batch (it is away), the rows go to the spool (app.services.audit_spool), a
bounded local file, and so does every later row until the spool is replayed into the database, in order,
once it is back (tried every `retry` seconds; and at start-up, for what a stopped process left). While the
spool is (90 %) full the trail accepts no decision: `record` raises AuditUnavailable (503) before the route
does anything, and /readyz says so; the last tenth is room for the rows of decisions already answered.
Without a spool (the command-line tools) a failed batch is dropped, counted (`dropped`) and logged, never
silently; so is a row that finds the in-memory queue full.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app.core import metrics
from app.core.errors import AuditUnavailable, DomainError
from app.core.logs import REQUEST_ID
from app.gallery.models import AuditRecord, utcnow
from app.services.audit_spool import AuditSpool, Row
from app.services.keys import Caller
from model.faces.errors import FaceError

log = logging.getLogger(__name__)


# The spool's share at which decisions stop: the rest is room for the rows of those already answered.
FULL_SHARE = 0.9
# The refusals whose anonymous callers are counted, not written one by one.
COUNTED_REFUSALS = frozenset({"unauthorized", "image_too_large", "headers_too_large"})
OTHER_SOURCES = "*"  # where tallies go once `max_sources` sources are being counted in one window


@dataclass
class AuditEntry:
    action: str
    employee_id: str | None = None
    decision: str = "error"  # what an unexpected failure leaves behind
    distance: float | None = None
    threshold: float | None = None
    score: float | None = None  # identify: the best match's AS-norm score
    rule: str | None = None  # identify: the rule that decided
    groups: str | None = None  # the groups the decision was confined to, comma-separated (None: all)
    liveness: str | None = None  # a head-turn challenge's outcome: passed, or the check that failed (None: none)
    at: datetime = field(default_factory=utcnow)
    request_id: str | None = field(default_factory=REQUEST_ID.get)  # the request it was made in, if any
    count: int = 1  # the events the row stands for: more than one for counted anonymous refusals
    source: str | None = None  # the client's address, for counted refusals


@dataclass
class Tally:
    first_at: datetime
    first_request: str | None  # the window's first request's X-Request-ID: where the logs tell more
    count: int = 0


def as_row(caller: Caller, entry: AuditEntry) -> Row:
    """An audit row as the spool keeps it (JSON), and as the database is given it."""
    return {"at": entry.at.isoformat(), "key_id": caller.key_id, "action": entry.action,
            "employee_id": entry.employee_id, "decision": entry.decision, "distance": entry.distance,
            "threshold": entry.threshold, "score": entry.score, "rule": entry.rule, "groups": entry.groups,
            "liveness": entry.liveness,
            "request_id": entry.request_id, "count": entry.count, "source": entry.source}


class AuditTrail:
    def __init__(self, sessions: sessionmaker[Session], interval: float = 0.1, max_queued: int = 100_000,
                 max_batch: int = 1000, window: float = 10.0, max_sources: int = 1000,
                 spool: AuditSpool | None = None, retry: float = 1.0) -> None:
        self.sessions, self.interval, self.max_batch = sessions, interval, max_batch
        self.window, self.max_sources = window, max_sources
        self.spool, self.retry = spool, retry
        self.dropped = 0  # rows lost to a full queue or a failed insert
        self.full = False  # the spool is full: no decision is accepted until it is replayed
        self._spooling = spool is not None and spool.pending  # rows wait in the spool: later ones follow them
        self._tried_at = 0.0
        if spool is not None:
            metrics.AUDIT_ACCEPTING.set(1)
        # anonymous refusals in the current window: (source, action, code) -> tally
        self._tallies: dict[tuple[str | None, str, str], Tally] = {}
        self._tallies_lock = threading.Lock()
        self._window_started = time.monotonic()
        # a row, an Event to set once everything before it is written (flush), or None to stop
        self._queue: queue.Queue[tuple[Caller, AuditEntry] | threading.Event | None] = queue.Queue(max_queued)
        self._writer = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._writer.start()

    @contextmanager
    def record(self, caller: Caller, action: str, employee_id: str | None = None) -> Iterator[AuditEntry]:
        """Audit the block: the caller fills in the decision; a domain error's code becomes the decision.
        Refused (AuditUnavailable, before the block runs) while the spool is full."""
        if self.full:
            raise AuditUnavailable("the audit trail cannot be written (the database is away and the local spool "
                                   "is full): no decision is made without its record")
        entry = AuditEntry(action, employee_id)
        try:
            yield entry
        except (DomainError, FaceError) as exc:
            entry.decision = exc.code
            raise
        finally:
            self.add(caller, entry)

    def refused(self, caller: Caller, action: str, code: str, employee_id: str | None = None,
                source: str | None = None) -> None:
        """A request refused before its route ran: `code` is the error code it was answered with. An anonymous
        caller's 401, 413 or 431 is counted into its source's tally for the window instead of queued."""
        if caller.key_id is not None or code not in COUNTED_REFUSALS:
            self.add(caller, AuditEntry(action, employee_id, decision=code, source=source))
            return
        metrics.DECISIONS.labels(action, code).inc()
        with self._tallies_lock:
            key = (source, action, code)
            if key not in self._tallies and len(self._tallies) >= self.max_sources:
                key = (OTHER_SOURCES, action, code)
            tally = self._tallies.get(key)
            if tally is None:
                tally = self._tallies[key] = Tally(utcnow(), REQUEST_ID.get())
            tally.count += 1
        self._roll()

    def _roll(self, force: bool = False) -> None:
        """Queue the tallies as rows once their window is over (or now, when `force`)."""
        with self._tallies_lock:
            if not self._tallies or (not force and time.monotonic() - self._window_started < self.window):
                return
            tallies, self._tallies = self._tallies, {}
            self._window_started = time.monotonic()
        for (source, action, code), tally in tallies.items():
            self._queue_row(Caller(None, None), AuditEntry(action, decision=code, at=tally.first_at,
                                                           request_id=tally.first_request, count=tally.count,
                                                           source=source))

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def add(self, caller: Caller, entry: AuditEntry) -> None:
        metrics.DECISIONS.labels(entry.action, entry.decision).inc()
        self._queue_row(caller, entry)

    def _queue_row(self, caller: Caller, entry: AuditEntry) -> None:
        try:
            self._queue.put_nowait((caller, entry))
        except queue.Full:
            self.dropped += 1
            metrics.AUDIT_DROPPED.inc()
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error("the audit queue is full (%d rows): %d audit records dropped so far, the last: %s %s %s",
                          self._queue.maxsize, self.dropped, entry.action, entry.employee_id, entry.decision)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything recorded so far is in the database; False (and a warning) if it is not within
        `timeout` seconds. The tallies of anonymous refusals are written too, their window cut short."""
        self._roll(force=True)
        done = threading.Event()
        started = time.monotonic()
        try:
            self._queue.put(done, timeout=timeout)
        except queue.Full:
            log.warning("audit flush: the queue stayed full for %.0f s", timeout)
            return False
        if not done.wait(timeout=max(0.0, timeout - (time.monotonic() - started))):
            log.warning("audit flush: rows still queued after %.0f s", timeout)
            return False
        return True

    def close(self) -> None:
        """Write what is queued (to the database, or to the spool while it is away) and stop."""
        self._roll(force=True)
        self._queue.put(None)
        self._writer.join(timeout=30)
        if self._writer.is_alive():
            log.error("the audit writer did not finish within 30 s; %d rows were still queued", self._queue.qsize())
        if self.spool is not None:
            self.spool.close()

    def _run(self) -> None:
        """Take the first row, gather what arrives in the next `interval` (at most max_batch rows), write it."""
        while True:
            # wake at least once a window, so that a tally is written even when nothing else comes, and once
            # every `retry` while rows wait in the spool
            try:
                batch = [self._queue.get(timeout=self.retry if self._spooling else self.window)]
            except queue.Empty:
                self._roll()
                self._replay()
                continue
            deadline = time.monotonic() + self.interval
            while batch[-1] is not None and len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            self._write([item for item in batch if isinstance(item, tuple)])
            for item in batch:
                if isinstance(item, threading.Event):
                    item.set()
            if batch[-1] is None:
                return

    def _insert(self, rows: list[Row]) -> None:
        """One transaction of audit rows; raises SQLAlchemyError when the database cannot take them."""
        with self.sessions() as session:
            session.add_all([AuditRecord(**{**row, "at": datetime.fromisoformat(row["at"])}) for row in rows])
            session.commit()

    def _write(self, rows: list[tuple[Caller, AuditEntry]]) -> None:
        if rows and self._spooling:
            self._replay()
        if not rows:
            return
        batch = [as_row(caller, entry) for caller, entry in rows]
        if not self._spooling:
            try:
                self._insert(batch)
                return
            except SQLAlchemyError as exc:
                error = exc.__class__.__name__
        else:
            error = "rows before them wait in the spool"
        self._to_spool(batch, error)

    def _to_spool(self, batch: list[Row], error: str) -> None:
        """Keep rows the database did not take in the spool (or, without one or with it full, count them lost)."""
        try:
            kept = self.spool is not None and self.spool.append(batch)
        except OSError as exc:
            log.error("audit spool: %s", exc)
            kept = False
        if kept:
            if not self._spooling:
                log.warning("audit: the database did not take %d rows (%s): spooling to %s until it does",
                            len(batch), error, self.spool.path)
            self._spooling = True
            size = self.spool.size
            metrics.AUDIT_SPOOL_BYTES.set(size)
            if size >= FULL_SHARE * self.spool.max_bytes:
                self._refuse_decisions()
            return
        if self.spool is not None:
            self._refuse_decisions()
        self.dropped += len(batch)
        metrics.AUDIT_DROPPED.inc(len(batch))
        log.error("%d audit records lost (%s), the first: %s %s %s by %s", len(batch), error, batch[0]["action"],
                  batch[0]["employee_id"], batch[0]["decision"], batch[0]["key_id"])

    def _refuse_decisions(self) -> None:
        """The spool is (nearly) full: no new decision until it is replayed. The rest of it is room for the rows
        of decisions already answered and still queued."""
        if not self.full:
            self.full = True
            metrics.AUDIT_ACCEPTING.set(0)
            log.error("audit: the spool holds %d of its %d bytes: no decision is accepted until the database is "
                      "back", self.spool.size, self.spool.max_bytes)

    def _replay(self) -> None:
        """Write the spooled rows into the database, oldest first, if it takes them now (at most once a
        `retry`)."""
        if not self._spooling or time.monotonic() - self._tried_at < self.retry:
            return
        self._tried_at = time.monotonic()
        try:
            replayed = self.spool.replay(self._insert)
        except SQLAlchemyError:
            metrics.AUDIT_SPOOL_BYTES.set(self.spool.size)
            return
        self._spooling, self.full = False, False
        metrics.AUDIT_SPOOL_BYTES.set(0)
        metrics.AUDIT_ACCEPTING.set(1)
        log.warning("audit: the database is back; %d spooled rows written", replayed)
