"""Nginx in front of the app, from outside: valid config, security headers, unknown names dropped,
static files served by Nginx itself, the app answering through it (nginx/*.j2).

The app's paths come from the app contract (``dropstack.app``: liveness and readiness paths,
static_dir), so the suite judges whatever app is in app/, not only the sample app."""

from __future__ import annotations

import json
import shlex
import time
import uuid

import pytest

from tests.host.probes import raw_http_exchange

# One response of each kind: the app's, Nginx's static file, Nginx's own error.
RESPONSE_KINDS = ("app", "static", "nginx-error")
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


@pytest.fixture(scope="session")
def static_file(host, settings) -> str:
    """A file of the live release's static directory (the contract's static_dir), by name."""
    static_dir = settings.paths.static_dir
    found = host.run(f"find {shlex.quote(static_dir)} -maxdepth 1 -type f -printf '%f\\n'")
    names = sorted(found.stdout.split())
    if not names:
        pytest.fail(f"{static_dir} holds no file to request (app.static_dir)", pytrace=False)
    return names[0]


@pytest.fixture(scope="session")
def response_paths(settings, static_file) -> dict[str, str]:
    return {
        "app": settings.app.liveness_path,
        "static": f"/static/{static_file}",
        "nginx-error": "/static/nope-not-a-file",
    }


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
def test_security_header(site, response_paths, kind, header, ok, wanted):
    path = response_paths[kind]
    value = site.get(path).headers.get(header)
    assert value is not None and ok(value), (
        f"{site.scheme}://{site.name}{path} ({kind}) has {header}: {value}; must be {wanted}"
    )


@pytest.mark.parametrize("kind", RESPONSE_KINDS)
def test_hsts_only_with_tls(site, response_paths, kind):
    """Strict-Transport-Security on every HTTPS response; never on plain HTTP, where it means
    nothing and suggests the TLS switch in the templates is wrong."""
    path = response_paths[kind]
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


def test_static_file_served_with_caching(host, site, settings, static_file):
    """A file from the live release's static_dir, with Nginx's expiry headers."""
    path = f"/static/{static_file}"
    response = site.get(path)
    assert response.status == 200, f"{path} answered {response.status}"
    on_disk = host.file(f"{settings.paths.static_dir}{static_file}").content
    assert response.body == on_disk, f"{path} is not the file in {settings.paths.static_dir}"
    cache_control = response.headers.get("Cache-Control", "")
    assert f"max-age={settings.static_max_age}" in cache_control, (
        f"/static/ files have Cache-Control {cache_control!r}; Nginx's `expires "
        f"{settings.static_max_age}s` sets max-age={settings.static_max_age}"
    )
    assert response.headers.get("Expires"), "/static/ files have no Expires header"


def test_static_file_never_reaches_gunicorn(host, site, settings, static_file, live_slot):
    """Nginx serves /static/ from disk: a request for it never shows up in the app's log,
    while an app request sent at the same time does (so the log is really being read). Each
    request carries its id as X-Request-ID (the sample app logs it) and in the query string
    (what any access log shows, Uvicorn's included)."""
    static_id, app_id = request_id("static"), request_id("app")
    static_path = f"/static/{static_file}?id={static_id}"
    app_path = f"{settings.app.liveness_path}?id={app_id}"
    static = site.get(static_path, {"X-Request-ID": static_id}).status
    app = site.get(app_path, {"X-Request-ID": app_id}).status
    assert (static, app) == (200, 200), (
        f"{static_path} answered {static} and {app_path} {app}; both must be 200 to tell "
        "who served them"
    )
    unit = settings.paths.unit(live_slot)
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
        f"a /static/ request ({static_id}) reached the app ({unit}); Nginx must serve "
        "/static/ itself (location ^~ /static/ with alias)"
    )


def test_liveness_path_served_by_the_current_release(site, settings, live_slot, release_state,
                                                     current_release):  # fmt: skip
    """The contract's liveness path answers through Nginx, from the slot that runs the live
    release; an app that names its release in the answer (the sample app does) names it."""
    path = settings.app.liveness_path
    response = site.get(path)
    assert response.status == 200, f"{path} answered {response.status}: {response.body[:200]!r}"
    assert release_state.slots.get(live_slot) == current_release, (
        f"live.sock routes to slot {live_slot}, which runs {release_state.slots.get(live_slot)}, "
        f"but current points at {current_release}: Nginx routes to a slot that is not live"
    )
    try:
        body = json.loads(response.body)
    except ValueError:
        body = None
    if isinstance(body, dict) and "release" in body:
        assert body["release"] == current_release, (
            f"{path} is served by release {body['release']}, but current points at "
            f"{current_release}: Nginx routes to a slot that is not the live release"
        )


def test_readiness_path_ready(site, settings):
    path = settings.app.readiness_path
    response = site.get(path)
    assert response.status == 200, (
        f"{path} answered {response.status}: {response.body[:300].decode(errors='replace')}"
    )
