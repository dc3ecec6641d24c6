"""Domain errors, and the one place that turns them into HTTP responses.

Every error body is {"error": {"code": "...", "message": "..."}}; the codes are stable API.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

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


class TooManyReferences(DomainError):
    """The employee already has FACEGATE_MAX_REFERENCES references."""

    code, status = "too_many_references", 409


class LastReference(DomainError):
    """An employee's only reference cannot be removed on its own: delete the employee instead."""

    code, status = "last_reference", 409


class ReferenceConflict(DomainError):
    """Another change to the employee's references came first, even after one more try."""

    code, status = "reference_conflict", 409


class ReferenceNotFound(DomainError):
    code, status = "reference_not_found", 404


class ThresholdTooLoose(DomainError):
    """A request asked for a threshold looser than the calibrated one: it could approve anyone."""

    code, status = "threshold_too_loose", 422


class TooManyAttempts(DomainError):
    """Too many failed verifications of one employee, or by one key, within the window (app.services.attempts)."""

    code, status = "too_many_attempts", 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PoorQuality(DomainError):
    """An enrollment photo below the quality thresholds: it would fail its employee at the door for years."""

    code, status = "poor_quality", 422


class Unauthorized(DomainError):
    """No API key, or one that is unknown or revoked."""

    code, status = "unauthorized", 401


class Forbidden(DomainError):
    """A valid API key whose scope does not cover the endpoint."""

    code, status = "forbidden", 403


class NotReady(DomainError):
    code, status = "not_ready", 503


class ModelChanging(DomainError):
    """An enrollment made by a replica whose model was just replaced as the gallery's active one: it is not
    written (its template could not be compared any more); the replica follows within a second, retry."""

    code, status = "model_changing", 503


# The photo's errors come from model/ (which knows nothing of HTTP); their statuses are set here.
FACE_ERROR_STATUS: dict[type[FaceError], int] = {
    ImageTooLarge: 413, InvalidImage: 422, NoFaceDetected: 422, MultipleFaces: 422, FaceTooSmall: 422,
}


def status_of(exc: DomainError | FaceError) -> int:
    return exc.status if isinstance(exc, DomainError) else FACE_ERROR_STATUS.get(type(exc), 422)


def error_body(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def error_response(exc: DomainError | FaceError) -> JSONResponse:
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, TooManyAttempts) else None
    return JSONResponse(error_body(exc.code, exc.message), status_code=status_of(exc), headers=headers)


HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


def install_error_handlers(app: FastAPI, audit_refusal: Callable[[Request, str], None]) -> None:
    """`audit_refusal(request, code)` audits a request refused before its route ran (a validation error)."""

    @app.exception_handler(DomainError)
    @app.exception_handler(FaceError)
    async def _refused(_: Request, exc: DomainError | FaceError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'] if p != 'body')}: {e['msg']}"[:300] for e in exc.errors()
        )
        audit_refusal(request, "validation_error")
        return JSONResponse(error_body("validation_error", problems or "invalid request"), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "http_error")
        if exc.status_code == 413:  # a streamed body cut off at the limit (app.api.guard), audited there
            code = ImageTooLarge.code
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code)

    @app.exception_handler(OperationalError)
    async def _database_down(_: Request, exc: OperationalError) -> JSONResponse:
        log.error("database unavailable: %s", exc.orig)
        return JSONResponse(error_body("not_ready", "the database is unavailable; try again"), status_code=503)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return JSONResponse(error_body("internal_error", "internal server error"), status_code=500)
