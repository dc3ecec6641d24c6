"""Groups: the admin API, doors' keys bound to groups, per-group search and threshold, and their abuse cases."""

import pytest
from sqlalchemy import select

from app.gallery.models import AuditRecord, VerifyFailure
from app.services.keys import create_key
from tests.client import enroll, error_code, identify, verify
from tests.waiting import PROPAGATION_S, within

PEOPLE = {"tb": "Tony_Blair", "cp": "Colin_Powell", "sw": "Serena_Williams", "lb": "Laura_Bush"}


def create(client, group_id: str, name: str | None = None, headers: dict | None = None):
    return client.post("/groups", data={"group_id": group_id} | ({"name": name} if name else {}), headers=headers)


def members(client, group_id: str, **params) -> list[str]:
    return [e["employee_id"] for e in client.get(f"/groups/{group_id}/members", params=params).json()["items"]]


@pytest.fixture
def gallery(client, photos):
    """Four employees; lab-3 holds tb and cp, lab-4 holds sw."""
    for employee_id, person in PEOPLE.items():
        assert enroll(client, employee_id, photos.bytes(person, 1)).status_code == 201
    assert create(client, "lab-3", "Lab 3").status_code == 201
    assert create(client, "lab-4").status_code == 201
    assert client.post("/groups/lab-3/members", json={"employee_ids": ["tb", "cp"]}).status_code == 200
    assert client.put("/groups/lab-4/members/sw").status_code == 204
    return client


def test_groups_are_created_listed_renamed_and_deleted_and_employees_stay(gallery):
    page = gallery.get("/groups").json()
    assert [(g["group_id"], g["name"], g["members"]) for g in page["items"]] == [("lab-3", "Lab 3", 2),
                                                                                ("lab-4", None, 1)]
    assert page["total"] == 2
    renamed = gallery.patch("/groups/lab-4", data={"name": "Lab 4"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "Lab 4"
    assert gallery.get("/groups", params={"q": "LAB 4"}).json()["total"] == 1
    assert gallery.get("/groups/lab-3").json()["members"] == 2
    assert gallery.delete("/groups/lab-3").status_code == 204
    assert (gallery.get("/groups/lab-3").status_code, error_code(gallery.get("/groups/lab-3"))) == (404,
                                                                                                   "group_not_found")
    assert gallery.get("/employees").json()["total"] == 4, "deleting a group deletes no employee"
    assert gallery.get("/employees/tb").json()["groups"] == []
    assert gallery.delete("/groups/lab-3").status_code == 404


def test_members_are_added_listed_filtered_and_removed(gallery):
    assert members(gallery, "lab-3") == ["cp", "tb"]
    assert members(gallery, "lab-3", q="T", limit=1) == ["tb"]
    page = gallery.get("/groups/lab-3/members", params={"limit": 1, "offset": 1}).json()
    assert (page["total"], [e["employee_id"] for e in page["items"]]) == (2, ["tb"])
    assert gallery.get("/employees/tb").json()["groups"] == ["lab-3"]
    assert [e["employee_id"] for e in gallery.get("/employees", params={"group": "lab-4"}).json()["items"]] == ["sw"]
    assert error_code(gallery.get("/employees", params={"group": "nowhere"})) == "group_not_found"

    again = gallery.post("/groups/lab-3/members", json={"employee_ids": ["tb", "lb", "ghost", "lb"]}).json()
    assert (again["added"], again["already"], again["not_found"]) == (1, 1, ["ghost"])
    assert gallery.put("/groups/lab-3/members/lb").status_code == 204, "joining twice changes nothing"
    assert members(gallery, "lab-3") == ["cp", "lb", "tb"]
    assert gallery.delete("/groups/lab-3/members/lb").status_code == 204
    response = gallery.delete("/groups/lab-3/members/lb")
    assert (response.status_code, error_code(response)) == (404, "employee_not_found")
    assert error_code(gallery.put("/groups/lab-3/members/ghost")) == "employee_not_found"
    assert error_code(gallery.put("/groups/nowhere/members/tb")) == "group_not_found"


def test_deleting_an_employee_takes_them_out_of_every_group(gallery, photos):
    assert gallery.put("/groups/lab-4/members/tb").status_code == 204
    assert gallery.delete("/employees/tb").status_code == 204
    assert gallery.get("/groups/lab-3").json()["members"] == 1
    assert gallery.get("/groups/lab-4").json()["members"] == 1
    # enrolled again under the same id, they belong to no group
    assert enroll(gallery, "tb", photos.bytes("Tony_Blair", 1)).status_code == 201
    assert gallery.get("/employees/tb").json()["groups"] == []
    found = identify(gallery, photos.bytes("Tony_Blair", 2), group="lab-3").json()
    assert found["match"] is None and found["searched"] == 1


def test_identify_over_a_group_searches_its_members_with_its_size_as_n(gallery, photos):
    whole = identify(gallery, photos.bytes("Serena_Williams", 2)).json()
    door = identify(gallery, photos.bytes("Serena_Williams", 2), group="lab-4").json()
    assert (whole["searched"], door["searched"]) == (4, 1)
    assert door["match"]["employee_id"] == "sw"
    assert door["threshold"] < whole["threshold"], "a smaller N: a looser score threshold at the same FPIR"
    other = identify(gallery, photos.bytes("Serena_Williams", 2), group="lab-3").json()
    assert other["match"] is None and other["searched"] == 2
    assert error_code(identify(gallery, photos.bytes("Serena_Williams", 2), group="nowhere")) == "group_not_found"


@pytest.mark.parametrize("group_id", ["x" * 65, "lab\x00", "lab\n3", ".", "..", "-lab", "lab/3", "lab 3", ""])
def test_malformed_group_ids_are_refused(client, group_id):
    response = create(client, group_id)
    assert (response.status_code, error_code(response)) == (422, "validation_error")
    assert client.get("/groups").json()["total"] == 0


def test_group_names_ids_differing_in_case_and_repeated_fields_are_refused(client):
    assert create(client, "Lab-3").status_code == 201
    response = create(client, "lab-3")
    assert (response.status_code, error_code(response)) == (409, "group_exists")
    for name in ("x" * 201, "bad\x07name"):
        assert error_code(create(client, "lab-9", name)) == "validation_error"
        assert error_code(client.patch("/groups/Lab-3", data={"name": name})) == "validation_error"
    repeated = client.post("/groups", data={"group_id": ["a", "b"]})
    assert (repeated.status_code, error_code(repeated)) == (422, "validation_error")
    bad_member = client.post("/groups/Lab-3/members", json={"employee_ids": ["ok", "../etc"]})
    assert error_code(bad_member) == "validation_error"
    assert error_code(client.post("/groups/Lab-3/members", json={"employee_ids": "tb"})) == "validation_error"
    assert [g["group_id"] for g in client.get("/groups").json()["items"]] == ["Lab-3"]


def test_limits_on_groups_memberships_and_bulk_calls(make_client, photos):
    client = make_client(max_groups=2, max_groups_per_employee=1, max_group_bulk=2)
    assert enroll(client, "tb", photos.bytes("Tony_Blair", 1)).status_code == 201
    assert create(client, "a").status_code == 201 and create(client, "b").status_code == 201
    response = create(client, "c")
    assert (response.status_code, error_code(response)) == (409, "too_many_groups")
    response = client.post("/groups/a/members", json={"employee_ids": ["tb", "x", "y"]})
    assert (response.status_code, error_code(response)) == (422, "too_many_members")
    assert client.put("/groups/a/members/tb").status_code == 204
    response = client.put("/groups/b/members/tb")
    assert (response.status_code, error_code(response)) == (409, "too_many_groups")
    assert client.get("/employees/tb").json()["groups"] == ["a"], "nothing changed"


# --- doors' keys -----------------------------------------------------------------------------------------

@pytest.fixture
def doors(make_client, photos):
    client = make_client(auth=True, key_cache_seconds=0, verify_max_failures=5)
    with client.app.state.runtime.sessions() as session:
        admin, _ = create_key(session, "admin", "tests")
    client.headers["X-API-Key"] = admin
    for employee_id, person in PEOPLE.items():
        assert enroll(client, employee_id, photos.bytes(person, 1)).status_code == 201
    assert create(client, "lab-3").status_code == 201 and create(client, "lab-4").status_code == 201
    assert client.post("/groups/lab-3/members", json={"employee_ids": ["tb", "cp"]}).status_code == 200
    assert client.put("/groups/lab-4/members/sw").status_code == 204
    with client.app.state.runtime.sessions() as session:
        door, _ = create_key(session, "verify", "lab 3's door", ["lab-3"])
        two, _ = create_key(session, "verify", "lab 3 and 4", ["lab-3", "lab-4"])
    client.keys = {"admin": admin, "door": {"X-API-Key": door}, "two": {"X-API-Key": two}}
    return client


def test_a_door_key_verifies_its_members_and_answers_for_others_as_for_strangers(doors, photos):
    door = doors.keys["door"]
    assert verify(doors, "tb", photos.bytes("Tony_Blair", 2), headers=door).json()["match"] is True
    elsewhere = verify(doors, "sw", photos.bytes("Serena_Williams", 2), headers=door)
    nobody = verify(doors, "nobody", photos.bytes("Serena_Williams", 2), headers=door)
    assert elsewhere.status_code == nobody.status_code == 404
    assert elsewhere.json() == {"error": {"code": "employee_not_found", "message": "no employee 'sw'"}}
    assert nobody.json() == {"error": {"code": "employee_not_found", "message": "no employee 'nobody'"}}
    in_no_group = verify(doors, "lb", photos.bytes("Laura_Bush", 2), headers=door)
    assert in_no_group.status_code == 404
    assert verify(doors, "sw", photos.bytes("Serena_Williams", 2), headers=doors.keys["two"]).json()["match"] is True


def test_a_door_key_identifies_only_its_members(doors, photos):
    door = doors.keys["door"]
    found = doors.post("/identify", headers=door,
                       files={"image": ("a.jpg", photos.bytes("Colin_Powell", 2), "image/jpeg")}).json()
    assert (found["match"]["employee_id"], found["searched"]) == ("cp", 2)
    stranger = doors.post("/identify", headers=door,
                          files={"image": ("a.jpg", photos.bytes("Serena_Williams", 2), "image/jpeg")}).json()
    assert stranger["match"] is None and stranger["searched"] == 2
    narrowed = doors.post("/identify", headers=doors.keys["two"], data={"group": "lab-4"},
                          files={"image": ("a.jpg", photos.bytes("Serena_Williams", 2), "image/jpeg")}).json()
    assert (narrowed["match"]["employee_id"], narrowed["searched"]) == ("sw", 1)
    for group in ("lab-4", "nowhere"):  # another group, or none: the same answer, which tells nothing
        response = doors.post("/identify", headers=door, data={"group": group},
                              files={"image": ("a.jpg", photos.bytes("Serena_Williams", 2), "image/jpeg")})
        assert (response.status_code, error_code(response)) == (403, "forbidden")


def test_a_door_key_cannot_list_create_or_join_groups(doors):
    door = doors.keys["door"]
    for method, path, kwargs in [("get", "/groups", {}), ("post", "/groups", {"data": {"group_id": "mine"}}),
                                 ("put", "/groups/lab-4/members/tb", {}), ("get", "/groups/lab-3/members", {}),
                                 ("post", "/groups/lab-4/members", {"json": {"employee_ids": ["tb"]}}),
                                 ("patch", "/groups/lab-3", {"data": {"name": "x"}}), ("delete", "/groups/lab-3", {}),
                                 ("delete", "/groups/lab-3/members/tb", {}), ("get", "/employees", {})]:
        response = getattr(doors, method)(path, headers=door, **kwargs)
        assert (response.status_code, error_code(response)) == (403, "forbidden"), path
    assert doors.get("/groups/lab-4").json()["members"] == 1


def test_a_group_deleted_under_its_door_key_leaves_it_reaching_no_one(doors, photos):
    door = doors.keys["door"]
    assert verify(doors, "tb", photos.bytes("Tony_Blair", 2), headers=door).status_code == 200
    assert doors.delete("/groups/lab-3").status_code == 204
    response = verify(doors, "tb", photos.bytes("Tony_Blair", 2), headers=door)
    assert (response.status_code, error_code(response)) == (404, "employee_not_found")
    found = doors.post("/identify", headers=door,
                       files={"image": ("a.jpg", photos.bytes("Tony_Blair", 2), "image/jpeg")})
    assert found.status_code == 200 and found.json()["match"] is None and found.json()["searched"] == 0
    # recreating a group of that id does not bring the key back: its binding went with the old one
    assert create(doors, "lab-3").status_code == 201 and doors.put("/groups/lab-3/members/tb").status_code == 204
    assert verify(doors, "tb", photos.bytes("Tony_Blair", 2), headers=door).status_code == 404


def test_the_audit_trail_and_the_lockout_record_the_group(doors, photos):
    door = doors.keys["door"]
    assert verify(doors, "cp", photos.bytes("Tony_Blair", 2), headers=door).json()["match"] is False
    doors.post("/identify", headers=doors.keys["two"], files={"image": ("a.jpg", photos.bytes("Tony_Blair", 2),
                                                                        "image/jpeg")})
    runtime = doors.app.state.runtime
    runtime.audit.flush()
    with runtime.sessions() as session:
        rows = {r.action: r for r in session.scalars(select(AuditRecord).where(AuditRecord.groups.is_not(None)))}
        failure = session.scalars(select(VerifyFailure)).one()
    assert rows["verify"].groups == "lab-3" and rows["verify"].decision == "no_match"
    assert rows["identify"].groups == "lab-3,lab-4"
    assert rows["group_create"].groups in ("lab-3", "lab-4")
    assert failure.groups == "lab-3"
    audit = doors.get("/audit", params={"action": "verify"}).json()["items"][0]
    assert audit["groups"] == "lab-3"


def test_membership_reaches_the_other_replica_within_a_second(make_client, photos):
    a, b = make_client(), make_client()
    for employee_id, person in PEOPLE.items():
        assert enroll(a, employee_id, photos.bytes(person, 1)).status_code == 201
    assert create(a, "lab-3").status_code == 201
    within(PROPAGATION_S, lambda: b.app.state.runtime.service.index.has_group("lab-3"))
    serena = photos.bytes("Serena_Williams", 2)
    a.put("/groups/lab-3/members/sw")
    within(PROPAGATION_S, lambda: (identify(b, serena, group="lab-3").json()["match"] or {}).get("employee_id") == "sw")
    a.delete("/groups/lab-3/members/sw")
    within(PROPAGATION_S, lambda: identify(b, serena, group="lab-3").json()["match"] is None)
    a.post("/groups/lab-3/members", json={"employee_ids": ["tb", "lb"]})
    within(PROPAGATION_S, lambda: b.app.state.runtime.service.index.size_within({"lab-3"}) == 2)
    a.delete("/groups/lab-3")
    within(PROPAGATION_S, lambda: not b.app.state.runtime.service.index.has_group("lab-3"))
    assert error_code(identify(b, photos.bytes("Serena_Williams", 2), group="lab-3")) == "group_not_found"


def test_a_replica_that_was_away_catches_up_on_groups(make_client, photos):
    a, b = make_client(), make_client()
    assert enroll(a, "tb", photos.bytes("Tony_Blair", 1)).status_code == 201
    away = b.app.state.runtime.follower
    within(PROPAGATION_S, lambda: "tb" in b.app.state.runtime.service.index)
    away.close()
    assert create(a, "lab-3").status_code == 201 and a.put("/groups/lab-3/members/tb").status_code == 204
    assert create(a, "gone").status_code == 201 and a.delete("/groups/gone").status_code == 204
    away.catch_up()
    index = b.app.state.runtime.service.index
    assert index.groups_of("tb") == {"lab-3"} and not index.has_group("gone")
    c = make_client()  # a replica started now loads the groups with the templates
    assert c.app.state.runtime.service.index.groups_of("tb") == {"lab-3"}


def test_metrics_count_groups_and_the_largest(gallery):
    runtime = gallery.app.state.runtime
    runtime.refresh_gauges()
    text = gallery.get("/metrics").text
    assert "facegate_groups 2.0" in text and "facegate_largest_group_members 2.0" in text
    assert set(gallery.get("/readyz").json()) == {"status", "model_id", "device", "templates", "stale_templates"}


def test_the_keys_cli_binds_a_door_key_to_groups(doors, database_url, monkeypatch, capsys, photos):
    from app.cli.keys import main

    monkeypatch.setenv("FACEGATE_DATABASE_URL", database_url)
    assert main(["create", "--scope", "verify", "--group", "lab-4", "--name", "lab 4"]) == 0
    key = capsys.readouterr().out.strip()
    assert verify(doors, "sw", photos.bytes("Serena_Williams", 2), headers={"X-API-Key": key}).json()["match"]
    assert verify(doors, "tb", photos.bytes("Tony_Blair", 2), headers={"X-API-Key": key}).status_code == 404
    assert main(["create", "--scope", "verify", "--group", "nowhere"]) == 2
    assert "no such group: nowhere" in capsys.readouterr().err
    assert main(["create", "--scope", "admin", "--group", "lab-4"]) == 2
    assert main(["list"]) == 0
    listing = capsys.readouterr().out
    assert "\tlab-4\tlab 4" in listing and "\tlab-3,lab-4\t" in listing and "\t*\ttests" in listing


def test_downgrading_past_groups_revokes_the_keys_bound_to_them(database_url):
    """Without its bindings a door's key would reach the whole gallery: the downgrade revokes it instead."""
    from alembic import command
    from sqlalchemy import create_engine, text
    from sqlalchemy.orm import Session

    from app.gallery.db import alembic_config, migrate

    migrate(database_url)
    engine = create_engine(database_url)
    with Session(engine) as session:
        session.execute(text("INSERT INTO groups (group_id, created_at, updated_at) VALUES ('g', "
                             "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
        session.commit()
        door, _ = create_key(session, "verify", "door", ["g"])
        plain, _ = create_key(session, "verify", "plain")
    command.downgrade(alembic_config(database_url), "0008")
    with engine.connect() as connection:
        revoked = dict(connection.execute(text("SELECT key_id, revoked_at IS NOT NULL FROM api_keys")).all())
    assert revoked == {door.split("_")[1]: True, plain.split("_")[1]: False}
    command.upgrade(alembic_config(database_url), "head")
    engine.dispose()


@pytest.mark.postgres
def test_membership_and_deletion_racing_on_two_replicas_leave_them_agreeing(make_client, photos, database_url):
    """Members added and removed on one replica while the group is deleted and made again on the other: no 5xx,
    and both replicas end with what the database holds."""
    from concurrent.futures import ThreadPoolExecutor

    if not database_url.startswith("postgresql"):
        pytest.skip("two writers at once: PostgreSQL")
    a, b = make_client(), make_client()
    for employee_id, person in PEOPLE.items():
        assert enroll(a, employee_id, photos.bytes(person, 1)).status_code == 201
    assert create(a, "door").status_code == 201

    def churn_members(_):
        codes = []
        for employee_id in PEOPLE:
            codes.append(a.put(f"/groups/door/members/{employee_id}").status_code)
            codes.append(a.post("/groups/door/members", json={"employee_ids": list(PEOPLE)}).status_code)
            codes.append(a.delete(f"/groups/door/members/{employee_id}").status_code)
        return codes

    def churn_group(_):
        codes = []
        for _ in range(6):
            codes.append(b.delete("/groups/door").status_code)
            codes.append(create(b, "door").status_code)
            codes.append(b.delete("/employees/lb").status_code)
        return codes

    with ThreadPoolExecutor(4) as pool:
        codes = [c for result in pool.map(lambda f: f(None), [churn_members, churn_group, churn_members,
                                                               churn_group]) for c in result]
    assert all(c < 500 for c in codes), codes
    truth = set(members(a, "door")) if a.get("/groups/door").status_code == 200 else None

    def agree(client):
        index = client.app.state.runtime.service.index
        held = {e for e in PEOPLE if index.is_within(e, {"door"})} if index.has_group("door") else None
        return held == truth

    within(PROPAGATION_S, lambda: agree(a) and agree(b))
