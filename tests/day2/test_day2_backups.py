"""Backups on the local droplet, end to end: the timer's unit on the first web host dumps the
app's database, encrypts it to the stack's age key and uploads it over HTTPS to the object
storage stand-in (moto's S3 server, for Spaces); the operator restores it into a scratch
database and compares; a corrupted object and a bucket that is down are failures everywhere
they are reported, never a good backup."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest

from deploy.backup.on_host.names import DUMP_SUFFIX
from deploy.backup.settings import BackupLayout, BackupSettings
from deploy.local import spaces, spaces_setup
from deploy.local.machine import plan_of
from deploy.local.state import StatePaths, read_record
from deploy.provision.database import admin_session
from deploy.secrets.rotate import app_login
from tests.day2.conftest import APP, FAB, REPO, app_password, backups_configured

pytestmark = pytest.mark.host  # against the local droplet: bin/test's host cycle

LAYOUT = BackupLayout(APP)
PREFIX = BackupSettings().prefix or APP.app_name


@pytest.fixture(scope="module", autouse=True)
def configured():
    backups_configured()


@pytest.fixture(scope="module")
def bucket(inventory):
    """The stand-in's S3 API from this machine, as an operator's S3 client would reach it."""
    if inventory["stack"] != "local":
        pytest.fail("these tests break the bucket on purpose: run them on the local droplet")
    return spaces_setup.client(spaces_setup.the_stand_in(StatePaths.from_environment()))


def count_tasks(c, inv, database: str | None = None) -> int:
    """Rows of the app's table: as the app's user in its database, or as the admin in a
    restored one (a restore creates it as the admin, --no-owner)."""
    if database is None:
        with app_login(c, inv, app_password(c)) as conn:
            return conn.execute("SELECT count(*) FROM tasks").fetchone()[0]
    with admin_session(c, in_database(inv, database)) as conn:
        return conn.execute("SELECT count(*) FROM tasks").fetchone()[0]


def in_database(inv, name: str):
    uri = urlsplit(inv["db_admin_uri"])
    changed = urlunsplit(uri._replace(path=f"/{name}"))
    return dataclasses.replace(inv, data={**inv.data, "db_admin_uri": changed})


def add_tasks(c, inv, count: int) -> None:
    with app_login(c, inv, app_password(c)) as conn:
        conn.execute(
            "INSERT INTO tasks (title) SELECT 'day2 ' || g FROM generate_series(1, %s) g", (count,)
        )


def drop_database(c, inv, name: str) -> None:
    with admin_session(c, inv) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def backup_id(out: str) -> str:
    found = re.search(r"backup (\d{8}T\d{6}Z) ok", out)
    assert found, out
    return found.group(1)


def test_the_timer_is_armed_and_runs_the_unit_fab_starts(first):
    out = first.run(
        f"systemctl show -p UnitFileState -p ActiveState -p NextElapseUSecRealtime "
        f"-p Unit {LAYOUT.timer}",
        hide=True, in_stream=False,
    ).stdout  # fmt: skip
    assert "UnitFileState=enabled" in out and "ActiveState=active" in out, out
    assert f"Unit={LAYOUT.service}" in out, out
    assert re.search(r"NextElapseUSecRealtime=\w", out), out  # a next run is scheduled


def test_a_backup_restores_into_a_scratch_database_and_compares(fab, first, inventory, bucket):
    add_tasks(first, inventory, 25)
    rows_at_backup = count_tasks(first, inventory)
    done = fab("db.backup")
    assert done.returncode == 0, done.stderr
    taken = backup_id(done.stdout)
    # In the bucket, encrypted: no plaintext SQL in the object.
    key = f"{PREFIX}/{taken}{DUMP_SUFFIX}"
    body = bucket.get_object(Bucket=spaces.BUCKET, Key=key)["Body"].read()
    assert body.startswith(b"age-encryption.org/v1"), body[:40]
    assert b"CREATE TABLE" not in body and b"day2 1" not in body
    add_tasks(first, inventory, 7)  # written after the backup: not in it
    listed = fab("db.backups")
    assert listed.returncode == 0, listed.stderr
    assert taken in listed.stdout
    scratch = f"restore_{uuid.uuid4().hex[:8]}"
    try:
        restored = fab("db.restore", "--backup", taken, "--into", scratch)
        assert restored.returncode == 0, restored.stderr
        assert f"{taken} -> {scratch}: OK" in restored.stdout
        assert count_tasks(first, inventory, scratch) == rows_at_backup
        assert count_tasks(first, inventory) == rows_at_backup + 7
    finally:
        drop_database(first, inventory, scratch)


def test_a_corrupted_backup_fails_the_drill_and_status(fab, first, inventory, bucket):
    done = fab("db.backup")
    assert done.returncode == 0, done.stderr
    taken = backup_id(done.stdout)
    key = f"{PREFIX}/{taken}{DUMP_SUFFIX}"
    body = bytearray(bucket.get_object(Bucket=spaces.BUCKET, Key=key)["Body"].read())
    middle = len(body) // 2
    body[middle : middle + 16] = bytes(b ^ 0xFF for b in body[middle : middle + 16])
    bucket.put_object(Bucket=spaces.BUCKET, Key=key, Body=bytes(body))  # a new version
    drill = fab("db.drill", "--backup", taken)
    assert drill.returncode == 1
    assert f"{taken} -> drill_" in drill.stderr and "FAILED" in drill.stderr, drill.stderr
    assert '"outcome": "failed"' in drill.stdout
    status = fab("status")
    assert status.returncode == 1
    assert "drill" in (status.stdout + status.stderr).lower()
    listed = fab("db.backups")
    assert listed.returncode == 1 and "drill" in listed.stderr.lower(), listed.stderr
    # A good backup and a good drill clear it.
    assert fab("db.backup").returncode == 0
    good = fab("db.drill")
    assert good.returncode == 0 and '"outcome": "ok"' in good.stdout, good.stderr
    assert fab("status").returncode == 0


def test_a_bucket_that_is_down_fails_the_backup_and_status_says_so(fab, first, inventory):
    paths = StatePaths.from_environment()
    spaces_setup.stop()
    try:
        done = fab("db.backup", timeout=120)
        assert done.returncode == 1
        assert f"backup failed on {inventory.web_hosts[0].name}" in done.stderr, done.stderr
        status = fab("status")
        assert status.returncode == 1
        assert "backup" in (status.stdout + status.stderr).lower()
    finally:
        # Back, empty (moto keeps objects in memory), as `fab local.up` would start it.
        spaces_setup.start(paths, plan_of(read_record(paths)), print)
    again = fab("db.backup")
    assert again.returncode == 0, again.stderr
    assert fab("db.drill").returncode == 0
    assert fab("status").returncode == 0


def test_backups_off_or_not_provisioned_say_so_in_one_line(first, inventory, monkeypatch):
    """Not the job's own error about a missing file: what is off, and what to do."""
    monkeypatch.delenv("FABRIC_DROPSTACK_BACKUP_RECIPIENT")
    off = subprocess.run([str(FAB), "db.backup"], cwd=REPO, capture_output=True, text=True,
                         stdin=subprocess.DEVNULL)  # fmt: skip
    assert off.returncode == 1
    assert off.stderr.strip() == (
        "error: backups are off for this stack: dropstack.backup.recipient is not set "
        "(docs/backups.md)"
    )
    monkeypatch.undo()
    env = BackupLayout(APP).env_file
    first.run(f"sudo -n mv {env} {env}.aside", hide=True, in_stream=False)
    try:
        for task in ("db.backup", "db.drill"):
            gone = subprocess.run([str(FAB), task], cwd=REPO, capture_output=True, text=True,
                                  stdin=subprocess.DEVNULL)  # fmt: skip
            assert gone.returncode == 1
            name = inventory.web_hosts[0].name
            assert gone.stderr.strip() == (
                f"error: {name}: the backup job is not installed (no {env}); run fab provision"
            )
    finally:
        first.run(f"sudo -n mv {env}.aside {env}", hide=True, in_stream=False)
