"""Brute force: repeated failed verifications get 429, on every replica, per employee; per key, an alarm (or,
set so, 429)."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.services.keys import create_key
from tests.client import enroll, error_code, verify
from tests.gallery_rows import audit_rows
from tests.waiting import PROPAGATION_S, within


def test_repeated_failed_verifications_of_one_employee_get_429_on_every_replica(make_client, photos):
    a = make_client(verify_max_failures=3)
    b = make_client(verify_max_failures=3)
    assert enroll(a, "tb", photos.bytes("Tony_Blair", 1)).status_code == 201
    assert enroll(a, "cp", photos.bytes("Colin_Powell", 1)).status_code == 201
    for _ in range(3):
        assert verify(a, "tb", photos.bytes("Colin_Powell", 2)).json()["match"] is False
    for replica in (a, b):
        for photo in (photos.bytes("Colin_Powell", 2), photos.bytes("Tony_Blair", 2)):  # even the right face
            response = verify(replica, "tb", photo)
            assert (response.status_code, error_code(response)) == (429, "too_many_attempts")
            assert 0 < int(response.headers["Retry-After"]) <= 900
    assert verify(a, "TB", photos.bytes("Tony_Blair", 2)).status_code == 429, "ids are one regardless of case"
    within(PROPAGATION_S, lambda: "cp" in b.app.state.runtime.service.index)  # b follows a's enrollment
    assert verify(b, "cp", photos.bytes("Colin_Powell", 2)).json()["match"] is True, "others are not locked"
    assert [r.decision for r in audit_rows(a) if r.employee_id in ("tb", "TB")][-1] == "too_many_attempts"


@pytest.mark.parametrize("mode", ["block", "alarm"])
def test_one_key_failing_across_employees_gets_429_or_raises_its_alarm(make_client, photos, mode):
    """`block`: past its limit the key is refused, its door's genuine employees too. `alarm` (the default): the
    failures are counted and logged, and the door goes on letting its employees in."""
    from app.core import metrics

    client = make_client(auth=True, verify_max_failures=0, verify_max_failures_per_key=2, verify_key_limit=mode)
    with client.app.state.runtime.sessions() as session:
        admin, door = create_key(session, "admin")[0], create_key(session, "verify")[0]
    for employee_id, person in (("tb", "Tony_Blair"), ("cp", "Colin_Powell"), ("sw", "Serena_Williams")):
        client.post("/enroll", data={"employee_id": employee_id}, headers={"X-API-Key": admin},
                    files={"image": ("a.jpg", photos.bytes(person, 1), "image/jpeg")})

    def attempt(employee_id: str, person: str):
        return client.post("/verify", data={"employee_id": employee_id}, headers={"X-API-Key": door},
                           files={"image": ("a.jpg", photos.bytes(person, 2), "image/jpeg")})

    assert attempt("tb", "Laura_Bush").json()["match"] is False
    assert attempt("cp", "Laura_Bush").json()["match"] is False
    alarms = metrics.LOCKOUT_KEY_ALARMS._value.get()
    response = attempt("sw", "Serena_Williams")
    if mode == "block":
        assert (response.status_code, error_code(response)) == (429, "too_many_attempts")
    else:
        assert response.status_code == 200 and response.json()["match"] is True, "the door goes on serving"
        assert metrics.LOCKOUT_KEY_ALARMS._value.get() == alarms + 1


def test_a_burst_of_wrong_photos_on_two_replicas_gets_exactly_the_limit_of_decisions(make_client, photos):
    """200 wrong photos at once, half on each replica: 5 are compared and refused as no match, every other is
    429; none slips between the count and the decision. A right photo of another employee is still let in."""
    a, b = make_client(verify_max_failures=5), make_client(verify_max_failures=5)
    assert enroll(a, "tb", photos.bytes("Tony_Blair", 1)).status_code == 201
    assert enroll(a, "cp", photos.bytes("Colin_Powell", 1)).status_code == 201
    within(PROPAGATION_S, lambda: "tb" in b.app.state.runtime.service.index)
    wrong = photos.bytes("Colin_Powell", 2)
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda i: verify((a, b)[i % 2], "tb", wrong), range(200)))
    outcomes = Counter(r.status_code if r.status_code != 200 else r.json()["match"] for r in answers)
    assert outcomes == {False: 5, 429: 195}, outcomes
    assert verify(b, "cp", photos.bytes("Colin_Powell", 2)).json()["match"] is True


def test_a_match_or_an_error_does_not_use_up_an_attempt(make_client, photos):
    client = make_client(verify_max_failures=2)
    assert enroll(client, "tb", photos.bytes("Tony_Blair", 1)).status_code == 201
    for _ in range(3):
        assert verify(client, "tb", photos.bytes("Tony_Blair", 2)).json()["match"] is True
        assert error_code(verify(client, "tb", b"not a photo")) == "invalid_image"
        assert error_code(verify(client, "nobody", photos.bytes("Tony_Blair", 2))) == "employee_not_found"
    assert verify(client, "tb", photos.bytes("Colin_Powell", 2)).json()["match"] is False
    assert verify(client, "tb", photos.bytes("Colin_Powell", 2)).json()["match"] is False
    assert verify(client, "tb", photos.bytes("Tony_Blair", 2)).status_code == 429
