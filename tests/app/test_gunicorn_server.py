"""The app under a real Gunicorn, configured by app/gunicorn_conf.py, as systemd will run it."""

import json
import os
import runpy
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gunicorn.config import KNOWN_SETTINGS

from bench.unix_http import UnixHTTPConnection

REPO_ROOT = Path(__file__).resolve().parents[2]
GUNICORN = Path(sys.executable).with_name("gunicorn")
CONFIG_FILE = REPO_ROOT / "app" / "gunicorn_conf.py"
CONFIG_FORMS = {
    "file": ["-c", "app/gunicorn_conf.py"],
    "module": ["-c", "python:app.gunicorn_conf"],
}


def gunicorn(*arguments, home, **environment):
    """Start Gunicorn from the repository root (the release directory on a host)."""
    env = {**os.environ, "HOME": str(home), **environment}
    env.pop("XDG_RUNTIME_DIR", None)
    return subprocess.Popen(
        [str(GUNICORN), *arguments, "app.wsgi:app"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def get(socket_path, path, headers=None):
    """One GET over the unix socket: status, headers, parsed JSON body."""
    connection = UnixHTTPConnection(socket_path)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.headers), json.loads(response.read())
    finally:
        connection.close()


def wait_for_socket(process, socket_path, seconds=20):
    """Wait until Gunicorn listens and a worker answers, or fail with its stderr."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"gunicorn exited with {process.returncode}: {process.stderr.read()}")
        if socket_path.exists():
            try:
                return get(socket_path, "/healthz")
            except (ConnectionError, OSError):
                pass
        time.sleep(0.1)
    pytest.fail("gunicorn did not answer in time")


@pytest.mark.parametrize(
    ("secret_key", "problem"),
    [(None, "SECRET_KEY is not set"), ("changeme", "SECRET_KEY is a placeholder value")],
)
@pytest.mark.parametrize("config_form", CONFIG_FORMS)
def test_production_without_a_real_secret_key_refuses_to_start(
    tmp_path, config_form, secret_key, problem
):
    socket_path = tmp_path / "gunicorn.sock"
    environment = {
        "DATABASE_URL": "postgresql://app@db/app",
        "GUNICORN_BIND": f"unix:{socket_path}",
    }
    if secret_key:
        environment["SECRET_KEY"] = secret_key
    process = gunicorn(*CONFIG_FORMS[config_form], home=tmp_path, **environment)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 1
    assert f"dropstack: refusing to start: {problem} (DROPSTACK_ENV=production): " in stderr
    refusal = [line for line in stderr.splitlines() if "refusing to start" in line]
    assert len(refusal) == 1
    assert not socket_path.exists()  # it never bound, so systemd never heard READY=1


def test_without_the_config_file_the_workers_still_refuse(tmp_path):
    # Someone runs plain `gunicorn app.wsgi:app`: create_app's own check stops every worker.
    port = str(free_tcp_port())
    process = gunicorn(
        "--bind", f"127.0.0.1:{port}", home=tmp_path, DATABASE_URL="postgresql://db/app"
    )
    _, stderr = process.communicate(timeout=30)
    assert process.returncode != 0
    assert "SECRET_KEY is not set (DROPSTACK_ENV=production)" in stderr


def slot(home, socket_path, database_url, config_form, workers, **environment):
    """Gunicorn as a slot runs it: the app's config, a unix socket, two threads a worker."""
    return gunicorn(
        *CONFIG_FORMS[config_form],
        home=home,
        DATABASE_URL=database_url,
        DROPSTACK_ENV="development",
        GUNICORN_BIND=f"unix:{socket_path}",
        WEB_CONCURRENCY=str(workers),
        GUNICORN_THREADS="2",
        **environment,
    )


def free_tcp_port():
    """A loopback port nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("config_form", CONFIG_FORMS)
def test_serves_on_a_unix_socket_logs_json_and_stops_cleanly(tmp_path, database_url, config_form):
    socket_path = tmp_path / "gunicorn.sock"
    process = slot(tmp_path, socket_path, database_url, config_form, workers=1,
                   DROPSTACK_RELEASE="release-7")  # fmt: skip
    try:
        wait_for_socket(process, socket_path)
        status, headers, body = get(socket_path, "/healthz", {"X-Request-ID": "probe-1"})
        assert (status, body) == (200, {"status": "ok", "release": "release-7"})
        assert headers["X-Request-ID"] == "probe-1"
        status, _, body = get(socket_path, "/readyz")
        assert (status, body["status"]) == (200, "ready")
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=40)
    assert process.returncode == 0, stderr

    entries = [json.loads(line) for line in stdout.splitlines()]  # every line is JSON
    access = [e for e in entries if e["logger"] == "gunicorn.access" and e["path"] == "/healthz"]
    app_lines = [e for e in entries if e["logger"] == "app.logs" and e["path"] == "/healthz"]
    probe = next(e for e in access if e["request_id"] == "probe-1")
    assert probe["status"] == 200
    assert isinstance(probe["duration_ms"], float)
    assert any(e["request_id"] == "probe-1" for e in app_lines)
    assert not (tmp_path / ".gunicorn").exists()  # no control socket (see control_socket_disable)


def settings_with(monkeypatch, **environment):
    """The module-level settings app/gunicorn_conf.py produces for ``environment``."""
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(CONFIG_FILE))


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({}, {"bind": ["127.0.0.1:8000"], "graceful_timeout": 30, "threads": 4, "timeout": 30}),
        (
            {"GUNICORN_BIND": "unix:/run/dropstack/blue/gunicorn.sock"},
            {"bind": ["unix:/run/dropstack/blue/gunicorn.sock"]},
        ),
        ({"WEB_CONCURRENCY": "3"}, {"workers": 3}),
        ({"GUNICORN_THREADS": "8"}, {"threads": 8}),
        ({"GUNICORN_GRACEFUL_TIMEOUT": "45"}, {"graceful_timeout": 45}),
        ({"LOG_LEVEL": "WARNING"}, {"loglevel": "warning"}),
    ],
)
def test_settings_come_from_the_environment(monkeypatch, environment, expected):
    settings = settings_with(monkeypatch, **environment)
    assert {name: settings[name] for name in expected} == expected


@pytest.mark.parametrize(("cpus", "workers"), [(1, 3), (2, 5), (3, 7), (4, 8), (64, 8)])
def test_default_workers_is_two_per_cpu_plus_one_capped(monkeypatch, cpus, workers):
    monkeypatch.setattr(os, "cpu_count", lambda: cpus)
    assert settings_with(monkeypatch)["workers"] == workers


@pytest.mark.parametrize("value", ["many", "0", "-2", "2.5"])
def test_a_bad_number_stops_gunicorn_with_one_line(monkeypatch, value):
    with pytest.raises(SystemExit, match=r"^WEB_CONCURRENCY must be a whole number above zero"):
        settings_with(monkeypatch, WEB_CONCURRENCY=value)


def test_every_setting_is_one_gunicorn_knows():
    # Gunicorn ignores unknown names in a config file: a typo would silently do nothing.
    known = {setting.name for setting in KNOWN_SETTINGS}
    settings = runpy.run_path(str(CONFIG_FILE))
    names = {
        name
        for name, value in settings.items()
        if not name.startswith("_")
        and name.islower()
        and not callable(value)
        and not isinstance(value, type(os))
    }
    assert names - known == set()
    assert {"bind", "workers", "graceful_timeout", "keepalive", "preload_app"} <= names
    assert "on_starting" in known
    assert settings["preload_app"] is False
    assert settings["control_socket_disable"] is True
    assert settings["keepalive"] > 60  # Nginx's default upstream keepalive_timeout


@pytest.mark.parametrize(
    ("booted", "leaving", "at_once"),
    [
        (True, SystemExit(0), True),  # told to stop (SIGTERM) or max_requests
        (True, SystemExit(None), True),
        (True, SystemExit(1), False),  # aborted (worker timeout): its status stays
        (False, SystemExit(3), False),  # failed to boot: the arbiter must see 3 and halt
        (False, SystemExit(0), False),
        (True, None, False),
    ],
)
def test_only_a_worker_ending_normally_skips_the_teardown(booted, leaving, at_once):
    settings = runpy.run_path(str(CONFIG_FILE))
    assert settings["leaves_at_once"](booted, leaving) is at_once


def test_a_drained_slot_stops_at_once_with_its_logs_written(tmp_path, database_url):
    # The end of a switch: nothing is connected any more, then SIGTERM. Every worker leaves
    # without the interpreter's teardown (worker_exit), having flushed its access lines.
    socket_path = tmp_path / "gunicorn.sock"
    process = slot(tmp_path, socket_path, database_url, "module", workers=3)
    try:
        wait_for_socket(process, socket_path)
        for number in range(6):
            assert get(socket_path, "/readyz", {"X-Request-ID": f"last-{number}"})[0] == 200
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=40)
    assert process.returncode == 0, stderr
    assert stderr.count("Worker exiting") == 3 and "Shutting down: Master" in stderr
    ids = {json.loads(line).get("request_id") for line in stdout.splitlines()}
    assert {f"last-{n}" for n in range(6)} <= ids


def test_a_worker_that_cannot_load_the_app_still_stops_gunicorn_with_its_status(tmp_path):
    # worker_exit and on_exit leave at once only after a normal stop: here the worker exits 4
    # (the app failed to load) and the arbiter halts with 4, as without them.
    env = {**os.environ, "HOME": str(tmp_path), "DATABASE_URL": "postgresql://db/app",
           "DROPSTACK_ENV": "development", "GUNICORN_BIND": f"unix:{tmp_path}/g.sock",
           "WEB_CONCURRENCY": "1"}  # fmt: skip
    env.pop("XDG_RUNTIME_DIR", None)
    done = subprocess.run(
        [str(GUNICORN), *CONFIG_FORMS["module"], "app.wsgi:no_such_app"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 4, done.stderr
    assert "App failed to load" in done.stderr
