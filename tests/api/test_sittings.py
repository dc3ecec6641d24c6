"""Several photos in one request, on SQLite and PostgreSQL: an enrollment of up to FACEGATE_MAX_REFERENCES
photos taken in one sitting (all or nothing, one audit row), and a burst of up to FACEGATE_MAX_FRAMES frames at
/verify and /identify (fused into one probe). Every photo must show the same person."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import func, select

from app.gallery.models import AuditRecord, Employee, Template
from model.card.scores import fuse
from tests.client import enroll, error_code, identify, references_of, verify
from tests.photos import blank_photo
from tests.waiting import PROPAGATION_S, within


def rows(client, model) -> int:
    with client.app.state.runtime.sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


def audit_rows(client, action: str) -> list[tuple[str | None, str]]:
    runtime = client.app.state.runtime
    runtime.audit.flush()
    with runtime.sessions() as session:
        return [(r.employee_id, r.decision) for r in session.scalars(select(AuditRecord)
                                                                       .where(AuditRecord.action == action))]


def test_three_photos_of_one_sitting_make_one_fused_template(make_client, photos):
    client = make_client()
    service = client.app.state.runtime.service
    sitting = [photos.bytes("Tony_Blair", i) for i in (1, 2, 3)]
    response = enroll(client, "tb", sitting, name="Tony Blair")
    assert response.status_code == 201, response.text
    assert response.json()["references"] == 3
    assert references_of(client, "tb") == [0, 1, 2] and rows(client, Template) == 3
    assert audit_rows(client, "enroll") == [("tb", "enrolled")], "one sitting, one audit row"

    vectors = np.stack([service.probe(photo).vector for photo in sitting])
    template = service.index.template("tb")
    assert template.references == 3 and np.allclose(template.vector, fuse(vectors), atol=1e-5)
    body = verify(client, "tb", photos.bytes("Tony_Blair", 2)).json()
    assert body["references"] == 3 and body["match"]
    assert body["threshold"] == pytest.approx(service.score_threshold_of(service.serving, 3))
    # a second replica builds the same template from the database
    other = make_client()
    within(PROPAGATION_S, lambda: other.app.state.runtime.service.index.template("tb") is not None)
    assert np.allclose(other.app.state.runtime.service.index.template("tb").vector, template.vector, atol=1e-6)


def test_a_stranger_among_the_photos_refuses_the_whole_sitting(make_client, photos):
    client = make_client()
    enroll(client, "cp", photos.bytes("Colin_Powell", 1))
    sitting = [photos.bytes("Tony_Blair", 1), photos.bytes("Tony_Blair", 2), photos.bytes("Vladimir_Putin", 1)]
    response = enroll(client, "tb", sitting)
    assert response.status_code == 422 and error_code(response) == "not_one_person"
    assert "photo 3" in response.json()["error"]["message"]
    assert rows(client, Employee) == 1 and rows(client, Template) == 1, "nothing of the sitting is stored"
    assert "tb" not in client.app.state.runtime.service.index
    # a replace with a stranger among its photos leaves the employee's references as they were
    replaced = enroll(client, "cp", [photos.bytes("Colin_Powell", 2), photos.bytes("Laura_Bush", 1)], replace=True)
    assert replaced.status_code == 422 and error_code(replaced) == "not_one_person"
    assert references_of(client, "cp") == [0] and rows(client, Template) == 1
    assert audit_rows(client, "enroll")[-1] == ("tb", "not_one_person")


def test_a_bad_photo_among_several_refuses_the_sitting_with_its_own_code_and_names_it(make_client, photos):
    client = make_client()
    response = enroll(client, "tb", [photos.bytes("Tony_Blair", 1), blank_photo()])
    assert response.status_code == 422 and error_code(response) == "no_face"
    assert response.json()["error"]["message"] == "photo 2: no face was found in the photo"
    assert rows(client, Employee) == 0
    # one photo alone is not numbered; a burst's frame is
    assert enroll(client, "tb", blank_photo()).json()["error"]["message"] == "no face was found in the photo"
    assert enroll(client, "tb", photos.bytes("Tony_Blair", 1)).status_code == 201
    for response in (verify(client, "tb", [photos.bytes("Tony_Blair", 2), blank_photo()]),
                     identify(client, [blank_photo(), photos.bytes("Tony_Blair", 2)])):
        assert response.status_code == 422 and error_code(response) == "no_face"
        assert response.json()["error"]["message"].startswith(("frame 2: ", "frame 1: "))


def test_the_number_of_photos_and_their_total_size_are_limited(make_client, photos):
    client = make_client(max_references=2, max_frames=2, max_upload_bytes=200_000)
    three = [photos.bytes("Tony_Blair", i) for i in (1, 2, 3)]
    too_many = enroll(client, "tb", three)
    assert too_many.status_code == 422 and error_code(too_many) == "too_many_photos"
    assert rows(client, Employee) == 0
    assert enroll(client, "tb", three[:2]).status_code == 201
    for response in (verify(client, "tb", three), identify(client, three)):
        assert response.status_code == 422 and error_code(response) == "too_many_photos"
    # the body limit is for the whole request: photos that pass it one by one do not together
    big = [photos.bytes("Tony_Blair", 1) + b"\0" * 60_000 for _ in range(2)]
    assert sum(map(len, big)) > 100_000
    heavy = verify(client, "tb", big * 2)
    assert heavy.status_code == 413 and error_code(heavy) == "image_too_large"


def test_a_burst_is_fused_into_one_probe(make_client, photos):
    client = make_client(identify_candidates=True)
    service = client.app.state.runtime.service
    enroll(client, "tb", photos.bytes("Tony_Blair", 1))
    enroll(client, "cp", photos.bytes("Colin_Powell", 1))
    burst = [photos.bytes("Tony_Blair", 2), photos.bytes("Tony_Blair", 3)]
    probe = fuse(np.stack([service.probe(frame).vector for frame in burst]))
    body = verify(client, "tb", burst).json()
    assert body["match"]
    # two frames against one reference: decided as a template of two, the stricter kind
    assert body["threshold"] == pytest.approx(service.score_threshold_of(service.serving, 2))
    assert body["distance"] == pytest.approx(float(np.linalg.norm(service.index.template("tb").vector - probe)),
                                             abs=1e-4)
    found = identify(client, burst).json()
    assert found["match"]["employee_id"] == "tb"
    assert found["match"]["distance"] == pytest.approx(body["distance"], abs=1e-5)


def test_a_burst_with_a_stranger_s_frame_is_refused(make_client, photos):
    client = make_client()
    enroll(client, "tb", photos.bytes("Tony_Blair", 1))
    burst = [photos.bytes("Tony_Blair", 2), photos.bytes("Vladimir_Putin", 1)]
    for response in (verify(client, "tb", burst), identify(client, burst)):
        assert response.status_code == 422 and error_code(response) == "not_one_person"
        assert "frame 2" in response.json()["error"]["message"]
        assert "stored" not in response.json()["error"]["message"], "a burst stores nothing; an enrollment does"
    # a refused burst is no decision: it does not count as a failed verification
    assert client.app.state.runtime.service.attempts is not None
    assert all(verify(client, "tb", burst).status_code == 422 for _ in range(6))
    assert verify(client, "tb", photos.bytes("Tony_Blair", 2)).status_code == 200


def test_other_fields_still_may_not_repeat(client, photos):
    response = client.post("/verify", data={"employee_id": ["tb", "cp"]},
                           files={"image": ("a.jpg", photos.bytes("Tony_Blair", 1), "image/jpeg")})
    assert response.status_code == 422 and error_code(response) == "validation_error"
