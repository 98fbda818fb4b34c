"""Bearer tokens: writes need API_WRITE_TOKEN, reads API_READ_TOKEN, when they are set."""

import contextlib
import io
import logging
import secrets

import pytest

from app import auth
from app.config import ConfigError, load_config

WRITE_TOKEN = secrets.token_urlsafe(32)
READ_TOKEN = secrets.token_urlsafe(32)
WRITES = [
    ("POST", "/api/tasks", {"title": "new"}),
    ("PATCH", "/api/tasks/1", {"done": True}),
    ("POST", "/api/tasks/1/toggle", None),
    ("DELETE", "/api/tasks/1", None),
]
READS = [("GET", "/api/tasks"), ("GET", "/api/tasks/1")]


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def seeded_database(make_app, database_url):
    """The test database with task 1 in it, created by an app without tokens."""
    response = make_app(database_url).test_client().post("/api/tasks", json={"title": "one"})
    assert response.status_code == 201
    return database_url


@pytest.fixture
def write_protected(make_app, seeded_database):
    return make_app(seeded_database, API_WRITE_TOKEN=WRITE_TOKEN).test_client()


@pytest.fixture
def fully_protected(make_app, seeded_database):
    return make_app(
        seeded_database, API_WRITE_TOKEN=WRITE_TOKEN, API_READ_TOKEN=READ_TOKEN
    ).test_client()


def assert_unauthorized(response, invalid_token):
    assert response.status_code == 401
    assert response.json["error"] == "unauthorized"
    assert response.json["request_id"] == response.headers["X-Request-ID"]
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="dropstack"')
    assert ('error="invalid_token"' in challenge) is invalid_token


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
@pytest.mark.parametrize(
    ("headers", "invalid"),
    [
        ({}, False),
        ({"Authorization": f"Basic {WRITE_TOKEN}"}, False),
        (bearer(WRITE_TOKEN[:-1]), True),
        (bearer(WRITE_TOKEN.upper()), True),
        (bearer("t\u00f6k\u00e9n-\x00"), True),
    ],
    ids=["none", "basic", "prefix", "case", "non-ascii"],
)
def test_writes_without_the_token_are_401_and_change_nothing(
    write_protected, method, path, body, headers, invalid
):
    before = write_protected.get("/api/tasks").json
    response = write_protected.open(path, method=method, json=body, headers=headers)
    assert_unauthorized(response, invalid)
    assert write_protected.get("/api/tasks").json == before


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
def test_writes_with_the_token_succeed(write_protected, method, path, body):
    response = write_protected.open(path, method=method, json=body, headers=bearer(WRITE_TOKEN))
    assert response.status_code in (200, 201, 204)


def test_the_scheme_is_case_insensitive(write_protected):
    headers = {"Authorization": f"bearer {WRITE_TOKEN}"}
    assert (
        write_protected.post("/api/tasks", json={"title": "x"}, headers=headers).status_code == 201
    )


@pytest.mark.parametrize(("method", "path"), READS)
def test_reads_stay_open_with_only_a_write_token(write_protected, method, path):
    assert write_protected.open(path, method=method).status_code == 200


@pytest.mark.parametrize(("method", "path"), READS)
@pytest.mark.parametrize(
    ("token", "status"),
    [(None, 401), ("wrong", 401), (READ_TOKEN, 200), (WRITE_TOKEN, 200)],
    ids=["none", "wrong", "read-token", "write-token"],  # never a token in a test id or a log
)
def test_reads_need_a_token_when_a_read_token_is_set(fully_protected, method, path, token, status):
    headers = bearer(token) if token else {}
    assert fully_protected.open(path, method=method, headers=headers).status_code == status


def test_the_read_token_cannot_write(fully_protected):
    response = fully_protected.post("/api/tasks", json={"title": "x"}, headers=bearer(READ_TOKEN))
    assert_unauthorized(response, invalid_token=True)


@pytest.mark.parametrize("path", ["/", "/healthz", "/readyz", "/static/robots.txt"])
def test_probes_and_the_index_stay_open(fully_protected, path):
    assert fully_protected.get(path).status_code == 200


def test_without_tokens_the_api_is_open_as_before(client):
    assert client.post("/api/tasks", json={"title": "open"}).status_code == 201


def test_the_token_never_reaches_the_logs(make_app, seeded_database, caplog):
    stdout = io.StringIO()
    caplog.set_level(logging.DEBUG)
    with contextlib.redirect_stdout(stdout):
        client = make_app(seeded_database, API_WRITE_TOKEN=WRITE_TOKEN).test_client()
        client.post("/api/tasks", json={"title": "ok"}, headers=bearer(WRITE_TOKEN))
        client.post("/api/tasks", json={"title": "no"}, headers=bearer(WRITE_TOKEN + "x"))
        client.post(f"/api/tasks?token={WRITE_TOKEN}", json={"title": "q"})
        client.get("/nope", headers=bearer(WRITE_TOKEN))
    logged = stdout.getvalue() + caplog.text
    assert '"status": 201' in logged and '"status": 401' in logged  # the requests were logged
    assert WRITE_TOKEN not in logged
    assert "Authorization" not in logged and "Bearer" not in logged


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (None, None),
        ("", None),
        ("Bearer", None),
        ("Bearer   ", None),
        ("Basic abc", None),
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        ("Bearerabc", None),
    ],
)
def test_bearer_token_parsing(header, token):
    assert auth.bearer_token(header) == token


@pytest.mark.parametrize(
    ("method", "write", "read", "allowed"),
    [
        ("POST", None, None, None),
        ("GET", "w", None, None),
        ("DELETE", "w", None, ["w"]),
        ("PUT", "w", "r", ["w"]),
        ("GET", "w", "r", ["r", "w"]),
        ("HEAD", None, "r", ["r"]),
        ("PATCH", None, "r", None),  # a read token alone leaves writes as they were: open
    ],
)
def test_which_tokens_each_method_needs(method, write, read, allowed):
    assert auth.tokens_for(method, write, read) == allowed


DATABASE_URL = "postgresql://app@db/app"


@pytest.mark.parametrize("name", ["API_WRITE_TOKEN", "API_READ_TOKEN"])
@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("abc123", "is too short or repetitive (6 characters)"),
        ("a" * 40, "is too short or repetitive (40 characters)"),
        ("has spaces " + secrets.token_hex(16), "must be a bearer token"),
        ("t\u00f6ken" + secrets.token_hex(16), "must be a bearer token"),
    ],
    ids=["short", "repetitive", "spaces", "non-ascii"],
)
def test_unusable_tokens_stop_the_app_without_repeating_them(name, value, problem):
    with pytest.raises(ConfigError) as raised:
        load_config({"DATABASE_URL": DATABASE_URL, "DROPSTACK_ENV": "development", name: value})
    message = str(raised.value)
    assert message.startswith(name)
    assert problem in message
    assert value not in message
    assert "\n" not in message


def test_tokens_come_from_the_environment():
    environment = {"DATABASE_URL": DATABASE_URL, "DROPSTACK_ENV": "development"}
    config = load_config({**environment, "API_WRITE_TOKEN": f"  {WRITE_TOKEN}\n"})
    assert (config["API_WRITE_TOKEN"], config["API_READ_TOKEN"]) == (WRITE_TOKEN, None)
