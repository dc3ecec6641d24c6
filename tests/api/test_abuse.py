"""Attacks and heavy use, one test per defect found by hand (issue #12): each failed before its fix."""

from __future__ import annotations

import io
import queue
import select
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError
from sqlalchemy import event
from sqlalchemy import select as sql_select

from app.gallery.models import AuditRecord, Employee
from app.keys import create_key
from tests.api.test_replicas import PROPAGATION_S, within
from tests.client import enroll, error_code, verify
from tests.live import live_server

MiB = 2**20


def audit_rows(client) -> list[AuditRecord]:  # noqa: ANN001
    runtime = client.app.state.runtime
    assert runtime.audit.flush()
    with runtime.sessions() as session:
        return list(session.scalars(sql_select(AuditRecord).order_by(AuditRecord.id)))


def employees(client) -> list[tuple[str, str | None]]:  # noqa: ANN001
    with client.app.state.runtime.sessions() as session:
        return [(e.employee_id, e.name) for e in session.scalars(sql_select(Employee).order_by(Employee.id))]


# --- 3. the key before the body, and a cap on a streamed body --------------------------------------------------

def stream_chunked(host: str, port: int, path: str, headers: dict[str, str], budget: int) -> tuple[int, bytes]:
    """Send a chunked body of up to `budget` bytes until the server answers or hangs up; (bytes sent, answer)."""
    head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": host, "Transfer-Encoding": "chunked",
                                                  "Content-Type": "multipart/form-data; boundary=x", **headers}.items())
    piece = b"\0" * MiB
    chunk = b"%x\r\n" % len(piece) + piece + b"\r\n"
    part = b'--x\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
    sent, answer = 0, b""
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\n{head}\r\n".encode() + b"%x\r\n" % len(part) + part + b"\r\n")
        while sent < budget:
            readable, writable, _ = select.select([sock], [sock], [], 10)
            if readable:
                break
            try:
                sent += sock.send(chunk[sent % len(chunk):] if sent % len(chunk) else chunk)
            except OSError:  # the server hung up
                break
        try:
            while len(answer) < 4096 and (data := sock.recv(4096)):
                answer += data
        except OSError:
            pass
    return sent, answer


@pytest.fixture
def server(sqlite_url):
    with live_server(sqlite_url) as running:
        yield running


def test_an_unauthenticated_chunked_upload_is_refused_before_its_body_is_read(server):
    """A 1 GiB upload with no key was once spooled to disk (982 MiB) before the 401."""
    sent, answer = stream_chunked(server.host, server.port, "/enroll", {}, budget=300 * MiB)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert sent < 20 * MiB, f"{sent / MiB:.0f} MiB went out before the refusal"


def test_a_chunked_upload_with_a_key_is_cut_off_at_the_limit(server):
    sent, answer = stream_chunked(server.host, server.port, "/enroll", {"X-API-Key": server.keys["admin"]},
                                  budget=300 * MiB)
    assert answer.startswith(b"HTTP/1.1 413") and b"image_too_large" in answer, answer[:300]
    assert sent < 10 * MiB + 20 * MiB, f"{sent / MiB:.0f} MiB went out before the refusal"


# --- 4. memory of one decode ----------------------------------------------------------------------------------

def sixteen_bit_png(side: int = 6320) -> bytes:
    pixels = np.zeros((side, side), np.uint16)
    pixels[side // 3: side // 2, side // 3: side // 2] = 60000
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


MEASURE_DECODE = """
import resource, sys
from app.core.config import Settings
from model.faces.errors import FaceError
from model.faces.pipeline import FacePipeline
from model.faces.prepare import prepare
data = open(sys.argv[1], "rb").read()
settings = Settings()
pipeline = FacePipeline()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    prepare(data, pipeline, settings.face_policy)
    code = "ok"
except FaceError as exc:
    code = exc.code
print(code, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
"""


def test_a_small_16_bit_png_of_40_megapixels_costs_little_memory_and_is_refused(client, tmp_path):
    """A 76 KiB 16-bit PNG of 6320x6320 once cost +724 MiB and 5 s."""
    data = sixteen_bit_png()
    assert len(data) < 200 * 1024
    path = tmp_path / "bomb.png"
    path.write_bytes(data)
    out = subprocess.run([sys.executable, "-c", MEASURE_DECODE, str(path)], capture_output=True, text=True,
                         check=True).stdout.split()
    code, grown_mib = out[0], float(out[1])
    assert code == "image_too_large" and grown_mib < 300, out
    response = enroll(client, "e-1", data)
    assert (response.status_code, error_code(response)) == (413, "image_too_large")


def test_a_big_jpeg_is_decoded_at_a_reduced_scale_within_the_budget():
    from model.faces.decode import decode_cost, decode_image

    image = Image.new("RGB", (7000, 5000), (120, 90, 60))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=50)
    budget = 64 * MiB
    assert decode_cost("RGB", 7000, 5000) > budget
    rgb = decode_image(buffer.getvalue(), max_pixels=40_000_000, max_bytes=budget)
    assert rgb.shape[1] < 7000 and decode_cost("RGB", rgb.shape[1], rgb.shape[0]) <= budget
    assert rgb.shape[1] * 5000 == pytest.approx(rgb.shape[0] * 7000, rel=0.01), "the aspect ratio is kept"


# --- 5. production never runs without keys --------------------------------------------------------------------

def test_production_refuses_to_start_with_auth_off():
    from app.core.config import Settings

    with pytest.raises(ValidationError, match="production requires API keys"):
        Settings(environment="production", auth=False, database_url="postgresql+psycopg://db/facegate")
    assert Settings(environment="production", auth=True, database_url="postgresql+psycopg://db/facegate").auth


@pytest.mark.parametrize("setting", [{"identify_fpir": 0}, {"identify_fpir": 0.5}, {"verify_max_failures": -1},
                                     {"verify_max_failures_per_key": -1}, {"verify_failure_window_seconds": 0},
                                     {"max_decode_mib": 1}])
def test_the_guards_settings_refuse_out_of_range_values_at_start_up(setting):
    from app.core.config import Settings

    with pytest.raises(ValidationError):
        Settings(**setting)


# --- 6. the key cache -----------------------------------------------------------------------------------------

def test_the_key_cache_is_bounded_and_a_malformed_key_costs_no_query(sqlite_url):
    from app.gallery import db
    from app.keys import KeyStore

    db.migrate(sqlite_url)
    engine = db.make_engine(sqlite_url)
    queries = []
    event.listen(engine, "before_cursor_execute", lambda *args: queries.append(1))
    sessions = db.make_sessionmaker(engine)
    with sessions() as session:
        real, _ = create_key(session, "verify")
    store = KeyStore(sessions, ttl=60, max_entries=500)
    queries.clear()
    for bad in ("garbage", "fg_" + "a" * 8000, "fg_00000000000g_" + "a" * 43, "fg_000000000000_short", "\0" * 50):
        assert store.check(bad) is None
    assert not queries and len(store) == 0, "a malformed key is refused before any lookup or cache entry"
    for i in range(2000):  # well-formed, unknown ids: each is looked up, and the cache stays bounded
        assert store.check(f"fg_{i:012x}_{'A' * 43}") is None
    assert len(store) == 500 and len(queries) == 2000
    assert store.check(real) is not None and store.check(real).scope == "verify"
    engine.dispose()


# --- 7 and 9. text fields, paging and identifiers -------------------------------------------------------------

@pytest.mark.parametrize("name", ["Ada\0Lovelace", "line\nbreak", "x" * 201, ""])
def test_a_name_with_control_characters_or_out_of_length_is_refused(client, photos, name):
    """A NUL byte in `name` once gave a 500 on PostgreSQL and reset the connection."""
    response = enroll(client, "e-1", photos.bytes("Tony_Blair"), name=name or None)
    if not name:  # an empty field is simply absent
        assert response.status_code == 201
        return
    assert (response.status_code, error_code(response)) == (422, "validation_error")
    assert employees(client) == []


@pytest.mark.parametrize("offset", ["9223372036854775808", "1000000001", "-1"])
def test_paging_beyond_the_bounds_is_refused(client, offset):
    """offset=2**63 once gave a 500 on both databases."""
    response = client.get("/employees", params={"offset": offset})
    assert (response.status_code, error_code(response)) == (422, "validation_error")
    assert client.get("/employees", params={"offset": "1000000000"}).status_code == 200


@pytest.mark.parametrize("employee_id", [".", "..", "-a", "_a", "@a", "a" * 65, "a/b", "a b", "é"])
def test_an_id_must_start_with_a_letter_or_digit_and_stay_reachable(client, photos, employee_id):
    response = enroll(client, employee_id, photos.bytes("Tony_Blair"))
    assert (response.status_code, error_code(response)) == (422, "validation_error")


def test_ids_that_differ_only_in_case_are_one_employee(client, photos):
    assert enroll(client, "E-1042", photos.bytes("Tony_Blair", 1)).status_code == 201
    for replace in (False, True):
        response = enroll(client, "e-1042", photos.bytes("Colin_Powell", 1), replace=replace)
        assert (response.status_code, error_code(response)) == (409, "employee_exists")
    assert employees(client) == [("E-1042", None)]
    assert verify(client, "E-1042", photos.bytes("Tony_Blair", 2)).json()["match"] is True


def test_a_field_given_twice_is_refused_not_the_last_one_taken(client, photos):
    response = client.post("/enroll", data={"employee_id": ["e-1", "e-2"]},
                           files={"image": ("a.jpg", photos.bytes("Tony_Blair"), "image/jpeg")})
    assert (response.status_code, error_code(response)) == (422, "validation_error")
    assert "employee_id" in response.json()["error"]["message"]
    response = client.post("/enroll?replace=false&replace=true", data={"employee_id": "e-1"},
                           files={"image": ("a.jpg", photos.bytes("Tony_Blair"), "image/jpeg")})
    assert (response.status_code, error_code(response)) == (422, "validation_error")
    assert employees(client) == []
    response = client.get("/employees?offset=0&offset=5")
    assert (response.status_code, error_code(response)) == (422, "validation_error")


# --- 11. brute force ------------------------------------------------------------------------------------------

def test_repeated_failed_verifications_of_one_employee_get_429_on_every_replica(make_client, photos):
    a = make_client(verify_max_failures=3)
    b = make_client(verify_max_failures=3)
    assert enroll(a, "tb", photos.bytes("Tony_Blair", 1)).status_code == 201
    assert enroll(a, "cp", photos.bytes("Colin_Powell", 1)).status_code == 201
    for _ in range(3):
        assert verify(a, "tb", photos.bytes("Colin_Powell", 2)).json()["match"] is False
    for replica in (a, b):
        for photo in (photos.bytes("Colin_Powell", 2), photos.bytes("Tony_Blair", 2)):  # even the right face
            response = verify(replica, "tb", photo)
            assert (response.status_code, error_code(response)) == (429, "too_many_attempts")
            assert 0 < int(response.headers["Retry-After"]) <= 900
    assert verify(a, "TB", photos.bytes("Tony_Blair", 2)).status_code == 429, "ids are one regardless of case"
    within(PROPAGATION_S, lambda: "cp" in b.app.state.runtime.service.index)  # b follows a's enrollment
    assert verify(b, "cp", photos.bytes("Colin_Powell", 2)).json()["match"] is True, "others are not locked"
    assert [r.decision for r in audit_rows(a) if r.employee_id in ("tb", "TB")][-1] == "too_many_attempts"


def test_one_key_failing_across_employees_gets_429(make_client, photos):
    client = make_client(auth=True, verify_max_failures=0, verify_max_failures_per_key=2)
    with client.app.state.runtime.sessions() as session:
        admin, door = create_key(session, "admin")[0], create_key(session, "verify")[0]
    for employee_id, person in (("tb", "Tony_Blair"), ("cp", "Colin_Powell"), ("sw", "Serena_Williams")):
        client.post("/enroll", data={"employee_id": employee_id}, headers={"X-API-Key": admin},
                    files={"image": ("a.jpg", photos.bytes(person, 1), "image/jpeg")})

    def attempt(employee_id: str, person: str):
        return client.post("/verify", data={"employee_id": employee_id}, headers={"X-API-Key": door},
                           files={"image": ("a.jpg", photos.bytes(person, 2), "image/jpeg")})

    assert attempt("tb", "Laura_Bush").json()["match"] is False
    assert attempt("cp", "Laura_Bush").json()["match"] is False
    response = attempt("sw", "Serena_Williams")
    assert (response.status_code, error_code(response)) == (429, "too_many_attempts")


# --- 12. the audit trail --------------------------------------------------------------------------------------

def test_refusals_before_the_route_are_audited(make_client, photos):
    client = make_client(auth=True)
    with client.app.state.runtime.sessions() as session:
        admin, door = create_key(session, "admin")[0], create_key(session, "verify")[0]
    image = {"image": ("a.jpg", photos.bytes("Tony_Blair"), "image/jpeg")}
    assert client.post("/verify", data={"employee_id": "tb"}, files=image).status_code == 401
    assert client.post("/enroll", data={"employee_id": "tb"}, files=image,
                       headers={"X-API-Key": door}).status_code == 403
    assert client.post("/enroll", content=b"x" * (11 * MiB),
                       headers={"X-API-Key": admin, "Content-Type": "multipart/form-data"}).status_code == 413
    assert client.post("/enroll", data={"employee_id": ".."}, files=image,
                       headers={"X-API-Key": admin}).status_code == 422
    door_id, admin_id = door.split("_")[1], admin.split("_")[1]
    assert [(r.key_id, r.action, r.decision) for r in audit_rows(client)] == [
        (None, "verify", "unauthorized"),
        (door_id, "enroll", "forbidden"),
        (admin_id, "enroll", "image_too_large"),
        (admin_id, "enroll", "validation_error"),
    ]


def test_the_audit_writer_bounds_its_delay_and_counts_what_a_full_queue_drops(sqlite_url):
    from app.gallery import db
    from app.keys import Caller
    from app.services.audit import AuditEntry, AuditTrail

    db.migrate(sqlite_url)
    engine = db.make_engine(sqlite_url)
    sessions = db.make_sessionmaker(engine)

    def count() -> int:
        with sessions() as session:
            return session.query(AuditRecord).count()

    trail = AuditTrail(sessions, interval=0.2)
    started = time.monotonic()
    while time.monotonic() - started < 1.5:  # a steady trickle, one row every 50 ms
        trail.add(Caller("k", "verify"), AuditEntry("verify", "e", decision="match"))
        if time.monotonic() - started > 0.6:
            break
        time.sleep(0.05)
    assert count() > 0, "rows reach the database within the interval, while the trickle goes on"
    trail.close()

    gate = threading.Event()

    def slow_sessions():
        gate.wait()
        return sessions()

    already = count()
    blocked = AuditTrail(slow_sessions, interval=0.01, max_queued=10)
    for i in range(50):
        blocked.add(Caller("k", "verify"), AuditEntry("verify", f"e{i}", decision="match"))
    assert blocked.dropped >= 30, "what does not fit is counted"
    assert not blocked.flush(timeout=0.2), "a flush that cannot finish says so"
    gate.set()
    blocked.close()
    assert count() - already == 50 - blocked.dropped
    engine.dispose()


# --- 13. races ------------------------------------------------------------------------------------------------

def test_a_replica_starting_while_an_earlier_change_is_in_flight_still_applies_it(database_url, make_client,
                                                                                  photos):
    """The feed's start position was read before the index loaded: a lower sequence number committing after
    the load was never applied on that replica."""
    from app.gallery import repository

    if database_url.startswith("sqlite"):
        pytest.skip("SQLite admits one writer at a time, so its commits cannot come out of order")
    a = make_client()
    model_id = a.app.state.runtime.service.model_id
    embedder = a.app.state.runtime.service.embedder
    vector = embedder.embed(np.zeros((1, embedder.input_size, embedder.input_size, 3), np.uint8))[0]
    with a.app.state.runtime.sessions() as slow:
        employee = repository.add_employee(session=slow, employee_id="late", name=None)
        repository.set_templates(session=slow, employee=employee, vectors={model_id: vector})
        assert enroll(a, "lb", photos.bytes("Laura_Bush", 1)).status_code == 201  # a later number, committed
        starting = make_client()  # bootstraps now: "lb" is in, "late" is not committed yet
        index = starting.app.state.runtime.service.index
        assert "lb" in index and "late" not in index
        slow.commit()
    within(PROPAGATION_S, lambda: "late" in index)


REAL_SIMPLE_QUEUE = queue.SimpleQueue


class SlowPutQueue:
    """A SimpleQueue whose put() of a job takes 50 ms: the request thread is caught between its check that the
    batcher is open and its put, the window in which close() once left it waiting for ever."""

    def __init__(self) -> None:
        self._queue = REAL_SIMPLE_QUEUE()

    def put(self, item) -> None:  # noqa: ANN001
        if item is not None:
            time.sleep(0.05)
        self._queue.put(item)

    def get(self, block: bool = True, timeout: float | None = None):  # noqa: ANN201
        return self._queue.get(block, timeout)

    def get_nowait(self):  # noqa: ANN201
        return self._queue.get_nowait()


def test_embed_racing_close_is_answered_not_left_waiting(monkeypatch):
    from app.services import batcher as batcher_module
    from model.faces.config import FAST_MODEL
    from model.faces.embedder import Embedder

    embedder = Embedder.load(FAST_MODEL, "cpu")
    crop = np.zeros((embedder.input_size, embedder.input_size, 3), np.uint8)
    monkeypatch.setattr(batcher_module.queue, "SimpleQueue", SlowPutQueue)
    batcher = batcher_module.MicroBatcher(embedder, max_batch=4, max_delay_ms=1)
    outcomes = []

    def call() -> None:
        try:
            outcomes.append(batcher.embed(crop).shape)
        except RuntimeError:
            outcomes.append("closed")

    request = threading.Thread(target=call, daemon=True)
    request.start()
    time.sleep(0.01)  # the request is inside put()
    batcher.close()
    request.join(timeout=5)
    assert not request.is_alive(), "embed() was left waiting after close()"
    assert outcomes == [(embedder.dim,)], "a job queued before close() is embedded"


def test_bulk_enrollment_lists_a_clash_with_the_api_and_carries_on(make_client, photos):
    from app.bulk_enroll import Job, bulk_enroll
    from app.core.config import Settings

    client = make_client()
    assert enroll(client, "tb", photos.bytes("Tony_Blair", 1)).status_code == 201  # by the API
    jobs = [Job("TB", None, photos.path("Tony_Blair", 2)), Job("cp", None, photos.path("Colin_Powell", 1))]
    summary = bulk_enroll(jobs, Settings(database_url=client.app.state.runtime.settings.database_url),
                          processes=1)
    assert summary.enrolled == 1 and [(f.employee_id, f.code) for f in summary.failures] == [
        ("TB", "employee_exists")]
    rows = [(r.action, r.employee_id, r.decision) for r in audit_rows(client) if r.action == "bulk_enroll"]
    assert sorted(rows) == [("bulk_enroll", "TB", "employee_exists"), ("bulk_enroll", "cp", "enrolled")]


def test_a_delete_racing_a_replace_waits_for_it(database_url, make_client, photos):
    """The employee is deleted (by another request, on another connection) right after replace has read them:
    replace holds the employee's row (SELECT ... FOR UPDATE) until it commits, so the delete waits and then
    removes the replaced employee. Neither answers an error, and no template or photo is left half-written."""
    if database_url.startswith("sqlite"):
        pytest.skip("on SQLite the delete waits for the replace's write lock: the race cannot happen")
    client = make_client()
    assert enroll(client, "tb", photos.bytes("Tony_Blair", 1)).status_code == 201
    engine = client.app.state.runtime.engine
    deleter: list[threading.Thread] = []
    deleted: list[tuple[int, float]] = []

    def delete() -> None:
        with engine.connect() as other:  # another request's DELETE
            rows = other.exec_driver_sql("DELETE FROM employees WHERE employee_id = 'tb'").rowcount
            other.commit()
        deleted.append((rows, time.monotonic()))

    def delete_after_the_read(conn, cursor, statement, *args) -> None:  # noqa: ANN001, ANN002
        if not deleter and "FROM EMPLOYEES" in statement.upper() and "FOR UPDATE" in statement.upper():
            deleter.append(threading.Thread(target=delete))
            deleter[0].start()
            time.sleep(0.2)  # the DELETE reaches the server and waits for the row

    commits: list[float] = []

    def committing(conn) -> None:  # noqa: ANN001
        if deleter:
            commits.append(time.monotonic())

    event.listen(engine, "after_cursor_execute", delete_after_the_read)
    event.listen(engine, "commit", committing)
    try:
        response = enroll(client, "tb", photos.bytes("Tony_Blair", 2), replace=True)
    finally:
        event.remove(engine, "after_cursor_execute", delete_after_the_read)
        event.remove(engine, "commit", committing)
    deleter[0].join(timeout=30)
    assert response.status_code == 201 and response.json()["employee_id"] == "tb", response.text
    assert deleted and deleted[0][0] == 1, "the delete found the replaced employee"
    assert commits and deleted[0][1] > commits[0], "the delete waited for the replace to commit"
    assert employees(client) == []

