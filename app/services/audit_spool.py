"""Audit rows the database could not take, kept in local append-only files until it can.

When an insert of audit rows fails (the database away), the audit writer appends them here, as JSON lines,
flushed and fsync'ed, and keeps appending every later row here too, so that their order is kept; once a
second it tries to replay the files into the database, oldest first, in chunks, each chunk one transaction.
A file is replayed up to a mark kept beside it (`<file>.done`, the bytes already written to the database),
so that a replay cut short by a new failure or a crash goes on from there: at most one chunk is written twice.

Each process appends to a file of its own and holds an exclusive lock (flock) on it while it lives. A file
whose lock nobody holds belongs to a process that is gone (stopped or crashed during an outage): the next
process to start with the same folder replays it. So a restart during an outage loses no spooled row, as
long as the folder outlives the process (a volume, in a container).

The spool is bounded (`max_bytes`, all files together): when it is full the trail stops accepting decisions
(app.services.audit), which the service answers 503 audit_unavailable until the database is back.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

Row = dict[str, object]
CHUNK = 1000


def _locked_by_someone(path: Path) -> bool:
    """Whether a live process holds the file's lock (its owner)."""
    try:
        with path.open("rb") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False
    except FileNotFoundError:
        return True  # replayed and removed meanwhile by another process


class AuditSpool:
    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.folder, self.max_bytes = Path(folder), max_bytes
        self.path = self.folder / f"audit-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        self._file: IO[bytes] | None = None  # ours, opened and locked at the first append

    @staticmethod
    def _done(path: Path) -> Path:
        return path.with_name(path.name + ".done")

    def _files(self) -> list[Path]:
        """The files to replay, oldest first: those of processes that are gone, then ours."""
        if not self.folder.is_dir():
            return []
        orphans = sorted((p for p in self.folder.glob("audit-*.jsonl") if p != self.path),
                         key=lambda p: p.stat().st_mtime)
        mine = [self.path] if self._file is not None else []
        return [p for p in orphans if not _locked_by_someone(p)] + mine

    @property
    def pending(self) -> bool:
        """Whether rows wait to be replayed (ours, or those a stopped process left)."""
        return bool(self._files())

    @property
    def size(self) -> int:
        """Bytes not yet replayed, all files together."""
        total = 0
        for path in self._files():
            try:
                total += path.stat().st_size - self._replayed(path)
            except FileNotFoundError:
                continue
        return total

    def append(self, rows: list[Row]) -> bool:
        """Append the rows, durably; False (nothing written) when they would pass the bound."""
        data = b"".join(json.dumps(row, separators=(",", ":")).encode() + b"\n" for row in rows)
        if self.size + len(data) > self.max_bytes:
            return False
        if self._file is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("ab")
            fcntl.flock(self._file, fcntl.LOCK_EX)
        self._file.write(data)
        self._file.flush()
        os.fsync(self._file.fileno())
        return True

    def _replayed(self, path: Path) -> int:
        try:
            return int(self._done(path).read_text() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def replay(self, write: Callable[[list[Row]], None]) -> int:
        """Write every spooled row through `write` (one transaction per call), oldest first; returns how many.
        `write`'s error (the database away again) stops the replay where it is, to go on next time."""
        replayed = 0
        for path in self._files():
            mine = path == self.path
            with path.open("rb") as handle:
                if not mine:
                    fcntl.flock(handle, fcntl.LOCK_EX)  # no other process replays it at the same time
                handle.seek(self._replayed(path))
                while lines := [line for line in (handle.readline() for _ in range(CHUNK)) if line]:
                    write([json.loads(line) for line in lines if line.endswith(b"\n")])
                    replayed += len(lines)
                    self._mark(path, handle.tell())
            self._remove(path)
        return replayed

    def _mark(self, path: Path, offset: int) -> None:
        done = self._done(path)
        done.with_suffix(".tmp").write_text(str(offset))
        os.replace(done.with_suffix(".tmp"), done)

    def _remove(self, path: Path) -> None:
        """A file replayed to its end goes, its mark with it; ours is opened again at the next append."""
        if path == self.path and self._file is not None:
            self._file.close()
            self._file = None
        path.unlink(missing_ok=True)
        self._done(path).unlink(missing_ok=True)
        log.info("audit spool: %s replayed into the database", path.name)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
