"""Scheduled jobs on a 3-host stack: a schedule runs once, on the stack's first web host, never
on the others; its output is in that host's journal and its last result in `fab status`; and a
run never overlaps another (a second start waits for the running one and does not run again;
the job's command itself, run beside it, finds the lock held and is skipped).

A schedule's tick is made to happen now on every host at once, by the timer's own catch-up:
with Persistent=true, a timer started after an elapse it missed (its stamp file older than the
last scheduled time) fires at once, as after a host was off at 03:15. The sample app's
purge-done-tasks is the job."""

from __future__ import annotations

import shlex
import subprocess
import time

from deploy import host_model
from tests.fleet.test_fleet import FAB, REPO

JOB = "purge-done-tasks"
LAYOUT = host_model.for_host({}).paths
SERVICE, TIMER = LAYOUT.job_service(JOB), LAYOUT.job_timer(JOB)
STAMP = f"/var/lib/systemd/timers/stamp-{TIMER}"
LOCK = f"/run/{LAYOUT.job_lock_dir_name}/{JOB}.lock"


def sudo(c, command: str, warn: bool = False):
    return c.run(f"sudo -n sh -c {shlex.quote(command)}", hide=True, warn=warn, in_stream=False)


def now(c) -> str:
    return c.run("date '+%Y-%m-%d %H:%M:%S'", hide=True, in_stream=False).stdout.strip()


def runs_since(c, since: str) -> list[str]:
    """The job's output lines in the host's journal since ``since`` (one per run)."""
    out = sudo(c, f"journalctl -u {SERVICE} --since '{since}' -o cat --no-pager", warn=True).stdout
    return [line for line in out.splitlines() if line.startswith("purge: ")]


def wait_inactive(c, seconds: float = 30) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        state = sudo(c, f"systemctl show -p ActiveState --value {SERVICE}").stdout.strip()
        if state in ("inactive", "failed"):
            return state
        time.sleep(0.3)
    return state


def test_a_schedule_fires_on_exactly_one_host(inventory, conn):
    hosts = [h.name for h in inventory.web_hosts]
    since = {name: now(conn(name)) for name in hosts}
    for name in hosts:
        # The missed-run catch-up on every host that has the timer; nothing where it has none.
        catch_up = f"touch -d '2 days ago' {STAMP}; systemctl restart {TIMER}"
        sudo(conn(name), f"if [ -e /etc/systemd/system/{TIMER} ]; then {catch_up}; fi")
    first = hosts[0]
    deadline = time.monotonic() + 30
    while not runs_since(conn(first), since[first]) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert wait_inactive(conn(first)) == "inactive"
    runs = {name: runs_since(conn(name), since[name]) for name in hosts}
    print(f"runs of {JOB} per host after one tick: { {n: len(r) for n, r in runs.items()} }")
    assert len(runs[first]) == 1, runs
    assert all(runs[name] == [] for name in hosts[1:]), runs
    for name in hosts[1:]:
        loaded = sudo(conn(name), f"systemctl show -p LoadState --value {TIMER}").stdout.strip()
        assert loaded == "not-found", f"{name} has {TIMER} ({loaded})"
    done = subprocess.run([FAB, "status"], cwd=REPO, capture_output=True, text=True, timeout=120)
    print(done.stdout)
    lines = [line for line in done.stdout.splitlines() if f"job {JOB}:" in line]
    assert len(lines) == 1 and lines[0].startswith(f"[{first}]"), lines
    assert f"job {JOB}: last success at " in lines[0]


def test_a_run_never_overlaps_another(inventory, conn):
    """A run held mid-job (every process of the unit stopped with SIGSTOP once the job's
    command runs under its lock, then continued); meanwhile a second `systemctl start` waits
    for the running one and runs nothing itself, and the job's command under its flock, run
    beside it as the app user, exits 75: skipped."""
    c = conn(inventory.web_hosts[0].name)
    since = now(c)
    # Stopped once flock has forked the job's python: flock takes the lock before it forks,
    # and python's imports leave a few hundred milliseconds to stop it mid-run.
    hold = (f"systemctl start --no-block {SERVICE}; while :; do "
            f"pid=$(systemctl show -p MainPID --value {SERVICE}); "
            f'[ "$pid" != 0 ] && [ -n "$(ps --ppid "$pid" -o pid=)" ] && break; sleep 0.02; '
            f"done; systemctl kill --signal=SIGSTOP {SERVICE}")  # fmt: skip
    try:
        sudo(c, f"timeout 10 sh -c {shlex.quote(hold)}")
        running = sudo(c, f"systemctl show -p ActiveState --value {SERVICE}").stdout.strip()
        second = sudo(c, f"timeout 3 systemctl start {SERVICE}", warn=True)
        beside = sudo(c, f"runuser -u {LAYOUT.app_user} -- flock --nonblock "
                         f"--conflict-exit-code 75 {LOCK} true", warn=True)  # fmt: skip
    finally:
        sudo(c, f"systemctl kill --signal=SIGCONT {SERVICE}", warn=True)
    state = wait_inactive(c)
    runs = runs_since(c, since)
    print(f"while running ({running}): second start exit {second.exited} (124: still waiting), "
          f"the command beside it exit {beside.exited}; runs: {runs}")  # fmt: skip
    assert running == "activating"
    assert second.exited == 124, "a second start returned while the first run was going"
    assert beside.exited == 75, "the job's lock was free while it ran"
    assert state == "inactive" and len(runs) == 1, runs
