"""Structured logs: one JSON object per line on stdout, each tagged with the request id.

journald (and anything reading it) gets machine-readable lines; the request id ties the app's
lines to Nginx's and Gunicorn's for the same request, and is echoed in ``X-Request-ID``.
"""

import json
import logging
import re
import sys
import time
import uuid
from datetime import UTC, datetime

from flask import Flask, Response, g, has_request_context, request

REQUEST_ID_HEADER = "X-Request-ID"
# Nginx's $request_id (32 hex digits), UUIDs and most tracing ids fit; anything else, such as a
# header someone stuffed with newlines or markup, is replaced rather than written to the logs.
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
# Attributes every LogRecord has; anything else on a record came from `extra=` and is logged.
STANDARD_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

log = logging.getLogger(__name__)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: time, level, logger, message, then any extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in STANDARD_RECORD_ATTRIBUTES and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class RequestIdFilter(logging.Filter):
    """Stamps every record with the current request's id (None outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = g.get("request_id") if has_request_context() else None
        return True


class JsonStdoutHandler(logging.StreamHandler):
    """The root logger's handler: JSON lines on stdout, where systemd's journal collects them."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)
        self.setFormatter(JsonFormatter())
        self.addFilter(RequestIdFilter())


def configure_logging(level: str) -> None:
    """Send all logging (the app's, Flask's, SQLAlchemy's, Alembic's) to stdout as JSON.

    Replaces a handler from an earlier call instead of adding a second one, so building several
    apps in one process (tests, `manage`) does not print each line twice. Other handlers on the
    root logger, such as pytest's, are left alone.
    """
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, JsonStdoutHandler)]:
        root.removeHandler(handler)
    root.addHandler(JsonStdoutHandler())
    root.setLevel(level)


def request_id_from(header_value: str | None) -> str:
    """The client's or proxy's request id when it looks sane, else a fresh one."""
    if header_value and SANE_REQUEST_ID.fullmatch(header_value):
        return header_value
    return uuid.uuid4().hex


def init_app(app: Flask) -> None:
    """Give every request an id and log one line per request when it finishes."""
    app.before_request(start_request_log)
    app.after_request(finish_request_log)


def start_request_log() -> None:
    """Pick the request id and note the start time."""
    g.request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER))
    g.request_started = time.perf_counter()


def finish_request_log(response: Response) -> Response:
    """Echo the request id to the client and log the request with its outcome and duration."""
    response.headers[REQUEST_ID_HEADER] = g.request_id
    duration_ms = round((time.perf_counter() - g.request_started) * 1000, 2)
    log.info(
        "%s %s %s",
        request.method,
        request.path,
        response.status_code,
        extra={
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "duration_ms": duration_ms,
            "remote_addr": request.remote_addr,
        },
    )
    return response
