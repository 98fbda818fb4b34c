"""The database schema's version: Alembic configured from code, head and current revisions.

The Alembic configuration is built here rather than read from an alembic.ini, so migrations run
the same way from any working directory: on hosts (``python -m app.manage migrate``), in tests
and on a laptop.
"""

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Any constant works; it only has to be the same for every process that migrates this database.
MIGRATION_LOCK_ID = 0x64726F70  # "drop"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SchemaStatus:
    """Whether the database is reachable and at head, with a one-line reason when it is not."""

    ready: bool
    current: str | None
    head: str
    reason: str


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic Config pointing at app/migrations; env.py uses ``connection`` when given."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Sequential, readable file names: 0002_add_due_dates.py (%% escapes ConfigParser syntax).
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    config.attributes["connection"] = connection
    return config


@cache
def head_revision() -> str:
    """The newest migration's revision id. Scripts never change while a process runs."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at, or None before the first migration."""
    return MigrationContext.configure(connection).get_current_revision()


@contextmanager
def migration_connection(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that holds the migration lock until it commits.

    Every web host runs ``manage migrate`` during a deploy; the lock makes the second one wait
    and then find the schema already at head, instead of racing the first.
    """
    with engine.begin() as connection:
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        yield connection


def next_revision_id() -> str:
    """The id for a new migration: the head's number plus one, zero-padded ("0002")."""
    return f"{int(head_revision()) + 1:04d}"


def upgrade(engine: Engine, target: str = "head") -> None:
    """Apply migrations up to ``target``."""
    with migration_connection(engine) as connection:
        command.upgrade(alembic_config(connection), target)


def downgrade(engine: Engine, target: str) -> None:
    """Revert migrations down to ``target`` ("base" empties the schema)."""
    with migration_connection(engine) as connection:
        command.downgrade(alembic_config(connection), target)


def schema_status(engine: Engine) -> SchemaStatus:
    """Connect once and compare the database's revision with the code's head."""
    head = head_revision()
    try:
        with engine.connect() as connection:
            current = current_revision(connection)
    except SQLAlchemyError as error:
        # The full message (host, port) goes to the log, not to whoever asked the probe.
        log.warning("database unreachable: %s", error)
        cause = getattr(error, "orig", None) or error
        reason = f"database unreachable ({type(cause).__name__})"
        return SchemaStatus(ready=False, current=None, head=head, reason=reason)
    if current != head:
        reason = f"schema at {current or 'base (empty)'}, head is {head}"
        return SchemaStatus(ready=False, current=current, head=head, reason=reason)
    return SchemaStatus(ready=True, current=current, head=head, reason=f"schema at head {head}")
