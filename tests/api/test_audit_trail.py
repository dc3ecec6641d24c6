"""What the audit trail records: every refusal, even those made before a route runs; and its writer's bounds
(delay, a full queue)."""

from __future__ import annotations

import math
import threading
import time

from app.gallery.models import AuditRecord
from app.services.keys import create_key
from tests.gallery_rows import audit_rows

MiB = 2**20


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


def test_anonymous_refusals_are_counted_per_source_not_written_one_by_one(make_client):
    """Made-up keys, malformed ones and none: 1,500 refusals become one row per action and code, whose counts
    add up to the requests; a keyed caller's refusal is still a row of its own."""
    client = make_client(auth=True)
    with client.app.state.runtime.sessions() as session:
        admin = create_key(session, "admin")[0]
    started = time.monotonic()
    for i in range(500):
        assert client.get("/employees", headers={"X-API-Key": f"fg_{i:012x}_{'A' * 43}"}).status_code == 401
        assert client.get("/employees", headers={"X-API-Key": f"not a key {i}"}).status_code == 401
        assert client.post("/verify", data={"employee_id": "x"}).status_code == 401
    # one row per source, action and code in each window: one window here, a few on a slow, busy machine
    windows = math.ceil((time.monotonic() - started) / client.app.state.runtime.audit.window) + 1
    assert client.post("/enroll", content=b"x" * (11 * MiB),
                       headers={"X-API-Key": admin, "Content-Type": "multipart/form-data"}).status_code == 413
    rows = audit_rows(client)
    counted: dict[tuple, list[int]] = {}
    for r in rows:
        if r.key_id is None:
            counted.setdefault((r.action, r.decision, r.source), []).append(r.count)
    assert {key: sum(counts) for key, counts in counted.items()} == {
        ("employees", "unauthorized", "testclient"): 1000, ("verify", "unauthorized", "testclient"): 500}
    assert all(len(counts) <= windows for counts in counted.values()), (counted, windows)
    assert [(r.key_id, r.decision, r.count) for r in rows if r.key_id] == [(admin.split("_")[1], "image_too_large", 1)]
    page = client.get("/audit", params={"action": "employees"}, headers={"X-API-Key": admin}).json()
    assert {(row["decision"], row["source"]) for row in page["items"]} == {("unauthorized", "testclient")}
    assert sum(row["count"] for row in page["items"]) == 1000 and len(page["items"]) <= windows


def test_the_audit_writer_bounds_its_delay_and_counts_what_a_full_queue_drops(sqlite_url):
    from app.gallery import db
    from app.services.audit import AuditEntry, AuditTrail
    from app.services.keys import Caller

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
