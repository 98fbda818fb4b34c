"""The task-list JSON API under /api/tasks.

Bodies may be JSON objects or HTML-form encoded (so a plain <form> works too). Fields are
``title`` (1 to 200 characters after stripping) and ``done`` (a boolean).
"""

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request, url_for
from sqlalchemy import delete, select, update
from werkzeug.exceptions import BadRequest

from app import auth
from app.database import get_session
from app.errors import ApiError, validation_failed
from app.models import TITLE_MAX_LENGTH, Task, TaskArchive

bp = Blueprint("tasks", __name__, url_prefix="/api/tasks")
auth.protect(bp)

TASK_FIELDS = ("title", "done")
FORM_MIMETYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
TRUE_WORDS = frozenset({"true", "1", "yes", "on"})  # "on" is what a checked checkbox sends
FALSE_WORDS = frozenset({"false", "0", "no", "off"})
DEFAULT_LIST_LIMIT = 100
MAX_LIST_LIMIT = 1000
# The id column is a PostgreSQL integer: a larger id cannot exist, and querying for one would
# fail with an out-of-range error. Such URLs simply do not match, so they are 404s like any other.
TASK_ID = "<int(min=1, max=2147483647):task_id>"
# PostgreSQL text cannot hold NUL, and a lone surrogate (JSON allows "\ud800") has no UTF-8
# form; other C0/C1 controls are refused too, as no title needs them and they garble terminals
# and logs. Tab, newline and carriage return stay allowed, as they always were.
UNSTORABLE_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
# ASCII digits only: str.isdigit() accepts "²" (int() refuses it) and Arabic-Indic digits.
LIMIT = re.compile(r"[0-9]{1,4}")


def utc_timestamp(moment: datetime) -> str:
    """``moment`` as ISO-8601 in UTC with an explicit offset: 2026-11-21T15:30:00.000000+00:00."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def task_json(task: Task) -> dict[str, Any]:
    """The public representation of a task."""
    return {
        "id": task.id,
        "title": task.title,
        "done": task.done,
        "created_at": utc_timestamp(task.created_at),
        "updated_at": utc_timestamp(task.updated_at),
    }


def parse_title(value: Any) -> str:
    """A title stripped of surrounding whitespace, 1 to 200 characters long."""
    if not isinstance(value, str):
        raise validation_failed("title", "title must be a string")
    title = value.strip()
    if UNSTORABLE_CHARACTERS.search(title):
        raise validation_failed(
            "title", "title must not contain control characters (such as NUL) or lone surrogates"
        )
    if not 1 <= len(title) <= TITLE_MAX_LENGTH:
        raise validation_failed("title", f"title must be 1 to {TITLE_MAX_LENGTH} characters")
    return title


def parse_bool(field: str, value: Any, from_text: bool) -> bool:
    """A JSON boolean, or for form fields and query strings one of the usual words for one."""
    if isinstance(value, bool) and not from_text:
        return value
    if from_text and isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    expected = "true or false" if from_text else "a JSON boolean (true or false)"
    raise validation_failed(field, f"{field} must be {expected}")


def request_body() -> tuple[Mapping[str, Any], bool]:
    """The request's fields and whether they arrived as text (a form) rather than JSON."""
    if request.is_json:
        try:
            body = request.get_json()
        # Python's parser recurses per nesting level: "[[[[..." 64 KiB deep overflows the stack
        # instead of raising a ValueError that Flask would turn into a BadRequest.
        except (BadRequest, RecursionError):
            raise ApiError(400, "malformed_json", "the request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise validation_failed(None, "the request body must be a JSON object")
        return body, False
    if request.mimetype in FORM_MIMETYPES or not request.content_length:
        return request.form, True
    raise ApiError(
        415,
        "unsupported_media_type",
        "send application/json or form-encoded data",
    )


def task_fields(required: tuple[str, ...]) -> dict[str, Any]:
    """The validated task fields from the request body; unknown fields are refused.

    Refusing them catches typos such as ``{"titel": ...}`` that would otherwise be a silent no-op.
    """
    body, from_text = request_body()
    for name in body:
        if name not in TASK_FIELDS:
            raise validation_failed(name, f"unknown field {name!r}; allowed: title, done")
    for name in required:
        if name not in body:
            raise validation_failed(name, f"{name} is required")
    fields: dict[str, Any] = {}
    if "title" in body:
        fields["title"] = parse_title(body["title"])
    if "done" in body:
        fields["done"] = parse_bool("done", body["done"], from_text)
    return fields


def list_limit(value: str | None) -> int:
    """The ``limit`` query parameter: how many tasks to list, 1 to 1000 (default 100)."""
    if value is None:
        return DEFAULT_LIST_LIMIT
    if not LIMIT.fullmatch(value) or not 1 <= int(value) <= MAX_LIST_LIMIT:
        raise validation_failed("limit", f"limit must be a whole number from 1 to {MAX_LIST_LIMIT}")
    return int(value)


def not_found(task_id: int) -> ApiError:
    """The 404 for a task id that does not exist."""
    return ApiError(404, "not_found", f"task {task_id} does not exist")


def find_task(task_id: int) -> Task:
    """The task with ``task_id`` or a 404."""
    task = get_session().get(Task, task_id)
    if task is None:
        raise not_found(task_id)
    return task


@bp.get("")
def list_tasks() -> Response:
    """Tasks, newest first; ``?done=true|false`` filters, ``?limit=N`` bounds the list."""
    query = select(Task).order_by(Task.created_at.desc(), Task.id.desc())
    done = request.args.get("done")
    if done is not None:
        query = query.where(Task.done == parse_bool("done", done, from_text=True))
    query = query.limit(list_limit(request.args.get("limit")))
    tasks = get_session().scalars(query)
    return jsonify({"tasks": [task_json(task) for task in tasks]})


@bp.post("")
def create_task() -> tuple[Response, int, dict[str, str]]:
    """Create a task; 201 with its URL in Location."""
    task = Task(**task_fields(required=("title",)))
    session = get_session()
    session.add(task)
    session.commit()
    location = url_for("tasks.get_task", task_id=task.id)
    return jsonify(task_json(task)), 201, {"Location": location}


@bp.get(f"/{TASK_ID}")
def get_task(task_id: int) -> Response:
    """One task."""
    return jsonify(task_json(find_task(task_id)))


@bp.patch(f"/{TASK_ID}")
def update_task(task_id: int) -> Response:
    """Change a task's title and/or done."""
    fields = task_fields(required=())
    if not fields:
        raise validation_failed(None, "send at least one of: title, done")
    task = find_task(task_id)
    for name, value in fields.items():
        setattr(task, name, value)
    get_session().commit()
    return jsonify(task_json(task))


@bp.delete(f"/{TASK_ID}")
def delete_task(task_id: int) -> tuple[str, int]:
    """Delete a task; 204 with no body."""
    session = get_session()
    deleted = session.scalar(delete(Task).where(Task.id == task_id).returning(Task.id))
    if deleted is None:
        raise not_found(task_id)
    session.commit()
    return "", 204


@bp.post(f"/{TASK_ID}/toggle")
def toggle_task(task_id: int) -> Response:
    """Flip ``done`` in one UPDATE, so two clicks at once flip it twice, never once."""
    session = get_session()
    task = session.scalar(
        update(Task).where(Task.id == task_id).values(done=~Task.done).returning(Task)
    )
    if task is None:
        raise not_found(task_id)
    session.commit()
    return jsonify(task_json(task))


@bp.post(f"/{TASK_ID}/archive")
def archive_task(task_id: int) -> tuple[Response, int]:
    """Queue the task's archive as a background job (app.jobs); 202 with the job's id.

    Queueing twice names the same job, and the job itself is idempotent, so a client may retry.
    """
    find_task(task_id)
    redis_url = current_app.config["REDIS_URL"]
    if not redis_url:
        raise ApiError(503, "jobs_unavailable", "background jobs are not configured (REDIS_URL)")
    # Imported here, not at the top: RQ and redis would add about 60 ms to every web process's
    # start (a slot's start is most of a rollback), for a route few requests take.
    from redis.exceptions import RedisError

    from app import jobs

    try:
        job = jobs.enqueue_archive(redis_url, task_id)
    except RedisError:
        raise ApiError(503, "jobs_unavailable", "the job queue is not reachable") from None
    return jsonify({"job": job.id, "task": task_id, "status": "queued"}), 202


@bp.get(f"/{TASK_ID}/archive")
def archive_status(task_id: int) -> Response:
    """Whether the job archived the task, when, and how often it ran for it."""
    find_task(task_id)
    record = get_session().get(TaskArchive, task_id)
    if record is None:
        return jsonify({"task": task_id, "archived": False})
    return jsonify(
        {"task": task_id, "archived": True, "archived_at": utc_timestamp(record.archived_at),
         "runs": record.runs}
    )  # fmt: skip
