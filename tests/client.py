"""HTTP helpers for the API tests: the multipart requests outside tools send."""

from __future__ import annotations

from fastapi.testclient import TestClient

Photos = bytes | list[bytes]  # one photo, or several in one request (the "image" field repeated)


def images(photos: Photos) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("image", (f"photo-{i}.jpg", photo, "image/jpeg"))
            for i, photo in enumerate([photos] if isinstance(photos, bytes) else photos)]


def enroll(client: TestClient, employee_id: str, photo: Photos, name: str | None = None, replace: bool = False):
    data = {"employee_id": employee_id} | ({"name": name} if name else {})
    return client.post("/enroll", params={"replace": "true"} if replace else None, data=data, files=images(photo))


def verify(client: TestClient, employee_id: str, photo: Photos, headers: dict | None = None, **fields):
    return client.post("/verify", data={"employee_id": employee_id, **fields}, headers=headers, files=images(photo))


def identify(client: TestClient, photo: Photos, **fields):
    return client.post("/identify", data=fields, files=images(photo))


def error_code(response) -> str:
    return response.json()["error"]["code"]


def add_reference(client: TestClient, employee_id: str, photo: bytes, **params):
    return client.post(f"/employees/{employee_id}/references", params=params or None,
                       files={"image": ("photo.jpg", photo, "image/jpeg")})


def references_of(client: TestClient, employee_id: str) -> list[int]:
    return [r["reference"] for r in client.get(f"/employees/{employee_id}").json()["references"]]
