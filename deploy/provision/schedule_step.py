"""The app contract's scheduled jobs as a provisioning step (docs/app-contract.md).

One host per stack runs the schedules: the inventory's first web host gets each job's oneshot
service and timer, every other host gets none, so a 3-host stack runs a schedule once, not three
times. A host that stops being the first (the inventory's order changed, the first host was
replaced) loses its job units at its next provisioning, and the new first host gets them: the
timer host moves with the inventory, never by itself.
"""

from __future__ import annotations

import posixpath

from deploy.provision import facts as f
from deploy.provision import templates
from deploy.provision.change import Change, Target, ensure_running, file_changes, root
from deploy.provision.files import RemoteFile


def job_files(t: Target) -> list[RemoteFile]:
    """The job units this host should have: the contract's, on the first host only."""
    return templates.scheduled_job_files(t.settings) if t.first else []


def job_timers(t: Target) -> tuple[str, ...]:
    return templates.scheduled_job_timers(t.settings) if t.first else ()


def job_units_fact(t: Target) -> f.Fact:
    """Every job unit file the host has now, whatever the contract says (stale ones too)."""
    p = t.settings.paths
    return f.unit_files(p.unit_dir, f"{p.app_name}-job-")


def scheduled_jobs(t: Target, facts: f.HostFacts) -> list[Change]:
    """The first host: the job units, verified before daemon-reload, then the timers enabled
    and started. Any host: job units no longer wanted here (another host runs the schedules,
    or the job left the contract) stopped, disabled and removed."""
    p = t.settings.paths
    wanted = job_files(t)
    keep = {posixpath.basename(file.path) for file in wanted}
    stale = sorted(facts.job_units - keep)
    changes = [remove_jobs(p.unit_dir, stale)] if stale else []
    timers = job_timers(t)
    enable = (
        root(["systemctl", "daemon-reload"]),
        *((root(["systemctl", "enable", "--now", *timers]),) if timers else ()),
    )
    written = file_changes(
        t, facts, wanted, "scheduled jobs' timers (this stack's first host)",
        validate=root(templates.scheduled_jobs_verify_command(t.settings)),
        validate_name="systemd-analyze verify", then=enable,
    )  # fmt: skip
    if written:
        return changes + written
    return changes + [c for timer in timers for c in ensure_running(facts, timer)]


def remove_jobs(unit_dir: str, units: list[str]) -> Change:
    """Stop and disable the timers (and any run in progress), then remove the unit files."""
    timers = [u for u in units if u.endswith(".timer")]
    commands = [root(["systemctl", "disable", "--now", *timers])] if timers else []
    services = [u for u in units if u.endswith(".service")]
    commands += [root(["systemctl", "stop", *services])] if services else []
    commands += [
        root(["rm", "-f", *(f"{unit_dir}/{u}" for u in units)]),
        root(["systemctl", "daemon-reload"]),
    ]
    return Change(
        "remove scheduled jobs this host no longer runs",
        commands=tuple(commands),
        detail=tuple(
            f"- {unit_dir}/{u} (another host runs the schedules, or the job is gone)" for u in units
        ),
    )
