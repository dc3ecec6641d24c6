"""SIGTERM under load: the server stops taking connections, finishes every request it took, and writes every
audit row before it exits.

Eight clients send /verify on a new connection each time, as fast as they are answered. After SIGTERM, a
client whose connection is refused stops (the server no longer listens; a real client tries another
replica). Each request carries its own X-Request-ID, which tells apart the two ways a request can fail
without an answer:
- cut in flight: the server read it (its id is in the server's log, where every request that reached the
  app leaves an access line, a cancelled one included) and never answered. There must be none.
- never read: a connection accepted in the last instant before the listener closed, whose request uvicorn
  had not read yet, is closed unanswered ("server disconnected"). Nothing was done, so a retry is safe; at
  most one per client can happen, and the test reports them.
Every answered request must have its audit row.
"""

from __future__ import annotations

import signal
import threading
import time
import uuid

import httpx
from sqlalchemy import select

from app.gallery import db
from app.gallery.models import AuditRecord
from tests.live import live_server

CONCURRENCY = 8
# Long enough for the server to have read a request's photo over loopback (it takes about 1 ms).
READ_SECONDS = 0.05


def test_sigterm_under_load_finishes_requests_in_flight_and_loses_no_audit_row(database_url, photos, tmp_path):
    enrolled, probe = photos.bytes("Tony_Blair", 1), photos.bytes("Tony_Blair", 2)
    outcomes: dict[str, tuple[str, float]] = {}  # request id -> (outcome, when it ended)
    lock = threading.Lock()
    with live_server(database_url, log=tmp_path / "server.log", verify_max_failures="0",
                     uvicorn_args=("--timeout-graceful-shutdown", "30")) as server:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            response = http.post("/enroll", data={"employee_id": "tb"}, headers={"X-API-Key": server.keys["admin"]},
                                 files={"image": ("a.jpg", enrolled, "image/jpeg")})
            assert response.status_code == 201, response.text

        sent: dict[str, float] = {}  # request id -> when its last byte was written to the socket

        def door() -> None:
            while True:
                request_id = uuid.uuid4().hex

                def trace(event: str, _info: dict, request_id: str = request_id) -> None:
                    # Stamped when the body has gone, not when the client was made: making one takes tens of
                    # milliseconds on a busy machine, and a request not yet sent cannot be in flight.
                    if event == "http11.send_request_body.complete":
                        with lock:
                            sent[request_id] = time.monotonic()

                try:  # a connection per request: no idle keep-alive connection to race the shutdown
                    with httpx.Client(base_url=server.url, timeout=60) as http:
                        response = http.post("/verify", data={"employee_id": "tb"},
                                             files={"image": ("a.jpg", probe, "image/jpeg")},
                                             headers={"X-API-Key": server.keys["verify"], "X-Request-ID": request_id},
                                             extensions={"trace": trace})
                    outcome = str(response.status_code)
                except httpx.ConnectError:
                    return  # the server no longer listens
                except httpx.TransportError as exc:
                    outcome = type(exc).__name__
                with lock:
                    outcomes[request_id] = (outcome, time.monotonic())

        doors = [threading.Thread(target=door) for _ in range(CONCURRENCY)]
        for thread in doors:
            thread.start()
        while len(outcomes) < 3 * CONCURRENCY:
            time.sleep(0.05)
        # Requests come back in waves: signal once one has been sent long enough ago for the server to have
        # read it, not at the end of a wave, when every door is opening its next connection.
        while True:
            with lock:
                now = time.monotonic()
                if any(now - when > READ_SECONDS for rid, when in sent.items() if rid not in outcomes):
                    break
            time.sleep(0.005)
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        for thread in doors:
            thread.join(timeout=120)
        # uvicorn re-raises the signal it caught once it has shut down gracefully
        assert server.process.wait(timeout=60) in (0, -signal.SIGTERM)
    assert "stopped: feed closed, audit trail written (0 rows dropped" in (tmp_path / "server.log").read_text()

    engine = db.make_engine(database_url)
    with db.make_sessionmaker(engine)() as session:
        audited = {r.request_id: r.decision for r in session.scalars(
            select(AuditRecord).where(AuditRecord.action == "verify"))}
    engine.dispose()
    answered = {rid for rid, (outcome, _) in outcomes.items() if outcome == "200"}
    failed = {rid: outcome for rid, (outcome, _) in outcomes.items() if outcome != "200"}
    after_signal = [rid for rid in answered if outcomes[rid][1] > signalled]
    assert after_signal, "no request was in flight at SIGTERM: the test proved nothing"
    server_log = (tmp_path / "server.log").read_text()
    cut = {rid: outcome for rid, outcome in failed.items() if rid in server_log}
    assert not cut, f"requests cut in flight: {cut}"
    never_read = {rid: outcome for rid, outcome in failed.items() if rid not in server_log}
    assert len(never_read) <= CONCURRENCY and set(never_read.values()) <= {"RemoteProtocolError", "ReadError"}
    assert {rid: d for rid, d in audited.items() if rid in answered} == dict.fromkeys(answered, "match")
    print(f"SIGTERM at concurrency {CONCURRENCY}: {len(answered)} answered ({len(after_signal)} after the "  # noqa: T201
          f"signal), {len(cut)} cut in flight, {len(never_read)} closed before being read, "
          f"{len(answered) - sum(rid in audited for rid in answered)} audit rows missing")
