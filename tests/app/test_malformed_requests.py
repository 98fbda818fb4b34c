"""Malformed requests get a 4xx in the JSON error shape, never a 500, on the real PostgreSQL.

Hand-picked cases first (each one a 500 this app once gave, or a classic), then Hypothesis
throwing generated bodies, content types, query strings, paths and headers at every endpoint.
Hypothesis runs derandomized with a bounded number of examples, so CI sees the same inputs every
run and tests/app stays fast; widen ``FUZZ_EXAMPLES`` locally to search harder.
"""

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import create_app
from app.database import database_of
from tests.app.conftest import app_config, new_database

FUZZ_EXAMPLES = int(os.environ.get("DROPSTACK_FUZZ_EXAMPLES", "40"))
FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TASK = "/api/tasks/1"  # the task each test creates first
ENDPOINTS = [
    ("GET", "/api/tasks"),
    ("POST", "/api/tasks"),
    ("GET", TASK),
    ("PATCH", TASK),
    ("DELETE", "/api/tasks/2147483647"),  # a missing task, so the fixture's task survives
    ("POST", f"{TASK}/toggle"),
]
CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "application/json; charset=latin-1",
    "application/json; charset=utf-16",
    "application/vnd.api+json",
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    "multipart/form-data; boundary=",
    "multipart/form-data; boundary=x",
    "text/plain",
    "application/xml",
    "",
    "garbage",
    "application/json; charset=\x00",
]


def assert_json_client_error(response):
    """A 2xx/3xx, or a 4xx in the app's JSON error shape; never a 5xx."""
    assert response.status_code < 500, (response.status_code, response.get_data()[:300])
    if response.status_code >= 400:
        assert response.mimetype == "application/json", response.get_data()[:300]
        body = response.get_json()
        assert {"error", "message", "request_id"} <= set(body), body
        assert body["request_id"] == response.headers["X-Request-ID"]


@pytest.fixture(scope="module")
def task_client(postgres, migrated_template):
    """One app and database for the whole module, with task 1 in it.

    Shared because each request is judged on its own and a fresh database per case would
    cost more than the cases themselves; DELETE only ever targets a task that does not exist.
    """
    database = new_database(postgres, template=migrated_template)
    # Token settings pinned off: a developer's own API_WRITE_TOKEN must not turn cases into 401s.
    app = create_app(app_config(next(database), API_WRITE_TOKEN=None, API_READ_TOKEN=None))
    client = app.test_client()
    response = client.post("/api/tasks", json={"title": "fixture"})
    assert response.status_code == 201
    assert response.json["id"] == 1
    yield client
    database_of(app).engine.dispose()
    database.close()  # runs new_database's finally: the database is dropped


# --- hand-picked malformed requests -------------------------------------------------------------

DEEP_JSON = b"[" * 50_000 + b"]" * 50_000
BAD_JSON_BODIES = [
    ('{"title": "nul \\u0000 inside"}', 400),
    ('{"title": "\\u0000"}', 400),
    ('{"title": "lone \\ud800 surrogate"}', 400),
    ('{"title": "\\udfff"}', 400),
    ('{"title": "escape \\u001b[31m red"}', 400),
    ('{"title": NaN}', 400),
    ('{"title": "ok", "done": Infinity}', 400),
    ('{"title": "ok", "done": -Infinity}', 400),
    ('{"title": 1e999}', 400),
    ('{"title": ' + "9" * 5000 + "}", 400),  # beyond Python's int-parsing limit
    ('{"title": 9223372036854775808}', 400),  # beyond BIGINT
    ('{"title": "ok", "done": 1.0}', 400),
    ('{"title": ["list"]}', 400),
    ('{"title": {"nested": "object"}}', 400),
    ('{"title": "ok", "id": 99999999999999999999}', 400),
    ('{"title": "ok"} trailing', 400),
    ('{"title": "ok", "title": "twice"}', 201),  # JSON allows it; the last one wins
    ("{'title': 'single quotes'}", 400),
    ('{"title": "ok",}', 400),
    ('{"\\u0000": "nul key"}', 400),
    ('{"\\ud800": "surrogate key"}', 400),
    ("true", 400),
    ("42", 400),
    ('"a string"', 400),
    ("[]", 400),
    ("{}", 400),
]


@pytest.mark.parametrize(("body", "status"), BAD_JSON_BODIES)
def test_malformed_json_fields_are_refused_with_400(task_client, body, status):
    response = task_client.post("/api/tasks", data=body, content_type="application/json")
    assert_json_client_error(response)
    assert response.status_code == status


@pytest.mark.parametrize(("body", "status"), BAD_JSON_BODIES)
def test_malformed_json_patches_are_refused_with_400(task_client, body, status):
    response = task_client.patch(TASK, data=body, content_type="application/json")
    assert_json_client_error(response)
    assert response.status_code == (200 if status == 201 else status)


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (DEEP_JSON[:60_000], "application/json", 400),  # nesting deeper than the stack
        (b'{"title": "\xff\xfe broken utf-8"}', "application/json", 400),
        (b'{"title": "caf\xe9"}', "application/json; charset=latin-1", 400),  # JSON is UTF-8
        ('{"title": "utf-16"}'.encode("utf-16"), "application/json", 201),  # RFC 8259 detection
        (b"\xef\xbb\xbf" + b'{"title": "bom"}', "application/json", 201),
        (b"title=nul%00byte", "application/x-www-form-urlencoded", 400),
        (b"title=%FF%FE", "application/x-www-form-urlencoded", 201),  # replaced, stored
        (b"title=ok&done=%00", "application/x-www-form-urlencoded", 400),
        (b"title=%ED%A0%80", "application/x-www-form-urlencoded", 201),  # CESU surrogate bytes
        (b"--x\r\nbroken", "multipart/form-data; boundary=x", 400),
        (b"anything", "multipart/form-data", 400),  # no boundary at all
        (b"title=ok", "text/plain", 415),
        (b"<task/>", "application/xml", 415),
        (b"\x00\x00\x00", "application/octet-stream", 415),
        (b"", "", 400),  # no body, no type: an empty form, so "title is required"
    ],
)
def test_odd_encodings_and_content_types_get_4xx(task_client, body, content_type, status):
    response = task_client.post("/api/tasks", data=body, content_type=content_type)
    assert_json_client_error(response)
    assert response.status_code == status


@pytest.mark.parametrize(
    "query",
    [
        "limit=abc",
        "limit=1e9",
        "limit=-1",
        "limit=1.5",
        "limit=" + "9" * 5000,
        "limit=²",  # str.isdigit() says yes, int() says no
        "limit=\u0661\u0660",  # Arabic-Indic digits
        "limit=%00",
        "limit= 5",
        "limit=",
        "done=%00",
        "done=%ED%A0%80",
        "done=" + "x" * 10_000,
    ],
)
def test_bad_query_parameters_are_400(task_client, query):
    response = task_client.get(f"/api/tasks?{query}")
    assert_json_client_error(response)
    assert response.status_code == 400


@pytest.mark.parametrize(
    "task_id",
    ["0", "-1", "2147483648", str(2**63), str(2**64), "abc", "1.5", "1e3", "%00", "%ED%A0%80"],
)
@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
def test_impossible_task_ids_are_404(task_client, method, task_id):
    response = task_client.open(f"/api/tasks/{task_id}", method=method, json={"title": "x"})
    assert_json_client_error(response)
    # Werkzeug answers ids its converter refuses (0, > 2**31-1) with 405 for methods other than
    # GET: the router then only knows the list's GET. Either way no such task can be touched.
    assert response.status_code in ((404,) if method == "GET" else (404, 405))


@pytest.mark.parametrize(
    ("data", "content_type"),
    [(b"", "application/json"), (b"", "application/x-www-form-urlencoded"), (b"", None)],
)
def test_patch_with_an_empty_body_is_400(task_client, data, content_type):
    response = task_client.patch(TASK, data=data, content_type=content_type)
    assert_json_client_error(response)
    assert response.status_code == 400


def test_oversized_bodies_are_413_whatever_their_type(task_client):
    for content_type in ("application/json", "application/x-www-form-urlencoded"):
        response = task_client.post(
            "/api/tasks", data=b"x" * (65 * 1024), content_type=content_type
        )
        assert_json_client_error(response)
        assert response.status_code == 413
    # A type the API does not read is refused before its body is: 415, not 413.
    response = task_client.post("/api/tasks", data=b"x" * (65 * 1024), content_type="text/plain")
    assert response.status_code == 415


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Request-ID": "\x00<script>"},
        {"X-Request-ID": "x" * 10_000},
        {"X-Forwarded-For": "not-an-ip, \x00"},
        {"X-Forwarded-Proto": "gopher"},
        {"X-Forwarded-Host": "evil.example\x00:99999"},
        {"Content-Length": "-1"},
        {"Content-Length": "abc"},
        {"Authorization": "Bearer \x00"},
        {"Authorization": "Basic " + "A" * 5000},
    ],
)
def test_odd_headers_never_give_a_500(task_client, headers):
    response = task_client.post("/api/tasks", data=b'{"title": "hdr"}', headers=headers,
                                content_type="application/json")  # fmt: skip
    assert_json_client_error(response)


# --- generated requests -------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)
task_like_objects = st.dictionaries(
    st.sampled_from(["title", "done", "titel", "", "id", "\x00"]) | st.text(max_size=6),
    json_values,
    max_size=4,
)


def json_bytes(value) -> bytes:
    """``value`` as JSON, NaN and Infinity included; lone surrogates go through as escapes."""
    return json.dumps(value, allow_nan=True).encode()


@FUZZ
@given(endpoint=st.sampled_from(ENDPOINTS), body=task_like_objects | json_values)
def test_generated_json_bodies_never_give_a_500(task_client, endpoint, body):
    method, path = endpoint
    response = task_client.open(path, method=method, data=json_bytes(body),
                                content_type="application/json")  # fmt: skip
    assert_json_client_error(response)


@FUZZ
@given(
    endpoint=st.sampled_from(ENDPOINTS),
    body=st.binary(max_size=300)
    | st.text(max_size=100).map(lambda t: t.encode("utf-8", "surrogatepass")),
    content_type=st.sampled_from(CONTENT_TYPES) | st.text(max_size=30),
)
def test_generated_raw_bodies_and_content_types_never_give_a_500(
    task_client, endpoint, body, content_type
):
    method, path = endpoint
    try:
        response = task_client.open(path, method=method, data=body, content_type=content_type)
    except ValueError:
        # Werkzeug's test client refuses header values with newlines before sending: such a
        # request cannot reach the app over HTTP either (Gunicorn rejects it).
        return
    assert_json_client_error(response)


@FUZZ
@given(
    params=st.dictionaries(
        st.sampled_from(["limit", "done", "offset", "x"]),
        st.text(max_size=12) | st.integers(min_value=-(2**70), max_value=2**70).map(str),
        max_size=3,
    )
)
def test_generated_query_strings_never_give_a_500(task_client, params):
    assert_json_client_error(task_client.get("/api/tasks", query_string=params))


@FUZZ
@given(
    segment=st.text(max_size=25).filter(lambda s: "/" not in s and "?" not in s and "#" not in s)
    | st.integers(min_value=-(2**70), max_value=2**70).map(str),
    method=st.sampled_from(["GET", "PATCH", "DELETE", "POST", "PUT"]),
)
def test_generated_task_paths_never_give_a_500(task_client, segment, method):
    assert_json_client_error(
        task_client.open(f"/api/tasks/{segment}", method=method, json={"done": True})
    )


@FUZZ
@given(form=st.dictionaries(st.sampled_from(["title", "done", "x"]) | st.text(max_size=5),
                            st.text(max_size=40), max_size=3))  # fmt: skip
def test_generated_forms_never_give_a_500(task_client, form):
    assert_json_client_error(task_client.post("/api/tasks", data=form))
    assert_json_client_error(task_client.patch(TASK, data=form, content_type="multipart/form-data"))
