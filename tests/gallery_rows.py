"""What the gallery holds, read straight from a test client's database."""

from __future__ import annotations

from sqlalchemy import select

from app.gallery.models import AuditRecord, Employee


def audit_rows(client) -> list[AuditRecord]:  # noqa: ANN001
    runtime = client.app.state.runtime
    assert runtime.audit.flush()
    with runtime.sessions() as session:
        return list(session.scalars(select(AuditRecord).order_by(AuditRecord.at, AuditRecord.id)))  # as it happened


def employees(client) -> list[tuple[str, str | None]]:  # noqa: ANN001
    with client.app.state.runtime.sessions() as session:
        return [(e.employee_id, e.name) for e in session.scalars(select(Employee).order_by(Employee.id))]
