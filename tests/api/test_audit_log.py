"""GET /audit: the audit trail, filtered by employee, action and time, paged, newest first; admin only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.services.keys import create_key
from tests.client import enroll, error_code


@pytest.fixture
def audited(make_client, photos):
    client = make_client(auth=True, key_cache_seconds=0)
    with client.app.state.runtime.sessions() as session:
        client.keys = {scope: create_key(session, scope, "tests")[0] for scope in ("admin", "verify")}
    admin, door = ({"X-API-Key": client.keys[s]} for s in ("admin", "verify"))

    def post(path, headers, person, n, **data):
        return client.post(path, data=data, headers=headers, files={"image": ("a.jpg", photos.bytes(person, n),
                                                                              "image/jpeg")})

    client.started = datetime.now(UTC)
    assert post("/enroll", admin, "Tony_Blair", 1, employee_id="tb").status_code == 201
    assert post("/enroll", admin, "Serena_Williams", 1, employee_id="sw").status_code == 201
    post("/verify", door, "Tony_Blair", 2, employee_id="tb")
    post("/verify", door, "Colin_Powell", 1, employee_id="tb")
    post("/verify", door, "Serena_Williams", 2, employee_id="sw")
    post("/identify", door, "Colin_Powell", 2)
    client.get("/audit", headers=door)  # a verify key: 403, audited
    client.app.state.runtime.audit.flush()
    return client


def page(client, **params):
    response = client.get("/audit", params=params, headers={"X-API-Key": client.keys["admin"]})
    assert response.status_code == 200, response.text
    return response.json()


def test_the_audit_trail_is_listed_newest_first_and_filtered(audited):
    everything = page(audited)
    rows = [(r["action"], r["employee_id"], r["decision"]) for r in everything["items"]]
    assert everything["total"] == 7 and rows == [
        ("audit", None, "forbidden"), ("identify", None, "unknown"), ("verify", "sw", "match"),
        ("verify", "tb", "no_match"), ("verify", "tb", "match"), ("enroll", "sw", "enrolled"),
        ("enroll", "tb", "enrolled")]
    assert all(r["request_id"] and r["key_id"] for r in everything["items"])
    tb = page(audited, employee_id="tb")
    assert tb["total"] == 3 and {r["employee_id"] for r in tb["items"]} == {"tb"}
    verifications = page(audited, action="verify", employee_id="tb")
    assert [r["decision"] for r in verifications["items"]] == ["no_match", "match"]
    refused = verifications["items"][0]
    assert refused["rule"] == "as-norm" and refused["score"] < refused["threshold"] and refused["distance"] > 0.3
    assert page(audited, since=(audited.started + timedelta(hours=1)).isoformat())["total"] == 0
    assert page(audited, until=audited.started.isoformat())["total"] == 0
    assert page(audited, since=audited.started.isoformat(), until=datetime.now(UTC).isoformat())["total"] == 7
    paged = page(audited, offset=2, limit=2)
    assert paged["total"] == 7 and [r["decision"] for r in paged["items"]] == ["match", "no_match"]


@pytest.mark.parametrize("params", [{"action": "dance"}, {"employee_id": ".."}, {"since": "yesterday"},
                                    {"limit": 0}, {"limit": 501}, {"offset": -1}, {"offset": 2**63},
                                    {"employee_id": ["tb", "sw"]}])
def test_bad_filters_are_refused(audited, params):
    response = audited.get("/audit", params=params, headers={"X-API-Key": audited.keys["admin"]})
    assert response.status_code == 422 and error_code(response) == "validation_error"


def test_only_an_admin_reads_the_audit_trail(audited):
    assert error_code(audited.get("/audit")) == "unauthorized"
    assert error_code(audited.get("/audit", headers={"X-API-Key": audited.keys["verify"]})) == "forbidden"


def test_the_trail_answers_with_what_this_replica_has_just_done(make_client, photos):
    """Rows are written in batches: GET /audit writes this process's queued ones first, so an operator who has
    just deleted someone finds it at the top (the browser test caught a page read before the row was written)."""
    client = make_client()
    assert enroll(client, "tb", photos.bytes("Tony_Blair", 1)).status_code == 201
    assert client.delete("/employees/tb").status_code == 204
    rows = client.get("/audit").json()["items"]
    assert [(r["action"], r["employee_id"], r["decision"]) for r in rows] == [("delete", "tb", "deleted"),
                                                                              ("enroll", "tb", "enrolled")]
