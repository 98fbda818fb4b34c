"""The /api/tasks endpoints on a real PostgreSQL database."""

import re
from datetime import UTC, datetime, timedelta

import pytest

UTC_ISO_8601 = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$"


def create(client, title="Buy milk", **fields):
    """POST a task as JSON and return the created task."""
    response = client.post("/api/tasks", json={"title": title, **fields})
    assert response.status_code == 201, response.json
    return response.json


def test_create_returns_201_with_location_and_the_task(client):
    response = client.post("/api/tasks", json={"title": "  Buy milk  "})
    assert response.status_code == 201
    task = response.json
    assert response.headers["Location"] == f"/api/tasks/{task['id']}"
    assert task["title"] == "Buy milk"  # stripped
    assert task["done"] is False
    assert client.get(response.headers["Location"]).json == task


def test_timestamps_are_utc_iso_8601_from_the_database(client):
    before = datetime.now(UTC)
    task = create(client)
    for field in ("created_at", "updated_at"):
        assert re.match(UTC_ISO_8601, task[field]), task[field]
        moment = datetime.fromisoformat(task[field])
        assert moment.utcoffset() == timedelta(0)
        assert abs(moment - before) < timedelta(seconds=30)


def test_list_is_newest_first(client):
    ids = [create(client, title=f"task {n}")["id"] for n in range(3)]
    listed = client.get("/api/tasks").json["tasks"]
    assert [task["id"] for task in listed] == list(reversed(ids))


@pytest.mark.parametrize(
    ("query", "expected_titles"),
    [
        ("?done=true", ["finished"]),
        ("?done=false", ["open"]),
        ("?done=FALSE", ["open"]),
        ("", ["open", "finished"]),
        ("?limit=1", ["open"]),
        ("?done=true&limit=5", ["finished"]),
    ],
)
def test_list_filters(client, query, expected_titles):
    create(client, title="finished", done=True)
    create(client, title="open")
    titles = [task["title"] for task in client.get(f"/api/tasks{query}").json["tasks"]]
    assert titles == expected_titles


def test_list_empty(client):
    assert client.get("/api/tasks").json == {"tasks": []}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"title": "Renamed"}, {"title": "Renamed", "done": False}),
        ({"done": True}, {"title": "Buy milk", "done": True}),
        ({"title": " Both ", "done": True}, {"title": "Both", "done": True}),
    ],
)
def test_patch_changes_only_the_given_fields(client, body, expected):
    task = create(client)
    response = client.patch(f"/api/tasks/{task['id']}", json=body)
    assert response.status_code == 200
    assert {key: response.json[key] for key in expected} == expected
    assert client.get(f"/api/tasks/{task['id']}").json == response.json


def test_patch_moves_updated_at_but_not_created_at(client):
    task = create(client)
    patched = client.patch(f"/api/tasks/{task['id']}", json={"title": "later"}).json
    assert patched["created_at"] == task["created_at"]
    assert datetime.fromisoformat(patched["updated_at"]) > datetime.fromisoformat(
        task["updated_at"]
    )


def test_toggle_flips_done_each_time(client):
    task = create(client)
    url = f"/api/tasks/{task['id']}/toggle"
    first = client.post(url)
    assert first.status_code == 200
    assert first.json["done"] is True
    assert first.json["updated_at"] > task["updated_at"]
    assert client.post(url).json["done"] is False
    assert client.get(f"/api/tasks/{task['id']}").json["done"] is False


def test_delete_returns_204_and_the_task_is_gone(client):
    task = create(client)
    response = client.delete(f"/api/tasks/{task['id']}")
    assert response.status_code == 204
    assert response.data == b""
    assert client.get(f"/api/tasks/{task['id']}").status_code == 404
    assert client.delete(f"/api/tasks/{task['id']}").status_code == 404


@pytest.mark.parametrize(
    ("form", "expected_done"),
    [
        ({"title": "from a form"}, False),
        ({"title": "from a form", "done": "on"}, True),  # a checked checkbox
        ({"title": "from a form", "done": "true"}, True),
        ({"title": "from a form", "done": "0"}, False),
    ],
)
def test_create_from_form_input(client, form, expected_done):
    response = client.post("/api/tasks", data=form)
    assert response.status_code == 201
    assert response.json["title"] == "from a form"
    assert response.json["done"] is expected_done


def test_patch_from_multipart_form_input(client):
    task = create(client)
    response = client.patch(
        f"/api/tasks/{task['id']}", data={"done": "yes"}, content_type="multipart/form-data"
    )
    assert response.status_code == 200
    assert response.json["done"] is True


@pytest.mark.parametrize(
    ("method", "path", "body", "field", "message"),
    [
        ("post", "/api/tasks", {}, "title", "title is required"),
        ("post", "/api/tasks", {"title": ""}, "title", "title must be 1 to 200 characters"),
        ("post", "/api/tasks", {"title": "   "}, "title", "title must be 1 to 200 characters"),
        ("post", "/api/tasks", {"title": "x" * 201}, "title", "title must be 1 to 200 characters"),
        ("post", "/api/tasks", {"title": 42}, "title", "title must be a string"),
        ("post", "/api/tasks", {"title": None}, "title", "title must be a string"),
        ("post", "/api/tasks", {"title": "ok", "done": "yes"}, "done", "done must be a JSON"),
        ("post", "/api/tasks", {"title": "ok", "done": 1}, "done", "done must be a JSON"),
        ("post", "/api/tasks", {"title": "ok", "titel": "typo"}, "titel", "unknown field"),
        ("post", "/api/tasks", {"title": "ok", "id": 7}, "id", "unknown field"),
        ("patch", "/api/tasks/{id}", {"title": ""}, "title", "title must be 1 to 200"),
        ("patch", "/api/tasks/{id}", {"done": "maybe"}, "done", "done must be a JSON"),
        ("patch", "/api/tasks/{id}", {"created_at": "x"}, "created_at", "unknown field"),
        ("patch", "/api/tasks/{id}", {}, None, "send at least one of: title, done"),
    ],
)
def test_json_validation_errors_name_the_field(client, method, path, body, field, message):
    task = create(client, title="original")
    response = getattr(client, method)(path.format(id=task["id"]), json=body)
    assert response.status_code == 400
    assert response.json["error"] == "validation_failed"
    assert response.json["field"] == field
    assert response.json["message"].startswith(message)
    assert client.get(f"/api/tasks/{task['id']}").json == task  # nothing changed


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"title": ""}, "title"),
        ({"title": "ok", "done": "maybe"}, "done"),
        ({"title": "ok", "colour": "red"}, "colour"),
        ({}, "title"),
    ],
)
def test_form_validation_errors_name_the_field(client, form, field):
    response = client.post("/api/tasks", data=form)
    assert response.status_code == 400
    assert (response.json["error"], response.json["field"]) == ("validation_failed", field)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?done=maybe", "done"),
        ("?limit=0", "limit"),
        ("?limit=1001", "limit"),
        ("?limit=x", "limit"),
    ],
)
def test_list_query_validation(client, query, field):
    response = client.get(f"/api/tasks{query}")
    assert response.status_code == 400
    assert response.json["field"] == field


def test_title_of_exactly_200_characters_is_accepted(client):
    assert create(client, title="é" * 200)["title"] == "é" * 200


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'{"title": "unterminated', "malformed_json"),
        (b"not json at all", "malformed_json"),
        (b"", "malformed_json"),
        (b'["a", "list"]', "validation_failed"),
        (b"null", "validation_failed"),
    ],
)
def test_bad_json_bodies_are_400_json(client, body, error):
    response = client.post("/api/tasks", data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.is_json
    assert response.json["error"] == error


def test_unsupported_media_type_is_415_json(client):
    response = client.post("/api/tasks", data="title=x", content_type="text/plain")
    assert response.status_code == 415
    assert response.json["error"] == "unsupported_media_type"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/tasks/999"),
        ("patch", "/api/tasks/999"),
        ("delete", "/api/tasks/999"),
        ("post", "/api/tasks/999/toggle"),
        ("get", "/api/tasks/0"),
        ("get", "/api/tasks/99999999999"),  # beyond PostgreSQL's integer: still a 404, not a 500
        ("get", "/api/tasks/-1"),
        ("get", "/api/tasks/abc"),
    ],
)
def test_unknown_task_ids_are_404_json(client, method, path):
    kwargs = {"json": {"title": "x"}} if method == "patch" else {}
    response = getattr(client, method)(path, **kwargs)
    assert response.status_code == 404
    assert response.json["error"] == "not_found"
