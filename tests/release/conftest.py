"""The release cycle against the local droplet (or any inventory): fixtures.

The deploys run as separate processes (``python -m deploy.release``), exactly as an operator's
`fab` would, so they can be run concurrently and killed. They build from a temporary clone of
this repository, where tests commit changed and broken apps; the deploy code itself is this
work tree's. Traffic goes only to the inventory's web hosts (198.18.0.0/15 on the local droplet).
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from fabric import Config

from deploy.app_contract import app_section
from deploy.inventory import DEFAULT_LOCAL_INVENTORY, load_inventory
from deploy.targets import connect
from tests.release.harness import LOCAL_TEST_NET, REPO, Source


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/release/" in str(item.fspath):
            item.add_marker(pytest.mark.host)


@pytest.fixture(scope="session")
def inventory():
    path = os.environ.get("DROPSTACK_INVENTORY") or DEFAULT_LOCAL_INVENTORY
    if not Path(path).exists():
        pytest.skip(f"no inventory at {path}: bring up the local droplet (fab local.up)")
    inv = load_inventory(path)
    for host in inv.web_hosts:
        # A load test may only ever target the project's own test hosts.
        if inv["stack"] == "local" and ipaddress.ip_address(host.public_ip) not in LOCAL_TEST_NET:
            pytest.fail(f"{host.name} {host.public_ip} is outside {LOCAL_TEST_NET}")
    return inv


@pytest.fixture(scope="session")
def hosts(inventory):
    connections = {h.name: connect(inventory, h) for h in inventory.web_hosts}
    for name, c in connections.items():
        if c.run("test -d /srv/dropstack/releases", hide=True, warn=True, in_stream=False).failed:
            pytest.skip(f"{name} is not provisioned (no /srv/dropstack/releases): fab provision")
    yield connections
    for c in connections.values():
        c.close()


@pytest.fixture(scope="session")
def web(inventory):
    """The first web host's public address: where Nginx answers."""
    return inventory.web_hosts[0].public_ip


@pytest.fixture(scope="session")
def tls_domain(inventory):
    """The domain when the web host serves HTTPS itself (plain HTTP then only redirects, so
    the load goes over HTTPS to it); None without one, or behind a load balancer."""
    return None if inventory["load_balancer_ip"] else inventory["domain"]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Source:
    """A clone of HEAD plus this work tree's uncommitted app files, committed, so the test
    deploys the app as it is here."""
    path = tmp_path_factory.mktemp("source") / "repo"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(REPO), str(path)], check=True)
    shutil.rmtree(path / "app")
    shutil.copytree(REPO / "app", path / "app", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("constraints.txt",):
        shutil.copy(REPO / name, path / name)
    src = Source(path, path.parent / "fabric.yaml")
    src.git("config", "user.email", "release-tests@example.invalid")
    src.git("config", "user.name", "release tests")
    src.git("add", "-A", "app", "constraints.txt")
    src.git("commit", "-q", "--allow-empty", "-m", "the app as in the work tree")
    release = {"source": str(path), "keep": 4, "health_timeout": 10}
    src.config.write_text(json.dumps({"dropstack": {"release": release, "app": app_contract()}}))
    return src


def app_contract() -> dict:
    """The app contract as `fab` here reads it (fabric.yaml, FABRIC_DROPSTACK_APP_* variables):
    `python -m deploy.release -f FILE` loads no project config, so the file carries it, and the
    tests deploy with the contract the operator's `fab deploy` would use (bin/test: workers)."""
    config = Config(project_location=str(REPO))
    config.load_project()
    config.load_shell_env()
    return app_section(config)
