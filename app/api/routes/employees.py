"""The gallery's employees: list, read, delete, and their references: add and remove."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from app.api.deps import AdminCaller, AuditDep, ServiceDep, SessionDep, fields_as_declared
from app.api.routes.faces import AUTH_ERRORS, PHOTO_ERRORS, ImageFile, face_out, quality_out, read_photo
from app.api.schemas import (
    MAX_OFFSET,
    EmployeeOut,
    EmployeePage,
    ErrorOut,
    ReferenceAddedOut,
    ReferenceOut,
)
from app.core.identifiers import EMPLOYEE_ID_PATTERN, GROUP_ID_PATTERN, NAME_PATTERN
from app.services.recognition import EmployeeView

router = APIRouter(prefix="/employees", tags=["employees"], responses=AUTH_ERRORS,
                   dependencies=[Depends(fields_as_declared)])
EmployeeIdPath = Annotated[str, Path(pattern=EMPLOYEE_ID_PATTERN)]
NOT_FOUND = {404: {"model": ErrorOut, "description": "employee_not_found"}}


def employee_out(employee: EmployeeView) -> EmployeeOut:
    return EmployeeOut(
        employee_id=employee.employee_id, name=employee.name, updated_at=employee.updated_at,
        enrolled_at=employee.enrolled_at, model_id=employee.model_id, current_model=employee.current_model,
        references=[ReferenceOut(reference=r.slot, enrolled_at=r.enrolled_at) for r in employee.references],
        groups=employee.groups,
    )


@router.get("", response_model=EmployeePage, responses={404: {"model": ErrorOut, "description": "group_not_found"}})
def list_employees(service: ServiceDep, session: SessionDep, _: AdminCaller,
                   offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
                   limit: Annotated[int, Query(ge=1, le=500)] = 50,
                   q: Annotated[str | None, Query(pattern=NAME_PATTERN, description="only employees whose id or "
                                                  "name contains this, in any case")] = None,
                   group: Annotated[str | None, Query(pattern=GROUP_ID_PATTERN, description="only the members of "
                                                      "this group")] = None) -> EmployeePage:
    """The employees in id order, a page at a time. Scope: admin."""
    employees, total = service.employees(session=session, offset=offset, limit=limit, search=q, group=group)
    return EmployeePage(items=[employee_out(e) for e in employees], total=total,
                        offset=offset, limit=limit)


@router.get("/{employee_id}", response_model=EmployeeOut, responses=NOT_FOUND)
def get_employee(service: ServiceDep, session: SessionDep, _: AdminCaller, employee_id: EmployeeIdPath) -> EmployeeOut:
    return employee_out(service.employee(session=session, employee_id=employee_id))


@router.delete("/{employee_id}", status_code=204, response_class=Response, responses=NOT_FOUND)
def delete_employee(service: ServiceDep, session: SessionDep, audit: AuditDep, caller: AdminCaller,
                    employee_id: EmployeeIdPath) -> Response:
    """Remove the employee from the database and the search index at once. Scope: admin."""
    with audit.record(caller, "delete", employee_id) as entry:
        service.delete(session=session, employee_id=employee_id)
        entry.decision = "deleted"
    return Response(status_code=204)


@router.post("/{employee_id}/references", status_code=201, response_model=ReferenceAddedOut,
             responses={**NOT_FOUND, 409: {"model": ErrorOut, "description": "too_many_references, "
                                                                    "reference_conflict"},
                        **PHOTO_ERRORS})
def add_reference(service: ServiceDep, session: SessionDep, audit: AuditDep, caller: AdminCaller,
                  employee_id: EmployeeIdPath, image: ImageFile,
                  force: Annotated[bool, Query(description="add even a photo below the quality thresholds")] = False,
                  ) -> ReferenceAddedOut:
    """Add another reference photo of an enrolled employee (up to FACEGATE_MAX_REFERENCES, 5 by default, in
    all). Scope: admin.

    Decisions then use the nearest of the employee's references, at a threshold that tightens with their
    number so that an impostor's chance of passing stays the calibrated one. The photo must pass the same
    quality checks as an enrollment's (`force=true` skips them). Re-enrolling with replace=true makes the new
    photo the only reference again.
    """
    with audit.record(caller, "add_reference", employee_id) as entry:
        result = service.add_reference(session=session, employee_id=employee_id, data=read_photo(image, service),
                                       force=force)
        entry.decision = "added"
    return ReferenceAddedOut(employee_id=result.employee_id, reference=result.slot,
                             references=result.references, enrolled_at=result.enrolled_at,
                             model_id=result.model_id, face=face_out(result.face), quality=quality_out(result.quality))


@router.delete("/{employee_id}/references/{reference}", status_code=204, response_class=Response,
               responses={404: {"model": ErrorOut, "description": "employee_not_found, reference_not_found"},
                          409: {"model": ErrorOut, "description": "last_reference"}})
def remove_reference(service: ServiceDep, session: SessionDep, audit: AuditDep, caller: AdminCaller,
                     employee_id: EmployeeIdPath, reference: Annotated[int, Path(ge=0, le=1_000_000)]) -> Response:
    """Remove one reference (its photo and templates). The last one goes only with the employee. Scope: admin."""
    with audit.record(caller, "remove_reference", employee_id) as entry:
        service.remove_reference(session=session, employee_id=employee_id, slot=reference)
        entry.decision = "removed"
    return Response(status_code=204)
