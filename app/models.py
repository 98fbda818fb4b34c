"""The database tables, as SQLAlchemy 2 typed models. Alembic migrations create them."""

from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    MetaData,
    String,
    false,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

TITLE_MAX_LENGTH = 200

# Deterministic constraint names, so migrations can refer to them and autogenerate sees no drift.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """The declarative base; its metadata is what Alembic compares migrations against."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Task(Base):
    """One item on the task list."""

    __tablename__ = "tasks"
    __table_args__ = (
        CheckConstraint(f"char_length(title) BETWEEN 1 AND {TITLE_MAX_LENGTH}", "title_length"),
        # Serves the list endpoint's newest-first order (scanned backwards).
        Index(None, "created_at", "id"),
    )
    # Read server-side timestamps back with RETURNING on insert and update.
    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012 (SQLAlchemy's documented spelling)

    id: Mapped[int] = mapped_column(Identity(), primary_key=True)
    title: Mapped[str] = mapped_column(String(TITLE_MAX_LENGTH))
    done: Mapped[bool] = mapped_column(default=False, server_default=false())
    # The database's clock, not each web host's: one source of time for ordering.
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class TaskArchive(Base):
    """A task the background job archived; the primary key makes the job idempotent and
    ``runs`` counts how often it ran for the task (more than 1: a rerun, detected)."""

    __tablename__ = "task_archives"

    task_id: Mapped[int] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )
    archived_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    runs: Mapped[int] = mapped_column(server_default="1")
