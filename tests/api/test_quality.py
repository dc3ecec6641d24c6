"""Enrollment quality: a reference photo must be large, sharp, frontal and well exposed enough; verify and
identify only report it. Each check is exercised with a real photo degraded in that one way."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image, ImageFilter

from app.cli.bulk_enroll import Job, bulk_enroll
from app.core.config import Settings
from model.faces.config import Quality, QualityPolicy
from model.faces.quality import pose
from tests.client import enroll, error_code, identify, verify
from tests.photos import encode


def degraded(photos, person: str, how: str) -> bytes:  # noqa: ANN001
    image = photos.image(person, 1)
    if how == "blurred":
        image = image.filter(ImageFilter.GaussianBlur(3))
    elif how == "dark":
        image = Image.fromarray((np.asarray(image, dtype=np.float32) * 0.3).astype(np.uint8))
    elif how == "small":
        image = image.resize((140, 140), Image.Resampling.LANCZOS)
    elif how == "tilted":
        image = image.rotate(32, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(128, 128, 128))
    return encode(image)


def test_every_answer_reports_the_faces_quality(client, photos):
    body = enroll(client, "sw", photos.bytes("Serena_Williams", 1)).json()
    quality = body["quality"]
    assert set(quality) == {"face_size", "sharpness", "yaw", "roll", "brightness", "contrast"}
    assert quality["face_size"] == min(body["face"]["box"][2:]) and quality["sharpness"] > 20
    assert abs(quality["yaw"]) < 35 and abs(quality["roll"]) < 25 and 40 < quality["brightness"] < 220
    blurred = degraded(photos, "Serena_Williams", "blurred")
    assert verify(client, "sw", blurred).json()["quality"]["sharpness"] < quality["sharpness"] / 4
    assert "quality" in identify(client, photos.bytes("Serena_Williams", 2)).json()


@pytest.mark.parametrize(("how", "words"), [("blurred", "sharpness"), ("dark", "too dark"), ("small", "face size"),
                                            ("tilted", "tilted")])
def test_a_poor_reference_is_refused_with_the_reason_unless_forced(client, photos, how, words):
    photo = degraded(photos, "Serena_Williams", how)
    response = enroll(client, "sw", photo)
    assert response.status_code == 422 and error_code(response) == "poor_quality", response.text
    assert words in response.json()["error"]["message"]
    assert client.get("/employees/sw").status_code == 404  # nothing stored
    forced = client.post("/enroll", params={"force": "true"}, data={"employee_id": "sw"},
                         files={"image": ("a.jpg", photo, "image/jpeg")})
    assert forced.status_code == 201
    # verification never refuses on quality: it reports it
    assert verify(client, "sw", photo).status_code == 200


def test_the_gate_can_be_turned_off(make_client, photos):
    client = make_client(enroll_quality=False)
    assert enroll(client, "sw", degraded(photos, "Serena_Williams", "blurred")).status_code == 201


def test_a_refusal_for_quality_is_audited(client, photos):
    enroll(client, "sw", degraded(photos, "Serena_Williams", "blurred"))
    client.app.state.runtime.audit.flush()
    from sqlalchemy import select

    from app.gallery.models import AuditRecord

    with client.app.state.runtime.sessions() as session:
        decisions = [r.decision for r in session.scalars(select(AuditRecord))]
    assert decisions == ["poor_quality"]


def test_bulk_enrollment_applies_the_same_gate(sqlite_url, photos, tmp_path):
    blurred = tmp_path / "blurred.jpg"
    blurred.write_bytes(degraded(photos, "Serena_Williams", "blurred"))
    jobs = [Job("sw", None, blurred), Job("tb", None, photos.path("Tony_Blair", 1))]
    settings = Settings(database_url=sqlite_url)
    summary = bulk_enroll(jobs, settings, processes=1)
    assert summary.enrolled == 1 and [(f.employee_id, f.code) for f in summary.failures] == [("sw", "poor_quality")]
    assert bulk_enroll(jobs[:1], settings, processes=1, force=True).enrolled == 1


def test_pose_from_the_landmarks():
    # dlib's five points of a frontal face: two corners of each eye, then the base of the nose
    frontal = ((70.0, 50.0), (60.0, 50.0), (30.0, 50.0), (40.0, 50.0), (50.0, 75.0))
    assert pose(frontal) == pytest.approx((0.0, 0.0), abs=1e-6)
    turn = math.radians(30)
    tilted = tuple((50 + (x - 50) * math.cos(turn) - (y - 50) * math.sin(turn),
                    50 + (x - 50) * math.sin(turn) + (y - 50) * math.cos(turn)) for x, y in frontal)
    assert pose(tilted) == pytest.approx((0.0, 30.0), abs=1e-6)
    turned = frontal[:4] + ((60.0, 75.0),)  # the nose base a third of the way to one eye: a turned head
    yaw, roll = pose(turned)
    assert yaw > 15 and roll == pytest.approx(0.0)


def test_the_policy_says_what_falls_short_and_by_how_much():
    policy = QualityPolicy(min_face_size=80, min_sharpness=20, max_yaw=35, max_roll=25, min_brightness=40,
                           max_brightness=220)
    good = Quality(face_size=120, sharpness=90, yaw=-10, roll=3, brightness=120, contrast=50)
    assert policy.failures(good) == []
    bad = Quality(face_size=60, sharpness=5, yaw=-50, roll=40, brightness=240, contrast=10)
    assert policy.failures(bad) == [
        "face size 60 px is below 80", "sharpness 5 is below 20", "the head is turned 50 degrees; at most 35 are "
        "accepted", "the head is tilted 40 degrees; at most 25 are accepted", "brightness 240 is above 220 "
        "(overexposed)"]
    assert QualityPolicy().failures(bad) == []  # no thresholds, no checks


def test_quality_thresholds_out_of_range_are_refused_at_start_up():
    from pydantic import ValidationError

    for fields in ({"quality_max_yaw": 0}, {"quality_min_brightness": 300}, {"quality_min_sharpness": -1},
                   {"quality_min_brightness": 200, "quality_max_brightness": 100}):
        with pytest.raises(ValidationError):
            Settings(**fields)

