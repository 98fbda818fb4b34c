"""Day-2 operations against the local droplet (or any inventory): backups through the object
storage stand-in, maintenance mode and secret rotation under load. bin/test runs this after the
release cycle, on the single-host stack, with backups configured the way an operator does it
(FABRIC_DROPSTACK_BACKUP_RECIPIENT and _IDENTITY_FILE, docs/backups.md)."""

from __future__ import annotations

import http.client
import os
import ssl
import subprocess
from pathlib import Path

import pytest

from deploy.host_model import HostSettings
from deploy.provision import desired
from deploy.secrets import plan
from tests.host.probes import Site, _PinnedHTTPSConnection
from tests.release.conftest import hosts, inventory, tls_domain, web  # noqa: F401 (fixtures)

REPO = Path(__file__).resolve().parents[2]
FAB = REPO / ".venv" / "bin" / "fab"
APP = HostSettings().paths  # the default layout: the app's name, env file, units


@pytest.fixture(scope="session")
def fab():
    """`fab` from the repository, as an operator runs it (its output printed for the log)."""

    def run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [str(FAB), *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        print(f"$ fab {' '.join(args)}  -> {done.returncode}\n{done.stdout}{done.stderr}")
        return done

    return run


@pytest.fixture(scope="session")
def first(hosts):  # noqa: F811 (the fixture imported above)
    """The first web host's connection: the one that runs the backup job."""
    return next(iter(hosts.values()))


class UnverifiedSite(Site):
    """The site over HTTPS without checking its chain. These tests are about maintenance mode
    and rotations, not TLS (tests/host checks the chain): pebble may have restarted since the
    certificate was issued (tests/host's CA-down case), and its new root signs nothing the host
    serves until the next renewal."""

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if not self.tls:
            return super()._connection(timeout)
        # To the host's address with the domain as SNI (Nginx refuses a handshake without a
        # name it serves), the chain left unchecked.
        conn = _PinnedHTTPSConnection(self.address, self.name, timeout=timeout, cafile=None)
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        conn._context = context
        return conn


@pytest.fixture(scope="session")
def site(web, tls_domain) -> Site:  # noqa: F811
    """The site as clients reach it: HTTPS with the domain as Host when the host ends TLS."""
    return UnverifiedSite(web, tls_domain or web, bool(tls_domain))


def env_file(c) -> dict[str, str]:
    """The app's env file on a host, read as root into memory (never printed)."""
    text = c.run(f"sudo -n cat {APP.env_file}", hide=True, in_stream=False).stdout
    return desired.parse_env_file(text)


def app_password(c) -> str:
    return plan.password_of(env_file(c)["DATABASE_URL"])


def backups_configured() -> None:
    missing = [
        name
        for name in ("FABRIC_DROPSTACK_BACKUP_RECIPIENT", "FABRIC_DROPSTACK_BACKUP_IDENTITY_FILE")
        if not os.environ.get(name)
    ]
    if missing:
        pytest.fail(
            f"backups are not configured: set {' and '.join(missing)} (an age key pair, "
            "docs/backups.md) before `fab provision`, as bin/test does"
        )
