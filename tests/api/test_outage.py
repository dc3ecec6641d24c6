"""The database away: every request that needs it is answered 503 not_ready with Retry-After, never 500, the
gate's key check included, and the service answers again as soon as the database is back.

The outage is made on SQLite by moving the database's folder away and dropping the pooled connections: each
new connection then fails as one to a stopped server does (OperationalError). The PostgreSQL outage under
load, with the server stopped, is issue #24's."""

from __future__ import annotations

import pytest

from app.services.keys import create_key
from tests.client import enroll, verify


@pytest.fixture
def outage(make_client, database_url, tmp_path):
    if not database_url.startswith("sqlite"):
        pytest.skip("the outage is made by moving SQLite's file away; PostgreSQL's is issue #24's stopped server")
    client = make_client(auth=True, key_cache_seconds=0)
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
