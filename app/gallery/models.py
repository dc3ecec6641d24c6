"""SQLAlchemy 2.0 models. Embeddings are float32 bytes with their dimension, never a pickle."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
from sqlalchemy import DateTime, ForeignKey, Integer, LargeBinary, String, TypeDecorator, UniqueConstraint
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

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    employee_id: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    templates: Mapped[list[Template]] = relationship(
        back_populates="employee", cascade="all, delete-orphan", passive_deletes=True
    )


class Template(Base):
    """One reference embedding of an employee, made by one model."""

    __tablename__ = "templates"
    __table_args__ = (UniqueConstraint("employee_pk", "model_id", name="uq_templates_employee_model"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    employee_pk: Mapped[int] = mapped_column(ForeignKey("employees.id", ondelete="CASCADE"), index=True)
    model_id: Mapped[str] = mapped_column(String(64), index=True)
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[np.ndarray] = mapped_column(Float32Vector)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    employee: Mapped[Employee] = relationship(back_populates="templates")
