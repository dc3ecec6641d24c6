"""Two API processes on one database: what one replica writes, the other serves within a second."""


import numpy as np
import pytest

from tests.client import enroll, error_code, identify, verify
from tests.waiting import PROPAGATION_S, within


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
    embedder = a.app.state.runtime.service.embedder
    size = embedder.input_size
    vector = embedder.embed(np.zeros((1, size, size, 3), np.uint8))[0]
    with a.app.state.runtime.sessions() as slow:
        employee = repository.add_employee(session=slow, employee_id="late", name=None)
        repository.set_templates(session=slow, employee=employee,
                                 vectors={runtime.service.model_id: vector})  # takes the earlier sequence number
        enroll(a, "lb", photos.bytes("Laura_Bush", 1))  # a later number, committed first
        within(PROPAGATION_S, lambda: "lb" in runtime.service.index)
        assert runtime.follower.pending, "the earlier number is remembered as missing"
        slow.commit()
    within(PROPAGATION_S, lambda: "late" in runtime.service.index)
    assert not runtime.follower.pending


def feed_rows(runtime) -> list[int]:  # noqa: ANN001
    from sqlalchemy import select

    from app.gallery.models import GalleryChange

    with runtime.sessions() as session:
        return list(session.scalars(select(GalleryChange.seq).order_by(GalleryChange.seq)))


def test_old_changes_are_pruned_and_the_numbering_goes_on(make_client, photos):
    a = make_client()
    follower = a.app.state.runtime.follower
    for employee_id, person in (("lb", "Laura_Bush"), ("sw", "Serena_Williams"), ("tb", "Tony_Blair")):
        assert enroll(a, employee_id, photos.bytes(person, 1)).status_code == 201
    rows = feed_rows(a.app.state.runtime)
    assert len(rows) == 3
    within(PROPAGATION_S, lambda: follower.last_seq == rows[-1])  # read long before anything is pruned

    assert follower.prune() == 0, "a day's retention keeps fresh rows"
    follower.retention = 0.0
    assert follower.prune() == 2
    assert feed_rows(a.app.state.runtime) == rows[-1:], "the newest row stays"

    assert a.delete("/employees/lb").status_code == 204
    assert feed_rows(a.app.state.runtime)[-1] > rows[-1], "a sequence number is never handed out twice"
    assert follower.rebuilds == 0


def test_a_replica_away_longer_than_the_feed_keeps_rebuilds_its_index(make_client, photos):
    a, b = make_client(), make_client()
    assert enroll(a, "lb", photos.bytes("Laura_Bush", 1)).status_code == 201
    away = b.app.state.runtime.follower
    within(PROPAGATION_S, lambda: "lb" in b.app.state.runtime.service.index)
    away.close()  # B stops following: a lost connection, a paused VM

    assert enroll(a, "sw", photos.bytes("Serena_Williams", 1)).status_code == 201
    assert enroll(a, "tb", photos.bytes("Tony_Blair", 1)).status_code == 201
    assert a.delete("/employees/lb").status_code == 204
    a.app.state.runtime.follower.retention = 0.0
    a.app.state.runtime.follower.prune()  # only the delete of "lb" is left; B never saw the two enrolls

    away.read_at -= 2 * away.retention  # B comes back two days later
    away.catch_up()
    assert away.rebuilds == 1
    index = b.app.state.runtime.service.index
    assert ("sw" in index, "tb" in index, "lb" in index) == (True, True, False)
    assert identify(b, photos.bytes("Serena_Williams", 2)).json()["candidates"][0]["employee_id"] == "sw"
    assert away.catch_up() == 0 and away.rebuilds == 1, "then it follows the feed again"
