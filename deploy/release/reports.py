"""The tasks that look at hosts: ``fab releases``, ``status``, ``logs``, and ``unlock``.

``releases`` and ``status`` print for people, or with ``--json`` one JSON document for scripts.
``status`` exits 1 when a host's backups are in error (stale, failed, a failed drill); its
other lines are information and leave the exit status 0.
Paths, units and log files come from the one host model, so an operator's override
(``env_file``, ``nginx_log_dir``...) reaches these as it reaches provisioning.
"""

from __future__ import annotations

import datetime
import json
import threading

from fabric import task
from invoke.exceptions import Exit

from deploy import shell
from deploy.backup import restore as backup_restore
from deploy.backup.settings import BackupLayout, BackupSettings
from deploy.host_model import SettingsError
from deploy.release import audit, lock
from deploy.release import commands as cmd
from deploy.release.host import ReleaseHost
from deploy.release.job_status import job_lines, job_status, job_status_command
from deploy.release.rollout import TARGET_HELP, open_hosts
from deploy.release.state import HostState
from deploy.steps import say

JSON_HELP = {"json": "print one JSON document for scripts instead of the human lines"}


def release_lines(state: HostState) -> list[str]:
    """The host's releases, newest first, with live / slot / failed markers."""
    lines = []
    by_slot = {release: slot for slot, release in state.slots.items() if release}
    for info in reversed(state.releases):
        marks = []
        if info.name == state.current:
            marks.append("current")
        slot = by_slot.get(info.name)
        if slot:
            marks.append(f"slot {slot} ({slot_word(state, slot)})")
        if info.failed:
            marks.append("FAILED")
        if info.rolled_back:
            marks.append("rolled back from")
        star = "*" if info.name == state.current else " "
        lines.append(f"{star} {info.name}  venv {info.venv or '-':<16}  {', '.join(marks)}")
    return lines or ["(no releases)"]


def slot_word(state: HostState, slot: str) -> str:
    if state.live_slot == slot:
        return "live"
    return "running" if state.active.get(slot) else "stopped"


def releases_data(h: ReleaseHost, state: HostState, last: int) -> dict:
    records = audit.parse_lines(h.run(cmd.audit_tail_command(h.layout, last)).stdout)
    by_slot = {release: slot for slot, release in state.slots.items() if release}
    return {
        "host": h.name,
        "current": state.current,
        "releases": [
            {
                "name": info.name,
                "current": info.name == state.current,
                "slot": by_slot.get(info.name),
                "slot_state": slot_word(state, by_slot[info.name])
                if info.name in by_slot
                else None,
                "failed": info.failed,
                "served": info.served,
                "rolled_back": info.rolled_back,
                "venv": info.venv,
            }
            for info in reversed(state.releases)
        ],
        "audit": [r.__dict__ for r in records],
    }


@task(help={**TARGET_HELP, **JSON_HELP, "last": "how many audit log entries (default 10)"})
def releases(c, stack="", inventory="", hosts="", last=10, json_=False):
    """List each host's releases (current, slots, failed) and its recent deploys."""
    documents = []
    for h in open_hosts(c, stack, inventory, hosts, threading.Event()):
        state = h.state()
        if json_:
            documents.append(releases_data(h, state, last))
            continue
        say(f"[{h.name}] releases, newest first:")
        for line in release_lines(state):
            say(f"[{h.name}]   {line}")
        say(f"[{h.name}] recent deploys and rollbacks:")
        records = audit.parse_lines(h.run(cmd.audit_tail_command(h.layout, last)).stdout)
        for line in audit.render(records):
            say(f"[{h.name}]   {line}")
    if json_:
        say(json.dumps({"hosts": documents}, indent=2, sort_keys=True))


# $1: the backup env file; the rest: job.py status. A host without the file does not run the
# job (only the first host does, when backups are set up) and prints nothing.
BACKUP_STATUS_SCRIPT = 'if [ -f "$1" ]; then shift; exec "$@"; fi'


def backup_status_command(layout: BackupLayout) -> list[str]:
    return shell.as_root(
        shell.script(BACKUP_STATUS_SCRIPT, layout.env_file, *layout.job_command("status"))
    )


def backup_health(answer_ok: bool, output: str, error: str, now: datetime.datetime,
                  stale_hours: float) -> dict | None:  # fmt: skip
    """The backup part of a host's status from job.py status's answer: None when the host does
    not run the job; else its last success, failure and drill, and the problems
    (deploy.backup.restore.status_problems) that make ``fab status`` exit 1."""
    if answer_ok and not output.strip():
        return None
    if not answer_ok:
        reason = " ".join(error.split())[-300:] or "no output"
        return {"problems": [f"backup status unreadable: {reason}"], "last_success": None,
                "last_failure": None, "last_drill": None}  # fmt: skip
    try:
        status = json.loads(output)
    except json.JSONDecodeError:
        status = None
    if not isinstance(status, dict):
        return {"problems": ["backup status unreadable: job.py status printed no JSON object"],
                "last_success": None, "last_failure": None, "last_drill": None}  # fmt: skip
    return {
        "problems": backup_restore.status_problems(status, now, stale_hours),
        "last_success": status.get("last_success"),
        "last_failure": status.get("last_failure"),
        "last_drill": status.get("last_drill"),
    }


def status_data(h: ReleaseHost, state: HostState, stale_hours: float | None = None) -> dict:
    live = state.live_slot
    readyz = None
    if live:
        path = h.host.app.readiness_path
        probe = h.run(cmd.health_wait_command(h.layout, live, path, 0), warn=True)
        readyz = {"ok": probe.ok, "response": " ".join(probe.stdout.split()) or None, "path": path}
    jobs_probe = job_status_command(h.layout, h.host.app)
    jobs = None
    if jobs_probe:
        jobs = job_status(h.layout, h.host.app, h.run(jobs_probe, warn=True).stdout)
    return {
        "host": h.name,
        "current": state.current,
        "live_slot": live,
        "routed_slot": state.routed_slot,
        "slots": {
            slot: {"release": rel, "active": bool(state.active.get(slot))}
            for slot, rel in state.slots.items()
        },
        "readyz": readyz,
        "nginx_active": state.nginx_active,
        "lock": (state.lock.__dict__ if state.lock else {}) if state.locked else None,
        "backup": None if stale_hours is None else read_backup_health(h, stale_hours),
        "workers": worker_states(h.run(cmd.worker_states_command(h.layout), warn=True).stdout),
        "jobs": jobs,
    }


def worker_states(listing: str) -> list[dict]:
    """The worker units `systemctl list-units` printed: unit, slot, active and sub state."""
    workers = []
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) < 4 or not fields[0].endswith(".service") or "-worker-" not in fields[0]:
            continue
        slot = fields[0].rsplit("-worker-", 1)[1].split("@", 1)[0]
        workers.append({"unit": fields[0], "slot": slot, "active": fields[2], "sub": fields[3]})
    return workers


def read_backup_health(h: ReleaseHost, stale_hours: float) -> dict | None:
    answer = h.run(backup_status_command(BackupLayout(h.layout)), warn=True)
    now = datetime.datetime.now(datetime.UTC)
    return backup_health(answer.ok, answer.stdout, answer.stderr, now, stale_hours)


@task(help={**TARGET_HELP, **JSON_HELP})
def status(c, stack="", inventory="", hosts="", json_=False):
    """Per host: the live release and slot, both slots' state, /readyz, Nginx, any lock, and
    on the host running the backup job its health. Exits 1 when backups are in error."""
    try:
        stale_hours = BackupSettings.from_config(c.config).stale_hours
    except SettingsError as exc:
        raise Exit(f"dropstack: {exc}", code=1) from None
    documents, errors = [], []
    for h in open_hosts(c, stack, inventory, hosts, threading.Event()):
        data = status_data(h, h.state(), stale_hours)
        errors += [f"{h.name}: {p}" for p in (data["backup"] or {}).get("problems", [])]
        if json_:
            documents.append(data)
            continue
        for line in status_lines(data):
            say(f"[{h.name}] {line}")
    if json_:
        say(json.dumps({"hosts": documents, "errors": errors}, indent=2, sort_keys=True))
    if errors:
        raise Exit(code=1)


def status_lines(data: dict) -> list[str]:
    lines = [f"current release: {data['current'] or '(none)'}"]
    for slot, info in data["slots"].items():
        running = "active" if info["active"] else "inactive"
        serving = "  <- nginx (live.sock)" if data["routed_slot"] == slot else ""
        lines.append(f"  slot {slot:<5} {running:<8} {info['release'] or '(no release)'}{serving}")
    if data["live_slot"]:
        answer = data["readyz"]["response"] or "no answer"
        path = data["readyz"].get("path", "/readyz")
        lines.append(f"  {path} on {data['live_slot']}: {answer}")
    elif data["routed_slot"]:
        lines.append(f"  no live slot: live.sock names slot {data['routed_slot']}, not running")
    else:
        lines.append("  no live slot: no release deployed yet")
    lines.append(f"  nginx: {'active' if data['nginx_active'] else 'NOT active'}")
    lines += worker_lines(data.get("workers") or [])
    if data["lock"] is not None:
        holder = data["lock"]
        who = lock.Holder(**holder).describe() if holder else "unreadable holder record"
        lines.append(f"  deploy lock held: {who}")
    lines += backup_lines(data.get("backup"))
    lines += job_lines(data.get("jobs"))
    return lines


def worker_lines(workers: list[dict]) -> list[str]:
    """Per slot with loaded workers: how many run, and each unit's state."""
    lines = []
    for slot in sorted({w["slot"] for w in workers}):
        units = [w for w in workers if w["slot"] == slot]
        active = sum(w["active"] == "active" for w in units)
        states = ", ".join(f"{w['unit'].removesuffix('.service')} {w['sub']}" for w in units)
        lines.append(f"  workers on {slot}: {active} of {len(units)} active ({states})")
    return lines


def backup_lines(backup: dict | None) -> list[str]:
    """The backup job's health, on the host that runs it; each problem an ``error:`` line."""
    if backup is None:
        return []
    success, drill = backup["last_success"], backup["last_drill"]
    good = f"{success['id']} at {success['time']}" if success else "none"
    lines = [f"  backups: last good {good}"]
    if drill:
        lines.append(f"  restore drill: {drill.get('outcome')} at {drill.get('time') or '?'} "
                     f"({drill.get('backup_id')})")  # fmt: skip
    lines += [f"  error: {problem}" for problem in backup["problems"]]
    return lines


@task(
    help={
        **TARGET_HELP,
        "follow": "keep printing new lines (one host at a time)",
        "since": "journalctl --since, e.g. '10 min ago' or '2026-11-21 15:00'",
        "lines": "lines to show per host (default 100)",
        "nginx": "Nginx's journal and the site's access and error logs instead of the app's",
        "process": "only one process type's journal: web, worker or job (scheduled jobs)",
    }
)
def logs(
    c, stack="", inventory="", hosts="", follow=False, since="", lines=100, nginx=False,
    process="",
):  # fmt: skip
    """The app's journal (both slots and migrations), or Nginx's with --nginx."""
    if process and process not in PROCESS_TYPES:
        raise Exit(f"dropstack: --process: {process!r} is not one of {', '.join(PROCESS_TYPES)}")
    selected = open_hosts(c, stack, inventory, hosts, threading.Event())
    if follow and len(selected) > 1:
        raise Exit("dropstack: --follow reads one host; pick it with --hosts", code=1)
    for h in selected:
        say(f"[{h.name}] {'; '.join(log_sources(h, nginx, process))}:")
        for command in logs_commands(h, nginx, lines, since, follow, process):
            h.c.run(shell.join(command), warn=True, in_stream=False, pty=follow)


PROCESS_TYPES = ("web", "worker", "job")


def process_units(h: ReleaseHost, process: str) -> list[str]:
    """The units of one process type (the app contract's), or all of them for ''."""
    layout = h.layout
    web = list(layout.units)
    worker = [layout.worker_units_pattern]
    job = [layout.job_service("*")]
    return {"web": web, "worker": worker, "job": job}.get(process, web + worker + job)


def log_sources(h: ReleaseHost, nginx: bool, process: str = "") -> list[str]:
    if nginx:
        return ["journal of nginx", h.layout.nginx_access_log, h.layout.nginx_error_log]
    return [f"journal of {', '.join(process_units(h, process))}"]


def logs_commands(
    h: ReleaseHost, nginx: bool, lines: int, since: str, follow: bool, process: str = ""
):
    """The commands ``fab logs`` runs on a host: with ``--follow`` one command only (the
    journal, or the Nginx files), since a followed command never ends."""
    layout = h.layout
    if not nginx:
        return [cmd.journal_command(process_units(h, process), lines, since, follow)]
    files = cmd.tail_command([layout.nginx_access_log, layout.nginx_error_log], lines, follow)
    if follow:
        return [files]
    return [cmd.journal_command(["nginx"], lines, since), files]


@task(help=TARGET_HELP)
def unlock(c, stack="", inventory="", hosts=""):
    """Remove a deploy lock left behind by a deploy that died, showing whose it was."""
    for h in open_hosts(c, stack, inventory, hosts, threading.Event()):
        state = h.state()
        if not state.locked:
            say(f"[{h.name}] not locked")
            continue
        who = state.lock.describe() if state.lock else "unreadable holder record"
        say(f"[{h.name}] warning: removing the deploy lock held by {who}; if that deploy is "
            "still running it is no longer protected from another one")  # fmt: skip
        h.run(lock.force_remove_command(h.layout.lock))
