"""/healthz and /readyz: what the deploy, Nginx and the benchmarks ask before sending traffic."""

import socket
import time

import pytest
from sqlalchemy import create_engine

from app import schema
from app.config import sqlalchemy_url
from app.database import database_of
from tests.loopback import free_port


@pytest.mark.parametrize(
    ("release", "expected"), [("2026-11-21-abc1234", "2026-11-21-abc1234"), (None, None)]
)
def test_healthz_names_the_release(monkeypatch, make_app, database_url, release, expected):
    if release:
        monkeypatch.setenv("DROPSTACK_RELEASE", release)
    response = make_app(database_url).test_client().get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "release": expected}
    assert response.headers["Cache-Control"] == "no-store"


def test_healthz_does_not_need_the_database(make_app):
    client = make_app(f"postgresql://postgres@127.0.0.1:{free_port()}/gone").test_client()
    assert client.get("/healthz").json["status"] == "ok"


def test_readyz_is_200_at_head(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json["status"] == "ready"
    assert response.json["schema"] == schema.head_revision()


def test_readyz_is_503_when_the_schema_is_behind(client, database_url):
    engine = create_engine(sqlalchemy_url(database_url))
    schema.downgrade(engine, "base")
    engine.dispose()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json["status"] == "unavailable"
    assert response.json["reason"] == f"schema at base (empty), head is {schema.head_revision()}"


def test_readyz_follows_the_database_down_and_back(make_app, private_postgres):
    private_postgres.create_database("dropstack")
    app = make_app(private_postgres.url("dropstack"))
    schema.upgrade(database_of(app).engine)
    client = app.test_client()
    assert client.get("/readyz").status_code == 200  # the pool now holds a connection

    private_postgres.stop()
    started = time.monotonic()
    down = client.get("/readyz")
    assert time.monotonic() - started < 3
    assert down.status_code == 503
    assert down.json["reason"].startswith("database unreachable")

    private_postgres.start()
    back = client.get("/readyz")
    assert back.status_code == 200, back.json


def test_readyz_answers_within_the_connect_timeout_when_the_database_hangs(make_app):
    # A listener that never answers: the TCP connection opens, PostgreSQL's greeting never comes.
    # Only libpq's connect_timeout (2 s by default here) ends the wait.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        client = make_app(f"postgresql://postgres@127.0.0.1:{port}/dropstack").test_client()
        started = time.monotonic()
        response = client.get("/readyz")
        elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert response.json["reason"].startswith("database unreachable")
    assert 1 < elapsed < 3.5
