"""Groups: create, rename and delete them, and add and remove their members.

A group is a set of employees, such as the people a door admits. A key bound to groups (app.services.keys)
verifies and identifies only their members, and /identify over a group uses the group's size as N in the 1:N
rule, so a small door's threshold is far looser than the whole gallery's at the same FPIR.

Every write commits, then this replica's index reads the group's members again at once; the change feed's
"group" row brings them to every other replica within its bound (app.gallery.feed). A write names a group
and locks its row first, so that changes of one group's members take turns on every replica, and a group
deleted meanwhile is not found.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from app.core.config import Settings
from app.core.errors import EmployeeNotFound, GroupExists, GroupNotFound, TooManyGroups, TooManyMembers
from app.gallery import groups, repository
from app.gallery.feed import refresh_groups
from app.gallery.index import EmbeddingIndex
from app.gallery.models import Group
from app.services.conflicts import retried
from app.services.recognition import EmployeeView, RecognitionService

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GroupView:
    group_id: str
    name: str | None
    members: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, group: Group, members: int) -> GroupView:
        return cls(group.group_id, group.name, members, group.created_at, group.updated_at)


@dataclass(frozen=True)
class MembersAdded:
    group_id: str
    added: int  # joined now
    already: int  # were members before
    not_found: list[str]  # no such employee: nothing was done for them


@retried
def join_group(*, session: Session, group_id: str, employee_ids: list[str], settings: Settings) -> MembersAdded:
    """Add employees to a group (at most FACEGATE_MAX_GROUP_BULK per call), and commit: the API's write, and bulk
    enrollment's. Ids with no employee are named in the answer, the others join. An employee in
    FACEGATE_MAX_GROUPS_PER_EMPLOYEE groups already makes the whole call 409 too_many_groups, with nothing
    changed. The group's row is locked first: one writer of its members at a time, on every replica."""
    if len(employee_ids) > settings.membership.max_bulk:
        raise TooManyMembers(f"{len(employee_ids)} employees in one call; the limit is "
                             f"{settings.membership.max_bulk} (FACEGATE_MAX_GROUP_BULK)")
    employee_ids, limit = list(dict.fromkeys(employee_ids)), settings.membership.max_per_employee
    for attempt in (1, 2):
        group = groups.get_group(session=session, group_id=group_id, for_update=True)
        if group is None:
            raise GroupNotFound(f"no group {group_id!r}")
        pks = groups.employee_pks(session=session, employee_ids=employee_ids)
        try:
            added = groups.add_members(session=session, group=group, employee_pks=list(pks.values()))
            counts = groups.memberships_of(session=session, employee_pks=list(pks.values()))
            full = sorted(e for e, pk in pks.items() if counts.get(pk, 0) > limit)
            if full:
                session.rollback()
                raise TooManyGroups(f"{', '.join(full[:10])} would belong to more than {limit} groups "
                                    "(FACEGATE_MAX_GROUPS_PER_EMPLOYEE); nothing was changed")
            session.commit()
            return MembersAdded(group.group_id, added, len(pks) - added,
                                [e for e in employee_ids if e not in pks])
        except IntegrityError as exc:  # an employee deleted between the read and the write
            session.rollback()
            if attempt == 2:
                raise GroupNotFound(f"group {group_id!r} or its employees changed meanwhile; try again") from exc
    raise AssertionError("unreachable")


class GroupService:
    def __init__(self, *, settings: Settings, recognition: RecognitionService, sessions: sessionmaker[Session]
                 ) -> None:
        self.settings, self.recognition, self.sessions = settings, recognition, sessions

    @property
    def index(self) -> EmbeddingIndex:
        """The serving model's index (a model switch replaces it, groups and all)."""
        return self.recognition.index

    def create(self, *, session: Session, group_id: str, name: str | None) -> GroupView:
        limit = self.settings.membership.max_groups
        if groups.count_groups(session=session) >= limit:
            raise TooManyGroups(f"{limit} groups exist, the most allowed (FACEGATE_MAX_GROUPS); delete one first")
        try:
            group = groups.add_group(session=session, group_id=group_id, name=name)
            session.commit()
        except IntegrityError as exc:
            session.rollback()
            raise GroupExists(f"group {group_id!r} (or an id differing only in case) exists") from exc
        self._refresh(group.group_id)
        log.info("created group %s", group_id)
        return GroupView.of(group, 0)

    def _group(self, session: Session, group_id: str, *, for_update: bool = False) -> Group:
        group = groups.get_group(session=session, group_id=group_id, for_update=for_update)
        if group is None:
            raise GroupNotFound(f"no group {group_id!r}")
        return group

    def get(self, *, session: Session, group_id: str) -> GroupView:
        group = self._group(session, group_id)
        return GroupView.of(group, groups.count_members(session=session, group=group))

    def list(self, *, session: Session, offset: int, limit: int, search: str | None = None
             ) -> tuple[list[GroupView], int]:
        page, total = groups.list_groups(session=session, offset=offset, limit=limit, search=search)
        return [GroupView.of(group, members) for group, members in page], total

    def rename(self, *, session: Session, group_id: str, name: str | None) -> GroupView:
        group = self._group(session, group_id, for_update=True)
        group.name = name
        session.commit()
        return GroupView.of(group, groups.count_members(session=session, group=group))

    @retried
    def delete(self, *, session: Session, group_id: str) -> None:
        """The group goes, with its memberships and key bindings; no employee does. A key bound to it then
        reaches no one through it."""
        group = self._group(session, group_id, for_update=True)
        groups.delete_group(session=session, group=group)
        session.commit()
        self._refresh(group.group_id)
        log.info("deleted group %s", group_id)

    def members(self, *, session: Session, group_id: str, offset: int, limit: int, search: str | None = None
                ) -> tuple[list[EmployeeView], int]:
        group = self._group(session, group_id)
        page, total = groups.members_page(session=session, group=group, offset=offset, limit=limit, search=search)
        return self.recognition.views(session, page), total

    def add_members(self, *, session: Session, group_id: str, employee_ids: list[str]) -> MembersAdded:
        """Add employees to the group (join_group), and to this replica's index at once."""
        result = join_group(session=session, group_id=group_id, employee_ids=employee_ids, settings=self.settings)
        self._refresh(result.group_id)
        return result

    def add_member(self, *, session: Session, group_id: str, employee_id: str) -> bool:
        """Put one employee in the group; returns whether they joined now (False: they were a member)."""
        result = self.add_members(session=session, group_id=group_id, employee_ids=[employee_id])
        if result.not_found:
            raise EmployeeNotFound(f"no employee {employee_id!r}")
        return bool(result.added)

    @retried
    def remove_member(self, *, session: Session, group_id: str, employee_id: str) -> None:
        group = self._group(session, group_id, for_update=True)
        pks = groups.employee_pks(session=session, employee_ids=[employee_id])
        if not pks or not groups.remove_members(session=session, group=group, employee_pks=list(pks.values())):
            session.rollback()
            raise EmployeeNotFound(f"employee {employee_id!r} is not a member of group {group_id!r}")
        session.commit()
        self._refresh(group.group_id)

    def _refresh(self, group_id: str) -> None:
        """This replica's index takes the group's committed members at once (the others, from the feed)."""
        refresh_groups(self.index, self.sessions, group_ids=[group_id])

    def groups_of(self, *, session: Session, employee_id: str) -> list[str]:
        if repository.get_employee(session=session, employee_id=employee_id) is None:
            raise EmployeeNotFound(f"no employee {employee_id!r}")
        return groups.groups_of(session=session, employee_ids=[employee_id])[employee_id]
