"""What every command shares: opening the gallery, a progress bar, and stopping cleanly on a signal."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from sqlalchemy.orm import Session, sessionmaker

from app.core.config import Settings
from app.gallery import db


@contextmanager
def gallery(settings: Settings) -> Iterator[sessionmaker[Session]]:
    """Sessions on the configured gallery (migrated first where the service would migrate it), closed after."""
    engine, sessions = db.open_gallery(settings.database_url, migrate_first=settings.migrate_on_start)
    try:
        yield sessions
    finally:
        engine.dispose()


class Stop:
    """Set by SIGINT or SIGTERM: a long command finishes the item in hand, commits, and returns."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    @property
    def exit_status(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number (130, 143)."""
        return 128 + (self.signum or 0)


@contextmanager
def graceful_stop() -> Iterator[Stop]:
    """SIGINT and SIGTERM ask the command to stop at its next safe point; a second one stops it at once.

    Both are handled whatever the process inherited: a job started in the background by a non-interactive
    shell (nohup, `&`, a CI agent) inherits SIGINT ignored, and would otherwise never see a Ctrl-C that a
    supervisor sends. Outside the main thread (a caller embedding the command) signals cannot be handled, and
    nothing is installed.
    """
    stop = Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handle(signum: int, _: FrameType | None) -> None:
        if stop.requested:
            raise KeyboardInterrupt
        stop.signum = signum

    previous = {signum: signal.signal(signum, handle) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class Progress:
    """A one-line progress bar on stderr (only when it is a terminal, or when asked); `made` names what is made:
    enrollments, templates."""

    def __init__(self, total: int, enabled: bool, made: str = "enrolled") -> None:
        self.total, self.enabled, self.made, self.started, self.shown = total, enabled, made, time.perf_counter(), 0.0

    def update(self, done: int, made: int, failed: int, final: bool = False) -> None:
        now = time.perf_counter()
        if not self.enabled or (not final and now - self.shown < 0.2):
            return
        self.shown = now
        rate = done / max(now - self.started, 1e-9)
        width = 30
        filled = int(width * done / max(self.total, 1))
        eta = (self.total - done) / rate if rate else 0
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total}  {self.made} {made}  "
                         f"failed {failed}  {rate:5.1f} photos/s  eta {eta:4.0f} s ")
        if final:
            sys.stderr.write("\n")
        sys.stderr.flush()
