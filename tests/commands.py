"""Running the command-line tools as their own processes, the way a supervisor or a background job runs them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO


def start_in_background(module: str, *args: str, env: dict[str, str]) -> subprocess.Popen:
    """`python -m module args...` with SIGINT ignored, as a non-interactive shell starts a job with `&` or nohup
    does: the command must stop on a signal all the same. The disposition is set here, in the child, so that
    the test does not depend on what its own process inherited."""
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=REPO, env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))


def wait_for(process: subprocess.Popen, text: bytes) -> None:
    """Read the command's stderr (its progress bar) until `text` shows."""
    seen = b""
    while text not in seen:
        chunk = os.read(process.stderr.fileno(), 4096)
        assert chunk, f"{process.args} ended before printing {text!r}: {seen[-2000:]!r}"
        seen += chunk


def stop(process: subprocess.Popen, signum: int) -> list[str]:
    """Send `signum` and wait: the command exits with 128 + signum. Returns its standard output's lines."""
    process.send_signal(signum)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 128 + signum, (process.returncode, out[-2000:])
    return out.decode().splitlines()


def grandchildren(pid: int) -> list[int]:
    """The processes whose parent's parent is `pid`: a command's pool workers, under its fork server."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):  # gone meanwhile
            continue
    return [child for child, parent in parents.items() if parents.get(parent) == pid]


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def survivors(pids: list[int], within: float = 10.0) -> list[int]:
    """Wait, at most `within` seconds, for these processes to end; those still alive then are killed (no
    orphan is left behind, even by a failing test) and returned."""
    deadline = time.monotonic() + within
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [pid for pid in pids if alive(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    return left
