"""Typed dependencies. Tests swap them through app.dependency_overrides."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader
from sqlalchemy.orm import Session

from app.core.errors import Forbidden, NotReady, Unauthorized
from app.keys import Caller
from app.runtime import Runtime
from app.services.audit import AuditTrail
from app.services.recognition import RecognitionService


def get_runtime(request: Request) -> Runtime:
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is None:
        raise NotReady("the service is starting")
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_session(runtime: RuntimeDep) -> Iterator[Session]:
    with runtime.sessions() as session:
        yield session


def get_service(runtime: RuntimeDep) -> RecognitionService:
    return runtime.service


SessionDep = Annotated[Session, Depends(get_session)]
ServiceDep = Annotated[RecognitionService, Depends(get_service)]


def get_audit(runtime: RuntimeDep) -> AuditTrail:
    return runtime.audit


AuditDep = Annotated[AuditTrail, Depends(get_audit)]

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                              description="an API key made with `python -m app.keys create --scope admin|verify`")


def caller_with(scope: str):  # noqa: ANN201 - a FastAPI dependency
    def dependency(runtime: RuntimeDep, key: Annotated[str | None, Security(api_key_header)]) -> Caller:
        if not runtime.settings.auth:
            return Caller(None, None)
        if not key:
            raise Unauthorized("send an API key in the X-API-Key header")
        caller = runtime.keys.check(key)
        if caller is None:
            raise Unauthorized("the API key is unknown or revoked")
        if caller.scope != scope:
            raise Forbidden(f"this key's scope is {caller.scope!r}; this endpoint needs {scope!r}")
        return caller

    return dependency


AdminCaller = Annotated[Caller, Depends(caller_with("admin"))]
VerifyCaller = Annotated[Caller, Depends(caller_with("verify"))]
