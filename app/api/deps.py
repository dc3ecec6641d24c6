"""Typed dependencies. Tests swap them through app.dependency_overrides."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.core.errors import NotReady
from app.runtime import Runtime
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
