"""Groups and their members: create, list, rename, delete; add and remove members. Scope: admin."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Form, Path, Query, Response
from pydantic import StringConstraints

from app.api.deps import AdminCaller, AuditDep, GroupsDep, SessionDep, fields_as_declared
from app.api.routes.employees import EmployeeIdPath, employee_out
from app.api.routes.faces import AUTH_ERRORS, BODY_ERRORS
from app.api.schemas import (
    MAX_OFFSET,
    EmployeePage,
    ErrorOut,
    GroupOut,
    GroupPage,
    MembersAddedOut,
)
from app.core.identifiers import EMPLOYEE_ID_PATTERN, GROUP_ID_PATTERN, NAME_PATTERN, NAME_RULE
from app.services.groups import GroupView

router = APIRouter(prefix="/groups", tags=["groups"], responses={**AUTH_ERRORS, **BODY_ERRORS},
                   dependencies=[Depends(fields_as_declared)])
GroupIdPath = Annotated[str, Path(pattern=GROUP_ID_PATTERN)]
NameForm = Annotated[str | None, Form(pattern=NAME_PATTERN, examples=["Lab 3, second floor"],
                                      description=NAME_RULE)]
SearchQuery = Annotated[str | None, Query(pattern=NAME_PATTERN, description="only those whose id or name contains "
                                                                           "this, in any case")]
NOT_FOUND = {404: {"model": ErrorOut, "description": "group_not_found"}}
MEMBER_NOT_FOUND = {404: {"model": ErrorOut, "description": "group_not_found, employee_not_found"}}
FULL = {409: {"model": ErrorOut, "description": "too_many_groups: FACEGATE_MAX_GROUPS_PER_EMPLOYEE reached"}}
EmployeeIds = list[Annotated[str, StringConstraints(pattern=EMPLOYEE_ID_PATTERN)]]


def group_out(group: GroupView) -> GroupOut:
    return GroupOut(group_id=group.group_id, name=group.name, members=group.members, created_at=group.created_at,
                    updated_at=group.updated_at)


@router.post("", status_code=201, response_model=GroupOut,
             responses={409: {"model": ErrorOut, "description": "group_exists, too_many_groups"}})
def create_group(groups: GroupsDep, session: SessionDep, audit: AuditDep, caller: AdminCaller,
                 group_id: Annotated[str, Form(pattern=GROUP_ID_PATTERN, examples=["lab-3"],
                                               description="1-64 of A-Z a-z 0-9 . _ @ -, starting with a letter "
                                                           "or digit; unique regardless of case")],
                 name: NameForm = None) -> GroupOut:
    """Create an empty group (up to FACEGATE_MAX_GROUPS). Then add its members, and bind a door's key to it:
    `python -m app.cli.keys create --scope verify --group lab-3`."""
    with audit.record(caller, "group_create") as entry:
        entry.groups = group_id
        group = groups.create(session=session, group_id=group_id, name=name)
        entry.decision = "created"
    return group_out(group)


@router.get("", response_model=GroupPage)
def list_groups(groups: GroupsDep, session: SessionDep, _: AdminCaller,
                offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
                limit: Annotated[int, Query(ge=1, le=500)] = 50, q: SearchQuery = None) -> GroupPage:
    """The groups in id order, with their sizes, a page at a time."""
    page, total = groups.list(session=session, offset=offset, limit=limit, search=q)
    return GroupPage(items=[group_out(g) for g in page], total=total, offset=offset, limit=limit)


@router.get("/{group_id}", response_model=GroupOut, responses=NOT_FOUND)
def get_group(groups: GroupsDep, session: SessionDep, _: AdminCaller, group_id: GroupIdPath) -> GroupOut:
    return group_out(groups.get(session=session, group_id=group_id))


@router.patch("/{group_id}", response_model=GroupOut, responses=NOT_FOUND)
def rename_group(groups: GroupsDep, session: SessionDep, audit: AuditDep, caller: AdminCaller,
                 group_id: GroupIdPath, name: NameForm = None) -> GroupOut:
    """Rename the group (no name: none). Its id never changes: keys are bound to it."""
    with audit.record(caller, "group_rename") as entry:
        entry.groups = group_id
        group = groups.rename(session=session, group_id=group_id, name=name)
        entry.decision = "renamed"
    return group_out(group)


@router.delete("/{group_id}", status_code=204, response_class=Response, responses=NOT_FOUND)
def delete_group(groups: GroupsDep, session: SessionDep, audit: AuditDep, caller: AdminCaller,
                 group_id: GroupIdPath) -> Response:
    """Delete the group and its memberships; no employee is deleted. A key bound to it reaches no one through it
    any more (its answers become 404 and unknown), on every replica within a second."""
    with audit.record(caller, "group_delete") as entry:
        entry.groups = group_id
        groups.delete(session=session, group_id=group_id)
        entry.decision = "deleted"
    return Response(status_code=204)


@router.get("/{group_id}/members", response_model=EmployeePage, responses=NOT_FOUND)
def list_members(groups: GroupsDep, session: SessionDep, _: AdminCaller, group_id: GroupIdPath,
                 offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
                 limit: Annotated[int, Query(ge=1, le=500)] = 50, q: SearchQuery = None) -> EmployeePage:
    """The group's members in id order, a page at a time (as GET /employees)."""
    page, total = groups.members(session=session, group_id=group_id, offset=offset, limit=limit, search=q)
    return EmployeePage(items=[employee_out(e) for e in page], total=total, offset=offset, limit=limit)


@router.post("/{group_id}/members", response_model=MembersAddedOut,
             responses={**NOT_FOUND, **FULL, 422: {"model": ErrorOut,
                                                   "description": "too_many_members, validation_error"},
                        **BODY_ERRORS})
def add_members(groups: GroupsDep, session: SessionDep, audit: AuditDep, caller: AdminCaller, group_id: GroupIdPath,
                employee_ids: Annotated[EmployeeIds, Body(embed=True, examples=[["e-1042", "e-1043"]])]
                ) -> MembersAddedOut:
    """Add a list of employees (JSON `{"employee_ids": [...]}`, at most FACEGATE_MAX_GROUP_BULK). Ids with no
    employee are listed in `not_found`; the others join. One employee who would pass
    FACEGATE_MAX_GROUPS_PER_EMPLOYEE makes the call 409 too_many_groups, with nothing changed."""
    with audit.record(caller, "group_members") as entry:
        entry.groups = group_id
        result = groups.add_members(session=session, group_id=group_id, employee_ids=employee_ids)
        entry.decision = "added"
    return MembersAddedOut(group_id=group_id, added=result.added, already=result.already,
                           not_found=result.not_found)


@router.put("/{group_id}/members/{employee_id}", status_code=204, response_class=Response,
            responses={**MEMBER_NOT_FOUND, **FULL})
def add_member(groups: GroupsDep, session: SessionDep, audit: AuditDep, caller: AdminCaller, group_id: GroupIdPath,
               employee_id: EmployeeIdPath) -> Response:
    """Put one employee in the group (nothing changes if they are in it already)."""
    with audit.record(caller, "group_join", employee_id) as entry:
        entry.groups = group_id
        groups.add_member(session=session, group_id=group_id, employee_id=employee_id)
        entry.decision = "joined"
    return Response(status_code=204)


@router.delete("/{group_id}/members/{employee_id}", status_code=204, response_class=Response,
               responses=MEMBER_NOT_FOUND)
def remove_member(groups: GroupsDep, session: SessionDep, audit: AuditDep, caller: AdminCaller,
                  group_id: GroupIdPath, employee_id: EmployeeIdPath) -> Response:
    """Take one employee out of the group (the employee stays enrolled). 404 employee_not_found when they are
    not a member."""
    with audit.record(caller, "group_leave", employee_id) as entry:
        entry.groups = group_id
        groups.remove_member(session=session, group_id=group_id, employee_id=employee_id)
        entry.decision = "left"
    return Response(status_code=204)
