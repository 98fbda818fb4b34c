"""Nginx in front of the app, from outside: valid config, security headers, unknown names dropped,
static files served by Nginx itself, the app answering through it (nginx/*.j2)."""

from __future__ import annotations

import json
import shlex
import time
import uuid

import pytest

from tests.host.probes import raw_http_exchange

# One response of each kind: the app's, Nginx's static file, Nginx's own error.
RESPONSE_KINDS = {"app": "/healthz", "static": "/static/robots.txt", "nginx-error": "/static/nope"}
SECURITY_HEADERS = [
    ("X-Content-Type-Options", lambda v: v == "nosniff", "nosniff"),
    (
        "X-Frame-Options",
        lambda v: v == "DENY",
        "DENY (clickjacking; or CSP frame-ancestors 'none')",
    ),
    ("Content-Security-Policy", lambda v: "frame-ancestors 'none'" in v, "frame-ancestors 'none'"),
    ("Referrer-Policy", lambda v: v in ("no-referrer", "same-origin"), "no-referrer"),
]


def request_id(kind: str) -> str:
    """An X-Request-ID Nginx passes on unchanged (nginx/http.conf.j2), to find in the logs."""
    return f"hosttest-{kind}-{uuid.uuid4().hex}"


def test_nginx_config_valid(host):
    result = host.run("sudo -n nginx -t")
    assert result.rc == 0, f"`nginx -t` fails; the next reload will fail:\n{result.stderr.strip()}"


def test_nginx_enabled_and_running(host):
    nginx = host.service("nginx")
    assert nginx.is_running, "nginx is not running: the site is down"
    assert nginx.is_enabled, "nginx is not enabled: the site stays down after a reboot"


@pytest.mark.parametrize("kind", RESPONSE_KINDS)
@pytest.mark.parametrize(
    ("header", "ok", "wanted"), SECURITY_HEADERS, ids=[h for h, _, _ in SECURITY_HEADERS]
)
def test_security_header(site, kind, header, ok, wanted):
    path = RESPONSE_KINDS[kind]
    value = site.get(path).headers.get(header)
    assert value is not None and ok(value), (
        f"{site.scheme}://{site.name}{path} ({kind}) has {header}: {value}; must be {wanted}"
    )


@pytest.mark.parametrize("kind", RESPONSE_KINDS)
def test_hsts_only_with_tls(site, kind):
    """Strict-Transport-Security on every HTTPS response; never on plain HTTP, where it means
    nothing and suggests the TLS switch in the templates is wrong."""
    path = RESPONSE_KINDS[kind]
    value = site.get(path).headers.get("Strict-Transport-Security")
    if site.tls:
        assert value and "max-age=" in value, f"https {path} ({kind}) lacks HSTS"
    else:
        assert value is None, f"plain-HTTP {path} ({kind}) sends HSTS {value!r}"


def test_unknown_host_dropped(web_host):
    """Scanners and stale DNS naming another site get the connection closed with no answer
    (Nginx's 444), not our site."""
    answer = raw_http_exchange(web_host.public_ip, "unknown-host.invalid")
    first_line = answer.split(b"\r\n", 1)[0].decode(errors="replace")
    assert answer == b"", (
        f"{web_host.public_ip}:80 answered a request for an unknown Host with {first_line!r}; "
        "the default server must close the connection (return 444)"
    )


def test_static_file_served_with_caching(host, site, settings):
    """robots.txt comes from the live release's app/static/, with Nginx's expiry headers."""
    response = site.get("/static/robots.txt")
    assert response.status == 200, f"/static/robots.txt answered {response.status}"
    on_disk = host.file(f"{settings.paths.static_dir}robots.txt").content
    assert response.body == on_disk, (
        f"/static/robots.txt is not the file in {settings.paths.static_dir}"
    )
    cache_control = response.headers.get("Cache-Control", "")
    assert f"max-age={settings.static_max_age}" in cache_control, (
        f"/static/ files have Cache-Control {cache_control!r}; Nginx's `expires "
        f"{settings.static_max_age}s` sets max-age={settings.static_max_age}"
    )
    assert response.headers.get("Expires"), "/static/ files have no Expires header"


def test_static_file_never_reaches_gunicorn(host, site, live_slot):
    """Nginx serves /static/ from disk: a request for it never shows up in the app's log,
    while an app request sent at the same time does (so the log is really being read)."""
    static_id, app_id = request_id("static"), request_id("app")
    static = site.get("/static/robots.txt", {"X-Request-ID": static_id}).status
    app = site.get("/healthz", {"X-Request-ID": app_id}).status
    assert (static, app) == (200, 200), (
        f"/static/robots.txt answered {static} and /healthz {app}; both must be 200 to tell "
        "who served them"
    )
    unit = f"dropstack@{live_slot}.service"
    grep = (
        f"sudo -n journalctl --no-pager -o cat -u {unit} --since -5min "
        f"| grep -o -F -e {shlex.quote(static_id)} -e {shlex.quote(app_id)} | sort -u"
    )
    seen: set[str] = set()
    deadline = time.monotonic() + 15
    while app_id not in seen and time.monotonic() < deadline:
        seen = set(host.run(grep).stdout.split())
        time.sleep(0.5)
    assert app_id in seen, f"the app's request {app_id} never reached {unit}'s journal"
    assert static_id not in seen, (
        f"a /static/ request ({static_id}) reached Gunicorn ({unit}); Nginx must serve "
        "/static/ itself (location ^~ /static/ with alias)"
    )


def test_healthz_serves_current_release(site, current_release):
    response = site.get("/healthz")
    assert response.status == 200, f"/healthz answered {response.status}: {response.body[:200]!r}"
    body = json.loads(response.body)
    assert body.get("release") == current_release, (
        f"/healthz is served by release {body.get('release')}, but current points at "
        f"{current_release}: Nginx routes to a slot that is not the live release"
    )


def test_readyz_ready(site):
    response = site.get("/readyz")
    assert response.status == 200, (
        f"/readyz answered {response.status}: {response.body[:300].decode(errors='replace')}"
    )
    assert json.loads(response.body).get("status") == "ready"
