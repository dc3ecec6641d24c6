"""The gallery on a real database, SQLite and PostgreSQL alike."""

import warnings

import numpy as np
import pytest
from alembic import command
from sqlalchemy import create_engine, inspect
from sqlalchemy.exc import SAWarning
from sqlalchemy.orm import Session

from app.gallery import repository
from app.gallery.db import alembic_config
from app.gallery.models import Template
from tests.client import enroll, error_code, identify, verify


def test_the_gallery_survives_a_restart(make_client, photos):
    first = make_client()
    enroll(first, "tb", photos.bytes("Tony_Blair", 1), name="Tony")
    enroll(first, "cp", photos.bytes("Colin_Powell", 1))
    before = verify(first, "tb", photos.bytes("Tony_Blair", 2)).json()
    ranked = identify(first, photos.bytes("Colin_Powell", 2)).json()["candidates"]
    make_client.stop(first)

    second = make_client()
    assert second.get("/readyz").json()["templates"] == 2
    # the same answers; the AS-norm score to float rounding (a start-up computes the templates' cohort
    # statistics in one batch, an enrollment one at a time, and the products round differently)
    after = verify(second, "tb", photos.bytes("Tony_Blair", 2)).json()
    assert {**after, "score": None} == {**before, "score": None}
    assert after["score"] == pytest.approx(before["score"], rel=1e-5)
    again = identify(second, photos.bytes("Colin_Powell", 2)).json()["candidates"]
    assert [{**c, "score": None} for c in again] == [{**c, "score": None} for c in ranked]
    assert [c["score"] for c in again] == pytest.approx([c["score"] for c in ranked], rel=1e-5)
    assert second.get("/employees/tb").json()["name"] == "Tony"


def test_templates_of_another_model_are_never_compared(make_client, photos, database_url):
    client = make_client()
    enroll(client, "tb", photos.bytes("Tony_Blair", 1))
    enroll(client, "cp", photos.bytes("Colin_Powell", 1))
    engine = create_engine(database_url)
    with Session(engine) as session:  # as if "cp" had been enrolled by an older model
        template = session.query(Template).join(Template.employee).filter_by(employee_id="cp").one()
        template.model_id = "sha256:older-model"
        session.commit()
    engine.dispose()
    make_client.stop(client)

    restarted = make_client()
    ready = restarted.get("/readyz").json()
    assert ready["templates"] == 1 and ready["stale_templates"] == 1
    response = verify(restarted, "cp", photos.bytes("Colin_Powell", 2))
    assert response.status_code == 409 and error_code(response) == "stale_template"
    assert identify(restarted, photos.bytes("Colin_Powell", 2)).json()["match"] is None
    assert identify(restarted, photos.bytes("Tony_Blair", 2)).json()["match"]["employee_id"] == "tb"
    assert restarted.get("/employees/cp").json()["current_model"] is False
    # Enrolling again with the current model brings the employee back.
    assert enroll(restarted, "cp", photos.bytes("Colin_Powell", 1), replace=True).status_code == 201
    assert verify(restarted, "cp", photos.bytes("Colin_Powell", 1)).json()["distance"] < 1e-5
    assert restarted.get("/readyz").json()["stale_templates"] == 0


def test_vectors_round_trip_as_float32_bytes(database_url):
    command.upgrade(alembic_config(database_url), "head")
    engine = create_engine(database_url)
    vector = np.random.default_rng(0).standard_normal(128).astype(np.float32)
    with Session(engine) as session:
        employee = repository.add_employee(session=session, employee_id="e", name=None)
        repository.set_templates(session=session, employee=employee, vectors={"m": vector})
        session.commit()
    with Session(engine) as session:
        [(employee_id, _, stored)] = list(repository.iter_templates(session=session, model_id="m"))
        assert employee_id == "e" and stored.dtype == np.float32 and np.array_equal(stored, vector)
    engine.dispose()


def test_migrations_upgrade_from_empty_and_downgrade_to_empty(database_url):
    """Every revision, one step at a time, up and down: the schema is the models' at head, empty at base."""
    from app.gallery.models import Base

    tables = set(Base.metadata.tables)
    assert tables == {"employees", "templates", "gallery_changes", "api_keys", "audit_log", "verify_failures",
                      "reference_photos", "gallery_state", "groups", "group_members", "api_key_groups",
                      "liveness_challenges"}
    config = alembic_config(database_url)
    engine = create_engine(database_url)
    command.upgrade(config, "0001")
    assert set(inspect(engine).get_table_names()) - {"alembic_version"} == {"employees", "templates"}
    command.upgrade(config, "head")
    assert set(inspect(engine).get_table_names()) - {"alembic_version"} == tables
    for table in tables:  # the migrations build what the models describe
        columns = {c["name"] for c in inspect(engine).get_columns(table)}
        assert columns == set(Base.metadata.tables[table].columns.keys()), table
    command.downgrade(config, "0001")
    assert set(inspect(engine).get_table_names()) - {"alembic_version"} == {"employees", "templates"}
    command.downgrade(config, "base")
    assert not tables & set(inspect(engine).get_table_names())
    command.upgrade(config, "head")
    assert tables <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_migrations_warn_of_nothing(database_url):
    """A new SQLite gallery's first start printed SQLAlchemy's warning that it could not reflect the employees'
    lower(employee_id) index: 0006 copied the tables that refer to employees, and reflected employees with them."""
    config = alembic_config(database_url)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SAWarning)
        command.upgrade(config, "head")
        command.downgrade(config, "base")


def test_migration_0006_keeps_each_employee_s_reference_in_slot_0(database_url):
    """A gallery of one reference per employee (0005) upgrades with its rows in slot 0; after it, an employee
    may have several slots, one template per model and slot, one photo per slot, and photo ids stay unique."""
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    config = alembic_config(database_url)
    command.upgrade(config, "0005")
    engine = create_engine(database_url)
    now = "2026-11-29 00:00:00+00:00"
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO employees (id, employee_id, created_at, updated_at) "
                                "VALUES (1, 'e', :now, :now)"), {"now": now})
        connection.execute(text("INSERT INTO templates (employee_pk, model_id, dim, vector, created_at) "
                                "VALUES (1, 'm', 2, :v, :now)"), {"v": b"\0" * 8, "now": now})
        for _ in range(2):  # the second replaced the first
            connection.execute(text("DELETE FROM reference_photos"))
            connection.execute(text("INSERT INTO reference_photos (employee_pk, key_id, nonce, ciphertext, "
                                    "created_at) VALUES (1, 'k', :b, :b, :now)"), {"b": b"x", "now": now})
    command.upgrade(config, "head")

    def insert(table: str, slot: int, **values: str) -> None:
        columns = {"employee_pk": 1, "slot": slot, "created_at": now, **values}
        with engine.begin() as connection:
            connection.execute(text(f"INSERT INTO {table} ({', '.join(columns)}) "
                                    f"VALUES ({', '.join(':' + c for c in columns)})"),
                               {k: (v.encode() if k in ("vector", "nonce", "ciphertext") else v)
                                for k, v in columns.items()})

    with engine.connect() as connection:
        assert connection.execute(text("SELECT slot FROM templates")).scalars().all() == [0]
        assert connection.execute(text("SELECT id, slot FROM reference_photos")).all() == [(2, 0)]
    template = {"model_id": "m", "dim": "2", "vector": "\0" * 8}
    photo = {"key_id": "k", "nonce": "x", "ciphertext": "x"}
    insert("templates", 1, **template)
    insert("reference_photos", 1, **photo)
    for table, values in (("templates", template), ("reference_photos", photo)):
        try:
            insert(table, 1, **values)
            raise AssertionError(f"{table}: a second row in slot 1 was accepted")
        except IntegrityError:
            pass
    with engine.begin() as connection:
        removed = connection.execute(text("DELETE FROM reference_photos WHERE slot = 1 RETURNING id")).scalar()
    insert("reference_photos", 1, **photo)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT max(id) FROM reference_photos")).scalar() > removed  # not reused
    engine.dispose()
