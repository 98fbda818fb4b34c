"""What a local stack has made on this machine, found by name: containers, namespaces, links,
overlays, the nft table; and waiting for processes to go. ``down`` and ``status`` read these."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from deploy.local import hosts, nftables
from deploy.local.acme import is_ca_process_of
from deploy.local.load_balancer import is_haproxy_of
from deploy.local.network import ACME_ADDRESS, NETNS_DIR, HostPlan, largest_plan, plan_stack
from deploy.local.state import LocalStackError, StatePaths, run


def leftover_parts(paths: StatePaths) -> list[str]:
    """Anything a local stack makes that exists now, by name (empty on a clean machine)."""
    found = [f"load balancer (pid {pid})" for pid in load_balancers()]
    found += [f"local CA process (pid {pid})" for pid in ca_processes()]
    for host in largest_plan().namespaces:
        if nspawn_leaders(host):
            found.append(f"container {host.name}")
        if Path(host.netns_path).exists():
            found.append(f"netns {host.netns}")
        found += [f"link {n}" for n in host.root_link_names if link_exists(n)]
        if is_mounted(paths.host_root(host)):
            found.append(f"overlay {paths.host_root(host)}")
    root = unified_cgroup_root()
    if root and (root / hosts.CGROUP_PARENT).is_dir():
        found.append(f"cgroup {root / hosts.CGROUP_PARENT}")
    if firewall_table_exists():
        found.append("nft table inet dropstack")
    found += [str(p) for p in (paths.record, paths.inventory, paths.hosts) if p.exists()]
    return found


def plan_of(record: dict):
    """The plan a stack record describes."""
    return plan_stack(
        record["web_count"], record.get("load_balancer", False), acme=bool(record.get("domain"))
    )


def is_running(paths: StatePaths, record: dict) -> bool:
    plan = plan_of(record)
    return (
        paths.inventory.exists()
        and all(nspawn_leaders(h) for h in plan.hosts)
        and (plan.lb is None or bool(load_balancers()))
        and (plan.acme is None or len(ca_processes()) == 2)
        and (plan.redis is None or bool(namespace_processes(plan.redis.netns)))
    )


def unified_cgroup_root() -> Path | None:
    """Where this machine's cgroup v2 tree is mounted: /sys/fs/cgroup/unified on a hybrid
    machine (this one), /sys/fs/cgroup on a unified one; None without cgroup v2."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if " - cgroup2 " in line and fields[4] in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
            return Path(fields[4])
    return None


def remove_cgroup(path: Path) -> bool:
    """Remove a cgroup directory and its (empty) children, deepest first; False if absent."""
    if not path.is_dir():
        return False
    for child in sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        with contextlib.suppress(OSError):
            child.rmdir()
    with contextlib.suppress(OSError):
        path.rmdir()
    return True


def load_balancers() -> list[int]:
    """The HAProxy processes standing in for the load balancer."""
    return [pid for pid, argv, state, _ in processes() if state != "Z" and is_haproxy_of(argv)]


def ca_processes() -> list[int]:
    """pebble and pebble-challtestsrv serving the local stack's CA."""
    return [
        pid
        for pid, argv, state, _ in processes()
        if state != "Z" and is_ca_process_of(argv, ACME_ADDRESS)
    ]


def namespace_processes(netns: str) -> list[int]:
    """The live processes in a network namespace of the stack (none when it does not exist)."""
    if not Path(f"{NETNS_DIR}/{netns}").exists():
        return []
    listed = run(["ip", "netns", "pids", netns], hint="").split()
    return [int(pid) for pid in listed if alive(int(pid))]


def supervisors(host: HostPlan) -> list[int]:
    """The reboot loops (hosts.supervised) that restart this host's container."""
    found = []
    for pid, argv, _state, _ppid in processes():
        if hosts.is_supervisor_of(argv, host):
            found.append(pid)
    return found


def processes():
    """(pid, argv, state, ppid) of every process this machine has, read from /proc."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        yield int(entry.name), [a.decode(errors="replace") for a in argv if a], state, int(ppid)


def nspawn_leaders(host: HostPlan) -> list[int]:
    """The systemd-nspawn processes running this host (not their forked children)."""
    matches = {
        pid: ppid
        for pid, argv, state, ppid in processes()
        if state != "Z" and hosts.is_nspawn_of(argv, host)
    }
    return [pid for pid, ppid in matches.items() if ppid not in matches]


def firewall_table_exists() -> bool:
    if shutil.which("nft") is None:
        return False
    return (
        subprocess.run(nftables.list_table_command(), capture_output=True, check=False).returncode
        == 0
    )


def is_mounted(path: Path) -> bool:
    target = str(path)
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        if line.split()[4] == target:
            return True
    return False


def unmount(path: Path) -> None:
    for _ in range(10):
        if subprocess.run(["umount", str(path)], capture_output=True, check=False).returncode == 0:
            return
        time.sleep(0.5)
    run(["umount", "--lazy", str(path)], hint="")


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def run_unless_gone(command: list[str], gone: Callable[[], bool]) -> None:
    """Run a removal; if it fails because the thing vanished meanwhile, that is success too."""
    try:
        run(command, hint="")
    except LocalStackError:
        if not gone():
            raise


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def wait_gone(pids: list[int], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)


def wait_reaped(pids: list[int], seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while any(Path(f"/proc/{p}").exists() for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)


def send_signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
