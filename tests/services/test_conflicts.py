"""Deadlocks and serialisation failures: retried, then answered 503 database_conflict, never not_ready."""

from __future__ import annotations

import threading

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from app.api.errors import database_down
from app.core.errors import DatabaseConflict
from app.gallery import db
from app.services.conflicts import ATTEMPTS, is_conflict, retried


class Session:
    """What `retried` asks of a session: a rollback (counted)."""

    def __init__(self) -> None:
        self.rollbacks = 0

    def rollback(self) -> None:
        self.rollbacks += 1


def deadlock() -> OperationalError:
    return OperationalError("UPDATE ...", {}, psycopg.errors.DeadlockDetected("deadlock detected"))


def test_a_conflict_every_time_ends_in_database_conflict_and_other_errors_pass():
    session, calls = Session(), []

    @retried
    def write(*, session):  # noqa: ANN001, ANN202
        calls.append(1)
        raise deadlock()

    with pytest.raises(DatabaseConflict):
        write(session=session)
    assert len(calls) == ATTEMPTS and session.rollbacks == ATTEMPTS

    @retried
    def away(*, session):  # noqa: ANN001, ANN202
        raise OperationalError("SELECT 1", {}, psycopg.errors.AdminShutdown("terminating connection"))

    with pytest.raises(OperationalError):
        away(session=Session())
    assert is_conflict(deadlock()) and not is_conflict(OperationalError("x", {}, ValueError()))
    response = database_down(deadlock())
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert b'"database_conflict"' in response.body


@pytest.mark.postgres
def test_a_real_deadlock_is_retried_until_both_writes_succeed(database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("a PostgreSQL deadlock")
    db.migrate(database_url)
    engine = db.make_engine(database_url)
    sessions = db.make_sessionmaker(engine)
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO employees (employee_id, created_at, updated_at) VALUES "
                                "('a', now(), now()), ('b', now(), now())"))
    both_hold_one = threading.Barrier(2)
    attempts = {"a": 0, "b": 0}

    @retried
    def rename_both(*, session, first: str, second: str) -> None:  # noqa: ANN001
        attempts[first] += 1
        session.execute(text("UPDATE employees SET name = :n WHERE employee_id = :e"), {"n": first, "e": first})
        if attempts[first] == 1:
            both_hold_one.wait(timeout=10)  # each holds one row and asks for the other's: a deadlock
        session.execute(text("UPDATE employees SET name = :n WHERE employee_id = :e"), {"n": first, "e": second})
        session.commit()

    errors = []

    def run(first: str, second: str) -> None:
        try:
            with sessions() as session:
                rename_both(session=session, first=first, second=second)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=pair) for pair in (("a", "b"), ("b", "a"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    engine.dispose()
    assert not errors, errors
    assert sorted(attempts.values()) == [1, 2], "PostgreSQL aborted one; it ran again and succeeded"
