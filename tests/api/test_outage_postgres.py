"""PostgreSQL stopped for 15 s under traffic, keys on: every answer is 2xx, 503 or 429 (never a 500, never a
dropped connection), the service answers again within 2 s of the database, every decision answered has its
audit row afterwards, and every acknowledged enrollment is there.

The outage is a TCP proxy in front of the test server that closes every connection and refuses new ones,
which is what the service sees of a stopped server (its client's connections die; new ones fail), without
stopping the PostgreSQL that the rest of the suite shares."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.engine import make_url

from app.gallery.models import AuditRecord, Employee
from tests.live import live_server
from tests.waiting import within

pytestmark = pytest.mark.postgres
log = logging.getLogger(__name__)
OUTAGE_S = 15.0


class CuttableProxy:
    """Forwards 127.0.0.1:<port> to the database; `cut()` drops every connection and refuses new ones until
    `restore()`."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.down = threading.Event()
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.down.is_set():
                client.close()
                continue
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.open |= {client, server}
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                self._close(end)

    def _close(self, end: socket.socket) -> None:
        with self.lock:
            self.open.discard(end)
        try:
            end.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        end.close()

    def cut(self) -> None:
        self.down.set()
        with self.lock:
            ends = list(self.open)
        for end in ends:
            self._close(end)

    def restore(self) -> None:
        self.down.clear()

    def close(self) -> None:
        self.cut()
        self.listener.close()


def test_an_outage_under_load_answers_503_and_loses_no_audit_row_or_enrollment(database_url, photos, tmp_path):
    if not database_url.startswith("postgresql"):
        pytest.skip("a PostgreSQL outage")
    url = make_url(database_url)
    proxy = CuttableProxy(url.host or "127.0.0.1", url.port or 5432)
    through = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    tony, colin = photos.bytes("Tony_Blair", 2), photos.bytes("Colin_Powell", 1)
    answers: list[tuple[str, int, str]] = []  # (what, status, request id)
    failures: list[str] = []
    stop = threading.Event()
    with live_server(through, verify_max_failures="5", log=tmp_path / "server.log") as server, \
            httpx.Client(base_url=server.url, timeout=30) as client:
        admin, door = {"X-API-Key": server.keys["admin"]}, {"X-API-Key": server.keys["verify"]}
        assert client.post("/enroll", data={"employee_id": "tb"}, headers=admin,
                           files={"image": ("a.jpg", photos.bytes("Tony_Blair", 1))}).status_code == 201

        def ask(what: str) -> None:
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    if what == "verify":
                        r = client.post("/verify", data={"employee_id": "tb"}, files={"image": ("a.jpg", tony)},
                                        headers=door)
                    elif what == "identify":
                        r = client.post("/identify", files={"image": ("a.jpg", tony)}, headers=door)
                    else:
                        r = client.post("/enroll", data={"employee_id": f"e-{n}"}, files={"image": ("a.jpg", colin)},
                                        headers=admin)
                    answers.append((what, r.status_code, r.headers.get("x-request-id", "")))
                except httpx.TransportError as exc:  # a dropped connection
                    failures.append(f"{what}: {exc!r}")
                time.sleep(0.2)

        with ThreadPoolExecutor(3) as pool:
            running = [pool.submit(ask, what) for what in ("verify", "identify", "enroll")]
            time.sleep(3)
            proxy.cut()
            time.sleep(OUTAGE_S)
            proxy.restore()
            recovered = within(10, lambda: client.post("/verify", data={"employee_id": "tb"}, headers=door,
                                                       files={"image": ("a.jpg", tony)}).status_code == 200)
            time.sleep(3)
            stop.set()
            for done in running:
                done.result()

        statuses = sorted({status for _, status, _ in answers})
        assert not failures, failures[:5]
        assert all(200 <= s < 300 or s in (503, 429) for s in statuses), statuses
        assert 503 in statuses and 200 in statuses, statuses
        assert recovered <= 2.0, f"answered again {recovered:.1f} s after the database"

        answered = {rid for _, status, rid in answers if 200 <= status < 300}
        enrolled = {f"e-{n}" for n in range(1, 1000)}
        engine = create_engine(database_url)

        def audited() -> bool:
            with engine.connect() as connection:
                ids = set(connection.scalars(select(AuditRecord.request_id)))
            return answered <= ids

        within(15, audited)
        tally = Counter(f"{what} {status}" for what, status, _ in answers)
        log.info("%g s outage: %s; answered again %.2f s after the database; %d decisions answered, all audited",
                 OUTAGE_S, dict(sorted(tally.items())), recovered, len(answered))  # --log-cli-level=INFO shows it
        with engine.connect() as connection:
            stored = set(connection.scalars(select(Employee.employee_id)))
        engine.dispose()
        acknowledged = {rid for what, status, rid in answers if what == "enroll" and status == 201}
        assert len(acknowledged) == len([e for e in stored if e in enrolled]), "every acknowledged enroll is there"
    proxy.close()
