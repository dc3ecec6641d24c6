"""GET /audit: the audit trail, filtered and paged (admin)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BeforeValidator

from app.api.deps import AdminCaller, AuditDep, ServiceDep, SessionDep, fields_as_declared
from app.api.routes.faces import AUTH_ERRORS
from app.api.schemas import MAX_OFFSET, AuditOut, AuditPage
from app.core.identifiers import EMPLOYEE_ID_PATTERN

router = APIRouter(tags=["audit"], responses=AUTH_ERRORS, dependencies=[Depends(fields_as_declared)])

# How long a read of the trail waits for this process's queued rows to be written (app.services.audit).
FLUSH_SECONDS = 2.0

Action = Literal["enroll", "replace", "add_reference", "remove_reference", "delete", "verify", "identify",
                 "employees", "audit", "bulk_enroll", "request", "groups", "group_create", "group_rename",
                 "group_delete", "group_members", "group_join", "group_leave"]


def iso_8601(value: object) -> object:
    """A time must be written as one (2026-12-01T08:00:00Z): pydantic would read a bare number as seconds since
    1970, which the published schema (date-time) does not allow."""
    if isinstance(value, str) and re.fullmatch(r"\s*[-+]?[\d.]+([eE][-+]?\d+)?\s*", value):
        raise ValueError("an ISO 8601 date-time, such as 2026-12-01T08:00:00Z")
    return value


Timestamp = Annotated[datetime, BeforeValidator(iso_8601)]


@router.get("/audit", response_model=AuditPage)
def audit(service: ServiceDep, trail: AuditDep, session: SessionDep, _: AdminCaller,
          employee_id: Annotated[str | None, Query(pattern=EMPLOYEE_ID_PATTERN)] = None,
          action: Annotated[Action | None, Query()] = None,
          since: Annotated[Timestamp | None, Query(description="from this time (ISO 8601), included")] = None,
          until: Annotated[Timestamp | None, Query(description="up to this time (ISO 8601), excluded")] = None,
          offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
          limit: Annotated[int, Query(ge=1, le=500)] = 50) -> AuditPage:
    """Who did what to whom, and what was decided: every decision and every refusal, newest first. Rows are
    written in batches; this replica's queued ones are written before the answer is read, so what it did
    before this request is in it (another replica's rows arrive within a fraction of a second). Scope: admin."""
    trail.flush(timeout=FLUSH_SECONDS)  # on a database too slow for that, it answers with what is written
    rows, total = service.audit_records(session=session, employee_id=employee_id, action=action, since=since,
                                        until=until, offset=offset, limit=limit)
    return AuditPage(items=[AuditOut.model_validate(row, from_attributes=True) for row in rows], total=total,
                     offset=offset, limit=limit)
