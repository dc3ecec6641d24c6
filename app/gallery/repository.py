"""Data access: keyword-only functions over a Session. They flush; the caller's transaction commits."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from app.gallery.models import Employee, Template


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
    session.flush()
    return template


def delete_employee(*, session: Session, employee: Employee) -> None:
    session.delete(employee)
    session.flush()


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


def count_stale_templates(*, session: Session, model_id: str) -> int:
    return session.scalar(select(func.count(Template.id)).where(Template.model_id != model_id)) or 0
