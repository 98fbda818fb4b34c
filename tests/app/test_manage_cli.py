"""`python -m app.manage`: what the deploy runs on each host with the env file loaded."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from app import schema
from app.config import sqlalchemy_url
from app.manage import main
from tests.loopback import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]


def manage(*arguments, database_url, cwd, **environment):
    """Run the real command line in a subprocess, from ``cwd`` (not the repository)."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "DROPSTACK_ENV": "development",
        "DATABASE_URL": database_url,
        **environment,
    }
    return subprocess.run(
        [sys.executable, "-m", "app.manage", *arguments],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_migrate_then_check_from_any_directory(empty_database_url, tmp_path):
    before = manage("check", database_url=empty_database_url, cwd=tmp_path)
    assert before.returncode == 1
    head = schema.head_revision()
    assert (
        before.stdout.splitlines()[-1] == f"check: failed: schema at base (empty), head is {head}"
    )

    migrated = manage("migrate", database_url=empty_database_url, cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    assert f"migrate: database at head {head}" in migrated.stdout
    engine = create_engine(sqlalchemy_url(empty_database_url))
    assert "tasks" in inspect(engine).get_table_names()
    engine.dispose()

    after = manage("check", database_url=empty_database_url, cwd=tmp_path)
    assert after.returncode == 0
    assert after.stdout.splitlines()[-1] == f"check: ok: schema at head {head}"


def test_check_fails_with_one_line_when_the_database_is_down(tmp_path):
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/dropstack"
    result = manage("check", database_url=dead, cwd=tmp_path)
    assert result.returncode == 1
    assert (
        result.stdout.splitlines()[-1] == "check: failed: database unreachable (OperationalError)"
    )


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({"DROPSTACK_ENV": "production", "SECRET_KEY": ""}, "SECRET_KEY is not set"),
        ({"DATABASE_URL": ""}, "DATABASE_URL is not set"),
        ({"DATABASE_URL": "mysql://db/app"}, "DATABASE_URL must be a postgresql:// URL"),
    ],
)
def test_configuration_errors_exit_2_with_one_line(monkeypatch, capsys, environment, message):
    monkeypatch.setenv("DATABASE_URL", "postgresql://db/app")
    monkeypatch.setenv("DROPSTACK_ENV", "development")
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert main(["migrate"]) == 2
    stderr = capsys.readouterr().err
    assert stderr.count("\n") == 1
    assert stderr.startswith(f"migrate: configuration error: {message}")


@pytest.mark.parametrize(
    ("argv", "expected_exit", "expected_line"),
    [
        (["current"], 0, "current: {head} (head: {head})"),
        (["check"], 0, "check: ok: schema at head {head}"),
        (["downgrade", "base"], 0, "downgrade: database at base"),
    ],
)
def test_commands_in_process(monkeypatch, capsys, database_url, argv, expected_exit, expected_line):
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("DROPSTACK_ENV", "development")
    assert main(argv) == expected_exit
    lines = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("{")]
    assert lines == [expected_line.format(head=schema.head_revision())]


def test_downgrade_base_then_current_says_base(monkeypatch, capsys, database_url):
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("DROPSTACK_ENV", "development")
    assert main(["downgrade", "base"]) == 0
    assert main(["current"]) == 0
    assert f"current: base (head: {schema.head_revision()})" in capsys.readouterr().out


def test_an_unknown_revision_exits_1_with_one_line(monkeypatch, capsys, database_url):
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("DROPSTACK_ENV", "development")
    assert main(["downgrade", "no-such-revision"]) == 1
    stderr = capsys.readouterr().err
    assert stderr.count("\n") == 1
    assert stderr.startswith("downgrade: ")
    assert "no-such-revision" in stderr


def test_revision_writes_the_next_numbered_migration(monkeypatch, capsys, tmp_path, database_url):
    # A copy of the migrations, so the test never writes into the package.
    migrations = tmp_path / "migrations"
    shutil.copytree(schema.MIGRATIONS_DIR, migrations, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(schema, "MIGRATIONS_DIR", migrations)
    schema.head_revision.cache_clear()
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("DROPSTACK_ENV", "development")
    head = schema.head_revision()
    expected = f"{int(head) + 1:04d}"
    try:
        assert main(["revision", "-m", "add due dates", "--autogenerate"]) == 0
        written = migrations / "versions" / f"{expected}_add_due_dates.py"
        assert written.exists()
        source = written.read_text()
        assert f"revision = '{expected}'" in source
        assert f"down_revision = '{head}'" in source
        # The models match the head, so autogenerate found nothing to do.
        assert "op." not in source
        schema.head_revision.cache_clear()
        assert schema.head_revision() == expected
    finally:
        schema.head_revision.cache_clear()


def test_purge_deletes_only_tasks_done_for_longer_than_the_limit(database_url, monkeypatch):
    from sqlalchemy import create_engine, text

    from app.config import sqlalchemy_url
    from app.manage import main

    engine = create_engine(sqlalchemy_url(database_url))
    with engine.begin() as c:
        c.execute(text(
            "INSERT INTO tasks (title, done, updated_at) VALUES "
            "('old done', true, now() - interval '31 days'), "
            "('old open', false, now() - interval '31 days'), "
            "('new done', true, now() - interval '29 days')"
        ))  # fmt: skip
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("DROPSTACK_ENV", "development")
    assert main(["purge", "--older-than-days", "30"]) == 0
    with engine.connect() as c:
        left = sorted(c.execute(text("SELECT title FROM tasks")).scalars())
    engine.dispose()
    assert left == ["new done", "old open"]


def test_purge_refuses_zero_days(capsys):
    from app.manage import main

    with pytest.raises(SystemExit) as raised:
        main(["purge", "--older-than-days", "0"])
    assert raised.value.code == 2
    assert "must be a whole number of days above 0" in capsys.readouterr().err
