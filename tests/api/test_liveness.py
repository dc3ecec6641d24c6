"""The head-turn challenge at /verify and /identify: real turns pass, photos and cheats do not, and every
outcome is audited, on both databases."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from PIL import Image
from sqlalchemy import update

from app.gallery.models import LivenessChallenge, utcnow
from app.services.keys import create_key
from model.faces.config import MEASURED_MIN_SHAPE
from tests.bursts import card_turns, frontal_frame, head_turns
from tests.client import error_code, identify, images, verify
from tests.gallery_rows import audit_rows
from tests.photos import encode

# What a burst is refused for does not depend on the database: those tests run on SQLite alone. The challenge's
# life (stored, redeemed once, expiring, bound to its key), the keys and the lockout run on both.
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def enroll_man(client, shared_data, headers: dict | None = None) -> None:
    """The man of the webcam sample, enrolled from one frame facing the camera (a webcam's frame is below the
    reference quality thresholds)."""
    response = client.post("/enroll", params={"force": "true"}, data={"employee_id": "man"}, headers=headers,
                           files=images(frontal_frame(shared_data)))
    assert response.status_code == 201, response.text


@pytest.fixture
def start(make_client):
    """A server for the webcam sample: only the CNN fallback finds its faces (about 60 ms a frame, two frames
    queued at once), so its budget is raised from 1 s (FACEGATE_FALLBACK_SECONDS), lest a machine busy with the
    rest of the suite answer no_face."""
    return lambda **settings: make_client(fallback_seconds=5.0, **settings)


@pytest.fixture
def door(start, shared_data):
    client = start()
    enroll_man(client, shared_data)
    return client


def challenge(client, headers: dict | None = None) -> dict:
    response = client.post("/liveness/challenge", headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def test_real_head_turns_answer_a_challenge_and_match(door, shared_data):
    issued = challenge(door)
    assert 2 <= len(issued["prompts"]) <= 3 and set(issued["prompts"]) == {"left", "right"}
    assert issued["min_frames"] == 2 + 2 * len(issued["prompts"]) and issued["max_frames"] == 30
    response = verify(door, "man", head_turns(shared_data, issued["prompts"]), challenge_id=issued["challenge_id"])
    assert response.status_code == 200, response.text
    assert response.json()["match"] is True and response.json()["liveness"] is True
    row = audit_rows(door)[-1]
    assert (row.action, row.decision, row.liveness) == ("verify", "match", "passed")


@SQLITE_ONLY
def test_identify_with_a_challenge_names_the_man(door, shared_data):
    issued = challenge(door)
    response = identify(door, head_turns(shared_data, issued["prompts"]), challenge_id=issued["challenge_id"])
    assert response.status_code == 200, response.text
    assert response.json()["match"]["employee_id"] == "man" and response.json()["liveness"] is True
    assert audit_rows(door)[-1].liveness == "passed"


def test_a_challenge_answers_once(door, shared_data):
    issued = challenge(door)
    burst = head_turns(shared_data, issued["prompts"])
    assert verify(door, "man", burst, challenge_id=issued["challenge_id"]).status_code == 200
    again = verify(door, "man", burst, challenge_id=issued["challenge_id"])
    assert (again.status_code, error_code(again)) == (409, "challenge_used")
    assert audit_rows(door)[-1].decision == "challenge_used"


def test_a_challenge_expires(door, shared_data):
    issued = challenge(door)
    with door.app.state.runtime.sessions() as session:  # its 30 seconds pass
        session.execute(update(LivenessChallenge).values(expires_at=utcnow() - timedelta(seconds=1)))
        session.commit()
    response = verify(door, "man", head_turns(shared_data, issued["prompts"]), challenge_id=issued["challenge_id"])
    assert (response.status_code, error_code(response)) == (409, "challenge_expired")


def test_a_challenge_is_bound_to_the_key_that_asked(start, shared_data):
    client = start(auth=True)
    with client.app.state.runtime.sessions() as session:
        door_a, door_b = create_key(session, "verify")[0], create_key(session, "verify")[0]
    issued = challenge(client, {"X-API-Key": door_a})
    response = verify(client, "man", head_turns(shared_data, issued["prompts"]), headers={"X-API-Key": door_b},
                      challenge_id=issued["challenge_id"])
    assert (response.status_code, error_code(response)) == (404, "challenge_not_found")
    unknown = verify(client, "man", head_turns(shared_data, issued["prompts"]), headers={"X-API-Key": door_a},
                     challenge_id="made-up")
    assert (unknown.status_code, error_code(unknown)) == (404, "challenge_not_found")
    assert client.post("/liveness/challenge").status_code == 401
    with client.app.state.runtime.sessions() as session:
        metrics_key = create_key(session, "metrics")[0]
    forbidden = client.post("/liveness/challenge", headers={"X-API-Key": metrics_key})
    assert (forbidden.status_code, error_code(forbidden)) == (403, "forbidden")


def test_two_answers_to_one_challenge_at_once_get_one_decision(door, shared_data):
    """Two replicas' worth of requests redeem one challenge at the same moment: one conditional UPDATE each, and
    exactly one of them wins; the other is refused before any frame is looked at."""
    issued = challenge(door)
    burst = head_turns(shared_data, issued["prompts"])
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: verify(door, "man", burst, challenge_id=issued["challenge_id"]), range(2)))
    assert sorted(a.status_code for a in answers) == [200, 409]
    assert [error_code(a) for a in answers if a.status_code == 409] == ["challenge_used"]
    assert sorted(r.decision for r in audit_rows(door) if r.action == "verify") == ["challenge_used", "match"]


@pytest.mark.parametrize("challenge_id", ["", "a" * 65, "../etc", "id with spaces", "é"])
@SQLITE_ONLY
def test_a_malformed_challenge_id_is_refused(door, shared_data, challenge_id):
    response = verify(door, "man", head_turns(shared_data, ["left", "right"]), challenge_id=challenge_id)
    assert (response.status_code, error_code(response)) == (422, "validation_error")
    if challenge_id:  # "given empty" otherwise
        assert response.json()["error"]["message"] == ("challenge_id: must be 1-64 of A-Z a-z 0-9 _ -, as "
                                                       "POST /liveness/challenge gave it"), "the rule, not its regex"


@SQLITE_ONLY
def test_turns_in_the_wrong_order_fail(door, shared_data):
    issued = challenge(door)
    wrong = ["right" if p == "left" else "left" for p in issued["prompts"]]
    response = verify(door, "man", head_turns(shared_data, wrong), challenge_id=issued["challenge_id"])
    assert (response.status_code, error_code(response)) == (422, "liveness_failed")
    assert "(turns)" in response.json()["error"]["message"]
    row = audit_rows(door)[-1]
    assert (row.decision, row.liveness) == ("liveness_failed", "turns")


@SQLITE_ONLY
def test_a_missing_turn_fails(door, shared_data):
    issued = challenge(door)
    burst = head_turns(shared_data, issued["prompts"])
    response = verify(door, "man", burst[:-5], challenge_id=issued["challenge_id"])  # the last turn cut off
    assert (response.status_code, error_code(response)) == (422, "liveness_failed")


@SQLITE_ONLY
def test_a_printed_photo_turned_as_a_card_fails(door, shared_data):
    issued = challenge(door)
    attack = card_turns(frontal_frame(shared_data), issued["prompts"])
    response = verify(door, "man", attack, challenge_id=issued["challenge_id"])
    assert (response.status_code, error_code(response)) == (422, "liveness_failed"), response.text


@SQLITE_ONLY
def test_the_shape_check_refuses_a_photo_folded_at_the_nose(start, shared_data, photos):
    """A photo folded down the nose and turned passes the five-point checks (1 in 7 of the benchmark's do:
    docs/liveness.md), and this one matches its owner. With the shape check on (off as shipped, for the
    68-point predictor's licence), dlib's 68 points refuse it, audited, and the real turns still pass."""
    def attempt(client) -> tuple:
        issued = challenge(client)
        folded = card_turns(photos.bytes("Laura_Bush", 1), issued["prompts"], bend=20.0)
        response = verify(client, "Laura_Bush", folded, challenge_id=issued["challenge_id"])
        answer = response.json()["match"] if response.status_code == 200 else error_code(response)
        return response.status_code, answer, audit_rows(client)[-1].liveness

    client = start()
    enroll_man(client, shared_data)
    enrolled = client.post("/enroll", params={"force": "true"}, data={"employee_id": "Laura_Bush"},
                           files=images(photos.bytes("Laura_Bush", 1)))
    assert enrolled.status_code == 201, enrolled.text
    assert attempt(client) == (200, True, "passed")
    shaped = start(liveness_min_shape=MEASURED_MIN_SHAPE)  # the same gallery
    assert attempt(shaped) == (422, "liveness_failed", "shape")
    issued = challenge(shaped)
    live = verify(shaped, "man", head_turns(shared_data, issued["prompts"]), challenge_id=issued["challenge_id"])
    assert live.status_code == 200 and live.json()["match"] is True, live.text


@SQLITE_ONLY
def test_a_frame_with_two_faces_is_refused(door, shared_data, photos):
    issued = challenge(door)
    burst = head_turns(shared_data, issued["prompts"])
    burst[3] = photos.side_by_side(("Tony_Blair", 1), ("Colin_Powell", 1))
    response = verify(door, "man", burst, challenge_id=issued["challenge_id"])
    assert (response.status_code, error_code(response)) == (422, "multiple_faces")
    assert response.json()["error"]["message"].startswith("frame 4:")


@SQLITE_ONLY
def test_a_frame_of_another_person_is_refused(door, shared_data, photos):
    """A live head turning for the camera, and someone else's photo in the first frames, which face it. Which
    check refuses it depends on that photo's pose (the baseline is read from it): the frames' identities, or the
    turns measured from it. Refused, either way, with one of those two codes."""
    issued = challenge(door)
    burst = head_turns(shared_data, issued["prompts"])
    burst[0] = burst[1] = photos.bytes("Tony_Blair", 1)
    response = verify(door, "man", burst, challenge_id=issued["challenge_id"])
    assert response.status_code == 422 and error_code(response) in ("not_one_person", "liveness_failed")


@SQLITE_ONLY
def test_frame_count_and_size_limits(door, shared_data, photos):
    issued = challenge(door)
    burst = head_turns(shared_data, issued["prompts"])
    response = verify(door, "man", burst * 3, challenge_id=issued["challenge_id"])  # over 30 frames
    assert (response.status_code, error_code(response)) == (422, "too_many_photos")
    issued = challenge(door)
    huge = encode(Image.new("RGB", (1500, 1000), (90, 90, 90)))  # 1.5 MP: over FACEGATE_LIVENESS_MAX_FRAME_PIXELS
    response = verify(door, "man", [huge, *burst[1:]], challenge_id=issued["challenge_id"])
    assert (response.status_code, error_code(response)) == (413, "image_too_large")
    assert response.json()["error"]["message"].startswith("frame 1:")
    issued = challenge(door)
    response = verify(door, "man", [*burst[:2], b"not an image", *burst[3:]], challenge_id=issued["challenge_id"])
    assert (response.status_code, error_code(response)) == (422, "invalid_image")
    assert response.json()["error"]["message"].startswith("frame 3:")


@SQLITE_ONLY
def test_a_repeated_challenge_id_is_refused(door, shared_data):
    """Two challenge ids in one request: "the last one wins" would let a proxy log one and the service use the
    other."""
    first, second = challenge(door), challenge(door)
    response = door.post("/verify", data={"employee_id": "man",
                                          "challenge_id": [first["challenge_id"], second["challenge_id"]]},
                         files=images(head_turns(shared_data, first["prompts"])))
    assert (response.status_code, error_code(response)) == (422, "validation_error")


def test_a_liveness_key_refuses_a_plain_verify(start, shared_data):
    client = start(auth=True)
    with client.app.state.runtime.sessions() as session:
        admin = create_key(session, "admin")[0]
        door = create_key(session, "verify", liveness=True)[0]
        plain = create_key(session, "verify")[0]
    enroll_man(client, shared_data, {"X-API-Key": admin})
    refused = verify(client, "man", frontal_frame(shared_data), headers={"X-API-Key": door})
    assert (refused.status_code, error_code(refused)) == (403, "liveness_required")
    refused = client.post("/identify", headers={"X-API-Key": door}, files=images(frontal_frame(shared_data)))
    assert (refused.status_code, error_code(refused)) == (403, "liveness_required")
    assert verify(client, "man", frontal_frame(shared_data), headers={"X-API-Key": plain}).status_code == 200
    issued = challenge(client, {"X-API-Key": door})
    live = verify(client, "man", head_turns(shared_data, issued["prompts"]), headers={"X-API-Key": door},
                  challenge_id=issued["challenge_id"])
    assert live.status_code == 200 and live.json()["match"] is True
    assert [r.decision for r in audit_rows(client) if r.action == "verify"] == ["liveness_required", "match", "match"]


def test_liveness_required_for_every_verify_key(start, shared_data):
    client = start(auth=True, liveness_required=True)
    with client.app.state.runtime.sessions() as session:
        admin, door = create_key(session, "admin")[0], create_key(session, "verify")[0]
    enroll_man(client, shared_data, {"X-API-Key": admin})
    refused = verify(client, "man", frontal_frame(shared_data), headers={"X-API-Key": door})
    assert (refused.status_code, error_code(refused)) == (403, "liveness_required")
    assert verify(client, "man", frontal_frame(shared_data), headers={"X-API-Key": admin}).status_code == 200


def test_failed_liveness_counts_toward_the_lockout(start, shared_data):
    client = start(verify_max_failures=2)
    enroll_man(client, shared_data)
    for _ in range(2):
        issued = challenge(client)
        wrong = ["right" if p == "left" else "left" for p in issued["prompts"]]
        response = verify(client, "man", head_turns(shared_data, wrong), challenge_id=issued["challenge_id"])
        assert error_code(response) == "liveness_failed"
    issued = challenge(client)
    locked = verify(client, "man", head_turns(shared_data, issued["prompts"]), challenge_id=issued["challenge_id"])
    assert (locked.status_code, error_code(locked)) == (429, "too_many_attempts")
