"""What anonymous clients can grow: requests with made-up keys against a live server, and the audit rows they
leave behind.

    python -m benchmarks.anonymous [--requests 30000] [--clients 16]

A uvicorn server on a fresh SQLite gallery, keys on. `--clients` threads send `--requests` POST /verify in all,
each with a well-formed key that does not exist (a different one each time) and a small photo; every answer
must be 401. Then the server is stopped (its audit trail written out) and the rows of `audit_log` are counted:
refusals of anonymous clients are tallied per source address, action and code in 10 s windows
(app.services.audit), so the rows grow with the run's length, not with its requests.
"""

from __future__ import annotations

import argparse
import secrets
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from sqlalchemy import create_engine, func, select

from app.gallery import db
from app.gallery.models import AuditRecord
from benchmarks.common import machine
from benchmarks.http import start_server


def made_up_key() -> str:
    return f"fg_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"


def flood(url: str, requests: int, clients: int) -> dict[int, int]:
    """Status -> count of `requests` /verify calls with made-up keys, from `clients` threads."""
    photo = b"\xff\xd8\xff" + b"\0" * 2000
    statuses: dict[int, int] = {}

    def send(count: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            for _ in range(count):
                status = client.post("/verify", data={"employee_id": "e-1"}, headers={"X-API-Key": made_up_key()},
                                     files={"image": ("a.jpg", photo, "image/jpeg")}).status_code
                statuses[status] = statuses.get(status, 0) + 1

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(send, [requests // clients + (i < requests % clients) for i in range(clients)]))
    return statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=30_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="facegate-anonymous-"))
    url = f"sqlite:///{folder / 'gallery.db'}"
    db.migrate(url)
    server = start_server(url, args.port, {"FACEGATE_AUTH": "true", "FACEGATE_AUDIT_SPOOL_DIR": str(folder / "spool")})
    started = time.perf_counter()
    try:
        statuses = flood(f"http://127.0.0.1:{args.port}", args.requests, args.clients)
    finally:
        seconds = time.perf_counter() - started
        server.terminate()
        server.wait(timeout=60)
    engine = create_engine(url)
    with engine.connect() as connection:
        rows = connection.scalar(select(func.count(AuditRecord.id)))
        counted = connection.scalar(select(func.sum(AuditRecord.count)))
    engine.dispose()
    print(f"machine: {machine()}")
    print(f"{args.requests} requests with made-up keys from {args.clients} clients in {seconds:.1f} s "
          f"({args.requests / seconds:.0f} req/s): answers {statuses}")
    print(f"audit_log: {rows} rows, standing for {counted} refusals")


if __name__ == "__main__":
    main()
