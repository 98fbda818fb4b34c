"""`fab status` shows the workers: systemctl's listing of the worker units, per slot."""

from __future__ import annotations

from deploy import host_model
from deploy.release import commands as cmd
from deploy.release import reports

LISTING = """\
dropstack-worker-blue@1.service  loaded active   running dropstack background worker 1 (slot blue)
dropstack-worker-blue@2.service  loaded active   running dropstack background worker 2 (slot blue)
dropstack-worker-green@1.service loaded inactive dead    dropstack background worker 1 (slot green)
"""


def test_the_listing_command_reads_every_worker_of_either_slot():
    layout = host_model.for_host({}).paths
    command = cmd.worker_states_command(layout)
    assert command[:2] == ["systemctl", "list-units"] and "--all" in command
    assert command[-1] == "dropstack-worker-*@*.service"


def test_the_workers_are_read_per_unit_with_their_slot_and_state():
    workers = reports.worker_states(LISTING + "\n0 loaded units listed.\n")
    assert [(w["unit"], w["slot"], w["active"], w["sub"]) for w in workers] == [
        ("dropstack-worker-blue@1.service", "blue", "active", "running"),
        ("dropstack-worker-blue@2.service", "blue", "active", "running"),
        ("dropstack-worker-green@1.service", "green", "inactive", "dead"),
    ]


def test_status_prints_how_many_run_on_each_slot():
    lines = reports.worker_lines(reports.worker_states(LISTING))
    assert lines == [
        "  workers on blue: 2 of 2 active (dropstack-worker-blue@1 running, "
        "dropstack-worker-blue@2 running)",
        "  workers on green: 0 of 1 active (dropstack-worker-green@1 dead)",
    ]
    assert reports.worker_lines([]) == []
