"""Bad input gets a clear 4xx with a stable code, never a 500, and never changes what is stored."""

import io

import pytest
from PIL import Image

from tests.client import enroll, error_code, identify, verify
from tests.photos import blank_photo, encode


@pytest.fixture
def enrolled(client, photos):
    assert enroll(client, "tb", photos.bytes("Tony_Blair", 1)).status_code == 201
    client.reference_distance = verify(client, "tb", photos.bytes("Tony_Blair", 2)).json()["distance"]
    return client


def assert_gallery_unchanged(client, photos):
    """Still one employee, and the same reference: the probe's distance to it has not moved."""
    assert client.get("/employees").json()["total"] == 1
    distance = verify(client, "tb", photos.bytes("Tony_Blair", 2)).json()["distance"]
    assert distance == pytest.approx(client.reference_distance, abs=1e-6)


@pytest.mark.parametrize("payload,code,status", [
    (b"", "invalid_image", 422),
    (b"plain text, not an image", "invalid_image", 422),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "invalid_image", 422),
])
def test_unreadable_uploads(enrolled, photos, payload, code, status):
    for response in (enroll(enrolled, "new", payload), verify(enrolled, "tb", payload), identify(enrolled, payload)):
        assert response.status_code == status and error_code(response) == code
    assert_gallery_unchanged(enrolled, photos)


def test_a_truncated_jpeg_is_invalid(enrolled, photos):
    data = photos.bytes("Colin_Powell")
    response = enroll(enrolled, "new", data[: len(data) // 2])
    assert response.status_code == 422 and error_code(response) == "invalid_image"
    assert_gallery_unchanged(enrolled, photos)


def test_a_photo_without_a_face(enrolled, photos):
    for response in (enroll(enrolled, "new", blank_photo()), verify(enrolled, "tb", blank_photo()),
                     identify(enrolled, blank_photo())):
        assert response.status_code == 422 and error_code(response) == "no_face"
    assert_gallery_unchanged(enrolled, photos)


def test_two_faces_of_similar_size_are_refused(enrolled, photos):
    both = photos.side_by_side(("Colin_Powell", 1), ("Laura_Bush", 1))
    for response in (enroll(enrolled, "new", both), verify(enrolled, "tb", both), identify(enrolled, both)):
        assert response.status_code == 422 and error_code(response) == "multiple_faces"
    assert_gallery_unchanged(enrolled, photos)


def test_a_clearly_dominant_face_is_used_under_the_dominant_policy(enrolled, photos):
    photo = photos.side_by_side(("Tony_Blair", 2), ("Laura_Bush", 1), right_scale=0.6)
    response = verify(enrolled, "tb", photo)
    assert response.status_code == 200
    # The large face on the left was compared, not the small one on the right.
    x, _, width, _ = response.json()["face"]["box"]
    assert x + width <= 250
    assert response.json()["distance"] == pytest.approx(enrolled.reference_distance, abs=0.05)


def test_the_reject_policy_refuses_any_second_face(make_client, photos):
    client = make_client(multi_face_policy="reject")
    photo = photos.side_by_side(("Tony_Blair", 2), ("Laura_Bush", 1), right_scale=0.6)
    response = enroll(client, "tb", photo)
    assert response.status_code == 422 and error_code(response) == "multiple_faces"


def test_a_face_below_the_minimum_size(make_client, photos):
    client = make_client(min_face_size=150)
    response = enroll(client, "tb", photos.bytes("Tony_Blair"))
    assert response.status_code == 422 and error_code(response) == "face_too_small"
    assert client.get("/employees").json()["total"] == 0


def test_too_many_bytes(make_client, photos):
    client = make_client(max_upload_bytes=5_000)
    response = enroll(client, "tb", photos.bytes("Tony_Blair"))  # ~15 kB
    assert response.status_code == 413 and error_code(response) == "image_too_large"
    huge = b"\xff" * 200_000  # refused from its Content-Length, before it is parsed
    response = enroll(client, "tb", huge)
    assert response.status_code == 413 and error_code(response) == "image_too_large"
    assert client.get("/employees").json()["total"] == 0


def test_a_decompression_bomb_is_refused_before_decoding(enrolled, photos):
    bomb = encode(Image.new("L", (12_000, 12_000)), "PNG")  # 144 Mpx in ~140 kB
    assert len(bomb) < 1_000_000
    response = identify(enrolled, bomb)
    assert response.status_code == 413 and error_code(response) == "image_too_large"
    assert_gallery_unchanged(enrolled, photos)


@pytest.mark.parametrize("size", [(1, 1), (2, 2), (1, 20_000), (20_000, 3), (30, 30), (60, 20_000)])
def test_tiny_and_degenerate_photos_have_no_face(enrolled, photos, size):
    response = identify(enrolled, encode(Image.new("RGB", size), "PNG"))
    assert response.status_code == 422 and error_code(response) == "no_face"


def test_random_bytes_never_cause_a_server_error(client):
    import random

    rng = random.Random(0)
    for length in (1, 7, 100, 3_000):
        for prefix in (b"", b"\xff\xd8\xff\xe0", b"\x89PNG\r\n\x1a\n", b"RIFF\x00\x00\x00\x00WEBPVP8 "):
            payload = prefix + bytes(rng.getrandbits(8) for _ in range(length))
            response = identify(client, payload)
            assert 400 <= response.status_code < 500, (prefix, length, response.text)


def test_missing_fields_are_validation_errors(client, photos):
    assert error_code(client.post("/enroll", data={"employee_id": "x"})) == "validation_error"
    response = client.post("/verify", files={"image": ("a.jpg", photos.bytes("Tony_Blair"), "image/jpeg")})
    assert response.status_code == 422 and error_code(response) == "validation_error"


@pytest.mark.parametrize("variant", ["grayscale", "cmyk", "rgba_png", "palette_png", "webp", "exif_rotated",
                                     "bmp", "tiff"])
def test_odd_but_valid_photos_work(enrolled, photos, variant):
    image = photos.image("Tony_Blair", 2)
    data = {
        "grayscale": lambda: encode(image.convert("L")),
        "cmyk": lambda: encode(image.convert("CMYK")),
        "rgba_png": lambda: encode(image.convert("RGBA"), "PNG"),
        "palette_png": lambda: encode(image.convert("P"), "PNG"),
        "webp": lambda: encode(image, "WEBP", quality=90),
        "exif_rotated": lambda: photos.rotated_with_exif("Tony_Blair", 2),
        "bmp": lambda: encode(image, "BMP"),
        "tiff": lambda: encode(image, "TIFF"),
    }[variant]()
    body = verify(enrolled, "tb", data).json()
    # The same face, whatever the container: the distance to the reference barely moves (JPEG, WebP and
    # the grayscale conversion change a few pixel values; nothing else may).
    assert body["distance"] == pytest.approx(enrolled.reference_distance, abs=0.08), body


def test_an_unrotated_photo_on_its_side_would_fail_so_exif_matters(photos):
    """Guards the EXIF test above: without the orientation tag the face lies sideways and is not found."""
    from model.faces.decode import decode_image
    from model.faces.pipeline import FacePipeline

    sideways = photos.image("Tony_Blair", 2).transpose(Image.Transpose.ROTATE_90)
    buffer = io.BytesIO()
    sideways.save(buffer, "JPEG")
    assert FacePipeline().detect(decode_image(buffer.getvalue(), max_pixels=10**7)) == []
