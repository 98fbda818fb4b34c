"""Fixtures for the app's tests: a real PostgreSQL server, a fresh database per test, an app.

One throwaway cluster serves the whole session. A template database is migrated to head once;
each test gets its own copy (CREATE DATABASE ... TEMPLATE takes a few milliseconds), so tests
never see each other's rows and the schema under test is the one Alembic builds.
"""

import uuid
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine

from app import create_app, schema
from app.config import ENVIRONMENT_VARIABLES, sqlalchemy_url
from app.database import database_of
from tests.postgres_cluster import PostgresCluster

TEMPLATE_DATABASE = "dropstack_template"
# A server clock that is not UTC (+05:30), so a timestamp the app forgets to convert shows.
SERVER_SETTINGS = ("timezone=Asia/Kolkata",)
# What the gunicorn and manage subprocesses read besides the app's settings.
OTHER_VARIABLES = (
    "GUNICORN_BIND",
    "WEB_CONCURRENCY",
    "GUNICORN_THREADS",
    "GUNICORN_GRACEFUL_TIMEOUT",
    "FORWARDED_ALLOW_IPS",
    "GUNICORN_CMD_ARGS",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep a developer's own DATABASE_URL, SECRET_KEY, ... out of every test."""
    for name in (*ENVIRONMENT_VARIABLES, *OTHER_VARIABLES):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """The session's PostgreSQL server, removed at the end even when tests fail."""
    with PostgresCluster(settings=SERVER_SETTINGS) as cluster:
        yield cluster


def migrate_to_head(database_url: str) -> None:
    """Run the real migrations, the way `python -m app.manage migrate` does."""
    engine = create_engine(sqlalchemy_url(database_url))
    try:
        schema.upgrade(engine, "head")
    finally:
        engine.dispose()


@pytest.fixture
def private_postgres() -> Iterator[PostgresCluster]:
    """A server for this test alone, for tests that stop and restart it."""
    with PostgresCluster(settings=SERVER_SETTINGS) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def migrated_template(postgres: PostgresCluster) -> str:
    """A database at head that every test database is copied from."""
    postgres.create_database(TEMPLATE_DATABASE)
    migrate_to_head(postgres.url(TEMPLATE_DATABASE))
    return TEMPLATE_DATABASE


def new_database(postgres: PostgresCluster, template: str | None) -> Iterator[str]:
    """A uniquely named database (empty, or a copy of ``template``); its URL; dropped after."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    postgres.create_database(name, template=template)
    try:
        yield postgres.url(name)
    finally:
        postgres.drop_database(name)


@pytest.fixture
def database_url(postgres: PostgresCluster, migrated_template: str) -> Iterator[str]:
    """A fresh database at the Alembic head, for this test only."""
    yield from new_database(postgres, template=migrated_template)


@pytest.fixture
def empty_database_url(postgres: PostgresCluster) -> Iterator[str]:
    """A fresh database with no tables at all (for migration tests)."""
    yield from new_database(postgres, template=None)


def app_config(database_url: str, **overrides: object) -> dict[str, object]:
    """The test_config every test app starts from."""
    return {
        "TESTING": True,
        "DROPSTACK_ENV": "development",
        "DATABASE_URL": database_url,
        "SECRET_KEY": "test",
        **overrides,
    }


@pytest.fixture
def make_app() -> Iterator:
    """Build apps with extra settings; their connection pools are closed after the test."""
    apps: list[Flask] = []

    def make(database_url: str, **overrides: object) -> Flask:
        built = create_app(app_config(database_url, **overrides))
        apps.append(built)
        return built

    yield make
    for built in apps:
        database_of(built).engine.dispose()


@pytest.fixture
def app(make_app, database_url: str) -> Flask:
    """The app on this test's own database."""
    return make_app(database_url)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client for ``app``."""
    return app.test_client()
