"""Data access: keyword-only functions over a Session. They flush; the caller's transaction commits."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import numpy as np
from sqlalchemy import delete, exists, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from app.gallery.models import (
    AuditRecord,
    Employee,
    GalleryChange,
    GalleryState,
    GroupMember,
    ReferencePhoto,
    Template,
)

# PostgreSQL channel on which every committed gallery change is announced (app.gallery.feed listens).
CHANNEL = "facegate_gallery"


def get_employee(*, session: Session, employee_id: str, for_update: bool = False) -> Employee | None:
    """`for_update` locks the employee until the transaction ends, so that a read-check-write (a replace, a
    reference added or removed) is not interleaved with another on the same employee, or with app.cli.reembed:
    their row on PostgreSQL; on SQLite, which has no row locks, the database's write lock, taken first."""
    query = select(Employee).where(Employee.employee_id == employee_id).options(selectinload(Employee.templates))
    if for_update:
        if session.get_bind().dialect.name == "sqlite":
            session.execute(text("UPDATE employees SET id = id WHERE employee_id = :e"), {"e": employee_id})
        query = query.with_for_update(of=Employee).execution_options(populate_existing=True)
    return session.scalars(query).one_or_none()


def name_matches(session: Session, search: str, id_column, name_column):  # noqa: ANN001, ANN201 - SQL
    """Whether a row's id or name contains `search`, in any case. Ids are ASCII; names are not, and SQLite's
    own lower() folds ASCII only (app.gallery.db adds Python's)."""
    pattern = "%" + search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    name_lower = func.unicode_lower if session.get_bind().dialect.name == "sqlite" else func.lower
    return func.lower(id_column).like(pattern, escape="\\") | name_lower(name_column).like(pattern, escape="\\")


def list_employees(*, session: Session, offset: int, limit: int, search: str | None = None,
                   group_pk: int | None = None) -> tuple[list[Employee], int]:
    """A page of employees in id order; `search`: only those whose id or name contains it, in any case;
    `group_pk`: only the members of that group."""
    conditions = []
    if search:
        conditions.append(name_matches(session, search, Employee.employee_id, Employee.name))
    if group_pk is not None:
        conditions.append(Employee.id.in_(select(GroupMember.employee_pk).where(GroupMember.group_pk == group_pk)))
    total = session.scalar(select(func.count(Employee.id)).where(*conditions)) or 0
    rows = session.scalars(
        select(Employee).where(*conditions).order_by(Employee.employee_id).offset(offset).limit(limit)
        .options(selectinload(Employee.templates))
    ).all()
    return list(rows), total


def add_employee(*, session: Session, employee_id: str, name: str | None) -> Employee:
    employee = Employee(employee_id=employee_id, name=name)
    session.add(employee)
    session.flush()
    return employee


def set_templates(*, session: Session, employee: Employee, vectors: dict[str, np.ndarray]) -> dict[str, Template]:
    """Make `vectors` (model id -> vector) the employee's only templates, in slot 0: those of every model and every
    slot are replaced (an enroll, or a replace: the new photo becomes the only reference)."""
    employee.templates.clear()
    session.flush()
    return add_templates(session=session, employee=employee, slot=0, vectors=vectors)


def add_templates(*, session: Session, employee: Employee, slot: int, vectors: dict[str, np.ndarray]
                  ) -> dict[str, Template]:
    """Add the templates (model id -> vector) of one more reference, in `slot`."""
    templates = {model_id: Template(model_id=model_id, slot=slot, dim=int(vector.shape[0]), vector=vector)
                 for model_id, vector in vectors.items()}
    employee.templates.extend(templates.values())
    record_change(session=session, employee_id=employee.employee_id, action="upsert")
    session.flush()
    return templates


def slots(employee: Employee) -> list[int]:
    """The employee's reference slots, in order: those holding a template of any model."""
    return sorted({t.slot for t in employee.templates})


def delete_slot(*, session: Session, employee: Employee, slot: int) -> None:
    """Remove one reference: its templates of every model and its stored photo."""
    for template in [t for t in employee.templates if t.slot == slot]:
        employee.templates.remove(template)
    for photo in [p for p in employee.references if p.slot == slot]:
        employee.references.remove(photo)
    record_change(session=session, employee_id=employee.employee_id, action="upsert")
    session.flush()


def set_reference(*, session: Session, employee: Employee, slot: int = 0, key_id: str | None = None,
                  nonce: bytes = b"", ciphertext: bytes = b"", only: bool = False) -> None:
    """Put this sealed photo in `slot`, or (no key_id) just empty the slot: a photo is never kept beside a
    template it was not the source of. `only`: every other slot's photo goes too (a replace)."""
    for photo in [p for p in employee.references if only or p.slot == slot]:
        employee.references.remove(photo)
    session.flush()
    if key_id is not None:
        employee.references.append(ReferencePhoto(slot=slot, key_id=key_id, nonce=nonce, ciphertext=ciphertext))
        session.flush()


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


def changes_since(*, session: Session, seq: int, also: set[int] | None = None) -> list[tuple[int, str, str]]:
    """(seq, employee_id, action) of the changes after `seq`, and of the listed earlier ones, in order."""
    condition = GalleryChange.seq > seq
    if also:
        condition = condition | GalleryChange.seq.in_(sorted(also))
    return list(session.execute(
        select(GalleryChange.seq, GalleryChange.employee_id, GalleryChange.action).where(condition)
        .order_by(GalleryChange.seq)))


def current_templates(*, session: Session, employee_ids: list[str], model_id: str
                      ) -> dict[str, tuple[str | None, np.ndarray]]:
    """employee_id -> (name, their templates of `model_id` stacked in slot order) for those of `employee_ids`
    who have one."""
    found: dict[str, tuple[str | None, list[np.ndarray]]] = {}
    for employee_id, name, vector in session.execute(
            select(Employee.employee_id, Employee.name, Template.vector)
            .join(Template, Template.employee_pk == Employee.id)
            .where(Template.model_id == model_id, Employee.employee_id.in_(employee_ids))
            .order_by(Employee.employee_id, Template.slot)):
        found.setdefault(employee_id, (name, []))[1].append(vector)
    return {employee_id: (name, np.stack(vectors)) for employee_id, (name, vectors) in found.items()}


def iter_templates(*, session: Session, model_id: str, batch: int = 10_000
                   ) -> Iterator[tuple[str, str | None, np.ndarray]]:
    """(employee_id, name, vector) of every template made by `model_id`, streamed (an employee with several
    references comes once per reference)."""
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
    """Templates of models other than `model_id`, except those of the next model being rolled out."""
    state = session.get(GalleryState, 1)
    others = [model_id] + ([state.next_model] if state is not None and state.next_model else [])
    return session.scalar(select(func.count(Template.id)).where(Template.model_id.not_in(others))) or 0


# --- the gallery's model: the active one, and the next one being rolled out (app.cli.reembed) ---------------------

MODEL_CHANGE = "model"  # the change feed's action when the active model changes (its employee_id is "")


def adopt_model(*, session: Session, model_id: str) -> str:
    """The gallery's active model. The first replica to start on a gallery makes its own model the active one;
    after that only app.cli.reembed changes it. Commits."""
    state = session.get(GalleryState, 1)
    if state is None:
        session.add(GalleryState(id=1, active_model=model_id))
        try:
            session.commit()
            return model_id
        except IntegrityError:  # another replica's first start won
            session.rollback()
            state = session.get(GalleryState, 1)
    if state.active_model is None:
        state.active_model = model_id
        session.commit()
    return state.active_model


def active_model(*, session: Session, lock: bool = False) -> str | None:
    """`lock`: a shared lock on the state (PostgreSQL) until the transaction ends, so that a switch waits for
    the enrollment that asked, and the enrollment sees a switch that came first."""
    query = select(GalleryState.active_model).where(GalleryState.id == 1)
    return session.scalar(query.with_for_update(read=True) if lock else query)


def set_next_model(*, session: Session, model_id: str | None) -> None:
    session.execute(update(GalleryState).where(GalleryState.id == 1).values(next_model=model_id))


def _has_template(model_id: str):  # noqa: ANN202 - an SQL expression
    return exists().where(Template.employee_pk == Employee.id, Template.model_id == model_id)


def switch_model(*, session: Session, model_id: str, require_complete: bool) -> bool:
    """Make `model_id` the active model and announce it on the change feed, if every employee has a template
    of it (or not `require_complete`). The state's row is written first: it locks out the enrollments' check
    (active_model(lock=True)) until this commits, so none can commit a template of the old model alone after the
    count. Returns False, with nothing changed but the lock, when some employee has no template yet."""
    session.execute(update(GalleryState).where(GalleryState.id == 1).values(next_model=model_id))
    if require_complete and session.scalar(select(func.count(Employee.id)).where(~_has_template(model_id))):
        return False
    session.execute(update(GalleryState).where(GalleryState.id == 1).values(active_model=model_id, next_model=None))
    record_change(session=session, employee_id="", action=MODEL_CHANGE)
    return True


def without_template_or_photo(*, session: Session, model_id: str) -> list[str]:
    """The employees with no template of `model_id` and no stored photo to make one from."""
    has_photo = exists().where(ReferencePhoto.employee_pk == Employee.id)
    query = select(Employee.employee_id).where(~_has_template(model_id), ~has_photo)
    return list(session.scalars(query.order_by(Employee.employee_id)))


def _slot_has_template(model_id: str):  # noqa: ANN202 - an SQL expression
    return exists().where(Template.employee_pk == ReferencePhoto.employee_pk, Template.slot == ReferencePhoto.slot,
                          Template.model_id == model_id)


def count_references_to_embed(*, session: Session, model_id: str) -> int:
    return session.scalar(select(func.count(ReferencePhoto.id)).where(~_slot_has_template(model_id))) or 0


def references_to_embed(*, session: Session, model_id: str, after: int, limit: int
                        ) -> list[tuple[ReferencePhoto, str]]:
    """(stored photo, employee id) of the photos with id past `after` whose slot has no template of
    `model_id`, in id order."""
    return [(row, employee_id) for row, employee_id in session.execute(
        select(ReferencePhoto, Employee.employee_id).join(Employee, ReferencePhoto.employee_pk == Employee.id)
        .where(ReferencePhoto.id > after, ~_slot_has_template(model_id))
        .order_by(ReferencePhoto.id).limit(limit))]


def add_template(*, session: Session, employee_pk: int, reference_id: int, slot: int, vector: np.ndarray,
                 model_id: str) -> bool:
    """Add a template of `model_id` in `slot`, made from stored photo `reference_id`, if that photo is still the
    slot's and the slot has no template of that model. False (nothing written) otherwise: the photo was
    replaced or removed, or the employee deleted, meanwhile.

    The employee's row is written first (an UPDATE that changes nothing): on PostgreSQL it waits for, and then
    holds off, a replace (which locks that row); on SQLite it takes the database's write lock. The check and
    the insert are then safe from both."""
    if not session.execute(text("UPDATE employees SET id = id WHERE id = :pk"), {"pk": employee_pk}).rowcount:
        return False
    if session.scalar(select(ReferencePhoto.id).where(ReferencePhoto.employee_pk == employee_pk,
                                                      ReferencePhoto.slot == slot)) != reference_id:
        return False
    if session.scalar(select(Template.id).where(Template.employee_pk == employee_pk, Template.slot == slot,
                                                Template.model_id == model_id)):
        return False
    session.add(Template(employee_pk=employee_pk, model_id=model_id, slot=slot, dim=int(vector.shape[0]),
                         vector=vector))
    session.flush()
    return True


def audit_records(*, session: Session, employee_id: str | None = None, action: str | None = None,
                  since: datetime | None = None, until: datetime | None = None, offset: int = 0,
                  limit: int = 50) -> tuple[list[AuditRecord], int]:
    """Audit rows matching the filters (each optional; `until` is exclusive), newest first, and how many match."""
    conditions = []
    if employee_id is not None:
        conditions.append(AuditRecord.employee_id == employee_id)
    if action is not None:
        conditions.append(AuditRecord.action == action)
    if since is not None:
        conditions.append(AuditRecord.at >= since)
    if until is not None:
        conditions.append(AuditRecord.at < until)
    total = session.scalar(select(func.count(AuditRecord.id)).where(*conditions)) or 0
    rows = session.scalars(select(AuditRecord).where(*conditions)
                           .order_by(AuditRecord.at.desc(), AuditRecord.id.desc()).offset(offset).limit(limit))
    return list(rows), total
