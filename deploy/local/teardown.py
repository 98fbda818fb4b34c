"""Taking the local stack down: every container, namespace, link, mount, the nft table, the
load balancer, the CA and the Redis stand-in, found by name from ``network.largest_plan()`` and
the state directory, so it works after any kind of failure and touches nothing else on the
machine."""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path

from deploy.local import acme_setup, hosts, nftables, redis_setup
from deploy.local.lifecycle import IP_FORWARD, Say
from deploy.local.machine import (
    alive,
    firewall_table_exists,
    is_mounted,
    link_exists,
    load_balancers,
    nspawn_leaders,
    remove_cgroup,
    run_unless_gone,
    send_signal,
    supervisors,
    unified_cgroup_root,
    unmount,
    wait_gone,
    wait_reaped,
)
from deploy.local.network import StackPlan, largest_plan
from deploy.local.state import (
    LocalStackError,
    StatePaths,
    exclusive,
    read_record,
    run,
)

STOP_SECONDS = 30


def down(say: Say, if_owner: str = "") -> None:
    """Remove the stack; with ``if_owner``, only one that owner made (or a half-made one with
    no record), refusing any other with a one-line error that says what to do."""
    paths = StatePaths.from_environment()
    with exclusive(paths):
        record = read_record(paths)
        owner = (record or {}).get("owner", "user")
        if if_owner and record and owner != if_owner:
            raise LocalStackError(
                f"a local stack made by {owner} is running (`fab local.status`); {if_owner} "
                "needs this machine's one local stack and leaves yours alone: when you are done "
                "with it, run `fab local.down`, then run this again"
            )
        _down(paths, say)


def _down(paths: StatePaths, say: Say) -> None:
    record = read_record(paths)
    plan = largest_plan()
    removed: list[str] = []

    for pid in load_balancers():
        send_signal(pid, signal.SIGTERM)
        wait_gone([pid])
        removed.append("load balancer")
    if acme_setup.stop_ca():
        removed.append("local CA (pebble, challtestsrv)")
    if redis_setup.stop():
        removed.append("Redis stand-in (redis-server)")
    _stop_containers(plan, say, removed)
    for host in plan.hosts:
        root = paths.host_root(host)
        if is_mounted(root):
            unmount(root)
            removed.append(f"overlay {host.name}")
    for host in plan.namespaces:
        # Root-side links first: deleting one end of a veth pair deletes both at once, whereas a
        # deleted namespace takes its links along only later, in the kernel's own time.
        for name in host.root_link_names:
            if link_exists(name):
                run_unless_gone(["ip", "link", "delete", name], lambda n=name: not link_exists(n))
                removed.append(f"link {name}")
        if Path(host.netns_path).exists():
            run_unless_gone(
                ["ip", "netns", "delete", host.netns],
                lambda h=host: not Path(h.netns_path).exists(),
            )
            removed.append(f"netns {host.netns}")
    cgroups = unified_cgroup_root()
    if cgroups and remove_cgroup(cgroups / hosts.CGROUP_PARENT):
        removed.append("cgroups")
    if firewall_table_exists():
        run(nftables.delete_table_command(), hint="")
        removed.append("nft table inet dropstack")
    if record and record.get("ip_forward_before") == "0":
        IP_FORWARD.write_text("0\n")
    redis_dir = paths.root / "redis"
    for path in (paths.hosts, paths.db, paths.root / "lb", paths.root / "acme", redis_dir):
        if path.exists():
            shutil.rmtree(path)
            removed.append(str(path))
    for path in (paths.inventory, paths.known_hosts, paths.record):
        if path.exists():
            path.unlink()
            removed.append(str(path))
    if removed:
        say(f"down: removed {', '.join(removed)}; kept the image cache and {paths.key}")
    else:
        say("down: no local stack here; nothing to do")


def _stop_containers(plan: StackPlan, say: Say, removed: list[str]) -> None:
    """SIGTERM to nspawn makes it send SIGRTMIN+3 to the container's systemd: a clean poweroff.
    The reboot loops go first, so none boots a container again while it stops."""
    for host in plan.hosts:
        for pid in supervisors(host):
            send_signal(pid, signal.SIGKILL)
    leaders = {host.name: nspawn_leaders(host) for host in plan.hosts}
    running = {name: pids for name, pids in leaders.items() if pids}
    if running:
        say(f"stopping {', '.join(running)}")
    for pids in running.values():
        for pid in pids:
            send_signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    while any(alive(pid) for pids in running.values() for pid in pids):
        if time.monotonic() > deadline:
            say(f"containers still running after {STOP_SECONDS} s; killing them")
            for pids in running.values():
                for pid in pids:
                    send_signal(pid, signal.SIGKILL)
            break
        time.sleep(0.2)
    removed.extend(f"container {name}" for name in running)
    # This process is not their parent, so the exited nspawns are reaped by PID 1, on its own
    # schedule; waiting briefly leaves a process list without their zombies.
    wait_reaped([pid for pids in running.values() for pid in pids])
    # Whatever is left in a namespace (a container whose nspawn died) goes too; killing a PID
    # namespace's init takes the whole namespace with it.
    for host in plan.hosts:
        if Path(host.netns_path).exists():
            pids = run(["ip", "netns", "pids", host.netns], hint="").split()
            for pid in pids:
                send_signal(int(pid), signal.SIGKILL)
            wait_gone([int(p) for p in pids])
