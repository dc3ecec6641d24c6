"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy.exc import SQLAlchemyError

from app.api.deps import RuntimeDep
from app.api.schemas import ErrorOut, HealthOut, ReadyOut
from app.core.errors import AuditUnavailable, NotReady
from app.gallery import db

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthOut)
def healthz() -> HealthOut:
    """The process is alive."""
    return HealthOut(status="ok")


@router.get("/readyz", response_model=ReadyOut, responses={503: {"model": ErrorOut}})
def readyz(runtime: RuntimeDep) -> ReadyOut:
    """The model is loaded, the database answers and the index is loaded."""
    service = runtime.service
    if service.unavailable:
        raise NotReady(service.unavailable)
    if runtime.audit.full:
        raise AuditUnavailable("the database is away and the audit spool is full: no decision is accepted")
    try:
        db.ping(runtime.engine)
        with runtime.sessions() as session:
            stale = service.stale_templates(session=session)
    except SQLAlchemyError as exc:
        raise NotReady(f"database unreachable: {type(exc).__name__}") from exc
    return ReadyOut(status="ready", model_id=service.model_id, device=str(service.embedder.device),
                    templates=len(service.index), stale_templates=stale)
