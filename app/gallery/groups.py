"""Data access for groups and their members: keyword-only functions over a Session. They flush; the caller's
transaction commits. Every change of a group's existence or members appends a "group" row to the change feed
(its employee_id column holds the group's id), so that every replica's index follows it."""

from __future__ import annotations

from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session, selectinload

from app.gallery.models import ApiKey, Employee, Group, GroupMember, KeyGroup
from app.gallery.repository import name_matches, record_change

GROUP_CHANGE = "group"  # the change feed's action for a group created, deleted or changed in members


def get_group(*, session: Session, group_id: str, for_update: bool = False) -> Group | None:
    """`for_update`: lock the group's row until the transaction ends (its members change one writer at a time;
    on SQLite the database's write lock, taken first)."""
    query = select(Group).where(Group.group_id == group_id)
    if for_update:
        if session.get_bind().dialect.name == "sqlite":
            session.execute(text("UPDATE groups SET id = id WHERE group_id = :g"), {"g": group_id})
        query = query.with_for_update().execution_options(populate_existing=True)
    return session.scalars(query).one_or_none()


def count_groups(*, session: Session) -> int:
    return session.scalar(select(func.count(Group.id))) or 0


def add_group(*, session: Session, group_id: str, name: str | None) -> Group:
    group = Group(group_id=group_id, name=name)
    session.add(group)
    session.flush()
    record_change(session=session, employee_id=group_id, action=GROUP_CHANGE)
    return group


def delete_group(*, session: Session, group: Group) -> None:
    """The group and its memberships and key bindings go (the database's cascades); no employee does."""
    session.execute(delete(GroupMember).where(GroupMember.group_pk == group.id))
    session.execute(delete(KeyGroup).where(KeyGroup.group_pk == group.id))
    session.delete(group)
    record_change(session=session, employee_id=group.group_id, action=GROUP_CHANGE)
    session.flush()


def list_groups(*, session: Session, offset: int, limit: int, search: str | None = None
                ) -> tuple[list[tuple[Group, int]], int]:
    """A page of (group, members) in id order; `search`: only those whose id or name contains it, in any case."""
    conditions = [name_matches(session, search, Group.group_id, Group.name)] if search else []
    total = session.scalar(select(func.count(Group.id)).where(*conditions)) or 0
    members = (select(func.count()).where(GroupMember.group_pk == Group.id).correlate(Group).scalar_subquery())
    rows = session.execute(select(Group, members).where(*conditions).order_by(Group.group_id)
                           .offset(offset).limit(limit))
    return [(group, count) for group, count in rows], total


def count_members(*, session: Session, group: Group) -> int:
    return session.scalar(select(func.count()).where(GroupMember.group_pk == group.id)) or 0


def members_page(*, session: Session, group: Group, offset: int, limit: int, search: str | None = None
                 ) -> tuple[list[Employee], int]:
    """A page of the group's members in id order (with `search`, as list_groups)."""
    conditions = [Employee.id.in_(select(GroupMember.employee_pk).where(GroupMember.group_pk == group.id))]
    if search:
        conditions.append(name_matches(session, search, Employee.employee_id, Employee.name))
    total = session.scalar(select(func.count(Employee.id)).where(*conditions)) or 0
    rows = session.scalars(select(Employee).where(*conditions).order_by(Employee.employee_id)
                           .offset(offset).limit(limit).options(selectinload(Employee.templates)))
    return list(rows), total


def employee_pks(*, session: Session, employee_ids: list[str]) -> dict[str, int]:
    """employee id -> primary key, for those of `employee_ids` that exist."""
    if not employee_ids:
        return {}
    return dict(session.execute(select(Employee.employee_id, Employee.id)
                                .where(Employee.employee_id.in_(employee_ids))).all())


def memberships_of(*, session: Session, employee_pks: list[int]) -> dict[int, int]:
    """employee primary key -> the groups they belong to, for those of `employee_pks` in any."""
    if not employee_pks:
        return {}
    return dict(session.execute(select(GroupMember.employee_pk, func.count()).where(
        GroupMember.employee_pk.in_(employee_pks)).group_by(GroupMember.employee_pk)).all())


def add_members(*, session: Session, group: Group, employee_pks: list[int]) -> int:
    """Add these employees (primary keys) to the group, those already in it aside; returns how many joined."""
    present = set(session.scalars(select(GroupMember.employee_pk).where(
        GroupMember.group_pk == group.id, GroupMember.employee_pk.in_(employee_pks))))
    joining = [pk for pk in dict.fromkeys(employee_pks) if pk not in present]
    session.add_all(GroupMember(group_pk=group.id, employee_pk=pk) for pk in joining)
    if joining:
        record_change(session=session, employee_id=group.group_id, action=GROUP_CHANGE)
    session.flush()
    return len(joining)


def remove_members(*, session: Session, group: Group, employee_pks: list[int]) -> int:
    """Take these employees out of the group; returns how many were in it."""
    removed = session.execute(delete(GroupMember).where(GroupMember.group_pk == group.id,
                                                        GroupMember.employee_pk.in_(employee_pks))).rowcount or 0
    if removed:
        record_change(session=session, employee_id=group.group_id, action=GROUP_CHANGE)
    session.flush()
    return removed


def groups_of(*, session: Session, employee_ids: list[str]) -> dict[str, list[str]]:
    """employee id -> the ids of their groups, for each of `employee_ids` (an empty list for none)."""
    found: dict[str, list[str]] = {employee_id: [] for employee_id in employee_ids}
    if employee_ids:
        for employee_id, group_id in session.execute(
                select(Employee.employee_id, Group.group_id)
                .join(GroupMember, GroupMember.employee_pk == Employee.id)
                .join(Group, Group.id == GroupMember.group_pk)
                .where(Employee.employee_id.in_(employee_ids)).order_by(Group.group_id)):
            found[employee_id].append(group_id)
    return found


def members_of(*, session: Session, group_ids: list[str] | None = None) -> dict[str, list[str]]:
    """group id -> its members' ids, for the groups of `group_ids` that exist (every group for None)."""
    query = select(Group.group_id)
    if group_ids is not None:
        query = query.where(Group.group_id.in_(group_ids))
    found: dict[str, list[str]] = {group_id: [] for group_id in session.scalars(query)}
    pairs = (select(Group.group_id, Employee.employee_id)
             .join(GroupMember, GroupMember.group_pk == Group.id)
             .join(Employee, Employee.id == GroupMember.employee_pk))
    if group_ids is not None:
        pairs = pairs.where(Group.group_id.in_(group_ids))
    for group_id, employee_id in session.execute(pairs.execution_options(yield_per=10_000)):
        found[group_id].append(employee_id)
    return found


def bind_key(*, session: Session, key: ApiKey, groups: list[Group]) -> None:
    key.bound = True
    session.add_all(KeyGroup(key_pk=key.id, group_pk=group.id) for group in groups)
    session.flush()


def key_groups(*, session: Session, key_pks: list[int]) -> dict[int, list[str]]:
    """key primary key -> the ids of the groups it is bound to, for each of `key_pks`."""
    found: dict[int, list[str]] = {pk: [] for pk in key_pks}
    if key_pks:
        for key_pk, group_id in session.execute(
                select(KeyGroup.key_pk, Group.group_id).join(Group, Group.id == KeyGroup.group_pk)
                .where(KeyGroup.key_pk.in_(key_pks)).order_by(Group.group_id)):
            found[key_pk].append(group_id)
    return found
