"""A real uvicorn server in a subprocess, for what an in-process TestClient cannot show: bytes on the socket,
connections dropped or kept, a body the server never read."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class LiveServer:
    host: str
    port: int
    keys: dict[str, str]  # scope -> a key of that scope

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def live_server(database_url: str, **settings: str) -> Iterator[LiveServer]:
    """The app on `database_url` (migrated, with an admin and a verify key), auth on, until the block ends."""
    from app.gallery import db
    from app.keys import create_key

    db.migrate(database_url)
    engine = db.make_engine(database_url)
    with db.make_sessionmaker(engine)() as session:
        keys = {scope: create_key(session, scope, "tests")[0] for scope in ("admin", "verify")}
    engine.dispose()
    port = free_port()
    env = {**os.environ, "FACEGATE_DATABASE_URL": database_url, "FACEGATE_AUTH": "true",
           **{f"FACEGATE_{k.upper()}": v for k, v in settings.items()}}
    server = subprocess.Popen([sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port",
                               str(port), "--log-level", "warning"], cwd=REPO, env=env)
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
        yield LiveServer("127.0.0.1", port, keys)
    finally:
        server.terminate()
        server.wait(timeout=30)
