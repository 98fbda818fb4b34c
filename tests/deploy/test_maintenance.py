"""Maintenance mode, judged by a real Nginx serving the rendered site.

The site is rendered exactly as provisioning renders it (tests/deploy/test_templates.py builds
the tree), then started on 127.0.0.1 with a temporary prefix in front of a tiny upstream on the
live.sock path. Maintenance is switched on and off with the very commands the fab tasks run
(without sudo: the tests run as root), and the pages are the very files the tasks upload.
Everything stays on loopback, is bounded in time and requests, and is torn down afterwards.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from deploy import shell
from deploy.host_model import HostSettings, SettingsError
from deploy.maintenance import (
    DEFAULT_MESSAGE,
    MaintenanceError,
    check_message,
    off_command,
    on_command,
    page_files,
    plan_off,
    plan_on,
    probe_command,
)
from deploy.provision.files import install_command, parse_file_states
from deploy.provision.templates import render_site_files
from tests import loopback
from tests.deploy.test_templates import VPC, build_nginx_tree, nginx_t

BYPASS = "192.0.2.0/24"  # TEST-NET-1: the "admin" network of these tests
ADMIN_CLIENT, OTHER_CLIENT = "192.0.2.10", "198.51.100.7"
MESSAGE = 'Upgrading the <database> & "friends"; back at 14:00 \u2014 sorry!'
RETRY_AFTER = 120


@dataclass
class Site:
    settings: HostSettings
    port: int

    @property
    def flag(self) -> Path:
        return Path(self.settings.paths.maintenance_flag)

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)

    def get(self, path: str, method: str = "GET", **headers: str):
        conn = self.connection()
        try:
            conn.request(method, path, headers=headers)
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read().decode()
        finally:
            conn.close()

    def on(self, message: str = MESSAGE) -> None:
        """What ``fab maintenance.on`` does: plan against the probed state, then apply it."""
        for change in plan_on(self.settings, check_message(message), self.states()):
            for command in change.commands:
                loopback.run_as_root(list(command))
            for file in change.files:
                staged = Path(tempfile.mkstemp(dir=self.flag.parent.parent)[1])
                staged.write_text(file.content)
                loopback.run_as_root(install_command(str(staged), file))
                staged.unlink()

    def off(self) -> None:
        for change in plan_off(self.settings.paths, self.states()):
            for command in change.commands:
                loopback.run_as_root(list(command))

    def states(self) -> dict[str, str]:
        return parse_file_states(loopback.run_as_root(probe_command(self.settings.paths)).stdout)


def start_site(root: Path, **values: object) -> Iterator[Site]:
    """Render, validate and start the site under ``root``; stop everything afterwards."""
    settings = HostSettings(
        vpc_cidr=VPC,
        app_root=str(root / "srv/dropstack"),
        listen_ipv6=False,
        **values,
    )
    settings = build_nginx_tree(root, settings)
    port = loopback.free_port()
    site_file = Path(settings.nginx_dir, "sites-available", settings.app_name)
    # The one change from what a host gets: a loopback port instead of port 80.
    site_file.write_text(site_file.read_text().replace("listen 80", f"listen 127.0.0.1:{port}"))
    nginx_conf = Path(settings.nginx_dir, "nginx.conf")
    loopback.keep_nginx_temp_files_in(root, nginx_conf)
    result = nginx_t(root)
    assert result.returncode == 0, result.stderr

    app = loopback.serve_app(settings.paths.live_socket)
    static = Path(settings.paths.static_dir)
    static.mkdir(parents=True)
    (static / "robots.txt").write_text("User-agent: *\n")

    nginx = subprocess.Popen(
        [
            "nginx", "-p", str(root), "-c", str(nginx_conf), "-e", str(root / "log/error.log"),
            "-g", f"daemon off; pid {root}/nginx.pid;",
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        loopback.wait_for_port(port, nginx)
        yield Site(settings, port)
    finally:
        loopback.stop(nginx)
        app.shutdown()
        app.server_close()


@pytest.fixture(scope="module")
def world_readable_dir() -> Iterator[Path]:
    if not shutil.which("nginx"):
        pytest.fail("nginx is not installed; bin/setup installs nginx-light")
    if os.geteuid() != 0:
        # The tasks' root commands run here without sudo, and Nginx must switch to www-data.
        pytest.fail("these tests run as root, as CI does")
    with loopback.world_readable_tempdir("dropstack-maintenance-") as path:
        yield path


@pytest.fixture(scope="module")
def site(world_readable_dir: Path) -> Iterator[Site]:
    """Behind a trusted proxy (loopback), so the client address is X-Forwarded-For's."""
    yield from start_site(
        world_readable_dir / "behind-proxy",
        trusted_proxies=("127.0.0.0/8",),
        maintenance_bypass=(BYPASS,),
        maintenance_retry_after=RETRY_AFTER,
    )


@pytest.fixture
def maintenance(site: Site) -> Iterator[Site]:
    site.on()
    try:
        yield site
    finally:
        site.off()


# --- behaviour on a real Nginx ---


def test_off_every_request_reaches_the_app(site: Site) -> None:
    site.off()
    status, _, body = site.get("/api/tasks")
    assert status == 200 and json.loads(body) == {"app": True, "path": "/api/tasks"}


def test_on_browsers_get_the_html_page_with_retry_after(maintenance: Site) -> None:
    status, headers, body = maintenance.get("/", Accept="text/html")
    assert status == 503
    assert headers["Retry-After"] == str(RETRY_AFTER)
    assert headers["Content-Type"].startswith("text/html")
    assert headers["Cache-Control"] == "no-store"
    # headers.conf still applies to the page (the block re-includes it).
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "Upgrading the &lt;database&gt; &amp; &#34;friends&#34;" in body
    assert "<database>" not in body


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("GET", "/api/tasks", {}),
        ("GET", "/", {"Accept": "application/json"}),
        ("POST", "/api/tasks", {"Content-Type": "application/json"}),
        # Nginx serves error pages by GET: a DELETE gets the page too, not a 405.
        ("DELETE", "/api/tasks/7", {}),
    ],
)
def test_on_api_clients_get_json(maintenance: Site, method: str, path: str, headers) -> None:
    status, got, body = maintenance.get(path, method, **headers)
    assert status == 503
    assert got["Retry-After"] == str(RETRY_AFTER)
    assert got["Content-Type"].startswith("application/json")
    assert json.loads(body) == {"error": "maintenance", "message": MESSAGE}


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/readyz?from=lb"])
def test_on_health_checks_still_reach_the_app(maintenance: Site, path: str) -> None:
    status, _, body = maintenance.get(path)
    assert status == 200 and json.loads(body)["app"] is True


def test_on_static_files_are_still_served(maintenance: Site) -> None:
    status, _, body = maintenance.get("/static/robots.txt")
    assert (status, body) == (200, "User-agent: *\n")


@pytest.mark.parametrize(
    ("forwarded_for", "expected"),
    [
        (ADMIN_CLIENT, 200),
        (OTHER_CLIENT, 503),
        # A client cannot claim to be an admin: real_ip takes the last untrusted address.
        (f"{ADMIN_CLIENT}, {OTHER_CLIENT}", 503),
    ],
)
def test_on_only_bypass_addresses_reach_the_app(
    maintenance: Site, forwarded_for: str, expected: int
) -> None:
    status, _, _ = maintenance.get("/api/tasks", **{"X-Forwarded-For": forwarded_for})
    assert status == expected


def test_a_flag_without_its_pages_still_answers_503_json(site: Site) -> None:
    # Someone touched the flag by hand: no page to show, so the site's JSON 503.
    site.off()
    pages = [Path(site.settings.paths.maintenance_page(k)) for k in ("html", "json")]
    for page in pages:
        page.unlink(missing_ok=True)
    site.flag.parent.mkdir(parents=True, exist_ok=True)
    site.flag.touch()
    try:
        status, headers, body = site.get("/", Accept="text/html")
        assert status == 503 and headers["Content-Type"].startswith("application/json")
        assert json.loads(body)["error"] == "unavailable"
    finally:
        site.flag.unlink()


def test_switching_is_idempotent(site: Site) -> None:
    site.off()
    site.on()
    assert plan_on(site.settings, check_message(MESSAGE), site.states()) == []
    changed = plan_on(site.settings, check_message("Another message"), site.states())
    assert [c.summary for c in changed] == ["maintenance pages"]
    site.off()
    assert plan_off(site.settings.paths, site.states()) == []


def test_toggling_under_load_drops_no_request(site: Site) -> None:
    """Keep-alive clients send requests while the flag flips every 50 ms: every response is the
    app's 200 or the maintenance 503, no connection is closed, and both were seen."""
    site.off()
    statuses: Counter[int] = Counter()
    errors: list[str] = []
    reconnects = []
    lock = threading.Lock()

    def client(stopping: threading.Event) -> None:
        conn = site.connection()
        conn.connect()
        sock = conn.sock
        # Bounded in requests, and fewer than Nginx's keepalive_requests (1000) per connection,
        # so any closed connection is one the switch closed.
        for _ in range(400):
            if stopping.is_set():
                break
            try:
                conn.request("GET", "/api/tasks")
                response = conn.getresponse()
                body = response.read()
                ok = response.status == 200 or (
                    response.status == 503 and json.loads(body)["error"] == "maintenance"
                )
                with lock:
                    statuses[response.status] += 1
                    if not ok:
                        errors.append(f"{response.status}: {body[:80]!r}")
                    if conn.sock is not sock or response.getheader("Connection") == "close":
                        reconnects.append(1)
            except (OSError, http.client.HTTPException) as exc:
                with lock:
                    errors.append(repr(exc))
                return
        conn.close()

    flips = 0
    with loopback.clients_running(client, join_seconds=10) as threads:
        deadline = time.monotonic() + 10  # and bounded in time
        while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
            site.on() if flips % 2 == 0 else site.off()
            flips += 1
            time.sleep(0.05)
    site.off()
    print(f"toggled {flips} times under load: {dict(statuses)}, {len(errors)} errors")
    assert errors == []
    assert reconnects == []
    assert statuses[200] > 0 and statuses[503] > 0 and flips >= 4


# --- the pure parts ---


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("", DEFAULT_MESSAGE),
        ("  back at 14:00  ", "back at 14:00"),
        ("\u00e9t\u00e9", "\u00e9t\u00e9"),
    ],
)
def test_check_message_accepts_one_line(message: str, expected: str) -> None:
    assert check_message(message) == expected


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("x" * 501, r"^--message: 501 characters; at most 500"),
        ("two\nlines", r"^--message: control characters"),
        ("bell\x07", r"^--message: control characters"),
    ],
)
def test_check_message_refuses(message: str, error: str) -> None:
    with pytest.raises(MaintenanceError, match=error):
        check_message(message)


def test_pages_escape_the_message() -> None:
    html, body = page_files(HostSettings(vpc_cidr=VPC), '</p><script>alert("x")</script>')
    assert "<script>" not in html.content and "&lt;script&gt;" in html.content
    assert json.loads(body.content) == {
        "error": "maintenance",
        "message": '</p><script>alert("x")</script>',
    }
    assert (html.path, body.path) == (
        "/srv/dropstack/maintenance/page.html",
        "/srv/dropstack/maintenance/page.json",
    )
    assert {(f.mode, f.owner, f.group) for f in (html, body)} == {("0644", "root", "root")}


def test_the_message_is_never_on_a_command_line() -> None:
    settings = HostSettings(vpc_cidr=VPC)
    changes = plan_on(settings, "secret-ish plan for 14:00", {})
    assert [c.summary for c in changes] == ["maintenance pages", "maintenance flag on"]
    commands = [shell.join(list(cmd)) for c in changes for cmd in (*c.commands, *c.then)]
    assert commands and not any("14:00" in line for line in commands)
    assert all(line.startswith("sudo -n sh -c ") for line in commands)


def test_the_switch_is_the_flag_from_the_host_model() -> None:
    layout = HostSettings(vpc_cidr=VPC, app_name="shop").paths
    assert layout.maintenance_flag == "/srv/shop/maintenance/on"
    assert shell.join(on_command(layout)) == "sudo -n sh -c 'touch /srv/shop/maintenance/on'"
    assert shell.join(off_command(layout)) == "sudo -n sh -c 'rm -f /srv/shop/maintenance/on'"


@pytest.mark.parametrize(
    ("values", "error"),
    [
        ({"maintenance_bypass": ("10.0.0.1/8",)}, r"^maintenance_bypass: .* is not allowed"),
        ({"maintenance_bypass": ("anywhere",)}, r"^maintenance_bypass: "),
        ({"maintenance_retry_after": -1}, r"^maintenance_retry_after: -1 is not allowed"),
    ],
)
def test_maintenance_settings_are_validated(values: dict, error: str) -> None:
    with pytest.raises(SettingsError, match=error):
        HostSettings(vpc_cidr=VPC, **values)


def directives(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if not line.strip().startswith("#")]


def test_the_flag_is_checked_per_request_not_cached() -> None:
    # Why no reload is needed: nothing in the tree (nor Debian's nginx.conf) sets
    # open_file_cache, which would remember the answer to -f for open_file_cache_valid.
    files = render_site_files(HostSettings(vpc_cidr=VPC))
    site = directives(files["/etc/nginx/sites-available/dropstack"].content)
    assert "if (-f /srv/dropstack/maintenance/on) {" in site
    texts = [f.content for f in files.values()] + [Path("/etc/nginx/nginx.conf").read_text()]
    assert not any(d.startswith("open_file_cache") for t in texts for d in directives(t))
