"""Text fields, identifiers and paging as a hostile client sends them: refused with 422, nothing stored."""

from __future__ import annotations

import pytest

from tests.client import enroll, error_code, identify, images, verify
from tests.gallery_rows import audit_rows, employees


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


def test_a_file_where_text_is_taken_or_text_where_a_file_is_is_refused_in_words(client, photos):
    """FastAPI's own words were "image.0: Value error, Expected UploadFile, received: <class 'str'>"."""
    photo = ("a.jpg", photos.bytes("Tony_Blair", 1), "image/jpeg")
    response = client.post("/enroll", data={"employee_id": "e-1", "image": "a.jpg"})
    assert (response.status_code, error_code(response)) == (422, "validation_error")
    assert response.json()["error"]["message"] == ("image.0: must be a file (a form part with a filename), "
                                                   "not a text field")
    response = client.post("/enroll", files=[("employee_id", ("id.txt", b"e-1", "text/plain")), ("image", photo)])
    assert (response.status_code, error_code(response)) == (422, "validation_error")
    assert response.json()["error"]["message"] == "employee_id: must be a text field, not a file"
    assert employees(client) == []


def test_a_body_the_endpoint_would_not_read_is_refused_and_changes_nothing(client, photos):
    """FastAPI reads form fields only from a form's media types and JSON only from JSON's, and takes any other
    body as no fields at all: PATCH /groups/lab-3 with `{"name": "Lab three"}` as JSON answered 200 and erased
    the group's name, and a JSON body to DELETE or GET was ignored whatever it said."""
    assert enroll(client, "e-1", photos.bytes("Tony_Blair", 1)).status_code == 201
    assert client.post("/groups", data={"group_id": "lab-3", "name": "Lab 3"}).status_code == 201
    form = "this endpoint takes form fields (multipart/form-data or application/x-www-form-urlencoded), not "
    nobody = "this endpoint takes no body; application/json was sent"
    refused = [
        (form + "application/json", client.patch("/groups/lab-3", json={"name": "Lab three"})),
        (form + "text/plain", client.patch("/groups/lab-3", content=b"name=Lab three",
                                           headers={"Content-Type": "text/plain"})),
        (form + "a body with no Content-Type", client.patch("/groups/lab-3", content=b"name=Lab three")),
        (form + "application/json", client.post("/enroll", json={"employee_id": "e-2"})),
        ("this endpoint takes a JSON body (application/json), not application/x-www-form-urlencoded",
         client.post("/groups/lab-3/members", data={"employee_ids": "e-1"})),
        (nobody, client.request("DELETE", "/employees/e-1", json={"confirm": True})),
        (nobody, client.request("GET", "/employees", json={"group": "lab-3"})),
    ]
    for message, response in refused:
        assert (response.status_code, error_code(response)) == (415, "unsupported_media_type"), message
        assert response.json()["error"]["message"] == message
    # a JSON body's keys are held to its fields as a form's are: unknown, or given twice ("the last one wins")
    for body, message in ((b'{"employee_ids": ["e-1"], "force": true}', "force: not a field of this endpoint"),
                          (b'{"employee_ids": ["x"], "employee_ids": ["e-1"]}', "employee_ids: given more than once")):
        response = client.post("/groups/lab-3/members", content=body, headers={"Content-Type": "application/json"})
        assert (response.status_code, error_code(response)) == (422, "validation_error")
        assert response.json()["error"]["message"] == message
    group = client.get("/groups/lab-3").json()
    assert (group["name"], group["members"]) == ("Lab 3", 0)
    assert employees(client) == [("e-1", None)]
    assert [row.decision for row in audit_rows(client)].count("unsupported_media_type") == len(refused)
    # what each endpoint reads, it takes: JSON in a vendor type (application/*+json) too
    assert client.post("/groups/lab-3/members", content=b'{"employee_ids": ["e-1"]}',
                       headers={"Content-Type": "application/vnd.facegate+json; charset=utf-8"}).json()["added"] == 1
    assert client.patch("/groups/lab-3", data={"name": "Lab three"}).json()["name"] == "Lab three"
    assert client.request("DELETE", "/employees/e-1", headers={"Content-Type": "application/json"}).status_code == 204
    # and the OpenAPI document says so, for the JSON body as for the forms (schemathesis holds the service to it)
    document = client.get("/openapi.json").json()
    for path, method, media in (("/groups/{group_id}/members", "post", "application/json"),
                                ("/groups/{group_id}", "patch", "application/x-www-form-urlencoded")):
        ref = document["paths"][path][method]["requestBody"]["content"][media]["schema"]["$ref"]
        assert document["components"]["schemas"][ref.rpartition("/")[2]]["additionalProperties"] is False, path


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
