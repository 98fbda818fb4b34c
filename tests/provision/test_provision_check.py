"""`fab provision --check` is drift detection: after a hand edit on the host it names the step
and the difference, changes nothing (checksums of every managed file before and after), exits
non-zero; `fab provision` repairs the host and `--check` is clean again.

Runs against a provisioned target (bin/test provisions the local droplet first). Each case
is one kind of hand edit an operator might make on a live host; all are made together and
checked by one `--check`, and each must be reported on its own step.
"""

from __future__ import annotations

import re

import pytest

from deploy import host_model
from deploy.provision import operations
from deploy.provision.facts import nameservers
from tests.provision.conftest import root

SSHD_FILE = "/etc/ssh/sshd_config.d/20-dropstack.conf"
SITE_FILE = "/etc/nginx/sites-available/dropstack"
UNIT_FILE = "/etc/systemd/system/dropstack@.service"

# (case, the edit as a root command, the step --check must name, a line of its difference)
DRIFTS = [
    (
        "sshd setting",
        ["sed", "-i", "s/^PasswordAuthentication no/PasswordAuthentication yes/", SSHD_FILE],
        "sshd hardening",
        r"^\[web-1\]   \| \+PasswordAuthentication no$",
    ),
    ("ufw rule", ["ufw", "allow", "8000/tcp"], "host firewall (ufw)", r"host has: 8000/tcp"),
    (
        "nginx site",
        ["sed", "-i", "s/client_max_body_size [^;]*;/client_max_body_size 50m;/", SITE_FILE],
        "nginx site",
        r"^\[web-1\]   \| -    client_max_body_size 50m;$",
    ),
    (
        "unit file",
        ["sed", "-i", "s/^KillMode=mixed/KillMode=process/", UNIT_FILE],
        "systemd units for gunicorn",
        r"^\[web-1\]   \| -KillMode=process$",
    ),
    (
        "unit file mode",
        ["chmod", "0666", UNIT_FILE],
        "systemd units for gunicorn",
        r"mode/owner 666 root root -> 644 root root",
    ),
    (
        "removed package",
        ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "remove", "-y", "-q",
         "python3-systemd"],
        "apt packages",
        r"\+ package python3-systemd",
    ),
    ("stopped service", ["systemctl", "stop", "fail2ban"], "fail2ban sshd jail",
     r"~ fail2ban: enabled, inactive -> enabled, active"),
    (
        "env file mode",
        ["chmod", "0644", "/etc/dropstack/app.env"],
        "app environment and secrets",
        r"mode/owner 644 root app -> 640 root app",
    ),
    ("app user shell", ["usermod", "--shell", "/bin/bash", "app"], "app user",
     r"~ user app: home, shell"),
]  # fmt: skip


@pytest.fixture(scope="module")
def managed_paths(web1, inventory):
    """Every file provisioning manages on web-1, from the same model and operations it uses."""
    resolv = web1.run("cat /etc/resolv.conf", hide=True).stdout
    web = inventory.web_hosts[0]
    settings = host_model.for_host({}, inventory, web, nameservers(resolv))
    return operations.wanted_paths(operations.Target(web.name, settings, inventory))


def checksums(web1, paths: list[str]) -> str:
    """sha256, mode and owner of each managed file, plus ufw's rules and the package list."""
    files = root(web1, ["sh", "-c", 'for p in "$@"; do stat -c "%n %a %U %G" "$p"; '
                       'sha256sum "$p"; done', "sums", *paths], warn=True).stdout  # fmt: skip
    rules = root(web1, ["ufw", "status", "verbose"], warn=True).stdout
    packages = root(web1, ["dpkg-query", "-W", "-f", "${Package} ${Status}\\n"]).stdout
    return files + rules + packages


def step_lines(stdout: str, step: str) -> list[str]:
    """The step's status line and its indented detail lines."""
    lines = stdout.splitlines()
    for i, line in enumerate(lines):
        if re.match(rf"^\[web-1\] {re.escape(step)}\s{{2,}}\S", line):
            block = [line]
            for detail in lines[i + 1 :]:
                if not detail.startswith("[web-1]   | "):
                    break
                block.append(detail)
            return block
    return []


def test_check_is_clean_right_after_provision(fab):
    assert fab("provision").returncode == 0
    result = fab("provision", "--check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^web-1: \d+ steps, 0 (would )?change", result.stdout, re.M), result.stdout


@pytest.fixture(scope="module")
def drifted(fab, web1, managed_paths):
    """Every hand edit at once, then one `--check`: each case must be named on its own step,
    so one probe serves them all (one edit per run cost a provision each, ~10 s a case).
    Yields the checksums around `--check` and its result; repairs the host afterwards."""
    for _case, edit, _step, _difference in DRIFTS:
        root(web1, edit)
    try:
        before = checksums(web1, managed_paths)
        result = fab("provision", "--check")
        after = checksums(web1, managed_paths)
        yield before, result, after
    finally:
        fab("provision")


@pytest.mark.parametrize(("case", "edit", "step", "difference"), DRIFTS, ids=[d[0] for d in DRIFTS])
def test_check_names_the_step_and_the_difference_of_each_hand_edit(
    drifted, case, edit, step, difference
):
    _before, result, _after = drifted
    block = step_lines(result.stdout, step)
    assert block and "would change" in block[0], f"{case}: {step} not flagged:\n{result.stdout}"
    assert any(re.search(difference, line) for line in block), f"{case}:\n" + "\n".join(block)


def test_check_flags_exactly_the_drifted_steps_and_exits_non_zero(drifted):
    _before, result, _after = drifted
    assert result.returncode == 1, f"--check exited {result.returncode}"
    flagged = set(re.findall(r"^\[web-1\] (.+?)\s{2,}would change", result.stdout, re.M))
    assert flagged == {d[2] for d in DRIFTS}, result.stdout
    assert "--check: web-1 differ" in result.stderr


def test_check_changes_nothing_on_the_host(drifted):
    before, _result, after = drifted
    assert after == before, "--check changed a managed file, ufw's rules or the package list"


def test_provision_repairs_every_hand_edit(fab, drifted):
    repaired = fab("provision")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    changed = set(re.findall(r"^\[web-1\] (.+?)\s{2,}changed", repaired.stdout, re.M))
    assert changed >= {d[2] for d in DRIFTS}, repaired.stdout
    clean = fab("provision", "--check")
    assert clean.returncode == 0, f"still drifted after provision:\n{clean.stdout}"


def test_check_never_prints_secrets(fab, web1):
    env_file = "/etc/dropstack/app.env"
    edit = ["sed", "-i", "s|^DATABASE_URL=.*|DATABASE_URL=postgresql://app:hand-edited-pw@db/app|",
            env_file]  # fmt: skip
    root(web1, edit)
    try:
        result = fab("provision", "--check")
        assert result.returncode == 1, result.stdout
        assert "hand-edited-pw" not in result.stdout + result.stderr
        block = step_lines(result.stdout, "app environment and secrets")
        assert "[web-1]   | ~ DATABASE_URL=<redacted> (value differs)" in block, "\n".join(block)
    finally:
        assert fab("provision").returncode == 0


def test_managed_database_refuses_the_app_user_until_provisioning_grants_it(fab, web1, inventory):
    """The local database is DigitalOcean's: the app database belongs to doadmin, so the app user
    cannot create its tables (PostgreSQL 15+) until provisioning grants it schema privileges."""
    from deploy.provision import database

    with database.admin_session(web1, inventory) as admin:
        owner = admin.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
        ).fetchone()[0]
        superuser = admin.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        assert (owner, superuser.fetchone()[0]) == ("doadmin", False)
        admin.execute("REVOKE USAGE, CREATE ON SCHEMA public FROM app")
    try:
        assert app_can_create_a_table(web1, inventory) is False
        result = fab("provision", "--check")
        assert result.returncode == 1
        block = step_lines(result.stdout, "database privileges")
        assert "would change" in block[0], result.stdout
        # PUBLIC keeps USAGE on schema public by default; CREATE is what the owner alone has.
        assert any("+ app: CREATE on schema public" in line for line in block), block
    finally:
        assert fab("provision").returncode == 0
    assert app_can_create_a_table(web1, inventory) is True
    assert fab("provision", "--check").returncode == 0


def app_can_create_a_table(web1, inventory) -> bool:
    """Connect as the app user (through the same tunnel) and try what a first migration does."""
    import psycopg

    from deploy.provision import database

    app_uri = inventory["db_uri"]
    with database.admin_session(web1, {**inventory.data, "db_admin_uri": app_uri}) as conn:
        try:
            conn.execute("CREATE TABLE dropstack_probe (id int)")
        except psycopg.errors.InsufficientPrivilege as exc:
            assert "permission denied for schema public" in str(exc)
            return False
        conn.execute("DROP TABLE dropstack_probe")
        return True


def test_keys_rotate_puts_exactly_the_stack_keys_on_the_host(fab, web1, inventory):
    path = f"/home/{inventory['ssh_user']}/.ssh/authorized_keys"
    old = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOldOldOldOldOldOldOldOldOldOldOldOldOld0 old-laptop"
    root(web1, ["sh", "-c", 'printf "%s\\n" "$1" >> "$2"', "add", old, path])
    try:
        check = fab("keys.rotate", "--check")
        assert check.returncode == 1, check.stdout
        block = step_lines(check.stdout, "deploy user's ssh keys")
        assert any(line.endswith(f"-{old}") for line in block), "\n".join(block)
        drift = fab("provision", "--check")
        assert "deploy user's ssh keys" in " ".join(
            step_lines(drift.stdout, "deploy user's ssh keys")
        )
    finally:
        rotated = fab("keys.rotate")
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    assert old not in root(web1, ["cat", path]).stdout
    assert fab("keys.rotate", "--check").returncode == 0


def test_keys_rotate_refuses_to_lock_the_operator_out(fab, inventory_file):
    other = (
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOtherOtherOtherOtherOtherOtherOtherOth1 new-laptop"
    )
    path = inventory_file(ssh_public_keys=[other])
    result = fab("keys.rotate", "--inventory", str(path))
    assert result.returncode == 1
    assert "would lock you out" in result.stderr, result.stderr
