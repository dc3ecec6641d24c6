"""Races between requests, replicas, the batcher and bulk enrollment: each ends in an answer, never a hang
or a lost change."""

from __future__ import annotations

import queue
import threading
import time

import numpy as np
import pytest
from sqlalchemy import event

from tests.client import enroll
from tests.gallery_rows import audit_rows, employees
from tests.waiting import PROPAGATION_S, within


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
    from app.cli.bulk_enroll import Job, bulk_enroll
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


def test_two_deletes_of_one_employee_delete_once_and_the_second_is_told_so(database_url, make_client, photos):
    """Two DELETEs of one employee at once (two doors' admins, or two replicas): the second read the employee,
    then waited for the first's delete and deleted nothing, yet answered 204 and audited a second deletion
    (SQLAlchemy warned "expected to delete 1 row(s); 0 were matched"). It reads the row for update now, so it
    waits before its read and answers 404 employee_not_found."""
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite admits one writer at a time: the second delete reads after the first commits")
    client = make_client()
    assert enroll(client, "tb", photos.bytes("Tony_Blair", 1)).status_code == 201
    engine = client.app.state.runtime.engine
    answers: list[int] = []
    with engine.connect() as first:  # the first delete, on another connection, not yet committed
        assert first.exec_driver_sql("DELETE FROM employees WHERE employee_id = 'tb'").rowcount == 1
        second = threading.Thread(target=lambda: answers.append(client.delete("/employees/tb").status_code))
        second.start()
        time.sleep(1.0)  # the second reaches the server and waits for the row
        first.commit()
    second.join(timeout=30)
    assert answers == [404]
    assert [(r.action, r.decision) for r in audit_rows(client) if r.action == "delete"] == [
        ("delete", "employee_not_found")]
