"""`fab status`'s backup health: from job.py status's answer to error lines (pure parts)."""

import datetime
import json

import pytest

from deploy import host_model
from deploy.backup.settings import BackupLayout
from deploy.release import reports

NOW = datetime.datetime(2026, 12, 2, 12, 0, tzinfo=datetime.UTC)
GOOD = {"time": "2026-12-02T03:17:05+00:00", "id": "20261202T031705Z", "size": 1024}
OLD_GOOD = {"time": "2026-11-29T03:17:05+00:00", "id": "20261129T031705Z", "size": 1024}
FAILURE = {"time": "2026-12-02T04:00:00+00:00", "reason": "pg_dump: connection refused"}
DRILL_OK = {"backup_id": GOOD["id"], "outcome": "ok", "reason": None, "time": "2026-12-02T05:17"}
DRILL_BAD = {**DRILL_OK, "outcome": "failed", "reason": "checksum differs"}


def health(status: dict | None, ok: bool = True, error: str = ""):
    output = "" if status is None else json.dumps(status)
    return reports.backup_health(ok, output, error, NOW, 26)


@pytest.mark.parametrize(
    ("case", "status", "problems"),
    [
        ("healthy", {"last_success": GOOD, "last_drill": DRILL_OK}, []),
        ("stale", {"last_success": OLD_GOOD}, ["last good backup 20261129T031705Z is 80.7 h old"]),
        ("failed after success", {"last_success": GOOD, "last_failure": FAILURE},
         ["last backup failed at 2026-12-02T04:00:00+00:00: pg_dump: connection refused"]),
        ("never ran", {}, ["no backup has succeeded on this host"]),
        ("drill failed", {"last_success": GOOD, "last_drill": DRILL_BAD},
         [f"last restore drill ({GOOD['id']}) failed: checksum differs"]),
    ],
)  # fmt: skip
def test_problems(case, status, problems):
    assert health(status)["problems"] == problems, case


def test_a_host_without_the_job_has_no_backup_part():
    assert health(None) is None


@pytest.mark.parametrize(
    ("ok", "output", "error", "fragment"),
    [
        (False, "", "python3: can't open file '/srv/current/deploy/backup/job.py'", "can't open"),
        (True, "not json", "", "printed no JSON object"),
        (True, "[]", "", "printed no JSON object"),
    ],
)
def test_an_unreadable_status_is_an_error_not_silence(ok, output, error, fragment):
    result = reports.backup_health(ok, output, error, NOW, 26)
    (problem,) = result["problems"]
    assert problem.startswith("backup status unreadable") and fragment in problem


def test_status_lines_show_the_backup_and_each_error():
    data = {
        "current": "r1", "slots": {}, "live_slot": None, "routed_slot": None, "readyz": None,
        "nginx_active": True, "lock": None,
        "backup": health({"last_success": GOOD, "last_drill": DRILL_BAD}),
    }  # fmt: skip
    lines = reports.status_lines(data)
    assert f"  backups: last good {GOOD['id']} at {GOOD['time']}" in lines
    assert any(line.startswith("  restore drill: failed") for line in lines)
    assert lines[-1] == f"  error: last restore drill ({GOOD['id']}) failed: checksum differs"
    assert not any("backup" in line for line in reports.status_lines({**data, "backup": None}))


def test_the_probe_reads_status_only_where_the_job_is_set_up():
    layout = BackupLayout(host_model.for_host({}).paths)
    command = reports.backup_status_command(layout)
    assert command[:2] == ["sudo", "-n"]
    joined = " ".join(command)
    assert layout.env_file in joined and layout.job in joined and joined.endswith("status")
