"""The second app of another shape (tests/fixtures/fastapi_notes: FastAPI, ASGI) run the way
its contract makes the units run it: its migration command against a real PostgreSQL, then
the exact Gunicorn command line of the rendered slot unit (Uvicorn workers) on a unix socket,
answering its own health paths and serving its static files."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from bench.unix_http import UnixHTTPConnection
from deploy import host_model
from deploy.provision.templates import render_site_files

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests/fixtures/fastapi_notes"


def get(sock: Path, path: str) -> tuple[int, bytes]:
    conn = UnixHTTPConnection(sock, timeout=5)
    try:
        conn.request("GET", path)
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


@pytest.fixture
def contract_settings():
    config = yaml.safe_load((FIXTURE / "contract.yaml").read_text())
    return replace(host_model.for_host(config), vpc_cidr="10.110.0.0/20")


@pytest.fixture
def release(tmp_path: Path) -> Path:
    """A release tree as a host gets it: the fixture's app/ at the top."""
    shutil.copytree(FIXTURE / "app", tmp_path / "app")
    return tmp_path


def unit_command(settings, slot_dir: Path, key: str) -> list[str]:
    """ExecStart= of a rendered unit, with the slot's venv replaced by this one's."""
    text = render_site_files(settings)[f"/etc/systemd/system/{key}"].content
    (line,) = [x for x in text.splitlines() if x.startswith("ExecStart=")]
    words = shlex.split(line.removeprefix("ExecStart="))
    venv = f"{settings.paths.slots_dir}/%i/.venv/bin/"
    return [str(Path(sys.executable).parent / w.removeprefix(venv)) if w.startswith(venv) else w
            for w in words]  # fmt: skip


def test_the_fixture_migrates_then_serves_its_health_paths_under_gunicorn_and_uvicorn(
    contract_settings, release, empty_database_url
):
    app = contract_settings.app
    env = {**os.environ, "DATABASE_URL": empty_database_url, "PYTHONPATH": str(release)}
    # Not ready before migrations: the readiness path is the deploy's gate.
    migrate = unit_command(contract_settings, release, "dropstack-migrate@.service")
    assert migrate[1:] == ["-m", "alembic", "-c", "app/alembic.ini", "upgrade", "head"]
    web = unit_command(contract_settings, release, "dropstack@.service")
    sock = release / "blue.sock"
    web = [*web[:-1], "--bind", f"unix:{sock}", "--workers", "2", web[-1]]
    server = subprocess.Popen(web, cwd=release, env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            assert server.poll() is None, server.stderr.read().decode()
            assert time.monotonic() < deadline, "gunicorn did not bind its socket"
            time.sleep(0.1)
        time.sleep(1)
        assert get(sock, app.liveness_path)[0] == 200
        assert get(sock, app.readiness_path)[0] == 503
        done = subprocess.run(migrate, cwd=release, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert get(sock, app.readiness_path) == (200, b'{"status":"ready"}')
        assert get(sock, "/static/hello.txt") == (200, b"notes static file\n")
    finally:
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=40)
    # Uvicorn's worker class really served it, and Gunicorn stopped gracefully on SIGTERM.
    assert "uvicorn" in stderr.decode().lower()
    assert server.returncode == 0


def test_the_fixtures_scheduled_job_runs_from_the_release(release, empty_database_url):
    env = {**os.environ, "DATABASE_URL": empty_database_url, "PYTHONPATH": str(release)}
    python = sys.executable
    subprocess.run([python, "-m", "alembic", "-c", "app/alembic.ini", "upgrade", "head"],
                   cwd=release, env=env, check=True, capture_output=True)  # fmt: skip
    done = subprocess.run([python, "-m", "app.expire"], cwd=release, env=env,
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "expire: 0 notes"
