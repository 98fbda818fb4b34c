"""The scheduled jobs' part of ``fab status``: per job, its last run's result and the next one.

Read from systemd on each host (``systemctl show`` of the job's service and timer, no root
needed). Only the host whose timers are loaded runs the schedules (the stack's first web host,
deploy/provision/schedule_step.py); on the others every job reads as not here and is left out.
systemd keeps a last result since the host booted; the journal keeps every run's output
(``fab logs --process job``).
"""

from __future__ import annotations

from deploy.app_contract import AppContract
from deploy.host_model import HostLayout
from deploy.provision.facts import parse_units

SERVICE_PROPERTIES = ("Id", "LoadState", "ActiveState", "Result", "ExecMainStatus",
                      "ExecMainExitTimestamp")  # fmt: skip
TIMER_PROPERTIES = ("LastTriggerUSec", "NextElapseUSecRealtime")
# flock's exit status when another run holds the job's lock (the unit's SuccessExitStatus=).
SKIPPED_STATUS = "75"


def job_status_command(layout: HostLayout, app: AppContract) -> list[str] | None:
    """One ``systemctl show`` of every job's service and timer; None without schedules."""
    if not app.schedules:
        return None
    props = [a for p in (*SERVICE_PROPERTIES, *TIMER_PROPERTIES) for a in ("-p", p)]
    units = [
        u for j in app.schedules for u in (layout.job_service(j.name), layout.job_timer(j.name))
    ]
    return ["systemctl", "show", *props, *units]


def job_status(layout: HostLayout, app: AppContract, output: str) -> dict[str, dict] | None:
    """Per job: ``last`` (success, skipped, failed: <result> or never), ``running``, ``exit
    status``, when the last run ended and when the next is due. None when this host does not
    run the schedules (its job units are not loaded)."""
    units = parse_units(output)
    jobs = {}
    for job in app.schedules:
        service = units.get(layout.job_service(job.name), {})
        timer = units.get(layout.job_timer(job.name), {})
        if service.get("LoadState") != "loaded" or timer.get("LoadState") != "loaded":
            continue
        ended = service.get("ExecMainExitTimestamp") or None
        status = service.get("ExecMainStatus", "")
        if not ended:
            last = "never (since boot)"
        elif service.get("Result") != "success":
            last = f"failed: {service.get('Result')}"
        else:
            last = "skipped: another run held the lock" if status == SKIPPED_STATUS else "success"
        jobs[job.name] = {
            "last": last,
            "running": service.get("ActiveState") in ("activating", "deactivating"),
            "exit_status": int(status) if status.isdigit() and ended else None,
            "last_ended": ended,
            "last_triggered": timer.get("LastTriggerUSec") or None,
            "next": timer.get("NextElapseUSecRealtime") or None,
        }
    return jobs or None


def job_lines(jobs: dict[str, dict] | None) -> list[str]:
    """For people: one line per job on the host that runs them; nothing on the others."""
    lines = []
    for name, job in (jobs or {}).items():
        ended = f" at {job['last_ended']}" if job["last_ended"] else ""
        running = ", running now" if job["running"] else ""
        lines.append(f"  job {name}: last {job['last']}{ended}{running}; next {job['next'] or '?'}")
    return lines
