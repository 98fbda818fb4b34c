"""Fixtures for provisioning tests against a running target (the local droplet by default)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from deploy import shell
from deploy.targets import connect, resolve_inventory
from tests.host_marks import mark_folder_as_host

REPO = Path(__file__).resolve().parents[2]
FAB = str(Path(sys.executable).with_name("fab"))


def pytest_collection_modifyitems(items):
    mark_folder_as_host(items, Path(__file__).parent)


@pytest.fixture(scope="session")
def inventory():
    return resolve_inventory()


@pytest.fixture(scope="session")
def web1(inventory):
    conn = connect(inventory, inventory.web_hosts[0])
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def fab():
    """Run `fab` from a directory (the repository by default), as a user would."""

    def run(*args: str, cwd: Path = REPO, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [FAB, *args], cwd=cwd, capture_output=True, text=True, timeout=600, env=env
        )

    return run


@pytest.fixture
def inventory_file(tmp_path, inventory):
    """Write a modified copy of the target's inventory and return its path."""

    def write(**changes) -> Path:
        path = tmp_path / "inventory.json"
        path.write_text(json.dumps({**inventory.data, **changes}))
        path.chmod(0o600)
        return path

    return write


def root(conn, command: list[str], warn: bool = False):
    """Run a command as root on a host, through the project's one command idiom."""
    return conn.run(shell.join(shell.as_root(command)), hide=True, warn=warn, in_stream=False)
