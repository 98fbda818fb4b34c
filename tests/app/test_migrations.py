"""Alembic migrations on a real database: they build exactly what app.models describes."""

import threading

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import DataError, IntegrityError

from app import schema
from app.config import sqlalchemy_url
from app.models import Base


@pytest.fixture
def empty_engine(empty_database_url):
    """An engine on a database with no tables."""
    engine = create_engine(sqlalchemy_url(empty_database_url))
    yield engine
    engine.dispose()


def table_names(engine):
    """The tables in the public schema."""
    return set(inspect(engine).get_table_names())


def test_upgrade_head_then_downgrade_base(empty_engine):
    assert table_names(empty_engine) == set()

    schema.upgrade(empty_engine, "head")
    assert table_names(empty_engine) == {"tasks", "task_archives", "alembic_version"}
    columns = {column["name"] for column in inspect(empty_engine).get_columns("tasks")}
    assert columns == {"id", "title", "done", "created_at", "updated_at"}
    with empty_engine.connect() as connection:
        assert schema.current_revision(connection) == schema.head_revision()

    schema.downgrade(empty_engine, "base")
    assert table_names(empty_engine) == {"alembic_version"}
    with empty_engine.connect() as connection:
        assert schema.current_revision(connection) is None


def test_models_match_the_migrations(empty_engine):
    # A model change without a migration (or the reverse) shows up here as a difference.
    schema.upgrade(empty_engine, "head")
    with empty_engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


@pytest.mark.parametrize(
    ("title", "refused_with", "message"),
    [
        ("", IntegrityError, "ck_tasks_title_length"),
        ("x" * 201, DataError, "character varying\\(200\\)"),
        ("x" * 200, None, None),
    ],
)
def test_the_database_enforces_the_title_length(empty_engine, title, refused_with, message):
    # Defence in depth: rows written by anything other than the API obey the same rule.
    schema.upgrade(empty_engine, "head")
    insert = text("INSERT INTO tasks (title) VALUES (:title)")
    with empty_engine.connect() as connection:
        if refused_with is None:
            connection.execute(insert, {"title": title})
        else:
            with pytest.raises(refused_with, match=message):
                connection.execute(insert, {"title": title})


def test_concurrent_migrations_wait_for_each_other(empty_engine):
    # Every web host runs `manage migrate` during a deploy, possibly at the same moment.
    start_together = threading.Barrier(3)
    errors: list[BaseException] = []

    def migrate():
        start_together.wait()
        try:
            schema.upgrade(empty_engine, "head")
        except BaseException as error:  # reported below, with the others
            errors.append(error)

    threads = [threading.Thread(target=migrate) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert not any(thread.is_alive() for thread in threads), "a migration hung"
    assert errors == []
    assert "tasks" in table_names(empty_engine)


def test_next_revision_id_follows_the_head():
    assert schema.next_revision_id() == f"{int(schema.head_revision()) + 1:04d}"
