"""Every error the app returns is JSON: ``{"error": code, "message": ..., "request_id": ...}``.

Clients of a JSON API (and the deploy's probes) should never have to parse an HTML error page,
and a stack trace must never reach one: tracebacks go to the log, tied to the request id.
"""

import logging

from flask import Flask, Response, g, jsonify
from sqlalchemy.exc import DataError, OperationalError
from werkzeug.exceptions import HTTPException, InternalServerError

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error a view raises on purpose, answered as JSON with ``status``."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        headers: dict[str, str] | None = None,
        **details: object,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.headers = headers or {}
        self.details = details


def validation_failed(field: str | None, message: str) -> ApiError:
    """A 400 that names the offending field (None when the body as a whole is wrong)."""
    return ApiError(400, "validation_failed", message, field=field)


def error_response(status: int, error: str, message: str, **details: object) -> Response:
    """The JSON body every error shares, with the request id to quote in a bug report."""
    body = {"error": error, "message": message, **details, "request_id": g.get("request_id")}
    response = jsonify(body)
    response.status_code = status
    return response


def handle_api_error(error: ApiError) -> Response:
    """Answer an ApiError raised by a view."""
    response = error_response(error.status, error.error, error.message, **error.details)
    response.headers.update(error.headers)
    return response


def handle_http_exception(exception: HTTPException) -> Response:
    """Answer any Werkzeug HTTP error (404, 405, 413, ...) as JSON, keeping its headers (Allow)."""
    response = exception.get_response()
    json_response = error_response(
        exception.code or 500,
        (exception.name or "error").lower().replace(" ", "_"),
        exception.description or "",
    )
    response.set_data(json_response.get_data())
    response.content_type = json_response.content_type
    return response


def handle_database_unavailable(exception: OperationalError) -> Response:
    """A lost or refused database connection is an outage to retry, not a bug: 503."""
    log.error("database unavailable: %s", exception.orig or exception)
    return error_response(503, "database_unavailable", "The database is not reachable; retry.")


def handle_invalid_value(exception: DataError) -> Response:
    """PostgreSQL refused a value the request carried (SQLSTATE class 22, "data exception").

    The views validate every field first, so reaching this is a gap in that validation; it is
    still the client's value that was refused, so a 400, and the details go to the log only.
    """
    log.warning("database refused a request value: %s", exception.orig or exception)
    return error_response(400, "invalid_value", "a value in the request cannot be stored")


def handle_unexpected_error(exception: InternalServerError) -> Response:
    """Anything unhandled. Flask has already logged the traceback with the request id."""
    return error_response(
        500,
        "internal_server_error",
        "The server hit an unexpected error; quote the request id when reporting it.",
    )


def init_app(app: Flask) -> None:
    """Register the JSON error handlers."""
    app.register_error_handler(ApiError, handle_api_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(OperationalError, handle_database_unavailable)
    app.register_error_handler(DataError, handle_invalid_value)
    # Flask wraps every unhandled exception in an InternalServerError before looking for a
    # handler, so this one catches them all (and only them: HTTPExceptions match above).
    app.register_error_handler(InternalServerError, handle_unexpected_error)
