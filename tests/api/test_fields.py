"""Text fields, identifiers and paging as a hostile client sends them: refused with 422, nothing stored."""

from __future__ import annotations

import pytest

from tests.client import enroll, error_code, verify
from tests.gallery_rows import employees


@pytest.mark.parametrize("name", ["Ada\0Lovelace", "line\nbreak", "x" * 201, ""])
def test_a_name_with_control_characters_or_out_of_length_is_refused(client, photos, name):
    """A NUL byte in `name` once gave a 500 on PostgreSQL and reset the connection."""
    response = enroll(client, "e-1", photos.bytes("Tony_Blair"), name=name or None)
    if not name:  # an empty field is simply absent
        assert response.status_code == 201
        return
    assert (response.status_code, error_code(response)) == (422, "validation_error")
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
