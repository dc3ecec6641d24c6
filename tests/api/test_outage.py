"""The database away: every request that needs it is answered 503 not_ready with Retry-After, never 500, the
gate's key check included, and the service answers again as soon as the database is back.

The outage is made on SQLite by moving the database's folder away and dropping the pooled connections: each
new connection then fails as one to a stopped server does (OperationalError). PostgreSQL's outage under load
is tests/api/test_outage_postgres.py.

Decisions that need no database (/identify, with its key in the cache) are still answered during an outage:
their audit rows wait in the local spool and reach the database, in order, once it is back, even across a
restart; when the spool is full, no decision is made (503 audit_unavailable)."""

from __future__ import annotations

import pytest

from app.services.keys import create_key
from tests.client import enroll, verify
from tests.waiting import within


@pytest.fixture
def spool(tmp_path):
    """The audit spool's folder, outside the folder the outage moves away."""
    return tmp_path.parent / f"{tmp_path.name}-spool"


@pytest.fixture
def outage(make_client, database_url, tmp_path, spool):
    if not database_url.startswith("sqlite"):
        pytest.skip("the outage is made by moving SQLite's file away; PostgreSQL's: test_outage_postgres.py")
    client = make_client(auth=True, key_cache_seconds=0, audit_spool_dir=str(spool))
    folder = tmp_path  # the sqlite_url fixture's gallery.db lives here
    away = tmp_path.parent / f"{tmp_path.name}-away"

    def start() -> None:
        folder.rename(away)
        client.app.state.runtime.engine.dispose()

    def end() -> None:
        away.rename(folder)

    client.start_outage, client.end_outage = start, end
    yield client
    if away.exists():
        end()


def test_requests_that_need_the_database_get_503_with_retry_after(outage, photos):
    with outage.app.state.runtime.sessions() as session:
        admin = {"X-API-Key": create_key(session, "admin")[0]}
        door = {"X-API-Key": create_key(session, "verify")[0]}
    outage.headers.update(admin)
    assert enroll(outage, "tb", photos.bytes("Tony_Blair", 1)).status_code == 201

    outage.start_outage()
    unknown = {"X-API-Key": "fg_0123456789ab_" + "A" * 43}
    answers = [
        outage.get("/employees", headers=admin),  # the key check needs the database (its cache entry expired)
        outage.get("/employees", headers=unknown),  # an unknown key cannot be told from a valid one: not 401
        verify(outage, "tb", photos.bytes("Tony_Blair", 2), headers=door),
        outage.get("/readyz"),
    ]
    for response in answers:
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "not_ready" and response.headers["retry-after"] == "2"

    outage.end_outage()
    assert outage.get("/employees", headers=unknown).status_code == 401
    assert verify(outage, "tb", photos.bytes("Tony_Blair", 2), headers=door).json()["match"] is True
    assert outage.get("/readyz").status_code == 200


def audited_requests(runtime) -> list[str]:  # noqa: ANN001
    from sqlalchemy import select

    from app.gallery.models import AuditRecord

    runtime.audit.flush()
    with runtime.sessions() as session:
        return list(session.scalars(select(AuditRecord.request_id).order_by(AuditRecord.id)))


@pytest.fixture
def door(outage, photos):
    """A door's key, cached for a minute (so /identify needs no database), and one employee."""
    runtime = outage.app.state.runtime
    runtime.keys.ttl = 60.0
    with runtime.sessions() as session:
        outage.headers["X-API-Key"] = create_key(session, "admin")[0]
    assert enroll(outage, "tb", photos.bytes("Tony_Blair", 1)).status_code == 201
    assert outage.post("/identify", files={"image": ("a.jpg", photos.bytes("Tony_Blair", 2))}).status_code == 200
    runtime.audit.flush()  # written before any outage starts
    return outage


def identify_ids(client, photos, n: int) -> list[str]:  # noqa: ANN001
    answered = []
    for _ in range(n):
        response = client.post("/identify", files={"image": ("a.jpg", photos.bytes("Tony_Blair", 2))})
        assert response.status_code == 200, response.text
        assert response.json()["match"]["employee_id"] == "tb"
        answered.append(response.headers["x-request-id"])
    return answered


def test_decisions_answered_during_an_outage_reach_the_audit_trail_in_order_after_it(door, photos, spool):
    door.start_outage()
    answered = identify_ids(door, photos, 4)
    runtime = door.app.state.runtime
    runtime.audit.flush(timeout=5)
    assert list(spool.glob("audit-*.jsonl")), "the rows wait in the spool"
    door.end_outage()
    within(10, lambda: not list(spool.glob("audit-*.jsonl")))
    audited = audited_requests(runtime)
    assert audited[-4:] == answered, "every answered request has its row, in order"
    assert runtime.audit.dropped == 0


def test_a_restart_during_an_outage_loses_no_spooled_row(door, photos, spool, make_client):
    door.start_outage()
    answered = identify_ids(door, photos, 3)
    make_client.stop(door)  # a restart: the queue goes to the spool, the process's lock on it goes
    assert list(spool.glob("audit-*.jsonl"))
    door.end_outage()
    again = make_client(auth=True, audit_spool_dir=str(spool))  # replays what the stopped process left
    within(10, lambda: not list(spool.glob("audit-*.jsonl")))
    assert audited_requests(again.app.state.runtime)[-3:] == answered


def test_with_the_spool_full_no_decision_is_made_until_the_database_is_back(door, photos, spool):
    runtime = door.app.state.runtime
    door.start_outage()
    identify_ids(door, photos, 1)
    runtime.audit.flush(timeout=5)
    runtime.audit.spool.max_bytes = int(2.1 * runtime.audit.spool.size)  # room for about one more row
    identify_ids(door, photos, 1)  # its row takes the spool past 90 %: the trail stops accepting
    runtime.audit.flush(timeout=5)
    for response in (door.post("/identify", files={"image": ("a.jpg", photos.bytes("Tony_Blair", 2))}),
                     door.get("/readyz")):
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "audit_unavailable" and response.headers["retry-after"] == "5"
    assert runtime.audit.dropped == 0, "the rows of the decisions answered all fitted"
    door.end_outage()
    within(10, lambda: door.get("/readyz").status_code == 200)
    identify_ids(door, photos, 1)


def test_a_key_read_valid_shortly_before_an_outage_keeps_identifying_through_it(outage, photos):
    """The grace (FACEGATE_KEY_GRACE_SECONDS): a door keeps answering from the in-memory index; a key not read
    before, a revoked one and one past the grace are 503, since none can be checked."""
    from app.services.keys import revoke_key

    runtime = outage.app.state.runtime
    with runtime.sessions() as session:
        admin = {"X-API-Key": create_key(session, "admin")[0]}
        door = {"X-API-Key": create_key(session, "verify")[0]}
        revoked = {"X-API-Key": create_key(session, "verify")[0]}
        never_used = {"X-API-Key": create_key(session, "verify")[0]}
    outage.headers.update(admin)
    assert enroll(outage, "tb", photos.bytes("Tony_Blair", 1)).status_code == 201

    def identify(headers):  # noqa: ANN001, ANN202
        return outage.post("/identify", files={"image": ("a.jpg", photos.bytes("Tony_Blair", 2))}, headers=headers)

    assert identify(door).status_code == 200 and identify(revoked).status_code == 200
    with runtime.sessions() as session:
        revoke_key(session, revoked["X-API-Key"].split("_")[1])
    assert identify(revoked).status_code == 401  # read again (the cache is off here): revoked
    outage.start_outage()
    during = identify(door)
    assert during.status_code == 200 and during.json()["match"]["employee_id"] == "tb"
    for headers in (revoked, never_used):
        assert identify(headers).status_code == 503
    runtime.keys.grace = 0.0
    assert identify(door).status_code == 503
    outage.end_outage()
    assert identify(door).status_code == 200
