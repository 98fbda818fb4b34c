"""JSON log lines on stdout, one per request, tied together by the request id."""

import contextlib
import io
import json
import logging
import re

import pytest

from app.logs import JsonStdoutHandler
from tests.loopback import free_port

GENERATED_REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")
PASSWORD = "pw-that-must-never-be-logged"


@pytest.fixture
def log_stream():
    """Receives the JSON log lines the test's apps write to stdout."""
    return io.StringIO()


@pytest.fixture
def make_logged_app(make_app, log_stream):
    """Build an app while stdout is ``log_stream``: its log handler keeps writing there."""

    def make(database_url, **overrides):
        with contextlib.redirect_stdout(log_stream):
            return make_app(database_url, **overrides)

    return make


@pytest.fixture
def app(make_logged_app, database_url):
    """The app, logging to ``log_stream``."""
    return make_logged_app(database_url)


def log_entries(stream):
    """Every line written so far, parsed; each line must be one complete JSON object."""
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def request_entries(stream):
    """Only the one-per-request lines."""
    return [entry for entry in log_entries(stream) if entry["logger"] == "app.logs"]


def test_create_app_installs_exactly_one_json_handler(make_app, database_url):
    make_app(database_url)
    make_app(database_url)
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, JsonStdoutHandler)]
    assert len(handlers) == 1


def test_each_request_is_one_json_line_with_its_outcome(client, log_stream):
    response = client.post("/api/tasks", json={"title": "logged"})
    (entry,) = request_entries(log_stream)
    assert entry["request_id"] == response.headers["X-Request-ID"]
    assert GENERATED_REQUEST_ID.match(entry["request_id"])
    assert entry["level"] == "INFO"
    assert entry["message"] == "POST /api/tasks 201"
    assert (entry["method"], entry["path"], entry["status"]) == ("POST", "/api/tasks", 201)
    assert isinstance(entry["duration_ms"], float)
    assert 0 <= entry["duration_ms"] < 5000
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$", entry["time"])


def test_error_responses_are_logged_too(client, log_stream):
    client.get("/no-such-page")
    (entry,) = request_entries(log_stream)
    assert entry["status"] == 404


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("0f8fad5b-d9cb-469f-a165-70867728950e", True),  # a UUID
        ("a" * 32, True),  # Nginx's $request_id
        ("trace:abc.DEF_123-x", True),
        ("", False),
        ("x" * 129, False),
        ("has spaces in it", False),
        ('"><script>', False),
        ("-starts-with-dash", False),
    ],
)
def test_request_id_is_taken_from_the_header_only_when_sane(client, log_stream, sent, kept):
    response = client.get("/healthz", headers={"X-Request-ID": sent})
    returned = response.headers["X-Request-ID"]
    if kept:
        assert returned == sent
    else:
        assert GENERATED_REQUEST_ID.match(returned)
    (entry,) = request_entries(log_stream)
    assert entry["request_id"] == returned


def test_each_request_gets_its_own_generated_id(client):
    ids = {client.get("/healthz").headers["X-Request-ID"] for _ in range(3)}
    assert len(ids) == 3


def test_lines_logged_while_handling_a_request_carry_its_id(app, log_stream):
    @app.get("/test-only/log")
    def log_something():
        logging.getLogger("app.test").warning("inside the view")
        return {"ok": True}

    app.test_client().get("/test-only/log", headers={"X-Request-ID": "req-42"})
    (inside,) = [e for e in log_entries(log_stream) if e["logger"] == "app.test"]
    assert inside == {
        "time": inside["time"],
        "level": "WARNING",
        "logger": "app.test",
        "message": "inside the view",
        "request_id": "req-42",
    }


def test_the_database_password_is_never_logged(log_stream, make_logged_app, database_url):
    with_password = database_url.replace("postgres@", f"postgres:{PASSWORD}@")
    dead = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{free_port()}/dropstack"
    for url in (with_password, dead):
        client = make_logged_app(url, PROPAGATE_EXCEPTIONS=False).test_client()
        client.get("/readyz")
        client.post("/api/tasks", json={"title": "x"})
    entries = log_entries(log_stream)
    # The lines that could have carried it were written: the database named at startup, a
    # request served, the outage reported.
    created = [e for e in entries if e["message"] == "app created"]
    assert [e["database"] for e in created] == [
        with_password.replace(PASSWORD, "***").replace("postgresql:", "postgresql+psycopg:"),
        dead.replace(PASSWORD, "***").replace("postgresql:", "postgresql+psycopg:"),
    ]
    assert any(e.get("status") == 201 for e in entries)
    assert any(e["message"].startswith("database unreachable") for e in entries)
    assert PASSWORD not in log_stream.getvalue()
