"""SQLAlchemy 2.0 models. Embeddings are float32 bytes with their dimension, never a pickle."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Float32Vector(TypeDecorator):
    """A 1-D float32 vector stored as its little-endian bytes."""

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value: np.ndarray | None, dialect) -> bytes | None:  # noqa: ANN001
        return None if value is None else np.ascontiguousarray(value, dtype="<f4").tobytes()

    def process_result_value(self, value: bytes | None, dialect) -> np.ndarray | None:  # noqa: ANN001
        return None if value is None else np.frombuffer(value, dtype="<f4").copy()


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC timestamp on every backend (SQLite drops the zone; this puts it back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:  # noqa: ANN001
        return None if value is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:  # noqa: ANN001
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Employee(Base):
    __tablename__ = "employees"
    # Ids are unique regardless of case: "E-1" and "e-1" are one employee (migration 0003).
    __table_args__ = (Index("ux_employees_employee_id_lower", text("lower(employee_id)"), unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    employee_id: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    templates: Mapped[list[Template]] = relationship(
        back_populates="employee", cascade="all, delete-orphan", passive_deletes=True
    )
    references: Mapped[list[ReferencePhoto]] = relationship(
        back_populates="employee", cascade="all, delete-orphan", passive_deletes=True
    )


class Template(Base):
    """One reference embedding of an employee, made by one model from the photo in one slot.

    Slot 0 is the enrollment's photo; slots 1 and up are the references added to it
    (POST /employees/{id}/references, at most FACEGATE_MAX_REFERENCES in all). A decision uses the nearest.
    """

    __tablename__ = "templates"
    __table_args__ = (UniqueConstraint("employee_pk", "model_id", "slot", name="uq_templates_employee_model_slot"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    employee_pk: Mapped[int] = mapped_column(ForeignKey("employees.id", ondelete="CASCADE"), index=True)
    model_id: Mapped[str] = mapped_column(String(64), index=True)
    slot: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[np.ndarray] = mapped_column(Float32Vector)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    employee: Mapped[Employee] = relationship(back_populates="templates")


class ReferencePhoto(Base):
    """A reference photo (the one of a template slot), encrypted (AES-256-GCM, app.services.references), kept only
    when the reference store is on: it lets a new model embed the employee again without a new photo. Deleted
    with its slot, and with the employee."""

    __tablename__ = "reference_photos"
    # An id is never handed out twice, on SQLite too (which otherwise reuses the highest one after a delete): a
    # replaced photo's successor must not pass for it (repository.add_template).
    __table_args__ = (UniqueConstraint("employee_pk", "slot", name="uq_reference_photos_employee_slot"),
                      {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    employee_pk: Mapped[int] = mapped_column(ForeignKey("employees.id", ondelete="CASCADE"))
    slot: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    key_id: Mapped[str] = mapped_column(String(16))  # which encryption key sealed it
    nonce: Mapped[bytes] = mapped_column(LargeBinary)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)  # the photo's bytes and GCM's tag
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    employee: Mapped[Employee] = relationship(back_populates="references")


class Group(Base):
    """A set of employees, such as the people a door admits: a key bound to groups (ApiKey.bound) verifies and
    identifies only their members, and /identify searches only them. Deleting a group deletes no employee."""

    __tablename__ = "groups"
    # Ids are unique regardless of case, as employees' are (migration 0009).
    __table_args__ = (Index("ux_groups_group_id_lower", text("lower(group_id)"), unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    group_id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class GroupMember(Base):
    """An employee's membership of a group; goes with either (the database's cascades)."""

    __tablename__ = "group_members"
    __table_args__ = (Index("ix_group_members_employee", "employee_pk"),)

    group_pk: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True)
    employee_pk: Mapped[int] = mapped_column(ForeignKey("employees.id", ondelete="CASCADE"), primary_key=True)


class KeyGroup(Base):
    """A group a key is bound to. A deleted group's bindings go with it, and the key stays bound (to what is
    left, perhaps nothing): it never falls back to the whole gallery."""

    __tablename__ = "api_key_groups"
    __table_args__ = (Index("ix_api_key_groups_group", "group_pk"),)

    key_pk: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True)
    group_pk: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True)


class GalleryState(Base):
    """One row: the model whose templates every replica serves, and the one being rolled out beside it
    (app.cli.reembed). Enrollments make templates of both; the switch happens when every employee has one of the
    next model."""

    __tablename__ = "gallery_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # always 1
    active_model: Mapped[str | None] = mapped_column(String(64), nullable=True)
    next_model: Mapped[str | None] = mapped_column(String(64), nullable=True)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class GalleryChange(Base):
    """The change feed: one row per enroll, replace or delete, written in the same transaction.

    Replicas follow it (app.gallery.feed) to keep their in-memory index in step with the database.
    """

    __tablename__ = "gallery_changes"

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                     autoincrement=True)
    # the employee's id; a group's id for action "group"; "" for "model"
    employee_id: Mapped[str] = mapped_column(String(64))
    # "upsert", "delete", "model" (the active model changed) or "group" (a group's members or existence)
    action: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UTCDateTime, server_default=func.now(), index=True)


class ApiKey(Base):
    """An API key, kept only as the SHA-256 of its secret part. `key_id` is the public part, in the key."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32), unique=True, index=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(String(16))  # "admin" or "verify"
    name: Mapped[str | None] = mapped_column(String(200))
    # A door's key: it reaches only the members of its groups (api_key_groups), none if they are all gone.
    bound: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    # A key that must pass a head-turn challenge at /verify and /identify (a plain request is refused).
    liveness: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class LivenessChallenge(Base):
    """A head-turn challenge: its prompts, for the key that asked for it, answerable once before it expires.
    Stored so that any replica can check the answer; rows past their expiry are deleted as new ones are made."""

    __tablename__ = "liveness_challenges"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    challenge_id: Mapped[str] = mapped_column(String(32), unique=True)
    key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)  # None when auth is off
    prompts: Mapped[str] = mapped_column(String(64))  # "left,right,left"
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class AuditRecord(Base):
    """Who did what to whom, and what was decided. Never an image, never an embedding."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)  # None when auth is off
    action: Mapped[str] = mapped_column(String(16))  # enroll, replace, add_reference, delete, verify...
    employee_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    decision: Mapped[str] = mapped_column(String(32))  # enrolled, match, no_match, unknown, or an error code
    distance: Mapped[float | None] = mapped_column(Float, nullable=True)
    threshold: Mapped[float | None] = mapped_column(Float, nullable=True)  # the one a decision used
    # /identify: the AS-norm score of the best match, and the rule that decided ("as-norm" or "distance",
    # whose units the threshold is in)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    rule: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # The groups a verify or identify was confined to (a bound key's, or an admin's `group`), comma-separated;
    # null for the whole gallery
    groups: Mapped[str | None] = mapped_column(Text, nullable=True)
    # verify and identify with a head-turn challenge: passed, or the check that failed
    liveness: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # X-Request-ID of the request (the client's or one made up): the row's line in the logs
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    # Refusals of anonymous clients are aggregated (app.services.audit): one row stands for `count` of them,
    # from `source` (the client's address), within a window. Every other row is one event.
    count: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    source: Mapped[str | None] = mapped_column(String(64), nullable=True)


class VerifyFailure(Base):
    """One failed verification, kept for the brute-force window: every replica counts the same rows."""

    __tablename__ = "verify_failures"
    __table_args__ = (Index("ix_verify_failures_employee_at", "employee_id", "at"),
                      Index("ix_verify_failures_key_at", "key_id", "at"))

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    employee_id: Mapped[str] = mapped_column(String(64))  # lower case: ids are unique regardless of case
    key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    groups: Mapped[str | None] = mapped_column(Text, nullable=True)  # the key's groups, as in the audit row
