"""`fab provision` on a real host: idempotent, validated before activation, one-line errors.

Runs against a provisioned target (bin/test provisions the local droplet first).
"""

from __future__ import annotations

import re
import subprocess
import urllib.error
import urllib.request

import pytest

from tests.provision.conftest import REPO, root

WATCHED_UNITS = ("nginx", "ssh", "fail2ban", "systemd-journald")


def started_at(conn, unit: str) -> str:
    command = ["systemctl", "show", "-p", "ActiveEnterTimestampMonotonic", "--value", unit]
    return root(conn, command).stdout.strip()


def test_second_provision_changes_nothing_and_restarts_nothing(fab, web1):
    first = fab("provision")  # brings the host to the desired state whatever it was
    assert first.returncode == 0, first.stderr
    before = {unit: started_at(web1, unit) for unit in WATCHED_UNITS}
    second = fab("provision")
    assert second.returncode == 0, second.stderr
    changed = [line for line in second.stdout.splitlines() if re.search(r"\bchanged\b", line)]
    assert re.search(r"web-1: \d+ steps, 0 changed", second.stdout), second.stdout
    assert not [line for line in changed if line.startswith("[")], changed
    after = {unit: started_at(web1, unit) for unit in WATCHED_UNITS}
    assert after == before, (
        f"a second provision restarted {set(before.items()) - set(after.items())}"
    )


def test_steps_are_named_and_reported(fab):
    result = fab("provision")
    steps = re.findall(r"^\[web-1\] (.+?)\s{2,}(ok|changed)\b", result.stdout, flags=re.M)
    names = [name for name, _ in steps]
    for expected in ("apt packages", "nginx site", "host firewall (ufw)", "sshd hardening"):
        assert expected in names, f"step {expected!r} missing from: {names}"


@pytest.fixture
def broken_checkout(tmp_path):
    """A copy of the repository whose site template has a directive nginx does not know."""
    repo = tmp_path / "repo"
    subprocess.run(["git", "clone", "-q", str(REPO), str(repo)], check=True)
    site = repo / "nginx" / "site.conf.j2"
    text = site.read_text()
    # Into the main server block (the first `server {` is the TLS redirect, rendered only with TLS).
    head, marker, tail = text.rpartition("\nserver {\n")
    broken = head + marker + "    dropstack_bogus_directive on;\n" + tail
    assert broken != text, "the site template changed shape; update this fixture"
    site.write_text(broken)
    return repo


def test_broken_nginx_template_is_never_activated(fab, web1, broken_checkout, inventory):
    site_path = "/etc/nginx/sites-available/dropstack"
    before = root(web1, ["sha256sum", site_path]).stdout
    result = fab("provision", cwd=broken_checkout)
    assert result.returncode == 1
    message = result.stderr.strip().splitlines()[-1]
    # With TLS the validator also checks the certificate file Nginx reads at each handshake.
    validator = r"nginx -t( and the certificate check)?"
    assert re.match(rf"provision failed: web-1: nginx site: {validator} failed", message), message
    assert 'unknown directive "dropstack_bogus_directive"' in message, message
    # The old file is back in place, and the running nginx still serves.
    assert root(web1, ["sha256sum", site_path]).stdout == before
    assert root(web1, ["nginx", "-t"], warn=True).ok
    host = inventory.web_hosts[0]
    try:
        status = urllib.request.urlopen(f"http://{host.public_ip}/healthz", timeout=5).status
    except urllib.error.HTTPError as exc:  # 503 placeholder before the first deploy
        status = exc.code
    assert status in (200, 503), f"site stopped answering after a failed provision: {status}"


@pytest.mark.parametrize(
    ("case", "changes", "expected"),
    [
        (
            "unreachable host",
            {"web_public_ips": ["198.18.0.99"]},
            r"provision failed: web-1 \(198\.18\.0\.99\): (SSH timed out|cannot open SSH)",
        ),
        (
            "wrong key",
            {"ssh_key_path": "WRONG_KEY"},
            r"provision failed: web-1 \(198\.18\.0\.11\): SSH refused the key for user deploy",
        ),
    ],
)
def test_connection_errors_are_one_line(fab, inventory_file, tmp_path, case, changes, expected):
    if changes.get("ssh_key_path") == "WRONG_KEY":
        key = tmp_path / "wrong_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        changes = {**changes, "ssh_key_path": str(key)}
    path = inventory_file(**changes)
    result = fab("provision", "--inventory", str(path))
    assert result.returncode == 1, case
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"{case}: expected one line, got {lines}"
    assert re.fullmatch(expected + r".*", lines[0]), lines[0]
