"""Child processes that end with the process that started them.

A process killed outright (kill -9, the kernel's out-of-memory killer) cannot stop its children, and a child
waiting on a queue from it never sees the queue close, since it holds that pipe's writing end too (every
multiprocessing worker does): it would wait for ever, holding its models' memory. So a thread in the child
watches the process it serves, and ends the child once that process has ended.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

POLL_SECONDS = 0.5
PROC = Path("/proc")


def end_with(pid: int) -> None:
    """End this process, at once and without cleaning up, once process `pid` has ended: its parent, or the
    command a fork server's worker serves (the fork server, its parent, lives as long as its workers do).
    `pid` is passed in, not read here: a child whose parent died while it was still starting has already been
    given another."""
    threading.Thread(target=_watch, args=(pid, _started(pid)), name="parent-watch", daemon=True).start()


def _watch(pid: int, started: str | None) -> None:
    while _running(pid, started):
        time.sleep(POLL_SECONDS)
    os._exit(0)


def _started(pid: int) -> str | None:
    """When process `pid` started (in clock ticks since boot, from /proc), or None if it is gone or a zombie, or
    if there is no /proc."""
    try:
        fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[19] if fields[0] != "Z" else None


def _running(pid: int, started: str | None) -> bool:
    """Whether process `pid` still runs: not ended, not a zombie, and not another that took its number (the
    start time tells). Without /proc, whether a signal could reach it (a zombie then counts as running)."""
    if PROC.joinpath("self").is_dir():
        return started is not None and _started(pid) == started
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True
