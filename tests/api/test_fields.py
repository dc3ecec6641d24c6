"""Text fields, identifiers and paging as a hostile client sends them: refused with 422, nothing stored."""

from __future__ import annotations

import pytest

from tests.client import enroll, error_code, identify, images, verify
from tests.gallery_rows import employees


@pytest.mark.parametrize("name", ["Ada\0Lovelace", "line\nbreak", "next\u0085line", "Ada\u202eevol", "para\u2029",
                                  "x" * 201, ""])
def test_a_name_with_control_characters_or_out_of_length_is_refused(client, photos, name):
    """A NUL byte in `name` once gave a 500 on PostgreSQL and reset the connection. U+0085 is a C1 control (a
    line break), and U+202E would show "Ada\u202eevol" as "Adalove"."""
    response = enroll(client, "e-1", photos.bytes("Tony_Blair"), name=name or None)
    if not name:  # an empty field is simply absent
        assert response.status_code == 201
        return
    assert (response.status_code, error_code(response)) == (422, "validation_error")
    assert response.json()["error"]["message"] == ("name: must be 1-200 characters, with no control characters, "
                                                   "direction marks or line separators"), "the rule, not its regex"
    assert employees(client) == []


@pytest.mark.parametrize("offset", ["9223372036854775808", "1000000001", "-1"])
def test_paging_beyond_the_bounds_is_refused(client, offset):
    """offset=2**63 once gave a 500 on both databases."""
    response = client.get("/employees", params={"offset": offset})
    assert (response.status_code, error_code(response)) == (422, "validation_error")
    assert client.get("/employees", params={"offset": "1000000000"}).status_code == 200


@pytest.mark.parametrize("employee_id", [".", "..", "-a", "_a", "@a", "a" * 65, "a/b", "a b", "é"])
def test_an_id_must_start_with_a_letter_or_digit_and_stay_reachable(client, photos, employee_id):
    response = enroll(client, employee_id, photos.bytes("Tony_Blair"))
    assert (response.status_code, error_code(response)) == (422, "validation_error")
    assert response.json()["error"]["message"] == "employee_id: must be 1-64 of A-Z a-z 0-9 . _ @ -, starting with " \
                                                  "a letter or digit"


def test_ids_that_differ_only_in_case_are_one_employee(client, photos):
    assert enroll(client, "E-1042", photos.bytes("Tony_Blair", 1)).status_code == 201
    for replace in (False, True):
        response = enroll(client, "e-1042", photos.bytes("Colin_Powell", 1), replace=replace)
        assert (response.status_code, error_code(response)) == (409, "employee_exists")
    assert employees(client) == [("E-1042", None)]
    assert verify(client, "E-1042", photos.bytes("Tony_Blair", 2)).json()["match"] is True


def test_a_field_given_twice_is_refused_not_the_last_one_taken(client, photos):
    response = client.post("/enroll", data={"employee_id": ["e-1", "e-2"]},
                           files={"image": ("a.jpg", photos.bytes("Tony_Blair"), "image/jpeg")})
    assert (response.status_code, error_code(response)) == (422, "validation_error")
    assert "employee_id" in response.json()["error"]["message"]
    response = client.post("/enroll?replace=false&replace=true", data={"employee_id": "e-1"},
                           files={"image": ("a.jpg", photos.bytes("Tony_Blair"), "image/jpeg")})
    assert (response.status_code, error_code(response)) == (422, "validation_error")
    assert employees(client) == []
    response = client.get("/employees?offset=0&offset=5")
    assert (response.status_code, error_code(response)) == (422, "validation_error")


def test_a_field_the_endpoint_does_not_take_or_takes_elsewhere_is_refused_not_ignored(client, photos):
    """FastAPI ignores what a route does not read: `?group=` at /identify (a form field there, a query parameter
    at /employees) searched the whole gallery, `?threshold=` at /verify decided at the calibrated threshold
    instead of the stricter one asked, and a misspelt field vanished."""
    assert enroll(client, "e-1", photos.bytes("Tony_Blair", 1)).status_code == 201
    assert client.post("/groups", data={"group_id": "lab-3"}).status_code == 201
    probe = images(photos.bytes("Tony_Blair", 2))
    refused = {
        "query.group: send it as a form field": client.post("/identify?group=lab-3", files=probe),
        "query.threshold: send it as a form field": client.post("/verify?threshold=0.1",
                                                                data={"employee_id": "e-1"}, files=probe),
        "replace: send it in the query string": client.post("/enroll", data={"employee_id": "e-1", "replace": "true"},
                                                            files=images(photos.bytes("Colin_Powell", 1))),
        "nmae: not a field": client.post("/enroll", data={"employee_id": "e-2", "nmae": "Ada"}, files=probe),
        "query.grup: not a field": client.get("/employees?grup=lab-3"),
        "query.prompts: not a field": client.post("/liveness/challenge?prompts=left"),
    }
    for message, response in refused.items():
        assert (response.status_code, error_code(response)) == (422, "validation_error"), message
        assert message in response.json()["error"]["message"]
    assert employees(client) == [("e-1", None)]
    assert verify(client, "e-1", photos.bytes("Tony_Blair", 2)).json()["match"] is True
    # the same fields where the endpoint reads them are taken
    assert identify(client, photos.bytes("Tony_Blair", 2), group="lab-3").json()["match"] is None  # no members
    assert client.get("/employees?group=lab-3").json()["items"] == []
