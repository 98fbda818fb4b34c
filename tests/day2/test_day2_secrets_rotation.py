"""Secret rotation on the local droplet under a steady load: the app's SECRET_KEY and the
database password roll through the blue/green switch with zero failed requests; afterwards the
old password is refused, the live process has only the new key, and neither new value is on any
command line or in the journal."""

from __future__ import annotations

import base64
import shlex

import pytest

from deploy.secrets.plan import FALLBACKS
from deploy.secrets.rotate import login_works
from tests.day2.conftest import APP, app_password, env_file
from tests.release.harness import assert_no_failures, steady_load

pytestmark = pytest.mark.host  # against the local droplet: bin/test's host cycle


def live_process_environment(c) -> dict[str, str]:
    """The environment of the live slot's Gunicorn arbiter, as the kernel holds it."""
    target = c.run(f"readlink {shlex.quote(APP.live_socket)}", hide=True).stdout.strip()
    slot = next(s for s in ("blue", "green") if APP.socket(s) == target)
    pid = c.run(f"systemctl show -p MainPID --value {APP.unit(slot)}", hide=True).stdout.strip()
    raw = c.run(f"sudo -n cat /proc/{int(pid)}/environ | base64 -w0", hide=True).stdout
    pairs = base64.b64decode(raw).split(b"\0")
    return dict(p.decode().split("=", 1) for p in pairs if b"=" in p)


def test_secret_key_and_database_password_rotate_under_load(fab, first, inventory, web,
                                                            tls_domain):  # fmt: skip
    before = env_file(first)
    old_key, old_password = before["SECRET_KEY"], app_password(first)
    since = first.run("date -u '+%Y-%m-%d %H:%M:%S'", hide=True).stdout.strip()
    with steady_load(web, seconds=120, domain=tls_domain) as load:
        done = fab("secrets.rotate", "--secret-key", "--db-password")
    assert done.returncode == 0, done.stderr
    assert_no_failures(load)
    after = env_file(first)
    new_key, new_password = after["SECRET_KEY"], app_password(first)
    assert new_key != old_key and new_password != old_password
    assert not after.get(FALLBACKS)  # retired: the old key verifies nothing any more
    # The old password is refused, the new one logs in (through the host, as the app does).
    assert login_works(first, inventory, old_password)[0] is False
    assert login_works(first, inventory, new_password)[0] is True
    running = live_process_environment(first)
    assert running["SECRET_KEY"] == new_key and old_key not in running.values()
    assert old_password not in running["DATABASE_URL"]
    # Neither new value on a command line (sudo logs them) or anywhere else in the journal.
    journal = first.run(
        f"sudo -n journalctl --since {shlex.quote(since)} -o cat --no-pager", hide=True
    ).stdout
    assert journal.strip(), "the journal since the rotation is empty: cannot check it"
    for secret in (new_key, new_password):
        assert secret not in journal
    processes = first.run("ps -eo args", hide=True).stdout
    assert new_key not in processes and new_password not in processes
