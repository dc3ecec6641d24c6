"""Domain errors, and the one place that turns them into HTTP responses.

Every error body is {"error": {"code": "...", "message": "..."}}; the codes are stable API.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from model.faces.errors import FaceError, FaceTooSmall, ImageTooLarge, InvalidImage, MultipleFaces, NoFaceDetected

log = logging.getLogger(__name__)


class DomainError(Exception):
    code = "error"
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class EmployeeNotFound(DomainError):
    code, status = "employee_not_found", 404


class EmployeeExists(DomainError):
    code, status = "employee_exists", 409


class StaleTemplate(DomainError):
    """The employee's reference was made by another model and cannot be compared with this one's."""

    code, status = "stale_template", 409


class Unauthorized(DomainError):
    """No API key, or one that is unknown or revoked."""

    code, status = "unauthorized", 401


class Forbidden(DomainError):
    """A valid API key whose scope does not cover the endpoint."""

    code, status = "forbidden", 403


class NotReady(DomainError):
    code, status = "not_ready", 503


# The photo's errors come from model/ (which knows nothing of HTTP); their statuses are set here.
FACE_ERROR_STATUS: dict[type[FaceError], int] = {
    ImageTooLarge: 413, InvalidImage: 422, NoFaceDetected: 422, MultipleFaces: 422, FaceTooSmall: 422,
}


def status_of(exc: DomainError | FaceError) -> int:
    return exc.status if isinstance(exc, DomainError) else FACE_ERROR_STATUS.get(type(exc), 422)


def error_body(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def error_response(exc: DomainError | FaceError) -> JSONResponse:
    return JSONResponse(error_body(exc.code, exc.message), status_code=status_of(exc))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    @app.exception_handler(FaceError)
    async def _refused(_: Request, exc: DomainError | FaceError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'] if p != 'body')}: {e['msg']}" for e in exc.errors()
        )
        return JSONResponse(error_body("validation_error", problems or "invalid request"), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code)

    @app.exception_handler(OperationalError)
    async def _database_down(_: Request, exc: OperationalError) -> JSONResponse:
        log.error("database unavailable: %s", exc.orig)
        return JSONResponse(error_body("not_ready", "the database is unavailable; try again"), status_code=503)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return JSONResponse(error_body("internal_error", "internal server error"), status_code=500)
