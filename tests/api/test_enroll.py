from datetime import datetime

import pytest

from tests.client import enroll, error_code, verify


def test_enroll_returns_201_with_the_face_and_model(client, photos):
    response = enroll(client, "e-1", photos.bytes("Tony_Blair"), name="Tony Blair")
    assert response.status_code == 201
    body = response.json()
    assert body["employee_id"] == "e-1" and body["name"] == "Tony Blair"
    assert body["model_id"].startswith("sha256:")
    x, y, w, h = body["face"]["box"]
    assert 0 <= x < 250 and 0 <= y < 250 and 60 < w < 200 and 60 < h < 200
    assert datetime.fromisoformat(body["enrolled_at"]).tzinfo is not None
    assert "vector" not in body and "embedding" not in body


def test_enroll_an_existing_employee_returns_409_and_keeps_the_reference(client, photos):
    enroll(client, "e-1", photos.bytes("Tony_Blair", 1))
    before = verify(client, "e-1", photos.bytes("Tony_Blair", 2)).json()["distance"]
    response = enroll(client, "e-1", photos.bytes("Colin_Powell", 1))
    assert response.status_code == 409 and error_code(response) == "employee_exists"
    assert verify(client, "e-1", photos.bytes("Tony_Blair", 2)).json()["distance"] == before


def test_enroll_with_replace_swaps_the_reference(client, photos):
    enroll(client, "e-1", photos.bytes("Tony_Blair", 1), name="Tony")
    response = enroll(client, "e-1", photos.bytes("Colin_Powell", 1), replace=True)
    assert response.status_code == 201 and response.json()["name"] == "Tony"
    # The reference is now Colin Powell's photo itself: the same photo is at distance 0.
    assert verify(client, "e-1", photos.bytes("Colin_Powell", 1)).json()["distance"] == pytest.approx(0, abs=1e-5)
    assert verify(client, "e-1", photos.bytes("Tony_Blair", 1)).json()["distance"] > 0.1
    assert client.get("/employees").json()["total"] == 1


def test_replace_with_a_bad_photo_keeps_the_old_reference(client, photos):
    first = enroll(client, "e-1", photos.bytes("Tony_Blair", 1)).json()
    before = verify(client, "e-1", photos.bytes("Tony_Blair", 2)).json()["distance"]
    response = enroll(client, "e-1", b"not a photo", replace=True)
    assert response.status_code == 422 and error_code(response) == "invalid_image"
    assert client.get("/employees/e-1").json()["enrolled_at"] == first["enrolled_at"]
    assert verify(client, "e-1", photos.bytes("Tony_Blair", 2)).json()["distance"] == before


def test_enroll_rejects_a_malformed_employee_id(client, photos):
    for bad in ("", "has space", "x" * 65, "semi;colon"):
        response = enroll(client, bad, photos.bytes("Tony_Blair"))
        assert response.status_code == 422 and error_code(response) == "validation_error", bad
    assert client.get("/employees").json()["total"] == 0


def test_enroll_accepts_every_allowed_character(client, photos):
    assert enroll(client, "a.B_9@x-y", photos.bytes("Tony_Blair")).status_code == 201
    assert client.get("/employees/a.B_9@x-y").status_code == 200
