from tests.client import enroll, error_code, identify, verify


def test_list_employees_is_paginated_and_sorted(client, photos):
    for i, person in enumerate(["Tony_Blair", "Colin_Powell", "Laura_Bush"]):
        enroll(client, f"e-{i}", photos.bytes(person), name=person)
    page = client.get("/employees", params={"offset": 1, "limit": 1}).json()
    assert page["total"] == 3 and page["offset"] == 1 and page["limit"] == 1
    assert [e["employee_id"] for e in page["items"]] == ["e-1"]
    everyone = client.get("/employees").json()["items"]
    assert [e["employee_id"] for e in everyone] == ["e-0", "e-1", "e-2"]
    assert all(e["current_model"] and e["model_id"].startswith("sha256:") for e in everyone)


def test_list_employees_refuses_bad_paging(client):
    for params in ({"limit": 0}, {"limit": 501}, {"offset": -1}):
        response = client.get("/employees", params=params)
        assert response.status_code == 422 and error_code(response) == "validation_error"


def test_get_an_employee(client, photos):
    enroll(client, "e-1", photos.bytes("Tony_Blair"), name="Tony Blair")
    body = client.get("/employees/e-1").json()
    assert body["employee_id"] == "e-1" and body["name"] == "Tony Blair" and body["enrolled_at"]


def test_get_an_unknown_employee_returns_404(client):
    response = client.get("/employees/nobody")
    assert response.status_code == 404 and error_code(response) == "employee_not_found"


def test_delete_removes_the_employee_from_database_and_index_at_once(client, photos):
    enroll(client, "e-1", photos.bytes("Tony_Blair", 1))
    assert identify(client, photos.bytes("Tony_Blair", 2)).json()["candidates"][0]["employee_id"] == "e-1"
    response = client.delete("/employees/e-1")
    assert response.status_code == 204 and response.content == b""
    assert client.get("/employees/e-1").status_code == 404
    assert identify(client, photos.bytes("Tony_Blair", 2)).json()["candidates"] == []
    assert error_code(verify(client, "e-1", photos.bytes("Tony_Blair", 2))) == "employee_not_found"
    assert client.get("/readyz").json()["templates"] == 0


def test_delete_an_unknown_employee_returns_404(client):
    response = client.delete("/employees/nobody")
    assert response.status_code == 404 and error_code(response) == "employee_not_found"


def test_a_deleted_employee_can_enroll_again(client, photos):
    enroll(client, "e-1", photos.bytes("Tony_Blair", 1))
    client.delete("/employees/e-1")
    assert enroll(client, "e-1", photos.bytes("Tony_Blair", 1)).status_code == 201
