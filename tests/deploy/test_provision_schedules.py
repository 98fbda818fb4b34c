"""Provisioning's scheduled-jobs step: the contract's timers on the stack's first web host only,
verified before daemon-reload, enabled and started; removed from a host that is no longer the
first (or for a job that left the contract), so a schedule never runs on two hosts."""

import subprocess

from deploy import host_model
from deploy.inventory import parse_inventory
from deploy.provision import facts as f
from deploy.provision import operations
from deploy.provision.schedule_step import job_files, scheduled_jobs
from tests.deploy.test_secrets_plan import INVENTORY

SCHEDULE = {"schedule": "*-*-* 03:15:00", "command": "python -m app.manage purge", "timeout": 60}
CONFIG = {"dropstack": {"app": {"schedules": {"purge-done-tasks": SCHEDULE}}}}
SERVICE = "dropstack-job-purge-done-tasks.service"
TIMER = "dropstack-job-purge-done-tasks.timer"


def target(host="web-1", config=CONFIG) -> operations.Target:
    inv = parse_inventory(INVENTORY, "test")
    web = next(w for w in inv.web_hosts if w.name == host)
    return operations.Target(host, host_model.for_host(config, inv, web), inv)


def in_sync(t: operations.Target, timer_state="active") -> f.HostFacts:
    files = {file.path: file.state for file in job_files(t)}
    units = {TIMER: {"Id": TIMER, "UnitFileState": "enabled", "ActiveState": timer_state}}
    return f.HostFacts(files=files, units=units, job_units=frozenset({SERVICE, TIMER}))


def test_every_host_runs_the_step_and_probes_its_job_units():
    for first in (True, False):
        names = [name for name, _ in operations.steps_for(target().settings, first=first)]
        assert "scheduled jobs (first host only)" in names
    t = target()
    (fact,) = [x for x in operations.facts_for(t) if x.key == "job_units"]
    assert fact.command[-2:] == ["/etc/systemd/system", "dropstack-job-"]
    assert TIMER in next(x for x in operations.facts_for(t) if x.key == "units").command


def test_the_first_host_gets_the_units_verified_then_the_timers_enabled():
    (change,) = scheduled_jobs(target(), f.HostFacts())
    paths = {file.path for file in change.files}
    assert paths == {f"/etc/systemd/system/{SERVICE}", f"/etc/systemd/system/{TIMER}"}
    assert change.validate_name == "systemd-analyze verify"
    then = [" ".join(c) for c in change.then]
    assert then[0].endswith("systemctl daemon-reload")
    assert then[1].endswith(f"systemctl enable --now {TIMER}")


def test_a_host_in_sync_needs_nothing_and_a_stopped_timer_is_started():
    t = target()
    assert scheduled_jobs(t, in_sync(t)) == []
    (change,) = scheduled_jobs(t, in_sync(t, timer_state="inactive"))
    assert " ".join(change.commands[0]).endswith(f"systemctl enable --now {TIMER}")


def test_other_hosts_get_no_job_and_lose_the_ones_they_had():
    second = target(host="web-2")
    assert job_files(second) == [] and scheduled_jobs(second, f.HostFacts()) == []
    # web-2 was the first host once (the inventory's order changed): its timer goes.
    had = f.HostFacts(job_units=frozenset({SERVICE, TIMER}))
    (change,) = scheduled_jobs(second, had)
    commands = [" ".join(c) for c in change.commands]
    assert commands[0].endswith(f"systemctl disable --now {TIMER}")
    assert commands[1].endswith(f"systemctl stop {SERVICE}")
    assert f"/etc/systemd/system/{TIMER}" in commands[2] and "rm -f" in commands[2]
    assert commands[3].endswith("systemctl daemon-reload")


def test_a_job_that_left_the_contract_is_removed_from_the_first_host():
    t = target(config={"dropstack": {"app": {"schedules": {}}}})
    old = frozenset({SERVICE, TIMER})
    (change,) = scheduled_jobs(t, f.HostFacts(job_units=old))
    assert change.summary == "remove scheduled jobs this host no longer runs"


def test_the_unit_files_probe_lists_only_the_prefixs_services_and_timers(tmp_path):
    for name in (SERVICE, TIMER, "dropstack@.service", "dropstack-job-x.conf"):
        (tmp_path / name).write_text("")
    command = f.unit_files(str(tmp_path), "dropstack-job-").command
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    assert f.parse_present(out) == {SERVICE, TIMER}
    empty = f.unit_files(str(tmp_path / "none"), "dropstack-job-").command
    assert subprocess.run(empty, capture_output=True, text=True, check=True).stdout == ""
