"""A model upgrade without re-enrollment (app.cli.reembed), on SQLite and PostgreSQL: with the encrypted reference
store, interrupted once and resumed while a replica keeps answering; without it, the employees to re-enroll
are listed. The second model is the shipped MobileFaceNet."""

from __future__ import annotations

import base64
import os
import signal
import threading
import time

import numpy as np
import pytest
from sqlalchemy import func, select, text

from app.cli.reembed import main as reembed
from app.gallery.models import ReferencePhoto, Template
from model.faces.config import DEFAULT_MODEL
from tests.client import enroll, error_code, identify, verify
from tests.commands import start_in_background, stop, wait_for

NEXT_MODEL = DEFAULT_MODEL.parent / "facegate-mfn.pt"
KEY = base64.b64encode(bytes(range(32))).decode()  # a test key; production keys come from new-key
PEOPLE = {"tb": "Tony_Blair", "cp": "Colin_Powell", "sw": "Serena_Williams", "hc": "Hugo_Chavez",
          "as": "Ariel_Sharon", "ga": "Gloria_Macapagal_Arroyo", "vp": "Vladimir_Putin", "jk": "Junichiro_Koizumi"}
STORE = {"reference_store": True, "reference_keys": KEY}


def count(client, model) -> int:
    with client.app.state.runtime.sessions() as session:
        if model is ReferencePhoto:
            return session.scalar(select(func.count(ReferencePhoto.id)))
        return session.scalar(select(func.count(Template.id)).where(Template.model_id == model))


def wait_for_model(client, model_id: str, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while client.get("/readyz").json().get("model_id") != model_id:
        assert time.monotonic() < deadline, f"the replica did not switch to {model_id}"
        time.sleep(0.1)


def run_interrupted(database_url: str, signum: int) -> None:
    """app.cli.reembed in its own process, started with SIGINT ignored (as a background job is), stopped with
    `signum` once its first photo is committed: it says so last and exits with 128 + signum."""
    env = {"FACEGATE_DATABASE_URL": database_url, "FACEGATE_REFERENCE_STORE": "true", "FACEGATE_REFERENCE_KEYS": KEY}
    process = start_in_background("app.cli.reembed", "--model", str(NEXT_MODEL), "--batch", "1", env=env)
    wait_for(process, b" 1/")  # the progress bar: "[###...] 1/7 photos"
    lines = stop(process, signum)
    assert lines[-1].startswith(f"stopped by {signal.Signals(signum).name}: the ") and "run the same" in lines[-1]


def test_a_new_model_is_rolled_out_from_the_stored_photos(make_client, photos, database_url, monkeypatch, capsys):
    first = make_client(**STORE)
    for employee_id, person in PEOPLE.items():
        assert enroll(first, employee_id, photos.bytes(person, 1)).status_code == 201
    old = first.app.state.runtime.service.model_id
    assert count(first, ReferencePhoto) == len(PEOPLE)
    make_client.stop(first)

    # the next model rolled out to two replicas
    replica, other = (make_client(**STORE, next_model_path=NEXT_MODEL) for _ in range(2))
    assert replica.get("/readyz").json()["model_id"] == old == other.get("/readyz").json()["model_id"]
    new = replica.app.state.runtime.service.upcoming.model_id
    assert enroll(replica, "lb", photos.bytes("Laura_Bush", 1)).status_code == 201  # now makes both templates
    assert count(replica, new) == 1
    shown = replica.get("/employees/lb").json()  # of its two templates, the serving model's is shown
    assert (shown["model_id"], shown["current_model"]) == (old, True)

    run_interrupted(database_url, signal.SIGINT)
    first = count(replica, new) - 1
    assert 0 < first < len(PEOPLE), f"{first} of {len(PEOPLE)}: the interruption came too late to test resuming"
    run_interrupted(database_url, signal.SIGTERM)  # resumed, and stopped again: what a supervisor sends
    done = count(replica, new) - 1
    assert first < done < len(PEOPLE), f"{done} of {len(PEOPLE)}: the interruption came too late to test resuming"
    assert replica.get("/readyz").json()["model_id"] == old  # no switch yet

    # Resume, while a door keeps verifying: every answer is a match, by one model or the other, never a mix
    # (a photo compared with a template of the other model would be as far as a stranger's). Serena Williams:
    # both models verify her second photo (the MobileFaceNet refuses Tony Blair's, tests/api/test_verify.py).
    answers, stop = [], threading.Event()

    def door() -> None:
        while not stop.is_set():
            response = verify(replica, "sw", photos.bytes("Serena_Williams", 2))
            answers.append((response.status_code, response.json().get("match"), response.json().get("model_id")))

    monkeypatch.setenv("FACEGATE_DATABASE_URL", database_url)
    for name, value in (("REFERENCE_STORE", "true"), ("REFERENCE_KEYS", KEY)):
        monkeypatch.setenv(f"FACEGATE_{name}", value)
    thread = threading.Thread(target=door)
    thread.start()
    try:
        assert reembed(["--model", str(NEXT_MODEL), "--batch", "4", "--no-progress"]) == 0
        wait_for_model(replica, new)
        wait_for_model(other, new)
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join()
    out = capsys.readouterr().out
    assert f"embedded {len(PEOPLE) - done} reference photos" in out and "switched" in out
    assert answers and {(status, match) for status, match, _ in answers} == {(200, True)}, set(answers)
    models = [model for _, _, model in answers]
    assert models[-1] == new and models == sorted(models, key=lambda m: m == new)  # old ones, then new ones

    assert count(replica, new) == len(PEOPLE) + 1
    shown = replica.get("/employees/lb").json()
    assert (shown["model_id"], shown["current_model"]) == (new, True)
    assert verify(replica, "as", photos.bytes("Ariel_Sharon", 2)).json()["model_id"] == new
    # both replicas answer alike, from the new model's templates
    assert verify(other, "sw", photos.bytes("Serena_Williams", 2)).json() == \
        verify(replica, "sw", photos.bytes("Serena_Williams", 2)).json()
    assert identify(replica, photos.bytes("Ariel_Sharon", 2)).json()["match"]["employee_id"] == "as"
    assert replica.get("/readyz").json()["templates"] == len(PEOPLE) + 1
    assert reembed(["--model", str(NEXT_MODEL), "--no-progress"]) == 0  # a second run has nothing to do
    assert "already the active model" in capsys.readouterr().out

    with pytest.raises(RuntimeError, match="does not have"):  # a replica still on the old model must not serve
        make_client(**STORE)


def test_deleting_an_employee_deletes_their_stored_photo(make_client, photos, database_url):
    client = make_client(**STORE)
    photo = photos.bytes("Tony_Blair", 1)
    enroll(client, "tb", photo)
    enroll(client, "cp", photos.bytes("Colin_Powell", 1))
    with client.app.state.runtime.sessions() as session:
        sealed = session.scalars(select(ReferencePhoto.ciphertext).join(ReferencePhoto.employee)
                                 .where(text("employees.employee_id = 'tb'"))).one()
    assert photo not in sealed and len(sealed) == len(photo) + 16  # encrypted, with GCM's tag
    assert client.delete("/employees/tb").status_code == 204
    assert count(client, ReferencePhoto) == 1
    if database_url.startswith("sqlite"):  # not even in the file's free pages or its write-ahead log
        with client.app.state.runtime.engine.connect() as connection:
            connection.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        path = database_url.removeprefix("sqlite:///")
        stored = b"".join(open(p, "rb").read() for p in (path, path + "-wal") if os.path.exists(p))
        assert sealed[:64] not in stored and sealed[-64:] not in stored


def test_a_replace_stores_the_new_photo_and_the_store_off_keeps_none(make_client, photos):
    client = make_client(**STORE)
    enroll(client, "tb", photos.bytes("Tony_Blair", 1))
    cipher = client.app.state.runtime.service.cipher
    enroll(client, "tb", photos.bytes("Tony_Blair", 2), replace=True)
    with client.app.state.runtime.sessions() as session:
        (row,) = session.scalars(select(ReferencePhoto)).all()
        assert cipher.open(row, "tb") == photos.bytes("Tony_Blair", 2)
    make_client.stop(client)
    plain = make_client()  # the store turned off: a replace leaves no photo of the employee behind
    enroll(plain, "tb", photos.bytes("Tony_Blair", 3), replace=True)
    assert count(plain, ReferencePhoto) == 0


def test_without_the_store_the_employees_to_re_enroll_are_listed(make_client, photos, database_url, monkeypatch,
                                                                  capsys):
    client = make_client()
    enroll(client, "sw", photos.bytes("Serena_Williams", 1))
    enroll(client, "cp", photos.bytes("Colin_Powell", 1))
    old = client.app.state.runtime.service.model_id
    monkeypatch.setenv("FACEGATE_DATABASE_URL", database_url)

    assert reembed(["--model", str(NEXT_MODEL), "--no-progress"]) == 3  # not switched
    out = capsys.readouterr().out
    assert "re-enroll\tcp\tno stored photo" in out and "re-enroll\tsw\tno stored photo" in out
    assert "not switched" in out and client.get("/readyz").json()["model_id"] == old

    assert reembed(["--model", str(NEXT_MODEL), "--no-progress", "--allow-stale"]) == 0
    assert "2 employees must enroll again" in capsys.readouterr().out
    deadline = time.monotonic() + 15
    while client.get("/readyz").status_code != 503:  # this replica has not loaded the new model: it stops
        assert time.monotonic() < deadline
        time.sleep(0.1)
    response = verify(client, "sw", photos.bytes("Serena_Williams", 2))
    assert response.status_code == 503 and error_code(response) == "not_ready"
    make_client.stop(client)

    upgraded = make_client(model_path=NEXT_MODEL)
    assert upgraded.get("/readyz").json()["stale_templates"] == 2
    assert error_code(verify(upgraded, "sw", photos.bytes("Serena_Williams", 2))) == "stale_template"
    assert enroll(upgraded, "sw", photos.bytes("Serena_Williams", 1), replace=True).status_code == 201
    assert verify(upgraded, "sw", photos.bytes("Serena_Williams", 2)).json()["match"] is True


def test_a_replica_away_during_the_switch_follows_it_when_it_returns(make_client, photos, database_url,
                                                                      monkeypatch, capsys):
    """The feed's row of the switch may be pruned before a replica that was cut off reads it: the replica
    still switches when it returns, before it rebuilds its index."""
    a, b = (make_client(next_model_path=NEXT_MODEL) for _ in range(2))
    enroll(a, "sw", photos.bytes("Serena_Williams", 1))
    away = b.app.state.runtime.follower
    away.close()  # B stops following
    monkeypatch.setenv("FACEGATE_DATABASE_URL", database_url)
    assert reembed(["--model", str(NEXT_MODEL), "--no-progress", "--allow-stale"]) == 0
    capsys.readouterr()
    deadline = time.monotonic() + 15
    while a.app.state.runtime.service.upcoming is not None:  # A switches
        assert time.monotonic() < deadline
        time.sleep(0.1)
    new = a.app.state.runtime.service.model_id
    assert enroll(a, "as", photos.bytes("Ariel_Sharon", 1)).status_code == 201  # a change after the switch
    a.app.state.runtime.follower.retention = 0.0
    a.app.state.runtime.follower.prune()  # the switch's row is gone; only the enrollment's is left

    away.read_at -= 2 * away.retention  # B comes back two days later
    away.catch_up()
    assert b.get("/readyz").json()["model_id"] == new
    assert identify(b, photos.bytes("Ariel_Sharon", 2)).json()["match"]["employee_id"] == "as"


def test_a_template_from_a_replaced_photo_is_not_kept(make_client, photos):
    """app.cli.reembed embeds a stored photo while a replace may swap it: the template is only written if the photo
    it was made from is still the employee's (and the employee still exists)."""
    from app.gallery import repository

    client = make_client(**STORE)
    enroll(client, "tb", photos.bytes("Tony_Blair", 1))
    sessions = client.app.state.runtime.sessions
    with sessions() as session:
        old = session.scalars(select(ReferencePhoto)).one()
        employee_pk, old_id = old.employee_pk, old.id
    enroll(client, "tb", photos.bytes("Tony_Blair", 2), replace=True)  # the photo is replaced meanwhile
    vector = client.app.state.runtime.service.index.template("tb").vector
    with sessions() as session:
        new_id = session.scalars(select(ReferencePhoto.id)).one()
        assert new_id != old_id
        assert not repository.add_template(session=session, employee_pk=employee_pk, reference_id=old_id, slot=0,
                                           vector=vector, model_id="sha256:next")
        session.rollback()
        assert repository.add_template(session=session, employee_pk=employee_pk, reference_id=new_id, slot=0,
                                       vector=vector, model_id="sha256:next")
        session.commit()
        assert not repository.add_template(session=session, employee_pk=employee_pk, reference_id=new_id, slot=0,
                                           vector=vector, model_id="sha256:next"), "one template per model"
        session.rollback()
    assert client.delete("/employees/tb").status_code == 204
    with sessions() as session:
        assert not repository.add_template(session=session, employee_pk=employee_pk, reference_id=new_id, slot=0,
                                           vector=vector, model_id="sha256:other"), "a deleted employee"


def test_every_stored_reference_is_re_embedded_and_the_limits_follow_the_slots(make_client, photos, database_url,
                                                                              monkeypatch, capsys):
    """An employee with several references (each with its stored photo) gets a template of the new model for
    each; a reference added while the next model is rolled out gets both; a removed one is not re-embedded."""
    from tests.client import add_reference, references_of

    client = make_client(**STORE)
    enroll(client, "tb", photos.bytes("Tony_Blair", 1))
    add_reference(client, "tb", photos.bytes("Tony_Blair", 2))
    add_reference(client, "tb", photos.bytes("Tony_Blair", 3))
    assert client.delete("/employees/tb/references/1").status_code == 204
    enroll(client, "sw", photos.bytes("Serena_Williams", 1))
    assert count(client, ReferencePhoto) == 3  # tb's slots 0 and 2, sw's 0
    make_client.stop(client)

    replica = make_client(**STORE, next_model_path=NEXT_MODEL)
    new = replica.app.state.runtime.service.upcoming.model_id
    assert add_reference(replica, "sw", photos.bytes("Serena_Williams", 2)).status_code == 201  # both models
    assert count(replica, new) == 1
    monkeypatch.setenv("FACEGATE_DATABASE_URL", database_url)
    for name, value in (("REFERENCE_STORE", "true"), ("REFERENCE_KEYS", KEY)):
        monkeypatch.setenv(f"FACEGATE_{name}", value)
    assert reembed(["--model", str(NEXT_MODEL), "--no-progress"]) == 0
    assert "embedded 3 reference photos" in capsys.readouterr().out
    wait_for_model(replica, new)
    assert count(replica, new) == 4
    assert references_of(replica, "tb") == [0, 2] and references_of(replica, "sw") == [0, 1]
    # the new model's template of tb is the fusion of its re-embedded references, computed here by hand
    service = replica.app.state.runtime.service
    one, three = (service.probe(photos.bytes("Tony_Blair", i)).vector for i in (1, 3))
    expected = (one + three) / np.linalg.norm(one + three)
    assert np.allclose(service.index.template("tb").vector, expected, atol=1e-5)
    answer = verify(replica, "tb", photos.bytes("Tony_Blair", 3)).json()
    assert answer["model_id"] == new and answer["references"] == 2
    assert answer["distance"] == pytest.approx(float(np.linalg.norm(expected - three)), abs=1e-4)
    assert replica.get("/readyz").json()["templates"] == 2  # one per employee
