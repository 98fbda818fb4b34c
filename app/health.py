"""Probes for the deploy, Nginx and monitoring: /healthz (process) and /readyz (database)."""

from flask import Blueprint, Response, current_app, jsonify

from app.database import database_of
from app.schema import schema_status

bp = Blueprint("health", __name__)


def probe_response(status_code: int, **body: object) -> Response:
    """A probe's JSON answer, naming the release that gave it and never cached."""
    response = jsonify({**body, "release": current_app.config["DROPSTACK_RELEASE"]})
    response.status_code = status_code
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/healthz")
def healthz() -> Response:
    """The process is up and serving. Touches nothing else, so it stays cheap under load."""
    return probe_response(200, status="ok")


@bp.get("/readyz")
def readyz() -> Response:
    """Ready for traffic: the database answers and its schema is at this release's head.

    A release whose migrations have not run must not receive traffic, so "at head" is part of
    readiness, not only "reachable".
    """
    schema = schema_status(database_of(current_app).engine)
    if not schema.ready:
        return probe_response(
            503, status="unavailable", reason=schema.reason, schema=schema.current
        )
    return probe_response(200, status="ready", schema=schema.current)
