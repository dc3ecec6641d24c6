"""The one place that turns errors into HTTP responses: domain errors (app.core.errors), the photo's errors
(model.faces.errors), validation and routing errors, and a database that is away.

Every error body is {"error": {"code": "...", "message": "..."}}; the codes are stable API.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as DBAPITimeout
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.core.errors import DatabaseConflict, DomainError, NotReady
from app.core.identifiers import PATTERN_SHAPES
from app.services.conflicts import is_conflict
from model.faces.errors import FaceError, FaceTooSmall, ImageTooLarge, InvalidImage, MultipleFaces, NoFaceDetected

log = logging.getLogger(__name__)


# The photo's errors come from model/ (which knows nothing of HTTP); their statuses are set here.
FACE_ERROR_STATUS: dict[type[FaceError], int] = {
    ImageTooLarge: 413, InvalidImage: 422, NoFaceDetected: 422, MultipleFaces: 422, FaceTooSmall: 422,
}


def status_of(exc: DomainError | FaceError) -> int:
    return exc.status if isinstance(exc, DomainError) else FACE_ERROR_STATUS.get(type(exc), 422)


def problem(error: dict) -> str:
    """One validation error, for people: where, and what was wrong (an id's or a name's rule in words, not its
    regular expression)."""
    where = ".".join(str(p) for p in error["loc"] if p != "body")
    message = error["msg"]
    if error.get("type") == "string_pattern_mismatch" and (shape := PATTERN_SHAPES.get(error["ctx"]["pattern"])):
        message = f"must be {shape}"
    elif error.get("type") == "string_type" and isinstance(error.get("input"), UploadFile):
        message = "must be a text field, not a file"
    elif error.get("type") == "value_error" and isinstance(error.get("input"), str) and "UploadFile" in message:
        message = "must be a file (a form part with a filename), not a text field"  # FastAPI: "Expected UploadFile"
    return f"{where}: {message}"[:300]


def error_body(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def error_response(exc: DomainError | FaceError) -> JSONResponse:
    retry_after = getattr(exc, "retry_after", None)
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return JSONResponse(error_body(exc.code, exc.message), status_code=status_of(exc), headers=headers)


# The database errors a retry may cure: the server away, a connection lost, no connection free in the pool.
DATABASE_AWAY = (OperationalError, DBAPITimeout)


def database_down(exc: SQLAlchemyError) -> JSONResponse:
    """A database error that a retry may cure (the server away, a connection lost): 503 with Retry-After; a
    deadlock or a serialisation failure that no retry cured (app.services.conflicts) has its own code."""
    if is_conflict(exc):
        log.error("database conflict: %s", exc.orig.__class__.__name__)
        return error_response(DatabaseConflict("the write met another one (a deadlock); try again"))
    log.error("database unavailable: %s", getattr(exc, "orig", None) or exc.__class__.__name__)
    return error_response(NotReady("the database is unavailable; try again"))


HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


def allowed_methods(request: Request) -> list[str]:
    """Every method that the app's OpenAPI document gives this request's path (its routes, however they were
    included), read once per app."""
    table = getattr(request.app.state, "methods_by_path", None)
    if table is None:
        table = request.app.state.methods_by_path = [
            (re.compile("^" + re.sub(r"\\\{[^}/]+\\\}", "[^/]+", re.escape(path)) + "$"),
             {method.upper() for method in operations if method in HTTP_METHODS}
             | ({"HEAD"} if "get" in operations else set()))  # app.api.head.HeadAsGet
            for path, operations in request.app.openapi()["paths"].items()]
    return sorted({method for pattern, methods in table if pattern.match(request.url.path) for method in methods})


def install_error_handlers(app: FastAPI, audit_refusal: Callable[[Request, str], None]) -> None:
    """`audit_refusal(request, code)` audits a request refused before its route ran (a validation error)."""

    @app.exception_handler(DomainError)
    @app.exception_handler(FaceError)
    async def _refused(_: Request, exc: DomainError | FaceError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(problem(e) for e in exc.errors())
        audit_refusal(request, "validation_error")
        return JSONResponse(error_body("validation_error", problems or "invalid request"), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "http_error")
        if exc.status_code == 413:  # a streamed body cut off at the limit (app.api.guard), audited there
            code = ImageTooLarge.code
        headers = exc.headers
        if exc.status_code == 405 and (methods := allowed_methods(request)):
            # RFC 9110: Allow lists every method of the path, not only those of the first route that matched it
            headers = {**(headers or {}), "Allow": ", ".join(methods)}
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code, headers=headers)

    async def _database_down(_: Request, exc: SQLAlchemyError) -> JSONResponse:
        return database_down(exc)

    for away in DATABASE_AWAY:
        app.add_exception_handler(away, _database_down)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return JSONResponse(error_body("internal_error", "internal server error"), status_code=500)
