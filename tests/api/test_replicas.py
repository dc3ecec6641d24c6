"""Two API processes on one database: what one replica writes, the other serves within a second."""

import time

import numpy as np
import pytest

from tests.client import enroll, error_code, identify, verify

PROPAGATION_S = 1.0


def within(seconds: float, check) -> float:  # noqa: ANN001
    """Seconds until check() is true; fails the test after `seconds`."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > seconds:
            pytest.fail(f"not seen within {seconds} s")
        time.sleep(0.01)
    return time.monotonic() - started


def test_enroll_replace_and_delete_reach_the_other_replica_within_a_second(make_client, photos):
    a, b = make_client(), make_client()
    assert a.app.state.runtime.service.index is not b.app.state.runtime.service.index

    assert enroll(a, "tb", photos.bytes("Tony_Blair", 1), name="Tony").status_code == 201
    within(PROPAGATION_S, lambda: verify(b, "tb", photos.bytes("Tony_Blair", 2)).status_code == 200)
    first = verify(b, "tb", photos.bytes("Tony_Blair", 1)).json()["distance"]
    assert first == pytest.approx(0.0, abs=1e-3)

    # replace through B: A follows, and now Colin Powell's photo is the reference
    assert enroll(b, "tb", photos.bytes("Colin_Powell", 1), replace=True).status_code == 201
    within(PROPAGATION_S, lambda: verify(a, "tb", photos.bytes("Colin_Powell", 1)).json()["distance"] < 1e-3)

    assert a.delete("/employees/tb").status_code == 204
    within(PROPAGATION_S, lambda: verify(b, "tb", photos.bytes("Colin_Powell", 1)).status_code == 404)
    assert error_code(verify(b, "tb", photos.bytes("Colin_Powell", 1))) == "employee_not_found"
    assert identify(b, photos.bytes("Colin_Powell", 1)).json()["candidates"] == []


def test_a_restarted_replica_rebuilds_its_index_and_follows_on(make_client, photos):
    a = make_client()
    enroll(a, "lb", photos.bytes("Laura_Bush", 1))
    b = make_client()
    assert b.get("/readyz").json()["templates"] == 1
    enroll(a, "sw", photos.bytes("Serena_Williams", 1))
    within(PROPAGATION_S, lambda: b.get("/readyz").json()["templates"] == 2)


def test_a_change_committed_out_of_order_is_still_applied(database_url, make_client, photos):
    """A transaction that took its sequence number early but committed late is not skipped."""
    from app.gallery import repository

    if database_url.startswith("sqlite"):
        pytest.skip("SQLite admits one writer at a time, so its commits cannot come out of order")

    a, b = make_client(), make_client()
    runtime = b.app.state.runtime
    vector = a.app.state.runtime.service.embedder.embed(np.zeros((1, 64, 64, 3), np.uint8))[0]
    with a.app.state.runtime.sessions() as slow:
        employee = repository.add_employee(session=slow, employee_id="late", name=None)
        repository.set_template(session=slow, employee=employee, vector=vector,
                                model_id=runtime.service.model_id)  # takes the earlier sequence number
        enroll(a, "lb", photos.bytes("Laura_Bush", 1))  # a later number, committed first
        within(PROPAGATION_S, lambda: "lb" in runtime.service.index)
        assert runtime.follower.pending, "the earlier number is remembered as missing"
        slow.commit()
    within(PROPAGATION_S, lambda: "late" in runtime.service.index)
    assert not runtime.follower.pending
