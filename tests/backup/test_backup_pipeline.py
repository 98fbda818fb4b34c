"""The whole pipeline, for real: pg_dump | age | rclone into moto, then restore and compare."""

from __future__ import annotations

import datetime
import json
import subprocess
from pathlib import Path

import psycopg
import pytest

from app.schema import head_revision
from deploy.backup import restore
from deploy.backup.on_host.errors import JobError


def backup_ok(stack) -> dict:
    done = stack.backup()
    assert done.returncode == 0, done.stderr
    backups = restore.job_json(stack.site, stack.command("list"))
    newest = max(b["id"] for b in backups if b["complete"])
    return restore.job_json(stack.site, stack.command("manifest", newest))


def test_restore_has_the_rows_of_the_backup_not_the_ones_written_after(stack):
    stack.add_tasks(120)
    manifest = backup_ok(stack)
    stack.add_tasks(30, "later")  # written after the dump: must not come back
    assert manifest["tables"]["public.tasks"] == 120
    assert manifest["schema_revision"] == head_revision()

    result = restore.restore(stack.site, stack.command, str(stack.identity), manifest["id"],
                             "scratch_restore", stack.admin_url)  # fmt: skip
    try:
        assert result.ok, result.reason
        assert result.differences == []
        with psycopg.connect(stack.postgres.url("scratch_restore")) as conn:
            assert conn.execute("SELECT count(*) FROM tasks").fetchone()[0] == 120
            titles = conn.execute("SELECT count(*) FROM tasks WHERE title LIKE 'later%'")
            assert titles.fetchone()[0] == 0
            revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]
            assert revision == manifest["schema_revision"]
    finally:
        stack.postgres.drop_database("scratch_restore")


def test_the_manifest_records_what_the_bucket_holds(stack):
    stack.add_tasks(5)
    manifest = backup_ok(stack)
    body = (
        stack.s3.client()
        .get_object(
            Bucket=stack.bucket.name, Key=f"{stack.layout.host.app_name}/{manifest['object']}"
        )["Body"]
        .read()
    )
    import hashlib

    assert len(body) == manifest["size"]
    assert hashlib.sha256(body).hexdigest() == manifest["sha256"]
    assert body.startswith(b"age-encryption.org/v1\n")  # encrypted, not a plain dump
    assert b"task1" not in body


def test_a_restore_that_differs_is_reported_with_the_difference(stack):
    stack.add_tasks(7)
    manifest = backup_ok(stack)
    observed = {
        "schema_revision": head_revision(),
        "tables": {**manifest["tables"], "public.tasks": 6},
    }
    assert restore.compare(manifest, observed) == ["public.tasks: backup 7 rows, restored 6"]


def corrupt(stack, manifest, change) -> None:
    s3 = stack.s3.client()
    key = f"{stack.layout.host.app_name}/{manifest['object']}"
    body = s3.get_object(Bucket=stack.bucket.name, Key=key)["Body"].read()
    s3.put_object(Bucket=stack.bucket.name, Key=key, Body=change(body))


@pytest.mark.parametrize(
    ("damage", "change"),
    [
        ("flipped bytes", lambda b: b[:2000] + bytes(x ^ 0xFF for x in b[2000:2016]) + b[2016:]),
        ("truncated", lambda b: b[: len(b) * 2 // 3]),
        ("last byte cut", lambda b: b[:-1]),
    ],
)
def test_a_damaged_backup_fails_the_drill(stack, damage, change):
    stack.add_tasks(3000)
    manifest = backup_ok(stack)
    corrupt(stack, manifest, change)
    result = restore.drill(stack.site, stack.command, str(stack.identity), stack.admin_url)
    assert result.outcome == "failed", damage
    assert "checksum" in result.reason
    assert "age --decrypt" in result.reason or "restore" in result.reason
    recorded = restore.job_json(stack.site, stack.command("status"))["last_drill"]
    assert recorded["outcome"] == "failed"
    assert recorded["backup_id"] == manifest["id"]
    with psycopg.connect(stack.admin_url) as conn:
        left = conn.execute("SELECT count(*) FROM pg_database WHERE datname LIKE 'drill_%'")
        assert left.fetchone()[0] == 0  # the throwaway database is gone


def test_a_good_drill_is_recorded_with_its_figures(stack):
    stack.add_tasks(50)
    manifest = backup_ok(stack)
    result = restore.drill(stack.site, stack.command, str(stack.identity), stack.admin_url)
    assert result.ok, result.reason
    recorded = restore.job_json(stack.site, stack.command("status"))["last_drill"]
    assert recorded["outcome"] == "ok"
    assert recorded["backup_id"] == manifest["id"]
    assert recorded["differences"] == []
    assert set(recorded) >= {"time", "backup_id", "outcome", "seconds", "differences"}


def test_upload_failure_fails_the_job_and_is_recorded(tmp_path, postgres, age_key):
    from tests.backup.conftest import S3Server, make_stack

    server = S3Server(tmp_path / "moto.log")
    try:
        stack = make_stack(tmp_path, postgres, server, age_key, "backups-down")
        stack.add_tasks(10)
        server.stop()
        done = stack.backup()
    finally:
        server.stop()
        postgres.drop_database(stack.database)
    assert done.returncode == 1
    assert "error: rclone" in done.stderr
    status = json.loads(Path(stack.layout.state_dir, "status.json").read_text())
    assert "last_success" not in status
    assert status["last_failure"]["reason"].startswith("rclone")


def test_a_failing_dump_is_never_a_backup(stack):
    backup_ok(stack)  # the stack backs up
    stack.postgres.drop_database(stack.database)  # the database vanishes
    failed = stack.backup()
    assert failed.returncode == 1
    assert "pg_dump exited" in failed.stderr
    backups = restore.job_json(stack.site, stack.command("list"))
    assert [b["complete"] for b in backups] == [True]  # only the first, good one
    stack.postgres.create_database(stack.database)  # for the fixture's teardown


def test_backups_started_in_one_second_keep_both_dumps(stack):
    """The timer and a `fab db.backup` at once: one waits for the other's lock, and each gets
    its own id, so neither overwrites (nor, failing, deletes) the other's dump."""
    stack.add_tasks(3)
    runs = [
        subprocess.Popen(
            stack.command("backup"),
            env=stack.site.env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    outcomes = [(run.wait(timeout=300), run.stderr.read()) for run in runs]
    assert [code for code, _ in outcomes] == [0, 0], outcomes
    backups = restore.job_json(stack.site, stack.command("list"))
    assert len({b["id"] for b in backups if b["complete"]}) == 2, backups


def test_restore_refuses_the_app_database_and_existing_ones(stack):
    stack.add_tasks(2)
    manifest = backup_ok(stack)
    with pytest.raises(JobError, match="refused"):
        restore.restore(stack.site, stack.command, str(stack.identity), manifest["id"],
                        "postgres", stack.admin_url)  # fmt: skip
    result = restore.restore(stack.site, stack.command, str(stack.identity), manifest["id"],
                             stack.database, stack.admin_url)  # fmt: skip
    assert not result.ok
    assert "refused" in result.reason
    with psycopg.connect(stack.url) as conn:  # the app's database is untouched
        assert conn.execute("SELECT count(*) FROM tasks").fetchone()[0] == 2
    stack.postgres.create_database("already_here")
    try:
        result = restore.restore(stack.site, stack.command, str(stack.identity), manifest["id"],
                                 "already_here", stack.admin_url)  # fmt: skip
        assert not result.ok
        assert "already exists" in result.reason
    finally:
        stack.postgres.drop_database("already_here")


def test_listing_shows_age_and_size_and_flags_a_stale_newest(stack):
    stack.add_tasks(4)
    manifest = backup_ok(stack)
    backups = restore.job_json(stack.site, stack.command("list"))
    created = restore.backup_time(manifest["id"])
    fresh = restore.listing(backups, created + datetime.timedelta(hours=2))
    assert fresh[0]["size"] == manifest["size"]
    assert fresh[0]["age_hours"] == 2
    assert restore.stale(fresh, 26) is None
    old = restore.listing(backups, created + datetime.timedelta(hours=27))
    assert restore.stale(old, 26) == (
        f"newest backup {manifest['id']} is 27.0 h old (stale after 26 h)"
    )
