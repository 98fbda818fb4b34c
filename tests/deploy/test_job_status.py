"""``fab status``'s scheduled-job lines: each job's last result (success, skipped because the
lock was held, failed), whether it runs now and the next run, on the host that runs them."""

from deploy import host_model
from deploy.app_contract import AppContract
from deploy.release.job_status import job_lines, job_status, job_status_command

APP = AppContract.from_mapping(
    {"schedules": {"purge": {"schedule": "daily", "command": "python -m app.manage purge"}}}
)
LAYOUT = host_model.for_host({}).paths
NEXT = "Sun 2026-12-06 00:00:00 UTC"


def show(result="success", status="0", ended="Sat 2026-12-05 20:00:01 UTC", active="inactive",
         loaded="loaded") -> str:  # fmt: skip
    """What `systemctl show` prints for the job's service and timer (two blocks)."""
    return (
        f"Id=dropstack-job-purge.service\nLoadState={loaded}\nActiveState={active}\n"
        f"Result={result}\nExecMainStatus={status}\nExecMainExitTimestamp={ended}\n"
        f"LastTriggerUSec=\nNextElapseUSecRealtime=\n\n"
        f"Id=dropstack-job-purge.timer\nLoadState={loaded}\nActiveState=active\nResult=success\n"
        f"ExecMainStatus=\nExecMainExitTimestamp=\nLastTriggerUSec=Sat 2026-12-05 20:00:00 UTC\n"
        f"NextElapseUSecRealtime={NEXT}\n"
    )


def test_the_command_reads_every_jobs_service_and_timer():
    command = job_status_command(LAYOUT, APP)
    assert command[:2] == ["systemctl", "show"]
    assert command[-2:] == ["dropstack-job-purge.service", "dropstack-job-purge.timer"]
    assert job_status_command(LAYOUT, AppContract()) is None


def test_the_last_result_in_words():
    cases = {
        "success": show(),
        "skipped: another run held the lock": show(status="75"),
        "failed: exit-code": show(result="exit-code", status="1"),
        "never (since boot)": show(ended=""),
    }
    for last, output in cases.items():
        assert job_status(LAYOUT, APP, output)["purge"]["last"] == last, last
    running = job_status(LAYOUT, APP, show(active="activating"))["purge"]
    assert running["running"] and running["next"] == NEXT and running["exit_status"] == 0


def test_a_host_without_the_units_shows_no_job():
    assert job_status(LAYOUT, APP, show(loaded="not-found")) is None
    assert job_lines(None) == []


def test_the_line_for_people():
    (line,) = job_lines(job_status(LAYOUT, APP, show()))
    assert line == f"  job purge: last success at Sat 2026-12-05 20:00:01 UTC; next {NEXT}"
