"""What the console needs from the API, as plain API: GET /me, POST /enroll/check, GET /employees?q=, and the
console's own files and headers. The console in a browser: tests/browser/test_console.py."""

from __future__ import annotations

import re

from PIL import ImageFilter

from app.services.keys import create_key
from tests.client import enroll, error_code
from tests.photos import blank_photo, encode


def check(client, photo: bytes, headers: dict | None = None):
    return client.post("/enroll/check", files={"image": ("p.jpg", photo, "image/jpeg")}, headers=headers)


def test_enroll_check_says_what_enrollment_would_and_stores_nothing(client, photos):
    good = check(client, photos.bytes("Tony_Blair", 1))
    assert good.status_code == 200, good.text
    body = good.json()
    assert body["passes"] is True and len(body["face"]["box"]) == 4
    assert [c["check"] for c in body["checks"]] == ["face_size", "sharpness", "yaw", "roll", "brightness",
                                                     "brightness"]
    assert all(c["passed"] for c in body["checks"])
    face_size = body["checks"][0]
    assert (face_size["bound"], face_size["limit"]) == ("min", 80)
    assert face_size["value"] == body["quality"]["face_size"]
    assert face_size["text"] == f"face size {body['quality']['face_size']} px (at least 80)"

    blurred = encode(photos.image("Tony_Blair", 1).filter(ImageFilter.GaussianBlur(6)))
    body = check(client, blurred).json()
    assert body["passes"] is False
    [failed] = [c for c in body["checks"] if not c["passed"]]
    assert failed["check"] == "sharpness" and failed["text"].endswith("is below 20")
    # the same words as /enroll's refusal
    refused = enroll(client, "tb", blurred)
    assert error_code(refused) == "poor_quality" and failed["text"] in refused.json()["error"]["message"]

    for photo, status, code in ((blank_photo(), 422, "no_face"), (b"GIF89a", 422, "invalid_image"),
                                (photos.side_by_side(("Tony_Blair", 1), ("Colin_Powell", 1)), 422, "multiple_faces")):
        response = check(client, photo)
        assert (response.status_code, error_code(response)) == (status, code)
    assert client.get("/employees").json()["total"] == 0


def test_enroll_check_without_quality_checks_passes_any_face(make_client, photos):
    client = make_client(enroll_quality=False)
    blurred = encode(photos.image("Tony_Blair", 1).filter(ImageFilter.GaussianBlur(6)))
    body = check(client, blurred).json()
    assert body["passes"] is True and body["checks"] == []


def test_me_names_the_key_and_its_scope(make_client):
    client = make_client(auth=True, key_cache_seconds=0)
    with client.app.state.runtime.sessions() as session:
        keys = {scope: create_key(session, scope, "tests") for scope in ("admin", "verify", "metrics")}
        for scope, (key, row) in keys.items():
            assert client.get("/me", headers={"X-API-Key": key}).json() == {"auth": True, "key_id": row.key_id,
                                                                              "scope": scope}
    refused = client.get("/me")
    assert refused.status_code == 401 and error_code(refused) == "unauthorized"
    assert client.get("/me", headers={"X-API-Key": "fg_000000000000_" + "A" * 43}).status_code == 401


def test_me_without_keys_is_an_admin(client):
    assert client.get("/me").json() == {"auth": False, "key_id": None, "scope": "admin"}


def test_employees_are_searched_by_id_or_name_in_any_case_and_wildcards_are_literal(client, photos):
    for employee_id, name, person in (("tb", "Tony Blair", "Tony_Blair"), ("cp", "Colin Powell", "Colin_Powell"),
                                      ("x_1", None, "Serena_Williams"), ("x-2", "100% Sure", "Hugo_Chavez"),
                                      ("e-3", "Élodie Ümit", "Laura_Bush")):
        assert enroll(client, employee_id, photos.bytes(person, 1), name=name).status_code == 201

    def found(q: str) -> list[str]:
        page = client.get("/employees", params={"q": q}).json()
        assert page["total"] == len(page["items"])
        return [e["employee_id"] for e in page["items"]]

    assert found("blair") == ["tb"] and found("TB") == ["tb"] and found("o") == ["cp", "e-3", "tb"]
    # Case folds beyond ASCII on both databases (SQLite's own lower() does not).
    assert found("Élodie") == found("élodie") == found("ÉLODIE") == found("ümit") == ["e-3"]
    assert found("_") == ["x_1"]  # not LIKE's any-one-character
    assert found("%") == ["x-2"]  # not LIKE's anything
    assert found("\\") == [] and found("nobody") == []
    assert len(found("x")) == 2
    for bad in ("a\0b", "x" * 201):
        response = client.get("/employees", params={"q": bad})
        assert response.status_code == 422 and error_code(response) == "validation_error"


def test_the_console_is_served_with_a_strict_policy_and_no_inline_code(client):
    page = client.get("/console")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self';" in policy and "connect-src 'self'" in policy and "unsafe" not in policy
    assert page.headers["x-frame-options"] == "DENY" and page.headers["x-content-type-options"] == "nosniff"
    html = page.text
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "an inline script: the policy would block it"
    assert not re.search(r"\bon[a-z]+=", html) and "style=" not in html
    assert not re.search(r"(?:src|href)=\"(?:https?:)?//", html), "the console loads nothing from elsewhere"
    for asset, kind in (("console.js", "javascript"), ("console.css", "text/css")):
        response = client.get(f"/console/assets/{asset}")
        assert response.status_code == 200 and kind in response.headers["content-type"]
        addresses = set(re.findall(r"https?://[^\s\"')]+", response.text)) - {"http://www.w3.org/2000/svg"}
        assert not addresses, f"{asset} names other hosts: {addresses}"  # SVG's namespace is only a name
    for escape in ("/console/assets/../../main.py", "/console/assets/%2e%2e/index.html", "/console/assets/nope.js"):
        assert client.get(escape).status_code == 404


def test_docs_pages_may_load_only_the_app_s_own_files(client):
    for path in ("/docs", "/redoc"):
        policy = client.get(path).headers["content-security-policy"]
        assert "default-src 'self'" in policy and "img-src 'self' data:" in policy


def test_new_photo_and_query_inputs_refuse_too_big_and_repeated(make_client, photos):
    """The same gate as /enroll's for the paths added with the console and references: a photo over the limit
    (413, in the body or past the multipart allowance), and a parameter given twice (422, never "last wins")."""
    client = make_client(max_upload_bytes=20_000)
    assert enroll(client, "tb", photos.bytes("Tony_Blair", 1)).status_code == 201  # LFW photos fit
    for size in (20_001, 200_000):
        blob = {"image": ("p.jpg", b"\xff" * size, "image/jpeg")}
        for response in (client.post("/enroll/check", files=blob), client.post("/employees/tb/references", files=blob)):
            assert (response.status_code, error_code(response)) == (413, "image_too_large"), size
    photo = {"image": ("p.jpg", photos.bytes("Tony_Blair", 2), "image/jpeg")}
    repeated = [client.post("/employees/tb/references?force=true&force=false", files=photo),
                client.get("/employees?q=a&q=b")]
    for response in repeated:
        assert (response.status_code, error_code(response)) == (422, "validation_error"), response.text
    assert client.get("/employees/tb").json()["references"][0]["reference"] == 0
    assert len(client.get("/employees/tb").json()["references"]) == 1
