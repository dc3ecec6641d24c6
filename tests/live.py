"""A real uvicorn server in a subprocess, for what an in-process TestClient cannot show: bytes on the socket,
connections dropped or kept, a body the server never read."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class LiveServer:
    host: str
    port: int
    keys: dict[str, str]  # scope -> a key of that scope
    process: subprocess.Popen

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def live_server(database_url: str, *, workers: int = 1, env: dict[str, str] | None = None,
                log: Path | None = None, uvicorn_args: tuple[str, ...] = (), **settings: str) -> Iterator[LiveServer]:
    """The app on `database_url` (migrated, with a key of each scope), auth on, until the block ends.

    `settings` become FACEGATE_ variables, `env` is passed as it is; `log` receives the server's output (its
    log lines) instead of the test's stderr."""
    from app.gallery import db
    from app.services.keys import SCOPES, create_key

    db.migrate(database_url)
    engine = db.make_engine(database_url)
    with db.make_sessionmaker(engine)() as session:
        keys = {scope: create_key(session, scope, "tests")[0] for scope in SCOPES}
    engine.dispose()
    port = free_port()
    spool = tempfile.mkdtemp(prefix="facegate-audit-spool-")  # never the repository's
    env = {**os.environ, "FACEGATE_DATABASE_URL": database_url, "FACEGATE_AUTH": "true",
           "FACEGATE_AUDIT_SPOOL_DIR": spool,
           **{f"FACEGATE_{k.upper()}": v for k, v in settings.items()}, **(env or {})}
    output = open(log, "ab") if log else None  # noqa: SIM115 - closed in the finally below
    server = subprocess.Popen([sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port",
                               str(port), "--log-level", "warning", "--workers", str(workers), *uvicorn_args],
                              cwd=REPO, env=env, stdout=output, stderr=output)
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                raise RuntimeError("the server exited during start-up")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not become ready in 120 s")
            time.sleep(0.2)
        yield LiveServer("127.0.0.1", port, keys, server)
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=60)
        if output:
            output.close()
        shutil.rmtree(spool, ignore_errors=True)
