"""The gallery's employees: list, read, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from app.api.deps import AdminCaller, AuditDep, ServiceDep, SessionDep, single_valued_fields
from app.api.routes.faces import AUTH_ERRORS
from app.api.schemas import EMPLOYEE_ID_PATTERN, MAX_OFFSET, EmployeeOut, EmployeePage, ErrorOut
from app.gallery.models import Employee

router = APIRouter(prefix="/employees", tags=["employees"], responses=AUTH_ERRORS,
                   dependencies=[Depends(single_valued_fields)])
EmployeeIdPath = Annotated[str, Path(pattern=EMPLOYEE_ID_PATTERN)]
NOT_FOUND = {404: {"model": ErrorOut, "description": "employee_not_found"}}


def employee_out(employee: Employee, model_id: str) -> EmployeeOut:
    """The employee, with the template of the serving model when there is one (during a model upgrade an
    employee has templates of two models), or else the one they have."""
    template = next((t for t in employee.templates if t.model_id == model_id),
                    employee.templates[0] if employee.templates else None)
    return EmployeeOut(
        employee_id=employee.employee_id, name=employee.name, updated_at=employee.updated_at,
        enrolled_at=template.created_at if template else None, model_id=template.model_id if template else None,
        current_model=template is not None and template.model_id == model_id,
    )


@router.get("", response_model=EmployeePage)
def list_employees(service: ServiceDep, session: SessionDep, _: AdminCaller,
                   offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
                   limit: Annotated[int, Query(ge=1, le=500)] = 50) -> EmployeePage:
    employees, total = service.employees(session=session, offset=offset, limit=limit)
    return EmployeePage(items=[employee_out(e, service.model_id) for e in employees], total=total,
                        offset=offset, limit=limit)


@router.get("/{employee_id}", response_model=EmployeeOut, responses=NOT_FOUND)
def get_employee(service: ServiceDep, session: SessionDep, _: AdminCaller, employee_id: EmployeeIdPath) -> EmployeeOut:
    return employee_out(service.employee(session=session, employee_id=employee_id), service.model_id)


@router.delete("/{employee_id}", status_code=204, response_class=Response, responses=NOT_FOUND)
def delete_employee(service: ServiceDep, session: SessionDep, audit: AuditDep, caller: AdminCaller,
                    employee_id: EmployeeIdPath) -> Response:
    """Remove the employee from the database and the search index at once. Scope: admin."""
    with audit.record(caller, "delete", employee_id) as entry:
        service.delete(session=session, employee_id=employee_id)
        entry.decision = "deleted"
    return Response(status_code=204)
