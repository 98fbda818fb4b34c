"""Operating a running local stack: its status, and what happens to droplets in production:
reboots (``systemctl reboot`` inside, disk kept) and power loss (the plug pulled)."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from deploy.local.access import (
    connection,
    port_answers,
    quiet_paramiko,
    wait_for_cloud_init,
    wait_for_ssh,
)
from deploy.local.machine import (
    alive,
    is_running,
    leftover_parts,
    nspawn_leaders,
    plan_of,
    send_signal,
    supervisors,
    wait_gone,
    wait_reaped,
)
from deploy.local.network import HostPlan, StackPlan
from deploy.local.state import LocalStackError, StatePaths, exclusive, read_record, run

Say = Callable[[str], None]


def reboot(host_name: str, say: Say) -> float:
    """`systemctl reboot` inside the host, as on a droplet; returns the seconds until it
    answers SSH again with cloud-init done. Its disk, and everything on it, stays."""
    paths = StatePaths.from_environment()
    with exclusive(paths):
        plan = _running_plan(paths)
        host = plan.host(host_name)
        before = nspawn_leaders(host)
        started = time.monotonic()
        with quiet_paramiko():
            with connection(paths, host) as conn:
                conn.run("sudo -n systemctl reboot", hide=True, warn=True)
            wait_gone(before, seconds=60)
            if alive_any(before):
                raise LocalStackError(f"{host.name}: did not stop within 60 s of the reboot")
            wait_for_ssh(paths, plan, only=[host])
            wait_for_cloud_init(paths, host)
        took = time.monotonic() - started
        say(f"{host.name}: rebooted, answering SSH again after {took:.1f} s")
        return took


def poweroff(host_name: str, say: Say) -> None:
    """Pull the plug: SIGKILL the host's container (no shutdown, like a power loss).
    `fab local.up` boots it again on its disk."""
    paths = StatePaths.from_environment()
    with exclusive(paths):
        host = _running_plan(paths).host(host_name)
        for pid in supervisors(host):
            send_signal(pid, signal.SIGKILL)
        leaders = nspawn_leaders(host)
        for pid in leaders:
            send_signal(pid, signal.SIGKILL)
        # Killing nspawn does not take the container's processes with it: without this, its
        # PostgreSQL would still run when `up` boots the host again on the same disk, and two
        # servers on one data directory is not a power loss. Everything in the host's network
        # namespace is the host.
        inside = [int(pid) for pid in run(["ip", "netns", "pids", host.netns], hint="").split()]
        for pid in inside:
            send_signal(pid, signal.SIGKILL)
        wait_gone(leaders + inside)
        wait_reaped(leaders)
        say(f"{host.name}: powered off hard; `fab local.up` boots it again on its disk")


def alive_any(pids: list[int]) -> bool:
    return any(alive(p) for p in pids)


@dataclass(frozen=True)
class HostStatus:
    host: HostPlan
    running: bool
    ssh: bool


def status() -> tuple[list[HostStatus], list[str], StatePaths]:
    """Each host of the recorded stack with whether it runs and answers SSH, plus leftovers."""
    paths = StatePaths.from_environment()
    record = read_record(paths)
    rows = []
    if record:
        for host in plan_of(record).hosts:
            running = bool(nspawn_leaders(host))
            ssh = running and port_answers(host.ssh_address, 22, timeout=1)
            rows.append(HostStatus(host, running, ssh))
    return rows, leftover_parts(paths) if not record else [], paths


def running_plan() -> tuple[StackPlan, StatePaths]:
    paths = StatePaths.from_environment()
    return _running_plan(paths), paths


def _running_plan(paths: StatePaths) -> StackPlan:
    record = read_record(paths)
    if not record or not is_running(paths, record):
        raise LocalStackError("no local stack is running; start one with `fab local.up`")
    return plan_of(record)
