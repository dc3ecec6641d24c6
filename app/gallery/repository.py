"""Data access: keyword-only functions over a Session. They flush; the caller's transaction commits."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import numpy as np
from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session, selectinload

from app.gallery.models import Employee, GalleryChange, Template

# PostgreSQL channel on which every committed gallery change is announced (app.gallery.feed listens).
CHANNEL = "facegate_gallery"


def get_employee(*, session: Session, employee_id: str) -> Employee | None:
    return session.scalars(
        select(Employee).where(Employee.employee_id == employee_id).options(selectinload(Employee.templates))
    ).one_or_none()


def list_employees(*, session: Session, offset: int, limit: int) -> tuple[list[Employee], int]:
    total = session.scalar(select(func.count(Employee.id))) or 0
    rows = session.scalars(
        select(Employee).order_by(Employee.employee_id).offset(offset).limit(limit)
        .options(selectinload(Employee.templates))
    ).all()
    return list(rows), total


def add_employee(*, session: Session, employee_id: str, name: str | None) -> Employee:
    employee = Employee(employee_id=employee_id, name=name)
    session.add(employee)
    session.flush()
    return employee


def set_template(*, session: Session, employee: Employee, vector: np.ndarray, model_id: str) -> Template:
    """Make `vector` the employee's only reference: templates of every model are replaced."""
    employee.templates.clear()
    session.flush()
    template = Template(model_id=model_id, dim=int(vector.shape[0]), vector=vector)
    employee.templates.append(template)
    record_change(session=session, employee_id=employee.employee_id, action="upsert")
    session.flush()
    return template


def delete_employee(*, session: Session, employee: Employee) -> None:
    session.delete(employee)
    record_change(session=session, employee_id=employee.employee_id, action="delete")
    session.flush()


def record_change(*, session: Session, employee_id: str, action: str) -> None:
    """Append to the change feed, in the caller's transaction; on PostgreSQL, announce it at commit."""
    session.add(GalleryChange(employee_id=employee_id, action=action))
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})


def last_change(*, session: Session) -> int:
    return session.scalar(select(func.max(GalleryChange.seq))) or 0


def missing_changes(*, session: Session, upto: int, span: int = 1000) -> set[int]:
    """Sequence numbers among the last `span` up to `upto` that have no row: transactions still in flight when
    the feed was read (they took their numbers first and commit later), rolled back, or pruned. A follower asks
    for them again until they show up or time out, so the ones that never will cost a little, for a while."""
    low = max(1, upto - span + 1)
    present = set(session.scalars(select(GalleryChange.seq).where(GalleryChange.seq >= low,
                                                                   GalleryChange.seq <= upto)))
    return set(range(low, upto + 1)) - present


def first_change(*, session: Session) -> int:
    return session.scalar(select(func.min(GalleryChange.seq))) or 0


def prune_changes(*, session: Session, before: datetime) -> int:
    """Forget feed rows older than `before`, except the newest, which keeps the numbering going: SQLite hands
    out max(seq) + 1, so an empty table would start again at 1 under replicas that remember higher numbers."""
    newest = select(func.max(GalleryChange.seq)).scalar_subquery()
    result = session.execute(delete(GalleryChange).where(GalleryChange.at < before, GalleryChange.seq < newest))
    return result.rowcount or 0


def changes_since(*, session: Session, seq: int, also: set[int] | None = None) -> list[tuple[int, str]]:
    """(seq, employee_id) of the changes after `seq`, and of the listed earlier ones, in order."""
    condition = GalleryChange.seq > seq
    if also:
        condition = condition | GalleryChange.seq.in_(sorted(also))
    return list(session.execute(
        select(GalleryChange.seq, GalleryChange.employee_id).where(condition).order_by(GalleryChange.seq)))


def current_templates(*, session: Session, employee_ids: list[str], model_id: str
                      ) -> dict[str, tuple[str | None, np.ndarray]]:
    """employee_id -> (name, vector) for those of `employee_ids` who have a template of `model_id`."""
    rows = session.execute(
        select(Employee.employee_id, Employee.name, Template.vector)
        .join(Template, Template.employee_pk == Employee.id)
        .where(Template.model_id == model_id, Employee.employee_id.in_(employee_ids)))
    return {employee_id: (name, vector) for employee_id, name, vector in rows}


def iter_templates(*, session: Session, model_id: str, batch: int = 10_000
                   ) -> Iterator[tuple[str, str | None, np.ndarray]]:
    """(employee_id, name, vector) of every template made by `model_id`, streamed."""
    query = (
        select(Employee.employee_id, Employee.name, Template.vector)
        .join(Template, Template.employee_pk == Employee.id)
        .where(Template.model_id == model_id)
        .execution_options(yield_per=batch)
    )
    yield from session.execute(query)  # rows unpack as (employee_id, name, vector)


def enrolled_ids(*, session: Session, model_id: str) -> set[str]:
    """The employees who have a template of `model_id`."""
    return set(session.scalars(
        select(Employee.employee_id).join(Template, Template.employee_pk == Employee.id)
        .where(Template.model_id == model_id)))


def count_stale_templates(*, session: Session, model_id: str) -> int:
    return session.scalar(select(func.count(Template.id)).where(Template.model_id != model_id)) or 0
