"""docs/api.md's error table lists every code the service can answer, with its status, and nothing else."""

from __future__ import annotations

import re

from app.api.errors import FACE_ERROR_STATUS, HTTP_CODES
from app.core.errors import DomainError
from model.faces.errors import FaceError
from tests.conftest import REPO

# Answered by app.api.errors' handlers rather than by an error class.
HANDLED = {"validation_error": 422, "http_error": 400, "internal_error": 500}


def subclasses(cls: type) -> list[type]:
    return [sub for direct in cls.__subclasses__() for sub in (direct, *subclasses(direct))]


def answerable() -> dict[str, int]:
    codes = {c.code: c.status for c in subclasses(DomainError)}
    codes |= {c.code: FACE_ERROR_STATUS[c] for c in subclasses(FaceError)}
    codes |= {code: status for status, code in HTTP_CODES.items()}
    return codes | HANDLED


def test_the_error_table_is_the_services():
    text = (REPO / "docs" / "api.md").read_text()
    table = text[text.index("## Errors"):]
    rows = dict(re.findall(r"^\| `(\w+)` \| (\d{3}) \|", table, flags=re.M))
    assert {code: int(status) for code, status in rows.items()} == answerable()
