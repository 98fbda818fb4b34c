"""Every error is a JSON body with the request id, never an HTML page or a stack trace."""

import json

import pytest

from tests.loopback import free_port


@pytest.mark.parametrize(
    "path", ["/nope", "/api", "/api/tasks/", "/api/tasks/1/nope", "/static/missing.css"]
)
def test_unknown_urls_are_404_json(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response.mimetype == "application/json"
    assert response.json["error"] == "not_found"
    assert response.json["request_id"] == response.headers["X-Request-ID"]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("put", "/api/tasks", {"GET", "POST"}),
        ("delete", "/api/tasks", {"GET", "POST"}),
        ("put", "/api/tasks/1", {"GET", "PATCH", "DELETE"}),
        ("get", "/api/tasks/1/toggle", {"POST"}),
        ("post", "/healthz", {"GET"}),
    ],
)
def test_wrong_method_is_405_json_with_allow_header(client, method, path, allowed):
    response = getattr(client, method)(path)
    assert response.status_code == 405
    assert response.json["error"] == "method_not_allowed"
    assert set(response.headers["Allow"].split(", ")) - {"HEAD", "OPTIONS"} == allowed


@pytest.mark.parametrize(
    ("kwargs"),
    [
        {"json": {"title": "x" * (64 * 1024)}},
        {"data": {"title": "x" * (64 * 1024)}},
    ],
    ids=["json", "form"],
)
def test_body_over_64_kib_is_413_json(client, kwargs):
    response = client.post("/api/tasks", **kwargs)
    assert response.status_code == 413
    assert response.json["error"] == "request_entity_too_large"


@pytest.mark.parametrize(("size", "status"), [(900, 400), (1100, 413)])
def test_max_content_length_comes_from_the_environment(
    monkeypatch, make_app, database_url, size, status
):
    monkeypatch.setenv("MAX_CONTENT_LENGTH", "1024")
    client = make_app(database_url).test_client()
    body = json.dumps({"title": "x" * size})  # over 200 characters: a 400 when it gets through
    response = client.post("/api/tasks", data=body, content_type="application/json")
    assert response.status_code == status


def test_unhandled_exception_is_500_json_with_request_id(make_app, database_url, caplog):
    app = make_app(database_url, PROPAGATE_EXCEPTIONS=False)

    @app.get("/test-only/boom")
    def boom():
        raise RuntimeError("secret internals")

    response = app.test_client().get("/test-only/boom", headers={"X-Request-ID": "req-500-abc"})
    assert response.status_code == 500
    assert response.mimetype == "application/json"
    assert response.json["error"] == "internal_server_error"
    assert response.json["request_id"] == "req-500-abc"
    assert b"secret internals" not in response.data
    assert b"Traceback" not in response.data
    logged = [r for r in caplog.records if r.exc_info and r.exc_info[0] is RuntimeError]
    assert logged
    assert logged[0].request_id == "req-500-abc"


def test_database_down_is_503_json(make_app):
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/dropstack"
    client = make_app(dead, PROPAGATE_EXCEPTIONS=False).test_client()
    response = client.get("/api/tasks")
    assert response.status_code == 503
    assert response.json["error"] == "database_unavailable"


def test_index_lists_the_endpoints(client):
    response = client.get("/")
    assert response.status_code == 200
    endpoints = response.json["endpoints"]
    for expected in (
        "GET /api/tasks",
        "POST /api/tasks",
        "GET /api/tasks/<task_id>",
        "PATCH /api/tasks/<task_id>",
        "DELETE /api/tasks/<task_id>",
        "POST /api/tasks/<task_id>/toggle",
        "GET /healthz",
        "GET /readyz",
    ):
        assert expected in endpoints


@pytest.mark.parametrize(
    ("path", "content_type", "text"),
    [
        ("/static/robots.txt", "text/plain", "Disallow: /"),
        ("/static/index.html", "text/html", "POST /api/tasks"),
    ],
)
def test_static_files(client, path, content_type, text):
    response = client.get(path)
    assert response.status_code == 200
    assert response.mimetype == content_type
    assert text in response.get_data(as_text=True)
