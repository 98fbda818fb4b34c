"""Behind Nginx: the app believes exactly one proxy hop's X-Forwarded-* headers (ProxyFix)."""

import pytest
from flask import request, url_for


@pytest.fixture
def client(app):
    """A client for the app with a test-only route that shows what the app believes."""

    @app.get("/test-only/seen")
    def seen():
        return {
            "remote_addr": request.remote_addr,
            "scheme": request.scheme,
            "host": request.host,
            "script_root": request.script_root,
            "external_url": url_for("health.healthz", _external=True),
        }

    return app.test_client()


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, {"remote_addr": "127.0.0.1", "scheme": "http", "host": "localhost"}),
        ({"X-Forwarded-For": "203.0.113.7"}, {"remote_addr": "203.0.113.7"}),
        # A client's own X-Forwarded-For comes first; Nginx appends the address it saw.
        ({"X-Forwarded-For": "6.6.6.6, 203.0.113.7"}, {"remote_addr": "203.0.113.7"}),
        (
            {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "tasks.example.com"},
            {
                "scheme": "https",
                "host": "tasks.example.com",
                "external_url": "https://tasks.example.com/healthz",
            },
        ),
        # The app lives at "/": a prefix header, from a client or a proxy, changes nothing.
        (
            {"X-Forwarded-Prefix": "/evil"},
            {"script_root": "", "external_url": "http://localhost/healthz"},
        ),
    ],
)
def test_forwarded_headers(client, headers, expected):
    seen = client.get("/test-only/seen", headers=headers).json
    assert {key: seen[key] for key in expected} == expected
