"""GET /: a JSON map of the API, read from the URL map so it cannot fall out of date."""

import re

from flask import Blueprint, Response, current_app, jsonify

bp = Blueprint("index", __name__)

# HEAD and OPTIONS are answered for every route; listing them adds nothing.
IMPLICIT_METHODS = frozenset({"HEAD", "OPTIONS"})
URL_CONVERTER = re.compile(r"<[^:>]+:([^>]+)>")


def public_path(rule: str) -> str:
    """A rule as a client reads it: "<int(min=1, max=2147483647):task_id>" becomes "<task_id>"."""
    return URL_CONVERTER.sub(r"<\1>", rule)


@bp.get("/")
def index() -> Response:
    """Every route as "METHOD /path", plus where the human-readable description lives."""
    endpoints = sorted(
        f"{method} {public_path(rule.rule)}"
        for rule in current_app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in sorted((rule.methods or set()) - IMPLICIT_METHODS)
    )
    return jsonify({"name": "dropstack", "endpoints": endpoints, "docs": "/static/index.html"})
