"""The app contract's scheduled jobs (deploy/provision/schedule_step.py): each job's timer
enabled and waiting on the stack's first web host, and no job unit at all on the others, so a
schedule runs once per stack, not once per host."""

from __future__ import annotations

import shlex


def unit_state(host, unit: str) -> dict[str, str]:
    props = "-p LoadState -p UnitFileState -p ActiveState"
    out = host.run(f"systemctl show {props} {shlex.quote(unit)}").stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_scheduled_jobs_run_on_the_first_host_only(host, settings, inventory, web_host):
    first = web_host.name == inventory.web_hosts[0].name
    p = settings.paths
    found = host.run(f"ls {shlex.quote(p.unit_dir)}").stdout.split()
    job_units = sorted(name for name in found if name.startswith(f"{settings.app_name}-job-"))
    if not first:
        assert job_units == [], (
            f"{web_host.name} is not the stack's first web host but has {job_units}: the "
            "schedule would run on two hosts; `fab provision` removes them"
        )
        return
    wanted = sorted(u for j in settings.app.schedules for u in (p.job_service(j.name),
                                                                p.job_timer(j.name)))  # fmt: skip
    assert job_units == wanted, f"{web_host.name} has job units {job_units}, wanted {wanted}"
    for job in settings.app.schedules:
        timer = p.job_timer(job.name)
        state = unit_state(host, timer)
        assert (state.get("UnitFileState"), state.get("ActiveState")) == ("enabled", "active"), (
            f"{timer} is {state}: job {job.name} never runs; `fab provision` enables it"
        )
