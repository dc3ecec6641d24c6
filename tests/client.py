"""HTTP helpers for the API tests: the multipart requests outside tools send."""

from __future__ import annotations

from fastapi.testclient import TestClient


def enroll(client: TestClient, employee_id: str, photo: bytes, name: str | None = None, replace: bool = False):
    data = {"employee_id": employee_id} | ({"name": name} if name else {})
    return client.post("/enroll", params={"replace": "true"} if replace else None, data=data,
                       files={"image": ("photo.jpg", photo, "image/jpeg")})


def verify(client: TestClient, employee_id: str, photo: bytes, headers: dict | None = None, **fields):
    return client.post("/verify", data={"employee_id": employee_id, **fields}, headers=headers,
                       files={"image": ("photo.jpg", photo, "image/jpeg")})


def identify(client: TestClient, photo: bytes, **fields):
    return client.post("/identify", data=fields, files={"image": ("photo.jpg", photo, "image/jpeg")})


def error_code(response) -> str:
    return response.json()["error"]["code"]


def add_reference(client: TestClient, employee_id: str, photo: bytes, **params):
    return client.post(f"/employees/{employee_id}/references", params=params or None,
                       files={"image": ("photo.jpg", photo, "image/jpeg")})


def references_of(client: TestClient, employee_id: str) -> list[int]:
    return [r["reference"] for r in client.get(f"/employees/{employee_id}").json()["references"]]
