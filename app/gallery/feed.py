"""Keep one replica's in-memory index in step with the database, through the gallery_changes feed.

Every enroll, replace, delete and reference added or removed appends a row to `gallery_changes` in its own
transaction (see app.gallery.repository). Each replica remembers the last sequence number it applied and, in a
background thread, reads what came after it and re-reads the current templates (one per reference) and groups
of each employee named there: an upsert or a removal in its index. A change of a group (created, deleted, or
its members changed: action "group", the group's id in place of an employee's) re-reads its members.
Applying is idempotent, so a replica's own writes coming back, or a change read twice, do no harm.

When does it look? On PostgreSQL it LISTENs on a channel that every write NOTIFYs at commit, so a change
arrives within milliseconds; it also polls every `poll_interval` seconds in case a notification is lost
(a dropped connection, say). SQLite has no notifications: polling alone.

Sequence numbers are handed out when a row is inserted, not when it commits, so a slow transaction can
commit seq 41 after seq 42 was already read. Numbers skipped over are therefore kept as "pending" and
asked for again on each pass, until they show up or `gap_timeout` passes (a rolled-back transaction
leaves a hole for ever).

The feed does not grow for ever: every `prune_interval` seconds each replica deletes the rows older than
`retention` (a day by default; every replica must use the same), all but the newest. A row can only have
been pruned before a replica read it if that replica read nothing for nearly the retention: so when its
next number is missing and its last read is that old, it cannot follow the feed any more. It rebuilds its
whole index from the database, as at start-up, and follows on from there. (A missing number after a
recent read is a commit still in flight, above.)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app.gallery import groups, repository
from app.gallery.index import EmbeddingIndex

log = logging.getLogger(__name__)


def fill_index(index: EmbeddingIndex, *, session: Session, model_id: str) -> None:
    """Replace the index's contents with every template made by `model_id`, and every group, in one piece."""
    ids, names, vectors = [], [], []
    for employee_id, name, vector in repository.iter_templates(session=session, model_id=model_id):
        ids.append(employee_id)
        names.append(name)
        vectors.append(vector)
    index.load(ids, names, np.stack(vectors) if vectors else np.zeros((0, index.dim), np.float32))
    index.load_groups(groups.members_of(session=session))


def refresh_groups(index: EmbeddingIndex, sessions: sessionmaker[Session], *, group_ids: list[str] = (),
                   employee_ids: list[str] = ()) -> None:
    """Read these groups' members and these employees' groups from the database, and make the index hold them
    (a group gone is dropped). Read and applied under the index's groups lock: a reader that started earlier
    has finished applying before this one reads, so the last thing applied is the newest thing read."""
    if not group_ids and not employee_ids:
        return
    with index.groups_lock, sessions() as session:
        members = groups.members_of(session=session, group_ids=list(group_ids)) if group_ids else {}
        their_groups = groups.groups_of(session=session, employee_ids=list(employee_ids))
        for group_id in group_ids:
            if group_id in members:
                index.set_group(group_id, members[group_id])
            else:
                index.drop_group(group_id)
        for employee_id in employee_ids:
            index.set_groups_of(employee_id, their_groups[employee_id])


@dataclass(frozen=True)
class FeedPosition:
    """Where a freshly built index follows the feed on from: after `seq`, and the `pending` numbers below it
    that had no row when it was read (a transaction that took its number earlier may still commit)."""

    seq: int
    pending: frozenset[int] = frozenset()


def bootstrap(index: EmbeddingIndex, *, session: Session, model_id: str) -> FeedPosition:
    """Build the index from the database in one piece; returns the feed position to follow on from.

    The one way an index is (re)built: at start-up, and when a replica finds the feed pruned under it. The
    position is read first, so whatever commits while the index loads is applied again (harmless); the
    numbers below it without a row are asked for again until they show up or time out.
    """
    since = repository.last_change(session=session)
    pending = repository.missing_changes(session=session, upto=since)
    fill_index(index, session=session, model_id=model_id)
    return FeedPosition(since, frozenset(pending))


class ChangeFollower:
    def __init__(self, *, engine: Engine, sessions: sessionmaker[Session], index: EmbeddingIndex, model_id: str,
                 since: FeedPosition, poll_interval: float = 0.25, gap_timeout: float = 30.0,
                 retention: float = 86_400.0, prune_interval: float = 60.0) -> None:
        self.engine, self.sessions, self.index, self.model_id = engine, sessions, index, model_id
        self.last_seq, self.poll_interval, self.gap_timeout = since.seq, poll_interval, gap_timeout
        self.retention, self.prune_interval = retention, prune_interval
        # Called (with the session, under the follower's lock) when the feed announces a new active model; returns
        # whether it switched this replica, by calling follow(). Set by app.runtime.
        self.on_model_change: Callable[[Session], bool] | None = None
        # skipped sequence number -> when it was first missed
        self.pending: dict[int, float] = dict.fromkeys(since.pending, time.monotonic())
        self.applied = 0
        self.rebuilds = 0
        self.behind = len(self.pending)  # changes the last pass found unapplied, plus the numbers awaited
        self.read_at = time.time()  # wall clock of the last pass that read the feed
        self._pruned_at = time.monotonic()
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
        """Apply every change not applied yet; returns how many employees and groups were refreshed."""
        with self._lock, self.sessions() as session:
            away = time.time() - self.read_at > self.retention - self.gap_timeout  # cheap: asked first
            if away and repository.first_change(session=session) > self.last_seq + 1:
                # the feed's rows are gone, a model switch's with them: follow it first, if there was one
                if self.on_model_change is not None and self.on_model_change(session):
                    return len(self.index)
                return self._rebuild(session)
            self.read_at = time.time()
            now = time.monotonic()
            self.pending = {seq: t for seq, t in self.pending.items() if now - t < self.gap_timeout}
            changes = repository.changes_since(session=session, seq=self.last_seq, also=set(self.pending))
            if not changes:
                self.behind = len(self.pending)
                return 0
            for seq, _, _ in changes:
                self.pending.pop(seq, None)
            newest = max(seq for seq, _, _ in changes)
            seen = {seq for seq, _, _ in changes}
            for missing in range(self.last_seq + 1, newest):
                if missing not in seen:
                    self.pending.setdefault(missing, now)
            self.last_seq = max(self.last_seq, newest)
            self.behind = len(changes) + len(self.pending)
            if (self.on_model_change is not None and any(a == repository.MODEL_CHANGE for _, _, a in changes)
                    and self.on_model_change(session)):
                return len(self.index)  # a new index, built from the database as it is now
            employee_ids = sorted({key for _, key, action in changes
                                   if action not in (repository.MODEL_CHANGE, groups.GROUP_CHANGE)})
            group_ids = sorted({key for _, key, action in changes if action == groups.GROUP_CHANGE})
            current = repository.current_templates(session=session, employee_ids=employee_ids,
                                                   model_id=self.model_id)
        for employee_id in employee_ids:
            if employee_id in current:
                name, vectors = current[employee_id]  # one per reference
                self.index.upsert(employee_id, name, vectors)
            else:
                self.index.remove(employee_id)
        refresh_groups(self.index, self.sessions, group_ids=group_ids, employee_ids=employee_ids)
        self.applied += len(employee_ids) + len(group_ids)
        return len(employee_ids) + len(group_ids)

    def follow(self, index: EmbeddingIndex, model_id: str, session: Session) -> None:
        """Fill `index` with `model_id`'s templates and follow the feed into it from now on: a model switch, or
        a rebuild. Called with the follower's lock held."""
        since = bootstrap(index, session=session, model_id=model_id)
        self.index, self.model_id = index, model_id
        self.last_seq, self.read_at = since.seq, time.time()
        self.pending = dict.fromkeys(since.pending, time.monotonic())

    def _rebuild(self, session: Session) -> int:
        """The rows after our position were pruned: start again from the database, as at start-up."""
        lost = self.last_seq
        self.follow(self.index, self.model_id, session)
        log.warning("gallery feed: changes after #%d were pruned before this replica read them; index rebuilt "
                    "(%d templates), following on from #%d", lost, len(self.index), self.last_seq)
        self.rebuilds += 1
        return len(self.index)

    def prune(self) -> int:
        """Delete feed rows older than the retention (all but the newest); returns how many went."""
        with self.sessions.begin() as session:
            pruned = repository.prune_changes(
                session=session, before=datetime.now(UTC) - timedelta(seconds=self.retention))
        self._pruned_at = time.monotonic()
        if pruned:
            log.info("gallery feed: pruned %d changes older than %g s", pruned, self.retention)
        return pruned

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                self.catch_up()
                if time.monotonic() - self._pruned_at >= self.prune_interval:
                    self.prune()
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
