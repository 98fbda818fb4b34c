"""Another app on the local droplet with only config changes, done as docs/app-contract.md
("Put your own app in app/, step by step") tells a user, from a clone of the repository:

1. app/ replaced by tests/fixtures/fastapi_notes/app (FastAPI on Gunicorn + Uvicorn workers,
   Alembic, static files, a scheduled job); its pins are already in constraints.txt;
2. its contract (the fixture's contract.yaml) as ``dropstack.app`` in the clone's fabric.yaml;
3. committed; then ``fab provision`` and ``fab deploy`` from the clone, as a user runs them.

Then the host suite's tests that read the app contract, run from the clone (so they read its
fabric.yaml: health paths, static dir, server, schedules), and a redeploy under a bounded load
with zero failed requests. Runs against the running single-host local droplet (bin/test: after
the release cycle, before `local droplet down`), which it leaves serving the fixture app. The
database starts empty, as a new stack's does: the sample app's tables and Alembic history are
dropped first (the fixture's Alembic would not know the sample app's revision).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest
import yaml

from deploy.inventory import load_inventory
from deploy.local import acme_setup
from deploy.provision.database import admin_session
from deploy.targets import connect
from tests.host.probes import Site
from tests.release.harness import REPO, Source, steady_load

FIXTURE = REPO / "tests/fixtures/fastapi_notes"
# The host tests that depend on the app (they read the contract); the rest of tests/host
# (OS, firewall, sshd, CIS, lynis, ssh-audit, testssl) judges the host, not the app, and ran
# for the sample app in the host-tests stage.
APP_HOST_TESTS = (
    "tests/host/test_host_app.py",
    "tests/host/test_host_nginx.py",
    "tests/host/test_host_releases.py",
    "tests/host/test_host_jobs.py",
    "tests/host/test_host_redis.py",
    "tests/host/test_host_tls.py::test_health_checks_answer_over_plain_http",
    "tests/host/test_host_tls.py::test_https_reaches_the_app_with_hsts",
)
# The contract in the clone's fabric.yaml decides, as for a user: none of the sample app's
# overrides bin/test exports for the stages before (FABRIC_DROPSTACK_APP_WORKER_COUNT=2). The
# fixture runs one RQ worker on the stack's Redis (REDIS_URL).
CONTRACT_OVERRIDES = "FABRIC_DROPSTACK_APP_"


@pytest.fixture(scope="module")
def inventory():
    return load_inventory()


@pytest.fixture(scope="module")
def contract() -> dict:
    return yaml.safe_load((FIXTURE / "contract.yaml").read_text())["dropstack"]["app"]


@pytest.fixture(scope="module")
def user_clone(tmp_path_factory, contract) -> Source:
    """The user's repository: a clone of this one (its uncommitted changes included: bin/test
    tests the work tree), with the fixture's app in app/ and its contract in fabric.yaml."""
    path = tmp_path_factory.mktemp("user") / "repo"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(REPO), str(path)], check=True)
    src = Source(path, path / "fabric.yaml")
    diff = subprocess.run(["git", "diff", "--binary", "HEAD"], cwd=REPO, check=True,
                          capture_output=True).stdout  # fmt: skip
    if diff:
        subprocess.run(["git", "apply", "--binary"], cwd=path, input=diff, check=True)
    # Step 1: the app.
    shutil.rmtree(path / "app")
    shutil.copytree(FIXTURE / "app", path / "app", ignore=shutil.ignore_patterns("__pycache__"))
    # Step 5: the contract, under dropstack.app of fabric.yaml.
    config = yaml.safe_load(src.config.read_text())
    config["dropstack"]["app"] = contract
    src.config.write_text(yaml.safe_dump(config, sort_keys=False))
    # What bin/setup makes in a fresh clone: the same pinned virtualenv.
    if not (path / ".venv").exists():
        (path / ".venv").symlink_to(REPO / ".venv")
    src.git("config", "user.email", "fixture-app@example.invalid")
    src.git("config", "user.name", "fixture app")
    src.git("add", "-A")
    src.git("commit", "-q", "-m", "our notes app in app/, its contract in fabric.yaml")
    return src


def user_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(CONTRACT_OVERRIDES)}


def run_in(src: Source, *command: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """A command in the user's clone, as they run it there; its output is shown."""
    started = time.monotonic()
    done = subprocess.run(
        list(command), cwd=src.path, capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL, env=user_environment(),
    )  # fmt: skip
    print(f"$ {' '.join(command)}  ({time.monotonic() - started:.1f} s, exit {done.returncode})")
    print(done.stdout[-6000:] + done.stderr[-3000:])
    return done


def empty_database(inventory) -> None:
    """The app database as a new stack's: an empty public schema (provisioning grants the app
    user its privileges on it again)."""
    c = connect(inventory, inventory.web_hosts[0])
    try:
        with admin_session(c, inventory) as db:
            db.execute("DROP SCHEMA public CASCADE")
            db.execute("CREATE SCHEMA public")
    finally:
        c.close()


def test_provision_and_deploy_the_fixture_app_with_only_config_changes(user_clone, inventory):
    empty_database(inventory)
    provision = run_in(user_clone, ".venv/bin/fab", "provision")
    assert provision.returncode == 0, "fab provision failed for the fixture app"
    deploy = run_in(user_clone, ".venv/bin/fab", "deploy")
    assert deploy.returncode == 0, "fab deploy failed for the fixture app"
    out = deploy.stdout
    assert "migrat" in out and "health gate /health/ready" in out, out[-2000:]


def test_the_host_suite_passes_for_the_fixture_app(user_clone):
    report = REPO / "reports" / "fixture-host.xml"
    done = run_in(user_clone, ".venv/bin/python", "-m", "pytest", "-q", "-p", "no:cacheprovider",
                  *APP_HOST_TESTS, f"--junitxml={report}")  # fmt: skip
    assert done.returncode == 0, "the host suite failed for the fixture app (output above)"


@pytest.fixture(scope="module")
def site(inventory, tmp_path_factory) -> Site:
    """The first web host's site, over HTTPS with the stack's domain (its CA: pebble's root)."""
    web = inventory.web_hosts[0].public_ip
    tls = bool(inventory["domain"]) and not inventory["load_balancer_ip"]
    cafile = None
    if tls and inventory.data.get("acme_directory"):
        cafile = tmp_path_factory.mktemp("ca") / "root.pem"
        cafile.write_text(acme_setup.inventory_root(inventory))
    return Site(web, inventory["domain"] if tls else web, tls, str(cafile) if cafile else None)


def test_a_redeploy_under_load_fails_no_request(user_clone, inventory, contract, site):
    """A code-only change (a static file), deployed while two wrk clients (new connection per
    request, and keep-alive) ask the fixture's health paths through Nginx."""
    web = inventory.web_hosts[0].public_ip
    domain = None if inventory["load_balancer_ip"] else inventory["domain"]
    user_clone.commit("a new static file", {"app/static/hello.txt": "notes static file v2\n"})
    paths = (contract["liveness_path"], contract["readiness_path"])
    with steady_load(web, seconds=60, domain=domain, paths=paths) as load:
        deploy = run_in(user_clone, ".venv/bin/fab", "deploy")
    assert deploy.returncode == 0, "the redeploy failed"
    assert site.get("/static/hello.txt").body == b"notes static file v2\n"
    for kind, result in load.results.items():
        errors = {k: result[k] for k in ("non2xx", "connect", "read", "write", "timeout")}
        assert result["requests"] > 0 and not any(errors.values()), (kind, result)


def test_the_scheduled_job_runs_from_the_live_release_into_the_journal(user_clone, inventory):
    """expire-notes, started now as its timer would: its output in the journal, its result
    in `fab status`."""
    c = connect(inventory, inventory.web_hosts[0])
    try:
        started = c.run("date '+%Y-%m-%d %H:%M:%S'", hide=True).stdout.strip()
        c.sudo("systemctl start dropstack-job-expire-notes.service", hide=True)
        journal = c.sudo(f"journalctl -u dropstack-job-expire-notes.service --since '{started}' "
                         "-o cat --no-pager", hide=True).stdout  # fmt: skip
    finally:
        c.close()
    assert "expire: 0 notes" in journal, journal
    status = run_in(user_clone, ".venv/bin/fab", "status")
    assert "job expire-notes: last success at " in status.stdout
